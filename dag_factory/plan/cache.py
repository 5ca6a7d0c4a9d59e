"""A disk cache of DAG plans, keyed by content: what `dag_from_spec` need not redo at every parse.

Airflow re-parses every DAG file every `min_file_process_interval` (30 s by default), and a spec rarely
changes between two parses. Loading, validating and planning a spec is pure: its result depends only on
the spec's and the platform file's bytes (and their paths), the environment, `only`, the dag_factory code
and the pydantic/PyYAML versions, and for the local backend the Python executable and whether `uv` is
on $PATH. All of those go into a sha256 key, so a change to any of them is a miss; nothing is ever stale.

Safe by construction:
- only successful plans are stored; a spec with errors is loaded again at every parse, so its import
  error is always the current, located one;
- entries are JSON (no pickle: reading one cannot run code), written atomically, and stored only when
  they read back equal to the plan; an entry that is unreadable, corrupt or for another key is a miss
  (and is overwritten);
- the cache directory must belong to the current user and not be writable by others, otherwise it is
  not used (a plan holds shell commands).

Where: $DAG_FACTORY_CACHE_DIR/plans, else $AIRFLOW_HOME/dag_factory_cache (AIRFLOW_HOME defaulting to
~/airflow, as in Airflow). DAG_FACTORY_CACHE_DIR=off disables it (dag_factory.settings).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from dag_factory import settings
from dag_factory.plan.model import TASK_ARGS, DagPlan, Estimate, GroupPlan, PublishPlan, TaskArgs, TaskPlan

FORMAT = 4  # bump when the entry layout changes
MAX_AGE_S = 7 * 24 * 3600  # entries not (re)written for a week are pruned, now and then
PRUNE_PROBABILITY = 0.02  # per write

# The modules whose code decides a plan (relative to dag_factory/): a change to any is a miss.
_CODE = ("__init__.py", "errors.py", "settings.py", "load", "plan", "spec")
_fingerprint: str | None = None


def code_fingerprint() -> str:
    """sha256 of the plan-deciding source files and library versions; computed once per process."""
    global _fingerprint
    if _fingerprint is None:
        import pydantic
        import yaml

        digest = hashlib.sha256(f"{FORMAT}\0{pydantic.VERSION}\0{yaml.__version__}\0".encode())
        package = Path(__file__).resolve().parents[1]
        for name in _CODE:
            path = package / name
            files = sorted(path.glob("*.py")) if path.is_dir() else [path]
            for file in files:
                digest.update(file.relative_to(package).as_posix().encode() + b"\0")
                digest.update(file.read_bytes() + b"\0")
        _fingerprint = digest.hexdigest()
    return _fingerprint


def cache_dir() -> Path | None:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return settings.cache_dir("plans", Path(home) / "dag_factory_cache")


def _private(path: Path) -> bool:
    """Owned by the current user and writable by nobody else."""
    try:
        info = path.stat()
    except OSError:
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False
    return not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def usable_folder(folder: Path) -> bool:
    """Create the folder (0700) if needed; refuse it, or a configured root above it, when owned by
    someone else or writable by others (an entry holds shell commands or programs)."""
    root = settings.cache_root()
    if root is not None and root.exists() and not _private(root):
        return False
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return False
    return _private(folder) and (root is None or _private(root))


def plan_key(
    spec_path: Path, spec_bytes: bytes, platform_path: Path | None, platform_bytes: bytes | None,
    env: str, only: tuple[str, ...],
) -> str:  # fmt: skip
    digest = hashlib.sha256()
    parts: list[Any] = [
        code_fingerprint(),
        str(spec_path),
        str(spec_path.resolve()),
        str(platform_path) if platform_path else None,
        str(platform_path.resolve()) if platform_path else None,
        env,
        list(only),
        sys.executable,
        shutil.which("uv") is not None,
    ]
    digest.update(json.dumps(parts).encode() + b"\0")
    digest.update(hashlib.sha256(spec_bytes).digest())
    digest.update(hashlib.sha256(platform_bytes).digest() if platform_bytes is not None else b"-")
    return digest.hexdigest()


# ---- DagPlan <-> JSON ---------------------------------------------------------------------------------

_ARGS_TYPES = {cls.__name__: cls for cls in TASK_ARGS}  # a task's args are stored with their type's name
_ARGS_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in TASK_ARGS}


def _args_to_json(args: TaskArgs) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _ARGS_FIELDS[type(args)]}


def _args_from_json(task: dict[str, Any]) -> TaskArgs:
    return _ARGS_TYPES[task["args_type"]](**task["args"])


def plan_to_json(plan: DagPlan) -> dict[str, Any]:
    """Plain data for json.dumps (tuples become lists; plan_from_json turns them back).

    Not dataclasses.asdict on the whole plan, which deep-copies every task's arguments: 7 ms of a
    160-task plan.
    """
    data = {f.name: getattr(plan, f.name) for f in fields(plan)}
    data["estimate"] = asdict(plan.estimate)
    data["groups"] = [
        {
            "group_id": g.group_id,
            "values": g.values,
            "tasks": [
                {
                    "task_id": t.task_id,
                    "kind": t.kind,
                    "upstream": t.upstream,
                    "args_type": type(t.args).__name__,
                    "args": _args_to_json(t.args),
                }
                for t in g.tasks
            ],
            "after_group": g.after_group,
        }
        for g in plan.groups
    ]
    data["publish"] = [asdict(p) for p in plan.publish]
    return data


def plan_from_json(data: dict[str, Any]) -> DagPlan:
    groups = tuple(
        GroupPlan(
            group_id=g["group_id"],
            values=tuple(g["values"]),
            tasks=tuple(
                TaskPlan(t["task_id"], t["kind"], tuple(t["upstream"]), _args_from_json(t))
                for t in g["tasks"]
            ),
            after_group=g["after_group"],
        )
        for g in data["groups"]
    )
    estimate = Estimate(**data["estimate"])
    lists = {"tags": tuple(data["tags"]), "schedule_assets": tuple(data.get("schedule_assets", ()))}
    publish = tuple(PublishPlan(**p) for p in data.get("publish", ()))
    return DagPlan(**{**data, **lists, "groups": groups, "estimate": estimate, "publish": publish})


# ---- the cache ------------------------------------------------------------------------------------------


def _read(path: Path, key: str) -> DagPlan | None:
    try:
        entry = json.loads(path.read_bytes())
        if entry.get("format") != FORMAT or entry.get("key") != key:
            return None
        plan = plan_from_json(entry["plan"])
    except Exception:  # missing, unreadable, truncated, hand-edited: a miss
        return None
    return plan if isinstance(plan, DagPlan) else None


def _write(folder: Path, path: Path, key: str, plan: DagPlan) -> None:
    try:
        data = plan_to_json(plan)
        text = json.dumps({"format": FORMAT, "key": key, "plan": data}, separators=(",", ":"))
        if plan_from_json(json.loads(text)["plan"]) != plan:  # would not read back the same: keep out
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except Exception:  # a full disk or a read-only folder must never fail a parse
        return
    if random.random() < PRUNE_PROBABILITY:
        prune(folder)


def prune(folder: Path, max_age_s: float = MAX_AGE_S) -> int:
    """Remove entries (and stray temporary files) not written for max_age_s; returns how many."""
    removed = 0
    cutoff = time.time() - max_age_s
    for entry in folder.glob("*.json"):
        try:
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def cached_plan(
    spec_path: Path,
    platform_path: Path | None,
    env: str,
    only: tuple[str, ...],
    compute: Callable[[], DagPlan],
) -> DagPlan:
    """The plan from the cache, else compute() (which raises on an invalid spec) stored for next time."""
    folder = cache_dir()
    if folder is None or not usable_folder(folder):
        return compute()
    try:
        spec_bytes = spec_path.read_bytes()
        platform_bytes = platform_path.read_bytes() if platform_path else None
    except OSError:
        return compute()  # its own, located error
    key = plan_key(spec_path, spec_bytes, platform_path, platform_bytes, env, only)
    entry = folder / f"{key}.json"
    plan = _read(entry, key)
    if plan is not None:
        return plan
    plan = compute()
    try:  # a file edited while it was being planned: the plan may be of the new text, do not store it
        unchanged = spec_path.read_bytes() == spec_bytes and (
            platform_path is None or platform_path.read_bytes() == platform_bytes
        )
    except OSError:
        unchanged = False
    if unchanged:
        _write(folder, entry, key, plan)
    return plan
