"""Optional dependencies: each is imported where it is used, and a missing one is named with its extra.

The core (spec, load, validate, plan, review, the CLI) installs without Airflow, boto3, DuckDB or pyarrow;
the rest comes with an extra of the distribution (pyproject.toml, docs/install.md)::

    pip install 'dag-factory-notebooks[airflow,snowflake]'
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

from dag_factory import DISTRIBUTION
from dag_factory.errors import UsageError


class MissingExtra(UsageError):
    """A command or task needs a package of an extra that is not installed (exit code 2)."""


def install_hint(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing(extra: str, module: str, needed_by: str) -> MissingExtra:
    return MissingExtra(
        f"{needed_by} needs the [{extra}] extra ({module} is not installed): {install_hint(extra)}"
    )


def require(extra: str, module: str, needed_by: str = "this") -> ModuleType:
    """Import `module`, or raise: "<needed_by> needs the [extra] extra (<module> is not installed): pip ...".

    Only the module itself (or a parent package of it) missing is the extra's; a module that is
    installed but fails to import its own dependencies raises as it is (a broken install, not ours).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        raise missing(extra, module, needed_by) from None


def require_installed(extra: str, packages: Iterable[str], needed_by: str) -> None:
    """As `require`, without importing: for a command whose child process imports them (Airflow takes
    seconds to import). Top-level packages only."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise missing(extra, package, needed_by)


@dataclass(frozen=True)
class Installed:
    """One requirement of an extra (pyproject.toml, as the installed distribution declares it) and the
    version of it installed here (None: not installed)."""

    name: str
    supported: str  # the version range, e.g. ">=3.2.0,<4"
    version: str | None

    @property
    def within(self) -> bool:
        from packaging.specifiers import SpecifierSet

        return self.version is not None and SpecifierSet(self.supported).contains(
            self.version, prereleases=True
        )


def extra_requirements(extra: str) -> list[Installed]:
    """What ``pip install '<distribution>[extra]'`` installs (an extra naming other extras of ours
    included), each with its installed version: read from the installed distribution's metadata, so
    the ranges have one home, pyproject.toml."""
    require("airflow", "packaging", "checking installed versions")  # Airflow's own dependency
    from packaging.requirements import Requirement

    found: dict[str, Installed] = {}
    pending, seen = [extra], set()
    while pending:
        current = pending.pop()
        seen.add(current)
        for line in metadata.requires(DISTRIBUTION) or []:
            requirement = Requirement(line)
            if requirement.marker is None or not requirement.marker.evaluate({"extra": current}):
                continue
            if requirement.name == DISTRIBUTION:
                pending.extend(sorted(set(requirement.extras) - seen))
                continue
            try:
                version: str | None = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                version = None
            # lower bound first, as pyproject.toml writes it
            supported = ",".join(sorted(map(str, requirement.specifier), key=lambda s: s[0] != ">"))
            found[requirement.name] = Installed(requirement.name, supported, version)
    return list(found.values())
