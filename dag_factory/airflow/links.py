"""Extra links in the Airflow UI: a notebook task's rendered notebook and source, the run's report.

Airflow 3 computes an operator's extra links on the worker when the task finishes (also when it
failed) and stores each in the task's XCom (`BaseOperatorLink.xcom_key`); the api-server reads them
from there. So the links work after the run and on a distributed deployment, and the api-server needs
no AWS credentials: a presigned URL is signed by the worker.

What a link points at is set per task at build time (`set_links`): a path or s3:// URL that may hold
`{{ run_id }}`, and how to show an S3 object (the platform's `notebook_links`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import quote

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
    name = "Run report"


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
