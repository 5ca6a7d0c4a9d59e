"""The DAG's documentation (Airflow's DAG Docs): where outputs and the report go, the spec, and the
parameters each notebook gets, so that a data engineer reads them in the UI."""

from __future__ import annotations

from pathlib import Path

import yaml

from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.planner import plan_dag
from tests.paths import REPO

PLATFORM = REPO / "project_configs" / "platform.yaml"


def _doc(spec: Path, env: str = "prod") -> str:
    return plan_dag(load_spec(spec, load_platform(PLATFORM)), env).doc_md


def test_the_docs_say_where_outputs_and_the_report_go_and_which_parameters_each_notebook_gets() -> None:
    spec = REPO / "project_configs" / "churn-demo.yaml"
    lines = _doc(spec).splitlines()
    head = "s3://nb-output-prod/churn-demo/<run id>"
    assert f"* executed notebooks, HTML and papermill logs: `{head}/<country>/`" in lines
    assert f"* run report: `{head}/report.html` (and report.json)" in lines
    assert f"* spec: `{spec}`" in lines
    assert [line for line in lines if line.startswith("    ")] == [  # the parameters: a code block
        "    lookback_days = 90",
        "    de: n_customers = 800",
        "    notebooks/02_train.ipynb: max_depth = 4",
    ]


def test_a_parameter_value_stays_one_code_line_and_a_sensitive_one_is_hidden(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "project_configs" / "churn-demo.yaml").read_text())
    spec["project_dir"] = str(REPO / "examples" / "churn-demo")
    spec["parameters"] = {"note": "a\n```\n# heading <b>x</b>", "api_token": "s3cr3t"}
    path = tmp_path / "churn-demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    doc = _doc(path)
    assert "    note = 'a\\n```\\n# heading <b>x</b>'\n" in doc
    assert "    api_token = '***'\n" in doc and "s3cr3t" not in doc


def test_the_docs_say_which_code_version_a_run_syncs_and_which_parameters_a_notebook_gets() -> None:
    lines = _doc(REPO / "project_configs" / "churn-model.yaml").splitlines()
    code = "s3://automated-notebook-prod/churn-model"
    assert (
        f"* code: `{code}/versions/<version>`: a run syncs the version current when it started (the last"
        f" entry of `{code}/deploys/`, written by `dag-factory deploy`); its run report names it"
    ) in lines
    [intro] = [line for line in lines if line.startswith("Parameters:")]
    assert "a notebook gets those its parameters cell declares" in intro
    # the standard ones, declared or not, are the spec's one list (the launcher passes exactly these)
    standard = "env, aws_account_id, logical_date, run_id, output_prefix, country"
    assert f"whether declared or not: {standard}." in intro


def test_the_docs_name_each_delivery_task_and_say_how_max_parallel_bounds_instances(tmp_path: Path) -> None:
    lines = _doc(REPO / "project_configs" / "churn-model.yaml").splitlines()
    assert "* deliver: snowflake:ML.CHURN_SCORES (`deliver_churn_scores`)" in lines
    [compute] = [line for line in lines if line.startswith("* compute:")]
    assert compute.startswith("* compute: ml.m5.xlarge, per_item: one instance per value, at most 10 at once")
    assert "the value 10 places before it" in compute  # 20 values: lanes
    assert "the graph's edges labelled `lane: max_parallel 10`, which pass no data" in compute
    # five values, at most five at once: no lanes to explain
    demo = _doc(REPO / "project_configs" / "churn-demo.yaml", "local").splitlines()
    assert "* compute: ml.t3.medium, per_item: one instance per value, all 5 at once (max_parallel 5)" in demo
    spec = yaml.safe_load((REPO / "project_configs" / "churn-demo.yaml").read_text())
    spec["project_dir"] = str(REPO / "examples" / "churn-demo")
    spec["compute"]["isolation"] = "shared"
    (tmp_path / "churn-demo.yaml").write_text(yaml.safe_dump(spec))
    assert "* compute: ml.t3.medium, shared: one instance" in _doc(tmp_path / "churn-demo.yaml").splitlines()
