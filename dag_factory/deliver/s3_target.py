"""Copy the notebooks' output files to a partitioned S3 prefix.

Layout: ``s3://<bucket>/<prefix>/logical_date=<YYYY-MM-DD>/<column>=<value>/<relative path>``, where the
relative path is the file's path under the value's output prefix (``predictions/part-0.parquet``). For a
shared job without a fan-out column the ``<column>=<value>/`` level is left out. This is the Hive layout
that Athena, Spark, DuckDB and Snowflake external tables read as partition columns.

Replace semantics: every new object is uploaded first (overwriting same-named objects in place), and only
then are the partition's objects that are not in the new set deleted. S3 has no transaction, so a failure
part way leaves the partition holding the old files plus some new ones, never an empty partition; a
re-run finishes the job. Readers listing the partition mid-load may see that mix for a moment.
``append`` only uploads (same-named files are overwritten, others kept).

Objects already in S3 (the production outputs) are copied server side, in parts when large; only local
files (the local backend) are uploaded. Row counts come from parquet footers (ranged reads).
"""

from __future__ import annotations

import logging
from typing import Any

from dag_factory.deliver.batch import Batch
from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import SourceFile, copy_s3_object, count_rows, split_s3_url
from dag_factory.deliver.partition import DATE_COLUMN, Partition, check_mode
from dag_factory.spec.job import S3Delivery

log = logging.getLogger("dag_factory.deliver")


def partition_url(bucket: str, prefix: str, partition: Partition) -> str:
    """The s3:// URL (ending in /) that holds one partition's files."""
    parts = [p for p in prefix.strip("/").split("/") if p]
    parts.append(f"{DATE_COLUMN}={partition.logical_date.isoformat()}")
    if partition.column is not None:
        parts.append(f"{partition.column}={partition.value}")
    return f"s3://{bucket}/{'/'.join(parts)}/"


def load_s3(client: Any, files: list[SourceFile], target_url: str, mode: str = "replace_partition") -> int:
    """Copy files under the partition URL, then (replace mode) delete its stale objects; return rows."""
    check_mode(mode)
    bucket, key_prefix = split_s3_url(target_url)
    rows = sum(count_rows(f) for f in files)  # before any upload: a corrupt file stops the load here
    new_keys = set()
    for source in files:
        key = key_prefix + source.relative
        try:
            if source.in_s3:
                copy_s3_object(client, source.location, f"s3://{bucket}/{key}")
            else:
                client.upload_file(source.location, bucket, key)
        except Exception as exc:
            raise DeliveryError(f"{source.relative}: copy to s3://{bucket}/{key} failed: {exc}") from exc
        new_keys.add(key)
    stale = [] if mode == "append" else _stale_keys(client, bucket, key_prefix, new_keys)
    for start in range(0, len(stale), 1000):  # delete_objects takes at most 1000 keys
        batch = [{"Key": k} for k in stale[start : start + 1000]]
        answer = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            raise DeliveryError(f"{target_url}: could not delete stale objects: {answer['Errors'][:3]}")
    log.info(
        "copied %d file(s), %d row(s) to %s (%s); removed %d stale object(s)",
        len(files),
        rows,
        target_url,
        mode,
        len(stale),
    )
    return rows


def _stale_keys(client: Any, bucket: str, key_prefix: str, keep: set[str]) -> list[str]:
    stale: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        stale.extend(o["Key"] for o in page.get("Contents", []) if o["Key"] not in keep)
    return sorted(stale)


def deliver_to(target: S3Delivery, batch: Batch) -> int:
    """The dispatcher's entry: copy the batch under the target's partition prefix in its bucket (the
    planned target names the bucket its role resolved to)."""
    url = partition_url(target.bucket, target.prefix, batch.partition)
    return load_s3(batch.s3, batch.files, url, batch.load.mode)
