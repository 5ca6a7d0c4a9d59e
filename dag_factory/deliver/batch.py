"""What every loader gets for one delivery: one value's matched files and where they land."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dag_factory.deliver.files import SourceFile
from dag_factory.deliver.ledger import PartitionLoad
from dag_factory.deliver.partition import Partition


@dataclass(frozen=True)
class Connections:
    """The Airflow connection ids a loader may use."""

    postgres: str = "postgres_default"
    snowflake: str = "snowflake_default"
    aws: str = "aws_default"


@dataclass(frozen=True)
class Batch:
    """One fan-out value's files for one target. ``s3`` is a boto3 S3 client when the source or the
    target is in S3, else None; ``load`` keys the load in the target's ledger."""

    files: list[SourceFile]
    source_prefix: str
    partition: Partition
    load: PartitionLoad
    connections: Connections
    s3: Any
