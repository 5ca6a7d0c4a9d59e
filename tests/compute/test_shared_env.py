"""Shared environments: one build per key (real uv), hard-link clones per value, isolation between them."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dag_factory.compute import shared_env
from dag_factory.compute.shared_env import (
    clone_environment,
    environment_key,
    make_spares,
    shared_environment,
    take_spare,
)
from dag_factory.compute.workspace import create_workspace, remove_workspace
from tests.wheels import make_wheel

PACKAGES = ["six==1.17.0"]


def NEEDS_UV(test: Callable[..., None]) -> Callable[..., None]:
    """Builds real environments with uv (a test dependency: its absence fails the test)."""
    return pytest.mark.integration(pytest.mark.usefixtures("uv_on_path")(test))


@pytest.fixture(autouse=True)
def _no_cache_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAG_FACTORY_CACHE_DIR", raising=False)


def _requirements(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return path


def test_key_follows_requirements_packages_and_interpreter(tmp_path: Path) -> None:
    reqs = _requirements(tmp_path, "six==1.17.0\n")
    key = environment_key(sys.executable, PACKAGES, reqs)
    assert key is not None and key == environment_key(sys.executable, PACKAGES, reqs)
    assert environment_key(sys.executable, ["six==1.16.0"], reqs) != key
    assert environment_key(sys.executable, PACKAGES, None) != key
    reqs.write_text("six==1.16.0\n")
    assert environment_key(sys.executable, PACKAGES, reqs) != key
    fake = tmp_path / "python"
    fake.write_bytes(b"not really python")
    before = environment_key(str(fake), PACKAGES, reqs)
    os.utime(fake, ns=(0, 10**18))  # a rebuilt interpreter has another modification time
    assert environment_key(str(fake), PACKAGES, reqs) not in (before, key)


@pytest.mark.parametrize(
    "line",
    ["-r base.txt", "--requirement base.txt", "-c constraints.txt", "-e .", "--editable ../lib",
     "./wheels/x.whl", "../lib", "/opt/x.whl", "~/x", "file:///tmp/x.whl", "x @ file:///tmp/x.whl"],
)  # fmt: skip
def test_requirements_that_read_other_files_are_not_shared(tmp_path: Path, line: str) -> None:
    reqs = _requirements(tmp_path, f"six==1.17.0\n{line}\n")
    assert environment_key(sys.executable, PACKAGES, reqs) is None


def test_without_uv_nothing_is_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_env.shutil, "which", lambda name: None)
    assert environment_key(sys.executable, PACKAGES, None) is None
    assert shared_environment(tmp_path / "envs", sys.executable, PACKAGES, None) is None


def test_cache_off_or_foreign_folder_shares_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", "off")
    assert shared_environment(tmp_path / "envs", sys.executable, PACKAGES, None) is None
    monkeypatch.delenv("DAG_FACTORY_CACHE_DIR")
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o777)
    open_folder.chmod(0o777)  # writable by others: someone could plant an environment
    assert shared_environment(open_folder, sys.executable, PACKAGES, None) is None


@NEEDS_UV
def test_built_once_then_reused_and_cloned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = _requirements(tmp_path, "six==1.17.0\n")
    builds: list[str] = []
    real_build = shared_env._build

    def counting_build(*args: object, **kwargs: object) -> None:
        builds.append("build")
        real_build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shared_env, "_build", counting_build)
    found: list[Path | None] = []
    threads = [
        threading.Thread(
            target=lambda: found.append(
                shared_environment(tmp_path / "envs", sys.executable, PACKAGES, str(reqs))
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == ["build"]  # three values at once: one build, the others waited on the lock
    assert len(set(found)) == 1 and found[0] is not None
    venv = found[0]
    marker = json.loads((venv.parent / shared_env.MARKER).read_text())
    assert marker["packages"] == PACKAGES and marker["requirements"] == str(reqs)
    assert not list((tmp_path / "envs").glob("*.tmp-*"))
    # bytecode is there, so imports in a clone compile nothing
    assert list(venv.glob("lib/python*/site-packages/__pycache__/six.*.pyc"))
    assert shared_environment(tmp_path / "envs", sys.executable, PACKAGES, str(reqs)) == venv
    assert builds == ["build"]


def _six_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import six; print(six.__version__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


@NEEDS_UV
def test_a_change_of_requirements_or_interpreter_builds_another_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []
    real_build = shared_env._build

    def counting_build(folder: Path, key: str, *args: object) -> None:
        builds.append(key)
        real_build(folder, key, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(shared_env, "_build", counting_build)
    envs = tmp_path / "envs"
    # an interpreter of its own, so that the test can "upgrade" it (a copy runs like the original)
    python = tmp_path / "python" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    shutil.copy2(Path(sys.executable).resolve(), python)
    reqs = _requirements(tmp_path, "six==1.17.0\n")

    first = shared_environment(envs, str(python), [], str(reqs))
    assert first is not None and _six_version(first) == "1.17.0"
    assert shared_environment(envs, str(python), [], str(reqs)) == first and len(builds) == 1

    reqs.write_text("six==1.16.0\n")  # the project pins another version
    pinned = shared_environment(envs, str(python), [], str(reqs))
    assert pinned is not None and pinned != first and len(builds) == 2
    assert _six_version(pinned) == "1.16.0"
    assert _six_version(first) == "1.17.0"  # runs still using the old one are not disturbed

    shutil.copy2(Path(sys.executable).resolve(), python)  # a new build of the interpreter, same path
    os.utime(python, ns=(time.time_ns(), time.time_ns()))
    upgraded = shared_environment(envs, str(python), [], str(reqs))
    assert upgraded is not None and upgraded not in (first, pinned) and len(builds) == 3
    assert _six_version(upgraded) == "1.16.0"
    marker = json.loads((upgraded.parent / shared_env.MARKER).read_text())
    assert marker["python"] == str(python) and marker["key"] == builds[-1]

    # a workspace follows the current inputs: its clone is of the latest environment
    workdir = Path(create_workspace(str(tmp_path / "work" / "de"), str(python), str(envs), [], str(reqs)))
    site = next(upgraded.glob("lib/python*/site-packages/six.py"))
    assert (workdir / "venv" / site.relative_to(upgraded)).stat().st_ino == site.stat().st_ino
    assert len(builds) == 3


@NEEDS_UV
def test_clones_are_private_and_a_runtime_install_stays_in_its_clone(tmp_path: Path) -> None:
    venv = shared_environment(tmp_path / "envs", sys.executable, PACKAGES, None)
    assert venv is not None
    de, fr = tmp_path / "de" / "venv", tmp_path / "fr" / "venv"
    clone_environment(venv, de)
    clone_environment(venv, fr)
    six = next(venv.glob("lib/python*/site-packages/six.py"))
    relative = six.relative_to(venv)
    assert (de / relative).stat().st_ino == six.stat().st_ino  # a hard link: no copy
    assert not six.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # read-only

    # a notebook installing a package at run time, with its own interpreter (pip from the clone)
    wheel = make_wheel(tmp_path)
    pip = [str(de / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    # ... and replacing one the environment has (with uv, as the prepare step installs)
    other_six = make_wheel(tmp_path, "six", "1.99.0")
    uv = [
        shutil.which("uv") or "uv",
        "pip",
        "install",
        "--quiet",
        "-p",
        str(de / "bin" / "python"),
        str(other_six),
    ]
    subprocess.run(uv, check=True)

    def probe(env: Path) -> dict[str, object]:
        code = (
            "import importlib.util, json, six;"
            "print(json.dumps([importlib.util.find_spec('dfiso') is not None, six.__version__]))"
        )
        out = subprocess.run(
            [str(env / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
        )
        found, version = json.loads(out.stdout)
        return {"dfiso": found, "six": version}

    assert probe(de) == {"dfiso": True, "six": "1.99.0"}
    assert probe(fr) == {"dfiso": False, "six": "1.17.0"}
    assert probe(venv) == {"dfiso": False, "six": "1.17.0"}
    assert six.read_text() == (fr / relative).read_text()
    # a later value of any project gets the unchanged environment
    later = tmp_path / "later" / "venv"
    clone_environment(shared_environment(tmp_path / "envs", sys.executable, PACKAGES, None) or venv, later)
    assert probe(later) == {"dfiso": False, "six": "1.17.0"}


@NEEDS_UV
def test_a_failed_build_leaves_nothing_and_the_workspace_gets_a_fresh_venv(tmp_path: Path) -> None:
    reqs = _requirements(tmp_path, "dag-factory-no-such-package-anywhere==0.0.1\n")
    assert shared_environment(tmp_path / "envs", sys.executable, PACKAGES, str(reqs)) is None
    assert [p.name for p in (tmp_path / "envs").iterdir() if not p.name.endswith(".lock")] == []
    workdir = create_workspace(
        str(tmp_path / "work" / "de"), sys.executable, str(tmp_path / "envs"), PACKAGES, str(reqs)
    )
    venv = Path(workdir) / "venv"
    assert (venv / "bin" / "python").exists() and not list(venv.glob("lib/python*/site-packages/six.py"))


@NEEDS_UV
def test_workspace_clones_the_shared_environment_and_is_removed(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    workdir = Path(
        create_workspace(str(tmp_path / "work" / "run" / "de"), sys.executable, str(envs), PACKAGES)
    )
    shared = next(envs.glob("*/venv"))
    six = next(shared.glob("lib/python*/site-packages/six.py"))
    assert (workdir / "venv" / six.relative_to(shared)).stat().st_ino == six.stat().st_ino
    out = subprocess.run(
        ["bash", "-c", f"source '{workdir}/venv/bin/activate' && python -c 'import sys; print(sys.prefix)'"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == str(workdir / "venv")  # the clone is a venv at its own path
    remove_workspace(str(workdir))
    assert not (tmp_path / "work").exists() and six.exists()


def test_unused_environments_are_pruned_unless_in_use(tmp_path: Path) -> None:
    folder = tmp_path / "envs"
    folder.mkdir()
    old = time.time() - (shared_env.UNUSED_DAYS + 1) * 86400
    for key in ("stale", "busy", "recent"):
        (folder / key / "venv").mkdir(parents=True)
        (folder / f"{key}.lock").touch()
    for key in ("stale", "busy"):
        os.utime(folder / f"{key}.lock", (old, old))
    with shared_env._locked(folder / "busy.lock"):
        shared_env._prune(folder, keep="new")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["busy", "recent"]


@NEEDS_UV
def test_a_clone_that_fails_gives_a_fresh_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dag_factory.compute import workspace

    def cross_device(source: Path, target: Path) -> None:
        target.mkdir(parents=True)  # half made, then the file system refuses hard links
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(workspace, "clone_environment", cross_device)
    workdir = Path(
        create_workspace(str(tmp_path / "work" / "de"), sys.executable, str(tmp_path / "envs"), PACKAGES)
    )
    venv = workdir / "venv"
    assert (venv / "bin" / "python").exists() and not list(venv.glob("lib/python*/site-packages/six.py"))


def _spares(venv: Path) -> list[str]:
    return sorted(p.name for p in (venv.parent / shared_env.SPARES).iterdir())


@NEEDS_UV
def test_spare_clones_are_made_ahead_and_each_taken_once(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    assert shared_environment(envs, sys.executable, PACKAGES, None, build=False) is None  # not built yet
    assert not envs.exists() or not list(envs.glob("*/venv"))
    venv = shared_environment(envs, sys.executable, PACKAGES, None)
    assert venv is not None
    assert shared_environment(envs, sys.executable, PACKAGES, None, build=False) == venv
    assert make_spares(venv, 2) == 2
    assert make_spares(venv, 2) == 0  # two are ready: nothing to do
    assert len(_spares(venv)) == 2

    # five values at once: two take the spares, the others clone, every one its own venv
    workdirs: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda v=v: workdirs.append(
                Path(create_workspace(str(tmp_path / "work" / v), sys.executable, str(envs), PACKAGES))
            )
        )
        for v in ("de", "fr", "nl", "be", "it")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _spares(venv) == []
    six = next(venv.glob("lib/python*/site-packages/six.py"))
    prefixes = set()
    for workdir in workdirs:
        clone = workdir / "venv"
        assert (clone / six.relative_to(venv)).stat().st_ino == six.stat().st_ino
        out = subprocess.run(
            [str(clone / "bin" / "python"), "-c", "import six, sys; print(sys.prefix)"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        prefixes.add(out.stdout.strip())
    assert prefixes == {str(w / "venv") for w in workdirs} and len(prefixes) == 5


@NEEDS_UV
def test_a_spare_goes_to_one_taker_only(tmp_path: Path) -> None:
    venv = shared_environment(tmp_path / "envs", sys.executable, PACKAGES, None)
    assert venv is not None and make_spares(venv, 1) == 1
    took: list[bool] = []
    targets = [tmp_path / f"value-{i}" for i in range(6)]
    threads = [threading.Thread(target=lambda t=t: took.append(take_spare(venv, t))) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(took) == [False] * 5 + [True]
    assert sum(t.exists() for t in targets) == 1


@NEEDS_UV
def test_half_made_spares_are_never_taken_and_swept_once_their_maker_is_gone(tmp_path: Path) -> None:
    venv = shared_environment(tmp_path / "envs", sys.executable, PACKAGES, None)
    assert venv is not None
    spares = venv.parent / shared_env.SPARES
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    dead, alive = spares / f".tmp-{gone.pid}-abc", spares / f".tmp-{os.getpid()}-def"
    for scratch in (dead, alive):
        (scratch / "bin").mkdir(parents=True)
    assert not take_spare(venv, tmp_path / "de")  # half-made ones are not spares
    assert make_spares(venv, 1) == 1
    assert not dead.exists() and alive.exists()  # a maker still running keeps its scratch
    assert take_spare(venv, tmp_path / "de") and (tmp_path / "de" / "bin" / "python").exists()
