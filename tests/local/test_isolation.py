"""Values share an environment's files, never their work: through `dag-factory run` with real Airflow.

Two projects with the same requirements use one shared environment; each value runs in a clone of it
in a work directory of its own. A notebook that installs a package at run time changes its own clone
only: not the other value's, not the shared environment, not a later project's run.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dag_factory.local.execute import RunResult
from dag_factory.local.execution_server import STATE_FILE
from dag_factory.local.run import prepare_job, run_local
from tests.local.projects import probe_project

pytestmark = pytest.mark.integration

def _run(spec: Path, platform: Path) -> tuple[dict[str, dict[str, Any]], RunResult]:
    job = prepare_job(spec, "local", platform, [])
    result = run_local(job, dt.date(2026, 1, 5), True, Console(quiet=True))  # --keep: look inside after
    assert result.state == "success", result.error or result.log_path
    runs = job.root / "runs" / job.plan.dag_id / result.run_id
    seen = {
        value: json.loads((runs / value / "seen.json").read_text())
        for value in (g.group_id for g in job.plan.groups)
    }
    return seen, result


def _execution_api(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / "airflow" / STATE_FILE).read_text()))


def _imports_dfiso(venv: Path) -> bool:
    code = "import importlib.util; print(importlib.util.find_spec('dfiso') is not None)"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip() == "True"


def test_values_and_projects_do_not_see_each_others_files_or_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAG_FACTORY_CACHE_DIR", raising=False)  # the default: <root>/envs
    first, result = _run(*probe_project(tmp_path, "isolation-a", ["de", "fr"]))
    assert result.marks["execution_api_reused"] == "False"  # a new home: its first run starts it
    server = _execution_api(tmp_path / "root")
    de, fr = first["de"], first["fr"]
    assert de["dfiso"] is True  # installed at run time, importable in its own value
    assert de["prefix"] != fr["prefix"] and de["cwd"] != fr["cwd"]
    assert de["others"] == [] and fr["others"] == []  # no other value's files in its work directory
    assert not _imports_dfiso(Path(fr["prefix"]))  # the other value's clone did not get it
    envs = list((tmp_path / "root" / "envs").glob("*/venv"))
    assert len(envs) == 1 and not _imports_dfiso(envs[0])  # nor the shared environment
    assert not list(envs[0].glob("lib/python*/site-packages/dfiso*"))

    # another project, same requirements
    later, result = _run(*probe_project(tmp_path, "isolation-b", ["nl"]))
    assert later["nl"]["dfiso"] is False
    assert list((tmp_path / "root" / "envs").glob("*/venv")) == envs  # it used the same environment
    assert later["nl"]["prefix"] not in (de["prefix"], fr["prefix"])  # in a clone of its own
    # ... and the Execution API the first run started: same process, same URL, not a new one
    assert result.marks["execution_api_reused"] == "True"
    assert _execution_api(tmp_path / "root") == server
