"""Deployed code: one immutable version per content, and a deploy log that says which was current when.

Layout, in the code bucket (`s3://<code>/<project>/`) or the local code folder (`<root>/<code>/<project>/`):

    versions/<version>/...                 the project's files; <version> is a hash of their content
    deploys/<UTC time>_<version>           one empty entry per deploy that changed the version

A version is written whole before its deploy entry, and never changed after (the same content is the
same version), so a reader never sees half a deploy. A run syncs the version that was current when the
run was queued (`version_at`): every lane, retry and clear of one run gets the same code, whatever
deploys happen while it runs. The times in the log are the deploying machine's clock; Airflow's is
compared with it (both NTP-synchronised in any real deployment).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dag_factory.errors import DagFactoryError
from dag_factory.plan.model import CODE_VERSIONS_FOLDER

VERSIONS = CODE_VERSIONS_FOLDER

DEPLOYS = "deploys"
_STAMP = "%Y%m%dT%H%M%S.%fZ"  # sorts as the time does


class CodeVersionError(DagFactoryError):
    """No version of the project was deployed before the run, or the deploy log is unreadable."""


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_version(md5s: Mapping[str, str]) -> str:
    """The version of a project whose files (relative key -> MD5) are these: 12 hex digits."""
    listing = "".join(f"{key}\0{md5}\n" for key, md5 in sorted(md5s.items()))
    return hashlib.sha256(listing.encode()).hexdigest()[:12]


def deploy_entry(version: str, at: dt.datetime) -> str:
    return f"{at.astimezone(dt.UTC).strftime(_STAMP)}_{version}"


class CodeStore(Protocol):
    """Where one project's code lives; keys are relative to `<code>/<project>/`."""

    @property
    def location(self) -> str:
        """Shown to people: s3://<code>/<project>, or the folder."""
        ...

    def listing(self, prefix: str) -> dict[str, str]:
        """Keys under ``prefix`` (relative to it) -> MD5 of the object."""
        ...

    def put(self, key: str, path: Path) -> None: ...

    def copy(self, source: str, key: str) -> None: ...


@dataclass(frozen=True)
class S3CodeStore:
    client: Any  # a boto3 S3 client
    bucket: str
    project: str

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.project}"

    def listing(self, prefix: str) -> dict[str, str]:
        head = f"{self.project}/{prefix}"
        found: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=head):
            for item in page.get("Contents", []):
                found[item["Key"][len(head) :]] = item["ETag"].strip('"')
        return found

    def put(self, key: str, path: Path) -> None:
        with path.open("rb") as body:  # a single-part upload: its ETag is the MD5 `listing` compares
            self.client.put_object(Bucket=self.bucket, Key=f"{self.project}/{key}", Body=body)

    def copy(self, source: str, key: str) -> None:  # server-side: nothing passes through this machine
        self.client.copy(
            {"Bucket": self.bucket, "Key": f"{self.project}/{source}"}, self.bucket, f"{self.project}/{key}"
        )


@dataclass(frozen=True)
class FolderCodeStore:
    root: Path  # <root>/<code>/<project>

    @property
    def location(self) -> str:
        return str(self.root)

    def listing(self, prefix: str) -> dict[str, str]:
        head = self.root / prefix
        if not head.is_dir():
            return {}
        return {p.relative_to(head).as_posix(): file_md5(p) for p in sorted(head.rglob("*")) if p.is_file()}

    def put(self, key: str, path: Path) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)

    def copy(self, source: str, key: str) -> None:
        self.put(key, self.root / source)


def deploys(store: CodeStore) -> list[tuple[str, str]]:
    """The deploy log, oldest first: (UTC time stamp, version)."""
    entries = sorted(store.listing(f"{DEPLOYS}/"))
    return [tuple(entry.split("_", 1)) for entry in entries if "_" in entry]  # type: ignore[misc]


def current_version(store: CodeStore) -> str | None:
    log = deploys(store)
    return log[-1][1] if log else None


def version_at(store: CodeStore, at: dt.datetime) -> str:
    """The version that was current at ``at`` (the last deploy at or before it)."""
    stamp = at.astimezone(dt.UTC).strftime(_STAMP)
    earlier = [version for when, version in deploys(store) if when <= stamp]
    if not earlier:
        raise CodeVersionError(
            f"no version of the code at {store.location} was deployed before {at.isoformat()} "
            "(when this run was queued): run `dag-factory deploy`, then trigger the run again"
        )
    return earlier[-1]


def version_files(store: CodeStore, version: str) -> dict[str, str]:
    return store.listing(f"{VERSIONS}/{version}/")


def publish(store: CodeStore, files: Mapping[str, Path], md5s: Mapping[str, str], now: dt.datetime) -> bool:
    """Make ``files`` (key -> local file, with their MD5s) the current version; False when it already was.

    Files the new version shares with the current one are copied inside the store, the others uploaded;
    the deploy entry is written last, once the version is whole.
    """
    version = content_version(md5s)
    current = current_version(store)
    if current == version:
        return False
    there = version_files(store, version)  # a version deployed before (a revert), or half of one
    previous = version_files(store, current) if current else {}
    for key, path in files.items():
        if there.get(key) == md5s[key]:
            continue
        if previous.get(key) == md5s[key]:
            store.copy(f"{VERSIONS}/{current}/{key}", f"{VERSIONS}/{version}/{key}")
        else:
            store.put(f"{VERSIONS}/{version}/{key}", path)
    with tempfile.NamedTemporaryFile() as empty:
        store.put(f"{DEPLOYS}/{deploy_entry(version, now)}", Path(empty.name))
    return True
