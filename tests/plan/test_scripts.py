"""The command builder: parameters reach papermill byte for byte, whatever they contain."""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import nbformat
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dag_factory.plan.guard import (
    EXIT_MISSING_INPUT,
    EXIT_NOTEBOOK_ERROR,
    StepBounds,
    classify_exit,
    guarded,
    retry_verdict,
)
from dag_factory.plan.scripts import (
    HostLayout,
    encode_parameters,
    html_path,
    notebook_command,
    output_prefix_template,
    runtime_packages,
    runtime_parameters_json,
)
from tests.notebooks import write_notebook
from tests.paths import REPO

VENV_BIN = Path(sys.executable).parent
NASTY = [
    "$(rm -rf /)",
    "`id`",
    "it's",
    'say "hi"',
    "a\nb",
    "tab\there",
    "ünïcødé ✓",
    "{{ run_id }}",
    "\\",
    "%s",
]

names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"logical_date", "run_id", "output_prefix", "in", "is", "if", "or", "as", "and", "not"}
)
scalars = st.one_of(
    st.text(max_size=30),
    st.sampled_from(NASTY),
    st.integers(-(10**12), 10**12),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)


def _render(command: str, run_id: str, ds: str) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(command).render(run_id=run_id, ds=ds)


def _notebook(path: Path, names: list[str], *, after: str | None = None) -> None:
    parameters = "\n".join(f"{n} = None" for n in names) or "pass"
    write_notebook(path, after or "print('ok')", parameters=parameters)


def _injected(output: Path) -> dict[str, Any]:
    nb = nbformat.read(output, as_version=4)
    cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    found: dict[str, Any] = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign)
        found[node.targets[0].id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
    return found


RUNTIME = ["logical_date", "run_id", "output_prefix"]
# the notebook's second cell: every parameter as the kernel holds it, as a Python literal (repr keeps
# the types: int/float/bool/None/str, list/dict), read back with ast.literal_eval
ECHO_MARK = "kernel values: "


def _echo_cell(names: list[str]) -> str:
    pairs = ", ".join(f"{n!r}: {n}" for n in names)
    return f"print({ECHO_MARK!r} + repr({{{pairs}}}))"


def _run(tmp: Path, params: dict[str, Any], run_id: str, *, execute: bool = False) -> Path:
    """The product's notebook step for `params`, rendered as Airflow would and run under bash; the
    executed notebook's path. Papermill only injects (`--prepare-only`, no kernel) unless `execute`."""
    project = tmp / "work" / "project"
    (project / "nb").mkdir(parents=True, exist_ok=True)
    names = [*params, *RUNTIME]
    _notebook(project / "nb" / "n.ipynb", names, after=_echo_cell(names) if execute else None)
    layout = HostLayout(
        workdir=str(tmp / "work"), activate=f"export PATH={VENV_BIN}:$PATH", sync="true", install="true"
    )
    head = str(tmp / "out")
    out_nb = f"{output_prefix_template(head, 'de')}/n.ipynb"
    command = notebook_command(
        layout, "nb/n.ipynb", out_nb, "python3", params, runtime_parameters_json(head, "de")
    )
    if not execute:
        command = command.replace("--log-output", "--prepare-only")
    command = guarded(command, StepBounds(str(tmp / "work"), "nb_n", 600, 3600))
    rendered = _render(command, run_id, "2026-01-05")
    (tmp / "out" / run_id / "de").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["bash", "-c", rendered], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    return tmp / "out" / run_id / "de" / "n.ipynb"


def _kernel_values(output: Path) -> dict[str, Any]:
    """What the echo cell printed: the parameters as the kernel held them after the injected cell."""
    nb = nbformat.read(output, as_version=4)
    printed = "".join(
        out.get("text", "")
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("name") == "stdout"
    )
    lines = [line for line in printed.splitlines() if line.startswith(ECHO_MARK)]
    assert len(lines) == 1, f"the echo cell printed {printed!r}"
    values = ast.literal_eval(lines[0].removeprefix(ECHO_MARK))
    assert isinstance(values, dict)
    return values


def _assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal and of the same type all the way down (1 is not 1.0 nor True; a list is not a tuple)."""
    assert type(actual) is type(expected), f"{where}: {actual!r} ({type(actual).__name__}), not {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys {list(actual)}, not {list(expected)}"
        for key, value in expected.items():
            _assert_same(actual[key], value, f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{where}: {actual!r}, not {expected!r}"
        for i, value in enumerate(expected):
            _assert_same(actual[i], value, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r}, not {expected!r}"


def test_encode_round_trip_keeps_types() -> None:
    params = {"a": "$(rm -rf /)", "b": 1, "c": 1.5, "d": None, "e": [True, "x"], "f": {"g": "ü\n"}, "h": "no"}
    # what papermill's -b does with it: base64, then YAML
    assert yaml.safe_load(base64.b64decode(encode_parameters(params))) == params
    assert set(encode_parameters(params)) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    )


def test_runtime_json_renders_to_valid_json_without_single_quotes() -> None:
    rendered = _render(
        runtime_parameters_json("s3://b/p/d", "de"), "manual__2026-01-05T00:00:00+00:00", "2026-01-05"
    )
    assert "'" not in rendered
    assert json.loads(rendered) == {
        "logical_date": "2026-01-05",
        "run_id": "manual__2026-01-05T00:00:00+00:00",
        "output_prefix": "s3://b/p/d/manual__2026-01-05T00:00:00+00:00/de",
    }


@pytest.mark.integration
def test_nasty_values_arrive_in_the_notebook_exactly(tmp_path: Path) -> None:
    """Run for real (papermill, python3 kernel): the values the notebook's code sees, and their types."""
    params = {f"p{i}": v for i, v in enumerate(NASTY)} | {
        "n": 3,
        "f": 0.25,
        "whole": 2.0,
        "yes": True,
        "nothing": None,
        "big": 10**12,
        "l": [1, "a'b", 1.5, False],
        "d": {"k": None, "n": 0, "s": "0"},
        # the standard parameters, as the planner adds them (dag_factory.plan.planner._parameters)
        "country": "de",
        "env": "preprod",
        "aws_account_id": "000000000000",
    }
    run_id = "manual__2026-01-05T00:00:00+00:00"
    executed = _run(tmp_path, params, run_id, execute=True)
    injected = _injected(executed)
    for name, value in params.items():
        assert injected[name] == value
    assert injected["run_id"] == "manual__2026-01-05T00:00:00+00:00"
    assert injected["logical_date"] == "2026-01-05"
    assert injected["output_prefix"] == f"{tmp_path}/out/manual__2026-01-05T00:00:00+00:00/de"
    # and what the kernel holds after running the injected cell
    expected = params | {
        "logical_date": "2026-01-05",
        "run_id": run_id,
        "output_prefix": f"{tmp_path}/out/{run_id}/de",
    }
    _assert_same(_kernel_values(executed), expected, "kernel")


@pytest.mark.integration
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(names, values, min_size=1, max_size=5))
@example(params={"k": "a\x85b"})  # a NEL (YAML reads a raw one as a line break), found by this test
def test_any_parameters_round_trip_through_bash_and_papermill(tmp_path: Path, params: dict[str, Any]) -> None:
    injected = _injected(_run(tmp_path, params, "scheduled__2026-01-05T04:00:00+00:00"))
    for name, value in params.items():
        assert injected[name] == value, name


def test_mapping_key_order_arrives_as_written(tmp_path: Path) -> None:
    """No reordering on the way: {second: 2, first: 1} stays in that order, like papermill's own -y."""
    params = {
        "zeta": 1,
        "config": {"second": 2, "first": 1, "nested": {"b": [2, 1], "a": None}},
        "alpha": "x",
    }
    encoded = base64.b64decode(encode_parameters(params)).decode()
    assert encoded.index("second") < encoded.index("first") and encoded.index("zeta") < encoded.index("alpha")
    injected = _injected(_run(tmp_path, params, "manual__2026-01-05T00:00:00+00:00"))
    assert list(injected)[:3] == ["zeta", "config", "alpha"]
    assert list(injected["config"]) == ["second", "first", "nested"]
    assert list(injected["config"]["nested"]) == ["b", "a"]


@pytest.mark.integration  # starts a kernel
def test_a_failing_notebook_says_why_and_keeps_papermills_exit_code(tmp_path: Path) -> None:
    project = tmp_path / "work" / "project"
    (project / "nb").mkdir(parents=True)
    failing = "total = rows * 2\nassert total < 5, f'{total} rows'"
    write_notebook(project / "nb" / "n.ipynb", failing, parameters="rows = 10")
    layout = HostLayout(
        workdir=str(tmp_path / "work"), activate=f"export PATH={VENV_BIN}:$PATH", sync="true", install="true"
    )
    head = str(tmp_path / "out")
    out_nb = f"{output_prefix_template(head, 'de')}/n.ipynb"
    runtime = runtime_parameters_json(head, "de")
    command = notebook_command(layout, "nb/n.ipynb", out_nb, "python3", {}, runtime)
    # as the planner runs it: under the guard, which provides run_papermill
    command = guarded(command, StepBounds(str(tmp_path / "work"), "nb_n", 600, 3600))
    rendered = _render(command, "manual__1", "2026-01-05")
    result = subprocess.run(["bash", "-c", rendered], capture_output=True, text=True, env=os.environ.copy())
    # the notebook raised: run_papermill's status, kept through the helper, not the helper's
    assert result.returncode == EXIT_NOTEBOOK_ERROR, result.stdout + result.stderr
    explained = "notebook error in nb/n.ipynb cell 2, line 2 `assert total < 5, f'{total} rows'`: "
    # on stderr, where the step operators keep the step's own lines for the task's error
    assert f"dag-factory: {explained}AssertionError: 20 rows" in result.stderr.splitlines()
    assert "dag-factory: step done" not in result.stdout


def _executed_with_html(tmp: Path, second_cell: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    project = tmp / "work" / "project"
    (project / "nb").mkdir(parents=True, exist_ok=True)
    write_notebook(project / "nb" / "n.ipynb", "print('first cell ran')", second_cell)
    layout = HostLayout(
        workdir=str(tmp / "work"), activate=f"export PATH={VENV_BIN}:$PATH", sync="true", install="true"
    )
    head = str(tmp / "out")
    out_nb = f"{output_prefix_template(head, 'de')}/n.ipynb"
    command = notebook_command(
        layout, "nb/n.ipynb", out_nb, "python3", {}, runtime_parameters_json(head, "de")
    )
    command = guarded(command, StepBounds(str(tmp / "work"), "nb_n", 600, 3600))  # as the planner runs it
    rendered = _render(command, "manual__1", "2026-01-05")
    result = subprocess.run(["bash", "-c", rendered], capture_output=True, text=True, env=os.environ.copy())
    return result, tmp / "out" / "manual__1" / "de"


def _html_text(path: Path) -> str:
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(path.read_text())
    return " ".join(parser.parts)


@pytest.mark.integration  # starts a kernel
def test_executed_notebook_is_rendered_as_html_beside_it(tmp_path: Path) -> None:
    result, out = _executed_with_html(tmp_path, "print('second cell says ' + 'hello')")
    assert result.returncode == 0, result.stderr[-2000:]
    assert html_path(str(out / "n.ipynb")) == str(out / "n.html")
    text = _html_text(out / "n.html")
    assert "first cell ran" in text
    assert "second cell says hello" in text


@pytest.mark.integration  # starts a kernel
def test_failed_notebook_is_rendered_and_the_step_still_fails(tmp_path: Path) -> None:
    result, out = _executed_with_html(tmp_path, "raise ValueError('no rows for de')")
    assert result.returncode == EXIT_NOTEBOOK_ERROR  # the notebook's own error, kept through the render
    assert "dag-factory: step done" not in result.stdout
    assert (out / "n.ipynb").exists()
    text = _html_text(out / "n.html")
    assert "first cell ran" in text
    assert "ValueError" in text and "no rows for de" in text


def test_a_missing_notebook_is_a_missing_input_named_by_its_path(tmp_path: Path) -> None:
    """The deployed project lacks the notebook (a typo, a file not committed): the step says which, with the
    guard's exit status for a missing input (never retried), before papermill or a kernel starts."""
    (tmp_path / "work" / "project" / "notebooks").mkdir(parents=True)
    layout = HostLayout(workdir=str(tmp_path / "work"), activate="false", sync="true", install="true")
    out = str(tmp_path / "out" / "02_sumary.ipynb")
    command = notebook_command(layout, "notebooks/02_sumary.ipynb", out, "python3", {}, "{}")
    command = guarded(command, StepBounds(str(tmp_path / "work"), "nb_02_sumary", 600, 3600))
    result = subprocess.run(["bash", "-c", _render(command, "manual__1", "2026-01-05")], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == EXIT_MISSING_INPUT, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "dag-factory: missing input: the notebook notebooks/02_sumary.ipynb is not in the deployed project"
    )
    assert classify_exit(result.returncode) == "input"
    assert retry_verdict("input", 1, infra_retries=3, notebook_retries=3) == (
        False,
        "a missing input: not retried (deploy the project with it, then clear the task)",
    )


def test_a_notebook_commands_header_is_one_line_per_parameter_with_sensitive_values_hidden(
    tmp_path: Path,
) -> None:
    """The first lines of the command, as Airflow's Rendered Template shows them: a value stays on its
    line (JSON escapes a line break), a sensitive one is hidden as in the DAG's docs, a long one is cut."""
    from dag_factory.load.specs import load_platform, load_spec
    from dag_factory.plan.planner import plan_dag

    spec = yaml.safe_load((REPO / "project_configs" / "churn-demo.yaml").read_text())
    spec["project_dir"] = str(REPO / "examples" / "churn-demo")
    spec["parameters"] = {"note": "a\nb", "api_token": "s3cr3t", "ids": list(range(100))}
    path = tmp_path / "churn-demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    plan = plan_dag(load_spec(path, load_platform(REPO / "project_configs" / "platform.yaml")), "prod")
    command = next(g for g in plan.groups if g.group_id == "de").task("nb_02_train").args.command
    header = [line for line in command.splitlines() if line.startswith("#   ")]
    ids = json.dumps(list(range(100)))
    assert header == [
        '#   note: "a\\nb"',
        '#   api_token: "***"',
        f"#   ids: {ids[:119]}…",
        "#   n_customers: 800",
        '#   country: "de"',
        '#   env: "prod"',
        '#   aws_account_id: "444455556666"',
        "#   max_depth: 4",
    ]
    assert "s3cr3t" not in "\n".join(header)


def test_environments_install_the_nbconvert_our_tests_run() -> None:
    """The environments' nbconvert pin is the version constraints.txt installs for our tests (their fake
    instances see the test venv's packages), and no dependency of the package (pyproject.toml)."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    constrained = [
        r for r in (root / "constraints.txt").read_text().splitlines() if r.startswith("nbconvert==")
    ]
    assert runtime_packages("2.6.0") == ("papermill==2.6.0", "ipykernel", *constrained)
    assert not [r for r in pyproject["project"]["dependencies"] if r.startswith("nbconvert")]
    assert "nbconvert" in pyproject["project"]["optional-dependencies"]["test"]
