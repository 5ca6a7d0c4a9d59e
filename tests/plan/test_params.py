"""The trigger form as plain data (dag_factory.plan.params): what a manual run may override."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dag_factory.plan.params import overrides, task_values, trigger_params
from dag_factory.spec.job import JobSpec


def _spec(**fields: Any) -> JobSpec:
    data: dict[str, Any] = {
        "version": 1, "project": "p", "owner": "o", "project_dir": ".", "start_date": dt.date(2026, 1, 5),
        "runtime": {"kernel": "python3"}, "compute": {"instance_type": "ml.t3.medium"},
        "notebooks": [{"path": "nb/a.ipynb"}],
    }  # fmt: skip
    return JobSpec.model_validate({**data, **fields})


def test_a_parameter_whose_spec_value_is_null_has_no_type_to_offer() -> None:
    form = trigger_params(_spec(parameters={"maybe": None, "n": 3, "f": 0.5}))
    assert {name: schema["type"] for name, schema in form.items()} == {"n": "integer", "f": "number"}


def test_no_fan_out_no_values_field_and_standard_names_never_offered() -> None:
    form = trigger_params(_spec(parameters={"flag": True, "names": ["a"], "opts": {"k": 1}, "s": "x"}))
    assert {name: (schema["type"], schema["default"]) for name, schema in form.items()} == {
        "flag": ("boolean", True), "names": ("array", ["a"]), "opts": ("object", {"k": 1}),
        "s": ("string", "x"),
    }  # fmt: skip


def test_overrides_keep_only_changed_offered_parameters() -> None:
    defaults = {"values": ["de"], "days": 90, "depth": None}
    assert overrides({"values": ["de"], "days": 90, "depth": None, "x": 1}, defaults) == {}
    assert overrides({"days": 7, "depth": 3}, defaults) == {"days": 7, "depth": 3}
    assert overrides(None, defaults) == {}


def test_task_values_from_task_ids() -> None:
    assert task_values("fr.nb_02_train", "shared") == ("fr", True)
    assert task_values("shared.nb_02_train__fr", "shared") == ("fr", True)
    assert task_values("shared.create_instance", "shared") == (None, True)
    assert task_values("report", "shared") == (None, False)
