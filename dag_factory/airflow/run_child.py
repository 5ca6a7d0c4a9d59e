"""The child process of a local run: `python -m dag_factory.airflow.run_child --dag-file F --dag-id D ...`.

dag_factory.local.execute starts it with the local Airflow home's environment (Airflow reads its
configuration at import, so it must be a fresh process), polls the metadata DB while it runs and
reads the outcome afterwards. It parses the DAG file and runs one DAG run with `dag.test(use_executor=
True)`: the LocalExecutor runs the fan-out in parallel. Exit 0 success, 1 the run failed, 3 the DAG
file did not import.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path


def _logical_date(value: str) -> datetime | None:
    return None if value == "none" else datetime.fromisoformat(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dag_factory.airflow.run_child")
    parser.add_argument("--dag-file", required=True, type=Path)
    parser.add_argument("--dag-id", required=True)
    # "none": a run without a logical date, as the REST API and asset triggers can create
    parser.add_argument("--logical-date", required=True, type=_logical_date)
    parser.add_argument("--run-after", required=True, type=datetime.fromisoformat)
    args = parser.parse_args(argv)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=args.dag_file, safe_mode=False)
    if bag.import_errors:
        for path, message in bag.import_errors.items():
            print(f"import error in {path}:\n{message}", file=sys.stderr)
        return 3
    dag = bag.dags.get(args.dag_id)
    if dag is None:
        print(f"no dag {args.dag_id!r} in {args.dag_file} (found: {sorted(bag.dags)})", file=sys.stderr)
        return 3
    dag_run = dag.test(use_executor=True, logical_date=args.logical_date, run_after=args.run_after)
    print(f"dag run {dag_run.run_id} finished: {dag_run.state}", flush=True)
    return 0 if dag_run.state == "success" else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
