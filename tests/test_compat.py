"""The compatibility matrix: the wheel against the lowest Airflow release pyproject.toml claims, one in
between and the newest, each resolved fresh by uv with its providers in a venv of its own.

In each venv, from outside the checkout (tests/compat_checks.py, run isolated): the demo's and the churn
model's DAGs build, survive that release's serialization, resolve their extra links through the classes
the plugin registers, and load in a DagBag without import errors; then one `dag-factory run` of the demo
job (one value) goes through that release's scheduler, Execution API and task runner into DuckDB.

The lowest installs every runtime dependency at its declared floor too (each named `==` its `>=`), so
every floor in pyproject.toml is what runs. `make test` (CI) runs the lowest and the checks in its own
venv (constraints.txt: the newest; the suite's local-run tests run the demo job there); `make
test-compat` runs every release. Venvs are kept in the run's cache (DAG_FACTORY_CACHE_DIR), keyed by
pyproject.toml: a re-run reinstalls only the wheel.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from dag_factory.local.execution_server import STATE_FILE, stop_execution_api
from dag_factory.settings import CACHE_DIR
from tests import compat_checks
from tests.installs import build_wheel, clean_env, uv
from tests.local.projects import RUN_DATE, demo_project
from tests.paths import REPO

pytestmark = pytest.mark.integration

CONFIGS = REPO / "project_configs"
PACKAGE = "dag-factory-notebooks"
NOTEBOOK_LINKS = ["Executed notebook", "Notebook source", "Run report"]


def _floors() -> dict[str, str]:
    """Every runtime dependency's declared lowest version (`>=`), core and extras."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = project["dependencies"] + [r for extra, reqs in extras.items() if extra != "test" for r in reqs]
    floors = {}
    for line in runtime:
        requirement = Requirement(line)
        if requirement.name != PACKAGE:
            (low,) = [s.version for s in requirement.specifier if s.operator == ">="]
            floors[canonicalize_name(requirement.name)] = low
    return floors


def _pinned(name: str) -> str:
    found = re.search(rf"^{re.escape(name)}==(\S+)$", (REPO / "constraints.txt").read_text(), re.MULTILINE)
    assert found, f"{name} is not pinned in constraints.txt"
    return found.group(1)


FLOORS = _floors()
LOWEST, NEWEST = FLOORS["apache-airflow"], _pinned("apache-airflow")
# Airflow 3.2.x does not cap fastapi: a fresh resolve brings fastapi 0.163+, under which 3.2's Execution
# API fails at start (pydantic: "TITerminalStatePayload needs a discriminator field"). Airflow 3.3.0 caps
# it below 0.137 in its own metadata; for 3.2 so do we here, as its users must (docs/install.md#versions).
BEFORE_3_3 = ["fastapi<0.137"]


@dataclass(frozen=True)
class Release:
    airflow: str
    lowest: bool = False  # every runtime dependency at its declared floor
    fresh: bool = True  # False: this test run's own venv (constraints.txt)


MATRIX = pytest.mark.matrix
RELEASES = [
    pytest.param(Release(LOWEST, lowest=True), id=f"lowest-{LOWEST}"),
    pytest.param(Release("3.3.0"), id="between-3.3.0", marks=MATRIX),
    pytest.param(Release(NEWEST), id=f"newest-{NEWEST}", marks=MATRIX),
    pytest.param(Release(NEWEST, fresh=False), id=f"this-venv-{NEWEST}"),
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One xdist worker builds a venv; another wanting the same one waits for it."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _venv(release: Release, wheel: Path) -> Path:
    """The release's venv (from the run's cache when pyproject.toml is unchanged), with this wheel."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    name = f"airflow-{release.airflow}{'-lowest' if release.lowest else ''}-{key}"
    venv = Path(os.environ[CACHE_DIR]) / "compat" / name
    venv.parent.mkdir(parents=True, exist_ok=True)
    # uv's --resolution lowest-direct does not reach a wheel's own requirements: name the floors
    floors = [f"{dependency}=={low}" for dependency, low in FLOORS.items()]
    caps = BEFORE_3_3 if tuple(map(int, release.airflow.split(".")[:2])) < (3, 3) else []
    with _locked(venv.parent / f"{name}.lock"):  # not with_suffix: the name has dots
        if not (venv / "bin" / "python").exists():
            subprocess.run([uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
        done = subprocess.run(
            [uv(), "pip", "install", "--quiet", "-p", str(venv / "bin" / "python"),
             "--reinstall-package", PACKAGE, f"{PACKAGE}[all] @ {wheel.as_uri()}",
             f"apache-airflow=={release.airflow}", *caps, *(floors if release.lowest else [])],
            capture_output=True, text=True, env=clean_env(), timeout=900,
        )  # fmt: skip
    assert done.returncode == 0, f"the wheel does not install with Airflow {release.airflow}:\n{done.stderr}"
    return venv


def _installed(venv: Path) -> dict[str, str]:
    listed = subprocess.run(
        [uv(), "pip", "list", "--format", "json", "-p", str(venv / "bin" / "python")],
        check=True, capture_output=True, text=True, env=clean_env(),
    )  # fmt: skip
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed.stdout)}


def _checks(bin_dir: Path, env: dict[str, str], tmp_path: Path, specs: list[list[str]]) -> dict[str, Any]:
    args, found = tmp_path / "compat-args.json", tmp_path / "compat-found.json"
    args.write_text(json.dumps({"specs": specs, "dags": str(tmp_path / "dags")}))
    done = subprocess.run(
        [str(bin_dir / "python"), "-P", str(REPO / "tests" / "compat_checks.py"), str(args), str(found)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return dict(json.loads(found.read_text()))


def _reference(specs: list[list[str]]) -> dict[str, Any]:
    """The same checks under this run's Airflow (constraints.txt), to compare a release's with."""
    from airflow import plugins_manager

    links = {type(link) for link in plugins_manager.get_operator_extra_links()}
    checked = [compat_checks.check_dag(*spec, plugin_links=links) for spec in specs]
    return {found["dag_id"]: json.loads(json.dumps(found)) for found in checked}


def _run_demo(bin_dir: Path, env: dict[str, str], spec: Path, platform: Path) -> None:
    value = "de"
    try:
        done = subprocess.run(
            [str(bin_dir / "dag-factory"), "run", str(spec), "--platform", str(platform),
             "--only", value, "--date", RUN_DATE.isoformat()],
            cwd=spec.parent, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
    finally:
        for state in spec.parent.rglob(STATE_FILE):  # the run leaves its Execution API up
            stop_execution_api(state.parent)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert f"churn-demo {RUN_DATE}: success" in done.stdout
    customers = yaml.safe_load(spec.read_text())["fan_out"]["parameters"][value]["n_customers"]
    warehouse = yaml.safe_load(platform.read_text())["environments"]["local"]["root"]
    with duckdb.connect(str(Path(warehouse) / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT country, count(*) FROM analytics.churn_scores GROUP BY 1").fetchall()
    assert rows == [(value, customers)]


@pytest.mark.parametrize("release", RELEASES)
def test_airflow_release_builds_serializes_loads_and_runs_the_demo(
    release: Release, wheel: Path, tmp_path: Path
) -> None:
    env = {"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    if release.fresh:
        venv = _venv(release, wheel)
        # its own tools first on PATH (a local run starts `airflow`); uv, which it needs too, after them
        bin_dir = venv / "bin"
        env = clean_env(**env, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        installed = _installed(venv)
        if release.lowest:  # every declared floor is what this venv runs
            assert {name: Version(installed[name]) for name in FLOORS} == {
                name: Version(low) for name, low in FLOORS.items()
            }
    else:  # this run's venv, as it is (in a worktree, PYTHONPATH names the checkout under test)
        bin_dir, env = Path(sys.executable).parent, {**os.environ, **env}
    spec, platform = demo_project(tmp_path)
    specs = [[str(spec), str(platform), "local"],
             [str(CONFIGS / "churn-model.yaml"), str(CONFIGS / "platform.yaml"), "prod"]]  # fmt: skip

    found = _checks(bin_dir, env, tmp_path, specs)
    assert (found["airflow"], found["plugin"]) == (release.airflow, "dag_factory")
    for dag in found["dags"].values():
        assert dag["round_trip"] == {"tasks": dag["tasks"], "edges": dag["edges"]}
        assert set(map(tuple, dag["extra_links"].values())) == {tuple(NOTEBOOK_LINKS)}
        assert dag["unregistered_link_classes"] == []
    assert found["dags"] == _reference(specs)  # the same DAGs, edges and link URLs as under constraints.txt
    assert found["dagbag"] == {"dag_ids": sorted(found["dags"]), "import_errors": {}}

    if release.fresh:  # in this venv, tests/local/test_run.py's piped_run runs the same command
        _run_demo(bin_dir, env, spec, platform)
