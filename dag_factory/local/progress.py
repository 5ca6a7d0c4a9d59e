"""Render a local run: its progress while it runs, and a summary at the end.

Data first (:func:`progress_grid`, :func:`value_statuses`: plain rows), rendering second. In a terminal,
:class:`LiveProgress` redraws a fan-out x step grid (one line per value when the grid is wider than the
terminal); through a pipe or into a file, :class:`PlainProgress` prints plain lines: each failure, retry
and finished value as it happens, and what runs and what waits for a retry at least every
:data:`HEARTBEAT_S` seconds. :func:`progress_display` picks one; either is
:func:`~dag_factory.local.execute.run_dag`'s ``on_progress`` callback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from dag_factory.local.run_records import TaskProgress
from dag_factory.plan.planner import retry_wait_s

HEARTBEAT_S = 30.0  # through a pipe, a line at least this often: a log reader sees the run is alive

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


_FINAL = {"success", "failed", "skipped", "upstream_failed", "removed"}


@dataclass(frozen=True)
class Cell:
    state: str | None
    elapsed: float | None
    retry_by: datetime | None = None  # up for retry: the latest the retry starts (Airflow's jitter)


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


def _retry_by(row: TaskProgress, retry_delay_s: int | None) -> datetime | None:
    if row.state != "up_for_retry" or row.end is None or retry_delay_s is None:
        return None
    return row.end + timedelta(seconds=retry_wait_s(retry_delay_s, row.try_number)[1])


def progress_grid(
    rows: Sequence[TaskProgress],
    now: datetime | None = None,
    steps: Sequence[str] = (),
    retry_delay_s: int | None = None,
) -> ProgressGrid:
    """Arrange task instances into a grid: `steps` first, in their order, then others as they appear.
    ``retry_delay_s``: the DAG's retry delay, to say until when a task waits for its retry."""
    now = now or datetime.now(UTC)
    grid = ProgressGrid(steps=list(steps))
    for row in rows:
        group, step = split_task_id(row.task_id, row.map_index)
        if group not in grid.groups:
            grid.groups.append(group)
        if step not in grid.steps:
            grid.steps.append(step)
        grid.cells[(group, step)] = Cell(row.state, _elapsed(row, now), _retry_by(row, retry_delay_s))
    return grid


def say(console: Console, line: str) -> None:
    """A line as written: never wrapped nor cut at the terminal's width (a path stays whole to copy)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def clock_time(when: datetime) -> str:
    """A time of today as the person running the job reads it: local, to the second."""
    return when.astimezone().strftime("%H:%M:%S")


def cell_text(cell: Cell | None) -> Text:
    if cell is None:
        return Text("")
    label, style = _STATES.get(cell.state or "", _WAITING)
    if cell.retry_by is not None:
        label = f"retry by {clock_time(cell.retry_by)}"
    elif cell.elapsed is not None and cell.state not in {"skipped", "upstream_failed", "removed"}:
        label = f"{label} {cell.elapsed:.1f}s"
    return Text(label, style=style)


@dataclass(frozen=True)
class ValueStatus:
    """Where one row of the grid (a fan-out value's group) is: its state and the step that says why."""

    group: str
    status: str  # failed, up for retry, running, queued, waiting or done
    step: str = ""
    elapsed: float | None = None
    retry_by: datetime | None = None
    done: int = 0
    total: int = 0


def _value_status(group: str, cells: list[tuple[str, Cell]]) -> ValueStatus:
    done = sum(cell.state in _FINAL for _, cell in cells)
    status = ValueStatus(group, "done" if done == len(cells) else "waiting", done=done, total=len(cells))
    # the first step in the first of these states says where the value is
    for states, label in (
        (("failed",), "failed"),
        (("up_for_retry",), "up for retry"),
        (("running", "deferred", "up_for_reschedule", "restarting"), "running"),
        (("queued", "scheduled"), "queued"),
    ):
        found = next(((step, cell) for step, cell in cells if cell.state in states), None)
        if found is not None:
            step, cell = found
            return replace(status, status=label, step=step, elapsed=cell.elapsed, retry_by=cell.retry_by)
    return status


def value_statuses(grid: ProgressGrid) -> list[ValueStatus]:
    return [
        _value_status(
            group, [(step, grid.cells[(group, step)]) for step in grid.steps if (group, step) in grid.cells]
        )
        for group in grid.groups
    ]


def _status_detail(status: ValueStatus) -> str:
    if status.retry_by is not None:
        return f"{status.step}, retry by {clock_time(status.retry_by)}"
    if status.elapsed is not None and status.status == "running":
        return f"{status.step} {status.elapsed:.0f}s"
    return status.step


def render_values(grid: ProgressGrid, *, title: str = "", group_label: str = "group") -> Table:
    """One line per value (the grid's rows folded): fits a narrow terminal whatever the number of steps."""
    table = Table(title=title or None)
    table.add_column(group_label, style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("steps done", justify="right", no_wrap=True)
    for status in value_statuses(grid):
        style = {"failed": "bold red", "up for retry": "magenta", "running": "bold yellow", "done": "green"}
        table.add_row(
            status.group or "(dag)",
            Text(status.status, style=style.get(status.status, "dim")),
            _status_detail(status),
            f"{status.done}/{status.total}",
        )
    return table


def render_progress(grid: ProgressGrid, *, title: str = "", group_label: str = "group") -> Table:
    table = Table(title=title or None, show_lines=False)
    table.add_column(group_label, style="bold")
    for step in grid.steps:
        table.add_column(step)
    for group in grid.groups:
        table.add_row(group or "(dag)", *(cell_text(grid.cells.get((group, step))) for step in grid.steps))
    return table


class _Display:
    """What both progress displays keep: the latest task instances (a lock: the run's watcher sets them,
    a display's own thread reads them) and how to arrange them into a grid."""

    def __init__(
        self,
        *,
        title: str = "",
        group_label: str = "group",
        console: Console | None = None,
        steps: Sequence[str] = (),
        retry_delay_s: int | None = None,
    ) -> None:
        self._rows: list[TaskProgress] = []
        self._steps = list(steps)
        self._retry_delay_s = retry_delay_s
        self._lock = threading.Lock()
        self._title = title
        self._group_label = group_label
        self._console = console or Console()

    @property
    def rows(self) -> list[TaskProgress]:
        with self._lock:
            return list(self._rows)

    def _grid(self, rows: Sequence[TaskProgress], now: datetime | None = None) -> ProgressGrid:
        return progress_grid(rows, now, self._steps, self._retry_delay_s)


class LiveProgress(_Display):
    """A live-updating grid in a terminal; pass the instance as ``on_progress`` to ``run_dag``.

    >>> with LiveProgress(title="churn-model") as live:
    ...     run_dag(..., on_progress=live)
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._live = Live(
            get_renderable=self._renderable, console=self._console, refresh_per_second=4, transient=False
        )

    def __call__(self, rows: list[TaskProgress]) -> None:
        with self._lock:
            self._rows = list(rows)
        self._live.refresh()

    def _renderable(self) -> Table:
        grid = self._grid(self.rows)
        table = render_progress(grid, title=self._title, group_label=self._group_label)
        unbounded = self._console.options.update_width(10_000)  # the grid's natural width, not squeezed
        fits = Measurement.get(self._console, unbounded, table).maximum <= self._console.width
        return table if fits else render_values(grid, title=self._title, group_label=self._group_label)

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


class PlainProgress(_Display):
    """Progress as plain lines, for a pipe or a file (a CI log, `| tee`): each failure, retry and
    finished value when it happens, and every ``interval`` seconds what runs and what waits for a retry
    until when. Pass the instance as ``on_progress`` to ``run_dag``."""

    def __init__(
        self,
        *,
        interval: float = HEARTBEAT_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._interval = interval
        self._clock = clock
        self._told: dict[tuple[str, int], tuple[str | None, int]] = {}  # task -> (state, try) last said
        self._finished: set[str] = set()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _say(self, text: str) -> None:
        say(self._console, f"{clock_time(self._clock())} {text}")

    def __call__(self, rows: list[TaskProgress]) -> None:
        with self._lock:
            self._rows = list(rows)
            for row in rows:
                key, said = (row.task_id, row.map_index), (row.state, row.try_number)
                if self._told.get(key) == said:
                    continue
                self._told[key] = said
                if row.state == "failed":
                    self._say(f"{row.task_id}: failed (try {row.try_number})")
                elif row.state == "up_for_retry":
                    by = _retry_by(row, self._retry_delay_s)
                    when = f", retry by {clock_time(by)}" if by else ""
                    self._say(f"{row.task_id}: try {row.try_number} failed{when}")
            for status in value_statuses(self._grid(self._rows, self._clock())):
                finished = status.status in ("done", "failed") and status.done == status.total
                if finished and status.group not in self._finished:
                    self._finished.add(status.group)
                    self._say(f"{status.group or '(dag)'}: {status.status}")

    def heartbeat(self) -> None:
        """One line: what runs now, what waits for a retry and until when, how many values are done."""
        with self._lock:
            statuses = value_statuses(self._grid(self._rows, self._clock()))
        groups = [s for s in statuses if s.group]
        parts = []
        for kind in ("running", "up for retry", "queued"):
            these = [s for s in statuses if s.status == kind]
            if these:
                parts.append(
                    f"{kind}: " + ", ".join(f"{s.group or '(dag)'} {_status_detail(s)}" for s in these)
                )
        finished = sum(s.status in ("done", "failed") and s.done == s.total for s in groups)
        parts.append(f"{finished}/{len(groups)} {self._group_label} values finished")
        self._say("; ".join(parts))

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            self.heartbeat()

    def __enter__(self) -> PlainProgress:
        self._say(f"{self._title}: started")
        self._ticker = threading.Thread(target=self._tick, name="dag-factory-progress", daemon=True)
        self._ticker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()


def progress_display(console: Console, **options: Any) -> LiveProgress | PlainProgress:
    """The live grid in a terminal; plain lines through a pipe, into a file or on a dumb terminal."""
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveProgress(console=console, **options)
    return PlainProgress(console=console, **options)


@dataclass(frozen=True)
class SummaryRow:
    """The outcome for one fan-out value, as shown after a run."""

    value: str
    status: str
    duration: float | None = None
    executed_notebook: str = ""
    rows_delivered: dict[str, int | None] = field(default_factory=dict)  # per target (None: not delivered)
    error: str = ""


def render_summary(rows: Sequence[SummaryRow], *, value_label: str = "value") -> Table:
    """A line per value: its status and time. Paths, rows and errors follow the table as plain lines
    (:func:`summary_lines`): a table cell would cut them at the terminal's width."""
    table = Table()
    table.add_column(value_label, style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    for row in rows:
        _label, style = _STATES.get(row.status, (row.status, ""))
        table.add_row(
            row.value, Text(row.status, style=style), "" if row.duration is None else f"{row.duration:.1f}s"
        )
    return table


def summary_lines(rows: Sequence[SummaryRow]) -> list[str]:
    """Rows delivered per target, then each failed value's reason and executed notebook (its path on a
    line of its own, never cut)."""
    lines = []
    targets = list(dict.fromkeys(target for row in rows for target in row.rows_delivered))
    if targets:
        lines.append("rows delivered, per target:")
    for target in targets:
        counts = [(row.value, row.rows_delivered.get(target)) for row in rows]
        lines.append(f"  {target}: " + ", ".join(f"{v} {'-' if n is None else n}" for v, n in counts))
    for row in rows:
        if row.status != "success":
            lines += [
                f"{row.value} {row.status}: {row.error}",
                "  executed notebook:",
                f"  {row.executed_notebook}",
            ]
    return lines
