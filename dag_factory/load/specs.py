"""Load and validate job specs and the platform file: YAML -> pydantic, every problem located."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from dag_factory.errors import Diagnostic, SpecError, UsageError, suggest
from dag_factory.load.diagnose import diagnose
from dag_factory.load.yaml_source import Loc, Positions, YamlDocument, format_loc, parse_yaml, read_yaml
from dag_factory.load.yaml_versions import version_problems
from dag_factory.spec.job import JobSpec
from dag_factory.spec.platform import AwsEnvironment, Environment, PlatformSettings, SageMakerJobEnvironment
from dag_factory.spec.types import parse_duration


@dataclass(frozen=True)
class LoadedPlatform:
    path: Path
    settings: PlatformSettings

    def environment(self, env: str) -> Environment:
        """The environment a command line named (`--env`); an unknown one is a usage error."""
        known = self.settings.environments
        if env not in known:
            raise UsageError(f"--env {env!r} is not an environment of {self.path} ({suggest(env, known)})")
        return known[env]


@dataclass
class LoadedSpec:
    """A valid spec: the base model and the effective spec for each platform environment."""

    path: Path
    spec: JobSpec
    doc: YamlDocument
    per_env: dict[str, JobSpec] = field(default_factory=dict)
    platform: LoadedPlatform | None = None

    @property
    def project_dir(self) -> Path:
        return (self.path.parent / self.spec.project_dir).resolve()

    def for_env(self, env: str) -> JobSpec:
        if env in self.per_env:
            return self.per_env[env]
        known = sorted(self.per_env) or ["(no platform file)"]
        raise SpecError(
            [Diagnostic(str(self.path), 1, 1, "", f"unknown environment {env!r}", suggest(env, known))]
        )


def _validate(model: type[BaseModel], doc: YamlDocument) -> Any:
    """The model of a whole file, and every problem in it: the model's, and YAML 1.1 vs 1.2."""
    found = version_problems(doc, model)
    try:
        validated = model.model_validate(doc.data)
    except ValidationError as exc:
        found.extend(diagnose(exc, model, doc.data, doc.path, doc.positions))
    if found:
        raise SpecError(found)
    return validated


def load_platform(path: Path | str) -> LoadedPlatform:
    doc = read_yaml(path)
    settings = _validate(PlatformSettings, doc)
    return LoadedPlatform(Path(path), settings)


_platforms: dict[tuple[str, bytes], LoadedPlatform] = {}


def load_platform_cached(path: Path | str) -> LoadedPlatform:
    """load_platform, remembered per process by path and content (a DagBag loads one file per spec).

    Only valid platform files are remembered; the result is shared, so it must not be mutated.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return load_platform(path)  # its own, located error
    key = (str(path), raw)
    found = _platforms.get(key)
    if found is None:
        doc = parse_yaml(str(path), raw)  # as load_platform, from the bytes of the key
        found = LoadedPlatform(Path(path), _validate(PlatformSettings, doc))
        if len(_platforms) >= 8:
            _platforms.clear()
        _platforms[key] = found
    return found


def _merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key; lists and scalars replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return copy.deepcopy(override)


def _env_positions(doc: YamlDocument, env: str) -> tuple[Positions, set[Loc]]:
    """Positions for a merged spec: the override's own lines win over the base file's."""
    own = ("environments", env)
    base, overrides = doc.positions, _overrides(doc, env)
    merged = Positions(
        dict(base.keys),
        dict(base.values),
        {loc: text for loc, text in base.written.items() if not _replaced(overrides, loc)},
        {loc: seen for loc, seen in base.yaml12.items() if not _replaced(overrides, loc)},
    )
    overridden: set[Loc] = set()
    for name in ("keys", "values", "written", "yaml12"):
        target = getattr(merged, name)
        for loc, mark in getattr(base, name).items():
            if loc[:2] == own and len(loc) > 2:
                target[loc[2:]] = mark
                if _replaced(overrides, loc[2:]):  # not a mapping merged into: its own value
                    overridden.add(loc[2:])
    return merged, overridden


def _replaced(overrides: Any, loc: Loc) -> bool:
    """The base file's value at loc is not in the merged spec: an override replaced it or a parent."""
    for part in loc:
        if not isinstance(overrides, dict) or part not in overrides:
            return False
        overrides = overrides[part]
        if not isinstance(overrides, dict):
            return True
    return False


def _overrides(doc: YamlDocument, env: str) -> dict[str, Any]:
    """The environment's override mapping; {} when absent or not a mapping (reported elsewhere)."""
    envs = doc.data.get("environments") if isinstance(doc.data, dict) else None
    found = envs.get(env) if isinstance(envs, dict) else None
    return found if isinstance(found, dict) else {}


def _effective(doc: YamlDocument, env: str) -> JobSpec:
    overrides = _overrides(doc, env)
    base = {k: v for k, v in doc.data.items() if k != "environments"}
    data = _merge(base, overrides)
    positions, overridden = _env_positions(doc, env)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        found = diagnose(exc, JobSpec, data, doc.path, positions)
        raise SpecError(_in_env(found, env, overridden)) from None


def _in_env(found: list[Diagnostic], env: str, overridden: set[Loc]) -> list[Diagnostic]:
    shown = {format_loc(loc) for loc in overridden}
    out = []
    for d in found:
        if d.loc in shown or any(d.loc.startswith(s + ".") or d.loc.startswith(s + "[") for s in shown):
            out.append(Diagnostic(d.path, d.line, d.col, f"environments.{env}.{d.loc}", d.message, d.hint))
        else:
            out.append(Diagnostic(d.path, d.line, d.col, d.loc, d.message, f"in environment {env!r}"))
    return out


def _platform_rules(doc: YamlDocument, env: str, spec: JobSpec, platform: LoadedPlatform) -> list[Diagnostic]:
    settings = platform.settings.environments[env]
    if not isinstance(settings, AwsEnvironment):
        return []
    return [
        *_instance_type_rule(doc, env, spec, platform),
        *_duckdb_path_rule(doc, env, spec),
        *_spot_wait_rule(doc, env, spec, platform),
    ]


def _spot_wait_rule(doc: YamlDocument, env: str, spec: JobSpec, platform: LoadedPlatform) -> list[Diagnostic]:
    """Managed spot: SageMaker refuses a job whose MaxWaitTimeInSeconds is below its MaxRuntimeInSeconds
    (the spec's compute.timeout)."""
    settings = platform.settings.environments[env]
    if not isinstance(settings, SageMakerJobEnvironment) or settings.managed_spot is None:
        return []
    max_wait = settings.managed_spot.max_wait
    if parse_duration(spec.compute.timeout) <= parse_duration(max_wait):
        return []
    compute = _overrides(doc, env).get("compute")
    from_override = isinstance(compute, dict) and "timeout" in compute
    message = (
        f"timeout {spec.compute.timeout!r} is longer than environment {env!r} lets a spot job wait and run "
        f"(managed_spot.max_wait {max_wait!r})"
    )
    hint = f"use a timeout of at most {max_wait}, or a longer managed_spot.max_wait in {platform.path.name}"
    return [_located(doc, env, ("compute", "timeout"), from_override, message, hint)]


def _located(doc: YamlDocument, env: str, loc: Loc, overridden: bool, message: str, hint: str) -> Diagnostic:
    if overridden:
        loc = ("environments", env, *loc)
    mark = doc.positions.of_value(loc)
    return Diagnostic(doc.path, mark.line, mark.col, format_loc(loc), message, hint)


def _instance_type_rule(
    doc: YamlDocument, env: str, spec: JobSpec, platform: LoadedPlatform
) -> list[Diagnostic]:
    allowed = platform.settings.environments[env].allowed_instance_types
    instance_type = spec.compute.instance_type
    if not allowed or instance_type in allowed:
        return []
    compute = _overrides(doc, env).get("compute")
    from_override = isinstance(compute, dict) and "instance_type" in compute
    message = f"instance type {instance_type!r} is not allowed in environment {env!r}"
    hint = f"{platform.path.name} allows: {', '.join(allowed)}"
    return [_located(doc, env, ("compute", "instance_type"), from_override, message, hint)]


def _duckdb_path_rule(doc: YamlDocument, env: str, spec: JobSpec) -> list[Diagnostic]:
    """On SageMaker there is no local warehouse: a duckdb target must name its file."""
    from_override = "deliver" in _overrides(doc, env)
    return [
        _located(
            doc,
            env,
            ("deliver", i, "to"),
            from_override,
            f"duckdb target {target.table!r} has no path, and environment {env!r} has no local warehouse",
            "give it a path, or deliver to postgres or snowflake, which load into duckdb locally",
        )
        for i, target in enumerate(spec.deliver)
        if target.to == "duckdb" and not target.path
    ]


def _unknown_env_names(doc: YamlDocument, platform: LoadedPlatform) -> list[Diagnostic]:
    known = platform.settings.environments
    out = []
    envs = doc.data.get("environments")
    for name in envs if isinstance(envs, dict) else {}:
        if name not in known:
            mark = doc.positions.of_key(("environments", name))
            out.append(
                Diagnostic(
                    doc.path,
                    mark.line,
                    mark.col,
                    f"environments.{name}",
                    f"unknown environment {name!r}, not in {platform.path.name}",
                    suggest(name, known),
                )
            )
    return out


def _override_problems(doc: YamlDocument, platform: LoadedPlatform | None) -> list[Diagnostic]:
    """When the base spec is invalid: the problems inside each override, so none waits for a re-run."""
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("environments"), dict):
        return []
    names = platform.settings.environments if platform else doc.data["environments"]
    found: list[Diagnostic] = []
    for env in names:
        if not _overrides(doc, env):
            continue
        try:
            _effective(doc, env)
        except SpecError as exc:
            found.extend(d for d in exc.diagnostics if d.loc.startswith(f"environments.{env}."))
    return found


def load_spec(path: Path | str, platform: LoadedPlatform | None = None) -> LoadedSpec:
    """Validate one spec file, and its effective spec for every platform environment."""
    doc = read_yaml(path)
    try:
        spec: JobSpec = _validate(JobSpec, doc)
    except SpecError as exc:
        names = _unknown_env_names(doc, platform) if platform and isinstance(doc.data, dict) else []
        raise SpecError([*exc.diagnostics, *names, *_override_problems(doc, platform)]) from None
    loaded = LoadedSpec(Path(path), spec, doc, platform=platform)
    if platform is None:
        return loaded
    problems = _unknown_env_names(doc, platform)
    for env in platform.settings.environments:
        try:
            effective = _effective(doc, env)
        except SpecError as exc:
            problems.extend(exc.diagnostics)
            continue
        problems.extend(_platform_rules(doc, env, effective, platform))
        loaded.per_env[env] = effective
    if problems:
        raise SpecError(problems)
    return loaded
