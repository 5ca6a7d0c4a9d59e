"""Find, fetch and read the files the notebooks wrote under one fan-out value's output prefix.

A prefix is a local directory or an ``s3://bucket/key/`` URL. ``files`` is a glob relative to the prefix:
``*`` and ``?`` stay inside one path segment, ``**`` spans any number of segments
(``predictions/*.parquet``, ``**/*.json``). Matches are returned sorted, so loads are reproducible.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dag_factory.deliver.errors import DeliveryError

log = logging.getLogger("dag_factory.deliver")

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json", ".ndjson": "json"}


@dataclass(frozen=True)
class SourceFile:
    """One matched file: where it lives locally, and its path relative to the output prefix."""

    path: Path
    relative: str

    @property
    def format(self) -> str:
        return file_format(self.relative)


def file_format(name: str) -> str:
    """Return 'parquet' or 'json' for a file name, else fail naming the supported suffixes."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in FORMATS:
        raise DeliveryError(f"{name}: unsupported file type {suffix or '(none)'!r}: use {', '.join(FORMATS)}")
    return FORMATS[suffix]


def match_glob(relative: str, pattern: str) -> bool:
    """True if a slash-separated relative path matches the glob, segment by segment.

    A path with empty, `.` or `..` segments never matches: it is not a file under the prefix.
    """
    if not safe_relative(relative):
        return False
    return _match_parts(relative.split("/"), pattern.strip("/").split("/"))


def safe_relative(relative: str) -> bool:
    """A plain relative path: no leading '/', no empty, '.' or '..' segments, no NUL."""
    if not relative or "\0" in relative:
        return False
    return all(part not in ("", ".", "..") for part in relative.split("/"))


def escaping_key_error(key: str, prefix: str) -> DeliveryError:
    return DeliveryError(
        f"object key {key!r} under {prefix} has '..', '.' or empty path segments, so it would be written "
        "outside the delivery's folder: refused; write output files under plain relative names"
    )


def _match_parts(parts: list[str], pats: list[str]) -> bool:
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_match_parts(parts[i:], pats[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _match_parts(parts[1:], pats[1:])


def split_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key (key without a leading slash)."""
    if not url.startswith("s3://"):
        raise DeliveryError(f"{url}: not an s3:// url")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise DeliveryError(f"{url}: no bucket in s3 url: write s3://BUCKET/PREFIX/")
    return bucket, key


def list_local(prefix: str, pattern: str) -> list[SourceFile]:
    """Files under a local directory whose relative path matches the pattern."""
    root = Path(prefix)
    if not root.is_dir():
        return []
    found = []
    inside = root.resolve()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and match_glob(relative, pattern):
            if not path.resolve().is_relative_to(inside):  # a symlink out of the prefix
                raise DeliveryError(
                    f"{relative} under {prefix} is a link to {path.resolve()}, outside the output prefix: "
                    "refused; write the file itself, not a link"
                )
            found.append(SourceFile(path, relative))
    return sorted(found, key=lambda f: f.relative)


def list_s3_keys(client: Any, url: str, pattern: str) -> list[tuple[str, str]]:
    """(key, relative path) of objects under an s3 prefix matching the pattern, sorted."""
    bucket, key_prefix = split_s3_url(url)
    if key_prefix and not key_prefix.endswith("/"):
        key_prefix += "/"
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(key_prefix) :]
            if not relative:
                continue
            if not safe_relative(relative):
                # a key such as 'run/de/../../etc/x' must never become a path on the worker
                raise escaping_key_error(obj["Key"], url)
            if match_glob(relative, pattern):
                found.append((obj["Key"], relative))
    return sorted(found, key=lambda kr: kr[1])


def require_files(found: list[SourceFile], prefix: str, pattern: str, allow_empty: bool) -> None:
    """Fail when nothing matched, unless the target allows an empty delivery."""
    if not found and not allow_empty:
        raise DeliveryError(
            f"no files match {pattern!r} under {prefix}: check the notebooks wrote their outputs there "
            f"or set allow_empty: true on the deliver target"
        )


@contextlib.contextmanager
def fetch_files(prefix: str, pattern: str, s3_client: Any | None = None) -> Iterator[list[SourceFile]]:
    """Yield the matching files as local paths; s3 objects are downloaded to a temp dir removed after."""
    if not prefix.startswith("s3://"):
        yield list_local(prefix, pattern)
        return
    if s3_client is None:
        raise DeliveryError(f"{prefix}: an s3 source needs an s3 client (aws connection)")
    bucket, _ = split_s3_url(prefix)
    with tempfile.TemporaryDirectory(prefix="dag-factory-deliver-") as tmp:
        files = []
        root = Path(tmp).resolve()
        for key, relative in list_s3_keys(s3_client, prefix, pattern):
            local = (root / relative).resolve()
            if not local.is_relative_to(root):  # belt and braces: list_s3_keys refused such keys
                raise escaping_key_error(key, prefix)
            local.parent.mkdir(parents=True, exist_ok=True)
            s3_client.download_file(bucket, key, str(local))
            files.append(SourceFile(local, relative))
        log.info("fetched %d file(s) from %s", len(files), prefix)
        yield files


def read_file(source: SourceFile) -> pa.Table:
    """Read one parquet or json file (a JSON array of objects, or JSON Lines) into an arrow table."""
    try:
        if source.format == "parquet":
            return pq.read_table(source.path)
        return _read_json(source.path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DeliveryError(f"{source.relative}: cannot read {source.format} file: {exc}") from exc


def _read_json(path: Path) -> pa.Table:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"["):
        rows = json.loads(path.read_bytes())
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("a json file must be an array of objects or JSON Lines")
        return pa.Table.from_pylist(rows)
    if not head:
        return pa.table({})
    return pajson.read_json(path)


def read_files(files: list[SourceFile]) -> pa.Table | None:
    """Read and concatenate all files; None when there are none. Reads everything before any load."""
    tables = [(f, read_file(f)) for f in files]
    tables = [(f, t) for f, t in tables if t.num_columns]
    if not tables:
        return None
    try:
        return pa.concat_tables([t for _, t in tables], promote_options="default")
    except pa.ArrowException as exc:
        shown = "; ".join(f"{f.relative}: {_schema_text(t.schema)}" for f, t in tables[:5])
        raise DeliveryError(f"files do not share one schema ({exc}): {shown}") from exc


def count_rows(source: SourceFile) -> int:
    """Rows in one file: parquet from its footer, json by reading it."""
    if source.format == "parquet":
        try:
            return int(pq.read_metadata(source.path).num_rows)
        except (OSError, pa.ArrowException) as exc:
            raise DeliveryError(f"{source.relative}: cannot read parquet footer: {exc}") from exc
    return int(read_file(source).num_rows)


def _schema_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)
