"""Names that must be valid for AWS and stable across task retries."""

from __future__ import annotations

import hashlib
import re

MAX_INSTANCE_NAME = 63
FACTORY_TAG = "dag-factory"  # tag key marking instances this factory created (for the orphan sweeper)


def instance_name(dag_id: str, run_id: str, group: str) -> str:
    """A SageMaker notebook instance name: unique per run and group, the same on every retry.

    `[a-zA-Z0-9](-*[a-zA-Z0-9])*`, at most 63 characters: readable head, hash for uniqueness.
    """
    digest = hashlib.sha256(f"{dag_id}\n{run_id}\n{group}".encode()).hexdigest()[:10]
    head = re.sub(r"[^a-zA-Z0-9]+", "-", f"nb-{dag_id}-{group}").strip("-")
    head = head[: MAX_INSTANCE_NAME - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"
