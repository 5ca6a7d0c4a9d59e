"""The Airflow asset URI of each delivery, as plain strings (`airflow/build.py` makes the Asset).

The URI names where the rows land: the connection's host, port and database come from the platform
file's `warehouses` (the plan is built without Airflow, so it cannot ask the connection); locally,
warehouse targets load into the DuckDB file and s3 copies into a folder. Case follows how each
database resolves an unquoted name: Snowflake upper-cases it; our PostgreSQL and DuckDB loads quote
names, so they keep the case as written. The forms are checked by `spec.asset_uris.check_asset_uri`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dag_factory.spec.platform import AwsEnvironment, LocalEnvironment


def _parts(table: str, database: str, default_schema: str) -> list[str]:
    """[database, schema, table] of a table written as table, schema.table or database.schema.table."""
    parts = table.split(".")
    if len(parts) == 1:
        parts = [default_schema, *parts]
    if len(parts) == 2:
        parts = [database, *parts]
    return parts


def _path(path: str) -> str:
    """An absolute file path as a URI path (spaces and other unsafe characters escaped)."""
    return quote(path, safe="/")


def delivery_asset(target: dict[str, Any], env: LocalEnvironment | AwsEnvironment) -> str | None:
    """The asset URI for a planned target (`planner._deliver_target`'s data), None when the platform
    file does not say where the target's connection points."""
    to = target["to"]
    if to == "duckdb":
        if not target["path"].startswith("/"):
            return None  # a file relative to wherever the task runs names no one place
        return f"duckdb:{_path(target['path'])}/{target['table']}"  # as Airflow stores it: no '//'
    if to == "s3":
        if isinstance(env, LocalEnvironment):  # a folder standing in for the bucket
            return f"file://{_path(target['bucket'])}/{target['prefix']}"
        return f"s3://{target['bucket']}/{target['prefix']}"
    if to == "postgres" and env.warehouses.postgres is not None:
        pg = env.warehouses.postgres
        return f"postgres://{pg.host}:{pg.port}/" + "/".join(
            _parts(target["table"], pg.database, pg.default_schema)
        )
    if to == "snowflake" and env.warehouses.snowflake is not None:
        sf = env.warehouses.snowflake
        parts = _parts(target["table"], sf.database, sf.default_schema)
        return f"snowflake://{sf.account}/" + "/".join(p.upper() for p in parts)
    return None
