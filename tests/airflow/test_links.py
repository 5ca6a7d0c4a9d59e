"""Extra links: what each notebook task and the report task link to, per backend and platform setting."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yaml

from dag_factory.airflow.build import dag_from_spec
from dag_factory.airflow.links import LINKS, PRESIGNED_EXPIRY_S, TARGETS_ATTR, presigned_expiry_s
from tests.paths import REPO

CONFIGS = REPO / "project_configs"
RUN = "scheduled__2026-01-05T04:00:00+00:00"


def _links(task: object) -> dict[str, str]:
    return {
        link.name: link.get_link(task, ti_key=SimpleNamespace(run_id=RUN))
        for link in task.operator_extra_links
    }  # type: ignore[attr-defined]


def test_sagemaker_notebook_task_links_to_the_s3_console() -> None:
    dag = dag_from_spec(CONFIGS / "churn-model.yaml", env="prod")
    console = "https://s3.console.aws.amazon.com/s3/object/"
    assert _links(dag.get_task("fr.nb_02_train")) == {
        "Executed notebook": f"{console}nb-output-prod?region=eu-west-1&prefix="
        "churn-model/scheduled__2026-01-05T04%3A00%3A00%2B00%3A00/fr/02_train.html",
        "Notebook source": f"{console}automated-notebook-prod?region=eu-west-1&prefix=churn-model/versions/",
    }
    assert _links(dag.get_task("report")) == {
        "Run report": f"{console}nb-output-prod?region=eu-west-1&prefix="
        "churn-model/scheduled__2026-01-05T04%3A00%3A00%2B00%3A00/report.html",
    }
    # only notebook tasks and the report compute links on their worker (the api-server gives every task
    # the report's: test_every_task_links_the_run_report_the_report_task_stored)
    assert dag.get_task("fr.prepare").operator_extra_links == ()


def test_presigned_links_are_signed_for_the_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = yaml.safe_load((CONFIGS / "platform.yaml").read_text())
    platform["environments"]["prod"]["notebook_links"] = "presigned"
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    conn = {
        "conn_type": "aws",
        "login": "AKIDEXAMPLE",
        "password": "secret",
        "extra": {"region_name": "eu-west-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    dag = dag_from_spec(CONFIGS / "churn-model.yaml", env="prod", platform=tmp_path / "platform.yaml")
    url = urlsplit(_links(dag.get_task("de.nb_01_features"))["Executed notebook"])
    assert url.path == "/churn-model/scheduled__2026-01-05T04%3A00%3A00%2B00%3A00/de/01_features.html"
    assert url.netloc.startswith("nb-output-prod.s3")
    query = parse_qs(url.query)
    # signed with the connection's key (SigV2 or SigV4, as botocore picks for the region)
    assert "Signature" in query or "X-Amz-Signature" in query
    assert any(
        v[0].startswith("AKIDEXAMPLE")
        for v in (query.get("AWSAccessKeyId"), query.get("X-Amz-Credential"))
        if v
    )


def test_local_links_are_same_origin_paths_the_api_server_serves() -> None:
    """The Airflow 3 UI drops file:// links: a local file is linked through the api-server's route
    (dag_factory.airflow.files_app), which serves only what the task's links name."""
    from dag_factory.airflow.files_app import linked_paths

    dag = dag_from_spec(CONFIGS / "churn-demo.yaml", env="local")
    links = _links(dag.get_task("de.nb_01_features"))
    root = (CONFIGS / ".." / ".dag-factory").resolve()
    route = "/dag-factory/files/churn-demo/scheduled__2026-01-05T04%3A00%3A00%2B00%3A00/de.nb_01_features"
    executed = f"{root}/runs/churn-demo/{RUN}/de/01_features.html"
    versions = f"{root}/code/churn-demo/versions/"  # without the run's context: the project's versions
    assert links == {
        "Executed notebook": f"{route}?path={quote(executed, safe='')}",
        "Notebook source": f"{route}?path={quote(versions, safe='')}",
    }
    found = linked_paths(list(links.values()), "churn-demo", RUN, "de.nb_01_features")
    assert found == {executed, versions}
    assert linked_paths(list(links.values()), "churn-demo", RUN, "de.nb_02_train") == set()
    assert (
        linked_paths([f"https://elsewhere{route}?path=/etc/passwd"], "churn-demo", RUN, "de.nb_01_features")
        == set()
    )


def test_notebook_source_link_opens_the_code_version_the_run_synced(tmp_path: Path) -> None:
    """Two deploys, a run started between them: its link opens the notebook of the first version."""
    from dag_factory.compute.code_versions import FolderCodeStore, content_version, file_md5, publish

    platform = (CONFIGS / "platform.yaml").read_text().replace("../.dag-factory", str(tmp_path / "root"))
    (tmp_path / "platform.yaml").write_text(platform)
    dag = dag_from_spec(CONFIGS / "churn-demo.yaml", env="local", platform=tmp_path / "platform.yaml")
    store = FolderCodeStore(tmp_path / "root" / "code" / "churn-demo")
    monday = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    key = "notebooks/01_features.ipynb"
    for hour, text in ((9, "first"), (11, "second")):
        notebook = tmp_path / text / key
        notebook.parent.mkdir(parents=True)
        notebook.write_text(text)
        publish(store, {key: notebook}, {key: file_md5(notebook)}, monday.replace(hour=hour))
    first = content_version({key: file_md5(tmp_path / "first" / key)})
    run = SimpleNamespace(start_date=monday.replace(hour=10), run_after=monday)
    ti = SimpleNamespace(run_id=RUN, get_template_context=lambda: {"dag_run": run})
    task = dag.get_task("de.nb_01_features")
    link = next(link for link in task.operator_extra_links if link.name == "Notebook source")
    url = link.get_link(task, ti_key=ti)
    (path,) = parse_qs(urlsplit(url).query)["path"]
    assert path == f"{store.root}/versions/{first}/notebooks/01_features.ipynb"
    assert Path(path).read_text() == "first"


def test_links_survive_serialization_and_the_plugin_registers_them() -> None:
    from airflow import plugins_manager
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dag_from_spec(CONFIGS / "churn-model.yaml", env="prod")
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert sorted(back.get_task("de.nb_01_features").extra_links) == [
        "Executed notebook",
        "Notebook source",
        "Run report",  # every task's (test_every_task_links_the_run_report_the_report_task_stored)
    ]
    assert back.get_task("report").extra_links == ["Run report"]
    assert getattr(dag.get_task("report"), TARGETS_ATTR)["Run report"]["style"] == "console"
    # the entry point in pyproject.toml: every Airflow component finds the link classes
    assert {type(link) for link in LINKS.values()} <= {
        type(link) for link in plugins_manager.get_operator_extra_links()
    }


def test_presigned_links_expire_with_the_signing_credentials() -> None:
    """A URL signed with a worker's role credentials dies when they do: its expiry says so (not 7 days)."""
    from botocore.credentials import Credentials, RefreshableCredentials

    now = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)

    def role(expires_in: dt.timedelta) -> RefreshableCredentials:
        return RefreshableCredentials(
            "ASIAEXAMPLE", "secret", "token", now + expires_in, refresh_using=dict, method="assume-role"
        )

    assert presigned_expiry_s(role(dt.timedelta(hours=1)), now) == 3600
    assert presigned_expiry_s(role(dt.timedelta(days=30)), now) == PRESIGNED_EXPIRY_S == 7 * 24 * 3600
    assert presigned_expiry_s(role(dt.timedelta(seconds=-5)), now) == 1  # never 0 or negative
    assert presigned_expiry_s(Credentials("AKIDEXAMPLE", "secret"), now) == PRESIGNED_EXPIRY_S
    assert presigned_expiry_s(None, now) == PRESIGNED_EXPIRY_S


@pytest.mark.parametrize(("spec", "env"), [("churn-model", "prod"), ("churn-demo", "local")])
def test_every_task_links_the_run_report_the_report_task_stored(
    spec: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the api-server sees the DAG (deserialized, with the plugin): every task has a Run report link,
    answered from the report task's XCom, whatever the task's own XComs hold; '' (no button) until the
    report task has stored it."""
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.serialization.definitions.operatorlink import XComOperatorLink
    from airflow.serialization.serialized_objects import DagSerialization

    from dag_factory.airflow.build import factory_operator_classes

    stored: dict[tuple[str, str, str, int], str] = {}
    asked: list[TaskInstanceKey] = []

    def from_xcom(self: XComOperatorLink, operator: object, *, ti_key: TaskInstanceKey) -> str:
        asked.append(ti_key)
        return stored.get((ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index), "")

    monkeypatch.setattr(XComOperatorLink, "get_link", from_xcom)
    dag = dag_from_spec(CONFIGS / f"{spec}.yaml", env=env)
    assert {type(task) for task in dag.tasks} <= set(factory_operator_classes())
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))

    def report_links() -> set[str | None]:
        def ti(task_id: str) -> SimpleNamespace:
            return SimpleNamespace(key=TaskInstanceKey(spec, task_id, RUN, 1))

        return {task.get_extra_links(ti(task.task_id), "Run report") for task in back.tasks}

    assert all("Run report" in task.extra_links for task in back.tasks)
    assert report_links() == {""}  # the report task has not run: no link anywhere
    assert {(key.task_id, key.map_index) for key in asked} == {("report", -1)}
    stored[(spec, RUN, "report", -1)] = "/dag-factory/files/the-report"
    assert report_links() == {"/dag-factory/files/the-report"}
    notebook = next(t for t in back.tasks if t.task_id.endswith("nb_01_features"))
    assert sorted(notebook.extra_links) == ["Executed notebook", "Notebook source", "Run report"]


def test_the_run_note_links_the_report_and_says_until_when_a_presigned_link_works() -> None:
    from dag_factory.airflow.links import is_run_note, link_expires, run_note

    local = "/dag-factory/files/churn-demo/run/report?path=%2Freport.html"
    assert run_note(local) == f"[Run report]({local})"
    sigv4 = (
        "https://nb-output-prod.s3.amazonaws.com/churn-model/run/report.html?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261207T100000Z"
        "&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=abc"
    )
    assert link_expires(sigv4) == dt.datetime(2026, 12, 14, 10, 0, tzinfo=dt.UTC)
    assert run_note(sigv4) == f"[Run report]({sigv4}) (link valid until 2026-12-14 10:00 UTC)"
    sigv2 = "https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIDEXAMPLE&Signature=abc&Expires=1796896800"
    assert link_expires(sigv2) == dt.datetime(2026, 12, 10, 10, 0, tzinfo=dt.UTC)
    assert link_expires("https://s3.console.aws.amazon.com/s3/object/b?region=eu-west-1&prefix=k") is None
    # the listener replaces its own note (a repaired run's new report), never one a user wrote
    assert is_run_note(None) and is_run_note("") and is_run_note(run_note(sigv4))
    assert not is_run_note("re-run after the fix of #12") and not is_run_note(run_note(local) + "\nchecked")


def test_the_docs_and_the_platform_schema_say_how_long_a_presigned_link_works() -> None:
    """Airflow's link labels are fixed (a link is keyed by its label): the expiry is stated where a
    platform owner chooses `presigned` (the field's description, the operations guide) and, with the
    actual time, in the run's note (test_the_run_note_links_the_report_and_says_until_when...)."""
    from dag_factory.spec.platform import SageMakerEnvironment

    days = PRESIGNED_EXPIRY_S // (24 * 3600)
    described = SageMakerEnvironment.model_fields["notebook_links"].description or ""
    assert f"presigned URL, valid {days} days at most" in described
    schema = json.loads((REPO / "schemas" / "platform.schema.json").read_text())
    assert described in json.dumps(schema)
    guide = " ".join((REPO / "docs" / "operations.md").read_text().split())
    assert f"`notebook_links: presigned` in the platform environment (valid {days} days at most" in guide
    assert "(link valid until <time> UTC)" in guide
