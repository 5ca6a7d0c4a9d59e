"""The local backend's "instance": a fresh work directory with its own virtualenv, removed after the run.

The virtualenv is a hard-link clone of the shared environment for the job's requirements
(dag_factory.compute.shared_env) when there is one -- a spare clone made ahead of time if one is ready --
else a new empty one the prepare step installs into.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from dag_factory import settings
from dag_factory.compute.shared_env import clone_environment, shared_environment, take_spare

log = logging.getLogger("dag_factory.compute.workspace")


def create_workspace(
    workdir: str,
    python: str,
    env_cache: str | None = None,
    packages: Sequence[str] = (),
    requirements: str | None = None,
) -> str:
    """A fresh work directory with its own virtualenv (a retry starts clean, like a new instance).

    With ``env_cache`` (the default folder of the shared environments) the venv is a clone of the one
    built for ``python``, ``packages`` and ``requirements``; without, or when that cannot be shared,
    an empty venv.
    """
    path = Path(workdir)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    shared = shared_environment(env_cache, python, packages, requirements) if env_cache else None
    if shared is not None:
        try:
            if not take_spare(shared, path / "venv"):  # one made while Airflow started, else now
                clone_environment(shared, path / "venv")
        except (OSError, subprocess.CalledProcessError) as exc:  # e.g. the cache on another file system
            log.warning("could not clone %s (%s): the prepare step installs into a new venv", shared, exc)
            shutil.rmtree(path / "venv", ignore_errors=True)
        else:
            log.info("created workspace %s with a clone of %s", path, shared.parent)
            return str(path)
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
