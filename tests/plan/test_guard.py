"""The guard every instance step runs under (dag_factory.plan.guard), run for real under bash."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

from dag_factory.plan.guard import (
    ALWAYS_PASS,
    EXIT_MISSING_INPUT,
    EXIT_NOTEBOOK_ERROR,
    EXIT_STOPPED,
    EXIT_TIMED_OUT,
    RUN_PAPERMILL,
    StepBounds,
    classify_exit,
    guard_messages,
    guarded,
    retry_verdict,
    tools,
    tools_dir,
    under_installed_guard,
)
from tests.notebooks import write_notebook

VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")


def step_processes(workdir: Path) -> list[int]:
    """PIDs of every process carrying a step marker of ``workdir`` (what the guard kills)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            text = environ.read_bytes()
        except OSError:
            continue
        if f"DAG_FACTORY_STEP={workdir}#".encode() in text:
            found.append(int(environ.parent.name))
    return found


def wait_for(what: str, check: Callable[[], T], timeout: float = 30) -> T:
    """Poll ``check`` until it returns something true (returned); past ``timeout`` s, fail saying what
    did not happen."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)
    return found


def _describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(bytes(1))
        except OSError:
            argv = [b"(gone)"]
        lines.append(f"{pid}: {b' '.join(argv).decode(errors='replace').strip()}")
    return "; ".join(lines)


def wait_until_gone(workdir: Path, timeout: float = 15) -> list[int]:
    """Wait until no process carries ``workdir``'s step marker; fail naming those left (returns [])."""
    left: list[int] = []

    def gone() -> bool:
        nonlocal left
        left = step_processes(workdir)
        return not left

    try:
        wait_for("the step's processes gone", gone, timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}; still running: {_describe(left)}") from None
    return left


def run(
    script: str, timeout: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout, env=env)


class Clock:
    """The clock the guard reads (``date +%s``), set by the test: a ``date`` ahead of the real one on
    PATH answers ``+%s`` with the number last set and hands anything else to the real ``date``."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "now"
        bin_dir = folder / "bin"
        bin_dir.mkdir(parents=True)
        real = shutil.which("date")
        (bin_dir / "date").write_text(
            f'#!/bin/bash\nif [ "$*" = "+%s" ]; then cat {self.file}; else exec {real} "$@"; fi\n'
        )
        (bin_dir / "date").chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def set(self, epoch_seconds: int) -> None:
        self.file.write_text(f"{epoch_seconds}\n")


def test_exit_status_and_output_pass_through(tmp_path: Path) -> None:
    done = run(guarded("echo out; echo err >&2; exit 7", StepBounds(str(tmp_path), "s", 60, 600)))
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    assert run(guarded("true", StepBounds(str(tmp_path), "s", 60, 600))).returncode == 0


def test_a_step_is_bounded_by_its_timeout_even_when_it_keeps_printing(tmp_path: Path) -> None:
    body = "while true; do echo still going; sleep 0.1; done"
    done = run(guarded(body, StepBounds(str(tmp_path), "chatty", 2, 600)))
    assert done.returncode == EXIT_TIMED_OUT
    assert guard_messages(done.stderr) == ["timed out after 2s (the step's timeout)"]
    assert wait_until_gone(tmp_path) == []


def test_the_group_budget_bounds_all_steps_together(tmp_path: Path) -> None:
    """The group's clock is the guard's ``date +%s``, moved by the test between steps: how much of the
    budget is gone is exact, however loaded the machine; the second step is still killed for real."""
    workdir, clock = tmp_path / "group", Clock(tmp_path / "clock")
    clock.set(1_000_000)
    first = run(guarded("true", StepBounds(str(workdir), "a", 60, 3)), env=clock.env)
    assert first.returncode == 0, first.stderr
    assert (workdir / ".dag-factory" / "started").read_text() == "1000000\n"  # it started the clock
    clock.set(1_000_001)  # 1 s of the group's 3 gone: the step gets the 2 s left, not its own 60
    second = run(guarded("sleep 30", StepBounds(str(workdir), "b", 60, 3)), env=clock.env)
    assert second.returncode == EXIT_TIMED_OUT, second.stderr
    assert guard_messages(second.stderr) == ["timed out after 2s: the group's compute.timeout (3s) is up"]
    clock.set(1_000_003)  # all of it gone
    third = run(guarded("true", StepBounds(str(workdir), "c", 60, 3)), env=clock.env)
    assert third.returncode == EXIT_TIMED_OUT
    assert guard_messages(third.stderr) == ["timed out: the group's compute.timeout (3s) is used up"]


def test_the_step_tree_dies_when_the_process_that_started_it_dies(tmp_path: Path) -> None:
    """A worker SIGKILLed, an SSH session dropped: nobody is left to kill the step, the guard notices."""
    script = guarded("sleep 300 & sleep 301; wait", StepBounds(str(tmp_path), "orphaned", 600, 3600))
    starter = "import subprocess, sys; subprocess.run(['bash', '-c', sys.argv[1]])"  # a worker
    parent = subprocess.Popen([sys.executable, "-c", starter, script])
    # timeout, bash, two sleeps
    wait_for("the step's tree running", lambda: len(step_processes(tmp_path)) >= 3)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_until_gone(tmp_path) == []


def test_a_stopped_guard_kills_its_step(tmp_path: Path) -> None:
    """A BashOperator being killed sends SIGTERM to the guard's process group; the step has its own."""
    script = guarded("sleep 300", StepBounds(str(tmp_path), "stopped", 600, 3600))
    guard = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    wait_for("the step running", lambda: step_processes(tmp_path))
    os.killpg(guard.pid, signal.SIGTERM)
    assert guard.wait(timeout=30) == EXIT_STOPPED
    assert wait_until_gone(tmp_path) == []


def test_leftovers_of_an_earlier_try_are_killed_first(tmp_path: Path) -> None:
    leftover = subprocess.Popen(
        ["sleep", "300"],
        env={**os.environ, "DAG_FACTORY_STEP": f"{tmp_path}#nb_x#4242"},
        start_new_session=True,
    )
    other_step = subprocess.Popen(
        ["sleep", "300"],
        env={**os.environ, "DAG_FACTORY_STEP": f"{tmp_path}#nb_y#4242"},
        start_new_session=True,
    )
    try:
        assert run(guarded("echo second try", StepBounds(str(tmp_path), "nb_x", 60, 600))).returncode == 0
        assert leftover.wait(timeout=10) == -signal.SIGTERM
        assert other_step.poll() is None  # another step's processes are not touched
    finally:
        other_step.kill()


@pytest.mark.parametrize(
    ("source", "status", "message"),
    [
        ("raise ValueError('bad input')", EXIT_NOTEBOOK_ERROR, "the notebook raised ValueError: bad input"),
        ("import os\nos._exit(3)", 138, None),  # the kernel died: papermill's own exit status
        ("print('fine')", 0, None),
    ],
)
@pytest.mark.integration
def test_run_papermill_tells_a_notebook_error_apart(
    tmp_path: Path, source: str, status: int, message: str | None
) -> None:
    write_notebook(tmp_path / "n.ipynb", source)
    run_it = f"{RUN_PAPERMILL} {tmp_path}/n.ipynb {tmp_path}/out.ipynb --no-progress-bar"
    body = f"export PATH={VENV_BIN}:$PATH\n{run_it}"
    done = run(guarded(body, StepBounds(str(tmp_path), "nb", 300, 600)), timeout=300)
    assert done.returncode == status, done.stderr[-2000:]
    if message:
        assert guard_messages(done.stderr) == [message]
    assert wait_until_gone(tmp_path) == []  # the kernel went with papermill


def test_exit_statuses_say_whose_fault_a_failure_is() -> None:
    assert classify_exit(EXIT_NOTEBOOK_ERROR) == "notebook"
    assert classify_exit(EXIT_TIMED_OUT) == "timeout"
    for status in (1, 2, 127, 138, EXIT_STOPPED, -1):
        assert classify_exit(status) == "infrastructure"


@pytest.mark.parametrize(
    ("fault", "try_number", "infra", "notebook", "retried", "text"),
    [
        (
            "notebook",
            1,
            2,
            0,
            False,
            "the notebook's own error: not retried (set notebooks[].retries to retry it)",
        ),
        (
            "timeout",
            1,
            2,
            0,
            False,
            "the notebook ran out of time: not retried (set notebooks[].retries to retry it)",
        ),
        ("notebook", 1, 0, 1, True, "the notebook's own error: retried (try 1 of 2, notebooks[].retries: 1)"),
        (
            "notebook",
            2,
            3,
            1,
            False,
            "the notebook's own error: not retried again (notebooks[].retries: 1 used up)",
        ),
        ("infrastructure", 1, 1, 0, True, "an infrastructure fault: retried (try 1 of 2, retries: 1)"),
        ("infrastructure", 2, 1, 3, False, "an infrastructure fault: not retried again (retries: 1 used up)"),
        ("infrastructure", 1, 0, 0, False, "an infrastructure fault: not retried (retries: 0)"),
    ],
)
def test_retry_verdict(
    fault: str, try_number: int, infra: int, notebook: int, retried: bool, text: str
) -> None:
    assert retry_verdict(fault, try_number, infra, notebook) == (retried, text)  # type: ignore[arg-type]


def test_the_body_cannot_end_the_heredoc_early(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="heredoc delimiter"):
        guarded("echo\nDAG_FACTORY_STEP_BODY\nrm -rf /", StepBounds(str(tmp_path), "s", 1, 1))


def test_the_tools_are_installed_once_per_work_directory_named_by_their_content(tmp_path: Path) -> None:
    """The group's prepare installs the guard and its tools; two installing at once leave one folder,
    nothing half-written beside it, and every later step only calls them."""
    racing = [
        subprocess.Popen(["bash", "-c", guarded("true", StepBounds(str(tmp_path), f"s{i}", 60, 600))])
        for i in range(4)
    ]
    assert [p.wait(timeout=60) for p in racing] == [0, 0, 0, 0]
    installed = Path(tools_dir(str(tmp_path)))
    assert sorted(p.name for p in installed.parent.iterdir()) == ["started", installed.name]
    assert {p.name: p.read_text() for p in installed.iterdir()} == tools()

    step = under_installed_guard("echo from the step; exit 3", StepBounds(str(tmp_path), "nb", 60, 600))
    assert "# dag-factory guard" not in step, step
    assert len(step.replace(str(tmp_path), "")) < 500, step  # a few lines but the work directory
    done = run(step)
    assert (done.returncode, done.stdout) == (3, "from the step\n"), done.stderr


def test_a_step_on_a_host_without_the_tools_stops_as_a_missing_input(tmp_path: Path) -> None:
    """Its prepare never ran on this host (an instance replaced under a cleared notebook task): not
    retried, and the message says which task to clear."""
    done = run(under_installed_guard("echo never", StepBounds(str(tmp_path), "nb", 60, 600)))
    assert (done.returncode, done.stdout) == (EXIT_MISSING_INPUT, "")
    assert classify_exit(done.returncode) == "input"
    assert guard_messages(done.stderr) == [
        f"missing input: the tools of dag-factory are not in {tools_dir(str(tmp_path))}: the group's "
        "prepare step installs them (clear it and its downstream tasks)"
    ]


@pytest.mark.integration
@pytest.mark.parametrize("declares", [True, False], ids=["parameters cell", "no parameters cell"])
def test_a_notebook_gets_the_parameters_it_declares_and_the_standard_ones(
    tmp_path: Path, declares: bool
) -> None:
    """No "Passed unknown parameter" noise: papermill injects what the parameters cell declares and the
    names after ALWAYS_PASS; a notebook without a readable parameters cell gets every parameter."""
    if declares:
        write_notebook(tmp_path / "n.ipynb", parameters="a = 1")
    else:
        write_notebook(tmp_path / "n.ipynb", "a = 1")
    run_it = (
        f"{RUN_PAPERMILL} {tmp_path}/n.ipynb {tmp_path}/out.ipynb --no-progress-bar --log-output "
        f"-p a 2 -p b 3 -p env dev {ALWAYS_PASS} env,run_id"
    )
    done = run(guarded(f"export PATH={VENV_BIN}:$PATH\n{run_it}", StepBounds(str(tmp_path), "nb", 300, 600)))
    assert done.returncode == 0, done.stderr[-2000:]
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    tagged = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    [injected] = ["".join(c["source"]) for c in tagged]
    given = [line.split(" = ")[0] for line in injected.splitlines() if " = " in line]
    assert given == (["a", "env"] if declares else ["a", "b", "env"])
    assert ("Passed unknown parameter" in done.stderr) is not declares, done.stderr[-2000:]
