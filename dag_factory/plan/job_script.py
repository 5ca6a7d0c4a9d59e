"""The container command of a SageMaker job (backend `sagemaker-job`): the group's prepare step and its
notebook steps, the same scripts (dag_factory.plan.scripts) under the same guard (dag_factory.plan.guard)
as over SSH or locally, run one after another in one container.

The job's exit status is the first failing step's: the guard's EXIT_NOTEBOOK_ERROR, EXIT_TIMED_OUT or
EXIT_MISSING_INPUT tell a notebook's fault from the infrastructure's, as they do on an instance. Each step
runs in a subshell: the guard's call `exec`s it, and the next step must still follow.
"""

from __future__ import annotations

from collections.abc import Sequence

from dag_factory.plan.guard import install_tools

JOB_SCRIPT_HEADER = "# dag-factory: one SageMaker job: prepare, then each notebook (plan/job_script.py)"


def job_script(workdir: str, guarded_steps: Sequence[str]) -> str:
    """One script: install the guard and its tools in ``workdir``, then each of ``guarded_steps`` (a step's
    script under `under_installed_guard`, in order); stop at the first that fails, with its status."""
    lines = [JOB_SCRIPT_HEADER, "set -uo pipefail", install_tools(workdir).rstrip("\n")]
    for step in guarded_steps:
        lines += ["(", step.rstrip("\n"), ') || exit "$?"']
    lines.append("echo 'dag-factory: job done'")
    return "\n".join(lines) + "\n"
