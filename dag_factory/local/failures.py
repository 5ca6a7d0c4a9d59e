"""Why a task failed, said so that the data scientist knows what to fix: never just "failed".

The reason comes from the task's own log (the last attempt's) and, for a notebook, the executed
notebook. The kinds, first match wins:
- missing input: the step's script found the notebook, the requirements file or the whole project
  missing from the deployed code (the guard's `enter_project`, prepare's `check_project`): what to deploy;
- timed out: Airflow's execution timeout, or the SSH command's idle timeout; with the cell that ran;
- notebook error: the line the helper run after papermill printed (`plan/notebook_failure.py`, the
  same on both backends), else the executed notebook read here: cell, line, exception, message;
- kernel died: the kernel process ended in the middle of a cell (a crash, or out of memory);
- install failure: pip's or uv's own error lines from the prepare step;
- infrastructure error: anything else that raised (SSH, SageMaker, the work directory), its
  exception and message; a shell step that failed without one shows its last output line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dag_factory.local.run_records import TaskInstanceResult, log_events
from dag_factory.plan.guard import guard_messages
from dag_factory.plan.model import GroupPlan, NotebookArgs, TaskPlan
from dag_factory.plan.notebook_failure import MARKER, explain_notebook_error, source_cell_number

_EXECUTING = re.compile(r"^Executing Cell (\d+)-")
_GUARD_TIMED_OUT = re.compile(r"^timed out(?: after (?P<after>\d+)s)?(?P<why>.*)$")
_INSTALL_ERROR = re.compile(r"^(?:ERROR|error):\s*(.+)$")
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?P<name>[A-Za-z_]\w*(?:Error|Exception|Exit)): ?(?P<message>.*)$"
)
_LIMIT = 400
_MISSING_INPUT = "missing input: "


@dataclass(frozen=True)
class Failure:
    kind: str  # missing input, timed out, notebook error, kernel died, install failure, infrastructure
    # error; or a task state
    detail: str = ""

    def text(self, task_id: str) -> str:
        """`nb_train: notebook error in notebooks/train.ipynb cell 4, ...`, `prepare: install failure: ...`"""
        if not self.detail:
            return f"{task_id}: {self.kind}"
        joined = " " if self.detail.startswith(("in ", "after ", "(")) else ": "
        return f"{task_id}: {self.kind}{joined}{self.detail}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LIMIT else text[: _LIMIT - 3] + "..."


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _read_notebook(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _running_cell(lines: list[str], notebook: dict[str, Any] | None, before: int | None = None) -> str:
    """' in cell N `first line`': the cell papermill last started (before line `before`), as numbered in
    the source notebook; '' when unknown."""
    started = [m for line in lines[:before] if (m := _EXECUTING.match(line))]
    if not started or notebook is None:
        return ""
    index = int(started[-1].group(1)) - 1  # papermill counts the executed notebook's cells from 1
    cells = notebook.get("cells", [])
    if not 0 <= index < len(cells):
        return ""
    source = cells[index].get("source", "")
    text = "".join(source) if isinstance(source, list) else str(source)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f" in cell {source_cell_number(notebook, index)}" + (f" `{first}`" if first else "")


def _exception(events: list[dict[str, Any]]) -> tuple[str, str]:
    """(type, message) of the last exception the task logged."""
    for event in reversed(events):
        details = event.get("error_detail") or []
        if event.get("level") == "error" and details and isinstance(details[-1], dict):
            return str(details[-1].get("exc_type", "Error")), str(details[-1].get("exc_value", ""))
    return "", ""


def _install_error(lines: list[str]) -> str:
    for i, line in enumerate(lines):
        match = _INSTALL_ERROR.match(line)
        if match:
            cause = lines[i + 1].removeprefix("cause:").strip() if i + 1 < len(lines) else ""
            cause = cause if cause and not _INSTALL_ERROR.match(lines[i + 1]) else ""
            return _short(match.group(1) + (f" ({cause})" if cause else ""))
    return ""


def _last_exception_line(lines: list[str]) -> str:
    """The `Type: message` line a Python traceback in the output ends with."""
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return _short(line)
    return ""


@dataclass(frozen=True)
class _Evidence:
    """What a failed attempt left: its log lines, its last exception, the executed notebook if local."""

    task: TaskPlan
    lines: list[str]
    exc_type: str
    exc_value: str
    notebook: dict[str, Any] | None


def _missing_input(seen: _Evidence) -> Failure | None:
    said = [m.removeprefix(_MISSING_INPUT) for m in guard_messages("\n".join(seen.lines))
            if m.startswith(_MISSING_INPUT)]  # fmt: skip
    return Failure("missing input", said[-1]) if said else None


def _timed_out(seen: _Evidence) -> Failure | None:
    cell = _running_cell(seen.lines, seen.notebook)
    # the guard bounds every step on its host and says which limit ended it (plan/guard.py)
    said = [m for line in guard_messages("\n".join(seen.lines)) if (m := _GUARD_TIMED_OUT.match(line))]
    if said:
        after = f"after {_duration(int(said[0]['after']))}" if said[0]["after"] else ""
        why = "" if said[0]["why"] == " (the step's timeout)" else said[0]["why"]
        # the group's budget used up before the step began has no "after" and no cell
        return Failure("timed out", f"{after}{cell}{why}".strip().removeprefix(": "))
    if seen.exc_type != "AirflowTaskTimeout" and "SSH command timed out" not in seen.exc_value:
        return None
    after = f"after {_duration(seen.task.args.timeout_s)}"
    return Failure("timed out", f"{after}{cell}".strip())


def _notebook_error(seen: _Evidence) -> Failure | None:
    printed = [line.removeprefix(MARKER).strip() for line in seen.lines if line.startswith(MARKER)]
    explained = printed[0] if printed else ""
    if not explained and seen.notebook is not None:
        cell = explain_notebook_error(seen.notebook)
        args = seen.task.args
        notebook = args.notebook if isinstance(args, NotebookArgs) else "the notebook"
        explained = f"in {notebook} {cell}" if cell else ""
    return Failure("notebook error", explained) if explained else None


def _kernel_died(seen: _Evidence) -> Failure | None:
    lines = seen.lines
    died = next((i for i, line in enumerate(lines) if "Kernel died" in line or "DeadKernelError" in line), -1)
    if died < 0:
        return None
    where = _running_cell(lines, seen.notebook, died).strip()
    return Failure("kernel died", f"{where} (a crash, or out of memory)".strip())


def _install_failed(seen: _Evidence) -> Failure | None:
    install = _install_error(seen.lines) if seen.task.kind == "prepare" else ""
    return Failure("install failure", install) if install else None


def _infrastructure(seen: _Evidence) -> Failure:
    # a shell step that exited non-zero with a Python traceback in its output (papermill's NoSuchKernel):
    # that last line says more than the exit code
    exited = "non-zero exit code" in seen.exc_value or "exit status" in seen.exc_value
    output_error = _last_exception_line(seen.lines) if exited else ""
    exception = f"{seen.exc_type}: {seen.exc_value}" if seen.exc_value else seen.exc_type
    return Failure("infrastructure error", output_error or _short(exception) or "no reason in the task log")


def explain_failure(task: TaskPlan, ti: TaskInstanceResult | None, executed: Path | None = None) -> Failure:
    """Why `task` failed; `executed` is the executed notebook of a notebook task, when it is local."""
    if ti is None or ti.state != "failed":
        return Failure((ti.state if ti else None) or "not run")
    events = log_events(ti.log_path) if ti.log_path else []
    exc_type, exc_value = _exception(events)
    notebook = _read_notebook(executed) if task.kind == "notebook" else None
    seen = _Evidence(task, [str(e.get("event", "")).strip() for e in events], exc_type, exc_value, notebook)
    for kind in (_missing_input, _timed_out, _notebook_error, _kernel_died, _install_failed):
        failure = kind(seen)
        if failure is not None:
            return failure
    return _infrastructure(seen)


def group_failure(group: GroupPlan, tis: list[TaskInstanceResult], run_id: str) -> str:
    """`task: kind: reason` for the group's first failed task in the order the tasks run (a failed
    notebook, not the teardown after it); a task that never ran when none failed."""
    by_step = {ti.task_id.split(".", 1)[-1]: ti for ti in tis}
    failed = [t for t in group.tasks if t.task_id in by_step and by_step[t.task_id].state == "failed"]
    if not failed:
        states = {step: ti.state for step, ti in by_step.items()}
        waiting = next(t for t in group.tasks if states.get(t.task_id) != "success")
        return Failure(states.get(waiting.task_id) or "not run").text(waiting.task_id)
    task = failed[0]
    executed = None
    output = task.args.output_notebook if isinstance(task.args, NotebookArgs) else ""
    if output and "://" not in output:
        executed = Path(output.replace("{{ run_id }}", run_id))
    return explain_failure(task, by_step[task.task_id], executed).text(task.task_id)
