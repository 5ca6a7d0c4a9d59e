"""Each try of a notebook step starts from the outputs its predecessors left, never from a failed try's.

All notebooks of one fan-out value write under one output prefix (``<head>/<run id>/<value>``): a later
notebook reads an earlier one's files there, and delivery globs it. A try that fails halfway (the kernel
died, the connection dropped) leaves part files behind that the next try does not overwrite (a file
named per write, a different partition), so delivery would load their rows twice. So, before each try
of a step:

- the first try records which objects are under the prefix (a manifest, kept beside the value folders
  in ``<head>/<run id>/.dag-factory/outputs/<value>/<step>.json``: no delivery glob reaches it, and no
  fan-out value starts with a dot);
- a later try moves every object that is not in the manifest (what earlier tries of this step wrote,
  their executed notebook included) to ``<head>/<run id>/.dag-factory/failed-tries/<value>/<step>/
  try-<n>/``, kept for debugging; the prefix then holds exactly what the step's predecessors wrote.

A notebook should add files rather than rewrite an earlier notebook's: a rewritten file is not restored.
The prefix is a local directory (local backend) or an ``s3://`` URL.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from dag_factory.deliver.files import copy_s3_object, split_s3_url

log = logging.getLogger("dag_factory.deliver.tries")

STATE = ".dag-factory"


def _state_paths(prefix: str, step: str, try_number: int) -> tuple[str, str]:
    """(manifest, set-aside folder) of a step's outputs under ``prefix`` (``<head>/<run id>/<value>``)."""
    run_folder, _, value = prefix.rstrip("/").rpartition("/")
    state = f"{run_folder}/{STATE}"
    return f"{state}/outputs/{value}/{step}.json", f"{state}/failed-tries/{value}/{step}/try-{try_number - 1}"


def _list(prefix: str, s3: Any) -> list[str]:
    """Paths relative to ``prefix`` of everything under it."""
    if prefix.startswith("s3://"):
        bucket, key = split_s3_url(prefix.rstrip("/") + "/")
        found: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            found.extend(obj["Key"][len(key) :] for obj in page.get("Contents", []))
        return sorted(found)
    root = Path(prefix)
    return (
        sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        if root.is_dir()
        else []
    )


def _read_manifest(url: str, s3: Any) -> list[str] | None:
    if url.startswith("s3://"):
        bucket, key = split_s3_url(url)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        if not listed or listed[0]["Key"] != key:
            return None
        return list(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    path = Path(url)
    return list(json.loads(path.read_text())) if path.is_file() else None


def _write_manifest(url: str, keys: list[str], s3: Any) -> None:
    data = json.dumps(keys).encode()
    if url.startswith("s3://"):
        bucket, key = split_s3_url(url)
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        return
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    Path(url).write_bytes(data)


def _move(prefix: str, relative: str, target: str, s3: Any) -> None:
    source = f"{prefix.rstrip('/')}/{relative}"
    if prefix.startswith("s3://"):
        copy_s3_object(s3, source, f"{target}/{relative}")
        bucket, key = split_s3_url(source)
        s3.delete_object(Bucket=bucket, Key=key)
        return
    destination = Path(target, relative)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, destination)


def set_aside_failed_tries(prefix: str, step: str, try_number: int, s3: Any = None) -> list[str]:
    """Before try ``try_number`` of ``step``: record the prefix (no manifest yet) or move aside what
    earlier tries wrote. Returns the relative paths moved aside."""
    manifest, aside = _state_paths(prefix, step, try_number)
    before = _read_manifest(manifest, s3)
    present = _list(prefix, s3)
    if before is None:
        _write_manifest(manifest, present, s3)
        return []
    stale = sorted(set(present) - set(before))
    for relative in stale:
        _move(prefix, relative, aside, s3)
    if stale:
        log.info("moved %d file(s) an earlier try of %s wrote to %s", len(stale), step, aside)
    return stale
