"""The JSON Schemas are fresh, and agree with pydantic on valid and invalid specs."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from dag_factory.errors import SpecError
from dag_factory.load.yaml_source import parse_yaml, read_yaml
from dag_factory.spec.job import JobSpec
from dag_factory.spec.schema import SCHEMA_FILES, render_schema
from tests.paths import REPO
from tests.specs import MINIMAL_SPEC

SCHEMAS = REPO / "schemas"
JOB_SCHEMA = SCHEMAS / "notebook-job.schema.json"
PLATFORM_SCHEMA = SCHEMAS / "platform.schema.json"
SPECS = sorted(p for p in (REPO / "project_configs").glob("*.yaml") if p.name != "platform.yaml")
VALID_CASES = sorted((REPO / "tests" / "cases" / "valid").glob("*.yaml"))


def _jsonable(value: Any) -> Any:
    """What an editor's YAML plugin hands to a JSON Schema validator: dates as ISO strings."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _validator(path: Path) -> Draft202012Validator:
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_schema_files_are_fresh(name: str) -> None:
    model, title = SCHEMA_FILES[name]
    assert (SCHEMAS / name).read_text() == render_schema(model, title), (
        f"schemas/{name} is stale: run `make schema` and commit it"
    )


@pytest.mark.parametrize("path", SPECS + VALID_CASES, ids=lambda p: p.name)
def test_valid_specs_pass_the_json_schema(path: Path) -> None:
    errors = [e.message for e in _validator(JOB_SCHEMA).iter_errors(_jsonable(read_yaml(path).data))]
    assert not errors


def test_platform_file_passes_the_json_schema() -> None:
    data = _jsonable(read_yaml(REPO / "project_configs" / "platform.yaml").data)
    assert not list(_validator(PLATFORM_SCHEMA).iter_errors(data))


BASE = MINIMAL_SPEC

# Mistakes a JSON Schema can express: both validators must reject them.
INVALID = {
    "unknown key": BASE + "scheduel: '@daily'\n",
    "unknown nested key": BASE.replace("  instance_type:", "  max_paralel: 2\n  instance_type:"),
    "bad enum": BASE.replace("ml.t3.medium", "ml.t3.medium\n  isolation: dedicated"),
    "bad version": BASE.replace("version: 1", "version: 2"),
    "bad project pattern": BASE.replace("project: demo", "project: Demo_Model"),
    "bad instance type pattern": BASE.replace("ml.t3.medium", "t3.medium"),
    "bad duration pattern": BASE.replace("ml.t3.medium", "ml.t3.medium\n  timeout: 4 hours"),
    "wrong type": BASE + "retries: three\n",
    "number out of range": BASE + "retries: 99\n",
    "string for list": BASE + "tags: growth\n",
    "list for mapping": BASE.replace("compute:\n  instance_type: ml.t3.medium", "compute: [ml.t3.medium]"),
    "missing required": BASE.replace("owner: ds-team\n", ""),
    "missing nested required": BASE.replace("  - path: notebooks/run.ipynb", "  - timeout: 1h"),
    "empty notebooks": BASE.replace("notebooks:\n  - path: notebooks/run.ipynb", "notebooks: []"),
    "unknown delivery target": BASE + "deliver:\n  - to: snowflak\n    table: T\n    files: x\n",
    "boolean fan-out value": BASE + "fan_out:\n  name: country\n  values: [de, no]\n",
    "bad parameter name": BASE + "parameters:\n  lookback-days: 3\n",
}


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_invalid_specs_rejected_by_both(text: str, tmp_path: Path) -> None:
    doc = parse_yaml("spec.yaml", text.encode())
    assert list(_validator(JOB_SCHEMA).iter_errors(_jsonable(doc.data))), "json schema accepted it"
    from dag_factory.load.specs import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError):
        load_spec(path)


def test_base_of_invalid_set_is_valid_for_both(tmp_path: Path) -> None:
    doc = parse_yaml("spec.yaml", BASE.encode())
    assert not list(_validator(JOB_SCHEMA).iter_errors(_jsonable(doc.data)))
    JobSpec.model_validate(doc.data)


def test_check_jsonschema_accepts_the_example() -> None:
    exe = REPO / ".venv" / "bin" / "check-jsonschema"
    done = subprocess.run(
        [exe, "--schemafile", JOB_SCHEMA, REPO / "project_configs" / "churn-model.yaml"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
