"""The guard every instance step runs under: bounded in time, killed with its task, failures told apart.

A step's shell script (dag_factory.plan.scripts: sync/install, or one notebook) runs as a child of the
guard, in its own session, with a marker variable ``DAG_FACTORY_STEP`` that every process it starts
inherits (papermill, the Jupyter kernel, anything the notebook spawns). The guard

- starts the group's clock with its first step (``<workdir>/.dag-factory/started``) and gives the step
  ``min(its own timeout, what is left of compute.timeout)``, enforced on the instance by ``timeout``;
- kills every process carrying the marker: leftovers of an earlier try of the same step before it starts
  (a worker that died, a connection that dropped), and the step's own tree when it ends, times out, is
  stopped (SIGTERM/SIGINT/SIGHUP: a BashOperator being killed) or loses its parent: the SSH session or
  the Airflow task process that started it (the task timed out, was marked failed, its worker was
  SIGKILLed): nobody on the worker is left to kill it, so the instance notices by itself;
- tells failures apart by exit status: ``EXIT_NOTEBOOK_ERROR`` (the notebook raised: papermill's
  PapermillExecutionError), ``EXIT_TIMED_OUT`` (the step's or the group's time is up),
  ``EXIT_MISSING_INPUT`` (the step's script found a notebook, requirements file or project missing from
  the deployed code); anything else is the infrastructure's (a sync, an install, a kernel that died, a
  write to S3 that failed).

The guard and the programs every step calls (papermill's launcher, `run_notebook` and `enter_project`,
the helpers after papermill, prepare's `check_project` and `install_once`) are `tools()`: the group's
prepare task installs them once on its host, in a folder named by their content (`install_tools`, run by
the prepare operator from the worker's package), and each step's command only calls them
(`under_installed_guard`), so no task of the DAG carries them. The same text
runs over SSH on a SageMaker instance and under bash on the local backend.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
from dataclasses import dataclass
from typing import Literal

from dag_factory.plan.notebook_failure import explain_program
from dag_factory.spec.job import STANDARD_PARAMETERS
from dag_factory.spec.text import TEMPLATE

MESSAGE_PREFIX = "dag-factory: "  # how the guard's and the launcher's own lines begin
EXIT_NOTEBOOK_ERROR = 85
EXIT_MISSING_INPUT = 86  # an input is not in the deployed project (enter_project, check_project)
EXIT_TIMED_OUT = 124  # as coreutils' timeout
EXIT_STOPPED = 143  # the guard was stopped, or the session that started it is gone
KILL_GRACE_S = 30  # SIGTERM first; SIGKILL this much later
STATE_DIR = ".dag-factory"

Fault = Literal["notebook", "timeout", "infrastructure", "input"]

# papermill's CLI, but the notebook's own error (a cell raised) exits EXIT_NOTEBOOK_ERROR instead of 1:
# that one is a bug in the notebook; papermill's other failures (no kernel, a dead kernel, an S3 write)
# are not. A notebook gets only the parameters its parameters cell declares (papermill reads the cell;
# where it cannot, e.g. no Python cell, every one), plus, given ALWAYS_PASS, the standard parameters and
# the names after it (the fan-out's), declared or not; papermill's "Passed unknown parameter" warning is
# not said about those.
# No single quotes: the code is single-quoted in the script.
ALWAYS_PASS = "--always-pass"
PAPERMILL_LAUNCHER = f"""import logging
import sys
from papermill import cli, inspect_notebook
from papermill.exceptions import PapermillExecutionError
args = sys.argv[1:]
always = set()
if "{ALWAYS_PASS}" in args:  # the standard parameters, and the names after it
    at = args.index("{ALWAYS_PASS}")
    always = set({json.dumps(sorted(STANDARD_PARAMETERS))}) | set(filter(None, args[at + 1].split(",")))
    del args[at : at + 2]
execute = cli.execute_notebook
def declared_only(input_path, output_path, parameters=None, **options):
    try:
        declared = set(inspect_notebook(input_path))
    except Exception:
        declared = set()
    if declared and parameters:
        parameters = {{k: v for k, v in parameters.items() if k in declared or k in always}}
    return execute(input_path, output_path, parameters=parameters, **options)
cli.execute_notebook = declared_only
unknown = {{f"Passed unknown parameter: {{name}}" for name in always}}
logging.getLogger("papermill").addFilter(lambda record: record.getMessage() not in unknown)
try:
    cli.papermill.main(args=args, prog_name="papermill", standalone_mode=False)
except PapermillExecutionError as error:
    print(f"dag-factory: the notebook raised {{error.ename}}: {{error.evalue}}", file=sys.stderr)
    sys.exit({EXIT_NOTEBOOK_ERROR})"""

RUN_PAPERMILL = "run_papermill"  # the shell function notebook steps call instead of `papermill`
LAUNCHER_FILE = "run_papermill.py"
GUARD_FILE = "guard.sh"
KEEP_FILE = "keep_log_and_html.py"  # after papermill: the log and the HTML beside the executed notebook
EXPLAIN_FILE = "explain_notebook_error.py"  # after a failed papermill: the located error
RUN_NOTEBOOK = "run_notebook"  # a notebook step's command: project, notebook, output, papermill's options
ENTER_PROJECT = "enter_project"  # a notebook step: cd into the project, which must have the notebook
CHECK_PROJECT = "check_project"  # prepare: project, where it was deployed from, requirements file
INSTALL_ONCE = "install_once"  # prepare: installer, requirements file, packages (dag_factory.plan.scripts)

# Finds a step's processes by the marker in their environment, and stops them: SIGTERM, then SIGKILL.
_KILL_FUNCTIONS = r"""step_pids() { grep -lz "$@" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }
kill_step() {  # grep arguments that select the processes
    local pids i
    pids=$(step_pids "$@")
    [ -n "$pids" ] || return 0
    kill -TERM $pids 2>/dev/null
    for i in $(seq 10); do sleep 0.5; pids=$(step_pids "$@"); [ -n "$pids" ] || return 0; done
    kill -KILL $pids 2>/dev/null
    return 0
}
"""

# The guard as a script of its own, installed once per work directory (see `guarded`): its arguments are
# the step's name, its own timeout and the group's budget (the state folder and the work directory are
# the folders above its own); the step's script comes on stdin. Steps `exec` it: it keeps their shell's
# process id and parent (the SSH session or the task process), which it watches.
_GUARD = rf"""set -uo pipefail
# dag-factory guard (dag_factory/plan/guard.py): this step is bounded and dies with its task
here=${{0%/*}}  # <workdir>/.dag-factory/tools-<digest>: the state folder and the work directory above it
state=${{here%/*}}
step="${{state%/*}}#$1"  # the step's marker (step_marker)
own=$2
budget=$3
tools=$(cd "$(dirname "$0")" && pwd)
body=$(cat)
mkdir -p "$state" || exit 1
[ -s "$state/started" ] || date +%s > "$state/started"  # the group's first step starts its clock
left=$(( $(cat "$state/started") + budget - $(date +%s) ))
if [ "$left" -le 0 ]; then
    echo "dag-factory: timed out: the group's compute.timeout (${{budget}}s) is used up" >&2
    exit {EXIT_TIMED_OUT}
fi
limit=$(( own < left ? own : left ))
mark="$step#$$"  # this try's processes; "$step#" matches every try's
{_KILL_FUNCTIONS}export DAG_FACTORY_TOOLS="$tools"
{RUN_PAPERMILL}() {{ python "$DAG_FACTORY_TOOLS/{LAUNCHER_FILE}" "$@"; }}
{RUN_NOTEBOOK}() {{ bash "$DAG_FACTORY_TOOLS/{RUN_NOTEBOOK}.sh" "$@"; }}
{ENTER_PROJECT}() {{  # project, notebook: a missing one is told before the environment is activated
    if [ ! -f "$1/$2" ]; then
        echo "{MESSAGE_PREFIX}missing input: the notebook $2 is not in the deployed project" >&2
        exit {EXIT_MISSING_INPUT}
    fi
    cd "$1"
}}
{CHECK_PROJECT}() {{ bash "$DAG_FACTORY_TOOLS/{CHECK_PROJECT}.sh" "$@"; }}
{INSTALL_ONCE}() {{ bash "$DAG_FACTORY_TOOLS/{INSTALL_ONCE}.sh" "$@"; }}
export -f {RUN_PAPERMILL} {RUN_NOTEBOOK} {ENTER_PROJECT} {CHECK_PROJECT} {INSTALL_ONCE}
kill_step -F "DAG_FACTORY_STEP=$step#"  # leftovers of an earlier try of this step
trap 'kill_step -xF "DAG_FACTORY_STEP=$mark"; exit {EXIT_STOPPED}' TERM INT HUP
parent=$PPID
started=$(date +%s)
DAG_FACTORY_STEP="$mark" setsid timeout --kill-after={KILL_GRACE_S} "$limit" bash -c "$body" &
child=$!
# a watcher, beside the step, stops it when the session or task that started the step is gone; the guard
# itself waits for the step, so it goes on the moment the step ends (it used to poll: up to 0.5 s late)
(
    while kill -0 "$child" 2>/dev/null; do
        read -r _ _ _ ppid _ < /proc/$$/stat  # builtins only: no process per poll ($$: the guard)
        [ "$ppid" = "$parent" ] || {{ kill_step -xF "DAG_FACTORY_STEP=$mark"; exit 0; }}
        sleep 0.5
    done
) &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
read -r _ _ _ ppid _ < /proc/$$/stat
if [ "$ppid" != "$parent" ]; then  # the watcher stopped the step: its starter is gone
    kill_step -xF "DAG_FACTORY_STEP=$mark"
    exit {EXIT_STOPPED}
fi
kill_step -xF "DAG_FACTORY_STEP=$mark"  # whatever the step left behind (a kernel's children)
ran=$(( $(date +%s) - started ))
if [ "$status" -eq {EXIT_TIMED_OUT} ] || {{ [ "$status" -eq 137 ] && [ "$ran" -ge "$limit" ]; }}; then
    if [ "$limit" -lt "$own" ]; then
        echo "dag-factory: timed out after ${{limit}}s: the group's compute.timeout (${{budget}}s) is up" >&2
    else
        echo "dag-factory: timed out after ${{limit}}s (the step's timeout)" >&2
    fi
    exit {EXIT_TIMED_OUT}
fi
exit "$status"
"""

# After papermill, one Python process (its start-up and imports cost about a second: one, not two, per
# notebook) keeps papermill's log (a local file the step wrote as the log streamed) beside the executed
# notebook and renders the executed notebook as HTML beside it, both through papermill's I/O, so the same
# code works for a local path and for s3:// (papermill's boto3 handler). Papermill writes the executed
# notebook also when a cell fails, so it is rendered then too. Each part is best effort and says so on
# stderr: neither hides the notebook's result. The log's message has no guard prefix (the step's verdict
# names the guard's last message: the notebook's, not this one's).
_KEEP_LOG_AND_HTML = """import sys
from papermill.iorw import papermill_io
papermill_log, log, executed, html = sys.argv[1:5]
try:
    text = open(papermill_log, encoding="utf-8", errors="replace").read()
    papermill_io.write(text, log, extensions=[".log"])
except Exception as exc:
    print(f"could not save the papermill log as {log}: {exc}", file=sys.stderr)
try:
    import nbformat
    from nbconvert import HTMLExporter
    notebook = nbformat.reads(papermill_io.read(executed), as_version=4)
    papermill_io.write(HTMLExporter().from_notebook_node(notebook)[0], html, extensions=[".html"])
except Exception as exc:
    print(f"dag-factory: could not render the executed notebook as HTML: {exc}", file=sys.stderr)
"""

# One notebook (the step found it in the project), run from the project folder with the notebook's
# environment active: papermill (through `run_papermill`), its log kept beside the executed notebook and
# the executed notebook rendered as HTML beside it (both best effort), then, if papermill failed, the
# located error on stderr. papermill's log (its stderr) streams to the task log and, through tee, into a
# file in the work directory: the worker keeps only a tail of it. fd 3 carries papermill's stdout past
# the pipe; pipefail keeps papermill's status, not tee's, and the step's exit status stays papermill's.
_RUN_NOTEBOOK = rf"""set -euo pipefail
# dag-factory: one notebook with papermill (dag_factory/plan/guard.py)
project=$1 notebook=$2 output=$3  # then papermill's options: kernel, parameters
shift 3
case $output in *://*) ;; *) mkdir -p "$(dirname "$output")" ;; esac  # S3 has no folders
status=0
papermill_log=$(mktemp "$(dirname "$project")/papermill-XXXXXX")
{{ {RUN_PAPERMILL} "$project/$notebook" "$output" --cwd "$project" "$@" --log-output --no-progress-bar \
    2>&1 >&3 3>&- | tee "$papermill_log" >&2 3>&-; }} 3>&1 || status=$?
stem=${{output%.ipynb}}
python "$DAG_FACTORY_TOOLS/{KEEP_FILE}" "$papermill_log" "$stem.log" "$output" "$stem.html" \
    || echo "{MESSAGE_PREFIX}could not keep the log and HTML of the executed notebook" >&2
rm -f "$papermill_log"
if [ "$status" -ne 0 ]; then  # the located error goes to stderr: the operator's verdict names it
    python "$DAG_FACTORY_TOOLS/{EXPLAIN_FILE}" "$output" "$notebook" >&2 || true
    exit "$status"
fi
echo {MESSAGE_PREFIX}step done
"""
_TOOL_END = "DAG_FACTORY_TOOL"
_STEP_END = "DAG_FACTORY_STEP_BODY"


@functools.cache
def tools() -> dict[str, str]:
    """The programs every step of a group calls on its host, by file name: the guard, papermill's
    launcher and the helpers after papermill. They travel once, in the group's prepare step (see
    `guarded`), not in every task's command."""
    from dag_factory.plan.scripts import PREPARE_TOOLS  # prepare's own (scripts imports this module)

    files = {
        GUARD_FILE: _GUARD,
        LAUNCHER_FILE: PAPERMILL_LAUNCHER + "\n",
        KEEP_FILE: _KEEP_LOG_AND_HTML,
        EXPLAIN_FILE: explain_program(),
        f"{RUN_NOTEBOOK}.sh": _RUN_NOTEBOOK,
        **{f"{name}.sh": text for name, text in PREPARE_TOOLS.items()},
    }
    for name, text in files.items():  # each is a quoted heredoc inside a command that Airflow renders
        assert f"\n{_TOOL_END}\n" not in f"\n{text}", name
        assert not TEMPLATE.search(text), f"{name} holds Jinja syntax"
    return files


@functools.cache
def tools_dir(workdir: str) -> str:
    """Where a work directory's tools are: named by their content, so a step always calls the version it
    was built with, and a new version never changes a file that a running step reads."""
    digest = hashlib.sha256(json.dumps(tools(), sort_keys=True).encode()).hexdigest()[:12]
    return f"{workdir}/{STATE_DIR}/tools-{digest}"


def install_tools(workdir: str) -> str:
    """Shell lines that install the tools into the work directory unless they are there: staged in a
    folder of their own, then renamed into place at once (a step that runs beside never sees half)."""
    target = shlex.quote(tools_dir(workdir))
    lines = [
        f"tools={target}",
        'if [ ! -d "$tools" ]; then',
        '    mkdir -p "$(dirname "$tools")" && staged=$(mktemp -d "$tools.XXXXXX") || exit 1',
    ]
    for name, text in tools().items():
        lines += [f"    cat > \"$staged/{name}\" <<'{_TOOL_END}'", text.rstrip("\n"), _TOOL_END]
    lines.append('    mv -T "$staged" "$tools" 2>/dev/null || rm -rf "$staged"  # installed beside us first')
    lines.append("fi")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class StepBounds:
    """How long one step may run, and where its group keeps the clock."""

    workdir: str  # the group's work directory on the host (the state folder lives under it)
    step: str  # unique per group and task: the marker its processes carry
    timeout_s: int  # the step's own timeout
    group_budget_s: int  # compute.timeout: the bound for all steps of the group together


def under_installed_guard(body: str, bounds: StepBounds) -> str:
    """``body`` (a step script; may hold Airflow Jinja) run under the guard that the group's prepare
    installed: a few lines. Without the tools on the host (prepare never ran there) the step stops as a
    missing input: clearing the value's prepare task with its downstream runs it again."""
    if f"\n{_STEP_END}\n" in f"\n{body}\n":
        raise ValueError("a step script must not contain the guard's heredoc delimiter")
    missing = (
        f"{MESSAGE_PREFIX}missing input: the tools of dag-factory are not in $tools: the group's "
        "prepare step installs them (clear it and its downstream tasks)"
    )
    # the guard finds the state folder and the work directory (the step's marker) from its own path
    lines = [
        f"tools={shlex.quote(tools_dir(bounds.workdir))}",
        f'[ -f "$tools/{GUARD_FILE}" ] || {{ echo "{missing}" >&2; exit {EXIT_MISSING_INPUT}; }}',
        f'exec bash "$tools/{GUARD_FILE}" {shlex.quote(bounds.step)} {int(bounds.timeout_s)} '
        f"{int(bounds.group_budget_s)} <<'{_STEP_END}'",
        body.rstrip("\n"),
        _STEP_END,
    ]
    return "\n".join(lines) + "\n"


def guarded(body: str, bounds: StepBounds) -> str:
    """``body`` run under the guard as one self-contained script, the tools installed first: what a
    prepare task does in two commands (its operator installs them, its command calls them), for a
    script run by hand on a host."""
    return install_tools(bounds.workdir) + under_installed_guard(body, bounds)


def step_marker(bounds: StepBounds) -> str:
    """What every process of the step carries (with the try's own suffix): its work directory and task."""
    return f"{bounds.workdir}#{bounds.step}"


def stop_earlier_tries(marker: str) -> str:
    """A script that stops whatever earlier tries of the step (its `step_marker`) left running on the
    host (the guard's first act too). A retry runs it before it sets aside what those tries wrote: a
    process still alive could write again after that (a notebook's `finally`, a flush on SIGTERM)."""
    return f'{_KILL_FUNCTIONS}kill_step -F "DAG_FACTORY_STEP="{shlex.quote(marker)}"#"\n'


def classify_exit(status: int) -> Fault:
    """Whose fault a step's non-zero exit status is (-1: the SSH session ended without one)."""
    if status == EXIT_NOTEBOOK_ERROR:
        return "notebook"
    if status == EXIT_TIMED_OUT:
        return "timeout"
    if status == EXIT_MISSING_INPUT:
        return "input"
    return "infrastructure"


def is_own_message(line: str) -> bool:
    """Whether an output line is one of the guard's or the launcher's own ("dag-factory: ...")."""
    return line.strip().startswith(MESSAGE_PREFIX)


def guard_messages(stderr: str) -> list[str]:
    """The guard's and the launcher's own lines in a step's stderr, without the prefix."""
    return [line.strip()[len(MESSAGE_PREFIX) :] for line in stderr.splitlines() if is_own_message(line)]


def retry_verdict(
    fault: Fault, try_number: int, infra_retries: int, notebook_retries: int
) -> tuple[bool, str]:
    """Whether try ``try_number`` (1-based) of a step that failed this way is retried, and why.

    A notebook's own error or timeout is a bug or a budget in the notebook: re-running it repeats hours
    of work on a billed instance and fails the same way, so it is retried only as often as the spec's
    ``notebooks[].retries`` asks (default 0). Everything else (a dropped SSH session, a failed sync or
    install, a dead kernel) is the infrastructure's and gets the spec's ``retries``. A missing input fails
    the same way on every try, whatever the budgets: never retried.
    """
    if fault == "input":
        return False, "a missing input: not retried (deploy the project with it, then clear the task)"
    if fault == "infrastructure":
        budget, what = infra_retries, "an infrastructure fault"
        knob = "retries"
    else:
        budget = notebook_retries
        what = "the notebook's own error" if fault == "notebook" else "the notebook ran out of time"
        knob = "notebooks[].retries"
    if try_number <= budget:
        return True, f"{what}: retried (try {try_number} of {budget + 1}, {knob}: {budget})"
    if budget == 0:
        reason = (
            "not retried (set notebooks[].retries to retry it)"
            if fault != "infrastructure"
            else "not retried (retries: 0)"
        )
    else:
        reason = f"not retried again ({knob}: {budget} used up)"
    return False, f"{what}: {reason}"
