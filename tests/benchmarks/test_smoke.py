"""`make bench`'s harnesses stay true: each benchmark's smoke mode runs here (checks only, no timing
target), so a benchmark whose own checks fail (a DAG with an unexpected task, a run that failed) fails CI
instead of turning red unnoticed (`make bench-smoke`; `make bench` runs the same checks at full size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.integration



def _smoke(script: str, out: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--smoke", "--json", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def test_parse_benchmark_smoke_passes_its_checks(tmp_path: Path) -> None:
    """~35 s: astronomer's dag-factory variant, which needs a venv of its own, is left to `make bench`."""
    doc = _smoke(
        "run.py", tmp_path / "parse.json", "--benchmarks", "parse", "--variants", "ours,ours_warm,handwritten"
    )
    rows = {(r["variant"], r["n"]): r for r in doc["rows"] if r.get("available", True)}
    assert {variant for variant, _ in rows} >= {"handwritten", "ours", "ours_warm"}
    assert all(r["ok"] for r in rows.values()), {k: r.get("errors") for k, r in rows.items() if not r["ok"]}
    # ours has the hand-written shape plus its designed DAG-level tasks: the run report, one publish task
    shape = rows[("handwritten", 2)]["tasks_per_dag"][0]
    assert rows[("ours", 2)]["tasks_per_dag"] == [shape + 2]
    # `dag-factory validate` timed on one spec and on the folder; each run exited 0
    cli = doc["validate"]["cli"]
    assert [(r["case"], r["ok"]) for r in cli] == [("one spec", True), ("20 specs", True)], cli


# not in `make test`: a first run and a re-run of the demo beside the floor take CI 140 s of its 30
# minutes; `make bench-smoke` runs it
@pytest.mark.bench
def test_local_benchmark_smoke_runs_both_sides(tmp_path: Path) -> None:
    doc = _smoke("local_run.py", tmp_path / "local.json")
    kinds = sorted(r["kind"] for r in doc["rows"])
    assert kinds == ["first", "floor", "floor", "rerun"]
    assert all(r["ok"] for r in doc["rows"])
