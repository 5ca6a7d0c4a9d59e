"""The local backend's "instance": a fresh work directory with its own virtualenv, removed after the run."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from dag_factory import settings

log = logging.getLogger("dag_factory.compute.workspace")


def create_workspace(workdir: str, python: str) -> str:
    """A fresh work directory with its own virtualenv (a retry starts clean, like a new instance)."""
    path = Path(workdir)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    uv = shutil.which("uv")
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--seed", "-p", python, str(path / "venv")], check=True)
    else:
        subprocess.run([python, "-m", "venv", str(path / "venv")], check=True)
    log.info("created workspace %s", path)
    return str(path)


def remove_workspace(workdir: str) -> None:
    """Remove the work directory and the run's folder once empty (unless kept for debugging)."""
    path = Path(workdir)
    if settings.keep_workdirs():
        log.info("keeping workspace %s (--keep)", path)
        return
    shutil.rmtree(path, ignore_errors=True)
    for parent in (path.parent, path.parent.parent):
        try:
            parent.rmdir()
        except OSError:
            break
    log.info("removed workspace %s", path)
