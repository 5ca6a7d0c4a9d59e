"""`dag-factory diff`: what a spec change does to the generated DAG, for a PR comment or a terminal.

Both sides are described (review.plan_view) for the same environment and compared: groups (fan-out
values) and tasks added or removed, task details (instance type, notebook, kernel, timeouts, targets),
schedule, parameters, settings, and the estimated cost per run before and after.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dag_factory.errors import DagFactoryError, Diagnostic, SpecError
from dag_factory.load.specs import LoadedPlatform, LoadedSpec, load_spec
from dag_factory.review.model import Review
from dag_factory.review.plan_view import describe, schedule_head, value_text

_SETTINGS: tuple[tuple[str, Callable[[Review], object]], ...] = (
    ("owner", lambda r: r.owner),
    ("description", lambda r: r.description),
    ("start date", lambda r: r.start_date),
    ("catchup", lambda r: r.catchup),
    ("retries", lambda r: f"{r.retries} (every {r.retry_delay})"),
    ("tags", lambda r: ", ".join(r.tags)),
    ("notify on failure", lambda r: ", ".join(r.notify.get("on_failure", [])) or "-"),
    ("instance type", lambda r: r.compute.instance_type),
    ("volume", lambda r: f"{r.compute.volume_size_gb} GB"),
    ("isolation", lambda r: r.compute.isolation),
    ("max parallel", lambda r: r.compute.max_parallel),
    ("group timeout", lambda r: r.compute.timeout),
    ("fan-out name", lambda r: (r.fan_out.name if r.fan_out else None) or "-"),
    ("code", lambda r: r.code),
)


class DiffError(DagFactoryError):
    pass


@dataclass
class Change:
    """One line of the diff: what, before, after (None: absent on that side)."""

    what: str
    before: str | None
    after: str | None


@dataclass
class SpecDiff:
    old_label: str
    new_label: str
    env: str
    dag_id: str
    groups_added: list[str] = field(default_factory=list)
    groups_removed: list[str] = field(default_factory=list)
    tasks: list[Change] = field(default_factory=list)
    schedule: Change | None = None
    settings: list[Change] = field(default_factory=list)
    parameters: list[Change] = field(default_factory=list)
    deliver: list[Change] = field(default_factory=list)
    cost: Change | None = None
    hours: Change | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.groups_added
            or self.groups_removed
            or self.tasks
            or self.schedule
            or self.settings
            or self.parameters
            or self.deliver
            or (self.cost and self.cost.before != self.cost.after)
        )


def _pairs(old: dict[str, str], new: dict[str, str]) -> list[Change]:
    keys = list(dict.fromkeys([*old, *new]))
    return [Change(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def _task_map(review: Review) -> dict[str, str]:
    return {
        t.task_id: t.detail + (f" [timeout {t.timeout}]" if t.timeout != "-" else "") for t in review.tasks
    }


def _param_map(review: Review) -> dict[str, str]:
    params = review.parameters
    out = {f"every notebook: {k}": value_text(v) for k, v in params.global_.items()}
    for stem, own in params.per_notebook.items():
        out.update({f"{stem}: {k}": value_text(v) for k, v in own.items()})
    for value, own in params.per_value.items():
        out.update({f"only {value}: {k}": value_text(v) for k, v in own.items()})
    return out


def _money(review: Review) -> str:
    cost = review.estimate.cost_max_usd
    return f"${cost:.2f}" if cost is not None else "unknown (no price)"


def compare(old: Review, new: Review, old_label: str, new_label: str) -> SpecDiff:
    diff = SpecDiff(old_label, new_label, new.env, new.dag_id)
    old_groups, new_groups = old.groups, new.groups
    diff.groups_added = [g for g in new_groups if g not in old_groups]
    diff.groups_removed = [g for g in old_groups if g not in new_groups]
    diff.tasks = _pairs(_task_map(old), _task_map(new))
    if old.schedule != new.schedule:
        shown = [f"{schedule_head(r, 'null')} ({r.schedule.text})" for r in (old, new)]
        diff.schedule = Change("schedule", shown[0], shown[1])
    settings_old = {name: str(get(old)) for name, get in _SETTINGS}
    settings_new = {name: str(get(new)) for name, get in _SETTINGS}
    diff.settings = _pairs(settings_old, settings_new)
    diff.parameters = _pairs(_param_map(old), _param_map(new))
    diff.deliver = _pairs({d: d for d in old.deliver}, {d: d for d in new.deliver})
    diff.cost = Change("estimated cost per run (max)", _money(old), _money(new))
    hours = [f"{r.estimate.instance_hours_max:g} h on {r.estimate.instances} instances" for r in (old, new)]
    diff.hours = Change("instance-hours per run (max)", hours[0], hours[1])
    return diff


def _line(change: Change) -> str:
    if change.before is None:
        return f"+ {change.what}: {change.after}"
    if change.after is None:
        return f"- {change.what}: {change.before}"
    return f"~ {change.what}: {change.before} -> {change.after}"


def _sections(diff: SpecDiff) -> list[tuple[str, list[str]]]:
    groups = [f"+ {g}" for g in diff.groups_added] + [f"- {g}" for g in diff.groups_removed]
    sections = [
        ("groups (fan-out values)", groups),
        ("tasks in every group", [_line(c) for c in diff.tasks]),
        ("schedule", [_line(diff.schedule)] if diff.schedule else []),
        ("settings", [_line(c) for c in diff.settings]),
        ("parameters", [_line(c) for c in diff.parameters]),
        ("delivery targets", [_line(c) for c in diff.deliver]),
    ]
    return [(title, lines) for title, lines in sections if lines]


def render_text(diff: SpecDiff) -> str:
    lines = [f"{diff.dag_id} ({diff.env}): {diff.old_label} -> {diff.new_label}"]
    if diff.empty:
        lines.append("no change to the generated dag")
    for title, body in _sections(diff):
        lines += ["", title, *(f"  {line}" for line in body)]
    lines += ["", "estimate per run (max)"]
    for change in (diff.hours, diff.cost):
        if change is not None:
            lines.append(f"  {change.what.split(' per run')[0]}: {change.before} -> {change.after}")
    return "\n".join(lines)


def _md(text: str | None) -> str:
    return "" if text is None else f"`{text}`".replace("|", "\\|")


def render_markdown(diff: SpecDiff) -> str:
    lines = [
        f"### dag-factory diff: `{diff.dag_id}` in `{diff.env}`",
        "",
        f"`{diff.old_label}` → `{diff.new_label}`",
        "",
    ]
    if diff.empty:
        lines += ["No change to the generated DAG.", ""]
    if diff.groups_added or diff.groups_removed:
        added = ", ".join(f"`{g}`" for g in diff.groups_added) or "-"
        removed = ", ".join(f"`{g}`" for g in diff.groups_removed) or "-"
        lines += [f"**Groups** (fan-out values): added {added}; removed {removed}", ""]
    tables = [
        ("Tasks in every group", diff.tasks),
        ("Schedule", [diff.schedule] if diff.schedule else []),
        ("Settings", diff.settings),
        ("Parameters", diff.parameters),
        ("Delivery targets", diff.deliver),
    ]
    for title, changes in tables:
        if not changes:
            continue
        lines += [f"**{title}**", "", "| | before | after |", "|---|---|---|"]
        lines += [f"| {c.what} | {_md(c.before) or '—'} | {_md(c.after) or '—'} |" for c in changes]
        lines.append("")
    lines += ["| estimate per run | before | after |", "|---|---|---|"]
    for change in (diff.hours, diff.cost):
        if change is not None:
            lines.append(f"| {change.what} | {change.before} | {change.after} |")
    return "\n".join(lines)


def render_json(diff: SpecDiff) -> str:
    return json.dumps(asdict(diff), indent=2)


# The first is the default (a PR comment).
RENDERERS: dict[str, Callable[[SpecDiff], str]] = {
    "markdown": render_markdown,
    "text": render_text,
    "json": render_json,
}


def spec_at_revision(spec: Path, rev: str, platform: LoadedPlatform | None) -> LoadedSpec:
    """The spec as it was at a git revision (`git show REV:./path`), planned as if at its path today."""
    folder = spec.resolve().parent
    shown = subprocess.run(
        ["git", "-C", str(folder), "show", f"{rev}:./{spec.name}"], capture_output=True, check=False
    )
    if shown.returncode != 0:
        message = shown.stderr.decode(errors="replace").strip().splitlines()
        raise DiffError(f"git show {rev}:{spec}: {message[-1] if message else 'failed'}")
    label = f"{spec}@{rev}"
    with tempfile.TemporaryDirectory(prefix="dag-factory-diff-") as tmp:
        old_file = Path(tmp) / spec.name
        old_file.write_bytes(shown.stdout)
        try:
            loaded = load_spec(old_file, platform)
        except SpecError as exc:
            raise SpecError(_relabel(d, str(old_file), label) for d in exc.diagnostics) from None
    return replace(loaded, path=spec)


def _relabel(d: Diagnostic, old: str, new: str) -> Diagnostic:
    return replace(d, path=new) if d.path == old else d


def diff_specs(old: LoadedSpec, new: LoadedSpec, env: str, old_label: str, new_label: str) -> SpecDiff:
    return compare(describe(old, env), describe(new, env), old_label, new_label)
