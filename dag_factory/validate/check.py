"""Validate many files at once: one bad file never hides the others' results."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dag_factory import settings
from dag_factory.errors import Diagnostic, SpecError
from dag_factory.load.files import CONFIG_FOLDER, PLATFORM_FILE, collect_files, find_platform
from dag_factory.load.project import project_dir_problems
from dag_factory.load.specs import LoadedPlatform, load_platform, load_spec


@dataclass
class FileResult:
    path: str
    kind: str  # "spec" or "platform"
    diagnostics: list[Diagnostic] = field(default_factory=list)  # errors and warnings

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    @property
    def valid(self) -> bool:
        """No errors; warnings do not make a file invalid."""
        return not self.errors


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
        path = find_platform(spec, self.explicit)
        return self.get(path) if path else None


def validate_file(path: Path, platforms: PlatformCache, notebooks: bool = True) -> FileResult:
    if path.name == PLATFORM_FILE:
        outcome = platforms.get(path)
        found = outcome.diagnostics if isinstance(outcome, SpecError) else []
        return FileResult(str(path), "platform", found)
    platform = platforms.for_spec(path)
    if isinstance(platform, SpecError):
        platform_path = find_platform(path, platforms.explicit)
        message = f"platform file {platform_path} is invalid; run dag-factory validate on it"
        return FileResult(str(path), "spec", [Diagnostic(str(path), 1, 1, "", message)])
    try:
        loaded = load_spec(path, platform)
    except SpecError as exc:
        return FileResult(str(path), "spec", list(exc.diagnostics))
    problems = project_dir_problems(loaded)  # the notebooks are read only from a folder that is fine
    if notebooks and not problems:
        from dag_factory.validate.contract import check_contract

        problems = check_contract(loaded)
    if platform is None:
        problems = [_no_platform(path), *problems]
    return FileResult(str(path), "spec", problems)


def _no_platform(spec: Path) -> Diagnostic:
    """Valid as far as the spec alone goes: what the platform file decides was not checked."""
    return Diagnostic(
        str(spec), 1, 1, "",
        f"no {PLATFORM_FILE} found for this spec (nor in a {CONFIG_FOLDER}/ folder above it): its "
        "environments, instance types, timeouts, buckets and connections were not checked against a platform",
        f"pass --platform FILE or set ${settings.PLATFORM} to your data-engineering team's platform file; "
        "plan, run and dags need one",
        severity="warning",
    )  # fmt: skip


# From this many files on, a folder is validated on every core the process may use: a fork costs a few
# milliseconds, a spec about two (a data-engineering repo's CI validates hundreds at once)
PARALLEL_FROM = 64


def validate_paths(
    paths: Iterable[Path], platform: Path | None = None, notebooks: bool = True, workers: int | None = None
) -> list[FileResult]:
    """Each file's result, in the order `collect_files` lists them. ``workers``: processes to spread
    the files over (default: the usable cores, once there are PARALLEL_FROM files)."""
    files = collect_files(paths)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if len(files) >= PARALLEL_FROM else 1
    workers = max(1, min(workers, len(files)))
    if workers == 1:
        return _validate_in_order(files, platform, notebooks)
    size = -(-len(files) // workers)  # contiguous slices: specs side by side share a platform file
    slices = [files[i : i + size] for i in range(0, len(files), size)]
    # fork: the workers start with the modules this process has imported (spawn would import them again)
    with ProcessPoolExecutor(len(slices), mp_context=multiprocessing.get_context("fork")) as pool:
        done = pool.map(_validate_in_order, slices, [platform] * len(slices), [notebooks] * len(slices))
        return [result for part in done for result in part]


def _validate_in_order(files: list[Path], platform: Path | None, notebooks: bool) -> list[FileResult]:
    platforms = PlatformCache(platform)
    return [validate_file(p, platforms, notebooks) for p in files]
