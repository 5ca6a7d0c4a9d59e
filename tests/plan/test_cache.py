"""Parse-time speed-ups keep behaviour identical: the plan cache, the per-process platform cache, the
libyaml fast path for notebook parameters."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dag_factory import settings
from dag_factory.airflow.build import dag_from_spec
from dag_factory.errors import SpecError
from dag_factory.load import specs as loader
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan import cache as parse_cache
from dag_factory.plan.model import DagPlan
from dag_factory.plan.planner import plan_dag
from dag_factory.plan.scripts import _c_emitter_safe, encode_parameters
from tests.paths import REPO

CONFIGS = REPO / "project_configs"
SPEC = "churn-model.yaml"
ENVS = ["local", "preprod", "prod"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of one spec and the platform file (the local env's root is relative to the platform)."""
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copyfile(CONFIGS / SPEC, folder / SPEC)
    shutil.copyfile(CONFIGS / "platform.yaml", folder / "platform.yaml")
    return folder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(settings.CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache" / "plans"


def _plan(spec: Path, env: str) -> DagPlan:
    return plan_dag(load_spec(spec, load_platform(spec.parent / "platform.yaml")), env)


class Counting:
    def __init__(self, spec: Path, env: str) -> None:
        self.spec, self.env, self.calls = spec, env, 0

    def __call__(self) -> DagPlan:
        self.calls += 1
        return _plan(self.spec, self.env)


def _cached(spec: Path, env: str, compute: Counting, only: tuple[str, ...] = ()) -> DagPlan:
    return parse_cache.cached_plan(spec, spec.parent / "platform.yaml", env, only, compute)


@pytest.mark.parametrize("env", ENVS)
def test_hit_returns_the_same_plan_without_planning(project: Path, cache: Path, env: str) -> None:
    spec = project / SPEC
    compute = Counting(spec, env)
    first = _cached(spec, env, compute)
    assert compute.calls == 1 and len(list(cache.glob("*.json"))) == 1
    second = _cached(spec, env, compute)
    assert compute.calls == 1
    assert second == first == _plan(spec, env)


def test_plan_json_round_trip_for_every_example(tmp_path: Path) -> None:
    platform = load_platform(CONFIGS / "platform.yaml")
    for spec in sorted(CONFIGS.glob("*.yaml")):
        if spec.name == "platform.yaml":
            continue
        loaded = load_spec(spec, platform)
        for env in loaded.per_env:
            plan = plan_dag(loaded, env)
            data = json.loads(json.dumps(parse_cache.plan_to_json(plan)))
            assert parse_cache.plan_from_json(data) == plan


def test_miss_when_spec_platform_env_only_or_code_change(
    project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = project / SPEC
    compute = Counting(spec, "prod")
    _cached(spec, "prod", compute)
    spec.write_text(spec.read_text().replace("owner:", "# edited\nowner:", 1))
    assert _cached(spec, "prod", compute).owner == _plan(spec, "prod").owner
    assert compute.calls == 2
    platform = project / "platform.yaml"
    platform.write_text(platform.read_text() + "\n# edited\n")
    _cached(spec, "prod", compute)
    assert compute.calls == 3
    other = Counting(spec, "preprod")
    assert _cached(spec, "preprod", other).env == "preprod" and other.calls == 1
    values = [v for g in _plan(spec, "prod").groups for v in g.values]
    _cached(spec, "prod", compute, only=(values[0],))
    assert compute.calls == 4
    monkeypatch.setattr(parse_cache, "_fingerprint", "another version of the code")
    _cached(spec, "prod", compute)
    assert compute.calls == 5
    assert len(list(cache.glob("*.json"))) == 6


@pytest.mark.parametrize(
    "garbage", [b"", b"{not json", b'{"format": 1, "key": "other", "plan": {}}', b"[1, 2]", b"\xff\xfe"]
)
def test_corrupt_entry_is_a_miss_and_is_replaced(project: Path, cache: Path, garbage: bytes) -> None:
    spec = project / SPEC
    compute = Counting(spec, "prod")
    expected = _cached(spec, "prod", compute)
    (entry,) = cache.glob("*.json")
    entry.write_bytes(garbage)
    assert _cached(spec, "prod", compute) == expected
    assert compute.calls == 2
    assert _cached(spec, "prod", compute) == expected  # rewritten: a hit again
    assert compute.calls == 2


def test_entry_with_a_valid_key_but_broken_plan_is_a_miss(project: Path, cache: Path) -> None:
    spec = project / SPEC
    compute = Counting(spec, "prod")
    expected = _cached(spec, "prod", compute)
    (entry,) = cache.glob("*.json")
    data = json.loads(entry.read_text())
    del data["plan"]["groups"][0]["tasks"][0]["kind"]
    entry.write_text(json.dumps(data))
    assert _cached(spec, "prod", compute) == expected and compute.calls == 2


def test_invalid_spec_is_never_cached_and_errors_stay_located(project: Path, cache: Path) -> None:
    spec = project / SPEC
    spec.write_text(spec.read_text().replace("owner:", "owner: [1, 2]\nunknown_key:", 1))
    for _ in range(2):
        with pytest.raises(SpecError):
            dag_from_spec(spec, env="prod")
    assert not list(cache.glob("*.json"))


def test_disabled_and_unsafe_folders_are_not_used(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = project / SPEC
    monkeypatch.setenv(settings.CACHE_DIR, "off")
    compute = Counting(spec, "prod")
    _cached(spec, "prod", compute)
    _cached(spec, "prod", compute)
    assert compute.calls == 2
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(settings.CACHE_DIR, str(shared))
    _cached(spec, "prod", compute)
    _cached(spec, "prod", compute)
    assert compute.calls == 4 and not list(shared.iterdir())


def test_default_folder_is_under_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(settings.CACHE_DIR, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert parse_cache.cache_dir() == tmp_path / "dag_factory_cache"


def test_prune_removes_old_entries_only(tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text("{}")
    new.write_text("{}")
    os.utime(old, (0, 0))
    assert parse_cache.prune(tmp_path) == 1
    assert not old.exists() and new.exists()


@pytest.mark.parametrize("env", ENVS)
def test_dag_from_spec_same_dag_cold_and_warm(project: Path, cache: Path, env: str) -> None:
    def shape(dag: Any) -> dict[str, Any]:
        return {
            t.task_id: (type(t).__name__, sorted(t.upstream_task_ids), str(t.trigger_rule), t.is_teardown,
                        {f: str(getattr(t, f, None)) for f in t.template_fields})
            for t in dag.tasks
        }  # fmt: skip

    cold = dag_from_spec(project / SPEC, env=env)
    warm = dag_from_spec(project / SPEC, env=env)
    assert list(cache.glob("*.json"))
    assert shape(cold) == shape(warm)
    assert (cold.dag_id, cold.tags, cold.doc_md, cold.default_args.keys()) == (
        warm.dag_id, warm.tags, warm.doc_md, warm.default_args.keys()
    )  # fmt: skip


def test_platform_cached_per_process_by_content(project: Path) -> None:
    path = project / "platform.yaml"
    first = loader.load_platform_cached(path)
    assert loader.load_platform_cached(path) is first
    assert first.settings == load_platform(path).settings
    path.write_text(path.read_text() + "\n# edited\n")
    assert loader.load_platform_cached(path) is not first
    path.write_text("environments: [")
    with pytest.raises(SpecError):
        loader.load_platform_cached(path)


# ---- encode_parameters: libyaml's emitter where it writes what PyYAML's writes -------------------------

_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F))
_SPECIAL = (
    "yes no null ~ 1.0 0x1f 2024-01-01 - -a ? : a:b # ' \" &a *a !a | > %a @a `a [a] {a} , .nan 1e3 << ---"
)
_SPECIAL_WORDS = _SPECIAL.split()


def _text(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(_SPECIAL_WORDS)
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.choice([1, 2, 5, 40, 100])))


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if r < 0.4:
        return _text(rng)
    if r < 0.5:
        return rng.randint(-(10**20), 10**20)
    if r < 0.55:
        return rng.choice([1.5, -0.0, float("inf"), float("nan"), 1e300, 1e-7])
    if r < 0.6:
        return rng.choice([True, False, None])
    if r < 0.65:
        return rng.choice([dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)])
    if depth < 3 and r < 0.85:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3:
        return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return _text(rng)


def _python_emitter(parameters: dict[str, Any]) -> str:
    text = yaml.safe_dump(parameters, allow_unicode=True, sort_keys=False, default_flow_style=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def test_fast_path_writes_exactly_what_the_python_emitter_writes() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        params = {_text(rng): _value(rng) for _ in range(rng.randint(0, 8))}
        assert _c_emitter_safe(params)
        assert encode_parameters(params) == _python_emitter(params)


@pytest.mark.parametrize(
    "params",
    [
        {"text": "has spaces " * 20},
        {"": 1},
        {"k": "ünïcode"},
        {"k": "x" * 101},
        {"k": ("a", "b")},
        {"k": "line\nbreak"},
        {"k\u2028": 1},
    ],
)
def test_anything_else_takes_the_python_emitter(params: dict[str, Any]) -> None:
    assert not _c_emitter_safe(params)
    assert encode_parameters(params) == _python_emitter(params)


def test_flat_mappings_from_cached_lines_equal_the_whole_dump() -> None:
    rng = random.Random(11)
    keys = [_text(rng) for _ in range(20)]  # shared keys: lines come from the cache
    for _ in range(5000):
        params: dict[str, Any] = {}
        for _ in range(rng.randint(1, 9)):
            key = rng.choice(keys) if rng.random() < 0.7 else _text(rng)
            params[key] = rng.choice([_text(rng), rng.randint(-5, 5), 10**20, True, False, None, 0.0, -0.0])
        assert encode_parameters(params) == _python_emitter(params)
