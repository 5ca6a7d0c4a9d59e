"""DAG parse cost of our notebook DAG factory vs hand-written DAGs vs astronomer dag-factory; then
`dag-factory run` of the demo job vs bare papermill (benchmarks/local_run.py).

    .venv/bin/python benchmarks/run.py                       # N = 50,200,1000, 5 repeats (+1 warm-up)
    .venv/bin/python benchmarks/run.py --sizes 50,200 --repeats 7
    .venv/bin/python benchmarks/run.py --smoke               # tiny N, 1 repeat: checks the harness works
    .venv/bin/python benchmarks/run.py --benchmarks local    # only the local run (= local_run.py)

Each measurement runs in a fresh interpreter (benchmarks/child.py) with AIRFLOW_HOME in a temporary
directory. Results: a table on stdout and benchmarks/out/results.json. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

import generate
import local_run
from generate import BENCH_DIR, OUT, REPO, NotAvailable
from rich.console import Console
from rich.table import Table

MAIN_PYTHON = REPO / ".venv" / "bin" / "python"
DF_VENV = REPO / ".venv-dagfactory"
DF_PYTHON = DF_VENV / "bin" / "python"
DF_VERSION = "dag-factory==1.1.0"
# Pinned in the dag-factory venv at the exact versions installed in .venv (read from it).
SHARED_DISTS = [
    "apache-airflow",
    "apache-airflow-providers-amazon",
    "apache-airflow-providers-ssh",
    "apache-airflow-providers-standard",
    "apache-airflow-providers-common-sql",
    "apache-airflow-providers-postgres",
    "apache-airflow-providers-snowflake",
]
# Imported before the DagBag timer starts, for every variant (Airflow's dag processor pre-imports the
# airflow modules DAG files use); variant-specific extras come from generate.Generated.preload.
COMMON_PRELOAD = [
    "airflow.sdk",
    "airflow.providers.amazon.aws.operators.sagemaker",
    "airflow.providers.ssh.operators.ssh",
    "airflow.providers.standard.operators.python",
]
TARGET_RATIO = 1.2  # ours / hand-written per DAG at N = 200 (the target)
TARGET_N = 200

console = Console(width=None if sys.stdout.isatty() else 200)


# --------------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------------


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run(
        ["uv", "pip", "freeze", "-p", str(python)], capture_output=True, text=True, check=True
    ).stdout
    pins = {}
    for line in out.splitlines():
        if "==" in line and not line.startswith("-e"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def ensure_dagfactory_venv(rebuild: bool = False) -> Path:
    """Create .venv-dagfactory once (cached): same airflow/providers as .venv (constrained to .venv's
    versions for every shared dependency) plus dag-factory 1.1.0. Our .venv is never touched."""
    main = _freeze(MAIN_PYTHON)
    requirements = [f"{name}=={main[name]}" for name in SHARED_DISTS] + [DF_VERSION]
    stamp = DF_VENV / ".bench-installed"
    wanted = "\n".join(requirements) + "\n"
    if not rebuild and DF_PYTHON.exists() and stamp.exists() and stamp.read_text() == wanted:
        return DF_PYTHON
    console.print(f"[bold]creating {DF_VENV.name}[/] ({', '.join(requirements)})")
    if rebuild and DF_VENV.exists():
        shutil.rmtree(DF_VENV)
    if not DF_PYTHON.exists():
        subprocess.run(["uv", "venv", "-q", "-p", "3.11", str(DF_VENV)], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("".join(f"{k}=={v}\n" for k, v in main.items() if k != "dag-factory-notebooks"))
    try:
        subprocess.run(
            ["uv", "pip", "install", "-q", "-p", str(DF_PYTHON), "-c", constraints.name, *requirements],
            check=True,
        )
    finally:
        os.unlink(constraints.name)
    stamp.write_text(wanted)
    return DF_PYTHON


def child_env(airflow_home: Path, dag_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DAG_FACTORY_"))}
    # Bytecode caching on, as in production, but into benchmarks/out/ (the venvs and tree stay clean).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPYCACHEPREFIX=str(OUT / ".pycache"),
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dag_dir),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="0",  # no per-file timeout (dag-factory at N=1000, one loader)
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home}/airflow.db",  # never created
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY="False",
        DO_NOT_TRACK="1",
        SCARF_NO_ANALYTICS="true",
    )
    env.update(extra or {})
    return env


def run_child(
    python: Path, args: list[str], dag_dir: Path, timeout: float, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(python), str(BENCH_DIR / "child.py"), *args],
            env=child_env(Path(home), dag_dir, extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - t0
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-1500:]}", "wall_s": wall}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


def python_for(variant: str) -> Path:
    return DF_PYTHON if variant == "dagfactory" else MAIN_PYTHON


def designed_dag_level_tasks() -> tuple[str, ...]:
    """Tasks our DAG has by design beside the groups a hand-written DAG of the same shape has: the run
    report, and one asset-event task per delivery target (dag_factory.plan.model.PublishPlan)."""
    from dag_factory.load.specs import load_platform, load_spec
    from dag_factory.plan.planner import plan_dag
    from dag_factory.plan.report import REPORT_TASK

    plan = plan_dag(load_spec(generate.BASE_SPEC, load_platform(generate.PLATFORM_FILE)), generate.ENV)
    return (REPORT_TASK, *(p.task_id for p in plan.publish))


def expected_tasks_per_dag() -> dict[str, int]:
    """Tasks per DAG each variant must have: the hand-written shape, plus our designed DAG-level tasks for
    ours (any other difference fails the check)."""
    job = generate.base_jobs(1)[0]
    shape = len(generate.expected_tasks(job))
    ours = shape + len(designed_dag_level_tasks())
    return {"handwritten": shape, "dagfactory": shape, "ours": ours, "ours_warm": ours}


def generate_variants(
    n: int, variants: list[str], args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], dict[str, generate.Generated]]:
    """Write each variant's folder for one N; rows (skipped ones marked) and the generated folders."""
    rows: dict[str, dict[str, Any]] = {}
    builds: dict[str, generate.Generated] = {}
    for variant in variants:
        if variant == "dagfactory" and args.dagfactory_max_n and n > args.dagfactory_max_n:
            reason = (
                f"N > --dagfactory-max-n {args.dagfactory_max_n} (0.7-1.5 s a DAG: a run would take long)"
            )
            rows[variant] = {"variant": variant, "n": n, "available": False, "reason": reason}
            continue
        t0 = time.perf_counter()
        try:
            builds[variant] = generate.generate(variant, n, OUT, args.dagfactory_loader)
        except NotAvailable as exc:
            rows[variant] = {"variant": variant, "n": n, "available": False, "reason": str(exc)}
            continue
        gen = builds[variant]
        rows[variant] = {
            "variant": variant,
            "n": n,
            "available": True,
            "generate_s": time.perf_counter() - t0,
            "input_files": len(gen.files),
            "input_bytes": gen.bytes,
            "runs": [],
        }
    return rows, builds


def measure_size(
    n: int, variants: list[str], args: argparse.Namespace, expected_tasks: dict[str, int]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """All runs for one N; returns per-variant summary rows and the DAG dumps (for the equivalence check)."""
    rows, builds = generate_variants(n, variants, args)
    dumps: dict[str, Any] = {}
    # Per variant: its warm-up runs (ours_warm needs one to fill its plan cache), then its measured
    # runs, until --repeats are done or its runs at this N took --max-seconds-per-variant (at least one
    # measured run). Variants take turns, the order rotating each round, so machine load hits all alike.
    # The warm-up fills the bytecode cache, so only the first (smallest) N needs it.
    warmup = args.warmup if n == min(int(x) for x in args.sizes.split(",")) else 0
    warmups = {v: max(1, warmup) if v == "ours_warm" else warmup for v in builds}
    done_runs = dict.fromkeys(builds, 0)
    spent = dict.fromkeys(builds, 0.0)
    finished: set[str] = set()
    round_no = 0
    while len(finished) < len(builds):
        order = [v for v in builds if v not in finished]
        order = order[round_no % len(order) :] + order[: round_no % len(order)]
        round_no += 1
        for variant in order:
            gen = builds[variant]
            rep = done_runs[variant]
            child_args = [
                "parse",
                "--dag-dir",
                str(gen.dag_dir),
                "--preload",
                ",".join(COMMON_PRELOAD + gen.preload),
                "--time-serialize",
            ]
            first = rep == 0
            if first:
                child_args += ["--serialize-sample", str(min(n, args.serialize_sample)), "--dump"]
            warm = warmups[variant]
            label = "warm-up" if rep < warm else f"run {rep - warm + 1}/{args.repeats}"
            console.print(f"  N={n:<5} {variant:12} {label}", end="")
            result = run_child(python_for(variant), child_args, gen.dag_dir, args.child_timeout, gen.env)
            done_runs[variant] += 1
            spent[variant] += result["wall_s"]
            measured = done_runs[variant] - warm
            if done_runs[variant] >= warm + args.repeats:
                finished.add(variant)
            elif (
                measured >= 1
                and args.max_seconds_per_variant
                and spent[variant] >= args.max_seconds_per_variant
            ):
                finished.add(variant)
                rows[variant]["capped"] = f"{measured} of {args.repeats} runs (--max-seconds-per-variant)"
            if "error" in result:
                console.print(f"  [red]failed[/]: {result['error'][-300:]}")
                rows[variant].setdefault("errors", []).append(result["error"])
                finished.add(variant)
                continue
            console.print(
                f"  parse {result['parse_s']:.2f}s  import {result['import_s']:.2f}s"
                f"  rss {result['peak_rss_mb']:.0f} MB  dags {result['dags']}"
                f"  errors {result['import_errors']}"
            )
            if first:
                dumps[variant] = result.pop("dump", None)
                rows[variant]["serialized_bytes_avg"] = result.get("serialized_bytes_avg")
                rows[variant]["versions"] = result.get("versions")
            if rep >= warm:
                rows[variant]["runs"].append(result)
    for variant in builds:
        summarize(rows[variant], n, expected_tasks[variant])
    return rows, dumps


def summarize(row: dict[str, Any], n: int, expected_tasks: int) -> None:
    runs = row["runs"]
    if not runs:
        row["ok"] = False
        return

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    serialized = [r for r in runs if r.get("serialize_s") is not None]
    if serialized:
        row["serialize_s"] = statistics.median(r["serialize_s"] for r in serialized)
        row["parse_serialize_s"] = statistics.median(r["parse_serialize_s"] for r in serialized)
        row["parse_serialize_ms_per_dag"] = row["parse_serialize_s"] / n * 1000
    row.update(
        parse_s=median("parse_s"),
        parse_s_min=min(r["parse_s"] for r in runs),
        parse_s_max=max(r["parse_s"] for r in runs),
        import_s=median("import_s"),
        wall_s=median("wall_s"),
        peak_rss_mb=median("peak_rss_mb"),
        rss_after_import_mb=median("rss_after_import_mb"),
        dags=min(r["dags"] for r in runs),
        tasks_per_dag=sorted({t for r in runs for t in r["tasks_per_dag"]}),
        import_errors=max(r["import_errors"] for r in runs),
        import_error_samples=next((r["import_error_samples"] for r in runs if r["import_errors"]), {}),
        airflow_version=runs[0]["airflow_version"],
        python=runs[0]["python"],
    )
    row["per_dag_ms"] = row["parse_s"] / n * 1000
    row["rss_per_dag_kb"] = (row["peak_rss_mb"] - row["rss_after_import_mb"]) * 1024 / n
    row["ok"] = (
        row["import_errors"] == 0
        and row["dags"] == n
        and row["tasks_per_dag"] == [expected_tasks]
        and not row.get("errors")
    )


def add_slopes(results: dict[str, dict[int, dict[str, Any]]], sizes: list[int]) -> None:
    """Marginal cost per extra DAG between consecutive sizes (fixed costs cancel out)."""
    for per_n in results.values():
        for lo, hi in itertools.pairwise(sizes):
            a, b = per_n.get(lo, {}), per_n.get(hi, {})
            if a.get("parse_s") is None or b.get("parse_s") is None:
                continue
            b["marginal_ms_per_dag"] = (b["parse_s"] - a["parse_s"]) / (hi - lo) * 1000
            b["marginal_rss_kb_per_dag"] = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024 / (hi - lo)
            b["marginal_from_n"] = lo


def ratios(results: dict[str, dict[int, dict[str, Any]]], sizes: list[int]) -> list[dict[str, Any]]:
    pairs = [
        ("ours", "handwritten"),
        ("ours_warm", "handwritten"),
        ("ours", "dagfactory"),
        ("ours_warm", "dagfactory"),
        ("dagfactory", "handwritten"),
    ]
    out = []
    for n in sizes:
        for num, den in pairs:
            a, b = results.get(num, {}).get(n, {}), results.get(den, {}).get(n, {})
            entry: dict[str, Any] = {"n": n, "ratio": f"{num}/{den}"}
            if a.get("per_dag_ms") and b.get("per_dag_ms"):
                entry["per_dag"] = a["per_dag_ms"] / b["per_dag_ms"]
                if a.get("marginal_ms_per_dag") and b.get("marginal_ms_per_dag"):
                    entry["marginal"] = a["marginal_ms_per_dag"] / b["marginal_ms_per_dag"]
                entry["peak_rss"] = a["peak_rss_mb"] / b["peak_rss_mb"]
                if a.get("parse_serialize_s") and b.get("parse_serialize_s"):
                    entry["serialize"] = a["serialize_s"] / b["serialize_s"]
                    entry["parse_serialize"] = a["parse_serialize_s"] / b["parse_serialize_s"]
                if a.get("serialized_bytes_avg") and b.get("serialized_bytes_avg"):
                    entry["serialized_bytes"] = a["serialized_bytes_avg"] / b["serialized_bytes_avg"]
            else:
                entry["note"] = "not available"
            out.append(entry)
    return out


# --------------------------------------------------------------------------------------------------
# Equivalence check: the parsed DAGs of each variant against the hand-written one
# --------------------------------------------------------------------------------------------------

_DF_ID = re.compile(r"\b(\w+)\.\1_(\w+)\b")  # dag-factory's "de.de_prepare" -> "de.prepare"


def _normalize(value: Any) -> Any:
    return json.loads(_DF_ID.sub(r"\1.\2", json.dumps(value)))


def compare_dumps(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    ref_tasks, tasks = reference["tasks"], _normalize(other["tasks"])
    diffs: dict[str, int] = {}
    for task_id in sorted(set(ref_tasks) & set(tasks)):
        a, b = ref_tasks[task_id], tasks[task_id]
        for key in sorted(set(a) | set(b)):
            if key == "fields":
                for name in sorted(set(a["fields"]) | set(b["fields"])):
                    if a["fields"].get(name) != b["fields"].get(name):
                        diffs[f"fields.{name}"] = diffs.get(f"fields.{name}", 0) + 1
            elif a.get(key) != b.get(key):
                diffs[key] = diffs.get(key, 0) + 1
    dag_diffs = {
        k: {"reference": reference["dag"].get(k), "other": other["dag"].get(k)}
        for k in sorted(set(reference["dag"]) | set(other["dag"]))
        if reference["dag"].get(k) != other["dag"].get(k)
    }
    return {
        "tasks_only_in_reference": sorted(set(ref_tasks) - set(tasks))[:10],
        "tasks_only_in_other": sorted(set(tasks) - set(ref_tasks))[:10],
        "same_task_ids": set(ref_tasks) == set(tasks),
        "task_attribute_differences": diffs,
        "dag_differences": dag_diffs,
    }


# --------------------------------------------------------------------------------------------------
# Validate throughput (ours)
# --------------------------------------------------------------------------------------------------


def measure_validate(count: int, args: argparse.Namespace) -> dict[str, Any]:
    spec_dir = OUT / "validate" / str(count) / "specs"
    if spec_dir.parent.exists():
        shutil.rmtree(spec_dir.parent)
    generate.write_specs(count, spec_dir)
    runs = []
    for _ in range(max(1, args.validate_repeats)):
        result = run_child(
            MAIN_PYTHON,
            ["validate", "--spec-dir", str(spec_dir)],
            spec_dir,
            args.child_timeout,
            generate.OURS_CHILD_ENV,
        )
        if "error" in result or not result.get("available"):
            return {"specs": count, **result}
        runs.append(result)
    best = statistics.median(r["specs_per_s"] for r in runs)
    return {
        "specs": count,
        "available": True,
        "specs_per_s": best,
        "runs": runs,
        "cli": measure_validate_cli(spec_dir, count, args.validate_repeats),
    }


# `dag-factory validate`, CLI start to exit, on a quiet 2-core machine (issue 27); the folder's target is
# for 1,000 specs, so a smaller folder (--smoke) has none
VALIDATE_CLI_TARGET_S = {"one spec": 0.4, "1000 specs": 3.0}


def measure_validate_cli(spec_dir: Path, count: int, repeats: int) -> list[dict[str, Any]]:
    """What a person (or pre-commit) waits for: the CLI on one spec and on the whole folder, each run
    once untimed first (warm: compiled modules, the notebook cache, the OS's file cache), then timed.
    A run that does not exit 0 fails the check."""
    cli = MAIN_PYTHON.parent / "dag-factory"
    one = min(p for p in spec_dir.glob("*.yaml") if p.name != "platform.yaml")
    rows = []
    for label, target in (("one spec", one), (f"{count} specs", spec_dir)):
        times, codes = [], []
        for timed in [False] + [True] * max(1, repeats):
            started = time.perf_counter()
            done = subprocess.run([str(cli), "validate", str(target)], capture_output=True, text=True)
            if timed:
                times.append(time.perf_counter() - started)
                codes.append(done.returncode)
        rows.append(
            {
                "case": label,
                "seconds": statistics.median(times),
                "runs": times,
                "ok": codes == [0] * len(codes),
                "error": None if codes == [0] * len(codes) else (done.stdout + done.stderr)[-2000:],
                "target_s": VALIDATE_CLI_TARGET_S.get(label),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_tables(doc: dict[str, Any]) -> None:
    table = Table(title="DagBag parse cost (median of runs; each run a fresh interpreter)")
    for col in (
        "variant", "N", "runs", "import s", "parse s", "ms/DAG", "marginal ms/DAG", "serialize s",
        "parse+serialize ms/DAG", "peak RSS MB", "KB/DAG", "serialized KB/DAG", "input KB/DAG", "DAGs",
        "tasks/DAG", "import errors", "check",
    ):  # fmt: skip
        table.add_column(col, justify="left" if col in ("variant", "check") else "right")
    for row in doc["rows"]:
        if not row.get("available"):
            table.add_row(
                row["variant"], str(row["n"]), *["-"] * 14, f"[yellow]skipped: {row['reason'][:120]}[/]"
            )
            continue
        check = "[green]ok[/]" if row.get("ok") else "[red]FAIL[/]"
        table.add_row(
            row["variant"],
            str(row["n"]),
            str(len(row.get("runs", []))) + ("*" if row.get("capped") else ""),
            _f(row.get("import_s"), ".2f"),
            _f(row.get("parse_s"), ".2f"),
            _f(row.get("per_dag_ms"), ".1f"),
            _f(row.get("marginal_ms_per_dag"), ".1f"),
            _f(row.get("serialize_s"), ".2f"),
            _f(row.get("parse_serialize_ms_per_dag"), ".1f"),
            _f(row.get("peak_rss_mb"), ".0f"),
            _f(row.get("marginal_rss_kb_per_dag", row.get("rss_per_dag_kb")), ".0f"),
            _f((row.get("serialized_bytes_avg") or 0) / 1024 or None, ".0f"),
            _f(row["input_bytes"] / row["n"] / 1024, ".1f"),
            str(row.get("dags", "-")),
            ",".join(map(str, row.get("tasks_per_dag", []))) or "-",
            str(row.get("import_errors", "-")),
            check,
        )
    console.print(table)

    rt = Table(title="Ratios (per DAG: parse s / N; marginal: slope from the previous N)")
    for col in ("N", "ratio", "parse per DAG", "marginal", "serialize", "parse + serialize", "peak RSS",
                "serialized bytes"):  # fmt: skip
        rt.add_column(col, justify="right")
    for r in doc["ratios"]:
        rt.add_row(
            str(r["n"]), r["ratio"], _f(r.get("per_dag"), ".2f"), _f(r.get("marginal"), ".2f"),
            _f(r.get("serialize"), ".2f"), _f(r.get("parse_serialize"), ".2f"),
            _f(r.get("peak_rss"), ".2f") if "note" not in r else r["note"],
            _f(r.get("serialized_bytes"), ".2f"),
        )  # fmt: skip
    console.print(rt)
    console.print(f"target ours/hand-written <= {TARGET_RATIO} at N={TARGET_N}: [bold]{doc['target']}[/]")
    v = doc.get("validate") or {}
    if v.get("available"):
        console.print(f"validate (ours): {v['specs_per_s']:.0f} specs/s over {v['specs']} specs (in-process)")
        for row in v.get("cli", []):
            target = row["target_s"]
            verdict = "-" if target is None else ("PASS" if row["seconds"] <= target else "FAIL")
            console.print(
                f"dag-factory validate, {row['case']}: {row['seconds']:.2f} s (median of {len(row['runs'])}; "
                f"target {target if target is not None else '-'} s: {verdict})"
                + ("" if row["ok"] else f" [red]FAIL: exit status not 0[/]: {row['error']}")
            )
    elif v:
        console.print(f"validate (ours): [yellow]skipped: {v.get('reason') or v.get('error')}[/]")
    for variant, comparison in doc.get("equivalence", {}).items():
        diffs = ", ".join(f"{k} ({n} tasks)" for k, n in comparison["task_attribute_differences"].items())
        same = "same task ids" if comparison["same_task_ids"] else "[red]different task ids[/]"
        dag_diffs = ", ".join(comparison["dag_differences"]) or "none"
        console.print(
            f"{variant} vs handwritten (first DAG): {same}; task differences: {diffs or 'none'}; "
            f"DAG differences: {dag_diffs}"
        )


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
        "git_commit": commit or None,
    }


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="50,200,1000", help="comma-separated N (DAGs per variant)")
    p.add_argument("--repeats", type=int, default=5, help="measured runs per variant and N (median)")
    p.add_argument("--warmup", type=int, default=1,
                   help="unmeasured runs first, at the smallest N only (bytecode caches)")  # fmt: skip
    p.add_argument("--variants", default=",".join(generate.VARIANTS))
    p.add_argument("--dagfactory-loader", choices=("per-file", "folder"), default="per-file",
                   help="one loader .py per YAML (default) or one loader for the whole folder")  # fmt: skip
    p.add_argument("--max-seconds-per-variant", type=float, default=150,
                   help="stop measuring a variant at one N once its runs took this long (at least one "
                   "measured run; 0: no cap); capped rows show their run count with a *")  # fmt: skip
    p.add_argument("--dagfactory-max-n", type=int, default=200,
                   help="skip dag-factory above this N (0: none); a run at N=1000: 10-20 min")  # fmt: skip
    p.add_argument("--serialize-sample", type=int, default=10, help="DAGs serialized for the size column")
    p.add_argument(
        "--validate-specs", type=int, default=1000, help="specs for the validate throughput (0: skip)"
    )
    p.add_argument("--validate-repeats", type=int, default=3)
    p.add_argument("--child-timeout", type=float, default=3600)
    p.add_argument("--rebuild-dagfactory-venv", action="store_true")
    p.add_argument("--json", type=Path, default=OUT / "results.json")
    p.add_argument("--smoke", action="store_true", help="N=2,4, 1 repeat, no warm-up, 20 specs to validate; "
                   "local run: 1 round, 2 values")  # fmt: skip
    p.add_argument("--benchmarks", default="parse,local",
                   help="parse (DAG parse cost), local (dag-factory run vs papermill), or both")  # fmt: skip
    p.add_argument("--local-rounds", type=int, default=3, help="local run: rounds (see local_run.py)")
    p.add_argument("--local-only", default="", help="local run: comma-separated fan-out values (default all)")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats, args.warmup, args.validate_specs, args.validate_repeats = "2,4", 1, 0, 20, 1
        args.serialize_sample = 2
    unknown = set(args.benchmarks.split(",")) - {"parse", "local"}
    if unknown:
        p.error(f"--benchmarks: unknown {', '.join(sorted(unknown))} (use parse, local)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = args.benchmarks.split(",")
    code = run_parse_benchmark(args) if "parse" in chosen else 0
    if "local" in chosen:
        local_argv = ["--rounds", str(args.local_rounds), "--only", args.local_only]
        code = max(code, local_run.main([*local_argv, *(["--smoke"] if args.smoke else [])]))
    return code


def run_parse_benchmark(args: argparse.Namespace) -> int:
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    variants = [v for v in args.variants.split(",") if v]
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    if "dagfactory" in variants:
        ensure_dagfactory_venv(args.rebuild_dagfactory_venv)
    expected_tasks = expected_tasks_per_dag()
    info = machine_info()

    results: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in variants}
    equivalence: dict[str, Any] = {}
    for n in sizes:
        console.print(f"[bold]N = {n}[/]")
        rows, dumps = measure_size(n, variants, args, expected_tasks)
        for variant, row in rows.items():
            results[variant][n] = row
        if n == sizes[0] and dumps.get("handwritten"):
            for variant, dump in dumps.items():
                if variant != "handwritten" and dump:
                    equivalence[variant] = compare_dumps(dumps["handwritten"], dump)
    add_slopes(results, sizes)
    ratio_rows = ratios(results, sizes)
    targets = []
    for variant, label in (("ours", "cold cache"), ("ours_warm", "warm cache")):
        found = next(
            (
                r.get("per_dag")
                for r in ratio_rows
                if r["n"] == TARGET_N and r["ratio"] == f"{variant}/handwritten"
            ),
            None,
        )
        if found is not None:
            targets.append(f"{label}: {'PASS' if found <= TARGET_RATIO else 'FAIL'} ({found:.2f})")
    target = "; ".join(targets) or f"n.a. (ours not measured at N={TARGET_N})"

    validate = measure_validate(args.validate_specs, args) if args.validate_specs else None
    info["load_average_end"] = os.getloadavg()
    doc = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {
            "sizes": sizes,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "variants": variants,
            "dagfactory_loader": args.dagfactory_loader,
            "preload": COMMON_PRELOAD,
            "expected_tasks_per_dag": expected_tasks,
            "max_seconds_per_variant": args.max_seconds_per_variant,
            "dagfactory_max_n": args.dagfactory_max_n,
            "smoke": args.smoke,
        },
        "rows": [results[v][n] for n in sizes for v in variants if n in results[v]],
        "ratios": ratio_rows,
        "target": target,
        "validate": validate,
        "equivalence": equivalence,
        "total_s": time.perf_counter() - started,
    }
    print_tables(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    console.print(f"results: {args.json} (total {doc['total_s']:.0f} s)")
    failed = [f"{r['variant']} N={r['n']}" for r in doc["rows"] if r.get("available") and not r.get("ok")]
    failed += [f"validate {r['case']}" for r in (validate or {}).get("cli", []) if not r["ok"]]
    if failed:
        console.print(f"[red]checks failed[/] (import errors, DAG or task counts, child errors): {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
