"""Shell commands that run on an instance: one builder for the SSH and the local backend.

What differs between backends is only *where* things are (`HostLayout`); the steps are the
same text, so what a data scientist runs locally is what production runs.

Parameters never pass through the shell: the static ones travel as base64 of a YAML mapping
(papermill's `-b`), the run-time ones (run id, logical date, output prefix) as JSON rendered
by Airflow's Jinja `tojson`, which escapes quotes so single-quoting it is safe. Airflow's
default `allowed_run_id_pattern` keeps run ids to `[A-Za-z0-9_.~:+-]`, safe in single quotes.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from typing import Any

import yaml

Parameters = dict[str, Any]


@dataclass(frozen=True)
class HostLayout:
    """Where a run lives on one host (a SageMaker instance, or a local work directory)."""

    workdir: str  # the project is synced to <workdir>/project
    activate: str  # shell line that activates the Python env the notebooks run in
    sync: str  # shell line that copies the deployed project into <workdir>/project
    install: str  # installer command prefix, e.g. "pip install --quiet"

    @property
    def project(self) -> str:
        return f"{self.workdir}/project"


def encode_parameters(parameters: Parameters) -> str:
    """Base64 of a YAML mapping: shell-safe alphabet, exact round trip through papermill's -b."""
    text = yaml.safe_dump(parameters, allow_unicode=True, sort_keys=True, default_flow_style=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_parameters(blob: str) -> Parameters:
    loaded = yaml.safe_load(base64.b64decode(blob).decode("utf-8"))
    return dict(loaded or {})


def jinja_literal(text: str) -> str:
    """A Python/Jinja string literal for text we control (bucket names, paths)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def runtime_parameters_json(output_prefix_head: str, value_tail: str) -> str:
    """Jinja that renders the run-time parameters as JSON (quotes escaped by tojson)."""
    prefix = f"{jinja_literal(output_prefix_head + '/')} ~ run_id ~ {jinja_literal('/' + value_tail)}"
    return f'{{{{ {{"logical_date": (ds or ""), "run_id": run_id, "output_prefix": {prefix}}} | tojson }}}}'


def output_prefix_template(output_prefix_head: str, value_tail: str) -> str:
    """The same output prefix as the parameters carry, as a Jinja template for shell words."""
    return f"{output_prefix_head}/{{{{ run_id }}}}/{value_tail}"


def _script(lines: list[str]) -> str:
    # "set -euo pipefail" so the first failing step fails the task; no trailing ".sh" (templating).
    return "\n".join(["set -euo pipefail", *lines, "echo dag-factory: step done"])


def prepare_command(layout: HostLayout, papermill_version: str, requirements: str | None) -> str:
    """Sync the project, activate the env, install the pinned papermill and the requirements."""
    lines = [
        f"mkdir -p {shlex.quote(layout.workdir)}",
        layout.sync,
        layout.activate,
        f"{layout.install} {shlex.quote('papermill==' + papermill_version)} ipykernel",
    ]
    if requirements:
        lines.append(f"{layout.install} -r {shlex.quote(layout.project + '/' + requirements)}")
    return _script(lines)


def notebook_command(
    layout: HostLayout,
    notebook_path: str,
    output_notebook: str,
    kernel: str,
    parameters: Parameters,
    runtime_json: str,
) -> str:
    """Run one notebook with papermill; `output_notebook` and `runtime_json` may hold Jinja."""
    words = [
        "papermill",
        shlex.quote(f"{layout.project}/{notebook_path}"),
        f"'{output_notebook}'",
        "-k",
        shlex.quote(kernel),
        "--cwd",
        shlex.quote(layout.project),
        "-b",
        encode_parameters(parameters),
        "-y",
        f"'{runtime_json}'",
        "--log-output",
        "--no-progress-bar",
    ]
    lines = [f"cd {shlex.quote(layout.project)}", layout.activate]
    if "://" not in output_notebook:  # a local output folder must exist; S3 has no folders
        lines.append(f"mkdir -p \"$(dirname '{output_notebook}')\"")
    return _script([*lines, " ".join(words)])
