"""Before Airflow starts, `dag-factory run` builds the shared environment, or clones it ahead of time."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.compute import shared_env
from dag_factory.local.run import _prebuild_environment, prepare_job
from dag_factory.ops.deploy import deploy_project
from tests.local.projects import probe_project

pytestmark = pytest.mark.integration  # builds and clones real environments with uv


@pytest.mark.usefixtures("uv_on_path")
def test_a_first_run_builds_the_environment_and_a_rerun_clones_it_for_the_first_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAG_FACTORY_CACHE_DIR", raising=False)  # the default: <root>/envs
    spec, platform = probe_project(tmp_path, "prebuild", ["de", "fr", "nl"])  # max_parallel 2
    job = prepare_job(spec, "local", platform, [])
    deploy_project(job.loaded, job.env)  # the requirements are read from the deployed code, as run_local does
    envs = tmp_path / "root" / "envs"

    first = _prebuild_environment(job.plan)
    assert first is not None
    first.join()
    built = list(envs.glob("*/venv"))
    assert len(built) == 1  # built; the tasks clone it as soon as it is there
    assert not (built[0].parent / shared_env.SPARES).exists()

    again = _prebuild_environment(job.plan)
    assert again is not None
    again.join()
    spares = sorted((built[0].parent / shared_env.SPARES).iterdir())
    assert len(spares) == 2  # one clone for each value of the first lane
    assert all((spare / "bin" / "python").exists() for spare in spares)


def test_nothing_is_built_or_cloned_when_sharing_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", "off")
    spec, platform = probe_project(tmp_path, "prebuild", ["de"])
    job = prepare_job(spec, "local", platform, [])
    deploy_project(job.loaded, job.env)
    for _ in range(2):
        thread = _prebuild_environment(job.plan)
        assert thread is not None
        thread.join()
    assert not (tmp_path / "root" / "envs").exists()
