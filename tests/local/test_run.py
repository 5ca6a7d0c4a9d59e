"""`dag-factory run` end to end on the local backend: real Airflow, papermill, DuckDB.

The demo's shared environment comes from the test run's cache (tests/conftest.py): built once per run."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.console import Console

from dag_factory.local.airflow_home import ApiServer
from dag_factory.local.run import prepare_job, report_lines, run_local, summarize
from tests.local.projects import RUN_DATE, demo_project, one_notebook_job
from tests.notebooks import notebook
from tests.servers.airflow_api import AirflowApi

DATE = RUN_DATE
HEADING = "# a notebook"  # the parameters cell is not the notebook's first


def _run(spec: Path, platform: Path, only: list[str], keep: bool = False):  # type: ignore[no-untyped-def]
    job = prepare_job(spec, "local", platform, only)
    result = run_local(job, DATE, keep, Console(quiet=True))
    return job, result, {row.value: row for row in summarize(job, result)}


def _scores(root: Path) -> list[tuple[str, int]]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT country, count(*) FROM analytics.churn_scores"
            " WHERE logical_date = ? GROUP BY 1 ORDER BY 1",
            [DATE],
        ).fetchall()


@pytest.mark.integration
def test_demo_job_delivers_archives_and_cleans_up(tmp_path: Path) -> None:
    spec, platform = demo_project(tmp_path)
    _, result, rows = _run(spec, platform, ["de", "fr"])
    root = tmp_path / "root"
    assert result.state == "success", result.log_path
    assert {v: r.status for v, r in rows.items()} == {"de": "success", "fr": "success"}
    assert _scores(root) == [("de", 800), ("fr", 500)]  # de has its own n_customers
    # locally the warehouse targets load into DuckDB: rows per target, never summed across them
    assert rows["de"].rows_delivered == {
        "duckdb:analytics.churn_scores": 800,
        "duckdb:analytics.churn_metrics": 1,
    }
    # one asset event per target for the run, after both values' deliveries (the total in its XCom)
    assert result.xcom("publish_churn_scores") == 1300 and result.xcom("publish_churn_metrics") == 2
    # executed notebooks archived with the injected parameters
    executed = Path(rows["fr"].executed_notebook)
    assert executed.is_file() and executed.parent.name == "fr"
    # the notebook task's XCom says where its executed notebook and rendering are, and how long it ran
    told = result.xcom("fr.nb_02_train")
    assert (told["executed_notebook"], told["html"]) == (str(executed), str(executed.with_suffix(".html")))
    assert 0 < told["duration_s"] <= result.ti("fr.nb_02_train").duration
    with pytest.raises(KeyError):  # a prepare step's output is in its log only
        result.xcom("fr.prepare")
    cells = json.loads(executed.read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    source = "".join(injected["source"])
    for line in ['country = "fr"', "max_depth = 4", 'env = "local"', 'logical_date = "2026-01-05"']:
        assert line in source
    assert f'run_id = "{result.run_id}"' in source
    # work directories removed like instances
    assert not any((root / "work").rglob("venv"))
    # fan-out values overlapped in time (not one at a time)
    de, fr = result.ti("de.nb_02_train"), result.ti("fr.nb_02_train")
    assert de.start < fr.end and fr.start < de.end
    # a re-run of the same logical date replaces, never duplicates
    _, again, _ = _run(spec, platform, ["de"])
    assert again.state == "success"
    assert _scores(root) == [("de", 800), ("fr", 500)]


@pytest.mark.integration
def test_failing_notebook_fails_its_value_only_and_keeps_its_error(tmp_path: Path) -> None:
    spec, platform = demo_project(tmp_path, {"fail_for": "fr"}, prices={"ml.t3.medium": 3600.0})
    job, result, rows = _run(spec, platform, ["de", "fr"])
    assert result.state == "failed"
    assert rows["de"].status == "success" and rows["fr"].status == "failed"
    assert rows["fr"].error == (  # the cell and line as numbered in the notebook the data scientist wrote
        "nb_02_train: notebook error in notebooks/02_train.ipynb cell 3 (papermill's \"Executing Cell 4\"), "
        "line 3 "
        '`raise RuntimeError(f"forced failure for {country}")`: RuntimeError: forced failure for fr'
    )
    executed = Path(rows["fr"].executed_notebook)
    assert executed.name == "02_train.ipynb" and "forced failure for fr" in executed.read_text()
    assert result.ti("fr.deliver_churn_scores").state == "upstream_failed"
    assert result.ti("publish_churn_scores").state == "upstream_failed"  # no event without fr's rows
    assert result.ti("fr.delete_instance").state == "success"
    assert _scores(tmp_path / "root") == [("de", 800)]
    assert not any((tmp_path / "root" / "work").rglob("venv"))
    # the rendered notebooks, the failed one included, beside the executed ones
    assert "forced failure for fr" in _html_text(executed.with_suffix(".html"))
    assert "injected-parameters" in (executed.parent / "01_features.html").read_text()
    # the run report: written after the failure, every value, its failure, rows, cost beside the estimate
    assert result.ti("report").state == "success"
    folder = executed.parent.parent
    report = json.loads((folder / "report.json").read_text())
    assert report["status"] == "failed" and report["run_id"] == result.run_id
    values = {v["value"]: v for v in report["values"]}
    assert {v: e["status"] for v, e in values.items()} == {"de": "success", "fr": "failed"}
    assert values["fr"]["failure"].startswith("fr.nb_02_train: cell ")
    assert "RuntimeError: forced failure for fr" in values["fr"]["failure"]
    assert values["de"]["failure"] == ""
    delivered = {"duckdb:analytics.churn_scores": 800, "duckdb:analytics.churn_metrics": 1}
    assert values["de"]["rows_delivered"] == delivered
    assert all(n is None for n in values["fr"]["rows_delivered"].values())
    tasks = {t["task_id"]: t for t in values["fr"]["tasks"]}
    assert tasks["fr.nb_02_train"]["state"] == "failed"
    assert tasks["fr.deliver_churn_scores"]["state"] == "upstream_failed"
    assert tasks["fr.nb_01_features"]["duration_s"] > 0
    for value in ("de", "fr"):  # the work dir existed for a while; price 3600 $/h = 1 $/s
        hours = values[value]["instance_hours"]
        assert 0 < hours < 1
        assert values[value]["cost_usd"] == pytest.approx(hours * 3600, abs=0.01)
    total = report["total"]
    assert total["instance_hours"] == pytest.approx(
        values["de"]["instance_hours"] + values["fr"]["instance_hours"]
    )
    assert report["estimate"]["instances"] == 2 and report["estimate"]["usd_per_hour"] == 3600.0
    shown = _html_text(folder / "report.html")
    for text in (
        "de",
        "fr",
        "RuntimeError: forced failure for fr",
        f"file://{executed.with_suffix('.html')}",
    ):
        assert text in shown
    # what `dag-factory run` prints after the summary
    printed = report_lines(job, result)
    actual = f"instance-hours {total['instance_hours']:.3f}, cost ${total['cost_usd']:.2f}"
    assert printed[:4] == [
        f"{actual}; plan estimate at most 1.00 h, $3600.00",
        "run report (and report.json beside it):",
        f"  {folder / 'report.html'}",  # a path on a line of its own, never cut
        "rendered notebooks:",
    ]
    assert f"  {executed.with_suffix('.html')}" in printed
    assert len(printed) == 4 + 4


@dataclass(frozen=True)
class PipedRun:
    """`dag-factory run --keep --only de` as a CI log gets it: stdout a pipe, 80 columns."""

    root: Path
    spec: Path
    returncode: int
    output: str


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipedRun]:
    import os
    import subprocess
    import sys

    from dag_factory.local.execution_server import STATE_FILE, stop_execution_api

    tmp_path = tmp_path_factory.mktemp("piped")
    spec, platform = demo_project(tmp_path)
    command = [sys.executable, "-m", "dag_factory.cli.app", "run", str(spec), "--platform", str(platform)]
    done = subprocess.run(
        [*command, "--only", "de", "--date", str(DATE), "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path, timeout=600,
        env={**os.environ, "COLUMNS": "80", "DAG_FACTORY_LOCAL_API_IDLE_MINUTES": ""}, text=True,
    )  # fmt: skip
    yield PipedRun(tmp_path / "root", spec, done.returncode, done.stdout)
    for state in tmp_path.rglob(STATE_FILE):
        stop_execution_api(state.parent)


@pytest.mark.integration
def test_keep_leaves_the_work_directory_for_debugging(piped_run: PipedRun) -> None:
    assert piped_run.returncode == 0, piped_run.output
    kept = list((piped_run.root / "work").rglob("de"))
    assert kept and (kept[0] / "venv" / "bin" / "papermill").exists()


@pytest.mark.integration
def test_a_piped_run_prints_plain_lines_and_whole_paths(piped_run: PipedRun) -> None:
    """No escape codes, no redrawn grid; progress as timed lines; rows per target; every path whole on a
    line of its own (the terminal is 80 columns wide, the paths are longer)."""
    lines = piped_run.output.splitlines()
    assert piped_run.returncode == 0, piped_run.output
    assert "\x1b" not in piped_run.output
    timed = [line[9:] for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert timed[0] == f"churn-demo {DATE} (local): started" and "de: done" in timed
    started = next(i for i, line in enumerate(lines) if line.endswith(": started"))
    assert started < lines.index(f"churn-demo {DATE}: success")
    assert (
        "  duckdb:analytics.churn_scores: de 800" in lines
        and "  duckdb:analytics.churn_metrics: de 1" in lines
    )
    report = json.loads((_run_folder(piped_run) / "report.json").read_text())
    paths = [n["html"] for v in report["values"] for n in v["notebooks"]]
    assert paths and all(len(p) > 80 for p in paths)
    for path in [*paths, str(_run_folder(piped_run) / "report.html")]:
        assert f"  {path}" in lines, f"{path} is not whole on a line of its own:\n{piped_run.output}"
    table = lines[lines.index(f"churn-demo {DATE}: success") + 1 : lines.index("rows delivered, per target:")]
    assert table and all(len(line) <= 80 for line in table), table
    server = json.loads((piped_run.root / "airflow" / "execution-api.json").read_text())
    platform = piped_run.spec.parent / "platform.yaml"  # named by --platform
    assert lines[-1] == (  # the default idle time: the fixture's environment leaves it unset
        f"Execution API left up for the next run: {server['url']} (pid {server['pid']}); it stops after "
        f"10 min without a request, or now with: dag-factory stop-server --platform {platform}"
    )


def _run_folder(run: PipedRun) -> Path:
    (folder,) = (run.root / "runs" / "churn-demo").iterdir()
    return folder


@pytest.mark.integration
def test_the_run_report_shows_the_date_spec_wall_time_and_injected_parameters(piped_run: PipedRun) -> None:
    report = json.loads((_run_folder(piped_run) / "report.json").read_text())
    assert (report["logical_date"], report["spec"]) == (str(DATE), str(piped_run.spec))
    assert 0 < report["wall_time_s"] < 600
    (de,) = report["values"]
    assert de["parameters"] == {
        "lookback_days": 90,
        "n_customers": 800,
        "country": "de",
        "env": "local",
        "aws_account_id": de["parameters"]["aws_account_id"],
        "logical_date": str(DATE),
        "run_id": report["run_id"],
        "output_prefix": str(_run_folder(piped_run) / "de"),
    }
    assert report["notebook_parameters"] == {"notebooks/02_train.ipynb": {"max_depth": 4}}


@pytest.mark.integration
def test_ctrl_c_stops_the_run_and_removes_work_directories(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    # the interrupt comes while the notebook runs: it says so (a file), then waits for a release that
    # never comes, so the run cannot end by itself before the Ctrl-C (no bet on how long a run takes)
    started = tmp_path / "notebook-started"
    nb = notebook(
        f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(900)",
        parameters="country = 'xx'",
        heading=HEADING,
    )
    spec, platform = one_notebook_job(tmp_path, "blocked", nb, fan_out={"name": "country", "values": ["de"]})
    command = [sys.executable, "-m", "dag_factory.cli.app", "run", str(spec), "--platform", str(platform)]

    # started as a shell starts a foreground command, which a terminal's Ctrl-C reaches: SIGINT neither
    # ignored nor blocked, whatever this pytest worker inherited or a library's thread left (once in
    # about six whole runs the SIGINT never arrived: the CLI's stacks showed it still waiting for the run)
    def as_a_shell_starts_it() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        [*command, "--only", "de"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        preexec_fn=as_a_shell_starts_it,
    )  # fmt: skip
    # read the output as it comes, as a terminal does: a full pipe would block the run's progress lines
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    work = tmp_path / "root" / "work"
    deadline = time.monotonic() + 300
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert started.exists(), f"the notebook never started (run exit {proc.poll()}): {b''.join(lines)!r}"
    assert any(work.rglob("venv")), "the run never created its work directory"
    os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=180)
    except subprocess.TimeoutExpired:  # say where it is stuck: the CLI dumps its threads on SIGUSR1
        masks = [m for m in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if m.startswith("Sig")]
        lines.append(f"{masks}\n".encode())
        os.kill(proc.pid, signal.SIGUSR1)
        reader.join(timeout=10)
        proc.kill()
        said = b"".join(lines)[-6000:].decode(errors="replace")
        raise AssertionError(f"the run did not end after Ctrl-C: {said}") from None
    reader.join(timeout=30)
    output = b"".join(lines)
    assert proc.returncode != 0
    assert b"interrupted" in output
    assert not any(work.rglob("venv"))


def _r_project(tmp_path: Path) -> tuple[Path, Path]:
    """An R notebook (kernel ir), parameters cell `msg <- "hi"` / `n = 10L`; fr stops with an error."""
    nb = notebook(
        'cat(paste(msg, n * 2L, country), "\\n")',
        'if (country == "fr") {\n  stop("no data for ", country)\n}',
        parameters='msg <- "hi"\nn = 10L\ncountry = "xx"',
        kernelspec={"name": "ir", "display_name": "R", "language": "R"},
        heading=HEADING,
    )
    return one_notebook_job(
        tmp_path,
        "report",
        nb,
        runtime={"kernel": "ir", "requirements": None},
        fan_out={"name": "country", "values": ["de", "fr"]},
        parameters={"msg": "hello"},
        notebooks=[{"path": "notebooks/report.ipynb", "parameters": {"n": 21}}],
    )


@pytest.mark.integration
def test_an_r_notebook_runs_end_to_end(tmp_path: Path) -> None:
    """R through the whole local path: contract, Airflow, papermill with the ir kernel, errors explained."""

    from typer.testing import CliRunner

    from dag_factory.cli.app import app

    assert shutil.which("R"), (
        "R is not installed: scripts/bootstrap.sh installs r-base-core and r-cran-irkernel"
    )
    spec, platform = _r_project(tmp_path)
    validated = CliRunner().invoke(app, ["validate", str(spec), "--platform", str(platform)])
    assert validated.exit_code == 0, validated.output  # the R parameters cell is read: msg and n declared
    _, result, rows = _run(spec, platform, ["de", "fr"])
    assert rows["de"].status == "success", (rows["de"].error, result.log_path)
    executed = json.loads(Path(rows["de"].executed_notebook).read_text())
    injected = next(c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert 'msg = "hello"' in "".join(injected["source"]) and "n = 21" in "".join(injected["source"])
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "hello 42 de" in printed
    assert rows["fr"].status == "failed"
    assert rows["fr"].error == (
        'nb_report: notebook error in notebooks/report.ipynb cell 4 (papermill\'s "Executing Cell 5"), '
        'line 2 `stop("no data for ", country)`: '
        "Error in eval(expr, envir, enclos): no data for fr"
    )


def _failing_project(tmp_path: Path, requirements: str, values: list[str]) -> tuple[Path, Path]:
    """One notebook that fails its own way per fan-out value; no retries, a 40 s timeout."""
    nb = notebook(
        "import os, time\n\ndef divide(a, b):\n    return a / b",
        "if country == 'err':\n    ratio = divide(1, 0)",
        "if country == 'empty':\n    raise ValueError()",
        "if country == 'dead':\n    os._exit(3)",
        "if country == 'slow':\n    time.sleep(600)",
        parameters='country = "de"',
        heading=HEADING,
    )
    spec, platform = one_notebook_job(
        tmp_path,
        "work",
        nb,
        runtime={"requirements": "requirements.txt"},
        fan_out={"name": "country", "values": values},
        notebooks=[{"path": "notebooks/work.ipynb", "timeout": "40s"}],
    )
    (tmp_path / "work" / "requirements.txt").write_text(requirements + "\n")
    return spec, platform


@pytest.mark.integration
def test_the_summary_explains_every_notebook_failure_kind(tmp_path: Path) -> None:
    """A notebook error (with and without a message), a dead kernel and a timeout, each with its cell."""
    spec, platform = _failing_project(tmp_path, "", ["err", "empty", "dead", "slow"])
    _, result, rows = _run(spec, platform, [])
    assert result.state == "failed"
    assert {value: row.error for value, row in rows.items()} == {
        "err": "nb_work: notebook error in notebooks/work.ipynb cell 4 (papermill's \"Executing Cell 5\"), "
        "line 2 `ratio = divide(1, 0)`: "
        "ZeroDivisionError: division by zero",
        "empty": "nb_work: notebook error in notebooks/work.ipynb cell 5 (papermill's \"Executing Cell 6\"), "
        "line 2 `raise ValueError()`: "
        "ValueError",
        "dead": "nb_work: kernel died in cell 6 `if country == 'dead':` (a crash, or out of memory)",
        "slow": "nb_work: timed out after 40s in cell 7 `if country == 'slow':`",
    }


@pytest.mark.integration
def test_the_summary_explains_a_failed_install(tmp_path: Path) -> None:
    spec, platform = _failing_project(tmp_path, "no-such-package-dag-factory==1.0", ["de"])
    _, result, rows = _run(spec, platform, [])
    assert result.state == "failed"
    error = rows["de"].error
    assert error.startswith("prepare: install failure: "), error
    assert "no-such-package-dag-factory" in error


def _html_text(path: Path) -> str:
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.links: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.links += [v for k, v in attrs if tag == "a" and k == "href" and v]

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(path.read_text())
    return " ".join(parser.parts) + "\n" + "\n".join(parser.links)


@pytest.mark.integration
def test_a_missing_notebook_fails_at_once_not_retried_and_names_it(tmp_path: Path) -> None:
    """A spec naming a notebook the project lacks, run without the contract check (`run --no-notebooks`):
    a missing input, not an infrastructure fault to retry after a delay; the summary names the notebook."""
    nb = notebook(parameters="country = 'de'", heading=HEADING)
    notebooks = [{"path": "notebooks/first.ipynb"}, {"path": "notebooks/02_sumary.ipynb"}]
    fan_out = {"name": "country", "values": ["de"]}
    spec, platform = one_notebook_job(tmp_path, "first", nb, notebooks=notebooks, retries=2, fan_out=fan_out)
    _, result, rows = _run(spec, platform, [])
    assert result.state == "failed"
    assert rows["de"].error == (
        "nb_02_sumary: missing input: the notebook notebooks/02_sumary.ipynb is not in the deployed project"
    ), rows
    missing = result.ti("de.nb_02_sumary")
    assert missing.try_number == 1, missing  # retries: 2, yet not retried
    assert result.ti("de.nb_first").state == "success"


@pytest.fixture(scope="module")
def ui_server(piped_run: PipedRun) -> Iterator[ApiServer]:
    """An api-server on the piped run's Airflow home, as `airflow api-server` serves the UI after a run."""
    from dag_factory.local.airflow_home import airflow_env, api_server

    assert piped_run.returncode == 0, piped_run.output
    with api_server(airflow_env(piped_run.root / "airflow"), timeout=180) as server:
        yield server


def _get(server: ApiServer, path: str) -> bytes:
    return AirflowApi(server.url).read(path)


def _the_run(server: ApiServer) -> dict[str, Any]:
    (run,) = json.loads(_get(server, "/api/v2/dags/churn-demo/dagRuns"))["dag_runs"]
    found: dict[str, Any] = run
    return found


@pytest.mark.integration
def test_the_airflow_ui_opens_a_local_runs_links(piped_run: PipedRun, ui_server: ApiServer) -> None:
    """Airflow's UI shows only same-origin or http(s) links: a local run's extra links, as the UI gets
    them from an api-server on the run's Airflow home, are same-origin paths that open the executed
    notebook, the notebook's source and the run report; a file the task did not link is not served.
    Every task of the run links the run report, and so does the run's note."""
    import urllib.error
    from urllib.parse import quote

    def links(run_id: str, task_id: str) -> dict[str, str]:
        path = f"/api/v2/dags/churn-demo/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
        found: dict[str, str] = json.loads(_get(ui_server, path))["extra_links"]
        return found

    run = _the_run(ui_server)
    notebook = links(run["dag_run_id"], "de.nb_01_features")
    report = notebook.pop("Run report")
    assert all(url.startswith("/dag-factory/files/churn-demo/") for url in [*notebook.values(), report])
    folder = _run_folder(piped_run)
    opened = {name: _get(ui_server, url) for name, url in notebook.items()}
    assert opened["Executed notebook"] == (folder / "de" / "01_features.html").read_bytes()
    source = json.loads(opened["Notebook source"])
    assert source["cells"] and "nbformat" in source
    assert _get(ui_server, report) == (folder / "report.html").read_bytes()
    tasks = json.loads(_get(ui_server, "/api/v2/dags/churn-demo/tasks"))["tasks"]
    assert len(tasks) > 5
    for task in tasks:  # the setups, the steps, the teardowns, the deliveries, the report itself
        assert links(run["dag_run_id"], task["task_id"])["Run report"] == report, task["task_id"]
    assert run["note"] == f"[Run report]({report})"

    route = notebook["Executed notebook"].split("?path=")[0]
    elsewhere = f"{route}?path={quote(str(piped_run.spec), safe='')}"
    other_task = report.replace("/report?", "/de.nb_01_features?")
    for url in (elsewhere, other_task):  # not linked by this task: refused, though the file exists
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(ui_server, url)
        assert refused.value.code == 404, url


@pytest.mark.integration
def test_the_airflow_ui_links_a_notebook_task_to_its_executed_notebook_in_chromium(
    piped_run: PipedRun, ui_server: ApiServer
) -> None:
    """Headless Chromium (Debian's, driven by Playwright) opens a notebook task in the Airflow UI, clicks
    the "Executed notebook" button of its details and lands on the executed notebook (nbconvert's HTML,
    the injected parameters in it); the run's page shows its note's link to the run report."""
    import shutil
    from urllib.parse import quote

    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium-headless-shell")  # Debian's, installed by scripts/bootstrap.sh
    assert chromium, "chromium-headless-shell is missing: run scripts/bootstrap.sh"
    run = _the_run(ui_server)
    run_page = f"{ui_server.url}/dags/churn-demo/runs/{quote(run['dag_run_id'], safe='')}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{run_page}/tasks/de.nb_01_features")  # all users are admins (airflow_env): no login
            page.get_by_role("link", name="Details", exact=True).click()  # the task instance's details tab
            button = page.get_by_role("link", name="Executed notebook")
            expect(button).to_be_visible(timeout=60_000)  # once the UI has asked for the task's links
            button.click()  # a same-origin link: the UI opens it in the same tab
            page.wait_for_url("**/dag-factory/files/churn-demo/**/de.nb_01_features?path=*")
            markdown = "Synthetic customer features for one country and logical date."
            expect(page.get_by_text(markdown)).to_be_visible()
            expect(page.get_by_text('country = "de"').first).to_be_visible()  # the injected parameters

            page.goto(run_page)
            report = run["note"].removeprefix("[Run report](").removesuffix(")")
            note = page.get_by_role("link", name="Run report")  # the run's note, rendered as markdown
            expect(note).to_have_attribute("href", report, timeout=60_000)
        finally:
            browser.close()
