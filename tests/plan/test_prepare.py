"""The prepare step installs a set of packages into an environment once: each value's prepare on a shared
instance, a retried prepare and a re-run on the same environment skip the installer; a changed set, a
failed install or another environment install again."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from dag_factory.plan.guard import EXIT_MISSING_INPUT, StepBounds, guarded
from dag_factory.plan.scripts import INSTALLED_STAMP, HostLayout, prepare_command

ALREADY = "prepare: this environment already has these packages (an earlier prepare installed them)"


# stands in for pip: records each call in the active environment, fails as pip does on a missing
# requirements file, and on request
FAKE_PIP = """#!/bin/sh
echo "$*" >> "$VIRTUAL_ENV/installs.log"
if [ "$1" = "-r" ] && [ ! -f "$2" ]; then echo "ERROR: Could not open requirements file: $2" >&2; exit 1; fi
[ -z "$FAIL_INSTALL" ]
"""


def _layout(tmp_path: Path, env: Path) -> HostLayout:
    source = tmp_path / "code"
    (source / "notebooks").mkdir(parents=True, exist_ok=True)
    pip = tmp_path / "fake-pip"
    pip.write_text(FAKE_PIP)
    pip.chmod(0o755)
    return HostLayout(
        workdir=str(tmp_path / "work"),
        activate=f"source {env}/bin/activate",
        sync=f"mkdir -p {tmp_path}/work/project && cp -R {source}/. {tmp_path}/work/project/",
        install=str(pip),
    )


def _env(tmp_path: Path, name: str) -> Path:
    env = tmp_path / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    return env


def _guarded(command: str, tmp_path: Path) -> str:
    """The prepare step as its task runs it: under the guard, with the tools (its checks, its installs)."""
    return guarded(command, StepBounds(str(tmp_path / "work"), "prepare", 600, 3600))


def _prepare(tmp_path: Path, env: Path, *, fail: bool = False) -> subprocess.CompletedProcess[str]:
    command = _guarded(prepare_command(_layout(tmp_path, env), "2.7.0", "requirements.txt"), tmp_path)
    environ = {**os.environ, "FAIL_INSTALL": "1" if fail else ""}
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=environ)


def _installs(env: Path) -> list[str]:
    log = env / "installs.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_second_prepare_in_the_same_environment_skips_the_installs(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "requirements.txt").write_text("pandas==2.2.3\n")
    env = _env(tmp_path, "env")

    first = _prepare(tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert _installs(env) == [
        "papermill==2.7.0 ipykernel nbconvert==7.17.2",
        f"-r {tmp_path}/work/project/requirements.txt",
    ]
    assert ALREADY not in first.stdout
    assert len((env / INSTALLED_STAMP).read_text().split()) == 1

    second = _prepare(tmp_path, env)
    assert second.returncode == 0, second.stderr
    assert ALREADY in second.stdout
    assert len(_installs(env)) == 2  # nothing installed again

    # another environment knows nothing of it
    other = _env(tmp_path, "other")
    assert ALREADY not in _prepare(tmp_path, other).stdout and len(_installs(other)) == 2


def test_a_changed_requirements_file_installs_again(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    requirements = tmp_path / "code" / "requirements.txt"
    requirements.write_text("pandas==2.2.3\n")
    env = _env(tmp_path, "env")
    assert _prepare(tmp_path, env).returncode == 0

    requirements.write_text("pandas==2.2.3\nscikit-learn==1.5.2\n")
    again = _prepare(tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert ALREADY not in again.stdout and len(_installs(env)) == 4
    assert len((env / INSTALLED_STAMP).read_text().split()) == 2


def test_a_failed_install_leaves_no_stamp_and_the_retry_installs(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "requirements.txt").write_text("no-such-package-dagf==1.0\n")
    env = _env(tmp_path, "env")

    failed = _prepare(tmp_path, env, fail=True)
    assert failed.returncode == 1
    assert not (env / INSTALLED_STAMP).exists()

    retried = _prepare(tmp_path, env)
    assert retried.returncode == 0, retried.stderr
    assert ALREADY not in retried.stdout and (env / INSTALLED_STAMP).exists()


def test_a_missing_requirements_file_is_a_missing_input(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "notebook.ipynb").write_text("{}")
    env = _env(tmp_path, "env")

    result = _prepare(tmp_path, env)
    assert result.returncode == EXIT_MISSING_INPUT
    assert result.stderr.splitlines()[-1] == (
        "dag-factory: missing input: the requirements file requirements.txt is not in the deployed project"
    )
    assert _installs(env) == [] and not (env / INSTALLED_STAMP).exists()


def test_an_empty_deployed_project_is_a_missing_input(tmp_path: Path) -> None:
    env = _env(tmp_path, "env")
    layout = _layout(tmp_path, env)  # its code folder exists, with nothing in it
    (tmp_path / "code" / "notebooks").rmdir()
    command = _guarded(prepare_command(replace(layout, code="s3://code/churn/versions/abc"), "2.7.0", None),
                       tmp_path)  # fmt: skip
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert result.returncode == EXIT_MISSING_INPUT
    assert result.stderr.splitlines()[-1] == (
        "dag-factory: missing input: the deployed project is empty: s3://code/churn/versions/abc has no "
        "files (deploy the project first: dag-factory deploy)"
    )


def test_an_environment_whose_prefix_is_unknown_installs_every_time(tmp_path: Path) -> None:
    """A `python` that does not say its prefix (a wrapper, a broken env): no stamp anywhere (not in `/`),
    and every prepare installs."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "requirements.txt").write_text("pandas==2.2.3\n")
    env = _env(tmp_path, "env")
    silent = tmp_path / "silent-bin"
    silent.mkdir()
    (silent / "python").write_text("#!/bin/sh\nexit 0\n")
    (silent / "python").chmod(0o755)
    layout = _layout(tmp_path, env)
    layout = replace(layout, activate=f"{layout.activate}; export PATH={silent}:$PATH")
    command = _guarded(prepare_command(layout, "2.7.0", "requirements.txt"), tmp_path)
    for _ in range(2):
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert ALREADY not in done.stdout
    assert len(_installs(env)) == 4
    assert not Path("/", INSTALLED_STAMP).exists() and not (env / INSTALLED_STAMP).exists()
