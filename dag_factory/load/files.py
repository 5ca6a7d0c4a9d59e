"""Which files to load: specs given as files or folders, and the platform file that goes with them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dag_factory import settings
from dag_factory.errors import UsageError

PLATFORM_FILE = "platform.yaml"
SPEC_SUFFIXES = (".yaml", ".yml")
# Where a repository keeps its specs and its platform file (this one does).
CONFIG_FOLDER = "project_configs"


class NoSpecsFound(UsageError):
    pass


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and every *.yaml / *.yml under folders, in a stable order."""
    found: list[Path] = []
    paths = list(paths)
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


def spec_files(paths: Iterable[Path]) -> list[Path]:
    """The job specs among the files and folders given (platform files left out)."""
    return [p for p in collect_files(paths) if p.name != PLATFORM_FILE]


def find_platform(near: Path, explicit: Path | None = None) -> Path | None:
    """The platform file: ``explicit`` (--platform), else $DAG_FACTORY_PLATFORM, else the nearest
    platform.yaml or project_configs/platform.yaml in ``near``'s folder (a spec's, or the working
    folder) or above it; None when there is none."""
    if explicit is not None:
        return explicit
    configured = settings.platform_file()
    if configured is not None:
        return configured
    start = near.resolve()
    if not start.is_dir():
        start = start.parent
    for folder in [start, *start.parents]:
        for candidate in (folder / PLATFORM_FILE, folder / CONFIG_FOLDER / PLATFORM_FILE):
            if candidate.is_file():
                return candidate
    return None


def require_platform(near: Path, explicit: Path | None = None) -> Path:
    """find_platform, or a usage error that says how to name one."""
    found = find_platform(near, explicit)
    if found is None:
        raise UsageError(
            f"no {PLATFORM_FILE} found for {near} (nor in a {CONFIG_FOLDER}/ folder above it); "
            f"pass --platform or set ${settings.PLATFORM}"
        )
    return found
