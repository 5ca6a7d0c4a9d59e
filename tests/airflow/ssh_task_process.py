"""A worker's task process running one SSH step, for tests/airflow/test_ssh.py.

`python -m tests.airflow.ssh_task_process RESULT HOST COMMAND`: runs a GuardedSSHOperator (`ssh_default`,
host keys off) with Airflow's task logging configured as a task process has it (structlog JSON lines
to the supervisor, here this process's stdout, which the test reads as a supervisor would), and writes
to RESULT (JSON) what the step cost this process: CPU seconds, growth of its resident memory over what
it held before the step (peak, from the kernel's VmHWM, reset just before), its outcome and XComs.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any


class RecordingTI:
    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _kb(field: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(result_file: str, host: str, command: str) -> None:
    from airflow.sdk.log import configure_logging

    configure_logging(json_output=True, output=sys.stdout.buffer, sending_to_supervisor=True)
    from dag_factory.airflow.operators import GuardedSSHOperator, StepPolicy

    operator = GuardedSSHOperator(
        task_id="nb_chatty", ssh_conn_id="ssh_default", remote_host=host, command=command,
        cmd_timeout=None, conn_timeout=30, host_keys="off",
        policy=StepPolicy(step_label="notebook nb/chatty.ipynb", infra_retries=0),
    )  # fmt: skip
    ti = RecordingTI()
    rss_before = _kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the current RSS
    cpu_before = _cpu_s()
    outcome: dict[str, Any]
    try:
        returned = operator.execute({"ti": ti, "task_instance": ti})
        outcome = {"returned": returned}
    except Exception as exc:
        outcome = {"raised": type(exc).__name__, "message": str(exc)}
    cost = {"cpu_s": _cpu_s() - cpu_before, "rss_growth_kb": _kb("VmHWM") - rss_before}
    Path(result_file).write_text(json.dumps({**outcome, **cost, "xcom": ti.pushed}))


if __name__ == "__main__":
    main(*sys.argv[1:])
