"""What we would publish works when installed: the wheel, not the checkout, in a clean venv.

The wheel is built once per test process; each venv is installed from it (not editable) at the versions
of constraints.txt (uv's cache: seconds), and every command runs from a temporary folder with no checkout
on ``sys.path``. The core alone (no extra) validates and plans without Airflow, boto3, DuckDB or pyarrow;
with the [airflow] extra the CLI, the schema, the plugin entry point and a generated DAG file work.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.installs import build_wheel, clean_env, uv
from tests.paths import REPO

pytestmark = pytest.mark.integration

CONFIGS = REPO / "project_configs"
SPEC = CONFIGS / "churn-model.yaml"
PLATFORM = CONFIGS / "platform.yaml"
OPTIONAL = ("airflow", "boto3", "duckdb", "pyarrow")

@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))

def _venv(where: Path, requirement: str) -> Path:
    """A fresh venv with `requirement` (the wheel, with or without extras) at constraints.txt's versions."""
    subprocess.run([uv(), "venv", "--quiet", "-p", sys.executable, str(where)], check=True, timeout=120)
    subprocess.run(
        [uv(), "pip", "install", "--quiet", "-p", str(where / "bin" / "python"), requirement,
         "-c", str(REPO / "constraints.txt")],
        check=True, capture_output=True, text=True, env=clean_env(), timeout=600,
    )  # fmt: skip
    return where

class Installed:
    def __init__(self, venv: Path, cwd: Path) -> None:
        self.venv, self.cwd = venv, cwd

    def run(
        self, program: str, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / program), *map(str, args)], cwd=self.cwd, capture_output=True, text=True,
            env=clean_env(**(env or {})), timeout=300,
        )  # fmt: skip

    def python(self, code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("python", "-c", code, env=env)

    def ok(self, program: str, *args: str | Path) -> str:
        done = self.run(program, *args)
        assert done.returncode == 0, f"{program} {args}: {done.stdout}{done.stderr}"
        return done.stdout

def _importable(installed: Installed, modules: Sequence[str]) -> list[str]:
    code = (
        "import importlib.util, json; "
        f"print(json.dumps([m for m in {list(modules)!r} if importlib.util.find_spec(m)]))"
    )
    done = installed.python(code)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))

def _from_site_packages(installed: Installed) -> None:
    location = installed.python("import dag_factory; print(dag_factory.__file__)").stdout.strip()
    assert location.startswith(str(installed.venv)) and "site-packages" in location, location

def test_core_installs_without_airflow_and_validates(wheel: Path, tmp_path: Path) -> None:
    core = Installed(_venv(tmp_path / "venv", str(wheel)), tmp_path)
    _from_site_packages(core)
    assert _importable(core, OPTIONAL) == []

    assert "1 file(s) checked: all valid" in core.ok("dag-factory", "validate", SPEC, "--platform", PLATFORM)
    assert "churn-model (prod, sagemaker backend)" in core.ok(
        "dag-factory", "plan", SPEC, "--platform", PLATFORM
    )
    # what needs an extra says which, with the pip line
    graph = core.run("dag-factory", "graph", SPEC, "--platform", PLATFORM, "-o", tmp_path / "dag.svg")
    assert graph.returncode == 2, graph.stdout + graph.stderr
    assert "dag-factory graph needs the [graph] extra (graphviz is not installed): " in graph.stderr
    assert "pip install 'dag-factory-notebooks[graph]'" in graph.stderr
    run = core.run("dag-factory", "run", CONFIGS / "churn-demo.yaml", "--no-notebooks")
    assert run.returncode == 2 and "dag-factory run needs the [local] extra" in run.stderr, run.stderr
    # doctor on a host without Airflow: the platform file is checked, the rest says what to install
    doctor = core.run("dag-factory", "doctor", "--platform", PLATFORM, "--env", "prod")
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert f"ok    platform file {PLATFORM}  (environments: local, preprod, prod)" in doctor.stdout
    assert (
        "FAIL  Airflow checks (environment, plugin, connections, pool, AWS)  (not run: Airflow is not "
        "installed here (pip install 'dag-factory-notebooks[airflow]'))"
    ) in doctor.stdout.splitlines()

def test_wheel_installs_and_runs(wheel: Path, tmp_path: Path) -> None:
    installed = Installed(
        _venv(tmp_path / "venv", f"dag-factory-notebooks[airflow] @ {wheel.as_uri()}"), tmp_path
    )
    _from_site_packages(installed)
    assert _importable(installed, OPTIONAL) == ["airflow", "boto3", "pyarrow"]  # DuckDB is [local]

    assert installed.ok("dag-factory", "--version").startswith("dag-factory 0.")
    installed.ok("dag-factory", "validate", SPEC, "--platform", PLATFORM)
    # the JSON Schema is the one the repository publishes (schemas/, from the same models)
    assert (
        installed.ok("dag-factory", "schema") == (REPO / "schemas" / "notebook-job.schema.json").read_text()
    )
    schemas = tmp_path / "schemas"
    installed.ok("dag-factory", "schema", "-o", schemas)
    for name in ("notebook-job.schema.json", "platform.schema.json"):
        assert (schemas / name).read_text() == (REPO / "schemas" / name).read_text()

    project = tmp_path / "project"
    shutil.copytree(REPO / "examples" / "churn-demo", project)
    installed.ok("dag-factory", "init", project, "--yes")
    assert sorted(p.name for p in project.glob("*.yaml")), list(project.iterdir())

    # the demo's example project lives in a checkout: from a wheel, demo says so (exit 2), and runs nothing
    demo = installed.run("dag-factory", "demo")
    assert demo.returncode == 2 and "source checkout" in demo.stderr, demo.stdout + demo.stderr

    # Airflow finds the plugin through the entry point, and a generated DAG file imports
    plugin = installed.python(
        "from importlib.metadata import entry_points\n"
        "(ep,) = [e for e in entry_points(group='airflow.plugins') if e.name == 'dag_factory']\n"
        "print(ep.load().name)"
    )
    assert plugin.returncode == 0 and plugin.stdout.strip() == "dag_factory", plugin.stderr
    dags = tmp_path / "dags"
    installed.ok("dag-factory", "dags", SPEC, "--platform", PLATFORM, "--env", "prod", "-o", dags)
    (dag_file,) = dags.glob("*.py")
    loaded = installed.python(
        f"import runpy; dag = runpy.run_path({str(dag_file)!r})['dag']; print(dag.dag_id, len(dag.tasks))",
        env={"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split()[0] == "churn-model"
