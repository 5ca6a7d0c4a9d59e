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
import datetime as dt
import functools
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dag_factory.plan.guard import (
    ALWAYS_PASS,
    CHECK_PROJECT,
    ENTER_PROJECT,
    EXIT_MISSING_INPUT,
    INSTALL_ONCE,
    MESSAGE_PREFIX,
    RUN_NOTEBOOK,
)
from dag_factory.spec.job import STANDARD_PARAMETERS

Parameters = dict[str, Any]


@dataclass(frozen=True)
class HostLayout:
    """Where a run lives on one host (a SageMaker instance, or a local work directory)."""

    workdir: str  # the project is synced to <workdir>/project
    activate: str  # shell line that activates the Python env the notebooks run in
    sync: str  # shell line that copies the deployed project into <workdir>/project
    install: str  # installer command prefix, e.g. "pip install --quiet"
    code: str = ""  # where `sync` copies the deployed project from (named when it is missing)

    @property
    def project(self) -> str:
        return f"{self.workdir}/project"


# libyaml's emitter is ~4x faster than PyYAML's pure-Python one (which was ~1/4 of a DAG's plan time) but
# does not write the same text for everything (folding of long lines with spaces, empty keys, some
# non-ASCII characters). For the data below the two agree byte for byte (checked against 100,000 random
# documents; tests/build/test_parse_cache.py), so it takes the fast emitter and anything else the slow one:
# the command text stays exactly what it always was.
_CDumper: type[yaml.SafeDumper] | None = getattr(yaml, "CSafeDumper", None)
_PLAIN_TEXT = re.compile(r"[\x21-\x7e]{1,100}\Z")  # printable ASCII, no whitespace: never folded
_PLAIN_SCALARS = (int, float, bool, type(None), dt.date, dt.datetime)


def _c_emitter_safe(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind is str:
        return _PLAIN_TEXT.match(value) is not None
    if kind in _PLAIN_SCALARS:
        return True
    if depth > 20:
        return False
    if kind is list:
        return all(_c_emitter_safe(item, depth + 1) for item in value)
    if kind is dict:
        return all(
            type(k) is str and _PLAIN_TEXT.match(k) is not None and _c_emitter_safe(v, depth + 1)
            for k, v in value.items()
        )
    return False


def _dump(data: Any, dumper: type[yaml.SafeDumper], allow_unicode: bool = True) -> str:
    # sort_keys=False: mappings keep the order they were written in, as papermill's own -y/-f keep it
    return yaml.dump(
        data, Dumper=dumper, allow_unicode=allow_unicode, sort_keys=False, default_flow_style=False
    )


# A block mapping of scalars is its entries' lines one after another, in order; a DAG's notebook
# tasks share most entries (env, account, global parameters), so each `key: value` line is dumped once.
_FLAT_SCALARS = (str, int, bool, type(None))  # no floats: -0.0 == 0.0 would share a line


@functools.lru_cache(maxsize=4096)
def _entry(key: str, kind: str, value: Any) -> str:
    assert _CDumper is not None
    return _dump({key: value}, _CDumper)


def encode_parameters(parameters: Parameters) -> str:
    """Base64 of a YAML mapping: shell-safe alphabet, exact round trip through papermill's -b."""
    if _CDumper is not None and parameters and _c_emitter_safe(parameters):
        if all(type(v) in _FLAT_SCALARS for v in parameters.values()):
            text = "".join(_entry(k, type(v).__name__, v) for k, v in parameters.items())
        else:
            text = _dump(parameters, _CDumper)
    else:
        text = _dump(parameters, yaml.SafeDumper)
        if "\x85" in text:  # PyYAML writes a NEL raw, and reads it back as a line break: escape it
            text = _dump(parameters, yaml.SafeDumper, allow_unicode=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_parameters(encoded: str) -> Parameters:
    """The mapping :func:`encode_parameters` encoded (what papermill's -b reads)."""
    decoded = yaml.safe_load(base64.b64decode(encoded))
    return decoded if isinstance(decoded, dict) else {}


def jinja_literal(text: str) -> str:
    """A Python/Jinja string literal for text we control (bucket names, paths)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# The job's date (YYYY-MM-DD): the run's logical date, or, for a run without one (Airflow 3 allows
# triggering with "logical_date": null, and asset-triggered runs have none), the date of its run_after.
JOB_DATE = "(ds if ds is defined else dag_run.run_after | ds)"
JOB_DATE_TEMPLATE = "{{ " + JOB_DATE + " }}"


def runtime_parameters_json(output_prefix_head: str, value_tail: str) -> str:
    """Jinja that renders the run-time parameters as JSON (quotes escaped by tojson)."""
    prefix = f"{jinja_literal(output_prefix_head + '/')} ~ run_id ~ {jinja_literal('/' + value_tail)}"
    return f'{{{{ {{"logical_date": {JOB_DATE}, "run_id": run_id, "output_prefix": {prefix}}} | tojson }}}}'


def output_prefix_template(output_prefix_head: str, value_tail: str) -> str:
    """The same output prefix as the parameters carry, as a Jinja template for shell words."""
    return f"{output_prefix_head}/{{{{ run_id }}}}/{value_tail}"


def _script(lines: list[str]) -> str:
    # "set -euo pipefail" so the first failing step fails the task; no trailing ".sh" (templating).
    return "\n".join(["set -euo pipefail", *lines, "echo dag-factory: step done"])


# What every notebook environment installs beside papermill to render its executed notebooks as HTML (the
# guard's run_notebook): the environments' pin, as papermill's is the spec's. Nothing in this package
# imports nbconvert, so it is no dependency of ours; constraints.txt pins the same version for our tests,
# whose fake instances see the test venv's packages (tests/plan/test_scripts.py holds the two equal).
NBCONVERT = "nbconvert==7.17.2"


def html_path(output_notebook: str) -> str:
    """Where the HTML rendering of an executed notebook goes: beside it, `.ipynb` -> `.html` (the guard's
    run_notebook writes it there, and papermill's log as `.log`)."""
    stem = output_notebook[: -len(".ipynb")] if output_notebook.endswith(".ipynb") else output_notebook
    return stem + ".html"


def runtime_packages(papermill_version: str) -> tuple[str, ...]:
    """What the prepare step installs before the requirements (the local shared environments too)."""
    return (f"papermill=={papermill_version}", "ipykernel", NBCONVERT)


def prepare_command(layout: HostLayout, papermill_version: str, requirements: str | None) -> str:
    """Sync the project, check it, activate the env, install the pinned papermill and the requirements
    (once per environment): the checks and the installs are two of the guard's tools (PREPARE_TOOLS)."""
    project = layout.project
    requirements_file = f"{project}/{requirements}" if requirements else ""
    lines = [
        f"mkdir -p {shlex.quote(layout.workdir)}",
        layout.sync,
        shlex.join([CHECK_PROJECT, project, layout.code or project, requirements or ""]),
        layout.activate,
        shlex.join([INSTALL_ONCE, layout.install, requirements_file, *runtime_packages(papermill_version)]),
    ]
    return _script(lines)


INSTALLED_STAMP = ".dag-factory-installed"  # in the environment's prefix: one line per installed set

# prepare's checks: the deployed project is there, with its requirements file (a missing one is the
# deployment's: exit EXIT_MISSING_INPUT, never retried)
_CHECK_PROJECT = f"""set -euo pipefail
# dag-factory: the deployed project is there (dag_factory/plan/scripts.py)
project=$1 deployed=$2 requirements=$3
if [ -z "$(ls -A "$project" 2>/dev/null)" ]; then
    echo "{MESSAGE_PREFIX}missing input: the deployed project is empty: $deployed has no files (deploy the \
project first: dag-factory deploy)" >&2
    exit {EXIT_MISSING_INPUT}
fi
if [ -n "$requirements" ] && [ ! -f "$project/$requirements" ]; then
    echo "{MESSAGE_PREFIX}missing input: the requirements file $requirements is not in the deployed \
project" >&2
    exit {EXIT_MISSING_INPUT}
fi
"""

# The installs, skipped when this environment already got exactly this set from an earlier prepare: each
# value's prepare on a shared instance, a retried prepare, a re-run on a restarted one. The set is the hash
# of the package list and the requirements file's content, recorded in a stamp in the prefix of the
# Python that runs the notebooks (the env the installer installs into, active when this runs), after the
# installs succeeded. No prefix known, or one this user cannot write: the next prepare installs again.
_INSTALL_ONCE = f"""set -euo pipefail
# dag-factory: install the packages and the requirements once per environment (dag_factory/plan/scripts.py)
read -ra installer <<< "$1"  # the installer's command words
requirements=$2
shift 2  # then the packages
env_prefix="$(python -c "import sys; print(sys.prefix)" 2>/dev/null || true)"
installed_stamp="$env_prefix/{INSTALLED_STAMP}"
wanted="$({{ echo "$*"; [ -z "$requirements" ] || cat "$requirements"; }} | sha256sum | cut -c1-32)"
if [ -d "$env_prefix" ] && grep -qxF "$wanted" "$installed_stamp" 2>/dev/null; then
    echo "prepare: this environment already has these packages (an earlier prepare installed them)"
    exit 0
fi
"${{installer[@]}}" "$@"
[ -z "$requirements" ] || "${{installer[@]}}" -r "$requirements"
if [ -d "$env_prefix" ]; then echo "$wanted" >> "$installed_stamp" 2>/dev/null || true; fi
"""

PREPARE_TOOLS = {CHECK_PROJECT: _CHECK_PROJECT, INSTALL_ONCE: _INSTALL_ONCE}


def _shown(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)  # one line: JSON escapes line breaks
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notebook_header(
    notebook_path: str, kernel: str, output_notebook: str, parameters: Parameters, overridable: bool
) -> str:
    """The first lines of a notebook step's command, what a person reads in Airflow's Rendered Template:
    the notebook, where its executed copy goes, and the parameters (``parameters`` already redacted),
    before the few lines that hand the step to the guard. (Spec strings hold no template syntax, so none
    of this is Jinja.)"""
    at_run_time = "logical_date, run_id, output_prefix"  # the notebook gets those it declares
    if overridable:
        at_run_time += ", then a manual run's overrides"
    lines = [
        f"# dag-factory: notebook {notebook_path}, kernel {kernel}",
        f"# executed notebook: {output_notebook} (its .html and .log beside it)",
        f"# parameters, those the notebook declares (at run time also {at_run_time}):",
        *(f"#   {name}: {_shown(value)}" for name, value in parameters.items()),
    ]
    return "\n".join(lines) + "\n"


def notebook_command(
    layout: HostLayout,
    notebook_path: str,
    output_notebook: str,
    kernel: str,
    parameters: Parameters,
    runtime_json: str,
    overrides_json: str | None = None,
    always_pass: Sequence[str] = (),
) -> str:
    """Run one notebook with papermill; `output_notebook`, `runtime_json` and `overrides_json` (what a
    manual run overrides, applied last) may hold Jinja. The notebook gets the parameters its parameters
    cell declares and `always_pass` (the standard ones).

    The script runs under dag_factory.plan.guard, whose `run_notebook` runs papermill with the notebook's
    own error told apart by its exit status, keeps its log and HTML beside the executed notebook and says
    why a failed one failed (the same on every host: it is one of the guard's tools).
    """
    extra = [name for name in always_pass if name not in STANDARD_PARAMETERS]  # the launcher knows those
    words = [
        RUN_NOTEBOOK,
        shlex.quote(layout.project),
        shlex.quote(notebook_path),
        f"'{output_notebook}'",
        "-k",
        shlex.quote(kernel),
        "-b",
        encode_parameters(parameters),
        "-y",
        f"'{runtime_json}'",
        *(["-y", f"'{overrides_json}'"] if overrides_json else []),
        *([ALWAYS_PASS, shlex.quote(",".join(extra))] if always_pass else []),
    ]
    lines = [
        "set -euo pipefail",  # a missing notebook is told before the environment is activated
        shlex.join([ENTER_PROJECT, layout.project, notebook_path]),  # and cd into the project
        layout.activate,
        " ".join(words),
    ]
    return "\n".join(lines) + "\n"
