"""A spec with every string field, a platform with a local and a SageMaker environment, and a way to
see what each spec string becomes once Airflow renders a task and bash runs its command.

Commands run for real through bash, with recording stand-ins for the programs they call (papermill,
pip, uv, python, aws, the conda activate script): each stand-in writes its argv to a record file, so
a test sees every argument exactly as the program would receive it. The activate scripts read unset
variables, as conda's own scripts and packages' activate.d hooks do, while the steps run under `set -u`.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

from dag_factory.load.specs import LoadedSpec, load_platform, load_spec
from dag_factory.plan.guard import LAUNCHER_FILE, install_tools
from dag_factory.plan.model import (
    CODE_VERSION_MACRO,
    CreateInstanceArgs,
    CreateWorkdirArgs,
    DagPlan,
    DeliverArgs,
    GroupPlan,
    NotebookArgs,
    PrepareArgs,
)
from dag_factory.plan.params import OVERRIDES_MACRO, overrides
from dag_factory.plan.planner import plan_dag

RUN_ID = "manual__2026-01-05T04:00:00+00:00"
DS = "2026-01-05"
ENVS = ("local", "prod")

# Every structure a spec can hold, with a value in every string field.
BASE: dict[str, Any] = {
    "version": 1,
    "project": "demo",
    "owner": "ds-team",
    "description": "scores",
    "project_dir": ".",
    "schedule": "@daily",
    "start_date": dt.date(2026, 1, 5),
    "tags": ["growth"],
    "retry_delay": "5m",
    "runtime": {
        "kernel": "python3",
        "conda_env": "python3",
        "requirements": "requirements.txt",
        "papermill_version": "2.7.0",
    },
    "compute": {"instance_type": "ml.t3.medium", "isolation": "per_item", "timeout": "1h"},
    "fan_out": {"name": "country", "values": ["de", "fr"], "parameters": {"de": {"per_value": "x"}}},
    "parameters": {"everywhere": "x"},
    "notebooks": [
        {"path": "nb/first.ipynb"},
        {"path": "nb/second.ipynb", "kernel": "ir", "timeout": "30m", "parameters": {"only_here": "x"}},
    ],
    "deliver": [
        {
            "to": "snowflake",
            "table": "ML.SCORES",
            "stage": "ML.STAGE",
            "files": "a/*.parquet",
            "mode": "append",
        },
        {"to": "postgres", "table": "analytics.scores", "files": "b/*.json"},
        {"to": "s3", "prefix": "exports/scores", "bucket": "data", "files": "c/*.parquet"},
        {"to": "duckdb", "table": "scores", "path": "warehouse.duckdb", "files": "d/*.parquet"},
    ],
    "notify": {"on_failure": ["team@example.com"], "on_retry": ["oncall@example.com"]},
    "environments": {"prod": {"description": "prod scores", "runtime": {"kernel": "python3"}}},
}

# bash, not Python: it starts in milliseconds. One file per call: the program's name, then each
# argument, each ended by a NUL byte (no argument can hold one).
RECORDER = """#!/bin/bash
printf '%s\\0' "${0##*/}" "$@" > "$RECORD_DIR/$$.$RANDOM$RANDOM"
"""
PROGRAMS = ("papermill", "pip", "uv", "python", "aws", "activate-args")
# Variables an activate script reads that a non-interactive shell need not have: conda.sh reads PS1,
# gdal's activate.d hook backs up GDAL_DATA. `run_group` makes sure they are unset.
UNSET_IN_ACTIVATE = ("PS1", "GDAL_DATA")


def conda_activate_script(bin_dir: Path) -> str:
    """The stand-in of conda's bin/activate: records where it was sourced from and its arguments."""
    return (
        'if [ -n "$PS1" ]; then :; fi  # conda.sh\n'
        'export _CONDA_SET_GDAL_DATA="$GDAL_DATA"  # an activate.d hook\n'
        f'"{bin_dir}/activate-args" "${{BASH_SOURCE[0]}}" "$@"\n'
        f'export PATH="{bin_dir}:$PATH"\n'
    )


def venv_activate_script(bin_dir: Path) -> str:
    return f'if [ -n "$PS1" ]; then :; fi\nexport PATH="{bin_dir}:$PATH"\n'


@dataclass
class World:
    """A folder holding the spec, its project, the platform file and the stand-ins."""

    root: Path
    spec: Path
    platform: Path
    bin: Path
    local_root: Path
    sagemaker_workdir: Path
    home: Path  # HOME of every command the world runs: a string that reaches a shell touches ~/pwned
    platform_data: dict[str, Any] = field(default_factory=dict)  # what platform.yaml holds now
    base_platform: dict[str, Any] = field(default_factory=dict)  # what it held when created

    @property
    def sentinel(self) -> Path:
        """The file a hostile string that a shell executed creates (``$(touch ~/pwned)`` and the like)."""
        return self.home / "pwned"

    @classmethod
    def create(cls, root: Path) -> World:
        bin_dir = root / "bin"
        bin_dir.mkdir(parents=True)
        for name in PROGRAMS:
            (bin_dir / name).write_text(RECORDER)
            (bin_dir / name).chmod(0o755)
        conda_activate = bin_dir / "conda-activate"  # sourced as `source <it> <conda env>`
        conda_activate.write_text(conda_activate_script(bin_dir))
        home = root / "home"
        home.mkdir()
        world = cls(
            root, root / "spec.yaml", root / "platform.yaml", bin_dir, root / "local", root / "sm", home
        )
        buckets = {"code": "code", "data": "data", "intermediate": "inter", "output": "out"}
        platform = {
            "version": 1,
            "environments": {
                "local": {"backend": "local", "root": str(world.local_root), "buckets": buckets},
                "prod": {
                    "backend": "sagemaker",
                    "account_id": "444455556666",
                    "region": "eu-west-1",
                    "role_arn": "arn:aws:iam::444455556666:role/runner",
                    "subnet_id": "subnet-0a1b",
                    "security_group_ids": ["sg-0a1b"],
                    "buckets": {
                        "code": "code-b",
                        "data": "data-b",
                        "intermediate": "inter-b",
                        "output": "out-b",
                    },
                    "ssh": {
                        "conda_activate": str(conda_activate),
                        "workdir": f"{world.sagemaker_workdir}/{{group}}",
                    },
                },
            },
        }
        world.write_platform(platform)
        world.base_platform = copy.deepcopy(platform)
        return world

    def write_platform(self, platform: dict[str, Any]) -> None:
        self.platform_data = copy.deepcopy(platform)
        self.platform.write_text(yaml.safe_dump(platform, allow_unicode=False, sort_keys=False))

    def environment(self, env: str) -> dict[str, Any]:
        found: dict[str, Any] = self.platform_data["environments"][env]
        return found

    def workdir_on_instance(self, group: str) -> Path:
        """The prod environment's ssh.workdir for this group (where the "instance" keeps the project)."""
        return Path(self.environment("prod")["ssh"]["workdir"].replace("{group}", group))

    def local_root_of(self) -> Path:
        return (self.platform.parent / self.environment("local")["root"]).resolve()

    def write_spec(self, spec: dict[str, Any]) -> None:
        # non-ASCII as escapes in double quotes: raw, some (NEL, U+2028) would read back as line breaks
        self.spec.write_text(yaml.safe_dump(spec, allow_unicode=False, sort_keys=False))

    def load(self) -> LoadedSpec:
        return load_spec(self.spec, load_platform(self.platform))


def with_value(
    path: tuple[str | int, ...], value: str, shape: dict[str, Any] | None = None
) -> dict[str, Any]:
    """BASE (with shape's top-level keys in place of its own) holding value at path."""
    spec = copy.deepcopy({**BASE, **(shape or {})})
    target: Any = spec
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return spec


# --- rendering a group's tasks: with jinja and Airflow's context names, or with Airflow itself --------


class _TaskInstance:
    def xcom_pull(self, task_ids: str | None = None, **_: Any) -> str:
        return "127.0.0.1"


class _Refused:
    """`var` and `conn` in a context: a template that reaches them was evaluated, which must not happen."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a spec value was evaluated as a template (it read {name})")


def context() -> dict[str, Any]:
    return {
        "ds": DS,
        "run_id": RUN_ID,
        "ti": _TaskInstance(),
        "var": _Refused(),
        "conn": _Refused(),
        "params": {},
        "dag_run": _DagRun(),
    }


CODE_VERSION = "0123456789ab"  # the deployed code version every rendered task syncs


def _code_version(dag_run: Any) -> str:
    """The DAG's `code_version` macro (dag_factory.airflow.params), without a code store to ask."""
    return CODE_VERSION


class _DagRun:
    """A scheduled run: no conf, so no parameter is overridden."""

    conf: dict[str, Any] = {}  # noqa: RUF012


@dataclass
class Rendered:
    """What one group's tasks hold once rendered: commands and the deliver tasks' arguments."""

    commands: dict[str, str] = field(default_factory=dict)  # prepare, nb_<stem>: the shell script
    deliver: dict[str, dict[str, Any]] = field(default_factory=dict)  # deliver task id: op_kwargs
    create: dict[str, Any] = field(default_factory=dict)  # the create task's arguments (tags, workdir)
    tools: dict[str, str] = field(default_factory=dict)  # prepare: where its operator installs the tools


def _render_value(env: jinja2.Environment, value: Any, ctx: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return env.from_string(value).render(ctx)
    if isinstance(value, dict):
        return {k: _render_value(env, v, ctx) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(env, v, ctx) for v in value]
    return value


def render_with_jinja(plan: DagPlan, group: GroupPlan) -> Rendered:
    """As Airflow renders templated fields: a sandboxed Jinja environment, undefined names an error."""
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    # the DAG's macro (dag_factory.airflow.params.dag_macros), as plain data: what a run overrides
    defaults = {name: schema["default"] for name, schema in plan.params.items()}
    ctx = {
        **context(),
        OVERRIDES_MACRO: functools.partial(overrides, defaults=defaults),
        CODE_VERSION_MACRO: _code_version,
    }
    out = Rendered()
    for task in group.tasks:
        args = task.args
        if isinstance(args, NotebookArgs | PrepareArgs):
            out.commands[task.task_id] = _render_value(env, args.command, ctx)
            if isinstance(args, PrepareArgs) and args.installs_tools:
                out.tools[task.task_id] = _render_value(env, args.installs_tools, ctx)
        elif isinstance(args, DeliverArgs):
            out.deliver[task.task_id] = {
                "target": _render_value(env, args.target, ctx),
                "source_prefix": _render_value(env, args.source_prefix, ctx),
            }
        elif isinstance(args, CreateInstanceArgs | CreateWorkdirArgs):
            out.create = _render_value(env, asdict(args), ctx)
    return out


def render_with_airflow(plan: DagPlan, group: GroupPlan) -> Rendered:
    """Build the DAG with the factory's build_dag and render each task's templated fields."""
    from dag_factory.airflow.build import build_dag

    dag = build_dag(plan)
    dag.user_defined_macros[CODE_VERSION_MACRO] = _code_version  # no code bucket to ask here
    out = Rendered()
    for task in dag.tasks:
        if not task.task_id.startswith(group.group_id + "."):
            continue
        task.render_template_fields(context())
        local_id = task.task_id.split(".", 1)[1]
        command = getattr(task, "command", None) or getattr(task, "bash_command", None)
        if command is not None:
            out.commands[local_id] = command
            if getattr(task, "installs_tools", None):
                out.tools[local_id] = task.installs_tools
        elif local_id.startswith("deliver_"):
            out.deliver[local_id] = dict(task.op_kwargs)
        elif local_id == "create_instance":
            out.create = {
                "tags": getattr(task, "instance_tags", None),
                **dict(getattr(task, "op_kwargs", {})),
            }
    return out


Renderer = Callable[[DagPlan, GroupPlan], Rendered]


# --- running a group's commands through bash ------------------------------------------------------


@dataclass
class Calls:
    """What the stand-ins received, in order: (program, argv)."""

    calls: list[tuple[str, list[str]]]

    def of(self, program: str) -> list[list[str]]:
        return [argv for name, argv in self.calls if name == program]

    def papermill(self, notebook_path_end: str) -> dict[str, Any]:
        # the guard's run_papermill calls papermill's CLI through `python <tools>/run_papermill.py`
        launched = [argv[1:] for argv in self.of("python") if argv and argv[0].endswith(f"/{LAUNCHER_FILE}")]
        for argv in [*self.of("papermill"), *launched]:
            if argv[0].endswith(notebook_path_end):
                pairs = list(zip(argv[2::2], argv[3::2], strict=False))
                options = dict(pairs)
                # -y twice: the run-time parameters, then what a manual run overrides (a scheduled one: {})
                runtime, *overridden = [json.loads(value) for option, value in pairs if option == "-y"]
                return {
                    "input": argv[0],
                    "output": argv[1],
                    "kernel": options["-k"],
                    "cwd": options["--cwd"],
                    "parameters": yaml.safe_load(base64.b64decode(options["-b"])),
                    "runtime": runtime,
                    "overrides": overridden,
                }
        raise AssertionError(f"no papermill call for {notebook_path_end}: {self.calls}")

    def installs(self) -> list[list[str]]:
        """Every install command's arguments after `install` (pip, uv pip or python -m pip)."""
        found = []
        for _, argv in self.calls:
            if "install" in argv:
                found.append(argv[argv.index("install") + 1 :])
        return found


def _deploy(world: World, group: GroupPlan, project: Path) -> None:
    """What a deploy puts where the steps read it: each notebook of the group and the requirements file
    (empty: the stand-ins only record their arguments), under the names the spec gives them."""
    requirements = yaml.safe_load(world.spec.read_text()).get("runtime", {}).get("requirements")
    names = [t.args.notebook for t in group.tasks if isinstance(t.args, NotebookArgs)]
    for name in [*names, *([requirements] if requirements else [])]:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).touch()


def run_group(world: World, plan: DagPlan, group: GroupPlan, rendered: Rendered, tmp: Path) -> Calls:
    """Run prepare, then each notebook command, through bash; return what the stand-ins received."""
    record = tmp / "calls"
    shutil.rmtree(record, ignore_errors=True)
    record.mkdir()
    if plan.backend == "local":
        workdir = Path(rendered.create["workdir"])
        (workdir / "venv" / "bin").mkdir(parents=True, exist_ok=True)
        (workdir / "venv" / "bin" / "activate").write_text(venv_activate_script(world.bin))
        code_bucket = world.environment("local")["buckets"]["code"]
        _deploy(world, group, world.local_root_of() / code_bucket / plan.dag_id / "versions" / CODE_VERSION)
    else:  # the aws stand-in syncs nothing: the project is where the sync would have put it
        _deploy(world, group, world.workdir_on_instance(group.group_id) / "project")
    env = {
        **{k: v for k, v in os.environ.items() if k not in UNSET_IN_ACTIVATE},
        "HOME": str(world.home),
        "RECORD_DIR": str(record),
        "PATH": f"{world.bin}:{os.environ['PATH']}",
    }
    for task in group.tasks:
        if task.task_id not in rendered.commands:
            continue
        command = rendered.commands[task.task_id]
        if task.task_id in rendered.tools:  # as the prepare task's operator does first
            command = install_tools(rendered.tools[task.task_id]) + command
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, (task.task_id, done.stderr[-2000:], command)
    calls = []
    for path in record.iterdir():
        name, *argv = path.read_bytes().decode().split("\0")[:-1]
        calls.append((name, argv))
    return Calls(calls)


def plans(loaded: LoadedSpec) -> dict[str, DagPlan]:
    return {env: plan_dag(loaded, env) for env in ENVS}
