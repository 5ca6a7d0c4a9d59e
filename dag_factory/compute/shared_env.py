"""The local backend's shared Python environments: built once per requirements, cloned for every value.

A SageMaker instance starts with its conda environment; the prepare step then installs papermill and the
project's requirements into it. Locally, a fresh virtualenv per value with pandas & co. installed again
(and imported without compiled bytecode) was most of a run's wall time. So the local "image" is built once
per key -- the interpreter, the runtime packages, the requirements file's text -- with compiled bytecode,
and each value gets a clone of it made of hard links (well under a second for ~20,000 files): its own
directory tree, in which the prepare step's install lines (the production ones, unchanged) find everything
installed, and in which a notebook's run-time `pip install` changes only that value's clone. Installers
never write into an installed file (they remove it and write a new one), and the shared files are
read-only besides; the environment is built with copies, not links into uv's cache, so nothing a clone
does can reach the cache either.

Invalidation: another interpreter (path, size, modification time), other runtime packages or other
requirements text give another key, so another environment. Requirements that refer to other files
(``-r``, ``-c``, ``-e``, local paths) are not shared: their content is not in the key. Needs ``uv`` (its
virtualenvs are relocatable, so a clone works at its own path); without it each value gets a fresh venv.

Where: ``$DAG_FACTORY_CACHE_DIR/envs``, else ``<local root>/envs`` (dag_factory.settings); environments
unused for :data:`UNUSED_DAYS` days are removed when another one is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dag_factory import settings
from dag_factory.plan.cache import usable_folder

log = logging.getLogger("dag_factory.compute.shared_env")

MARKER = "dag-factory-env.json"
SPARES = "spares"  # beside the venv: clones made ahead of time (make_spares)
UNUSED_DAYS = 14
# a requirements line that reads another file or installs from a local path
_LOCAL_REFERENCE = re.compile(
    r"^\s*(-[rce]\b|--(requirement|constraint|editable)\b|[./~]|file:)|@\s*file:", re.MULTILINE
)
# compiled at build time: everything but packages' test suites (a third of pandas/scipy/sklearn)
_NOT_COMPILED = r"site-packages[\\/].*[\\/]tests?[\\/]"


def cache_folder(default: str | Path) -> Path | None:
    """Where the shared environments live; None when caching is off or the folder is not private."""
    folder = settings.cache_dir("envs", Path(default))
    return folder if folder is not None and usable_folder(folder) else None


def environment_key(python: str, packages: Sequence[str], requirements: Path | None) -> str | None:
    """The key of the environment these inputs build, or None when it must not be shared."""
    uv = shutil.which("uv")
    if uv is None:
        return None
    text = requirements.read_text() if requirements is not None else ""
    if _LOCAL_REFERENCE.search(text):
        return None
    binary = Path(python).resolve()
    info = binary.stat()
    material = [str(binary), info.st_size, info.st_mtime_ns, list(packages), text]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:24]


def shared_environment(
    cache_default: str | Path,
    python: str,
    packages: Sequence[str],
    requirements: str | None,
    *,
    build: bool = True,
) -> Path | None:
    """The venv for these inputs, built now if missing (unless not ``build``); None when it cannot be
    shared (or built, or is not built yet).

    Concurrent callers (the values of a run, two runs) wait for one build on a lock file.
    """
    folder = cache_folder(cache_default)
    reqs = Path(requirements) if requirements else None
    key = environment_key(python, packages, reqs) if folder is not None else None
    if folder is None or key is None:
        return None
    target = folder / key
    with _locked(folder / f"{key}.lock"):
        if not _complete(target, key):
            if not build:
                return None
            try:
                _build(folder, key, python, packages, reqs)
            except (OSError, subprocess.CalledProcessError) as exc:
                # the prepare step installs into a fresh venv instead and shows the real error there
                log.warning("could not build the shared environment %s: %s", target, exc)
                return None
            _prune(folder, keep=key)
        os.utime(folder / f"{key}.lock")  # last used, for _prune
    return target / "venv"


def make_spares(venv: Path, count: int) -> int:
    """Clone ``venv`` ahead of time until ``count`` spare clones are ready; return how many were made.

    A local run makes them while Airflow starts, so that its create_instance tasks take a finished
    clone (:func:`take_spare`, a rename) instead of making one then, all values at once. A spare is
    never run or written to until one value takes it, whole; spares live under the environment's
    folder, so they go with it (a rebuild, pruning).
    """
    spares = venv.parent / SPARES
    spares.mkdir(exist_ok=True)
    _sweep_abandoned(spares)
    made = 0
    for _ in range(max(0, count - len(_ready_spares(spares)))):
        scratch = spares / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            clone_environment(venv, scratch)
            scratch.rename(spares / uuid.uuid4().hex)  # ready: complete, under its final name
        except (OSError, subprocess.CalledProcessError) as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            log.warning("could not make a spare clone of %s: %s", venv, exc)
            break
        made += 1
    return made


def take_spare(venv: Path, target: Path) -> bool:
    """Move a spare clone of ``venv`` (see :func:`make_spares`) to ``target``; False when none is ready."""
    for spare in _ready_spares(venv.parent / SPARES):
        try:
            spare.rename(target)  # atomic: two values never get the same spare
        except FileNotFoundError:  # another value took it first
            continue
        except OSError as exc:  # e.g. the work directory on another file system
            log.info("could not take the spare clone %s: %s", spare, exc)
            return False
        return True
    return False


def _ready_spares(spares: Path) -> list[Path]:
    try:
        return sorted(p for p in spares.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return []


def _sweep_abandoned(spares: Path) -> None:
    """Remove half-made spares whose maker is gone (a run stopped while it cloned)."""
    for scratch in spares.glob(".tmp-*"):
        try:
            os.kill(int(scratch.name.split("-")[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(scratch, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def clone_environment(venv: Path, target: Path) -> None:
    """A private copy of ``venv`` at ``target``: new directories, files hard-linked to the shared ones."""
    target.parent.mkdir(parents=True, exist_ok=True)
    cp = shutil.which("cp")
    if cp is not None and _gnu_cp(cp):  # C: ~0.6 s for 20,000 files, Python's copytree twice that
        subprocess.run([cp, "-al", str(venv), str(target)], check=True, stdin=subprocess.DEVNULL)
    else:
        shutil.copytree(venv, target, symlinks=True, copy_function=os.link)


@functools.cache
def _gnu_cp(cp: str) -> bool:
    proc = subprocess.run([cp, "--version"], capture_output=True, text=True, check=False)
    return "GNU coreutils" in proc.stdout


@contextlib.contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def _complete(target: Path, key: str) -> bool:
    try:
        return bool(json.loads((target / MARKER).read_text()).get("key") == key)
    except (OSError, ValueError):
        return False


def _build(folder: Path, key: str, python: str, packages: Sequence[str], requirements: Path | None) -> None:
    """Build in a temporary folder, then rename: a crash never leaves a half environment behind."""
    started = time.monotonic()
    uv = shutil.which("uv") or "uv"
    scratch = folder / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    venv = scratch / "venv"
    try:
        _run([uv, "venv", "--quiet", "--seed", "--relocatable", "-p", python, str(venv)])
        # the prepare step's two installs, in its order (the second may move a pin of the first)
        install = [uv, "pip", "install", "--quiet", "--link-mode", "copy", "-p", str(venv / "bin" / "python")]
        if packages:  # uv refuses an install of nothing
            _run([*install, *packages])
        if requirements is not None:
            _run([*install, "-r", str(requirements)])
        compiled = _compile(venv)
        _read_only(venv)
        marker: dict[str, Any] = {"key": key, "python": python, "packages": list(packages)}
        marker["requirements"] = str(requirements) if requirements is not None else None
        marker |= {"build_seconds": round(time.monotonic() - started, 2), "compiled": compiled}
        (venv.parent / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        target = folder / key
        shutil.rmtree(target, ignore_errors=True)  # an incomplete one from an older version
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("built the shared environment %s in %.1f s", folder / key, time.monotonic() - started)


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True)


def _compile(venv: Path) -> bool:
    """Bytecode for every module but test suites, on all cores; False when some file did not compile."""
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "-x",
        _NOT_COMPILED,
        str(venv),
    ]
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if proc.returncode < 0:  # interrupted (Ctrl-C): half the bytecode is no environment to keep
        raise subprocess.CalledProcessError(proc.returncode, command)
    return proc.returncode == 0  # a module with a syntax error of its own is not ours to fix


def _read_only(venv: Path) -> None:
    """Files read-only (hard links share them with every clone); folders stay writable for installers."""
    for root, _dirs, files in os.walk(venv):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _prune(folder: Path, keep: str) -> None:
    """Remove environments nobody used for UNUSED_DAYS days (and that nobody is using now)."""
    cutoff = time.time() - UNUSED_DAYS * 86400
    for lock in folder.glob("*.lock"):
        key = lock.name.removesuffix(".lock")
        if key == keep or lock.stat().st_mtime > cutoff or not (folder / key).exists():
            continue
        with _locked(lock, blocking=False) as held:
            if held:
                shutil.rmtree(folder / key, ignore_errors=True)
                log.info("removed the unused shared environment %s", folder / key)
