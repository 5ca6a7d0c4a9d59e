"""Where the report task reads executed notebooks and writes the report: a local folder or S3."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from dag_factory.airflow.tasks import _read_text, _write_text
from dag_factory.plan.report import SENSITIVE_NAMES


def test_the_report_hides_the_parameters_airflow_hides() -> None:
    """The run report (plan layer, no Airflow import) redacts by Airflow's default sensitive names."""
    from airflow.sdk._shared.secrets_masker.secrets_masker import DEFAULT_SENSITIVE_FIELDS

    assert SENSITIVE_NAMES == DEFAULT_SENSITIVE_FIELDS


def test_local_files_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "r1" / "report.json"
    assert _read_text(str(target), "aws_default") is None
    _write_text(str(target), '{"a": 1}', "application/json", "aws_default")
    assert _read_text(str(target), "aws_default") == '{"a": 1}'


def test_s3_objects_round_trip_with_their_content_type(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": "eu-west-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="out", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        assert _read_text("s3://out/p/r1/report.html", "aws_default") is None
        _write_text("s3://out/p/r1/report.html", "<p>ü</p>", "text/html", "aws_default")
        assert _read_text("s3://out/p/r1/report.html", "aws_default") == "<p>ü</p>"
        assert s3.head_object(Bucket="out", Key="p/r1/report.html")["ContentType"] == "text/html"
