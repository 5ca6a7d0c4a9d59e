"""A manual run with parameters, as a person triggers it from Airflow's form or REST API, on the real
scheduler: only the chosen values run (the others create no instance), the overridden parameter
reaches the notebooks, the report says what the run chose; a conf outside the form starts nothing."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error

import pytest

from dag_factory.compute.naming import instance_name
from tests.e2e.harness import DATE, E2E, ENV_NAME, RUN_TIMEOUT_S, injected_source, states
from tests.servers.airflow import Deployment

pytestmark = pytest.mark.integration

WHEN = dt.datetime.combine(DATE, dt.time(), tzinfo=dt.UTC).isoformat()


def test_trigger_with_params_runs_selected_values(e2e: E2E, airflow_deployment: Deployment) -> None:
    job = e2e.job(["de", "fr"], project="churn-params", schedule=None)
    e2e.deploy_on(airflow_deployment, job)
    run_id = airflow_deployment.trigger_run(
        job.dag_id, logical_date=WHEN, conf={"values": ["fr"], "lookback_days": 30}
    )
    result = airflow_deployment.wait(job.dag_id, run_id, timeout=RUN_TIMEOUT_S)

    assert result.state == "success", result.error
    assert set(states(result, "de").values()) == {"skipped"}
    assert set(states(result, "fr").values()) == {"success"}
    created = {t.name for t in e2e.sm.aws.history if t.status == "Pending"}
    assert created == {instance_name(job.dag_id, run_id, "fr", env=ENV_NAME)}  # de's was never created
    # the override reaches the notebook that declares lookback_days; a notebook gets only what it declares
    for notebook, declares in (("01_features.ipynb", True), ("02_train.ipynb", False)):
        injected = injected_source(e2e.executed_notebook(job, run_id, "fr", notebook))
        assert ("lookback_days = 30\n" in injected) is declares and 'country = "fr"\n' in injected, injected
    assert e2e.rows("analytics.churn_scores") == {"fr": 500}
    report = json.loads(
        e2e.sm.moto.client("s3")
        .get_object(Bucket=job.output_bucket, Key=f"{job.dag_id}/{run_id}/report.json")["Body"]
        .read()
    )
    assert (report["chosen_values"], report["overrides"]) == (["fr"], {"lookback_days": 30})
    assert e2e.instances() == []


@pytest.mark.parametrize(
    ("conf", "refusal"),
    [
        ({"values": ["xx"]}, "'xx' is not one of ['de', 'fr']"),
        ({"lookback_days": "thirty"}, "'thirty' is not of type 'integer'"),
    ],
)
def test_trigger_with_bad_params_is_refused(
    e2e: E2E, airflow_deployment: Deployment, conf: dict[str, object], refusal: str
) -> None:
    job = e2e.job(["de", "fr"], project="churn-params-refused", schedule=None)
    e2e.deploy_on(airflow_deployment, job)
    airflow_deployment.wait_for_dag(job.dag_id)
    with pytest.raises(urllib.error.HTTPError) as refused:
        airflow_deployment.trigger_run(job.dag_id, logical_date=WHEN, conf=conf)
    assert refused.value.code == 400
    assert refusal in refused.value.read().decode()
    runs = airflow_deployment.api("GET", f"/api/v2/dags/{job.dag_id}/dagRuns")
    assert runs["total_entries"] == 0
    assert e2e.sm.aws.history == []  # no instance was asked for
