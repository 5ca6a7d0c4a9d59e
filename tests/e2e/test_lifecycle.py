"""The instance life cycle on a SageMaker as slow and strict as AWS (tests/servers/sagemaker_rules.py):
states are waited for, a Failed instance is replaced, a Stopped one restarted, and the API pool is held
only for API calls, never while AWS works."""

from __future__ import annotations

import pytest

from dag_factory.local.run_records import TaskProgress
from tests.e2e.harness import E2E, attempt_error, state_mismatches, states, tries_told
from tests.servers.airflow import Deployment
from tests.servers.sagemaker_rules import Latencies, lifecycle_config

pytestmark = pytest.mark.integration

FULL_LIFE = ["Pending", "InService", "Stopping", "Stopped", "Deleting", "Deleted"]


def test_lifecycle_states_are_waited_for(e2e: E2E) -> None:
    # longer than a poke interval plus a task start, so that the sensors meet every in-between state
    e2e.sm.aws.latencies = Latencies(pending_s=25, stopping_s=20, deleting_s=20)
    job = e2e.job(["de"])
    result = e2e.run(job)

    assert result.state == "success", result.error
    name = result.xcom("de.create_instance")
    assert e2e.sm.aws.statuses(name) == FULL_LIFE
    # the waits ran: the sensors saw every in-between state, and never made a call AWS refuses
    seen = {status for described, status in e2e.sm.aws.described if described == name}
    assert {"Pending", "InService", "Stopping", "Stopped", "Deleting"} <= seen, seen
    assert e2e.sm.aws.rejected == []
    assert e2e.instances() == [] and e2e.sm.eni.assigned == {}
    assert e2e.rows("analytics.churn_scores") == {"de": 800}


def test_failed_instance_is_replaced(e2e: E2E) -> None:
    config = "e2e-on-start"
    lifecycle_config(e2e.sm.moto.client("sagemaker"), config)
    e2e.sm.aws.fail_lifecycle(config, times=1)
    job = e2e.job(["fr"], platform=e2e.platform_settings(lifecycle_config=config))
    result = e2e.run(job)

    assert result.state == "success", result.error
    name = result.xcom("fr.create_instance")
    assert e2e.sm.aws.statuses(name) == ["Pending", "Failed", "Deleting", "Deleted", *FULL_LIFE]
    create = result.ti("fr.create_instance")
    # the Failed one deleted, one retry of ours made a new one (any other retry is Airflow's own)
    airflows = state_mismatches(result)
    ours = [n for n in range(1, create.try_number) if ("fr.create_instance", n) not in airflows]
    assert ours == [1], tries_told(result)
    assert "is Failed (Notebook Instance Lifecycle Config" in attempt_error(result, "fr.create_instance", 1)
    assert e2e.instances() == [] and e2e.sm.aws.rejected == []
    assert e2e.rows("analytics.churn_scores") == {"fr": 500}


def test_stopped_instance_is_restarted(e2e: E2E) -> None:
    e2e.sm.aws.auto_stop(1)  # the instance stops itself once in service (an idle auto-stop script)
    job = e2e.job(["nl"])
    result = e2e.run(job)

    assert result.state == "success", result.error
    name = result.xcom("nl.create_instance")
    assert e2e.sm.aws.statuses(name) == ["Pending", "InService", "Stopping", "Stopped", *FULL_LIFE]
    assert e2e.instances() == [] and e2e.sm.aws.rejected == []
    assert e2e.rows("analytics.churn_scores") == {"nl": 500}


def test_pool_not_held_while_waiting(e2e: E2E, airflow_deployment: Deployment) -> None:
    """1 API slot, 3 groups, nl's instance stays Pending until de's and fr's deletes are done: they get
    the slot while nl's create waits (a create that held it would keep them out until the run times out)."""
    pool = "sagemaker_api_one"
    airflow_deployment.set_pool(pool, 1)
    e2e.sm.aws.hold("-nl-")
    platform = e2e.platform_settings(api_pool={"name": pool, "slots": 1})
    job = e2e.job(["de", "fr", "nl"], platform=platform, project="churn-pool", schedule=None)
    rescheduled: set[str] = set()
    done: set[str] = set()

    def watch(rows: list[TaskProgress]) -> None:
        rescheduled.update(row.task_id for row in rows if row.state == "up_for_reschedule")
        done.update(row.task_id for row in rows if row.state == "success")
        if {"de.delete_instance", "fr.delete_instance"} <= done:
            e2e.sm.aws.release("-nl-")

    result = e2e.run_deployed(airflow_deployment, job, on_progress=watch)

    assert result.state == "success", result.error
    nl_created = result.ti("nl.create_instance").end
    for value in ("de", "fr"):
        assert set(states(result, value).values()) == {"success"}
        deleted = result.ti(f"{value}.delete_instance").end
        assert deleted is not None and nl_created is not None and deleted < nl_created, (
            value,
            deleted,
            nl_created,
        )
    assert "nl.create_instance" in rescheduled  # it waited rescheduled, holding no slot
    assert e2e.instances() == []
    assert e2e.rows("analytics.churn_scores") == {"de": 800, "fr": 500, "nl": 500}
