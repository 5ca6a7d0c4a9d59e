"""The compatibility matrix's checks, run by tests/test_compat.py inside each Airflow release's venv:
``python -P tests/compat_checks.py ARGS.json FOUND.json`` without PYTHONPATH (only what the install
provides is importable, never this checkout's tests). Writes what it found to FOUND.json (Airflow logs to
stdout); tests/test_compat.py asserts.

For each spec of ARGS.json ({"specs": [[spec, platform, env], ...], "dags": folder}): build the DAG,
round-trip it through that release's DAG serialization, resolve its extra links through the classes
the plugin (its entry point) registers, then load the generated DAG files in a DagBag.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

RUN_ID = "scheduled__2026-01-05T00:00:00+00:00"


def _edges(dag: Any) -> list[list[str]]:
    return sorted([up, task.task_id] for task in dag.tasks for up in task.upstream_task_ids)


def _links(task: Any) -> dict[str, str]:
    """A notebook task's links as its worker computes them (the plugin's classes, its own targets)."""
    return {
        link.name: link.get_link(task, ti_key=SimpleNamespace(run_id=RUN_ID))
        for link in task.operator_extra_links
    }


def check_dag(spec: str, platform: str, env: str, plugin_links: set[type]) -> dict[str, Any]:
    from airflow.serialization.serialized_objects import DagSerialization

    from dag_factory.airflow.build import dag_from_spec

    dag = dag_from_spec(spec, env=env, platform=platform)
    back = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
    notebook = next(t for t in dag.tasks if ".nb_" in t.task_id)
    return {
        "dag_id": dag.dag_id,
        "tasks": sorted(dag.task_ids),
        "edges": _edges(dag),
        "round_trip": {"tasks": sorted(back.task_ids), "edges": _edges(back)},
        "extra_links": {  # as the api-server sees them: deserialized, known by the plugin's classes
            task.task_id: sorted(task.extra_links) for task in back.tasks if ".nb_" in task.task_id
        },
        "unregistered_link_classes": sorted(
            type(link).__name__ for link in notebook.operator_extra_links if type(link) not in plugin_links
        ),
        "links": {"task": notebook.task_id, "urls": _links(notebook)},
    }


def main(args: dict[str, Any]) -> dict[str, Any]:
    from airflow import plugins_manager
    from airflow.dag_processing.dagbag import DagBag

    from dag_factory.airflow.dag_files import write_dag_file

    (plugin,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "dag_factory"]
    plugin_links = {type(link) for link in plugins_manager.get_operator_extra_links()}
    found: dict[str, Any] = {
        "airflow": version("apache-airflow"),
        "plugin": plugin.load().name,
        "dags": {},
    }
    dags = Path(args["dags"])
    for spec, platform, env in args["specs"]:
        checked = check_dag(spec, platform, env, plugin_links)
        found["dags"][checked["dag_id"]] = checked
        write_dag_file(Path(spec), dags, env=env, platform=Path(platform))
    bag = DagBag(dag_folder=str(dags))  # the test sets AIRFLOW__CORE__LOAD_EXAMPLES=False
    found["dagbag"] = {
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    }
    return found


if __name__ == "__main__":
    # a file, not stdout: Airflow logs to stdout
    Path(sys.argv[2]).write_text(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))))
