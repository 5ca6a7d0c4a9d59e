"""How validation results are shown: text for people, json for machines, annotations for GitHub.

Warnings are shown with the errors (text: `path:line:col: warning: ...`, json: `"severity"`, GitHub:
`::warning`) and counted apart; they never make a file invalid or the exit code 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from dag_factory.validate.check import FileResult


def summary_line(results: list[FileResult]) -> str:
    bad = sum(not r.valid for r in results)
    problems = sum(len(r.errors) for r in results)
    warnings = sum(len(r.warnings) for r in results)
    text = f"{len(results)} file(s) checked: "
    text += f"{bad} invalid, {problems} problem(s)" if bad else "all valid"
    return text + (f", {warnings} warning(s)" if warnings else "")


def render_text(results: list[FileResult]) -> str:
    lines = [d.render() for r in results for d in r.diagnostics]
    return "\n".join([*lines, summary_line(results)])


def render_warnings(results: list[FileResult]) -> str:
    """Only the warnings (for commands that go on when the specs are valid: deploy, run)."""
    return "\n".join(d.render() for r in results for d in r.warnings)


def render_json(results: list[FileResult]) -> str:
    payload = {
        "valid": all(r.valid for r in results),
        "files": [
            {
                "path": r.path,
                "kind": r.kind,
                "valid": r.valid,
                "diagnostics": [d.as_dict() for d in r.diagnostics],
            }
            for r in results
        ],
    }
    return json.dumps(payload, indent=2)


def _escape_github(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def render_github(results: list[FileResult]) -> str:
    """GitHub workflow annotations: one ::error or ::warning line per diagnostic."""
    lines = []
    for d in (d for r in results for d in r.diagnostics):
        message = f"{d.loc}: {d.message}" if d.loc else d.message
        if d.hint:
            message += f" ({d.hint})"
        props = f"file={d.path},line={d.line},col={d.col}"
        lines.append(f"::{d.severity} {props},title=dag-factory::{_escape_github(message)}")
    lines.append(summary_line(results))
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[list[FileResult]], str]] = {
    "text": render_text,
    "json": render_json,
    "github": render_github,
}
