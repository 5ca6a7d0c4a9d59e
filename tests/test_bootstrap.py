"""`make install` (scripts/bootstrap.sh) says what it installs: each step, Airflow's version, uv's summary
(the full package list goes to .venv/install.log). Run with a stand-in `uv` on PATH: no download."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.paths import REPO

FAKE_UV = """#!/bin/sh
# a stand-in for uv: `uv venv` makes the interpreter, `uv pip install` prints as uv does
case "$1" in
  venv) mkdir -p .venv/bin && ln -sf "$(command -v python3)" .venv/bin/python ;;
  pip) echo "Resolved 2 packages in 1ms" >&2; echo "Installed 2 packages in 2ms" >&2;
       echo " + apache-airflow==3.3.2" >&2; echo " + papermill==2.7.0" >&2 ;;
esac
"""


@pytest.mark.integration
def test_install_says_what_it_installs(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap.sh", tmp_path / "scripts")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copy(REPO / "constraints.txt", tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV)
    (bin_dir / "uv").chmod(0o755)
    done = subprocess.run(
        ["bash", "scripts/bootstrap.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    airflow = next(
        line
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line.startswith("apache-airflow==")
    )
    assert "creating .venv with python3.11" in lines
    assert lines[lines.index("creating .venv with python3.11") + 1 :] == [
        f"installing dag-factory with {airflow}, its providers, papermill, DuckDB and the test tools into "
        ".venv (1-3 min the first time; the list: .venv/install.log)",
        "  Resolved 2 packages in 1ms",
        "  Installed 2 packages in 2ms",
    ]
    assert " + papermill==2.7.0" in (tmp_path / ".venv" / "install.log").read_text()
    assert (tmp_path / ".venv" / ".installed").exists()
