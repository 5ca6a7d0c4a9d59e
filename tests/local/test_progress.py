"""Progress rendering: plain data in, rich tables out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from dag_factory.local.execute import TaskProgress
from dag_factory.local.progress import (
    LiveProgress,
    SummaryRow,
    progress_grid,
    render_progress,
    render_summary,
    split_task_id,
)

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


def test_summary_table() -> None:
    text = _text(
        render_summary(
            [
                SummaryRow("de", "success", 12.34, "out/de/02_train.ipynb", 500),
                SummaryRow("fr", "failed", 3.0, "out/fr/02_train.ipynb", None, "forced failure for fr"),
            ],
            value_label="country",
        )
    )
    assert "12.3s" in text and "500" in text and "forced failure for fr" in text and "country" in text


def test_columns_follow_the_given_step_order() -> None:
    rows = [
        TaskProgress("de.delete_instance", -1, None, None, None),
        TaskProgress("de.create_instance", -1, "success", T0, T0 + timedelta(seconds=1)),
        TaskProgress("de.extra", -1, None, None, None),
    ]
    grid = progress_grid(rows, now=T0, steps=["create_instance", "nb_01", "delete_instance"])
    assert grid.steps == ["create_instance", "nb_01", "delete_instance", "extra"]
    assert grid.groups == ["de"]
