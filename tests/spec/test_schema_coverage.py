"""What the JSON Schema catches of the invalid cases: editors and CI validators agree with `validate`
as far as JSON Schema can say, and the committed list of what it cannot say only shrinks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.paths import REPO

CASES = REPO / "tests" / "cases"
LIST = Path(__file__).with_name("schema_cannot_catch.yaml")
CANNOT_CATCH = yaml.safe_load(LIST.read_text())
# Cases a schema validator must not be given: they hang or crash other tools (they are on the list).
HOSTILE = {"alias_bomb", "nesting_too_deep"}
# The list's length today: lower it whenever the list shrinks, never raise it.
CEILING = 16

SUITES = {
    "invalid": ("notebook-job.schema.json", sorted((CASES / "invalid").glob("*.yaml")), lambda p: p.stem),
    "invalid_platform": (
        "platform.schema.json",
        sorted((CASES / "invalid_platform").glob("*/platform.yaml")),
        lambda p: p.parent.name,
    ),
}


def _rejected(schema: str, files: list[Path]) -> set[Path]:
    """The files check-jsonschema rejects (a schema error, or yaml it cannot parse), in one run."""
    done = subprocess.run(
        [REPO / ".venv" / "bin" / "check-jsonschema", "--schemafile", REPO / "schemas" / schema,
         "-o", "json", *files],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    return {(REPO / e["filename"]).resolve() for e in [*report["errors"], *report["parse_errors"]]}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_the_schema_catches_every_case_it_can(suite: str) -> None:
    schema, files, name = SUITES[suite]
    listed = CANNOT_CATCH[suite]
    run = [f for f in files if name(f) not in HOSTILE]
    rejected = _rejected(schema, run)
    missed = {name(f) for f in run if f.resolve() not in rejected} | {name(f) for f in files} & HOSTILE
    newly_missed = sorted(missed - set(listed))
    now_caught = sorted(set(listed) - missed)
    assert not newly_missed, (
        f"check-jsonschema accepts {newly_missed}: make schemas/{schema} say it, or (only if JSON Schema "
        f"cannot) add it to {LIST.name} with the reason"
    )
    assert not now_caught, f"the schema now catches {now_caught}: take them off {LIST.name}"


def test_the_list_only_shrinks() -> None:
    listed = sum(len(cases) for cases in CANNOT_CATCH.values())
    assert listed <= CEILING, f"{LIST.name} grew to {listed}: the schema must catch new cases"
    stale = [
        n
        for suite, cases in CANNOT_CATCH.items()
        for n in cases
        if n not in map(SUITES[suite][2], SUITES[suite][1])
    ]
    assert not stale, f"{LIST.name} lists cases that do not exist: {stale}"
    assert all(
        isinstance(reason, str) and reason for cases in CANNOT_CATCH.values() for reason in cases.values()
    )
