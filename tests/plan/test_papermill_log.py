"""The notebook step keeps papermill's full log beside the executed notebook (`.log`), locally and on S3,
while the same lines still stream out of the step (the task log)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import jinja2
import pytest

from dag_factory.plan.guard import EXIT_NOTEBOOK_ERROR, StepBounds, guarded
from dag_factory.plan.scripts import (
    HostLayout,
    notebook_command,
    output_prefix_template,
    runtime_parameters_json,
)
from tests.notebooks import write_notebook
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration  # each test starts a kernel

VENV_BIN = Path(sys.executable).parent
RUN_ID = "manual__1"


def _run_step(tmp: Path, output_head: str, second_cell: str) -> subprocess.CompletedProcess[str]:
    """The product's notebook step for a two-cell notebook, under the guard, rendered as Airflow would."""
    project = tmp / "work" / "project"
    (project / "nb").mkdir(parents=True)
    write_notebook(project / "nb" / "n.ipynb", "print('first cell ran')", second_cell)
    layout = HostLayout(
        workdir=str(tmp / "work"), activate=f"export PATH={VENV_BIN}:$PATH", sync="true", install="true"
    )
    out_nb = f"{output_prefix_template(output_head, 'de')}/n.ipynb"
    command = notebook_command(
        layout, "nb/n.ipynb", out_nb, "python3", {}, runtime_parameters_json(output_head, "de")
    )
    command = guarded(command, StepBounds(str(tmp / "work"), "nb_n", 600, 3600))
    rendered = (
        jinja2.Environment(undefined=jinja2.StrictUndefined)
        .from_string(command)
        .render(run_id=RUN_ID, ds="2026-01-05")
    )
    return subprocess.run(["bash", "-c", rendered], capture_output=True, text=True, env=os.environ.copy())


def test_papermill_log_is_kept_beside_the_executed_notebook(tmp_path: Path) -> None:
    result = _run_step(tmp_path, str(tmp_path / "out"), "print('second cell says ' + 'hello')")
    assert result.returncode == 0, result.stderr[-2000:]
    executed = tmp_path / "out" / RUN_ID / "de" / "n.ipynb"
    kept = executed.with_suffix(".log").read_text()
    for line in ("Executing Cell 2", "second cell says hello"):
        assert line in kept  # papermill's log, cell output included (--log-output)
        assert line in result.stderr  # and streamed as before
    assert "first cell ran" not in result.stdout  # papermill's stderr stays stderr
    assert list((tmp_path / "work").glob("papermill-*")) == []  # the step's own copy is removed
    assert "dag-factory: step done" in result.stdout


def test_a_failed_notebook_keeps_its_log_on_s3(aws_env: MotoServer, tmp_path: Path) -> None:
    s3 = aws_env.client("s3")
    bucket = f"out-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    result = _run_step(tmp_path, f"s3://{bucket}/job", "raise ValueError('no rows for de')")
    # the notebook's own error, kept through the log's copy and the render
    assert result.returncode == EXIT_NOTEBOOK_ERROR, result.stderr[-2000:]
    assert "dag-factory: the notebook raised ValueError: no rows for de" in result.stderr
    kept = s3.get_object(Bucket=bucket, Key=f"job/{RUN_ID}/de/n.log")["Body"].read().decode()
    assert "Executing Cell 2" in kept
    assert "ValueError: no rows for de" in kept
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"job/{RUN_ID}/de/n.{ext}" for ext in ("ipynb", "html", "log")}
