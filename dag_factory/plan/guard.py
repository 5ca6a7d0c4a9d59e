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

The same text runs over SSH on a SageMaker instance and under bash on the local backend.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

EXIT_NOTEBOOK_ERROR = 85
EXIT_MISSING_INPUT = 86  # a step's script: an input is not in the deployed project (scripts.require_input)
EXIT_TIMED_OUT = 124  # as coreutils' timeout
EXIT_STOPPED = 143  # the guard was stopped, or the session that started it is gone
KILL_GRACE_S = 30  # SIGTERM first; SIGKILL this much later
STATE_DIR = ".dag-factory"

Fault = Literal["notebook", "timeout", "infrastructure", "input"]

# papermill's CLI, but the notebook's own error (a cell raised) exits EXIT_NOTEBOOK_ERROR instead of 1:
# that one is a bug in the notebook; papermill's other failures (no kernel, a dead kernel, an S3 write)
# are not. No single quotes: the code is single-quoted in the script.
PAPERMILL_LAUNCHER = f"""import sys
from papermill.cli import papermill
from papermill.exceptions import PapermillExecutionError
try:
    papermill.main(args=sys.argv[1:], prog_name="papermill", standalone_mode=False)
except PapermillExecutionError as error:
    print(f"dag-factory: the notebook raised {{error.ename}}: {{error.evalue}}", file=sys.stderr)
    sys.exit({EXIT_NOTEBOOK_ERROR})"""

RUN_PAPERMILL = "run_papermill"  # the shell function notebook steps call instead of `papermill`

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

_GUARD = r"""set -uo pipefail
# dag-factory guard (dag_factory/plan/guard.py): this step is bounded and dies with its task
step={step}
state={state}
own={own}
budget={budget}
mkdir -p "$state" || exit 1
[ -s "$state/started" ] || date +%s > "$state/started"  # the group's first step starts its clock
left=$(( $(cat "$state/started") + budget - $(date +%s) ))
if [ "$left" -le 0 ]; then
    echo "dag-factory: timed out: the group's compute.timeout (${{budget}}s) is used up" >&2
    exit {timed_out}
fi
limit=$(( own < left ? own : left ))
mark="$step#$$"  # this try's processes; "$step#" matches every try's
{kill_functions}{run_papermill}() {{ python -c '{launcher}' "$@"; }}
export -f {run_papermill}
kill_step -F "DAG_FACTORY_STEP=$step#"  # leftovers of an earlier try of this step
trap 'kill_step -xF "DAG_FACTORY_STEP=$mark"; exit {stopped}' TERM INT HUP
body=$(cat <<'DAG_FACTORY_STEP_BODY'
{body}
DAG_FACTORY_STEP_BODY
)
parent=$PPID
started=$(date +%s)
DAG_FACTORY_STEP="$mark" setsid timeout --kill-after={grace} "$limit" bash -c "$body" &
child=$!
polls=0
while kill -0 "$child" 2>/dev/null; do
    read -r _ _ _ ppid _ < /proc/$$/stat  # builtins only: no process per poll
    if [ "$ppid" != "$parent" ]; then  # the session or task that started the step is gone
        kill_step -xF "DAG_FACTORY_STEP=$mark"
        exit {stopped}
    fi
    case $polls in 0) sleep 0.02 ;; 1) sleep 0.05 ;; 2) sleep 0.1 ;; 3) sleep 0.2 ;; *) sleep 0.5 ;; esac
    polls=$((polls + 1))
done
wait "$child"
status=$?
kill_step -xF "DAG_FACTORY_STEP=$mark"  # whatever the step left behind (a kernel's children)
ran=$(( $(date +%s) - started ))
if [ "$status" -eq {timed_out} ] || {{ [ "$status" -eq 137 ] && [ "$ran" -ge "$limit" ]; }}; then
    if [ "$limit" -lt "$own" ]; then
        echo "dag-factory: timed out after ${{limit}}s: the group's compute.timeout (${{budget}}s) is up" >&2
    else
        echo "dag-factory: timed out after ${{limit}}s (the step's timeout)" >&2
    fi
    exit {timed_out}
fi
exit "$status"
"""


@dataclass(frozen=True)
class StepBounds:
    """How long one step may run, and where its group keeps the clock."""

    workdir: str  # the group's work directory on the host (the state folder lives under it)
    step: str  # unique per group and task: the marker its processes carry
    timeout_s: int  # the step's own timeout
    group_budget_s: int  # compute.timeout: the bound for all steps of the group together


def guarded(body: str, bounds: StepBounds) -> str:
    """``body`` (a step script; may hold Airflow Jinja) run under the guard."""
    if "\nDAG_FACTORY_STEP_BODY\n" in f"\n{body}\n":
        raise ValueError("a step script must not contain the guard's heredoc delimiter")
    return _GUARD.format(
        step=shlex.quote(f"{bounds.workdir}#{bounds.step}"),
        state=shlex.quote(f"{bounds.workdir}/{STATE_DIR}"),
        own=int(bounds.timeout_s),
        budget=int(bounds.group_budget_s),
        timed_out=EXIT_TIMED_OUT,
        stopped=EXIT_STOPPED,
        grace=KILL_GRACE_S,
        run_papermill=RUN_PAPERMILL,
        launcher=PAPERMILL_LAUNCHER,
        kill_functions=_KILL_FUNCTIONS,
        body=body,
    )


def stop_earlier_tries(bounds: StepBounds) -> str:
    """A script that stops whatever earlier tries of the step left running on the host (the guard's
    first act too). A retry runs it before it sets aside what those tries wrote: a process still alive
    could write again after that (a notebook's `finally`, a flush on SIGTERM)."""
    step = shlex.quote(f"{bounds.workdir}#{bounds.step}")
    return f'{_KILL_FUNCTIONS}kill_step -F "DAG_FACTORY_STEP="{step}"#"\n'


def classify_exit(status: int) -> Fault:
    """Whose fault a step's non-zero exit status is (-1: the SSH session ended without one)."""
    if status == EXIT_NOTEBOOK_ERROR:
        return "notebook"
    if status == EXIT_TIMED_OUT:
        return "timeout"
    if status == EXIT_MISSING_INPUT:
        return "input"
    return "infrastructure"


MESSAGE_PREFIX = "dag-factory: "  # how the guard's and the launcher's own lines begin


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
