"""Specs -> Airflow DAGs: structure, trigger rules, teardowns, pools, templates, serialization."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from airflow.sdk import CronTriggerTimetable, TriggerRule

from dag_factory.airflow.build import build_dag, dag_from_spec
from dag_factory.airflow.dag_files import stale_dag_files
from dag_factory.load.files import spec_files
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.planner import plan_dag
from tests.paths import REPO

CONFIGS = REPO / "project_configs"
SPECS = spec_files([CONFIGS])
ENVS = ["local", "preprod", "prod"]


def _dag(spec: str, env: str):  # type: ignore[no-untyped-def]
    return dag_from_spec(CONFIGS / spec, env=env)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_builds_and_survives_serialization(spec: Path, env: str) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dag_from_spec(spec, env=env)
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert sorted(back.task_ids) == sorted(dag.task_ids)
    for task in dag.tasks:
        twin = back.get_task(task.task_id)
        assert twin.upstream_task_ids == task.upstream_task_ids
        assert twin.trigger_rule == task.trigger_rule
        assert twin.is_teardown == task.is_teardown


def test_per_country_example_has_20_groups_of_8_tasks() -> None:
    dag = _dag("churn-model.yaml", "prod")
    groups = [
        g for g in dag.task_group.children.values() if g.node_id not in ("report", "publish_churn_scores")
    ]
    assert len(groups) == 20
    de = sorted(t.split(".", 1)[1] for t in dag.task_ids if t.startswith("de."))
    assert de == sorted(
        [
            "create_instance",
            "resolve_ip",
            "prepare",
            "nb_01_features",
            "nb_02_train",
            "stop_instance",
            "delete_instance",
            "deliver_churn_scores",
        ]
    )
    assert dag.dag_id == "churn-model"
    assert dag.schedule == "0 4 * * MON"  # what the spec says, as the DAG (airflow.sdk.DAG) keeps it
    # what the scheduler runs on: a cron trigger at 04:00 on Mondays, not a data-interval timetable
    assert isinstance(dag.timetable, CronTriggerTimetable) and dag.timetable.expression == "0 4 * * MON"
    assert dag.catchup is False
    assert "growth" in dag.tags and "env:prod" in dag.tags


def test_task_order_trigger_rules_and_teardowns() -> None:
    dag = _dag("churn-model.yaml", "prod")
    up = {
        t: dag.get_task(f"de.{t}").upstream_task_ids
        for t in ["resolve_ip", "prepare", "nb_01_features", "nb_02_train"]
    }
    assert up == {
        "resolve_ip": {"de.create_instance"},
        "prepare": {"de.resolve_ip"},
        "nb_01_features": {"de.prepare"},
        "nb_02_train": {"de.nb_01_features"},
    }
    create, stop, delete = (
        dag.get_task(f"de.{t}") for t in ["create_instance", "stop_instance", "delete_instance"]
    )
    resolve, prepare = dag.get_task("de.resolve_ip"), dag.get_task("de.prepare")
    assert create.is_setup and resolve.is_setup and prepare.is_setup
    assert stop.is_teardown and delete.is_teardown
    # ALL_DONE so an instance AWS made before create failed is still removed
    assert stop.trigger_rule == "all_done" and delete.trigger_rule == "all_done"
    setups = {"de.create_instance", "de.resolve_ip", "de.prepare"}
    assert stop.upstream_task_ids == setups | {"de.nb_02_train"}
    assert delete.upstream_task_ids == setups | {"de.stop_instance"}
    deliver = dag.get_task("de.deliver_churn_scores")
    assert deliver.upstream_task_ids == {"de.nb_02_train"}
    assert deliver.trigger_rule == "all_success"


@pytest.mark.parametrize("notebook", ["nb_01_features", "nb_02_train"])
def test_clearing_a_notebook_clears_its_values_whole_setup_chain(notebook: str) -> None:
    """What Airflow clears with a task (its default Clear) is the DAG's partial_subset: for a notebook,
    a fresh instance, its IP and host key, the code and packages, and the teardowns; no other value."""
    dag = _dag("churn-model.yaml", "prod")
    cleared = dag.partial_subset([f"fr.{notebook}"], include_upstream=False, include_downstream=False)
    assert set(cleared.task_dict) == {
        f"fr.{task}"
        for task in ("create_instance", "resolve_ip", "prepare", notebook, "stop_instance", "delete_instance")
    }


def test_lanes_bound_concurrent_instances_by_max_parallel() -> None:
    dag = _dag("churn-model.yaml", "prod")  # 20 values, max_parallel 10
    starts = [t for t in dag.tasks if t.task_id.endswith(".create_instance")]
    chained = {t.task_id: t.upstream_task_ids for t in starts if t.upstream_task_ids}
    assert len(starts) - len(chained) == 10
    assert chained["se.create_instance"] == {"de.delete_instance"}
    assert dag.get_task("se.create_instance").trigger_rule == "all_done"


def test_a_lane_edge_is_labelled_as_a_lane_in_the_graph_the_ui_draws() -> None:
    """The edges that keep max_parallel exact read as lanes, not as data passed between groups; the edge
    stays task to task (the next group does not wait for the previous one's deliveries)."""
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.dag_edges import dag_edges  # what the api-server's graph (structure) route returns

    dag = _dag("churn-model.yaml", "prod")  # 20 values, max_parallel 10
    lanes = {
        (up, t.task_id)
        for t in dag.tasks
        if t.task_id.endswith(".create_instance")
        for up in t.upstream_task_ids
    }
    assert len(lanes) == 10 and ("de.delete_instance", "se.create_instance") in lanes
    labelled = {(up, down): info for up, downs in dag.edge_info.items() for down, info in downs.items()}
    assert labelled == {edge: {"label": "lane: max_parallel 10"} for edge in lanes}
    assert dag.get_task("se.create_instance").upstream_task_ids == {"de.delete_instance"}
    assert not dag.task_group_dict["se"].upstream_group_ids  # no group >> group
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for up, down in lanes:
        assert back.get_edge_info(up, down) == {"label": "lane: max_parallel 10"}
    drawn = {(e["source_id"], e["target_id"]): e.get("label") for e in dag_edges(back)}
    assert {edge for edge, label in drawn.items() if label} == lanes
    assert {drawn[edge] for edge in lanes} == {"lane: max_parallel 10"}


def test_the_ui_lists_groups_by_id_not_in_the_specs_order() -> None:
    """Known limit, pinned so that an Airflow that keeps the order shows here: the DAG holds the groups
    in the spec's order, but Airflow 3.3 sorts a group's children by id when it deserializes the DAG
    (serialization/serialized_objects.py, deserialize_task_group: ``sorted(encoded_group["children"]``),
    and the graph and grid the api-server sends (api_fastapi/core_api/services/ui/task_group.py) sort
    that topologically (the default ``[api] grid_view_sorting_order``) or alphabetically: nothing a DAG
    sets keeps its own order. The DAG's docs list the values in the spec's order."""
    from airflow.api_fastapi.core_api.services.ui.task_group import (
        task_group_to_dict,
        task_group_to_dict_grid,
    )
    from airflow.serialization.serialized_objects import DagSerialization

    spec_order = ["de", "fr", "nl", "be", "it"]
    dag = dag_from_spec(CONFIGS / "churn-demo.yaml", env="local")  # five values, five at once: no lanes
    assert list(dag.task_group.children)[:5] == spec_order
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for to_dict in (task_group_to_dict, task_group_to_dict_grid):
        shown = [child["id"] for child in to_dict(back.task_group)["children"]]
        assert shown[:5] == sorted(spec_order)
    # with lanes, a group comes after the group it waits for (cz after es), else by id: neither order
    values = load_spec(CONFIGS / "churn-model.yaml", load_platform(CONFIGS / "platform.yaml")).spec.values
    model = DagSerialization.from_dict(DagSerialization.to_dict(_dag("churn-model.yaml", "prod")))
    shown = [child["id"] for child in task_group_to_dict(model.task_group)["children"]][: len(values)]
    assert shown[:3] == ["at", "be", "ch"] and shown not in (values, sorted(values))
    assert all(shown.index(value) > shown.index(values[i - 10]) for i, value in enumerate(values) if i >= 10)


def test_sagemaker_tasks_are_reschedule_sensors_in_the_api_pool() -> None:
    from dag_factory.airflow.sensors import CreateNotebookInstanceSensor

    dag = _dag("churn-model.yaml", "prod")
    for name in ["create_instance", "resolve_ip", "stop_instance", "delete_instance"]:
        assert dag.get_task(f"de.{name}").pool == "sagemaker_api"
    create = dag.get_task("de.create_instance")
    assert isinstance(create, CreateNotebookInstanceSensor)
    # one API call per poke; between pokes neither a worker slot nor a pool slot is held
    assert create.mode == "reschedule" and create.poke_interval == 30 and create.timeout == 1800
    assert create.subnet_id == "subnet-0f1e2d3c4b5a60002"
    assert create.security_group_ids == ["sg-0f1e2d3c4b5a60002"]
    assert create.instance_type == "ml.m5.xlarge" and create.volume_size_gb == 30
    assert create.instance_tags == {"project": "churn-model", "owner": "growth-data-science", "env": "prod"}
    for name in ["stop_instance", "delete_instance"]:
        teardown = dag.get_task(f"de.{name}")
        assert teardown.mode == "reschedule" and teardown.retries == 3 and teardown.timeout == 1800


def test_create_tags_encode_run_time_values_for_aws() -> None:
    create = _dag("churn-model.yaml", "prod").get_task("de.create_instance")
    tags = create.tags({"run_id": "manual__2026-01-05T04:00:00+00:00~retry"})
    assert tags["run_id"] == "manual__2026-01-05T04:00:00+00:00=7Eretry"
    assert tags["dag-factory"] == "true" and tags["group"] == "de" and tags["env"] == "prod"
    assert int(tags["dag-factory-max-age"]) == create.max_age_s > 4 * 3600


def test_retries_back_off_exponentially() -> None:
    """What Airflow waits before each retry, asked of Airflow itself on the parsed DAG (what dag.test
    and a worker hold) and on its serialized twin (the scheduler's): retry_delay (5m) times 2 per try,
    with Airflow's jitter of up to twice that, capped at 1h; never more than the planner's bound, from
    which gc's max age comes. (``retry_exponential_backoff=True`` backs off only in the serialized copy:
    the parsed one reads it as a multiplier of 1.0.)"""
    import datetime as dt

    from airflow.models.taskinstance import TaskInstance
    from airflow.serialization.serialized_objects import DagSerialization

    from dag_factory.plan.planner import retry_delays_s

    dag = _dag("churn-model.yaml", "prod")
    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    end = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    task_ids = ["de.nb_01_features", "de.prepare", "de.create_instance", "de.delete_instance"]
    for task in [copy.get_task(task_id) for copy in (dag, scheduled) for task_id in task_ids]:
        assert task.retry_exponential_backoff == 2.0 and task.max_retry_delay.total_seconds() == 3600
        waits = []
        for try_number in range(1, 7):
            ti = TaskInstance(task, dag_version_id=None, run_id="scheduled__2026-01-05T04:00:00+00:00")
            ti.try_number, ti.end_date = try_number, end
            waits.append((ti.next_retry_datetime() - end).total_seconds())
        floors = [min(300 * 2 ** (n - 1), 3600) for n in range(1, 7)]  # 5m, 10m, 20m, 40m, 1h, 1h
        assert all(floor <= wait <= min(2 * floor, 3600) for floor, wait in zip(floors, waits, strict=True))
        assert waits[-1] == 3600 and waits[0] < waits[1] < waits[2], waits
        assert sum(waits[:3]) <= retry_delays_s(3, 300)


def test_ssh_tasks_take_the_resolved_ip_and_run_under_the_guard() -> None:
    from dag_factory.airflow.operators import GuardedSSHOperator
    from dag_factory.airflow.ssh import InstanceSSHOperator

    dag = _dag("churn-model.yaml", "prod")
    nb = dag.get_task("fr.nb_02_train")
    assert isinstance(nb, GuardedSSHOperator) and isinstance(nb, InstanceSSHOperator)
    assert (nb.host_keys, dag.get_task("fr.prepare").host_key) == ("accept-new", None)
    assert nb.host_key == "{{ ti.xcom_pull(task_ids='fr.prepare', key='host_key') }}"
    assert nb.remote_host == "{{ ti.xcom_pull(task_ids='fr.resolve_ip') }}"
    assert nb.cmd_timeout is None  # the guard bounds the notebook on the instance, not an idle timeout
    # notebooks[].timeout 2h, compute.timeout 4h
    assert "\nexec bash \"$tools/guard.sh\" nb_02_train 7200 14400 <<" in nb.command
    assert nb.execution_timeout.total_seconds() == 7200 + 90
    assert nb.infra_retries == 1 and nb.notebook_retries == 0 and nb.retries == 1
    assert nb.outputs_prefix == "s3://nb-output-prod/churn-model/{{ run_id }}/fr"
    assert "remote_host" in nb.template_fields and "outputs_prefix" in nb.template_fields
    assert "\nenter_project /home/ec2-user/SageMaker/job/project notebooks/02_train.ipynb\n" in nb.command
    output = "'s3://nb-output-prod/churn-model/{{ run_id }}/fr/02_train.ipynb'"
    project = "/home/ec2-user/SageMaker/job/project"
    assert f"\nrun_notebook {project} notebooks/02_train.ipynb {output} -k python3 -b " in nb.command
    prepare = dag.get_task("fr.prepare")
    assert (
        "aws s3 sync --delete --only-show-errors "
        "'s3://automated-notebook-prod/churn-model/versions/{{ code_version(dag_run) }}/'" in prepare.command
    )
    installs = f"\ninstall_once 'pip install --quiet' {project}/requirements.txt papermill==2.7.0 "
    assert installs in prepare.command
    assert prepare.outputs_prefix is None and prepare.execution_timeout.total_seconds() == 1800 + 90


def test_a_notebook_command_reads_first_as_its_notebook_output_and_parameters() -> None:
    """Airflow's Rendered Template of a notebook task: what it runs, where the executed notebook goes and
    with which parameters come first, and the whole command is a few lines (the guard and the helpers
    after papermill are installed once per value, by its prepare step's operator, not carried in the
    DAG)."""
    dag = _dag("churn-model.yaml", "prod")
    nb, prepare = dag.get_task("fr.nb_02_train"), dag.get_task("fr.prepare")
    assert nb.command.splitlines()[:8] == [
        "# dag-factory: notebook notebooks/02_train.ipynb, kernel python3",
        "# executed notebook: s3://nb-output-prod/churn-model/{{ run_id }}/fr/02_train.ipynb "
        "(its .html and .log beside it)",
        "# parameters, those the notebook declares (at run time also logical_date, run_id, output_prefix, "
        "then a manual run's overrides):",
        "#   lookback_days: 90",
        '#   country: "fr"',
        '#   env: "prod"',
        '#   aws_account_id: "444455556666"',
        "#   max_depth: 6",
    ]
    assert len(nb.command) < 3000, len(nb.command)  # Airflow cuts a rendered field at 4,096
    notebook_steps = [t for t in dag.tasks if t.task_id.split(".")[-1].startswith("nb_")]
    assert len(notebook_steps) == 40
    for task in notebook_steps:
        assert "dag-factory guard" not in task.command and "def explain_notebook_error" not in task.command
        assert 'exec bash "$tools/guard.sh"' in task.command
    # prepare's operator installs them (from the worker's package), then its command calls them too
    assert prepare.installs_tools == "/home/ec2-user/SageMaker/job"
    assert "# dag-factory guard" not in prepare.command and 'exec bash "$tools/guard.sh"' in prepare.command


def test_tasks_carry_no_copy_of_the_dags_params() -> None:
    """Airflow copies a DAG's params into each task and serializes every copy; the factory's tasks carry
    none (a task gets its DAG's params at run time): the trigger form is the DAG's alone."""
    import json

    from airflow.sdk.definitions.param import process_params
    from airflow.serialization.serialized_objects import DagSerialization

    dag = _dag("churn-model.yaml", "prod")
    serialized = DagSerialization.to_dict(dag)["dag"]
    assert not [t for t in serialized["tasks"] if "params" in t.get("__var", t)]
    assert {name for name, _ in serialized["params"]} >= {"values", "lookback_days"}
    task = dag.get_task("de.nb_01_features")
    assert not task.params
    at_run_time = process_params(dag, task, {"lookback_days": 30}, suppress_exception=False)
    assert at_run_time["values"] == dag.params["values"] and at_run_time["lookback_days"] == 30
    assert len(json.dumps(DagSerialization.to_dict(dag))) < 450_000  # was 663,758 with a copy per task


def test_environment_override_changes_instance_type_and_schedule() -> None:
    dag = _dag("churn-model.yaml", "preprod")
    assert dag.get_task("de.create_instance").instance_type == "ml.t3.large"
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert type(_dag("churn-model.yaml", "prod").timetable).__name__ == "CronTriggerTimetable"


def test_parameters_merge_global_then_value_then_notebook() -> None:
    import base64

    import yaml

    loaded = load_spec(CONFIGS / "churn-model.yaml", load_platform(CONFIGS / "platform.yaml"))
    plan = plan_dag(loaded, "prod")
    de = next(g for g in plan.groups if g.group_id == "de")
    words = de.task("nb_02_train").args.command.split()
    params = yaml.safe_load(base64.b64decode(words[words.index("-b") + 1]))  # as papermill -b reads it
    assert params == {
        "lookback_days": 90,
        "n_customers": 2000,
        "max_depth": 6,
        "country": "de",
        "env": "prod",
        "aws_account_id": "444455556666",
    }


def test_local_backend_builds_same_task_ids_with_local_operators() -> None:
    prod, local = _dag("churn-model.yaml", "prod"), _dag("churn-model.yaml", "local")
    assert sorted(prod.task_ids) == sorted(local.task_ids)
    assert type(local.get_task("de.nb_01_features")).__name__ == "GuardedBashOperator"
    assert type(local.get_task("de.create_instance")).__name__ == "FactoryPythonOperator"


@pytest.mark.parametrize("env", ENVS)
def test_every_task_checks_the_workers_environment_as_operator_behaviour(env: str) -> None:
    """Every task that runs on a worker checks its environment first (params.before_task), as the
    operator's own pre_execute: no callable in default_args, serialized into every task and shown as
    Python source in the DAG's details."""
    import json

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.serialization.serialized_objects import DagSerialization

    from dag_factory.airflow.params import ChecksEnvironment

    dag = _dag("churn-model.yaml", env)
    runs_on_a_worker = [t for t in dag.tasks if not isinstance(t, EmptyOperator)]
    assert runs_on_a_worker and all(isinstance(t, ChecksEnvironment) for t in runs_on_a_worker)
    assert {t.built_for for t in runs_on_a_worker} == {env}  # type: ignore[attr-defined]
    assert "pre_execute" not in dag.default_args
    assert "pre_execute" not in json.dumps(DagSerialization.to_dict(dag))


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_the_dag_details_show_no_python_source(spec: Path, env: str) -> None:
    """What the UI's DAG Details and task details read, the serialized DAG, holds no callable, its source
    or its repr: default_args are plain values (a notify callback shows as a flag), params are Params."""
    import json
    import re

    from airflow.serialization.serialized_objects import DagSerialization

    dag = dag_from_spec(spec, env=env)
    serialized = DagSerialization.to_dict(dag)["dag"]
    default_args = serialized["default_args"]["__var"]
    assert set(default_args) <= {
        "owner", "retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay",
        "has_on_failure_callback", "has_on_retry_callback",
    }  # fmt: skip
    assert all(isinstance(v, str | int | float | dict) for v in default_args.values())
    for name, param in serialized["params"]:
        assert param["__class"] == "airflow.sdk.definitions.param.Param", name
    text = json.dumps(serialized)
    callables = (r"\bdef \w+\(", r"\blambda\b", r"<function ", r"<bound method", r"partial\(", r" at 0x")
    for source in callables:
        assert not re.search(source, text), source


def test_dag_files_are_fresh() -> None:
    assert stale_dag_files(SPECS, REPO / "dags") == [], "run: dag-factory dags project_configs --output dags"


def test_dagbag_loads_every_spec_and_isolates_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DAG_FACTORY_ENV", "prod")
    configs = tmp_path / "project_configs"
    shutil.copytree(CONFIGS, configs)
    (configs / "broken.yaml").write_text(
        (CONFIGS / "churn-demo.yaml")
        .read_text()
        .replace("project: churn-demo", "project: broken-one")
        .replace("schedule:", "scheduel:")
    )
    (tmp_path / "examples").symlink_to(REPO / "examples")
    from dag_factory.airflow.dag_files import write_dag_files

    write_dag_files(spec_files([configs]), tmp_path / "dags")
    bag = DagBag(dag_folder=str(tmp_path / "dags"))
    assert sorted(bag.dag_ids) == ["churn-demo", "churn-model"]
    assert list(bag.import_errors) == [str(tmp_path / "dags" / "broken.py")]
    message = next(iter(bag.import_errors.values()))
    assert "broken.yaml:8:1: scheduel: unknown key 'scheduel' (did you mean 'schedule'?)" in message


def test_build_is_deterministic_for_the_same_plan() -> None:
    loaded = load_spec(CONFIGS / "churn-demo.yaml", load_platform(CONFIGS / "platform.yaml"))
    one, two = build_dag(plan_dag(loaded, "local")), build_dag(plan_dag(loaded, "local"))
    assert [t.task_id for t in one.tasks] == [t.task_id for t in two.tasks]


def test_connection_ids_come_from_the_platform_even_without_delivery(tmp_path: Path) -> None:
    spec = (CONFIGS / "churn-model.yaml").read_text()
    spec = spec[: spec.index("deliver:")] + spec[spec.index("notify:") :]
    (tmp_path / "no-deliver.yaml").write_text(spec.replace("../examples", str(REPO / "examples")))
    dag = dag_from_spec(tmp_path / "no-deliver.yaml", env="preprod", platform=CONFIGS / "platform.yaml")
    assert not [t for t in dag.task_ids if ".deliver_" in t]
    assert dag.get_task("de.nb_01_features").ssh_conn_id == "sagemaker_ssh"
    assert dag.get_task("de.create_instance").aws_conn_id == "aws_default"


def test_report_task_runs_last_after_failures_and_leaves_the_run_state_to_the_work() -> None:
    dag = _dag("churn-model.yaml", "prod")
    report = dag.get_task("report")
    assert report.trigger_rule == TriggerRule.ALL_DONE
    assert report.is_teardown  # Airflow leaves teardowns out of the run's state
    # after the delivery's one asset event, which comes after every value's delivery
    assert "publish_churn_scores" in report.upstream_task_ids
    groups = {t.split(".", 1)[0] for t in dag.task_ids if "." in t}
    assert dag.get_task("publish_churn_scores").upstream_task_ids == {
        f"{g}.deliver_churn_scores" for g in groups
    }
    # every task comes before it (a lane's earlier instances through the next create)
    assert report.get_flat_relative_ids(upstream=True) == set(dag.task_ids) - {"report"}
    assert report.downstream_task_ids == set()
    inputs = report.op_kwargs["inputs"]
    assert inputs["folder"] == "s3://nb-output-prod/churn-model/{{ run_id }}"
    de = next(g for g in inputs["groups"] if g["group_id"] == "de")
    notebook = next(t for t in de["tasks"] if t["task_id"] == "de.nb_02_train")
    assert notebook["html"] == inputs["folder"] + "/de/02_train.html"
