"""load_spec / load_platform: per-environment overrides merged and validated, platform rules located."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.errors import SpecError
from dag_factory.load.files import find_platform
from dag_factory.load.specs import LoadedPlatform, load_platform, load_spec
from dag_factory.settings import PLATFORM as PLATFORM_ENV_VAR
from tests.paths import REPO
from tests.specs import MINIMAL_SPEC

PLATFORM = REPO / "project_configs" / "platform.yaml"
EXAMPLE = REPO / "project_configs" / "churn-model.yaml"

# the minimal spec with a compute timeout (line numbers below count on it)
BASE = MINIMAL_SPEC.replace(
    "  instance_type: ml.t3.medium\n", "  instance_type: ml.t3.medium\n  timeout: 2h\n"
)


@pytest.fixture
def platform() -> LoadedPlatform:
    return load_platform(PLATFORM)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _problems(path: Path, platform: LoadedPlatform = None) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, platform)
    return [d.render().removeprefix(f"{path}:") for d in info.value.diagnostics]


def test_example_loads_for_every_environment(platform: LoadedPlatform) -> None:
    loaded = load_spec(EXAMPLE, platform)
    assert set(loaded.per_env) == {"local", "preprod", "prod"}
    assert loaded.spec.compute.instance_type == "ml.m5.xlarge"
    assert loaded.for_env("preprod").compute.instance_type == "ml.t3.large"
    assert loaded.for_env("preprod").schedule is None
    assert loaded.for_env("prod").schedule == "0 4 * * MON"
    assert loaded.for_env("preprod").compute.max_parallel == loaded.spec.compute.max_parallel


def test_for_env_unknown_name(platform: LoadedPlatform) -> None:
    loaded = load_spec(EXAMPLE, platform)
    with pytest.raises(SpecError) as info:
        loaded.for_env("prd")
    assert info.value.diagnostics[0].hint == "did you mean 'prod'?"


def test_without_platform_only_the_base_is_validated() -> None:
    loaded = load_spec(EXAMPLE)
    assert loaded.per_env == {}
    assert loaded.platform is None


def test_mappings_merge_and_lists_replace(tmp_path: Path, platform: LoadedPlatform) -> None:
    text = BASE + "tags: [a, b]\nenvironments:\n  prod:\n    tags: [c]\n    compute: {timeout: 30m}\n"
    loaded = load_spec(_write(tmp_path, text), platform)
    prod = loaded.for_env("prod")
    assert prod.tags == ["c"]
    assert (prod.compute.timeout, prod.compute.instance_type) == ("30m", "ml.t3.medium")
    assert loaded.for_env("preprod").tags == ["a", "b"]


def test_override_error_points_at_the_override_line(tmp_path: Path, platform: LoadedPlatform) -> None:
    text = BASE + "environments:\n  prod:\n    compute:\n      timeout: forever\n"
    problems = _problems(_write(tmp_path, text), platform)
    assert problems == [
        "13:16: environments.prod.compute.timeout: invalid value 'forever' (use e.g. 90s, 30m, 4h or 1h30m)"
    ]


def test_override_errors_reported_even_when_the_base_is_invalid(
    tmp_path: Path, platform: LoadedPlatform
) -> None:
    text = BASE.replace("demo", "Demo") + "environments:\n  prod:\n    compute: {instance_typ: ml.t3.large}\n"
    problems = _problems(_write(tmp_path, text), platform)
    assert [p.split(": ")[1] for p in problems] == ["project", "environments.prod.compute.instance_typ"]


def test_instance_type_not_allowed_in_override(tmp_path: Path, platform: LoadedPlatform) -> None:
    text = BASE + "environments:\n  preprod:\n    compute:\n      instance_type: ml.m5.4xlarge\n"
    [problem] = _problems(_write(tmp_path, text), platform)
    assert problem.startswith(
        "13:22: environments.preprod.compute.instance_type: instance type 'ml.m5.4xlarge'"
    )


def test_instance_type_not_allowed_in_base(tmp_path: Path, platform: LoadedPlatform) -> None:
    text = BASE.replace("ml.t3.medium", "ml.p3.2xlarge")
    problems = _problems(_write(tmp_path, text), platform)
    assert len(problems) == 2  # preprod and prod; local allows any
    assert all(p.startswith("6:18: compute.instance_type:") for p in problems)


def test_unknown_environment_name(tmp_path: Path, platform: LoadedPlatform) -> None:
    text = BASE + "environments:\n  prd: {schedule: null}\n"
    [problem] = _problems(_write(tmp_path, text), platform)
    assert problem == (
        "11:3: environments.prd: unknown environment 'prd', not in platform.yaml (did you mean 'prod'?)"
    )


@pytest.mark.parametrize(
    "environments",
    [
        "environments: [prod]\n",
        "environments:\n  prod: [1]\n",
        "environments:\n  prod: 3\n",
        "environments: x\n",
    ],
)
def test_malformed_environments_are_errors_not_crashes(
    tmp_path: Path, platform: LoadedPlatform, environments: str
) -> None:
    assert _problems(_write(tmp_path, BASE + environments), platform)


def test_platform_errors_are_located(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("version: 1\nenvironments:\n  local:\n    backend: local\n")
    with pytest.raises(SpecError) as info:
        load_platform(path)
    [d] = info.value.diagnostics
    assert (d.line, d.loc, d.message) == (3, "environments.local.buckets", "missing required key 'buckets'")


def test_find_platform_nearest_then_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLATFORM_ENV_VAR, raising=False)
    (tmp_path / "platform.yaml").write_text("version: 1\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    spec = nested / "spec.yaml"
    assert find_platform(spec) == (tmp_path / "platform.yaml").resolve()
    monkeypatch.setenv(PLATFORM_ENV_VAR, str(PLATFORM))
    assert find_platform(spec) == PLATFORM


def test_project_dir_is_relative_to_the_spec(tmp_path: Path) -> None:
    loaded = load_spec(_write(tmp_path, BASE + "project_dir: sub\n"))
    assert loaded.project_dir == (tmp_path / "sub").resolve()


def test_an_override_that_merges_into_a_mapping_does_not_claim_its_other_keys(
    tmp_path: Path, platform: LoadedPlatform
) -> None:
    """prod overrides runtime.kernel only: the base file's bad conda_env is the base file's error, once."""
    text = BASE + "runtime:\n  conda_env: 0755\nenvironments:\n  prod:\n    runtime: {kernel: ir}\n"
    assert _problems(_write(tmp_path, text), platform) == [
        "11:14: runtime.conda_env: expected a string, got 0755, which yaml reads as the number 493 "
        '(quote it: "0755")'
    ]


def test_an_override_error_quotes_the_override_not_the_base(tmp_path: Path, platform: LoadedPlatform) -> None:
    text = BASE + "catchup: false\nenvironments:\n  prod:\n    start_date: 2026-13-01\n    catchup: 'no'\n"
    problems = _problems(_write(tmp_path, text), platform)
    assert problems == [
        "13:17: environments.prod.start_date: invalid date '2026-13-01' (use YYYY-MM-DD)",
        "14:14: environments.prod.catchup: input should be a valid boolean, got 'no'",
    ]
