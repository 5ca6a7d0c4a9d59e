"""`dag-factory run` of the demo job vs the floor: bare papermill, same notebooks, parameters and parallelism.

    .venv/bin/python benchmarks/local_run.py                # 3 rounds: floor, first run, floor, re-run
    .venv/bin/python benchmarks/local_run.py --rounds 5 --only de,fr
    .venv/bin/python benchmarks/local_run.py --smoke        # 1 round, 2 values: checks the harness

A round, the order of its pairs rotating: the floor; ours on an empty local root (no Airflow home, no
shared environment, no warehouse: the first run after `make install`); the floor again; ours again on
that root (the re-run: environment and metadata DB in place). Each run of ours is `dag-factory run` in
a new process, timed from outside; the split of its time comes from the timings file it writes
(dag_factory.local.timing). The floor runs the same papermill command words (parameters decoded from
the plan's commands, the same kernel, --cwd, --log-output) with the project's .venv, every value's
notebooks one after another, `max_parallel` values at a time. Results: a table on stdout and
benchmarks/out/local_run.json. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from dag_factory.local.execution_server import stop_execution_api
from dag_factory.local.timing import CATEGORIES, LABELS

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
WORK = OUT / "localrun"
SPEC = REPO / "project_configs" / "churn-demo.yaml"
PLATFORM = REPO / "project_configs" / "platform.yaml"
BIN = REPO / ".venv" / "bin"
DATE = "2026-01-05"
TARGETS = {"first": 3.0, "rerun": 2.0}  # ours / floor (issue 17)
SPLIT, SPLIT_LABELS = CATEGORIES, LABELS  # the run's own split (dag_factory.local.timing), as it is

console = Console(width=None if sys.stdout.isatty() else 200)


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def prepare_inputs(only: list[str]) -> tuple[Path, Path, Path]:
    """A platform file whose local root is benchmarks/out/localrun/root, and a copy of the demo spec."""
    WORK.mkdir(parents=True, exist_ok=True)
    root = WORK / "root"
    platform = yaml.safe_load(PLATFORM.read_text())
    platform["environments"] = {"local": {**platform["environments"]["local"], "root": str(root)}}
    spec = yaml.safe_load(SPEC.read_text())
    spec["project_dir"] = str((SPEC.parent / spec["project_dir"]).resolve())
    if only:
        spec["fan_out"]["values"] = [v for v in spec["fan_out"]["values"] if v in only]
    (WORK / "platform.yaml").write_text(yaml.safe_dump(platform))
    (WORK / "churn-demo.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return WORK / "churn-demo.yaml", WORK / "platform.yaml", root


def floor_commands(spec: Path, platform: Path) -> tuple[list[list[list[str]]], int, Path]:
    """Per value, the papermill command of each notebook, as our plan runs it; and max_parallel."""
    from dag_factory.local.run import prepare_job
    from dag_factory.plan.scripts import decode_parameters

    job = prepare_job(spec, "local", platform, [])
    project = job.loaded.project_dir
    per_value = []
    for group in job.plan.groups:
        commands = []
        for task in (t for t in group.tasks if t.kind == "notebook"):
            found = re.search(r" -b (\S+) ", task.args.command)
            assert found, task.args.command
            assert decode_parameters(found.group(1))[job.plan.fan_out_name or ""] == group.group_id
            notebook = task.args.notebook
            runtime = json.dumps({"logical_date": DATE, "run_id": "floor", "output_prefix": "{out}"})
            words = [
                str(BIN / "papermill"), str(project / notebook), "{out}/" + Path(notebook).name,
                "-k", task.args.kernel, "--cwd", str(project), "-b", found.group(1), "-y", runtime,
                "--log-output", "--no-progress-bar",
            ]  # fmt: skip
            commands.append(words)
        per_value.append(commands)
    return per_value, job.plan.max_parallel, project


def run_floor(per_value: list[list[list[str]]], parallel: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="floor-", dir=WORK) as scratch:
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}

        def one_value(index: int) -> int:
            out = Path(scratch) / str(index)
            out.mkdir()
            for words in per_value[index]:
                cmd = [w.replace("{out}", str(out)) for w in words]
                proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
                if proc.returncode != 0:
                    return proc.returncode
            return 0 if (out / "predictions" / "predictions.parquet").is_file() else 1

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            codes = list(pool.map(one_value, range(len(per_value))))
        wall = time.perf_counter() - started
    return {"kind": "floor", "wall": round(wall, 2), "ok": not any(codes), "load": os.getloadavg()[0]}


def run_ours(spec: Path, platform: Path, root: Path, kind: str, log: Path) -> dict[str, Any]:
    if kind == "first":
        stop_execution_api(root / "airflow")  # it would outlive its home (until idle), not be reused
        shutil.rmtree(root, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "DAG_FACTORY_CACHE_DIR"}  # everything under root
    cmd = [str(BIN / "dag-factory"), "run", str(spec), "--platform", str(platform), "--date", DATE]
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    row: dict[str, Any] = {"kind": kind, "wall": round(wall, 2), "ok": proc.returncode == 0, "log": str(log)}
    row["load"] = os.getloadavg()[0]
    timings = sorted((root / "airflow" / "logs" / "runs").glob("*.timings.json"), key=os.path.getmtime)
    if timings:
        row |= split_of(json.loads(timings[-1].read_text()), wall)
    envs = list((root / "envs").glob("*/dag-factory-env.json"))
    if kind == "first" and envs:
        row["environment_build"] = json.loads(envs[0].read_text()).get("build_seconds")
    return row


def split_of(timings: dict[str, Any], wall: float) -> dict[str, Any]:
    """The run's split as its timings file has it (dag_factory.local.timing.split_run: from the CLI's
    process start to the run's end), the child's start-up marks, and ``exit``: the rest of ``wall``
    timed from outside (printing the summary, the interpreter's exit)."""
    marks, split = timings["marks"], timings["split"]
    startup = {
        k: round((_stamp(marks[k]) - _stamp(marks["child_started"])).total_seconds(), 2)
        for k in ("airflow_imported", "dag_parsed", "execution_api_ready")
        if k in marks and "child_started" in marks
    }
    out = {k: split[k] for k in SPLIT}
    return {"split": out, "child": startup, "exit": round(wall - split["total"], 2)}


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in ("first", "rerun"):
        ours = [r for r in rows if r["kind"] == kind]
        ratios = [r["ratio"] for r in ours if r.get("ratio")]
        splits = {k: _median([r["split"] for r in ours if "split" in r], k) for k in SPLIT}
        ratio = round(statistics.median(ratios), 2) if ratios else None
        summary[kind] = {
            "runs": len(ours),
            "wall": _median(ours, "wall"),
            "floor": _median([{"f": r["floor"]} for r in ours], "f"),
            "ratio": ratio,
            "target": TARGETS[kind],
            "pass": ratio is not None and ratio <= TARGETS[kind],
            "split": splits,
            "exit": _median(ours, "exit"),
        }
    return summary


def print_table(doc: dict[str, Any]) -> None:
    title = "dag-factory run (demo job) vs bare papermill: medians in seconds; ratio of adjacent runs"
    table = Table(title=title)
    split_columns = (*(SPLIT_LABELS[k] for k in SPLIT), "CLI exit")
    for col in ("run", "runs", "ours s", "floor s", "ratio", "target", *split_columns):
        table.add_column(col, justify="left" if col == "run" else "right")
    for kind, label in (("first", "first run (empty root)"), ("rerun", "re-run (warm)")):
        s = doc["summary"][kind]
        verdict = ("[green]PASS[/]" if s["pass"] else "[red]FAIL[/]") + f" <= {s['target']}"
        table.add_row(
            label, str(s["runs"]), _f(s["wall"]), _f(s["floor"]), _f(s["ratio"]), verdict,
            *(_f(s["split"].get(k)) for k in SPLIT), _f(s["exit"]),
        )  # fmt: skip
    console.print(table)
    loads = [r["load"] for r in doc["rows"]]
    console.print(
        f"load average (1 min) after each run: {min(loads):.2f}-{max(loads):.2f}; "
        f"shared environment build (first runs): {_f(_median(doc['rows'], 'environment_build'))} s"
    )
    for failed in doc["failed_once"]:
        where = failed.get("log", "papermill")
        console.print(
            f"[yellow]failed once, run again[/]: round {failed['round']} {failed['kind']} ({where})"
        )


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds of floor, first run, floor, re-run")
    p.add_argument("--only", default="", help="comma-separated fan-out values (default: all five)")
    p.add_argument("--json", type=Path, default=OUT / "local_run.json")
    p.add_argument("--smoke", action="store_true", help="1 round, values de,fr")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.only = 1, args.only or "de,fr"
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    only = [v for v in args.only.split(",") if v]
    spec, platform, root = prepare_inputs(only)
    try:
        return _measure(args, spec, platform, root)
    finally:
        stop_execution_api(root / "airflow")  # leave no server behind


def _measure(args: argparse.Namespace, spec: Path, platform: Path, root: Path) -> dict[str, Any]:
    per_value, parallel, project = floor_commands(spec, platform)
    rows: list[dict[str, Any]] = []
    # parallel Jupyter kernels on one machine can race for a TCP port ("Address already in use", the
    # kernel dies): a failed run is kept here and run again once; a second failure fails the benchmark
    failed_once: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    for round_no in range(args.rounds):
        for kind in ("first", "rerun"):
            pair = ["floor", kind] if (round_no + len(rows) // 2) % 2 == 0 else [kind, "floor"]
            result: dict[str, dict[str, Any]] = {}
            for which in pair:
                for attempt in (1, 2):  # one more try after a failure (failed_once)
                    console.print(f"round {round_no + 1}/{args.rounds}: {which} ...", end=" ")
                    if which == "floor":
                        result[which] = run_floor(per_value, parallel)
                    else:
                        log = WORK / f"run-{round_no + 1}-{kind}-{attempt}.log"
                        result[which] = run_ours(spec, platform, root, kind, log)
                    status = "ok" if result[which]["ok"] else "[red]FAILED[/]"
                    console.print(
                        f"{result[which]['wall']:.1f} s {status} (load {result[which]['load']:.2f})"
                    )
                    if result[which]["ok"]:
                        break
                    failed_once.append({**result[which], "round": round_no + 1})
            ours, floor = result[kind], result["floor"]
            ours["floor"] = floor["wall"]
            ours["ratio"] = round(ours["wall"] / floor["wall"], 2)
            rows += [floor, ours]
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "rounds": args.rounds,
            "values": len(per_value),
            "max_parallel": parallel,
            "project": str(project),
            "smoke": args.smoke,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "rows": rows,
        "failed_once": failed_once,
        "summary": summarize(rows),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = measure(args)
    print_table(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results: {args.json}")
    failed = [f"{r['kind']} ({r.get('log', 'papermill')})" for r in doc["rows"] if not r["ok"]]
    if failed:
        console.print(f"[red]runs failed[/]: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
