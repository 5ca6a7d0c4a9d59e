"""Progress rendering: plain data in, rich tables out."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from dag_factory.local.progress import (
    LiveProgress,
    PlainProgress,
    SummaryRow,
    ValueStatus,
    progress_display,
    progress_grid,
    render_progress,
    render_summary,
    split_task_id,
    summary_lines,
    value_statuses,
)
from dag_factory.local.run_records import TaskProgress

T0 = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)


def _text(renderable: object) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_split_task_id() -> None:
    assert split_task_id("de.run_notebooks") == ("de", "run_notebooks")
    assert split_task_id("de.nb.01_features") == ("de", "nb.01_features")
    assert split_task_id("deliver") == ("", "deliver")
    assert split_task_id("de.load", 2) == ("de", "load[2]")


def test_grid_and_render() -> None:
    rows = [
        TaskProgress("de.create", -1, "success", T0, T0 + timedelta(seconds=2)),
        TaskProgress("de.run", -1, "running", T0 + timedelta(seconds=2), None),
        TaskProgress("fr.create", -1, "failed", T0, T0 + timedelta(seconds=1.5)),
        TaskProgress("fr.run", -1, "upstream_failed", None, None),
        TaskProgress("nl.create", -1, "up_for_retry", T0, T0 + timedelta(seconds=1)),
        TaskProgress("nl.run", -1, None, None, None),
        TaskProgress("report", -1, "skipped", None, None),
    ]
    grid = progress_grid(rows, now=T0 + timedelta(seconds=5))
    assert grid.groups == ["de", "fr", "nl", ""]
    assert grid.steps == ["create", "run", "report"]
    assert grid.cells[("de", "run")].elapsed == 3.0
    text = _text(render_progress(grid, title="demo", group_label="country"))
    for expected in ("country", "done 2.0s", "running 3.0s", "failed 1.5s", "upstream failed",
                     "up for retry 1.0s", "waiting", "skipped", "(dag)"):  # fmt: skip
        assert expected in text


def test_live_progress_accepts_rows() -> None:
    console = Console(width=120, record=True, color_system=None, force_terminal=False)
    with LiveProgress(title="run", console=console) as live:
        live([TaskProgress("de.create", -1, "running", T0, None)])
    assert live.rows[0].task_id == "de.create"
    assert "create" in console.export_text()


def test_summary_table_and_lines() -> None:
    """The table holds short cells only; rows per target, reasons and paths follow as whole lines."""
    rows = [
        SummaryRow(
            "de", "success", 12.34, "out/de/02_train.ipynb", {"duckdb:a.scores": 800, "duckdb:a.metrics": 1}
        ),
        SummaryRow(
            "fr", "failed", 3.0, "out/fr/02_train.ipynb", {"duckdb:a.scores": None}, "forced failure for fr"
        ),
    ]
    text = _text(render_summary(rows, value_label="country"))
    assert "country" in text and "12.3s" in text and "out/" not in text
    assert summary_lines(rows) == [
        "rows delivered, per target:",
        "  duckdb:a.scores: de 800, fr -",
        "  duckdb:a.metrics: de 1, fr -",
        "fr failed: forced failure for fr",
        "  executed notebook:",
        "  out/fr/02_train.ipynb",
    ]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clock times print in the local zone: UTC here, whatever the machine's."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


RUNS = [
    TaskProgress("de.create", -1, "success", T0, T0 + timedelta(seconds=2), 1),
    TaskProgress("de.nb_train", -1, "running", T0 + timedelta(seconds=2), None, 1),
    TaskProgress("fr.create", -1, "up_for_retry", T0, T0 + timedelta(seconds=1), 1),
    TaskProgress("fr.nb_train", -1, None, None, None, 0),
    TaskProgress("nl.create", -1, "success", T0, T0 + timedelta(seconds=1), 1),
    TaskProgress("nl.nb_train", -1, "failed", T0 + timedelta(seconds=1), T0 + timedelta(seconds=4), 1),
    TaskProgress("report", -1, None, None, None, 0),
]


def test_each_value_says_where_it_is_and_until_when_it_waits_for_a_retry(utc: None) -> None:
    grid = progress_grid(RUNS, now=T0 + timedelta(seconds=12), retry_delay_s=300)
    retry_by = T0 + timedelta(seconds=1 + 600)  # the first retry waits 300-600 s (Airflow's jitter)
    assert value_statuses(grid) == [
        ValueStatus("de", "running", "nb_train", 10.0, None, 1, 2),
        ValueStatus("fr", "up for retry", "create", 1.0, retry_by, 0, 2),
        ValueStatus("nl", "failed", "nb_train", 3.0, None, 2, 2),
        ValueStatus("", "waiting", done=0, total=1),
    ]
    assert "retry by 04:10:01" in _text(render_progress(grid))


def test_a_grid_wider_than_the_terminal_shows_a_line_per_value() -> None:
    steps = [f"step_{i:02}" for i in range(12)]
    rows = [TaskProgress(f"{v}.{step}", -1, "success", T0, T0, 1) for v in ("de", "fr") for step in steps]
    console = Console(width=80, record=True, color_system=None, force_terminal=True)
    with LiveProgress(title="churn", group_label="country", console=console, steps=steps) as live:
        live(rows)
    text = console.export_text()
    assert "steps done" in text and "12/12" in text and "step_11" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


class _Lines(io.StringIO):
    """A pipe's reader: signals when a line holding ``wanted`` was written."""

    def __init__(self, wanted: str) -> None:
        super().__init__()
        self.wanted, self.seen = wanted, threading.Event()

    def write(self, text: str) -> int:
        if self.wanted in text:
            self.seen.set()
        return super().write(text)


def test_through_a_pipe_progress_is_plain_lines(utc: None) -> None:
    now = [T0]
    out = _Lines("values finished")
    console = Console(file=out, width=80)
    display = progress_display(
        console, title="churn 2026-01-05", group_label="country", retry_delay_s=300, clock=lambda: now[0]
    )
    assert isinstance(display, PlainProgress)
    with display as progress:
        progress(RUNS)
        progress(RUNS)  # nothing changed: nothing said again
        now[0] = T0 + timedelta(seconds=12)
        progress.heartbeat()
    assert out.getvalue().splitlines() == [
        "04:00:00 churn 2026-01-05: started",
        "04:00:00 fr.create: try 1 failed, retry by 04:10:01",
        "04:00:00 nl.nb_train: failed (try 1)",
        "04:00:00 nl: failed",
        "04:00:12 running: de nb_train 10s; up for retry: fr create, retry by 04:10:01; "
        "1/3 country values finished",
    ]
    assert "\x1b[" not in out.getvalue()


def test_through_a_pipe_a_line_comes_at_least_every_interval() -> None:
    out = _Lines("values finished")
    with PlainProgress(title="churn", console=Console(file=out), interval=0.05) as progress:
        progress(RUNS[:2])
        assert out.seen.wait(timeout=30), out.getvalue()


def test_the_live_grid_needs_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(progress_display(Console(file=io.StringIO(), force_terminal=True)), LiveProgress)
    assert isinstance(progress_display(Console(file=io.StringIO(), force_terminal=False)), PlainProgress)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(progress_display(Console(file=io.StringIO(), force_terminal=True)), PlainProgress)


def test_columns_follow_the_given_step_order() -> None:
    rows = [
        TaskProgress("de.delete_instance", -1, None, None, None),
        TaskProgress("de.create_instance", -1, "success", T0, T0 + timedelta(seconds=1)),
        TaskProgress("de.extra", -1, None, None, None),
    ]
    grid = progress_grid(rows, now=T0, steps=["create_instance", "nb_01", "delete_instance"])
    assert grid.steps == ["create_instance", "nb_01", "delete_instance", "extra"]
    assert grid.groups == ["de"]
