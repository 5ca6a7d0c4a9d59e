"""One measurement, in a fresh interpreter: `python benchmarks/child.py parse|validate ...`.

Prints one JSON object on the last line of stdout. run.py starts it with AIRFLOW_HOME pointing at a
temporary directory, so nothing touches a real Airflow installation or database.

parse:    import Airflow (+ --preload modules) -> time `DagBag(dag_folder=...)` -> peak RSS -> counts;
          optionally the time to serialize every DAG as the DAG processor does (--time-serialize), and
          (after the timing) serialized DAG sizes and a dump of one DAG's tasks.
validate: import benchmarks/generate.py -> time `validate_ours_specs(specs)` in-process.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


VERSIONED = (
    "apache-airflow",
    "apache-airflow-providers-amazon",
    "apache-airflow-providers-ssh",
    "apache-airflow-providers-standard",
    "dag-factory",
    "dag-factory-notebooks",
    "pyyaml",
)


def versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def dump_tasks(dag: Any) -> dict[str, Any]:
    """Per task: operator class, upstream ids, trigger rule, setup/teardown, pool, template-field values."""
    tasks = {}
    for task in dag.tasks:
        fields = {name: getattr(task, name, None) for name in task.template_fields}
        callable_ = getattr(task, "python_callable", None)
        tasks[task.task_id] = _jsonable(
            {
                "operator": type(task).__module__ + "." + type(task).__name__,
                "upstream": sorted(task.upstream_task_ids),
                "trigger_rule": str(task.trigger_rule),
                "is_setup": task.is_setup,
                "is_teardown": task.is_teardown,
                "pool": task.pool,
                "cmd_timeout": getattr(task, "cmd_timeout", None),
                "python_callable": (
                    f"{callable_.__module__}.{callable_.__qualname__}" if callable_ is not None else None
                ),
                "fields": fields,
            }
        )
    dag_args = {
        "schedule": str(getattr(dag, "schedule", None)),
        "start_date": str(dag.start_date),
        "catchup": dag.catchup,
        "tags": sorted(dag.tags),
        "max_active_tasks": dag.max_active_tasks,
        "default_args": _jsonable(dag.default_args),
    }
    return {"dag_id": dag.dag_id, "dag": dag_args, "tasks": tasks}


def parse(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    import airflow
    from airflow.dag_processing.dagbag import DagBag

    for module in filter(None, args.preload.split(",")):
        importlib.import_module(module)
    import_s = time.perf_counter() - t0
    rss_after_import = _rss_mb()

    kwargs: dict[str, Any] = {"dag_folder": args.dag_dir}
    if "include_examples" in inspect.signature(DagBag.__init__).parameters:  # gone in Airflow 3.3
        kwargs["include_examples"] = False
    t1 = time.perf_counter()
    bag = DagBag(**kwargs)
    parse_s = time.perf_counter() - t1
    peak_rss = _rss_mb()

    dags = [bag.dags[k] for k in sorted(bag.dags)]
    serialize_s = None
    if args.time_serialize:  # what the DAG processor does next with each DAG: to_dict, then JSON
        from airflow.serialization.serialized_objects import DagSerialization

        t2 = time.perf_counter()
        for dag in dags:
            json.dumps(DagSerialization.to_dict(dag))
        serialize_s = time.perf_counter() - t2
    result: dict[str, Any] = {
        "airflow_version": airflow.__version__,
        "python": sys.version.split()[0],
        "import_s": import_s,
        "parse_s": parse_s,
        "serialize_s": serialize_s,
        "parse_serialize_s": None if serialize_s is None else parse_s + serialize_s,
        "rss_after_import_mb": rss_after_import,
        "peak_rss_mb": peak_rss,
        "dags": len(dags),
        "tasks_per_dag": sorted({len(d.tasks) for d in dags}),
        "import_errors": len(bag.import_errors),
        "import_error_samples": {k: v[-600:] for k, v in list(bag.import_errors.items())[:2]},
    }
    if args.serialize_sample and dags:
        from airflow.serialization.serialized_objects import DagSerialization

        sizes = [len(json.dumps(DagSerialization.to_dict(d))) for d in dags[: args.serialize_sample]]
        result["serialized_bytes_avg"] = sum(sizes) / len(sizes)
        result["serialized_sample"] = len(sizes)
    if args.dump:
        result["versions"] = versions()
        if dags:
            result["dump"] = dump_tasks(dags[0])
    return result


def validate(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import generate

    specs = sorted(p for p in Path(args.spec_dir).glob("*.yaml") if p.name != "platform.yaml")
    try:
        for module in generate.OURS_VALIDATE_PRELOAD:  # imports are not throughput
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise generate.NotAvailable(f"not available yet: {module} ({exc})") from exc
        t0 = time.perf_counter()
        valid = generate.validate_ours_specs(specs)
        elapsed = time.perf_counter() - t0
    except generate.NotAvailable as exc:
        return {"available": False, "reason": str(exc), "specs": len(specs)}
    return {
        "available": True,
        "specs": len(specs),
        "valid": valid,
        "seconds": elapsed,
        "specs_per_s": len(specs) / elapsed if elapsed else None,
        "peak_rss_mb": _rss_mb(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("parse")
    p.add_argument("--dag-dir", required=True)
    p.add_argument("--preload", default="", help="comma-separated modules imported before timing")
    p.add_argument("--serialize-sample", type=int, default=0, help="serialize this many DAGs (after timing)")
    p.add_argument("--dump", action="store_true", help="dump the first DAG's tasks (after timing)")
    p.add_argument(
        "--time-serialize", action="store_true", help="after the parse: time serializing each DAG (to JSON)"
    )
    v = sub.add_parser("validate")
    v.add_argument("--spec-dir", required=True)
    args = parser.parse_args()
    result = parse(args) if args.mode == "parse" else validate(args)
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
