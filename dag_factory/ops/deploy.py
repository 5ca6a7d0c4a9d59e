"""`dag-factory deploy`: a validated project becomes its environment's current code version.

The project folder (notebooks, requirements, anything else the notebooks read) plus the spec file go
to `s3://<code bucket>/<project>/versions/<version>/` (sagemaker environments, boto3;
`AWS_ENDPOINT_URL` is honoured) or `<root>/<code bucket>/<project>/versions/<version>/` (local
environments: `dag-factory run` deploys there first), one immutable folder per content
(dag_factory.compute.code_versions: each run syncs the version current when it was queued). Files are
compared by MD5 with the current version: changed ones are uploaded, unchanged ones copied in place.
`--dry-run` only lists the changes.

The project folder must lie inside the spec's repository (`load.project`). Never uploaded, and
listed as skipped with the reason: files that look like secrets (`.env`, keys, ssh and cloud
credentials), version control data, run outputs and caches, and links that lead out of the
repository (links to folders are not followed).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from dag_factory.compute import aws
from dag_factory.compute.code_versions import (
    VERSIONS,
    CodeStore,
    FolderCodeStore,
    S3CodeStore,
    content_version,
    current_version,
    file_md5,
    publish,
    version_files,
)
from dag_factory.errors import DagFactoryError, SpecError
from dag_factory.load.files import PLATFORM_FILE
from dag_factory.load.project import inside, project_dir_problems, repository_root
from dag_factory.load.specs import LoadedSpec
from dag_factory.spec.platform import AwsEnvironment

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
    """A deploy: the version it makes current, and how it differs from the one that was."""

    destination: str
    version: str
    previous: str | None  # the version current before (None: the first deploy)
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


def _diff(local: dict[str, str], remote: dict[str, str], sync: Sync) -> None:
    for key, md5 in local.items():
        if key not in remote:
            sync.added.append(key)
        elif remote[key] != md5:
            sync.changed.append(key)
        else:
            sync.unchanged += 1
    sync.deleted = sorted(k for k in remote if k not in local)


def code_store(loaded: LoadedSpec, env: str) -> CodeStore:
    """Where the environment keeps the project's deployed code."""
    assert loaded.platform is not None
    settings = loaded.platform.settings.environments[env]
    if isinstance(settings, AwsEnvironment):
        return S3CodeStore(aws.client("s3", settings.region), settings.buckets.code, loaded.spec.project)
    root = (loaded.platform.path.parent / settings.root).resolve()
    return FolderCodeStore(root / settings.buckets.code / loaded.spec.project)


def deploy_project(loaded: LoadedSpec, env: str, dry_run: bool = False) -> Sync:
    """Deploy the project as a new version (compute.code_versions), unless it is the current one."""
    if loaded.platform is None:
        raise DeployError(f"{loaded.path}: no platform file; pass --platform")
    store = code_store(loaded, env)
    project = project_files(loaded)
    md5s = {key: file_md5(path) for key, path in project.files.items()}
    version = content_version(md5s)
    try:
        current = current_version(store)
    except Exception as exc:
        if isinstance(store, S3CodeStore) and isinstance(exc, store.client.exceptions.NoSuchBucket):
            raise DeployError(
                f"code bucket s3://{store.bucket} does not exist (platform file, buckets.code)"
            ) from None
        raise
    sync = Sync(f"{store.location}/{VERSIONS}/{version}/", version, current, skipped=project.skipped)
    _diff(md5s, version_files(store, current) if current else {}, sync)
    if not dry_run:
        publish(store, project.files, md5s, dt.datetime.now(dt.UTC))
    return sync


def render_sync(sync: Sync, dry_run: bool) -> str:
    lines = [f"  skipped {path}: {reason}" for path, reason in sync.skipped.items()]
    lines += (
        [f"+ {k}" for k in sync.added] + [f"~ {k}" for k in sync.changed] + [f"- {k}" for k in sync.deleted]
    )
    counts = f"{len(sync.added)} added, {len(sync.changed)} changed, {len(sync.deleted)} deleted"
    counts += f", {sync.unchanged} unchanged, {len(sync.skipped)} skipped"
    against = f" (against version {sync.previous})" if sync.previous else " (the first deploy)"
    if sync.version == sync.previous:
        lines.append(f"version {sync.version} at {sync.destination} is current: {counts}; nothing changed")
    elif dry_run:
        lines.append(f"dry run: would deploy version {sync.version} to {sync.destination}: {counts}{against}")
    else:
        lines.append(f"deployed version {sync.version} to {sync.destination}: {counts}{against}")
    return "\n".join(lines)
