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
