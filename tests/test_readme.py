"""The README is a front page that cannot drift (issue 30): every command in its table exists, every
relative link in it and in docs/*.md resolves, its `validate` and `plan` examples are what the commands
print today, and it stays within 150 lines.

An example is a ```console block in README.md or docs/*.md whose first line is `$ dag-factory validate`,
`plan` or `diff`: each `$ dag-factory ...` line in it (a trailing backslash continues it) is run from
the repository root through Typer's runner and must print the lines below it, up to the next `$` line.
A line `...` in the expected output stands for any number of lines. Blocks that start otherwise (a
session in another folder, a run that takes minutes) are not run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.errors import EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, EXIT_USAGE
from tests.paths import REPO

README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_LINES = 150
COMMANDS_HEADING = "## Commands and exit codes"
CHECKED = ("validate", "plan", "diff")
ELLIPSIS = "..."

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(path.read_text()):
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> list[tuple[str, str]]:
    """(where, target) of every link and image outside code."""
    found = []
    for number, line in _prose_lines(path.read_text()):
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            found.append((f"{path.relative_to(REPO)}:{number}", match.group(1)))
    return found


def _broken(path: Path, target: str) -> str | None:
    """Why a relative link does not resolve, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not ours to check
        return None
    file_part, _, anchor = target.partition("#")
    resolved = (path.parent / file_part).resolve() if file_part else path
    if not resolved.exists():
        return f"{target}: no such file {resolved}"
    if not resolved.is_relative_to(REPO):
        return f"{target}: outside the repository"
    if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
        return f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}"
    return None


@dataclass(frozen=True)
class Example:
    where: str
    args: list[str]
    expected: list[str]


def _console_blocks(path: Path) -> list[tuple[int, list[str]]]:
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if current is None and line.strip() == "```console":
            current, start = [], number + 1
        elif current is not None and _FENCE.match(line.strip()):
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _session(lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """(index, command, output lines) of each `$ ` line of a console block."""
    steps, index = [], 0
    while index < len(lines):
        line, at = lines[index], index
        index += 1
        if not line.startswith("$ "):
            continue
        command = line[2:]
        while command.endswith("\\") and index < len(lines):
            command = command[:-1] + lines[index].strip()
            index += 1
        output = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        steps.append((at, command, output))
    return steps


def _examples(path: Path) -> list[Example]:
    examples = []
    for start, lines in _console_blocks(path):
        first = lines[0].split() if lines else []
        if first[:2] != ["$", "dag-factory"] or len(first) < 3 or first[2] not in CHECKED:
            continue
        for at, command, output in _session(lines):
            args = shlex.split(command)
            if args[0] == "dag-factory" and args[1] in CHECKED and output:
                examples.append(Example(f"{path.relative_to(REPO)}:{start + at}", args[1:], output))
    return examples


def _matches(expected: list[str], actual: str) -> bool:
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == ELLIPSIS else re.escape(line) + r"\n" for line in expected)
    return re.fullmatch(pattern, actual if actual.endswith("\n") else actual + "\n") is not None


def _command_table() -> list[str]:
    """The commands named in the first cell of each row of the README's command table."""
    text = README.read_text()
    assert COMMANDS_HEADING in text, f"README.md has no {COMMANDS_HEADING!r} section"
    section = text.split(COMMANDS_HEADING, 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if match := re.match(r"^\|\s*`(?:dag-factory\s+)?([a-z][a-z-]*)", line):
            names.append(match.group(1))
    return names


ALL_EXAMPLES = [example for path in DOCS for example in _examples(path)]


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md: {len(lines)} lines, at most {MAX_LINES}: move text to docs/"


def test_every_command_in_the_readme_table_exists_and_every_command_is_in_it() -> None:
    registered = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    named = _command_table()
    assert named, "the README's command table names no command"
    assert len(named) == len(set(named)), f"a command has two rows: {named}"
    assert not set(named) - registered, f"not commands of dag-factory: {sorted(set(named) - registered)}"
    assert not registered - set(named), f"missing from the README's table: {sorted(registered - set(named))}"
    for name in named:
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == EXIT_OK, f"dag-factory {name} --help: {result.output}"


def test_the_readme_states_the_exit_codes() -> None:
    section = README.read_text().split(COMMANDS_HEADING, 1)[1].split("\n## ", 1)[0]
    codes = {EXIT_OK: "ok", EXIT_INVALID: "invalid", EXIT_USAGE: "usage", EXIT_INTERNAL: "internal"}
    for code, meaning in codes.items():
        assert re.search(rf"`{code}`[^|\n]*{meaning}", section), f"exit code {code} ({meaning}) is not stated"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path: Path) -> None:
    broken = [f"{where}: {why}" for where, target in _links(path) if (why := _broken(path, target))]
    assert not broken, "\n".join(broken)


def test_the_readme_has_a_validate_and_a_plan_example() -> None:
    shown = {example.args[0] for example in ALL_EXAMPLES if example.where.startswith("README.md:")}
    assert {"validate", "plan"} <= shown, f"README.md's checked examples: {sorted(shown)}"


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=[e.where for e in ALL_EXAMPLES])
@pytest.mark.usefixtures("repo_root")
def test_example_prints_what_the_command_prints(example: Example, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAG_FACTORY_ENV", raising=False)
    result = CliRunner().invoke(app, example.args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if not _matches(example.expected, result.output):
        shown = "\n".join(example.expected)
        pytest.fail(
            f"{example.where}: `dag-factory {shlex.join(example.args)}` prints today:\n{result.output}\n"
            f"the docs show:\n{shown}",
            pytrace=False,
        )


SPEC_GUIDE = REPO / "docs" / "spec.md"
WORKED_EXAMPLE = "### Worked example: a project outside this repository"


def test_the_worked_example_outside_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/spec.md's session, replayed as it says: ds-repo beside data-engineering, the demo's notebooks."""
    text = SPEC_GUIDE.read_text()
    assert WORKED_EXAMPLE in text, f"docs/spec.md has no {WORKED_EXAMPLE!r}"
    heading_line = text[: text.index(WORKED_EXAMPLE)].count("\n") + 1
    start, block = next((s, b) for s, b in _console_blocks(SPEC_GUIDE) if s > heading_line)
    project = tmp_path / "ds-repo" / "jobs" / "churn"
    (project / "notebooks").mkdir(parents=True)
    (tmp_path / "ds-repo" / ".git").mkdir()
    demo = REPO / "examples" / "churn-demo"
    for name in ("notebooks/01_features.ipynb", "notebooks/02_train.ipynb", "requirements.txt"):
        (project / name).write_bytes((demo / name).read_bytes())
    (tmp_path / "data-engineering" / "project_configs").mkdir(parents=True)
    platform = REPO / "project_configs" / "platform.yaml"
    (tmp_path / "data-engineering" / "project_configs" / "platform.yaml").write_text(platform.read_text())
    monkeypatch.chdir(tmp_path / "ds-repo")
    monkeypatch.delenv("DAG_FACTORY_PLATFORM", raising=False)
    steps = _session(block)
    commands = [c.split()[1] for _, c, _ in steps if c.startswith("dag-factory")]
    assert commands == ["init", "validate", "validate", "dags"], commands
    for at, command, output in steps:
        args = shlex.split(command)
        if args[0] == "export":
            name, _, value = args[1].partition("=")
            monkeypatch.setenv(name, value)
            continue
        result = CliRunner().invoke(app, args[1:])
        if not _matches(output, result.output):
            pytest.fail(f"docs/spec.md:{start + at}: `{command}` prints:\n{result.output}", pytrace=False)
    written = (tmp_path / "ds-repo" / "dags" / "churn.py").read_text()
    assert '"../../data-engineering/project_configs/platform.yaml"' in written, written
    # what the guide says the same `dags` command does without a platform file
    monkeypatch.delenv("DAG_FACTORY_PLATFORM")
    refused = CliRunner().invoke(app, ["dags", "jobs/churn/churn.yaml", "--output", "other-dags"])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert refused.output.startswith("error: no DAG file written: no platform.yaml found for jobs/churn/"), (
        refused
    )
    assert not (tmp_path / "ds-repo" / "other-dags" / "churn.py").exists()
