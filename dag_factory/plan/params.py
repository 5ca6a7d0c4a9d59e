"""What a manual run may override: the DAG's trigger form (Airflow `params`) as plain JSON schemas.

- `values`: which fan-out values to run (default: all of them); a value not chosen creates no instance.
- each spec parameter, with its type and the spec's global value as default. A run overrides a
  parameter only where its conf differs from that default: Airflow's trigger form sends every field,
  and a default sent back must not flatten the per-value and per-notebook values the spec sets.

Airflow validates a run's conf against these schemas before the run exists (an unknown value or a
wrong type starts nothing). The standard parameters (run id, dates, prefixes) are never overridable.
"""

from __future__ import annotations

from typing import Any

from dag_factory.spec.job import JobSpec

VALUES_PARAM = "values"
OVERRIDES_MACRO = "spec_overrides"  # the DAG's Jinja macro: a run's conf -> the parameters it overrides
OVERRIDES_JSON = "{{ " + OVERRIDES_MACRO + "(dag_run.conf) | tojson }}"  # papermill -y (tojson escapes ')
_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: a bool is an int
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: Any) -> str | None:
    """The JSON schema type of a spec value (the spec admits JSON's types only); None for null."""
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), None)


def _settings(spec: JobSpec) -> dict[str, list[tuple[str, Any]]]:
    """Each parameter name -> where the spec sets it and to what: globally first, then per value,
    then per notebook (the order they merge in)."""
    found: dict[str, list[tuple[str, Any]]] = {}
    sources = [("", spec.parameters)]
    sources += [
        (value, params) for value, params in (spec.fan_out.parameters.items() if spec.fan_out else ())
    ]
    sources += [(nb.path, nb.parameters) for nb in spec.notebooks]
    for where, params in sources:
        for name, value in params.items():
            found.setdefault(name, []).append((where, value))
    return found


def _parameter_schema(name: str, settings: list[tuple[str, Any]]) -> dict[str, Any] | None:
    kind = _json_type(settings[0][1])
    if kind is None:
        return None
    is_global = settings[0][0] == ""
    elsewhere = [f"{where}: {value!r}" for where, value in settings if where]
    description = "spec parameter" + (
        f"; the spec also sets it for {', '.join(elsewhere)}" if elsewhere else ""
    )
    if is_global:
        return {"default": settings[0][1], "type": kind, "description": description}
    # set per value or per notebook only: overridden only when the run sends a value
    return {
        "default": None,
        "type": [kind, "null"],
        "description": description + "; empty: as the spec sets it",
    }


def trigger_params(spec: JobSpec) -> dict[str, dict[str, Any]]:
    """Name -> JSON schema (with `default` and `description`) of each field of the trigger form."""
    params: dict[str, dict[str, Any]] = {}
    if spec.fan_out:
        values = list(spec.fan_out.values)
        params[VALUES_PARAM] = {
            "default": values,
            "type": "array",
            "items": {"type": "string", "enum": values},
            "uniqueItems": True,
            "minItems": 1,
            "description": f"which {spec.fan_out.name} values to run (default: all); others create nothing",
        }
    for name, settings in _settings(spec).items():
        if name in (*spec.standard_parameters, VALUES_PARAM):
            continue
        schema = _parameter_schema(name, settings)
        if schema is not None:
            params[name] = schema
    return params


def overrides(conf: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """The parameters a run's conf overrides: offered ones (`defaults`: name -> form default) whose
    value is set and differs from the default (the form sends every field back)."""
    return {
        name: value
        for name, value in (conf or {}).items()
        if name in defaults and name != VALUES_PARAM and value is not None and value != defaults[name]
    }


def task_values(task_id: str, shared_group: str) -> tuple[str | None, bool]:
    """(the fan-out value a task belongs to, whether it belongs to a group at all), from its id.

    A value's own group is named after it (``fr.nb_02_train``); in the shared group a value's tasks end
    in ``__<value>``, the instance's tasks serve every value; DAG-level tasks (the report) none."""
    group, dot, name = task_id.partition(".")
    if not dot:
        return None, False
    if group == shared_group:
        return (name.rsplit("__", 1)[1] if "__" in name else None), True
    return group, True
