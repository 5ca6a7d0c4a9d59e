"""One base exception and located diagnostics: `path:line:col: loc: message (hint)`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one file, at a 1-based line and column.

    A warning (`severity="warning"`) is shown but does not make the file invalid: something the
    checks could not decide, or a likely mistake that is still a valid spec.
    """

    path: str
    line: int
    col: int
    loc: str
    message: str
    hint: str = ""
    severity: Literal["error", "warning"] = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def render(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        if self.severity != "error":
            where += f": {self.severity}"
        text = f"{where}: {self.loc}: {self.message}" if self.loc else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "loc": self.loc,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
        }


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice close enough to `word` to be what was meant, or None."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(choice: str) -> str:
    return f"did you mean {choice!r}?"


def suggest(word: str, choices: Iterable[str]) -> str:
    """A did-you-mean hint, or the list of choices when nothing is close."""
    options = sorted(set(choices))
    close = closest(word, options)
    if close is not None:
        return did_you_mean(close)
    return f"expected one of: {', '.join(options)}" if options else ""


class DagFactoryError(Exception):
    """Base of every error this package raises on purpose."""


class SpecError(DagFactoryError):
    """A spec or platform file is invalid; carries every diagnostic found in it."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(d.render() for d in self.diagnostics))


class UsageError(DagFactoryError):
    """The command was called wrongly (a missing file, a bad option value): exit code 2."""


# Exit codes of every command (docs/cli.md, "Exit codes").
EXIT_OK = 0  # done, everything valid
EXIT_INVALID = 1  # invalid input (a spec, a platform file), or the job/run failed
EXIT_USAGE = 2  # wrong arguments, a file or folder that does not exist
EXIT_INTERNAL = 3  # a bug in dag-factory: please report it with DAG_FACTORY_DEBUG=1 output
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report a process ended by SIGINT
