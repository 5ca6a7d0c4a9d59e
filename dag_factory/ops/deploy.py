"""`dag-factory deploy`: sync a validated project to its environment's code bucket.

The project folder (notebooks, requirements, anything else the notebooks read) plus the spec file go
to `s3://<code bucket>/<project>/` (sagemaker environments, boto3; `AWS_ENDPOINT_URL` is honoured)
or to `<root>/<code bucket>/<project>/` (local environments: `dag-factory run` deploys there first).
Files are compared by MD5 (the S3 ETag of a single-part upload): only changed files are uploaded,
and remote files no longer in the project are deleted. `--dry-run` only lists the changes.

The project folder must lie inside the spec's repository (`load.project`). Never uploaded, and
listed as skipped with the reason: files that look like secrets (`.env`, keys, ssh and cloud
credentials), version control data, run outputs and caches, and links that lead out of the
repository (links to folders are not followed).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dag_factory.compute import aws
from dag_factory.errors import DagFactoryError, SpecError
from dag_factory.load.files import PLATFORM_FILE
from dag_factory.load.project import inside, project_dir_problems, repository_root
from dag_factory.load.specs import LoadedSpec
from dag_factory.spec.platform import LocalEnvironment, SageMakerEnvironment

_SECRET = "may hold secrets"
_KEY = "a private key or certificate"
# (pattern of a file or folder name, why it is never uploaded); a folder's whole content is skipped.
SKIPPED = (
    (".env", _SECRET),
    (".env.*", _SECRET),
    ("*.env", _SECRET),
    ("*.pem", _KEY),
    ("*.key", _KEY),
    ("*.p12", _KEY),
    ("*.pfx", _KEY),
    ("*.jks", _KEY),
    ("id_rsa*", "an ssh key"),
    ("id_dsa*", "an ssh key"),
    ("id_ecdsa*", "an ssh key"),
    ("id_ed25519*", "an ssh key"),
    (".ssh", "ssh keys"),
    (".aws", "cloud credentials"),
    (".netrc", "credentials"),
    (".pgpass", "credentials"),
    (".git-credentials", "credentials"),
    (".pypirc", "credentials"),
    (".git", "version control data"),
    ("outputs", "run outputs"),
    (".ipynb_checkpoints", "editor checkpoints"),
    ("__pycache__", "python caches"),
    ("*.pyc", "python caches"),
    (".venv", "a virtualenv"),
    (".dag-factory", "local run data"),
    (".DS_Store", "editor files"),
)


class DeployError(DagFactoryError):
    pass


@dataclass
class Sync:
    destination: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # path in the project (folders end in /): why


@dataclass
class ProjectFiles:
    """What a deploy uploads (key -> file) and what it leaves out (path -> reason)."""

    files: dict[str, Path]
    skipped: dict[str, str]


def find_spec(target: Path) -> Path:
    """The spec itself, or the one job spec (a yaml file with `project:`) directly in a folder."""
    if target.is_file():
        return target
    if not target.is_dir():
        raise DeployError(f"no such spec file or project folder: {target}")
    found = [
        p
        for p in sorted([*target.glob("*.yaml"), *target.glob("*.yml")])
        if p.name != PLATFORM_FILE and any(line.startswith("project:") for line in p.read_text().splitlines())
    ]
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DeployError(f"{target} must hold exactly one job spec (found: {listed}); pass the spec file")
    return found[0]


def _skip_reason(name: str) -> str | None:
    return next((reason for pattern, reason in SKIPPED if fnmatch.fnmatch(name, pattern)), None)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def project_files(loaded: LoadedSpec) -> ProjectFiles:
    """The project folder without what SKIPPED names, nor links out of the repository, plus the spec.

    Raises SpecError when the project folder is missing or outside the spec's repository.
    """
    problems = project_dir_problems(loaded)
    if problems:
        raise SpecError(problems)
    root, repository = loaded.project_dir, repository_root(loaded.path)
    files: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):  # links to folders are listed, never walked into
        here = Path(folder)
        prefix = "/".join((*here.relative_to(root).parts, ""))
        dirs.sort()
        for name in list(dirs):
            path = here / name
            reason = _skip_reason(name)
            if reason is None and path.is_symlink():
                out = not inside(path.resolve(), repository)
                reason = (
                    "a link that leads out of the repository" if out else "a link to a folder (not followed)"
                )
            if reason is not None:
                skipped[f"{prefix}{name}/"] = reason
                dirs.remove(name)
        for name in sorted(names):
            path = here / name
            reason = _skip_reason(name)
            if reason is None and path.is_symlink() and not inside(path.resolve(), repository):
                reason = "a link that leads out of the repository"
            if reason is not None:
                skipped[prefix + name] = reason
            elif path.is_file():
                files[prefix + name] = path
    files.setdefault(loaded.path.name, loaded.path)
    return ProjectFiles(dict(sorted(files.items())), dict(sorted(skipped.items())))


def _diff(local: dict[str, Path], remote: dict[str, str], destination: str, skipped: dict[str, str]) -> Sync:
    sync = Sync(destination, skipped=skipped)
    for key, path in local.items():
        if key not in remote:
            sync.added.append(key)
        elif remote[key] != _md5(path):
            sync.changed.append(key)
        else:
            sync.unchanged += 1
    sync.deleted = sorted(k for k in remote if k not in local)
    return sync


def _s3_sync(loaded: LoadedSpec, env: SageMakerEnvironment, dry_run: bool) -> Sync:
    bucket, prefix = env.buckets.code, f"{loaded.spec.project}/"
    client = aws.client("s3", env.region)
    remote: dict[str, str] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                remote[item["Key"][len(prefix) :]] = item["ETag"].strip('"')
    except client.exceptions.NoSuchBucket:
        raise DeployError(f"code bucket s3://{bucket} does not exist (platform file, buckets.code)") from None
    project = project_files(loaded)
    local = project.files
    sync = _diff(local, remote, f"s3://{bucket}/{prefix}", project.skipped)
    if dry_run:
        return sync
    for key in [*sync.added, *sync.changed]:
        with local[key].open("rb") as body:
            client.put_object(Bucket=bucket, Key=prefix + key, Body=body)
    for start in range(0, len(sync.deleted), 1000):
        chunk = sync.deleted[start : start + 1000]
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": prefix + k} for k in chunk]})
    return sync


def _local_sync(loaded: LoadedSpec, env: LocalEnvironment, dry_run: bool) -> Sync:
    assert loaded.platform is not None
    root = (loaded.platform.path.parent / env.root).resolve()
    target = root / env.buckets.code / loaded.spec.project
    remote = (
        {p.relative_to(target).as_posix(): _md5(p) for p in sorted(target.rglob("*")) if p.is_file()}
        if target.is_dir()
        else {}
    )
    project = project_files(loaded)
    local = project.files
    sync = _diff(local, remote, str(target) + "/", project.skipped)
    if dry_run:
        return sync
    for key in [*sync.added, *sync.changed]:
        (target / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local[key], target / key)
    for key in sync.deleted:
        (target / key).unlink()
    return sync


def deploy_project(loaded: LoadedSpec, env: str, dry_run: bool = False) -> Sync:
    if loaded.platform is None:
        raise DeployError(f"{loaded.path}: no platform file; pass --platform")
    settings = loaded.platform.settings.environments[env]
    if isinstance(settings, SageMakerEnvironment):
        return _s3_sync(loaded, settings, dry_run)
    return _local_sync(loaded, settings, dry_run)


def render_sync(sync: Sync, dry_run: bool) -> str:
    verb = "would" if dry_run else ""
    lines = [f"  skipped {path}: {reason}" for path, reason in sync.skipped.items()]
    lines += (
        [f"+ {k}" for k in sync.added] + [f"~ {k}" for k in sync.changed] + [f"- {k}" for k in sync.deleted]
    )
    counts = f"{len(sync.added)} added, {len(sync.changed)} changed, {len(sync.deleted)} deleted"
    counts += f", {sync.unchanged} unchanged, {len(sync.skipped)} skipped"
    if dry_run:
        lines.append(f"dry run: {verb} sync {sync.destination}: {counts}; nothing changed")
    else:
        lines.append(f"deployed to {sync.destination}: {counts}")
    return "\n".join(lines)
