"""What each delivery target's tasks are called: ``deliver_<name>`` in a value's group and ``publish_<name>``
at DAG level, where the name is the target's table (its last part) or its S3 prefix (its last folder).

A name is lower case letters, digits and single underscores (a valid Airflow task id, never ``__``, which
separates a shared group's task from its value). Targets whose names are alike are told apart by their
kind (``churn_scores_snowflake``, ``churn_scores_duckdb``), then by a number in spec order (``_2``...).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from dag_factory.spec.job import Delivery, S3Delivery

MAX_NAME = 64  # of the name part; a task id is at most 250 characters with its group


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:MAX_NAME].strip("_")


def delivery_name(target: Delivery) -> str:
    """The target's own name, before it is told apart from the others'."""
    if isinstance(target, S3Delivery):
        last = target.prefix.rstrip("/").rsplit("/", 1)[-1]  # its last folder
    else:
        last = target.table.rsplit(".", 1)[-1]  # the table, without its schema and database
    return _slug(last) or target.to


def delivery_names(targets: Sequence[Delivery]) -> list[str]:
    """Each target's name in the spec's order, unique among them."""
    own = [delivery_name(t) for t in targets]
    shared = Counter(own)
    names = [name if shared[name] == 1 else f"{name}_{t.to}" for name, t in zip(own, targets, strict=True)]
    if len(set(names)) == len(names):
        return names
    unique: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in unique or (candidate != name and candidate in names):
            n += 1
            candidate = f"{name}_{n}"
        unique.append(candidate)
    return unique


def deliver_task_id(name: str) -> str:
    return f"deliver_{name}"


def publish_task_id(name: str) -> str:
    return f"publish_{name}"
