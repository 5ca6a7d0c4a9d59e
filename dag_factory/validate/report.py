"""How validation results are shown: text for people, json for machines, annotations for GitHub."""

from __future__ import annotations

import json
from collections.abc import Callable

from dag_factory.validate.check import FileResult


def render_text(results: list[FileResult]) -> str:
    lines = [d.render() for r in results for d in r.diagnostics]
    bad = sum(not r.valid for r in results)
    problems = sum(len(r.diagnostics) for r in results)
    if bad:
        lines.append(f"{len(results)} file(s) checked: {bad} invalid, {problems} problem(s)")
    else:
        lines.append(f"{len(results)} file(s) checked: all valid")
    return "\n".join(lines)


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
    """GitHub workflow annotations: one ::error line per problem."""
    lines = []
    for d in (d for r in results for d in r.diagnostics):
        message = f"{d.loc}: {d.message}" if d.loc else d.message
        if d.hint:
            message += f" ({d.hint})"
        props = f"file={d.path},line={d.line},col={d.col}"
        lines.append(f"::error {props},title=dag-factory::{_escape_github(message)}")
    lines.append(render_text(results).splitlines()[-1])
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[list[FileResult]], str]] = {
    "text": render_text,
    "json": render_json,
    "github": render_github,
}
