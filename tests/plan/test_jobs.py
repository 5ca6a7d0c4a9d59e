"""The `sagemaker-job` backend's plan: per group one job running the same prepare and notebook scripts as
the other backends (plan/scripts.py, under plan/guard.py), then the deliveries; the spec is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dag_factory.errors import SpecError
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.guard import RUN_NOTEBOOK, install_tools
from dag_factory.plan.model import DeliverArgs, JobArgs
from dag_factory.plan.planner import _job_layout, plan_dag
from dag_factory.plan.scripts import prepare_command
from tests.job_platform import write_job_platform
from tests.paths import REPO

EXAMPLE = REPO / "project_configs" / "churn-model.yaml"


def _plan(tmp_path: Path, spec: Path = EXAMPLE, **platform):  # type: ignore[no-untyped-def]
    return plan_dag(load_spec(spec, load_platform(write_job_platform(tmp_path, **platform))), "preprod")


def test_each_value_is_one_job_then_its_deliveries(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.backend == "sagemaker-job"
    assert len(plan.groups) == 20
    for group in plan.groups:
        assert [(t.task_id, t.kind, t.upstream) for t in group.tasks] == [
            ("run_job", "job", ()),
            ("deliver_churn_scores", "deliver", ("run_job",)),
        ]
    job = plan.groups[0].tasks[0].args
    assert isinstance(job, JobArgs)
    assert (job.instance_type, job.timeout_s, job.notebooks) == (
        "ml.t3.large", 4 * 3600, ["notebooks/01_features.ipynb", "notebooks/02_train.ipynb"],
    )  # fmt: skip
    # a lane waits for the job of the value max_parallel places before it
    assert [g.after_group for g in plan.groups[:11]] == [None] * 10 + ["de"]
    assert plan.estimate.instances == 20 and plan.estimate.usd_per_hour == 0.1


def test_the_jobs_script_is_the_prepare_and_notebook_steps_of_the_other_backends(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    job = plan.groups[0].tasks[0].args
    assert isinstance(job, JobArgs)
    workdir = "/opt/ml/dag-factory/{{ run_id | replace(\":\", \"_\") }}/de/{{ ti.try_number }}"
    script = job.script
    assert install_tools(workdir).rstrip("\n") in script  # the guard and its tools, once
    # where things are is the backend's only own part of the script
    env = load_platform(tmp_path / "platform.yaml").settings.environments["preprod"]
    spec = load_spec(EXAMPLE).spec
    layout = _job_layout(env, "churn-model", spec, "de")  # type: ignore[arg-type]
    assert layout.workdir == workdir
    assert prepare_command(layout, "2.7.0", "requirements.txt") in script
    # each notebook, in order, each step in a subshell whose failure ends the job with its status
    first, second = script.index(f"{RUN_NOTEBOOK} "), script.rindex(f"{RUN_NOTEBOOK} ")
    assert "notebooks/01_features.ipynb" in script[first:second]
    assert "notebooks/02_train.ipynb" in script[second:]
    assert script.count(') || exit "$?"') == 3
    assert "s3://automated-notebook-jobs/churn-model/versions/{{ code_version(dag_run) }}/" in script


def test_a_shared_group_is_one_job_for_every_value(tmp_path: Path) -> None:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["compute"]["isolation"] = "shared"
    spec["project_dir"] = str(REPO / "examples" / "churn-demo")
    (tmp_path / "spec").mkdir()
    path = tmp_path / "spec" / "churn-model.yaml"
    path.write_text(yaml.safe_dump(spec))
    plan = _plan(tmp_path, path)
    [group] = plan.groups
    job = group.tasks[0].args
    assert isinstance(job, JobArgs)
    assert len(job.notebooks) == 40 and len(job.output_prefixes) == 20
    assert all(isinstance(t.args, DeliverArgs) for t in group.tasks[1:]) and len(group.tasks) == 21


def test_a_spot_jobs_max_wait_must_cover_the_timeout(tmp_path: Path) -> None:
    platform = load_platform(write_job_platform(tmp_path, managed_spot={"max_wait": "2h"}))
    with pytest.raises(SpecError) as info:
        load_spec(EXAMPLE, platform)
    assert [d.render() for d in info.value.diagnostics] == [
        f"{EXAMPLE}:23:12: compute.timeout: timeout '4h' is longer than environment 'preprod' lets a spot "
        "job wait and run (managed_spot.max_wait '2h') (use a timeout of at most 2h, or a longer "
        "managed_spot.max_wait in platform.yaml)"
    ]
