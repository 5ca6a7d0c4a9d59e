"""The trigger form of a generated DAG: Airflow's own validation of a run's conf, the overrides that
reach papermill's command, and the skip of values a run did not choose.

The runs themselves, through a real scheduler: tests/e2e/test_airflow_actions.py."""

from __future__ import annotations

import shlex
from types import SimpleNamespace
from typing import Any

import pytest

from dag_factory.airflow.build import dag_from_spec
from tests.paths import REPO

CONFIGS = REPO / "project_configs"


@pytest.fixture(scope="module")
def dag() -> Any:
    return dag_from_spec(CONFIGS / "churn-demo.yaml", env="local")


def test_the_form_offers_the_values_and_each_spec_parameter_with_its_type_and_default(dag: Any) -> None:
    form = {name: dag.params.get_param(name) for name in dag.params}
    assert list(form) == ["values", "lookback_days", "n_customers", "max_depth"]
    assert form["values"].value == ["de", "fr", "nl", "be", "it"]
    assert form["values"].schema["items"] == {"type": "string", "enum": ["de", "fr", "nl", "be", "it"]}
    assert (form["lookback_days"].value, form["lookback_days"].schema["type"]) == (90, "integer")
    # set per value / per notebook only: empty by default, "as the spec sets it"
    assert (form["n_customers"].value, form["n_customers"].schema["type"]) == (None, ["integer", "null"])
    assert form["n_customers"].description == (
        "spec parameter; the spec also sets it for de: 800; empty: as the spec sets it"
    )
    assert (form["max_depth"].value, form["max_depth"].schema["type"]) == (None, ["integer", "null"])


@pytest.mark.parametrize(
    ("conf", "error"),
    [
        ({"values": ["xx"]}, "'xx' is not one of ['de', 'fr', 'nl', 'be', 'it']"),
        ({"values": []}, "[] should be non-empty"),
        ({"lookback_days": "thirty"}, "'thirty' is not of type 'integer'"),
        ({"values": "fr"}, "'fr' is not of type 'array'"),
    ],
)
def test_airflow_refuses_a_conf_outside_the_form(dag: Any, conf: dict[str, Any], error: str) -> None:
    """What Airflow's create_dagrun does with a trigger's conf, on the DAG as the api-server holds it."""
    from airflow.sdk.definitions.param import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    params = served.params.deep_merge(conf)
    with pytest.raises(ParamValidationError) as refused:
        params.validate()
    assert error in str(refused.value)
    served.params.deep_merge({"values": ["fr"], "lookback_days": 30}).validate()  # a good one passes


def _rendered_notebook_command(dag: Any, task_id: str, conf: dict[str, Any]) -> str:
    from dag_factory.plan.params import OVERRIDES_MACRO

    template = dag.get_task(task_id).bash_command
    env = dag.get_template_env()
    context = {
        "dag_run": SimpleNamespace(conf=conf, run_after=None),
        "run_id": "manual__1",
        "ds": "2026-01-05",
        OVERRIDES_MACRO: dag.user_defined_macros[OVERRIDES_MACRO],
    }
    return str(env.from_string(template).render(**context))


def _papermill_yaml_arguments(command: str) -> list[str]:
    line = next(line for line in command.splitlines() if " -y " in line)
    words = shlex.split(line.split(" || ", 1)[0])
    return [words[i + 1] for i, word in enumerate(words) if word == "-y"]


def test_a_run_overrides_only_what_its_conf_changes(dag: Any) -> None:
    # the form sends every field back: defaults (and empty ones) override nothing
    conf = {"values": ["fr"], "lookback_days": 30, "n_customers": None, "max_depth": None, "other": 1}
    command = _rendered_notebook_command(dag, "fr.nb_02_train", conf)
    assert _papermill_yaml_arguments(command)[1] == '{"lookback_days": 30}'
    same = {"values": ["fr"], "lookback_days": 90}
    assert _papermill_yaml_arguments(_rendered_notebook_command(dag, "fr.nb_02_train", same))[1] == "{}"
    assert _papermill_yaml_arguments(_rendered_notebook_command(dag, "fr.nb_02_train", {}))[1] == "{}"


def test_an_override_with_a_quote_stays_one_shell_word(dag: Any) -> None:
    from dag_factory.plan.params import overrides

    assert overrides({"lookback_days": 7, "values": ["de"]}, {"lookback_days": 90, "values": []}) == {
        "lookback_days": 7
    }
    command = _rendered_notebook_command(dag, "de.nb_01_features", {"max_depth": "'; touch /tmp/x; '"})
    assert _papermill_yaml_arguments(command)[1] == '{"max_depth": "\\u0027; touch /tmp/x; \\u0027"}'


@pytest.mark.parametrize(
    ("task_id", "chosen", "skipped"),
    [
        ("fr.create_instance", ["fr"], False),
        ("de.create_instance", ["fr"], True),
        ("de.delete_instance", ["fr"], True),
        ("de.deliver_churn_scores", ["fr", "nl"], True),
        ("report", ["fr"], False),
        ("fr.nb_02_train", ["de", "fr", "nl", "be", "it"], False),
    ],
)
def test_tasks_of_values_a_run_did_not_choose_are_skipped(
    dag: Any, task_id: str, chosen: list[str], skipped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from dag_factory.airflow.params import before_task

    monkeypatch.setenv("DAG_FACTORY_ENV", "local")
    context = {"params": {"values": chosen}, "ti": SimpleNamespace(task_id=task_id)}
    if skipped:
        with pytest.raises(AirflowSkipException, match="is not among the values this run chose"):
            before_task("local", context)
    else:
        before_task("local", context)
