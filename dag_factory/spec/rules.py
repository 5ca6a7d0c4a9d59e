"""Errors that carry where they are: a rule names the field path it means, never words to search for.

A validator that looks at several values (duplicates, names that clash, keys that must exist
elsewhere) raises `violations_error` with one `Violation` per offending entry; pydantic prepends
the path of the model or field the validator belongs to, so `load.diagnose` gets the full path of
each entry. A single-value check raises `rule_error` to give its own message and fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

RULE_ERROR = "spec_rule"  # the pydantic error type; ctx holds "message" and "hint"
KEY = "[key]"  # as in pydantic's own loc of a bad dict key: the error is about the key itself

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Violation:
    """One offending entry, at `loc` relative to the model or field whose validator found it."""

    loc: Path
    message: str
    hint: str = ""
    value: Any = None
    key: bool = False  # the key at loc is wrong, not its value
    quote: bool = False  # a plain scalar yaml read as another type: show it as written, suggest quotes


def rule_error(message: str, hint: str = "", quote: bool = False) -> PydanticCustomError:
    # The message travels in ctx, not in the template: pydantic would substitute "{...}" in it.
    return PydanticCustomError(RULE_ERROR, "{message}", {"message": message, "hint": hint, "quote": quote})


def violations_error(title: str, violations: Iterable[Violation]) -> ValidationError | None:
    """A ValidationError with one error per violation, or None when there are none."""
    details: list[InitErrorDetails] = [
        {
            "type": rule_error(v.message, v.hint, v.quote),
            "loc": (*v.loc, KEY) if v.key else v.loc,
            "input": v.value,
        }
        for v in violations
    ]
    return ValidationError.from_exception_data(title, details) if details else None


def raise_violations(title: str, violations: Iterable[Violation]) -> None:
    error = violations_error(title, violations)
    if error is not None:
        raise error
