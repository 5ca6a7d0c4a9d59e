"""Render a local run: a live fan-out x step grid while it runs, and a summary table at the end.

Data first (:func:`progress_grid`, plain rows), rendering second (:func:`render_progress`,
:func:`render_summary`); :class:`LiveProgress` ties a rich ``Live`` display to
:func:`~dag_factory.local.execute.run_dag`'s ``on_progress`` callback.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dag_factory.local.execute import TaskProgress

UNGROUPED = ""

# Airflow task-instance state -> (label, rich style)
_STATES: dict[str, tuple[str, str]] = {
    "success": ("done", "green"),
    "running": ("running", "bold yellow"),
    "failed": ("failed", "bold red"),
    "upstream_failed": ("upstream failed", "red"),
    "skipped": ("skipped", "dim"),
    "up_for_retry": ("up for retry", "magenta"),
    "up_for_reschedule": ("rescheduled", "magenta"),
    "queued": ("queued", "cyan"),
    "scheduled": ("scheduled", "cyan"),
    "deferred": ("deferred", "blue"),
    "restarting": ("restarting", "magenta"),
    "removed": ("removed", "dim"),
}
_WAITING = ("waiting", "dim")


@dataclass(frozen=True)
class Cell:
    state: str | None
    elapsed: float | None


@dataclass
class ProgressGrid:
    """Task instances arranged as rows (task-group prefix = fan-out value) x columns (steps)."""

    groups: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)


def split_task_id(task_id: str, map_index: int = -1) -> tuple[str, str]:
    """``"de.run_notebooks"`` -> ``("de", "run_notebooks")``; a task outside a group -> ``("", id)``."""
    group, sep, step = task_id.partition(".")
    if not sep:
        group, step = UNGROUPED, task_id
    return group, step if map_index < 0 else f"{step}[{map_index}]"


def _elapsed(row: TaskProgress, now: datetime) -> float | None:
    if row.start is None:
        return None
    return ((row.end or now) - row.start).total_seconds()


def progress_grid(
    rows: Sequence[TaskProgress], now: datetime | None = None, steps: Sequence[str] = ()
) -> ProgressGrid:
    """Arrange task instances into a grid: `steps` first, in their order, then others as they appear."""
    now = now or datetime.now(UTC)
    grid = ProgressGrid(steps=list(steps))
    for row in rows:
        group, step = split_task_id(row.task_id, row.map_index)
        if group not in grid.groups:
            grid.groups.append(group)
        if step not in grid.steps:
            grid.steps.append(step)
        grid.cells[(group, step)] = Cell(row.state, _elapsed(row, now))
    return grid


def cell_text(cell: Cell | None) -> Text:
    if cell is None:
        return Text("")
    label, style = _STATES.get(cell.state or "", _WAITING)
    if cell.elapsed is not None and cell.state not in {"skipped", "upstream_failed", "removed"}:
        label = f"{label} {cell.elapsed:.1f}s"
    return Text(label, style=style)


def render_progress(grid: ProgressGrid, *, title: str = "", group_label: str = "group") -> Table:
    table = Table(title=title or None, show_lines=False)
    table.add_column(group_label, style="bold")
    for step in grid.steps:
        table.add_column(step)
    for group in grid.groups:
        table.add_row(group or "(dag)", *(cell_text(grid.cells.get((group, step))) for step in grid.steps))
    return table


class LiveProgress:
    """A live-updating grid; pass the instance as ``on_progress`` to ``run_dag``.

    >>> with LiveProgress(title="churn-model") as live:
    ...     run_dag(..., on_progress=live)
    """

    def __init__(
        self,
        *,
        title: str = "",
        group_label: str = "group",
        console: Console | None = None,
        steps: Sequence[str] = (),
    ) -> None:
        self._rows: list[TaskProgress] = []
        self._steps = list(steps)
        self._lock = threading.Lock()
        self._title = title
        self._group_label = group_label
        self._live = Live(
            get_renderable=self._renderable, console=console, refresh_per_second=4, transient=False
        )

    def __call__(self, rows: list[TaskProgress]) -> None:
        with self._lock:
            self._rows = list(rows)
        self._live.refresh()

    @property
    def rows(self) -> list[TaskProgress]:
        with self._lock:
            return list(self._rows)

    def _renderable(self) -> Table:
        grid = progress_grid(self.rows, steps=self._steps)
        return render_progress(grid, title=self._title, group_label=self._group_label)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)


@dataclass(frozen=True)
class SummaryRow:
    """The outcome for one fan-out value, as shown after a run."""

    value: str
    status: str
    duration: float | None = None
    executed_notebook: str = ""
    rows_delivered: int | None = None
    error: str = ""


def render_summary(rows: Sequence[SummaryRow], *, title: str = "", value_label: str = "value") -> Table:
    table = Table(title=title or None)
    table.add_column(value_label, style="bold")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("executed notebook", overflow="fold")
    table.add_column("rows", justify="right")
    table.add_column("error", overflow="fold")
    for row in rows:
        _label, style = _STATES.get(row.status, (row.status, ""))
        table.add_row(
            row.value,
            Text(row.status, style=style),
            "" if row.duration is None else f"{row.duration:.1f}s",
            row.executed_notebook,
            "" if row.rows_delivered is None else str(row.rows_delivered),
            Text(row.error, style="red") if row.error else "",
        )
    return table
