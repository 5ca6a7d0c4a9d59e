"""Airflow asset URIs of deliveries: the form each target's URI takes, checked without Airflow.

The shapes follow the providers' asset URI handlers (`airflow.providers.<p>.assets.<p>.sanitize_uri`)
and Airflow's own normalisation (`airflow.sdk.definitions.asset._sanitize_uri`: lower-case scheme,
no trailing slash, no password, query sorted, fragment dropped), so a URI a spec names is the one
Airflow stores. `duckdb` has no provider handler, and a URI without a host keeps no `//` when
Airflow re-assembles it (`duckdb:///srv/x` is stored as `duckdb:/srv/x`), so a DuckDB file's asset
is written the way Airflow stores it:

- `postgres://<host>:<port>/<database>/<schema>/<table>`
- `snowflake://<account>/<database>/<schema>/<table>`
- `s3://<bucket>/<prefix>`
- `duckdb:/<absolute path of the database file>/<table>`
- `file://<absolute path>`: the local backend's copy of an s3 delivery (common.io provider's scheme)
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from dag_factory.spec.rules import rule_error
from dag_factory.spec.text import NAME, text_problem

ASSET_SCHEMES = ("postgres", "snowflake", "s3", "duckdb", "file")
EXAMPLES = {
    "postgres": "postgres://db.internal:5432/analytics/public/scores",
    "snowflake": "snowflake://xy12345.eu-west-1/ANALYTICS/ML/CHURN_SCORES",
    "s3": "s3://my-bucket/exports/scores",
    "duckdb": "duckdb:/srv/warehouse.duckdb/scores",
    "file": "file:///srv/buckets/data/exports/scores",
}
# What the JSON Schema can say: one of the schemes, then something.
ASSET_URI_PATTERN = "^((" + "|".join(ASSET_SCHEMES) + ")://|duckdb:/(?!/))[^\\s]+$"
_WHITESPACE = re.compile(r"\s")


def _shape_problem(scheme: str, netloc: str, parts: list[str]) -> str | None:
    """Why a URI of a known scheme does not have its target's shape, or None."""
    if scheme in ("postgres", "snowflake"):
        owner = "a host and port" if scheme == "postgres" else "an account"
        if not netloc:
            return f"needs {owner}"
        if scheme == "postgres" and not re.fullmatch(r"[^:/]+:\d+", netloc):
            return "needs the port after the host (Airflow adds :5432 when it is missing)"
        if len(parts) != 3 or not all(parts):
            return "needs /<database>/<schema>/<table> after the " + (
                "host" if scheme == "postgres" else "account"
            )
    elif scheme == "s3" and not netloc:
        return "needs a bucket"
    elif scheme == "duckdb" and (netloc or len(parts) < 2 or not all(parts)):
        return "needs the database file's absolute path and the table, duckdb:/<path>/<table>"
    elif scheme == "file" and (netloc or len(parts) < 1 or not all(parts)):
        return "needs an absolute path, file:///<path>"
    return None


def check_asset_uri(uri: str) -> str:
    """The URI when it names a delivery target as Airflow would store it; a located error otherwise."""
    problem = text_problem(uri, NAME)  # template syntax, quotes, '$': as for every name
    if problem is not None:
        raise rule_error(*problem)
    if _WHITESPACE.search(uri):
        raise rule_error(f"asset {uri!r} holds whitespace", "an asset URI is one word")
    parsed = urlsplit(uri)
    scheme = uri.partition(":")[0]  # as written: urlsplit lower-cases it
    if uri.startswith("duckdb://"):
        raise rule_error(
            f"asset {uri!r} is stored by Airflow without the '//'",
            f"write duckdb:/<absolute path>/<table>, e.g. {EXAMPLES['duckdb']}",
        )
    separator = ":/" if scheme == "duckdb" else "://"
    if scheme not in ASSET_SCHEMES or not uri.startswith(scheme + separator):
        forms = ", ".join(f"{s}:/" if s == "duckdb" else f"{s}://" for s in ASSET_SCHEMES)
        hint = f"use one of {forms}, e.g. {EXAMPLES['postgres']}"
        if scheme.lower() in ASSET_SCHEMES:
            hint = f"write the scheme in lower case: {scheme.lower()}:"
        raise rule_error(f"asset {uri!r} is not a delivery target's URI", hint)
    if parsed.password is not None or parsed.username is not None:
        raise rule_error(f"asset {uri!r} holds user information", "leave out 'user:password@'")
    if parsed.query or parsed.fragment or uri.endswith("/"):
        raise rule_error(
            f"asset {uri!r} has a query, fragment or trailing '/' that Airflow would change",
            f"write it as Airflow stores it, e.g. {EXAMPLES[scheme]}",
        )
    problem_of_shape = _shape_problem(scheme, parsed.netloc, parsed.path.split("/")[1:])
    if problem_of_shape is not None:
        raise rule_error(f"asset {uri!r} {problem_of_shape}", f"e.g. {EXAMPLES[scheme]}")
    return uri
