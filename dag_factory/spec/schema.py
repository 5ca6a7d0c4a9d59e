"""JSON Schema for editors and third-party validators, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dag_factory.spec.job import JobSpec
from dag_factory.spec.platform import PlatformSettings

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


def json_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    schema["title"] = title
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
