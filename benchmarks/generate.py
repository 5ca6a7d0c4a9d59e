"""Write the benchmark DAG folders: N equivalent notebook-job DAGs in three variants.

    benchmarks/out/<variant>/<N>/dags/      the folder DagBag parses
    benchmarks/out/<variant>/<N>/specs/     ours: the N job specs
    benchmarks/out/<variant>/<N>/configs/   dagfactory: the N dag-factory YAML files

Variants:
  ours         N copies of project_configs/churn-model.yaml (project churn-model-0001 ...) plus the loader
               files of our package. Plug point: `write_ours_dag_files` (and `validate_ours_specs`).
               Each run starts with an empty plan cache (dag_factory.plan.cache): a cold parse.
  ours_warm    the same files, with the plan cache kept between runs (filled by the warm-up run), as
               in a running Airflow that re-parses unchanged specs.
  handwritten  one hand-written Airflow 3 Python DAG file per spec, same operators/ids/arguments.
  dagfactory   one astronomer dag-factory 1.1.0 YAML per spec plus its loader file(s).

The shapes of the hand-written and dag-factory DAGs both come from one description of the job (`Job`,
`group_tasks`) so the comparison is like for like; `run.py --smoke` checks the parsed DAGs against it.

Usage: python benchmarks/generate.py --sizes 50,200 [--variants handwritten,dagfactory]
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
BASE_SPEC = REPO / "project_configs" / "churn-model.yaml"
PLATFORM_FILE = REPO / "project_configs" / "platform.yaml"
VARIANTS = ("ours", "ours_warm", "handwritten", "dagfactory")
ENV = "prod"

SAGEMAKER = "airflow.providers.amazon.aws.operators.sagemaker"
CREATE_OP = f"{SAGEMAKER}.SageMakerCreateNotebookOperator"
STOP_OP = f"{SAGEMAKER}.SageMakerStopNotebookOperator"
DELETE_OP = f"{SAGEMAKER}.SageMakerDeleteNotebookOperator"
SSH_OP = "airflow.providers.ssh.operators.ssh.SSHOperator"
PYTHON_OP = "airflow.providers.standard.operators.python.PythonOperator"

# Defaults for the platform values of `prod`, overlaid from project_configs/platform.yaml when it exists
# (platform_values): the hand-written and dag-factory variants carry literal values, as hand-written DAGs do.
PLATFORM: dict[str, Any] = {
    "env": ENV,
    "region": "eu-west-1",
    "account_id": "123456789012",
    "role_arn": "arn:aws:iam::123456789012:role/automated-notebook-runner",
    "subnet_id": "subnet-0a1b2c3d4e5f60718",
    "security_group_ids": ["sg-0123456789abcdef0", "sg-0fedcba9876543210"],
    "code_bucket": f"automated-notebook-{ENV}",
    "output_bucket": f"automated-notebook-output-{ENV}",
    "aws_conn_id": "aws_default",
    "ssh_conn_id": "sagemaker_ssh",
    "snowflake_conn_id": "snowflake_default",
    "pool": "sagemaker_api",
}


def platform_values(env: str = ENV, path: Path = PLATFORM_FILE) -> dict[str, Any]:
    """PLATFORM overlaid with the env's values from project_configs/platform.yaml (when it exists), so
    the hand-written and dag-factory DAGs carry the same accounts, buckets and connections as ours."""
    values = dict(PLATFORM)
    if not path.exists():
        return values
    settings = (yaml.safe_load(path.read_text()) or {}).get("environments", {}).get(env) or {}
    buckets, conns = settings.get("buckets") or {}, settings.get("connections") or {}
    for key in ("region", "account_id", "role_arn", "subnet_id", "security_group_ids"):
        values[key] = settings.get(key, values[key])
    values["code_bucket"] = buckets.get("code", values["code_bucket"])
    values["output_bucket"] = buckets.get("output", values["output_bucket"])
    values["aws_conn_id"] = conns.get("aws", values["aws_conn_id"])
    values["ssh_conn_id"] = conns.get("ssh", values["ssh_conn_id"])
    values["snowflake_conn_id"] = conns.get("snowflake", values["snowflake_conn_id"])
    values["pool"] = (settings.get("api_pool") or {}).get("name", values["pool"])
    return values


class NotAvailable(Exception):
    """A variant (or the validate benchmark) cannot run yet; the message says why."""


# --------------------------------------------------------------------------------------------------
# The job, as plain data
# --------------------------------------------------------------------------------------------------


def seconds(value: str | int) -> int:
    """'5m' -> 300; '2h' -> 7200; 90 -> 90."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"(\d+)\s*([smhd])", value.strip())
    if not match:
        raise ValueError(f"bad duration: {value!r}")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@dataclass
class Job:
    """What the hand-written and dag-factory DAGs are made of (a spec resolved for `prod`)."""

    project: str
    owner: str
    description: str
    schedule: str | None
    start_date: date
    tags: list[str]
    retries: int
    retry_delay_s: int
    max_parallel: int
    item_name: str
    items: list[str]
    notebooks: list[dict[str, Any]]  # {path, task_id, parameters, timeout_s}
    deliver: list[dict[str, Any]]
    ctx: dict[str, Any] = field(default_factory=dict)  # values the command/name helpers read


def job_from_spec(spec: dict[str, Any], platform: dict[str, Any] | None = None) -> Job:
    platform = platform_values() if platform is None else platform
    notebooks = []
    for nb in spec["notebooks"]:
        stem = Path(nb["path"]).stem
        notebooks.append(
            {
                "path": nb["path"],
                "task_id": f"nb_{stem}",
                "parameters": dict(nb.get("parameters") or {}),
                "timeout_s": seconds(nb.get("timeout", spec["compute"].get("timeout", "4h"))),
            }
        )
    runtime, compute, fan_out = spec["runtime"], spec["compute"], spec["fan_out"]
    ctx = {
        **platform,
        "project": spec["project"],
        "owner": spec["owner"],
        "item_name": fan_out["name"],
        "item_parameters": {k: dict(v) for k, v in (fan_out.get("parameters") or {}).items()},
        "parameters": dict(spec.get("parameters") or {}),
        "kernel": runtime["kernel"],
        "conda_env": runtime["conda_env"],
        "requirements": runtime["requirements"],
        "papermill_version": runtime["papermill_version"],
        "instance_type": compute["instance_type"],
        "volume_size_gb": compute["volume_size_gb"],
    }
    start = spec["start_date"]
    return Job(
        project=spec["project"],
        owner=spec["owner"],
        description=spec.get("description", ""),
        schedule=spec.get("schedule"),
        start_date=start if isinstance(start, date) else date.fromisoformat(str(start)),
        tags=list(spec.get("tags") or []),
        retries=int(spec.get("retries", 0)),
        retry_delay_s=seconds(spec.get("retry_delay", "5m")),
        max_parallel=int(compute.get("max_parallel", 16)),
        item_name=fan_out["name"],
        items=[str(v) for v in fan_out["values"]],
        notebooks=notebooks,
        deliver=[dict(d) for d in spec.get("deliver") or []],
        ctx=ctx,
    )


def doc_md(job: Job) -> str:
    return (
        f"**{job.project}**: {job.description}\n\n"
        f"Owner: {job.owner}. One SageMaker notebook instance per {job.item_name} "
        f"({len(job.items)} values, at most {job.max_parallel} at once); notebooks "
        + ", ".join(f"`{nb['path']}`" for nb in job.notebooks)
        + "; delivered to "
        + ", ".join(f"{d['to']} `{d.get('table', '')}`" for d in job.deliver)
        + "."
    )


# --------------------------------------------------------------------------------------------------
# Shared helpers. Their source is copied verbatim into every hand-written DAG file (a hand-written DAG
# has such helpers), so they may only use their arguments, `shlex` and the two templates below.
# --------------------------------------------------------------------------------------------------

PREPARE_TEMPLATE = """\
set -uo pipefail
# {project} / {item_name}={item}: prepare the instance (code, conda env, requirements)
export AWS_DEFAULT_REGION={region}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
WORK_DIR=/home/ec2-user/SageMaker/{project}
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
echo "[$(date -u +%FT%TZ)] syncing s3://{code_bucket}/{project}/ to $WORK_DIR"
for attempt in 1 2 3; do
  aws s3 sync --only-show-errors --delete "s3://{code_bucket}/{project}/" "$WORK_DIR/" && break
  echo "sync attempt $attempt failed; retrying in $((attempt * 10))s" >&2
  sleep $((attempt * 10))
done
test -f "$WORK_DIR/{requirements}" || {{ echo "missing {requirements} in deployed code" >&2; exit 3; }}
source /home/ec2-user/anaconda3/bin/activate {conda_env}
python -m pip install --quiet "papermill=={papermill_version}" ipykernel
python -m pip install --quiet -r "$WORK_DIR/{requirements}"
python -m ipykernel install --user --name {kernel} >/dev/null 2>&1 || true
python - <<'PY'
import papermill, sys
print("papermill", papermill.__version__, "python", sys.version.split()[0])
PY
echo "[$(date -u +%FT%TZ)] instance ready for {item_name}={item} (run {{{{ run_id }}}})"
"""

NOTEBOOK_TEMPLATE = """\
set -uo pipefail
# {project} / {item_name}={item} / {notebook}: run with papermill, archive the executed notebook
export AWS_DEFAULT_REGION={region}
export PYTHONUNBUFFERED=1
WORK_DIR=/home/ec2-user/SageMaker/{project}
OUTPUT_PREFIX="{output_prefix}"
EXECUTED="$OUTPUT_PREFIX/notebooks/{notebook_name}.ipynb"
cd "$WORK_DIR"
source /home/ec2-user/anaconda3/bin/activate {conda_env}
echo "[$(date -u +%FT%TZ)] running {notebook} for {item_name}={item}"
timeout --kill-after=60 {timeout_s} python -m papermill "{notebook}" "$EXECUTED" \\
  --kernel {kernel} --cwd "$WORK_DIR/{notebook_dir}" \\
  --log-output --no-progress-bar --request-save-on-cell-execute \\
{parameters}
status=$?
echo "[$(date -u +%FT%TZ)] {notebook} finished with status $status; executed notebook: $EXECUTED"
exit $status
"""


def instance_name(ctx, item):
    return ctx["project"] + "-" + item + "-{{ ts_nodash | lower }}"


def output_prefix(ctx, item):
    return "s3://" + ctx["output_bucket"] + "/" + ctx["project"] + "/{{ ds }}/{{ run_id }}/" + item


def prepare_command(ctx, item):
    return PREPARE_TEMPLATE.format(item=item, **ctx)


def notebook_command(ctx, item, notebook):
    params = {
        "environment": ctx["env"],
        "aws_account_id": ctx["account_id"],
        "logical_date": "{{ ds }}",
        "run_id": "{{ run_id }}",
        ctx["item_name"]: item,
        "output_prefix": output_prefix(ctx, item),
        **ctx["parameters"],
        **ctx["item_parameters"].get(item, {}),
        **notebook["parameters"],
    }
    lines = "  " + " \\\n  ".join(f"-p {key} {shlex.quote(str(value))}" for key, value in params.items())
    path = notebook["path"]
    return NOTEBOOK_TEMPLATE.format(
        item=item,
        notebook=path,
        notebook_name=path.rsplit("/", 1)[-1].rsplit(".", 1)[0],
        notebook_dir=path.rsplit("/", 1)[0] if "/" in path else ".",
        timeout_s=notebook["timeout_s"],
        output_prefix=output_prefix(ctx, item),
        parameters=lines,
        **{k: ctx[k] for k in ("project", "region", "item_name", "conda_env", "kernel")},
    )


SHARED_HELPERS = (instance_name, output_prefix, prepare_command, notebook_command)

PREPARE_TIMEOUT_S = 1800


@dataclass
class TaskDef:
    task_id: str  # inside the group
    operator: str  # import path
    kwargs: dict[str, Any]
    upstream: list[str]  # task ids inside the group
    teardown: bool = False  # .as_teardown(setups=create_instance)


def group_tasks(job: Job, item: str) -> list[TaskDef]:
    """The 7 + len(deliver) tasks of one fan-out group, in dependency order."""
    ctx, name = job.ctx, instance_name(job.ctx, item)
    tags = [
        {"Key": "owner", "Value": job.owner},
        {"Key": "project", "Value": job.project},
        {"Key": job.item_name, "Value": item},
        {"Key": "run_id", "Value": "{{ run_id }}"},
    ]
    ip = "{{ ti.xcom_pull(task_ids='" + item + ".resolve_ip') }}"
    tasks = [
        TaskDef(
            "create_instance",
            CREATE_OP,
            {
                "instance_name": name,
                "instance_type": ctx["instance_type"],
                "role_arn": ctx["role_arn"],
                "volume_size_in_gb": ctx["volume_size_gb"],
                "create_instance_kwargs": {
                    "SubnetId": ctx["subnet_id"],
                    "SecurityGroupIds": list(ctx["security_group_ids"]),
                    "Tags": tags,
                },
                "wait_for_completion": True,
                "aws_conn_id": ctx["aws_conn_id"],
                "region_name": ctx["region"],
                "pool": ctx["pool"],
            },
            [],
        ),
        TaskDef(
            "resolve_ip",
            PYTHON_OP,
            {
                "python_callable": "support.resolve_instance_ip",
                "op_kwargs": {"instance_name": name, "aws_conn_id": ctx["aws_conn_id"]},
            },
            ["create_instance"],
        ),
        TaskDef(
            "prepare",
            SSH_OP,
            {
                "ssh_conn_id": ctx["ssh_conn_id"],
                "remote_host": ip,
                "command": prepare_command(ctx, item),
                "cmd_timeout": PREPARE_TIMEOUT_S,
            },
            ["resolve_ip"],
        ),
    ]
    previous = "prepare"
    for nb in job.notebooks:
        tasks.append(
            TaskDef(
                nb["task_id"],
                SSH_OP,
                {
                    "ssh_conn_id": ctx["ssh_conn_id"],
                    "remote_host": ip,
                    "command": notebook_command(ctx, item, nb),
                    "cmd_timeout": nb["timeout_s"],
                },
                [previous],
            )
        )
        previous = nb["task_id"]
    last_notebook = previous
    teardown_kwargs = {"instance_name": name, "aws_conn_id": ctx["aws_conn_id"], "region_name": ctx["region"]}
    stop = TaskDef("stop_instance", STOP_OP, dict(teardown_kwargs), [last_notebook], teardown=True)
    delete = TaskDef("delete_instance", DELETE_OP, dict(teardown_kwargs), ["stop_instance"], teardown=True)
    tasks += [stop, delete]
    for target in job.deliver:
        options = {k: v for k, v in target.items() if k not in ("to", "table", "files")}
        tasks.append(
            TaskDef(
                f"deliver_{target['to']}",
                PYTHON_OP,
                {
                    "python_callable": "support.deliver",
                    "op_kwargs": {
                        "target": target["to"],
                        "table": target.get("table", ""),
                        "files": target.get("files", ""),
                        "prefix": output_prefix(ctx, item),
                        "conn_id": ctx[f"{target['to']}_conn_id"],
                        **options,
                    },
                },
                [last_notebook],
            )
        )
    return tasks


def expected_tasks(job: Job) -> dict[str, TaskDef]:
    """Full task id ('de.create_instance') -> task, for the whole DAG."""
    return {f"{item}.{t.task_id}": t for item in job.items for t in group_tasks(job, item)}


# --------------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------------


def project_name(base: str, index: int) -> str:
    return f"{base}-{index:04d}"


def spec_text(base_text: str, project: str) -> str:
    """The base spec with another project name; a relative project_dir made absolute (specs move)."""
    text = re.sub(r"(?m)^project:\s*\S+", f"project: {project}", base_text, count=1)

    def absolute(match: re.Match[str]) -> str:
        return f"{match.group(1)}{(BASE_SPEC.parent / match.group(2)).resolve()}"

    return re.sub(r"(?m)^(project_dir:\s*)(\S+)\s*$", absolute, text, count=1)


def write_specs(n: int, spec_dir: Path, base_spec: Path = BASE_SPEC) -> list[Path]:
    base_text = base_spec.read_text()
    base_project = yaml.safe_load(base_text)["project"]
    spec_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, n + 1):
        project = project_name(base_project, i)
        path = spec_dir / f"{project}.yaml"
        path.write_text(spec_text(base_text, project))
        paths.append(path)
    if PLATFORM_FILE.exists():  # our loader finds the nearest platform.yaml beside or above a spec
        shutil.copyfile(PLATFORM_FILE, spec_dir / PLATFORM_FILE.name)
    return paths


def base_jobs(n: int, base_spec: Path = BASE_SPEC) -> list[Job]:
    """The jobs of the N specs write_specs writes (the base spec parsed once, the project name varied)."""
    spec, platform = yaml.safe_load(base_spec.read_text()), platform_values()
    return [
        job_from_spec({**spec, "project": project_name(spec["project"], i)}, platform)
        for i in range(1, n + 1)
    ]


# --------------------------------------------------------------------------------------------------
# Variant "ours": THE PLUG POINT
# --------------------------------------------------------------------------------------------------

# Modules the measurement child imports before timing DagBag (reported as import time), like
# Airflow's dag processor pre-imports the airflow modules a DAG file uses.
OURS_PRELOAD = ["dag_factory.airflow.build"]
# Environment for the child processes of the ours variant (the loader files read it at parse time).
OURS_CHILD_ENV = {"DAG_FACTORY_ENV": ENV}


def write_ours_dag_files(spec_paths: list[Path], dag_dir: Path) -> list[Path]:
    """THE PLUG POINT: write our package's DAG folder for these specs; return the files written.

    Uses the real CLI, `dag-factory dags SPEC_DIR --output DAG_DIR` (one loader file per spec calling
    dag_factory.airflow.build.dag_from_spec; the env comes from $DAG_FACTORY_ENV, set via OURS_CHILD_ENV).
    Raise NotAvailable (-> a "skipped" row) when our build cannot be used.
    """
    cli = REPO / ".venv" / "bin" / "dag-factory"
    if not cli.exists():
        raise NotAvailable("not available yet: no .venv/bin/dag-factory")
    spec_dir = spec_paths[0].parent
    cmd = [str(cli), "dags", str(spec_dir), "--output", str(dag_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NotAvailable(f"`dag-factory dags` failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return sorted(dag_dir.glob("*.py"))


OURS_VALIDATE_PRELOAD = [
    "dag_factory.validate.check",
    "dag_factory.validate.contract",
    "dag_factory.load.specs",
]


def validate_ours_specs(spec_paths: list[Path]) -> int:
    """Validate the specs in-process with our validation API (what `dag-factory validate` runs);
    return how many were valid. Timed by child.py: interpreter start and imports excluded."""
    try:
        from dag_factory.validate.check import validate_paths
    except ImportError as exc:
        raise NotAvailable(f"not available yet: dag_factory.validate.check.validate_paths ({exc})") from exc
    return sum(result.valid for result in validate_paths(spec_paths, None, True))


# --------------------------------------------------------------------------------------------------
# Variant "handwritten"
# --------------------------------------------------------------------------------------------------

HANDWRITTEN = '''\
"""{project}: {description}

Hand-written Airflow 3 DAG (benchmark baseline, generated once from {spec_name}). One task group per
{item_name}: create a SageMaker notebook instance, resolve its private IP, prepare it over SSH, run the
notebooks with papermill, stop and delete the instance (teardown), deliver the outputs.
"""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta

import pendulum
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerCreateNotebookOperator,
    SageMakerDeleteNotebookOperator,
    SageMakerStopNotebookOperator,
)
from airflow.providers.ssh.operators.ssh import SSHOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, TaskGroup, chain

if {support_dir!r} not in sys.path:
    sys.path.insert(0, {support_dir!r})
import support  # noqa: E402

CTX = {ctx}
ITEMS = {items}
NOTEBOOKS = {notebooks}
DELIVER = {deliver}

PREPARE_TEMPLATE = {prepare_template}

NOTEBOOK_TEMPLATE = {notebook_template}


{helpers}

with DAG(
    dag_id={project!r},
    description={description!r},
    doc_md={doc_md!r},
    schedule={schedule!r},
    start_date=pendulum.datetime({start.year}, {start.month}, {start.day}, tz="UTC"),
    catchup=False,
    tags={tags!r},
    max_active_tasks={max_parallel},
    default_args={{
        "owner": {owner!r},
        "retries": {retries},
        "retry_delay": timedelta(seconds={retry_delay_s}),
        "retry_exponential_backoff": True,
    }},
) as dag:
    for item in ITEMS:
        with TaskGroup(group_id=item):
            name = instance_name(CTX, item)
            ip = "{{{{ ti.xcom_pull(task_ids='" + item + ".resolve_ip') }}}}"
            create = SageMakerCreateNotebookOperator(
                task_id="create_instance",
                instance_name=name,
                instance_type=CTX["instance_type"],
                role_arn=CTX["role_arn"],
                volume_size_in_gb=CTX["volume_size_gb"],
                create_instance_kwargs={{
                    "SubnetId": CTX["subnet_id"],
                    "SecurityGroupIds": list(CTX["security_group_ids"]),
                    "Tags": [
                        {{"Key": "owner", "Value": CTX["owner"]}},
                        {{"Key": "project", "Value": CTX["project"]}},
                        {{"Key": CTX["item_name"], "Value": item}},
                        {{"Key": "run_id", "Value": "{{{{ run_id }}}}"}},
                    ],
                }},
                wait_for_completion=True,
                aws_conn_id=CTX["aws_conn_id"],
                region_name=CTX["region"],
                pool=CTX["pool"],
            )
            resolve_ip = PythonOperator(
                task_id="resolve_ip",
                python_callable=support.resolve_instance_ip,
                op_kwargs={{"instance_name": name, "aws_conn_id": CTX["aws_conn_id"]}},
            )
            prepare = SSHOperator(
                task_id="prepare",
                ssh_conn_id=CTX["ssh_conn_id"],
                remote_host=ip,
                command=prepare_command(CTX, item),
                cmd_timeout={prepare_timeout},
            )
            notebooks = [
                SSHOperator(
                    task_id=nb["task_id"],
                    ssh_conn_id=CTX["ssh_conn_id"],
                    remote_host=ip,
                    command=notebook_command(CTX, item, nb),
                    cmd_timeout=nb["timeout_s"],
                )
                for nb in NOTEBOOKS
            ]
            teardown = {{
                "instance_name": name,
                "aws_conn_id": CTX["aws_conn_id"],
                "region_name": CTX["region"],
            }}
            stop = SageMakerStopNotebookOperator(task_id="stop_instance", **teardown)
            delete = SageMakerDeleteNotebookOperator(task_id="delete_instance", **teardown)
            stop.as_teardown(setups=create)
            delete.as_teardown(setups=create)
            chain(create, resolve_ip, prepare, *notebooks, stop, delete)
            for target in DELIVER:
                options = {{k: v for k, v in target.items() if k not in ("to", "table", "files")}}
                notebooks[-1] >> PythonOperator(
                    task_id="deliver_" + target["to"],
                    python_callable=support.deliver,
                    op_kwargs={{
                        "target": target["to"],
                        "table": target.get("table", ""),
                        "files": target.get("files", ""),
                        "prefix": output_prefix(CTX, item),
                        "conn_id": CTX[target["to"] + "_conn_id"],
                        **options,
                    }},
                )
'''


def _pretty(value: Any) -> str:
    """A Python literal, one item per line for lists/dicts of dicts (readable generated code)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "[\n" + "".join(f"    {v!r},\n" for v in value) + "]"
    if isinstance(value, dict):
        return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in value.items()) + "}"
    return repr(value)


def _triple_quoted(text: str) -> str:
    assert '"""' not in text
    return '"""\\\n' + text.replace("\\", "\\\\") + '"""'


def handwritten_source(job: Job, spec_name: str) -> str:
    helpers = "\n\n".join(inspect.getsource(f) for f in SHARED_HELPERS)
    return HANDWRITTEN.format(
        project=job.project,
        description=job.description,
        spec_name=spec_name,
        item_name=job.item_name,
        support_dir=str(BENCH_DIR),
        ctx=_pretty(job.ctx),
        items=repr(job.items),
        notebooks=_pretty(job.notebooks),
        deliver=_pretty(job.deliver),
        prepare_template=_triple_quoted(PREPARE_TEMPLATE),
        notebook_template=_triple_quoted(NOTEBOOK_TEMPLATE),
        helpers=helpers,
        doc_md=doc_md(job),
        schedule=job.schedule,
        start=job.start_date,
        tags=job.tags,
        max_parallel=job.max_parallel,
        owner=job.owner,
        retries=job.retries,
        retry_delay_s=job.retry_delay_s,
        prepare_timeout=PREPARE_TIMEOUT_S,
    )


def write_handwritten(jobs: list[Job], dag_dir: Path) -> list[Path]:
    dag_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for job in jobs:
        path = dag_dir / f"{job.project.replace('-', '_')}.py"
        path.write_text(handwritten_source(job, f"{job.project}.yaml"))
        files.append(path)
    return files


# --------------------------------------------------------------------------------------------------
# Variant "dagfactory" (astronomer dag-factory 1.1.0)
# --------------------------------------------------------------------------------------------------
# Two differences forced by dag-factory 1.1.0, both documented in README.md:
# - task keys are unique per DAG, and a task in a task group gets the id "<group>.<key>", so the ids are
#   "de.de_create_instance" instead of "de.create_instance";
# - no setup/teardown in its YAML: stop/delete get trigger_rule all_done and explicit dependencies
#   (create -> stop, create -> delete) instead of .as_teardown(setups=create).


class _LiteralDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Multi-line strings as `|` blocks; libyaml's emitter when present (pure Python: ~0.5 s a file)."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_representer)


def dagfactory_key(item: str, task_id: str) -> str:
    return f"{item}_{task_id}"


def dagfactory_config(job: Job) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for item in job.items:
        for t in group_tasks(job, item):
            conf: dict[str, Any] = {"operator": t.operator, "task_group_name": item}
            for key, value in t.kwargs.items():
                if key == "remote_host":  # the xcom_pull names the dag-factory task id
                    resolve_ip = dagfactory_key(item, "resolve_ip")
                    value = value.replace(f"'{item}.resolve_ip'", f"'{item}.{resolve_ip}'")
                conf[key] = value
            upstream = list(t.upstream)
            if t.teardown:
                conf["trigger_rule"] = "all_done"
                upstream.append("create_instance")
            if upstream:
                conf["dependencies"] = [dagfactory_key(item, u) for u in upstream]
            tasks[dagfactory_key(item, t.task_id)] = conf
    dag = {
        "description": job.description,
        "doc_md": doc_md(job),
        "schedule": job.schedule,
        "start_date": job.start_date,
        "catchup": False,
        "tags": list(job.tags),
        "max_active_tasks": job.max_parallel,
        "default_args": {
            "owner": job.owner,
            "retries": job.retries,
            "retry_delay": {"__type__": "datetime.timedelta", "seconds": job.retry_delay_s},
            "retry_exponential_backoff": True,
        },
        "task_groups": {item: {"tooltip": f"{job.item_name}={item}"} for item in job.items},
        "tasks": tasks,
    }
    return {job.project: dag}


DAGFACTORY_LOADER_FILE = '''\
"""dag-factory 1.1.0 loader for {project} (Airflow DAG; generated for the benchmarks)."""
import sys

if {support_dir!r} not in sys.path:
    sys.path.insert(0, {support_dir!r})

from dagfactory import load_yaml_dags  # noqa: E402

load_yaml_dags(globals_dict=globals(), config_filepath={config!r})
'''

DAGFACTORY_LOADER_FOLDER = '''\
"""dag-factory 1.1.0 loader for every YAML in {config_dir} (Airflow DAGs; generated for the benchmarks)."""
import sys

if {support_dir!r} not in sys.path:
    sys.path.insert(0, {support_dir!r})

from dagfactory import load_yaml_dags  # noqa: E402

load_yaml_dags(globals_dict=globals(), dags_folder={config_dir!r})
'''

DAGFACTORY_PRELOAD = ["dagfactory"]


def write_dagfactory(
    jobs: list[Job], config_dir: Path, dag_dir: Path, loader: str = "per-file"
) -> list[Path]:
    """One YAML per job; loader "per-file" (one loader .py per YAML) or "folder" (one loader for all)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    dag_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for job in jobs:
        config = config_dir / f"{job.project}.yaml"
        config.write_text(
            yaml.dump(dagfactory_config(job), Dumper=_LiteralDumper, sort_keys=False, width=1000)
        )
        files.append(config)
        if loader == "per-file":
            path = dag_dir / f"{job.project.replace('-', '_')}.py"
            source = DAGFACTORY_LOADER_FILE.format(
                project=job.project, support_dir=str(BENCH_DIR), config=str(config)
            )
            path.write_text(source)
            files.append(path)
    if loader == "folder":
        path = dag_dir / "dagfactory_loader.py"
        source = DAGFACTORY_LOADER_FOLDER.format(config_dir=str(config_dir), support_dir=str(BENCH_DIR))
        path.write_text(source)
        files.append(path)
    return files


# --------------------------------------------------------------------------------------------------
# Entry point used by run.py
# --------------------------------------------------------------------------------------------------


@dataclass
class Generated:
    variant: str
    n: int
    dag_dir: Path
    files: list[Path]
    preload: list[str]
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the measurement child

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def generate(variant: str, n: int, out: Path = OUT, dagfactory_loader: str = "per-file") -> Generated:
    """(Re)write benchmarks/out/<variant>/<n>/; raise NotAvailable for a variant that cannot be built yet."""
    root = out / variant / str(n)
    if root.exists():
        shutil.rmtree(root)
    dag_dir = root / "dags"
    if variant in ("ours", "ours_warm"):
        spec_paths = write_specs(n, root / "specs")
        files = write_ours_dag_files(spec_paths, dag_dir)
        env = dict(OURS_CHILD_ENV)
        if variant == "ours_warm":  # outside the per-run AIRFLOW_HOME, so it survives between runs
            env["DAG_FACTORY_CACHE_DIR"] = str(root / "plan-cache")
        return Generated(variant, n, dag_dir, [*spec_paths, *files], OURS_PRELOAD, env)
    jobs = base_jobs(n)
    if variant == "handwritten":
        return Generated(variant, n, dag_dir, write_handwritten(jobs, dag_dir), [])
    if variant == "dagfactory":
        files = write_dagfactory(jobs, root / "configs", dag_dir, dagfactory_loader)
        return Generated(variant, n, dag_dir, files, DAGFACTORY_PRELOAD)
    raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50,200")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--dagfactory-loader", choices=("per-file", "folder"), default="per-file")
    args = parser.parse_args(argv)
    for n in (int(s) for s in args.sizes.split(",")):
        for variant in args.variants.split(","):
            try:
                gen = generate(variant, n, args.output, args.dagfactory_loader)
            except NotAvailable as exc:
                print(f"{variant:12} N={n:<5} skipped: {exc}")
                continue
            print(f"{variant:12} N={n:<5} {len(gen.files)} files, {gen.bytes / 1e6:.1f} MB in {gen.dag_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
