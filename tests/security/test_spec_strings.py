"""Property: any string in any string field of a spec is either refused by `validate`, at that field,
or reaches the task that uses it byte for byte, never evaluated (not by Jinja, not by a shell).

Hostile strings (Jinja, `$()`, backticks, quotes, newlines, unicode controls and plain unicode) go
into every string field of a spec that has them all (`harness.BASE`); the spec is validated as
`dag-factory validate` does; an accepted one is planned for a local and a SageMaker environment, its
tasks rendered with Jinja as Airflow renders templated fields (and, for fixed strings, by Airflow
itself through build_dag), and its commands run through bash with recording stand-ins for papermill,
pip and the others, so each argument is compared with what the spec says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from dag_factory.load.yaml_source import format_loc, read_yaml
from dag_factory.spec.job import JobSpec
from dag_factory.spec.types import parse_duration
from dag_factory.validate.check import validate_paths
from tests.security import harness
from tests.security.harness import Calls, Rendered, World
from tests.security.strings import FIXED, SHELL_PROBES, hostile, string_fields

# every hostile string's commands run for real through bash, for every environment
pytestmark = pytest.mark.integration

Sink = Callable[["Reach", str], None]


@dataclass
class Reach:
    """One accepted spec in one environment: its plan, the rendered tasks of one group, their calls."""

    env: str
    spec: Path
    plan: harness.DagPlan
    group: harness.GroupPlan
    rendered: Rendered
    calls: Calls

    @property
    def project_on_host(self) -> str:
        return self.calls.papermill(".ipynb")["cwd"]  # the same for every notebook


@dataclass(frozen=True)
class StringField:
    path: tuple[str | int, ...]  # where in harness.BASE
    model_field: str  # Model.field, for the coverage check
    sink: Sink
    wrap: Callable[[str], str] = lambda s: s  # e.g. a notebook path must end in .ipynb
    group: str = "de"  # the fan-out group whose tasks are looked at
    sample: str | None = None  # a raw string that makes the base spec's value (default: it as is)
    entry: bool = False  # a delivery's `to`: another target makes other keys of the entry wrong
    also: tuple[str, ...] = ()  # where a clash with the base spec's other value is reported (the second)
    shape: dict[str, Any] | None = None  # top-level keys that replace the base spec's (another kind of value)

    def base_raw(self) -> str:
        target: Any = {**harness.BASE, **(self.shape or {})}
        for part in self.path:
            target = target[part]
        return self.sample if self.sample is not None else target

    @property
    def loc(self) -> str:
        return format_loc(self.path)

    def locates(self, loc: str) -> bool:
        """A diagnostic at loc is about this field (or, for `to`, about its entry)."""
        at = format_loc(self.path[:-1]) if self.entry else self.loc
        return loc in self.also or loc == at or loc.startswith((at + ".", at + "["))

    def __str__(self) -> str:
        return self.loc


# --- where each field must arrive ---------------------------------------------------------------------


def _kernel_of(notebook: str, envs: tuple[str, ...] = harness.ENVS) -> Sink:
    def check(r: Reach, value: str) -> None:
        if r.env in envs:
            assert r.calls.papermill(notebook)["kernel"] == value

    return check


def _notebook_path(r: Reach, value: str) -> None:
    call = r.calls.papermill(PurePosixPath(value).name)
    assert call["input"] == f"{r.project_on_host}/{value}"
    assert call["output"] == f"{call['runtime']['output_prefix']}/{PurePosixPath(value).name}"


def _requirements(r: Reach, value: str) -> None:
    assert ["-r", f"{r.project_on_host}/{value}"] in [argv[-2:] for argv in r.calls.installs()]


def _papermill_version(r: Reach, value: str) -> None:
    assert any(f"papermill=={value}" in argv for argv in r.calls.installs())


def _conda_env(r: Reach, value: str) -> None:
    if r.env == "prod":  # the local backend activates its own virtualenv
        # the activate script records where it was sourced from, then its arguments
        assert r.calls.of("activate-args") and all(
            argv[1:] == [value] for argv in r.calls.of("activate-args")
        )


def _parameter(name: str, notebook: str = "first.ipynb") -> Sink:
    def check(r: Reach, value: str) -> None:
        call = r.calls.papermill(notebook)
        assert call["parameters"][name] == value
        assert call["overrides"] == [{}]  # a scheduled run overrides nothing, whatever the spec holds

    return check


def _fan_out_value(r: Reach, value: str) -> None:
    assert r.group.group_id == value
    assert r.calls.papermill("first.ipynb")["parameters"]["country"] == value
    assert r.calls.papermill("first.ipynb")["runtime"]["output_prefix"].endswith(f"/{value}")


def _deliver(index: int, key: str, envs: tuple[str, ...] = harness.ENVS) -> Sink:
    def check(r: Reach, value: str) -> None:
        if r.env in envs:
            task = list(r.rendered.deliver.values())[index]  # in the spec's order
            assert task["target"][key] == value

    return check


def _owner(r: Reach, value: str) -> None:
    assert r.plan.owner == value
    if r.env == "prod":
        assert r.rendered.create["tags"]["owner"] == value


def _description(r: Reach, value: str) -> None:
    if r.env != "prod":  # prod has its own description (environments.prod)
        assert r.plan.description == value
        assert f"\n{value}\n" in r.plan.doc_md


def _prod_description(r: Reach, value: str) -> None:
    if r.env == "prod":
        assert r.plan.description == value


def _prod_kernel(r: Reach, value: str) -> None:
    if r.env == "prod":
        assert r.calls.papermill("first.ipynb")["kernel"] == value


def _plan_attr(name: str, convert: Callable[[str], Any] = lambda s: s) -> Sink:
    def check(r: Reach, value: str) -> None:
        found = getattr(r.plan, name)
        expected = convert(value)
        assert found == expected or (isinstance(found, tuple) and expected in found), (found, expected)

    return check


def _seconds(value: str) -> int:
    return int(parse_duration(value).total_seconds())


def _create_arg(key: str) -> Sink:
    def check(r: Reach, value: str) -> None:
        if r.env == "prod":
            [create] = [t for t in r.group.tasks if t.kind == "create_instance"]
            assert getattr(create.args, key) == value

    return check


def _notebook_timeout(r: Reach, value: str) -> None:
    [task] = [t for t in r.group.tasks if t.task_id == "nb_second"]
    assert task.args.timeout_s == _seconds(value)


def _compute_timeout(r: Reach, value: str) -> None:
    assert r.plan.estimate.timeout_s == _seconds(value)


def _notify(key: str) -> Sink:
    def check(r: Reach, value: str) -> None:
        assert r.plan.notify[key] == [value]

    return check


def _project_dir(r: Reach, value: str) -> None:
    """A folder validate and deploy read, never part of a task: it must exist inside the repository."""
    folder = (r.spec.parent / value).resolve()
    assert folder.is_dir() and folder.is_relative_to(r.spec.parent.resolve())


def _choice(*choices: str) -> Sink:
    """A field that takes one of a few words: accepted only as one of them."""

    def check(r: Reach, value: str) -> None:
        assert value in choices, f"{value!r} is not one of {choices}, yet it was accepted"

    check.choices = choices  # type: ignore[attr-defined]
    return check


def _is_choice(field: StringField) -> bool:
    return hasattr(field.sink, "choices")


TARGETS = ("snowflake", "postgres", "s3", "duckdb")
FIELDS = [
    StringField(("project",), "JobSpec.project", _plan_attr("dag_id")),
    StringField(("owner",), "JobSpec.owner", _owner),
    StringField(("description",), "JobSpec.description", _description),
    StringField(("project_dir",), "JobSpec.project_dir", _project_dir),
    StringField(("schedule",), "JobSpec.schedule", _plan_attr("schedule")),
    StringField(
        ("schedule", "assets", 0),
        "AssetSchedule.assets",  # the hostile part is the table
        _plan_attr("schedule_assets"),
        wrap=lambda s: f"postgres://db.example.com:5432/analytics/public/{s}",
        sample="churn",
        shape={"schedule": {"assets": ["postgres://db.example.com:5432/analytics/public/churn"]}},
    ),
    StringField(("tags", 0), "JobSpec.tags", _plan_attr("tags")),
    StringField(("retry_delay",), "JobSpec.retry_delay", _plan_attr("retry_delay_s", _seconds)),
    # prod overrides runtime.kernel (environments.prod below)
    StringField(("runtime", "kernel"), "Runtime.kernel", _kernel_of("first.ipynb", ("local",))),
    StringField(("runtime", "conda_env"), "Runtime.conda_env", _conda_env),
    StringField(("runtime", "requirements"), "Runtime.requirements", _requirements),
    StringField(("runtime", "papermill_version"), "Runtime.papermill_version", _papermill_version),
    StringField(("compute", "instance_type"), "Compute.instance_type", _create_arg("instance_type")),
    StringField(("compute", "isolation"), "Compute.isolation", _choice("per_item", "shared"), group=""),
    StringField(("compute", "timeout"), "Compute.timeout", _compute_timeout),
    StringField(
        ("fan_out", "name"),
        "FanOut.name",
        _plan_attr("fan_out_name"),
        also=(
            "fan_out.parameters.de.per_value",
            "parameters.everywhere",
            "notebooks[1].parameters.only_here",
        ),
    ),
    StringField(
        ("fan_out", "values", 0), "FanOut.values", _fan_out_value, group="", also=("fan_out.values[1]",)
    ),
    StringField(("fan_out", "parameters", "de", "per_value"), "ParamValue", _parameter("per_value")),
    StringField(("parameters", "everywhere"), "ParamValue", _parameter("everywhere")),
    StringField(
        ("notebooks", 0, "path"),
        "Notebook.path",
        _notebook_path,
        lambda s: f"nb/{s}.ipynb",
        sample="first",
        also=("notebooks[1].path",),
    ),
    StringField(("notebooks", 1, "kernel"), "Notebook.kernel", _kernel_of("second.ipynb")),
    StringField(("notebooks", 1, "timeout"), "Notebook.timeout", _notebook_timeout),
    StringField(
        ("notebooks", 1, "parameters", "only_here"), "ParamValue", _parameter("only_here", "second.ipynb")
    ),
    StringField(("deliver", 0, "to"), "SnowflakeDelivery.to", _choice(*TARGETS), entry=True),
    StringField(
        ("deliver", 0, "files"),
        "_Delivery.files",
        _deliver(0, "files"),
        lambda s: f"{s}/*.parquet",
        sample="a",
    ),
    StringField(("deliver", 0, "mode"), "_Delivery.mode", _choice("replace_partition", "append")),
    StringField(("deliver", 0, "table"), "SnowflakeDelivery.table", _deliver(0, "table")),
    StringField(("deliver", 0, "stage"), "SnowflakeDelivery.stage", _deliver(0, "stage", ("prod",))),
    StringField(("deliver", 1, "to"), "PostgresDelivery.to", _choice(*TARGETS), entry=True),
    StringField(("deliver", 1, "table"), "PostgresDelivery.table", _deliver(1, "table")),
    StringField(("deliver", 1, "files"), "_Delivery.files", _deliver(1, "files")),
    StringField(("deliver", 2, "prefix"), "S3Delivery.prefix", _deliver(2, "prefix")),
    StringField(("deliver", 2, "to"), "S3Delivery.to", _choice(*TARGETS), entry=True),
    StringField(("deliver", 2, "bucket"), "S3Delivery.bucket", _choice("output", "data", "intermediate")),
    StringField(("deliver", 3, "to"), "DuckDBDelivery.to", _choice(*TARGETS), entry=True),
    StringField(("deliver", 3, "table"), "DuckDBDelivery.table", _deliver(3, "table")),
    StringField(("deliver", 3, "path"), "DuckDBDelivery.path", _deliver(3, "path", ("prod",))),
    StringField(("notify", "on_failure", 0), "Notify.on_failure", _notify("on_failure")),
    StringField(("notify", "on_retry", 0), "Notify.on_retry", _notify("on_retry")),
    # overrides are validated as the merged spec of their environment: two of them, through the merge
    StringField(("environments", "prod", "description"), "EnvironmentOverride", _prod_description),
    StringField(("environments", "prod", "runtime", "kernel"), "EnvironmentOverride", _prod_kernel),
]

@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A world of this test's own, HOME (where the sentinel would appear) included: nothing is shared
    with another test, whatever ran before it or runs beside it."""
    made = World.create(tmp_path / "hostile")
    monkeypatch.setenv("HOME", str(made.home))  # for anything that runs a shell in this process too
    return made


def assert_never_ran(world: World, field: StringField, raw: str, where: str) -> None:
    """No shell executed ``raw``: the file its ``touch ~/pwned`` would create is not there."""
    assert not world.sentinel.exists(), f"{field}: {raw!r} was executed by a shell ({where})"


def _spec_for(field: StringField, raw: str) -> dict[str, Any]:
    spec = harness.with_value(field.path, field.wrap(raw), field.shape)
    if field.path == ("fan_out", "values", 0):  # the per-value parameters name this value
        spec["fan_out"]["parameters"] = {field.wrap(raw): spec["fan_out"]["parameters"]["de"]}
    return spec


def check_string(
    world: World, field: StringField, raw: str, render: harness.Renderer = harness.render_with_jinja
) -> bool:
    """Refused at the field, or reaches its task as written. True when it was accepted."""
    value = field.wrap(raw)
    world.write_spec(_spec_for(field, raw))
    doc = read_yaml(world.spec)  # the file says exactly this value (yaml escapes what it must)
    target: Any = doc.data
    for part in field.path:
        target = target[part]
    assert target == value
    [result] = validate_paths([world.spec], platform=world.platform, notebooks=False)
    assert_never_ran(world, field, raw, "while validating")
    if not result.valid:
        located = [d for d in result.diagnostics if field.locates(d.loc)]
        assert located, (field.loc, [d.render() for d in result.diagnostics])
        assert all(d.line >= 1 and d.col >= 1 for d in located)
        return False
    loaded = world.load()
    for env, plan in harness.plans(loaded).items():
        group = (
            plan.groups[0] if not field.group else next(g for g in plan.groups if g.group_id == field.group)
        )
        rendered = render(plan, group)
        assert_never_ran(world, field, raw, f"while planning or rendering for {env}")
        calls = harness.run_group(world, plan, group, rendered, world.root)
        assert_never_ran(world, field, raw, f"in the {env} commands")
        field.sink(Reach(env, world.spec, plan, group, rendered, calls), value)
    return True


def test_every_string_field_of_the_spec_is_tried() -> None:
    tried = {f.model_field for f in FIELDS}
    assert string_fields(JobSpec) <= tried, sorted(string_fields(JobSpec) - tried)


def test_every_sink_holds_for_the_base_spec(world: World) -> None:
    """Each field's own value in the base spec is accepted and found where its sink looks, so a sink
    cannot pass by looking at the wrong place."""
    for field in FIELDS:
        assert check_string(world, field, field.base_raw()), field


@pytest.mark.parametrize("field", FIELDS, ids=str)
def test_fixed_hostile_strings_are_refused_or_arrive_as_written(world: World, field: StringField) -> None:
    accepted = [raw for raw in FIXED if check_string(world, field, raw)]
    # the rule: nothing that holds template syntax passes, wherever it is
    assert not [raw for raw in accepted if any(o in field.wrap(raw) for o in ("{{", "{%", "{#"))]


@pytest.mark.parametrize("field", FIELDS, ids=str)
@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=hostile)
def test_any_string_is_refused_or_arrives_as_written(world: World, field: StringField, raw: str) -> None:
    check_string(world, field, raw)


ACCEPTED_BY_SOME_FIELD = [
    "it's",
    "a;b|c&d",
    "ünïcødé ✓ 中文",
    "x}}y",
    "{x}",
    "a*b?[c]",
    "%s %(x)s",
    " spaced out ",
]


@pytest.mark.integration
@pytest.mark.parametrize("field", [f for f in FIELDS if not _is_choice(f)], ids=str)
def test_airflow_renders_accepted_strings_as_written(world: World, field: StringField) -> None:
    """The same, with the DAG built by build_dag and each task's templated fields rendered by Airflow."""
    for raw in ACCEPTED_BY_SOME_FIELD:
        check_string(world, field, raw, harness.render_with_airflow)


def test_validate_refuses_template_syntax_in_every_string_field(world: World) -> None:
    """Done-when of issue 12: `dag-factory validate` rejects `{{ ... }}` in kernel or any string field,
    with file:line:col at that field."""
    for field in FIELDS:
        assert not check_string(world, field, "{{ conn.x.password }}"), field
        [result] = validate_paths([world.spec], platform=world.platform, notebooks=False)
        assert any(d.loc.startswith(field.loc) and d.path == str(world.spec) for d in result.diagnostics)


def test_hostile_strings_never_ran(world: World) -> None:
    """Every string that creates the sentinel when a shell runs it, in every field, in this test's own
    world: validated, planned, rendered and its commands run; the sentinel is checked after each."""
    assert len(SHELL_PROBES) == 3 and not world.sentinel.exists()
    for field in FIELDS:
        for raw in SHELL_PROBES:
            check_string(world, field, raw)
            assert_never_ran(world, field, raw, "after the check")
