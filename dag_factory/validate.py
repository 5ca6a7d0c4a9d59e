"""Validate many files at once: one bad file never hides the others' results."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dag_factory.errors import Diagnostic, SpecError
from dag_factory.loader import PLATFORM_FILE, LoadedPlatform, find_platform, load_platform, load_spec

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass
class FileResult:
    path: str
    kind: str  # "spec" or "platform"
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.diagnostics


class NoSpecsFound(Exception):
    pass


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and every *.yaml / *.yml under folders, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise NoSpecsFound(f"no such file or folder: {path}")
    if not found:
        raise NoSpecsFound(f"no .yaml files under {', '.join(map(str, paths))}")
    return found


class PlatformCache:
    """Each platform file is loaded once, however many specs share it."""

    def __init__(self, explicit: Path | None) -> None:
        self.explicit = explicit
        self.loaded: dict[Path, LoadedPlatform | SpecError] = {}

    def get(self, path: Path) -> LoadedPlatform | SpecError:
        key = path.resolve()
        if key not in self.loaded:
            try:
                self.loaded[key] = load_platform(path)
            except SpecError as exc:
                self.loaded[key] = exc
        return self.loaded[key]

    def for_spec(self, spec: Path) -> LoadedPlatform | SpecError | None:
        path = self.explicit or find_platform(spec)
        return self.get(path) if path else None


def validate_file(path: Path, platforms: PlatformCache, notebooks: bool = True) -> FileResult:
    if path.name == PLATFORM_FILE:
        outcome = platforms.get(path)
        found = outcome.diagnostics if isinstance(outcome, SpecError) else []
        return FileResult(str(path), "platform", found)
    platform = platforms.for_spec(path)
    if isinstance(platform, SpecError):
        platform_path = platforms.explicit or find_platform(path)
        message = f"platform file {platform_path} is invalid; run dag-factory validate on it"
        return FileResult(str(path), "spec", [Diagnostic(str(path), 1, 1, "", message)])
    try:
        loaded = load_spec(path, platform)
    except SpecError as exc:
        return FileResult(str(path), "spec", list(exc.diagnostics))
    problems: list[Diagnostic] = []
    if notebooks:
        from dag_factory.contract import check_contract

        problems = check_contract(loaded)
    return FileResult(str(path), "spec", problems)


def validate_paths(
    paths: Iterable[Path], platform: Path | None = None, notebooks: bool = True
) -> list[FileResult]:
    platforms = PlatformCache(platform)
    return [validate_file(p, platforms, notebooks) for p in collect_files(paths)]


def render_text(results: list[FileResult]) -> str:
    lines = [d.render() for r in results for d in r.diagnostics]
    bad = sum(not r.valid for r in results)
    problems = sum(len(r.diagnostics) for r in results)
    if bad:
        lines.append(f"{len(results)} file(s) checked: {bad} invalid, {problems} problem(s)")
    else:
        lines.append(f"{len(results)} file(s) checked: all valid")
    return "\n".join(lines)


def render_json(results: list[FileResult]) -> str:
    payload = {
        "valid": all(r.valid for r in results),
        "files": [
            {
                "path": r.path,
                "kind": r.kind,
                "valid": r.valid,
                "diagnostics": [d.as_dict() for d in r.diagnostics],
            }
            for r in results
        ],
    }
    return json.dumps(payload, indent=2)


def _escape_github(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def render_github(results: list[FileResult]) -> str:
    """GitHub workflow annotations: one ::error line per problem."""
    lines = []
    for d in (d for r in results for d in r.diagnostics):
        message = f"{d.loc}: {d.message}" if d.loc else d.message
        if d.hint:
            message += f" ({d.hint})"
        props = f"file={d.path},line={d.line},col={d.col}"
        lines.append(f"::error {props},title=dag-factory::{_escape_github(message)}")
    lines.append(render_text(results).splitlines()[-1])
    return "\n".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}
