"""Instance steps (prepare, each notebook) as Airflow tasks whose retries know what failed.

The step's script runs under dag_factory.plan.guard (bounded on the host, killed with its task); its
exit status says whose fault a failure is, and ``retry_verdict`` turns that into a retry (an
AirflowException) or a failure at once (AirflowFailException, said so in the log). A notebook step
first sets aside what failed tries of it wrote (dag_factory.deliver.tries), so delivery loads each row
once; a retry stops, on the host, whatever those tries left running before that (a process still alive
could write again after the set-aside). Over SSH on a SageMaker instance (``GuardedSSHOperator``) or
under bash on this machine (``GuardedBashOperator``, the local backend): one policy for both.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

from airflow.providers.ssh.operators.ssh import SSHOperator
from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    AirflowTaskTimeout,
)

from dag_factory.airflow.params import ChecksEnvironment
from dag_factory.airflow.ssh import InstanceSSHOperator, OutputTail
from dag_factory.plan.guard import (
    MESSAGE_PREFIX,
    Fault,
    classify_exit,
    guard_messages,
    install_tools,
    is_own_message,
    retry_verdict,
    stop_earlier_tries,
)
from dag_factory.plan.notebook_failure import MARKER
from dag_factory.plan.scripts import html_path


class _ExitStatus(Exception):
    def __init__(self, status: int, stderr: str = "") -> None:
        super().__init__(f"exit status {status}")
        self.status = status
        self.stderr = stderr


@dataclass(frozen=True, slots=True, kw_only=True)
class StepPolicy:
    """What both step operators take (dag_factory.airflow.build makes it from the step's plan): who owns
    the retries of which failure, the outputs to keep clean, the tools to install."""

    step_label: str  # the step in the log and in the task's error: `notebook <path>`, `prepare`
    infra_retries: int
    notebook_retries: int = 0
    outputs_prefix: str | None = None
    guarded_step: str | None = None  # the guard's marker of the step: a retry stops what earlier tries left
    executed_notebook: str | None = None
    installs_tools: str | None = None  # the work directory, for a group's first step on its host (prepare)

    @property
    def retries(self) -> int:
        """Airflow's retries of the step: as many as the failure retried most (retry_verdict decides)."""
        return max(self.infra_retries, self.notebook_retries)


# rendered per run (a local work directory names the run)
_STEP_FIELDS = ("outputs_prefix", "guarded_step", "executed_notebook", "installs_tools")


class _Step:
    """The policy both step operators share (a mixin without __init__: Airflow wraps operators' own).
    Its fields are the operator's own attributes: some are templated, and Airflow serializes them."""

    step_label: str
    infra_retries: int
    notebook_retries: int
    outputs_prefix: str | None
    guarded_step: str | None
    aws_conn_id: str
    executed_notebook: str | None
    installs_tools: str | None

    def use_policy(self, policy: StepPolicy, aws_conn_id: str) -> None:
        self.step_label = policy.step_label
        self.infra_retries = policy.infra_retries
        self.notebook_retries = policy.notebook_retries
        self.outputs_prefix = policy.outputs_prefix
        self.guarded_step = policy.guarded_step
        self.aws_conn_id = aws_conn_id
        self.executed_notebook = policy.executed_notebook
        self.installs_tools = policy.installs_tools

    def tools_script(self) -> str | None:
        """The script that installs the guard and its tools where the step's command calls them: built
        here, from the worker's package, rather than carried in the DAG by every value's prepare task
        (6 KB each, serialized)."""
        return install_tools(self.installs_tools) if self.installs_tools else None

    def script_shown(self) -> str:
        """What the task log says runs: the step, not its script (its header, the guard's call and the
        step's lines; the task's Rendered Template shows it whole)."""
        return f"the script of {self.step_label}, under dag-factory's guard (all of it: Rendered Template)"

    def outcome(self, started: float) -> dict[str, Any] | None:
        """A notebook step's XCom: where its executed notebook and rendering are, and how long it ran
        (a prepare step pushes none: its output is in the log)."""
        if not self.executed_notebook:
            return None
        return {
            "executed_notebook": self.executed_notebook,
            "html": html_path(self.executed_notebook),
            "duration_s": round(time.monotonic() - started, 1),
        }

    def stop_script(self, context: Any) -> str | None:
        """On a retry, the script that stops what earlier tries of the step left running on the host."""
        if not self.guarded_step or int(context["ti"].try_number) <= 1:
            return None
        return stop_earlier_tries(self.guarded_step)

    def set_aside_failed_tries(self, context: Any) -> None:
        if not self.outputs_prefix:
            return
        from dag_factory.deliver.tries import set_aside_failed_tries

        s3 = None
        if self.outputs_prefix.startswith("s3://"):
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            s3 = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        ti = context["ti"]
        set_aside_failed_tries(self.outputs_prefix, ti.task_id, int(ti.try_number), s3)

    def fail(self, fault: Fault, detail: str, context: Any) -> NoReturn:
        retry, verdict = retry_verdict(
            fault, int(context["ti"].try_number), self.infra_retries, self.notebook_retries
        )
        message = f"{self.step_label} failed ({detail}): {verdict}"
        if fault == "notebook" and self.executed_notebook:  # where to look: the notebook as it ran
            message += f"; executed notebook: {html_path(self.executed_notebook)}"
        log = getattr(self, "log")  # noqa: B009 (the operator's logger)
        # `from None`: the task's error is this verdict, not the exit status or SSH error it wraps
        if retry:
            log.warning(message)
            raise AirflowException(message) from None
        log.error(message)
        raise AirflowFailException(message) from None


def _is_bad_host_key(exc: BaseException) -> bool:
    import paramiko

    return isinstance(exc, paramiko.BadHostKeyException)


_EXPLAINED = MARKER.removeprefix(MESSAGE_PREFIX)  # "notebook error": the located error of a notebook


def _detail(status: int, output: str) -> str:
    """The exit status and what the step said last of its own: the notebook's located error (cell, line,
    exception) when it printed one, else the guard's last message."""
    own = guard_messages(output)
    if status == -1:
        return "the SSH session ended without an exit status: connection lost"
    said = [m for m in own if m.startswith(_EXPLAINED)] or own
    return f"exit status {status}" + (f": {said[-1]}" if said else "")


class GuardedSSHOperator(ChecksEnvironment, _Step, InstanceSSHOperator):
    """An instance step over SSH (see module doc), with the platform's host-key policy."""

    template_fields = (*InstanceSSHOperator.template_fields, *_STEP_FIELDS)
    # a step's command is its script, never the path of a template file (one ending in .sh would be
    # read as one); and Airflow serializes the extensions into every task
    template_ext = ()

    def __init__(
        self,
        *,
        policy: StepPolicy,
        host_keys: str,
        host_key: str | None = None,
        aws_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        # SSHOperator's __init__, not InstanceSSHOperator's: Airflow wraps every class's own __init__
        # (apply_defaults: default_args merged, arguments checked) and runs each one per task, so a level
        # fewer is a cheaper parse (a DAG has one of these per notebook and value)
        SSHOperator.__init__(self, **kwargs)
        self.use_host_keys(host_keys, host_key)
        self.use_policy(policy, aws_conn_id)

    def run_ssh_client_command(self, ssh_client: Any, command: str, context: Any = None) -> bytes:
        if (tools := self.tools_script()) is not None:
            super().run_ssh_client_command(ssh_client, tools, context)
        # on the instance, an earlier try's processes are stopped before what they wrote is set aside
        if (stop := self.stop_script(context)) is not None:
            self.log.info("stopping what earlier tries of this step left running on the instance")
            super().run_ssh_client_command(ssh_client, stop, context)
        self.set_aside_failed_tries(context)
        return super().run_ssh_client_command(ssh_client, command, context)

    def stderr_tail(self) -> OutputTail:
        # the verdict names the guard's last message, however much output came after it
        return OutputTail(pin=is_own_message)

    def command_shown(self, command: str) -> str:
        if self.guarded_step and command == stop_earlier_tries(self.guarded_step):
            return command
        if command == self.tools_script():
            return f"installing dag-factory's guard and tools in {self.installs_tools}"
        return self.script_shown()

    def raise_for_status(self, exit_status: int, stderr: bytes, context: Any = None) -> None:
        if exit_status != 0:
            raise _ExitStatus(exit_status, stderr.decode("utf-8", "replace"))

    def execute(self, context: Any = None) -> Any:
        started = time.monotonic()
        try:
            super().execute(context)  # sets aside failed tries' outputs once connected
            return self.outcome(started)
        except _ExitStatus as failed:
            fault = "infrastructure" if failed.status == -1 else classify_exit(failed.status)
            self.fail(fault, _detail(failed.status, failed.stderr), context)
        except (AirflowFailException, AirflowSkipException, AirflowTaskTimeout):
            raise
        except Exception as exc:  # SSH: refused, reset, authentication, a dropped transport
            if _is_bad_host_key(exc):  # the same address answers with the same key on a retry
                message = (
                    f"{self.step_label} failed ({type(exc).__name__}: {exc}): not retried: the host at "
                    f"this address is not the instance (ssh.host_keys: {self.host_keys})"
                )
                self.log.error(message)
                raise AirflowFailException(message) from None
            self.log.warning("the SSH step failed", exc_info=True)
            self.fail("infrastructure", f"{type(exc).__name__}: {exc}", context)


class _OutputLog:
    """The subprocess hook's logger: each output line also goes to a tail (the guard's own lines pinned,
    as over SSH), and the command logs as the step it runs, not its whole script."""

    def __init__(self, log: Any, tail: OutputTail, shown: str) -> None:
        self._log, self._tail, self._shown = log, tail, shown

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if msg == "Running command: %s":
            args = (self._shown,)
        elif msg == "%s" and len(args) == 1:  # a line of the command's output
            self._tail.add(str(args[0]))
        self._log.info(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class _StepSubprocessHook(SubprocessHook):
    def __init__(self, tail: OutputTail, shown: str) -> None:
        super().__init__()
        self.tail, self.shown = tail, shown

    @property
    def log(self) -> Any:
        return _OutputLog(super().log, self.tail, self.shown)


class GuardedBashOperator(ChecksEnvironment, _Step, BashOperator):
    """An instance step of the local backend (see module doc)."""

    template_fields = (*BashOperator.template_fields, *_STEP_FIELDS)

    def __init__(self, *, policy: StepPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_policy(policy, "aws_default")

    @cached_property
    def subprocess_hook(self) -> SubprocessHook:
        """Runs the script (stdout and stderr as one stream), keeping a tail for the failure's verdict."""
        return _StepSubprocessHook(OutputTail(pin=is_own_message), self.script_shown())

    def execute(self, context: Any) -> Any:
        if (tools := self.tools_script()) is not None:
            installed = subprocess.run(["bash", "-c", tools], capture_output=True, text=True, timeout=60)
            if installed.returncode != 0:
                last = (installed.stderr.strip().splitlines() or [""])[-1]
                detail = f"exit status {installed.returncode} installing the tools: {last}"
                self.fail("infrastructure", detail, context)
        if (stop := self.stop_script(context)) is not None:  # before their outputs are set aside
            subprocess.run(["bash", "-c", stop], check=False, timeout=60)
        self.set_aside_failed_tries(context)
        started = time.monotonic()
        try:
            super().execute(context)
            return self.outcome(started)
        except (AirflowFailException, AirflowSkipException, AirflowTaskTimeout):
            raise
        except AirflowException as exc:
            process = self.subprocess_hook.sub_process
            if process is None or process.returncode is None:
                raise
            status = int(process.returncode)
            hook = self.subprocess_hook
            said = _detail(status, hook.tail.text()) if isinstance(hook, _StepSubprocessHook) else ""
            self.fail(classify_exit(status), said or f"exit status {status}: {exc}", context)
