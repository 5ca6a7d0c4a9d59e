"""JSON Schema for editors and third-party validators, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dag_factory.spec.job import OVERRIDABLE, JobSpec
from dag_factory.spec.platform import PlatformSettings
from dag_factory.spec.types import DEF_MARKER, PARAMETER_VALUE_DEF, PARAMETER_VALUE_SCHEMA

_OUR_DEFS = {PARAMETER_VALUE_DEF: PARAMETER_VALUE_SCHEMA}

SCHEMA_FILES: dict[str, tuple[type[BaseModel], str]] = {
    "notebook-job.schema.json": (JobSpec, "Notebook job spec"),
    "platform.schema.json": (PlatformSettings, "Notebook job platform settings"),
}


def _close_pattern_maps(node: Any) -> None:
    """A mapping whose keys must match a pattern (parameter names, environment names) rejects other keys.

    pydantic emits `patternProperties` alone, which JSON Schema reads as "other keys are fine".
    """
    if isinstance(node, dict):
        if "patternProperties" in node and "properties" not in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for item in node:
            _close_pattern_maps(item)


def _link_defs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace each DEF_MARKER schema with a $ref to our definition, adding it to defs."""
    if isinstance(node, dict):
        name = node.get(DEF_MARKER)
        if name is not None:
            defs[name] = _OUR_DEFS[name]
            return {"$ref": f"#/$defs/{name}"}
        return {key: _link_defs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_link_defs(item, defs) for item in node]
    return node


def _partial(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """An override of a field: mappings merge key by key, so nothing in them is required; lists and
    scalars replace, so they are what the field itself takes."""
    if "anyOf" in schema:
        return {**schema, "anyOf": [_partial(option, defs) for option in schema["anyOf"]]}
    name = schema.get("$ref", "").removeprefix("#/$defs/")
    target = defs.get(name, {})
    if target.get("type") != "object" or "properties" not in target:
        return dict(schema)
    partial_name = f"{name}Override"
    if partial_name not in defs:
        partial = {k: v for k, v in target.items() if k != "required"}
        defs[partial_name] = partial
        partial["properties"] = {k: _partial(v, defs) for k, v in target["properties"].items()}
    return {**schema, "$ref": f"#/$defs/{partial_name}"}


def _typed_overrides(schema: dict[str, Any]) -> None:
    """`environments.<env>.<field>` takes what `<field>` takes (pydantic sees Any: the merged spec is
    what gets validated), so editors check overrides too."""
    defs = schema["$defs"]
    override = defs["EnvironmentOverride"]
    for name in OVERRIDABLE:
        field = {k: v for k, v in schema["properties"][name].items() if k != "default"}
        partial = _partial(field, defs)
        how = "merges into" if partial != field or field.get("type") == "object" else "replaces"
        override["properties"][name] = {**partial, "description": f"{how} {name} in this environment"}


def json_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    schema["title"] = title
    if model is JobSpec:
        _typed_overrides(schema)
    linked: dict[str, Any] = {}
    schema = _link_defs(schema, linked)
    schema.setdefault("$defs", {}).update(linked)
    _close_pattern_maps(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render_schema(model: type[BaseModel], title: str) -> str:
    return json.dumps(json_schema(model, title), indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (model, title) in SCHEMA_FILES.items():
        target = folder / name
        target.write_text(render_schema(model, title))
        written.append(target)
    return written
