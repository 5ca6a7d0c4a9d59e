"""The dispatcher's own checks: target dicts (the delivery models in their planned form) and arguments."""

from __future__ import annotations

import datetime as dt
import importlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from dag_factory.deliver import DeliveryError, deliver
from dag_factory.deliver.dispatch import LOADERS, planned_target
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.planner import plan_dag
from dag_factory.spec.job import DELIVERY_MODELS, Delivery
from tests.paths import REPO


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"to": "bigquery", "files": "*"}, "unknown target: use one of duckdb, postgres, s3, snowflake"),
        ({"to": "duckdb", "files": "*", "table": "t", "allow_empty": True}, "duckdb: missing keys: path"),
        ({"to": "s3", "files": "*"}, "deliver target s3: unknown keys: -; missing keys: prefix"),
        ({"to": "postgres", "files": "*", "table": "t", "tabel": "x"}, "unknown keys: tabel"),
        (
            {"to": "duckdb", "path": "x", "table": "t", "files": "*", "mode": "upsert"},
            "deliver target duckdb: mode: Input should be 'replace_partition' or 'append'",
        ),
    ],
)
def test_bad_targets(target: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match=message):
        deliver(target, str(tmp_path), dt.date(2026, 1, 5), "country", "de")


def test_bad_logical_date(tmp_path: Path) -> None:
    target = {"to": "duckdb", "path": "x", "table": "t", "files": "*"}
    with pytest.raises(DeliveryError, match="not an ISO date"):
        deliver(target, str(tmp_path), "tomorrow", "country", "de")


def test_snowflake_needs_an_s3_source(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"")
    target = {"to": "snowflake", "table": "T", "stage": "S", "files": "*.json", "allow_empty": True}
    with pytest.raises(DeliveryError, match="deliver from an s3 output prefix"):
        deliver(target, str(tmp_path), dt.date(2026, 1, 5), "country", "de")


@pytest.mark.parametrize("env", ["prod", "local"])
def test_every_planned_target_validates_as_its_model(env: str) -> None:
    """What the planner fills in (the DuckDB file, the bucket a role names, a warehouse target turned
    into the local DuckDB file) is what the delivery models accept in their planned form."""
    platform = load_platform(REPO / "project_configs" / "platform.yaml")
    spec = load_spec(REPO / "tests" / "cases" / "valid" / "all_targets.yaml", platform)
    planned = [t.args.target for g in plan_dag(spec, env).groups for t in g.tasks if t.kind == "deliver"]
    assert [t["to"] for t in planned] == (
        ["snowflake", "postgres", "s3", "duckdb"] if env == "prod" else ["duckdb", "duckdb", "s3", "duckdb"]
    )
    for target in planned:
        assert planned_target(target).model_dump(exclude_none=True) == target


def test_every_target_model_has_a_loader() -> None:
    """Adding a target is its model, its loader module and its row in LOADERS: none is left out."""
    models = {m.model_fields["to"].annotation: m for m in typing.get_args(typing.get_args(Delivery)[0])}
    assert sorted(LOADERS) == sorted(DELIVERY_MODELS) == sorted(typing.get_args(to)[0] for to in models)
    for to, loader in LOADERS.items():
        deliver_to = importlib.import_module(loader.module).deliver_to
        assert typing.get_type_hints(deliver_to)["target"] is DELIVERY_MODELS[to], to


def test_a_loader_imports_only_its_own_database_driver() -> None:
    """The dispatcher imports a target's loader when it delivers to it: a Snowflake, Postgres or S3
    delivery never imports duckdb."""
    probe = (
        "import importlib, sys; from dag_factory.deliver.dispatch import LOADERS; "
        "[importlib.import_module(m.module) for to, m in LOADERS.items() if to != 'duckdb']; "
        "print(sorted(m for m in ('duckdb', 'snowflake.connector', 'psycopg2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
