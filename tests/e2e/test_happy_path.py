"""The example job end to end on the SageMaker backend (moto + sshd + papermill + PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import DATE, E2E, injected_source, states

pytestmark = pytest.mark.integration

VALUES = ["de", "fr", "nl"]


def test_three_values_run_archive_deliver_clean_up_and_rerun_without_duplicates(e2e: E2E) -> None:
    job = e2e.job(VALUES)
    result = e2e.run(job)
    assert result.state == "success", result.error

    for value in VALUES:
        assert set(states(result, value).values()) == {"success"}, states(result, value)
    # one instance per value, each with its own ENI address, all gone at the end
    names = {v: result.xcom(f"{v}.create_instance") for v in VALUES}
    assert len(set(names.values())) == 3
    ips = {v: result.xcom(f"{v}.resolve_ip") for v in VALUES}
    assert len(set(ips.values())) == 3 and set(ips.values()) <= set(e2e.sm.addresses)
    assert e2e.instances() == []
    # executed notebooks archived per value with the injected parameters
    for value in VALUES:
        for notebook in ("01_features.ipynb", "02_train.ipynb"):
            source = injected_source(e2e.executed_notebook(job, result.run_id, value, notebook))
            assert f'country = "{value}"' in source
            assert 'env = "e2e"' in source
            assert 'aws_account_id = "123456789012"' in source
            assert f'logical_date = "{DATE.isoformat()}"' in source
            assert f'run_id = "{result.run_id}"' in source
            prefix = f"s3://{job.output_bucket}/{job.dag_id}/{result.run_id}/{value}"
            assert f'output_prefix = "{prefix}"' in source
    # rows delivered per value and date
    assert e2e.rows("analytics.churn_scores") == {"de": 800, "fr": 500, "nl": 500}
    assert e2e.rows("analytics.churn_metrics") == {"de": 1, "fr": 1, "nl": 1}

    # a re-run of the same logical date replaces that value's partition, never duplicates
    again = e2e.run(e2e.job(["de"]))
    assert again.state == "success", again.error
    assert again.xcom("de.deliver_churn_scores") == 800 and again.xcom("de.deliver_churn_metrics") == 1
    assert e2e.rows("analytics.churn_scores") == {"de": 800, "fr": 500, "nl": 500}
    assert e2e.rows("analytics.churn_metrics") == {"de": 1, "fr": 1, "nl": 1}
    assert e2e.instances() == []
