"""Find and read the files the notebooks wrote under one fan-out value's output prefix.

A prefix is a local directory or an ``s3://bucket/key/`` URL. ``files`` is a glob relative to the prefix:
``*`` and ``?`` stay inside one path segment, ``**`` spans any number of segments
(``predictions/*.parquet``, ``**/*.json``). Matches are returned sorted, so loads are reproducible.

Outputs never pass whole through the worker: an S3 object is read where it is, with ranged GETs (a
parquet file's schema and row count come from its footer, its rows one row group at a time), nothing is
downloaded first, and rows reach a target one batch at a time (``FileRows``), never all files at once.
A JSON file is read whole (one file at a time): large outputs belong in parquet.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dag_factory.deliver.errors import DeliveryError

log = logging.getLogger("dag_factory.deliver")

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json", ".ndjson": "json"}
READ_ROWS = 1024  # rows read at a time from a file
BATCH_ROWS = 64 * 1024  # at most, per batch handed to a target
BATCH_BYTES = 8 * 1024 * 1024  # about, per batch: wide rows come in fewer per batch


@dataclass(frozen=True)
class SourceFile:
    """One matched file: where it is (a local path or an ``s3://`` URL, read through ``s3``), its size,
    and its path relative to the output prefix."""

    location: str
    relative: str
    size: int
    s3: Any = field(default=None, compare=False, repr=False)

    @property
    def format(self) -> str:
        return file_format(self.relative)

    @property
    def in_s3(self) -> bool:
        return self.location.startswith("s3://")

    def open(self) -> pa.NativeFile:
        """A seekable reader: the local file, or the S3 object read in place with ranged GETs."""
        if not self.in_s3:
            return pa.OSFile(self.location)
        bucket, key = split_s3_url(self.location)
        return pa.PythonFile(S3ObjectReader(self.s3, bucket, key, self.size), mode="r")


class S3ObjectReader(io.RawIOBase):
    """A seekable read-only view of one S3 object, each read one ranged GET: reading a parquet footer
    or one row group fetches those bytes only (boto3's own body streams forwards only)."""

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._size = client, bucket, key, size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readall(self) -> bytes:
        # io's default reads 8 KB at a time: one GET per 8 KB
        buffer = bytearray(max(self._size - self._position, 0))
        return bytes(buffer[: self.readinto(buffer)])

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._position + len(view), self._size)
        if end <= self._position:
            return 0
        filled = 0
        try:
            answer = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{end - 1}"
            )
            body = answer["Body"]
            while filled < end - self._position:  # straight into the caller's buffer, no second copy
                chunk = body.read(min(end - self._position - filled, 1 << 20))
                if not chunk:
                    break
                view[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
            body.close()
        except Exception as exc:  # botocore's errors are no OSError: make them one, for the callers
            raise OSError(f"reading s3://{self._bucket}/{self._key} failed: {exc}") from exc
        self._position += filled
        return filled


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


def copy_s3_object(s3: Any, source_url: str, target_url: str) -> None:
    """Copy one object inside S3, server side: boto3's managed copy switches to a multipart copy
    (UploadPartCopy) above 8 MB, so no byte passes through the worker and objects above copy_object's
    5 GB limit copy too."""
    source_bucket, source_key = split_s3_url(source_url)
    target_bucket, target_key = split_s3_url(target_url)
    s3.copy({"Bucket": source_bucket, "Key": source_key}, target_bucket, target_key)


def list_files(prefix: str, pattern: str, s3: Any = None) -> list[SourceFile]:
    """The files under a local directory or an s3:// prefix whose relative path matches the pattern."""
    if not prefix.startswith("s3://"):
        return list_local(prefix, pattern)
    if s3 is None:
        raise DeliveryError(f"{prefix}: an s3 source needs an s3 client (aws connection)")
    bucket, _ = split_s3_url(prefix)
    return [
        SourceFile(f"s3://{bucket}/{key}", relative, size, s3)
        for key, relative, size in list_s3_keys(s3, prefix, pattern)
    ]


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
            found.append(SourceFile(str(path), relative, path.stat().st_size))
    return sorted(found, key=lambda f: f.relative)


def list_s3_keys(client: Any, url: str, pattern: str) -> list[tuple[str, str, int]]:
    """(key, relative path, size) of objects under an s3 prefix matching the pattern, sorted."""
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
                # a key such as 'run/de/../../etc/x' must never reach a target as a path
                raise escaping_key_error(obj["Key"], url)
            if match_glob(relative, pattern):
                found.append((obj["Key"], relative, int(obj["Size"])))
    return sorted(found, key=lambda found: found[1])


def require_files(found: list[SourceFile], prefix: str, pattern: str, allow_empty: bool) -> None:
    """Fail when nothing matched, unless the target allows an empty delivery."""
    if not found and not allow_empty:
        raise DeliveryError(
            f"no files match {pattern!r} under {prefix}: check the notebooks wrote their outputs there "
            f"or set allow_empty: true on the deliver target"
        )


def read_schema(source: SourceFile) -> pa.Schema:
    """A file's columns: a parquet file's from its footer alone, a JSON file's by reading it."""
    try:
        if source.format == "parquet":
            with source.open() as handle:
                return pq.read_schema(handle)
        return _read_json(source).schema
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DeliveryError(f"{source.relative}: cannot read {source.format} file: {exc}") from exc


def read_batches(source: SourceFile, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """A file's rows (only ``columns`` of them, when given), at most BATCH_ROWS at a time: a parquet
    file one row group after the other, a JSON file read whole."""
    try:
        if source.format == "parquet":
            with source.open() as handle:
                parquet = pq.ParquetFile(handle)
                wanted = None if columns is None else [c for c in columns if c in parquet.schema_arrow.names]
                if wanted != []:
                    # one thread: the target is the bottleneck, and each reading thread holds buffers
                    read = parquet.iter_batches(batch_size=READ_ROWS, columns=wanted, use_threads=False)
                    yield from _rebatch(read)
            return
        table = _read_json(source)
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        yield from _rebatch(iter(table.to_batches(max_chunksize=READ_ROWS)))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DeliveryError(f"{source.relative}: cannot read {source.format} file: {exc}") from exc


def _rebatch(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Small batches joined into batches of about BATCH_BYTES (at most BATCH_ROWS rows): a parquet
    footer's sizes are of the encoded data, so the decoded width is only known once read."""
    pending: list[pa.RecordBatch] = []
    size = rows = 0
    for batch in batches:
        pending.append(batch)
        size, rows = size + batch.nbytes, rows + batch.num_rows
        if size >= BATCH_BYTES or rows >= BATCH_ROWS:
            yield pa.concat_batches(pending)
            pending, size, rows = [], 0, 0
    if pending:
        yield pa.concat_batches(pending)


def _read_json(source: SourceFile) -> pa.Table:
    """A JSON array of objects, or JSON Lines, as an arrow table."""
    with source.open() as handle:
        head = handle.read(4096).lstrip()
        handle.seek(0)
        if head.startswith(b"["):
            rows = json.loads(handle.read())
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError("a json file must be an array of objects or JSON Lines")
            return pa.Table.from_pylist(rows)
        if not head:
            return pa.table({})
        return pajson.read_json(handle)


@dataclass(frozen=True)
class FileRows:
    """The rows of the matched files, never all in memory: their shared schema (from the parquet
    footers; a column some files lack reads as nulls there) and the files that have columns."""

    schema: pa.Schema
    files: list[SourceFile]

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Each file's batches as the file has them (see ``conform``), file after file."""
        for source in self.files:
            yield from read_batches(source, columns)


def open_rows(files: list[SourceFile]) -> FileRows | None:
    """The files' shared schema, checked before any row is read; None when no file has a column."""
    schemas = [(f, read_schema(f)) for f in files]
    schemas = [(f, s) for f, s in schemas if len(s)]
    if not schemas:
        return None
    try:
        schema = pa.unify_schemas([s for _, s in schemas], promote_options="default")
    except pa.ArrowException as exc:
        shown = "; ".join(f"{f.relative}: {_schema_text(s)}" for f, s in schemas[:5])
        raise DeliveryError(f"files do not share one schema ({exc}): {shown}") from exc
    return FileRows(schema, [f for f, _ in schemas])


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch with exactly the schema's columns, in its order and types (missing ones as nulls)."""
    arrays = []
    for wanted in schema:
        index = batch.schema.get_field_index(wanted.name)
        if index < 0:
            arrays.append(pa.nulls(batch.num_rows, wanted.type))
            continue
        column = batch.column(index)
        arrays.append(column if column.type == wanted.type else column.cast(wanted.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def count_rows(source: SourceFile) -> int:
    """Rows in one file: parquet from its footer, json by reading it."""
    if source.format == "parquet":
        try:
            with source.open() as handle:
                return int(pq.read_metadata(handle).num_rows)
        except (OSError, pa.ArrowException) as exc:
            raise DeliveryError(f"{source.relative}: cannot read parquet footer: {exc}") from exc
    try:
        return int(_read_json(source).num_rows)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DeliveryError(f"{source.relative}: cannot read json file: {exc}") from exc


def _schema_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)
