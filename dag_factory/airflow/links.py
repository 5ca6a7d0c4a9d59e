"""Extra links in the Airflow UI: a notebook task's rendered notebook and source, the run's report.

Airflow 3 computes an operator's extra links on the worker when the task finishes (also when it
failed) and stores each in the task's XCom (`BaseOperatorLink.xcom_key`); the api-server reads them
from there. So the links work after the run and on a distributed deployment, and the api-server needs
no AWS credentials: a presigned URL is signed by the worker.

What a link points at is set per task at build time (`set_links`): a path or s3:// URL that may hold
`{{ run_id }}`, and how to show an S3 object (the platform's `notebook_links`).

The **Run report** link is on every task of a factory DAG, but only the report task computes it (on its
worker, once it has written the report). Every other task's link is answered by the api-server from the
report task's XCom: the plugin registers `RunReportLink` for our operator classes, and Airflow then uses
the plugin's link instead of the XCom of the task itself (`operators`, below). So until the report task
has run, the link is absent (Airflow's UI draws no button for an empty link), never a broken one.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.operator import BaseOperator

from dag_factory.airflow.files_app import local_file_url
from dag_factory.plan.model import CODE_VERSION_TEMPLATE, CODE_VERSIONS_FOLDER

log = logging.getLogger("dag_factory.airflow.links")

TARGETS_ATTR = "dag_factory_link_targets"
PRESIGNED_EXPIRY_S = 7 * 24 * 3600  # the longest SigV4 allows


def presigned_expiry_s(credentials: Any, now: dt.datetime) -> int:
    """How long a URL signed with ``credentials`` (botocore's) can work: SigV4's 7 days at most, and never
    past the credentials' own expiry: a worker's role or instance-profile credentials last hours, and a
    URL signed with them stops working when they expire, whatever its X-Amz-Expires says."""
    expiry = getattr(credentials, "_expiry_time", None)  # set on RefreshableCredentials only
    if expiry is None:  # long-lived keys (or temporary ones whose expiry boto was not told)
        return PRESIGNED_EXPIRY_S
    return max(1, min(PRESIGNED_EXPIRY_S, int((expiry - now).total_seconds())))


def link_expires(url: str) -> dt.datetime | None:
    """When a presigned URL stops working (SigV4's X-Amz-Date + X-Amz-Expires, SigV2's Expires); None
    for a link that does not expire."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Date" in query and "X-Amz-Expires" in query:
        signed = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        return signed + dt.timedelta(seconds=int(query["X-Amz-Expires"][0]))
    if "Expires" in query and ("Signature" in query or "AWSAccessKeyId" in query):
        return dt.datetime.fromtimestamp(int(query["Expires"][0]), dt.UTC)
    return None


def run_note(report_url: str) -> str:
    """The DAG run's note (markdown, shown on the run's page): a link to its report, and until when the
    link works when it is presigned."""
    note = f"[Run report]({report_url})"
    expires = link_expires(report_url)
    if expires is not None:
        note += f" (link valid until {expires:%Y-%m-%d %H:%M} UTC)"
    return note


def is_run_note(note: str | None) -> bool:
    """Whether a run's note is empty or one that `run_note` wrote (a user's own note is kept)."""
    return not note or (note.startswith("[Run report](") and "\n" not in note)


def link_url(target: str, style: str, region: str | None, aws_conn_id: str) -> str:
    """s3://bucket/key -> the S3 console's page of the object, or a presigned URL (a local path: see
    `_TargetLink.get_link`)."""
    bucket, _, key = target.removeprefix("s3://").partition("/")
    if style == "presigned":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=aws_conn_id)
        credentials = hook.get_session().get_credentials()
        if credentials is not None:
            credentials.get_frozen_credentials()  # refreshes credentials about to expire first
        now = dt.datetime.now(dt.UTC)
        expires_in = presigned_expiry_s(credentials, now)
        url = hook.generate_presigned_url(
            client_method="get_object", params={"Bucket": bucket, "Key": key}, expires_in=expires_in
        )
        until = (now + dt.timedelta(seconds=expires_in)).isoformat(timespec="minutes")
        log.info("presigned link to %s valid until %s (%d s)", target, until, expires_in)
        return str(url or "")
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?region={region or ''}&prefix={quote(key)}"


class _TargetLink(BaseOperatorLink):
    """A link whose target the task carries (see `set_links`); '' when the task has none."""

    name = ""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        targets: dict[str, Any] = getattr(operator, TARGETS_ATTR, None) or {}
        target = targets.get(self.name)
        if target is None:
            return ""
        path = str(target["path"]).replace("{{ run_id }}", ti_key.run_id)
        if CODE_VERSION_TEMPLATE in path:  # the notebook source: in the code version the run synced
            path = _in_code_version(path, target, ti_key)
        if not path.startswith("s3://"):  # served by the api-server: the UI shows no file:// link
            return local_file_url(operator.dag_id, ti_key.run_id, operator.task_id, path)
        return link_url(path, target["style"], target.get("region"), target["aws_conn_id"])


def _in_code_version(path: str, target: dict[str, Any], ti: Any) -> str:
    """The path with the run's code version; without the run (no task context), the versions folder."""
    from dag_factory.airflow.params import code_version

    head, _, tail = path.partition(f"/{CODE_VERSION_TEMPLATE}/")
    context = ti.get_template_context() if hasattr(ti, "get_template_context") else None
    if context is None:
        return head + "/"
    code = head.removesuffix(f"/{CODE_VERSIONS_FOLDER}")
    version = code_version(code, target["aws_conn_id"], target.get("region"), context["dag_run"])
    return f"{head}/{version}/{tail}"


class ExecutedNotebookLink(_TargetLink):
    name = "Executed notebook"


class NotebookSourceLink(_TargetLink):
    name = "Notebook source"


class RunReportLink(_TargetLink):
    """The run's report, on every task: the report task computes it, the api-server reads it for the rest."""

    name = "Run report"

    @property  # a ClassVar in BaseOperatorLink; read on the api-server only
    def operators(self) -> list[type[Any]]:  # type: ignore[override]
        """The classes Airflow's deserialization gives this link (instead of reading each task's own
        XCom): every operator class a factory DAG is built of. Imported when asked, so that the plugin
        costs the scheduler and the workers no import."""
        from dag_factory.airflow.build import factory_operator_classes

        return list(factory_operator_classes())

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if getattr(operator, TARGETS_ATTR, None):  # the report task on its worker: the report's URL
            return super().get_link(operator, ti_key=ti_key)
        return report_link(ti_key)


def report_link(ti_key: Any) -> str:
    """On the api-server: the run report's link as the report task's worker stored it in XCom, '' when
    the report task has not finished (yet)."""
    from airflow.serialization.definitions.operatorlink import XComOperatorLink

    from dag_factory.plan.report import REPORT_TASK

    report = XComOperatorLink(name=RunReportLink.name, xcom_key=RunReportLink().xcom_key)
    return report.get_link(None, ti_key=ti_key._replace(task_id=REPORT_TASK, map_index=-1))  # type: ignore[arg-type]


LINKS = {link.name: link for link in (ExecutedNotebookLink(), NotebookSourceLink(), RunReportLink())}


def set_links(
    operator: BaseOperator, paths: dict[str, str], style: str, region: str | None, conn: str
) -> None:
    """Give the operator the named links, each pointing at a path (may hold `{{ run_id }}`)."""
    operator.operator_extra_links = tuple(LINKS[name] for name in paths)
    setattr(
        operator,
        TARGETS_ATTR,
        {
            name: {"path": p, "style": style, "region": region, "aws_conn_id": conn}
            for name, p in paths.items()
        },
    )
