"""`dag-factory doctor`: does this host have what an environment's DAGs need? One line per check,
`ok|FAIL  what  (how to fix)`; exit 1 when one failed.

Here, without Airflow: the platform file (found as every command finds it) and the Airflow and
provider versions, against the ranges the installed distribution declares (pyproject.toml). The rest
needs Airflow and runs in a child process (dag_factory.airflow.doctor): the environment setting, the
specs beside the platform file and the extras their targets need, the plugin, the connections (each
reached), the API pool, the buckets, the AWS calls, the subnet and security groups.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from dag_factory import settings
from dag_factory.compute.checks import Check, failed, passed
from dag_factory.errors import DagFactoryError
from dag_factory.extras import MissingExtra, extra_requirements, install_hint
from dag_factory.load.files import CONFIG_FOLDER, PLATFORM_FILE, find_platform

CHILD = "dag_factory.airflow.doctor"
CHILD_TIMEOUT_S = 300.0  # every remote call has its own timeout; this bounds a hung one
_CHECKS: TypeAdapter[list[Check]] = TypeAdapter(list[Check])


def check_platform(explicit: Path | None) -> tuple[Check, Path | None]:
    """The platform file the DAG files will use, and whether it is valid."""
    found = find_platform(Path.cwd(), explicit)
    if found is None:
        fix = (
            f"no {PLATFORM_FILE} here, in a {CONFIG_FOLDER}/ folder, or above: pass --platform, set "
            f"${settings.PLATFORM} as the DAG-parsing components have it, or run doctor in the DAG bundle"
        )
        return failed("platform file", fix), None
    from dag_factory.load.specs import load_platform

    what = f"platform file {found}"
    try:
        loaded = load_platform(found)
    except DagFactoryError as exc:
        return failed(what, "; ".join(str(exc).splitlines()) + " (fix the file)"), None
    return passed(what, f"environments: {', '.join(loaded.settings.environments)}"), found


def check_versions() -> list[Check]:
    """Airflow and each provider of the [airflow] extra within the range this release supports."""
    try:
        requirements = extra_requirements("airflow")
    except MissingExtra as exc:
        return [failed("Airflow and provider versions", str(exc))]
    checks = []
    for requirement in requirements:
        if not requirement.name.startswith("apache-airflow"):
            continue
        if requirement.version is None:
            checks.append(failed(requirement.name, f"not installed: {install_hint('airflow')}"))
        elif not requirement.within:
            fix = (
                f"outside the supported {requirement.supported}: install a release within it "
                f"(pip install '{requirement.name}{requirement.supported}' with your Airflow's constraints)"
            )
            checks.append(failed(f"{requirement.name} {requirement.version}", fix))
        else:
            checks.append(
                passed(f"{requirement.name} {requirement.version}", f"supported {requirement.supported}")
            )
    return checks


def airflow_checks(platform: Path | None, env: str | None) -> list[Check]:
    """The child's checks (module doc); a child that could not run is one failed check saying why."""
    what = "Airflow checks (environment, plugin, connections, pool, AWS)"
    if importlib.util.find_spec("airflow") is None:
        return [failed(what, f"not run: Airflow is not installed here ({install_hint('airflow')})")]
    argv = [sys.executable, "-m", CHILD]
    if platform is not None:
        argv += ["--platform", str(platform)]
    if env is not None:
        argv += ["--env", env]
    # connections, Variables and pools as the scheduler reads them: its secrets backends and metadata DB
    child_env = {**os.environ, "_AIRFLOW_PROCESS_CONTEXT": "server"}
    try:
        done = subprocess.run(argv, env=child_env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [failed(what, f"no answer after {CHILD_TIMEOUT_S:.0f} s (a hung connection?)")]
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            return _CHECKS.validate_json(lines[-1])
        except ValidationError:
            pass
    said = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
    return [failed(what, f"{CHILD} exited {done.returncode}: {said}")]


def diagnose(env: str | None, platform: Path | None) -> list[Check]:
    """Every check, in the order a deployment is set up."""
    platform_check, valid_platform = check_platform(platform)
    return [platform_check, *check_versions(), *airflow_checks(valid_platform, env)]


def render_text(checks: Sequence[Check], color: bool | None = None) -> None:
    """The lines on stdout (ok green, FAIL red on a terminal), then a summary."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True, no_color=color is False)
    for check in checks:
        line = Text(f"{check.status:<4}", style="green" if check.ok else "bold red")
        line.append(f"  {check.what}" + (f"  ({check.note})" if check.note else ""))
        console.print(line)
    bad = sum(not check.ok for check in checks)
    console.print(f"{len(checks)} checks, {bad} failed" if bad else f"{len(checks)} checks, all ok")


def render_json(checks: Sequence[Check]) -> str:
    body = {"ok": all(check.ok for check in checks), "checks": [check.model_dump() for check in checks]}
    return json.dumps(body, indent=2)
