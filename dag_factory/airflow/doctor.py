"""The doctor's checks that need Airflow: `python -m dag_factory.airflow.doctor [--platform FILE] [--env ENV]`
prints a JSON list of checks (dag_factory.compute.checks.Check) on stdout.

A child process of `dag-factory doctor` (dag_factory.ops.doctor), as a local run's is: the CLI imports
no Airflow, and Airflow reads its configuration at import. It looks things up as the deployment does:
the environment as a DAG file does (current_env: $DAG_FACTORY_ENV, else the Airflow Variable), the
connections and the pool as the scheduler does (Airflow's secrets backends, environment variables
and the metadata DB: the parent sets ``_AIRFLOW_PROCESS_CONTEXT=server``), AWS with the AWS connection's
credentials, as the tasks' hooks do.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from dag_factory import settings
from dag_factory.compute.checks import Check, check_buckets, check_calls, check_network, failed, passed
from dag_factory.errors import DagFactoryError
from dag_factory.extras import extra_requirements, install_hint
from dag_factory.load.specs import LoadedPlatform
from dag_factory.spec.platform import Environment, LocalEnvironment, SageMakerEnvironment

PLUGIN = "dag_factory"  # DagFactoryPlugin.name
CONNECTIONS_DOC = "docs/deploy.md, Connections"


def check_environment(wanted: str | None) -> tuple[Check, str | None]:
    """What every component's DAG files build for, and the environment the other checks are about."""
    from dag_factory.airflow.environment import HOW_TO_SET, VARIABLE, EnvironmentUnknown, current_env

    what = "environment setting"
    try:
        configured = current_env()
    except EnvironmentUnknown as exc:
        return failed(what, one_line(str(exc))), wanted
    if wanted is not None and configured != wanted:
        return failed(what, f"this host builds DAGs for {configured!r}, not {wanted!r}: {HOW_TO_SET}"), wanted
    source = f"${settings.ENV}" if settings.environment() else f"the Airflow Variable {VARIABLE}"
    return passed(what, f"{configured}, from {source}"), configured


def one_line(message: str) -> str:
    """A note is one line: the first of a multi-line error (a driver's, SQLAlchemy's with its SQL)."""
    return message.strip().splitlines()[0] if message.strip() else ""


def check_metadata_db() -> Check:
    """The metadata DB Airflow is configured with here answers and is migrated (Variables, pools and
    connections are read from it)."""
    from airflow import settings as airflow_settings
    from sqlalchemy import inspect

    what = "metadata DB"
    try:
        engine: Any = airflow_settings.engine
        migrated = inspect(engine).has_table("slot_pool")
        url = engine.url.render_as_string(hide_password=True)
    except Exception as exc:  # any driver's error: this check's answer
        reason = f"{type(exc).__name__}: {one_line(str(exc))}"
        return failed(what, f"cannot connect ({reason}): run doctor with the scheduler's [database] settings")
    if not migrated:
        return failed(what, f"{url} is not migrated: run doctor with the scheduler's [database] settings")
    return passed(what, url)


def check_extras(extras: Sequence[str], needed_by: str) -> list[Check]:
    """Each extra the environment needs is installed, its requirements within their ranges."""
    checks = []
    for extra in extras:
        problems = [
            f"{r.name} not installed" if r.version is None else f"{r.name} {r.version} not in {r.supported}"
            for r in extra_requirements(extra)
            if not r.within
        ]
        what = f"extra [{extra}] ({needed_by})"
        checks.append(
            failed(what, f"{'; '.join(problems)}: {install_hint(extra)}") if problems else passed(what)
        )
    return checks


def check_plugin() -> Check:
    """Airflow loads our plugin from the entry point, with its extra links (the UI's links of a task)."""
    from airflow import plugins_manager

    from dag_factory.airflow.links import LINKS

    what = f"plugin {PLUGIN} registered"
    errors = {
        source: error for source, error in plugins_manager.get_import_errors().items() if PLUGIN in source
    }
    declared_in = plugin_metadata()
    twice = any("already registered" in error for error in errors.values())
    if twice and len(declared_in) < 2:
        fix = (
            "a second copy of the plugin (e.g. in the plugins folder) declares it too: keep the installed "
            "one (pip show -f dag-factory-notebooks)"
        )
        return failed(what, fix)
    if errors and not twice:
        return failed(what, f"it failed to load: {'; '.join(errors.values())}")
    registered = {getattr(link, "name", None) for link in plugins_manager.get_operator_extra_links()}
    if not set(LINKS) <= registered:
        return failed(
            what,
            "no airflow.plugins entry point of dag-factory-notebooks found: install the package (not only "
            "its source) on this host",
        )
    links = f"links: {', '.join(LINKS)}"
    if twice:
        # Python imports one copy; only the metadata is seen twice, and Airflow lists an import error for it
        return passed(
            what,
            f"{links}; its metadata is found in {' and '.join(declared_in)}, so Airflow lists the second as "
            "an import error: remove the stale one (an egg-info left in a checkout on sys.path)",
        )
    return passed(what, links)


def plugin_metadata() -> list[str]:
    """Where installed metadata declares our plugin's entry point (more than one place: a checkout's
    egg-info on sys.path beside the install)."""
    from importlib import metadata

    def declares(dist: metadata.Distribution) -> bool:
        plugins = dist.entry_points.select(group="airflow.plugins")
        return any(ep.value.startswith("dag_factory") for ep in plugins)

    return sorted({str(dist.locate_file("")) for dist in metadata.distributions() if declares(dist)})


def _defined(conn_id: str, kind: str, example: str) -> tuple[Check | None, Any]:
    from airflow.models.connection import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return None, Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return failed(
            f"{kind} connection {conn_id}",
            f"not defined: create it (airflow connections add {conn_id} --conn-json '{example}', or a "
            f"secrets backend; {CONNECTIONS_DOC}), or name another in the platform file's connections.{kind}",
        ), None


def check_aws(env: SageMakerEnvironment, env_name: str, writable: Sequence[str]) -> list[Check]:
    """The AWS connection's credentials, then the buckets, the calls and the network with them."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    from dag_factory.compute.aws import api_errors
    from dag_factory.compute.checks import error_code, probe_config

    conn_id = env.connections.aws
    missing, _ = _defined(
        conn_id, "aws", '{"conn_type": "aws", "extra": {"region_name": "' + env.region + '"}}'
    )
    if missing is not None:
        return [missing]
    # one session from the connection, as the hooks make it, and a client per service from it (a hook
    # per service would resolve the connection and its credentials again for each)
    hook: Any = AwsGenericHook(aws_conn_id=conn_id, region_name=env.region)
    session, config = hook.get_session(region_name=env.region), probe_config()

    def clients(service: str) -> Any:
        endpoint = hook.conn_config.get_service_endpoint_url(service_name=service)
        return session.client(service, endpoint_url=endpoint, config=config, verify=hook.verify)

    what = f"aws connection {conn_id}"
    try:
        account = str(clients("sts").get_caller_identity()["Account"])
    except api_errors() as exc:
        reason = f"{error_code(exc)}: {one_line(str(exc))}"
        return [failed(what, f"sts:GetCallerIdentity failed ({reason}): fix its credentials or endpoint")]
    if account != env.account_id:
        fix = f"credentials of account {account}, the platform file says {env.account_id}: use that account's"
        return [failed(what, fix)]
    return [
        passed(what, f"account {account}"),
        *check_buckets(clients, env, writable),
        *check_calls(clients, env, env_name),
        *check_network(clients, env),
    ]


def check_ssh(conn_id: str) -> Check:
    """Connect and log in where the connection names a host; a production connection has none (each
    task connects to its own instance), so then its key must load."""
    from airflow.providers.ssh.hooks.ssh import SSHHook

    example = '{"conn_type": "ssh", "login": "ec2-user", "extra": {"private_key": "..."}}'
    missing, conn = _defined(conn_id, "ssh", example)
    if missing is not None:
        return missing
    what = f"ssh connection {conn_id}"
    try:
        hook = SSHHook(ssh_conn_id=conn_id, conn_timeout=10)
        if not conn.host:
            if hook.pkey is None and not (hook.key_file and Path(hook.key_file).is_file()):
                return failed(what, "no key: set its extra private_key (or key_file) to the instances' key")
            return passed(what, "no host: each task connects to its instance; the key loads")
        with hook.get_conn():
            pass
    except Exception as exc:  # paramiko and the socket fail in many ways: each is this check's answer
        reason = f"{type(exc).__name__}: {one_line(str(exc))}"
        return failed(what, f"cannot log in to {conn.host}:{conn.port or 22}: {reason}")
    return passed(what, f"logged in to {conn.host}:{conn.port or 22}")


def check_warehouse(kind: str, conn_id: str) -> Check:
    """Connect and run SELECT 1, with the hook the delivery uses."""
    example = (
        '{"conn_type": "postgres", "host": "...", "login": "...", "password": "...", "schema": "..."}'
        if kind == "postgres"
        else '{"conn_type": "snowflake", "login": "...", "password": "...", "extra": {"account": "..."}}'
    )
    missing, conn = _defined(conn_id, kind, example)
    if missing is not None:
        return missing
    what = f"{kind} connection {conn_id}"
    try:
        hook: Any
        if kind == "postgres":
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            hook = PostgresHook(postgres_conn_id=conn_id)
        else:
            from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

            hook = SnowflakeHook(snowflake_conn_id=conn_id)
        hook.get_first("SELECT 1")
    except Exception as exc:  # each driver raises its own errors: each is this check's answer
        reason = f"{type(exc).__name__}: {one_line(str(exc))}"
        return failed(what, f"cannot connect to {conn.host or conn_id}: {reason}")
    return passed(what, "connected, SELECT 1")


def check_pool(env: SageMakerEnvironment) -> Check:
    """The SageMaker API pool exists with the platform file's slots (a missing pool never runs a task)."""
    from airflow.models.pool import Pool

    name, slots = env.api_pool.name, env.api_pool.slots
    what = f"pool {name}"
    fix = f'airflow pools set {name} {slots} "SageMaker API calls"'
    try:
        pool = Pool.get_pool(name)
    except Exception as exc:  # the metadata DB: unreachable, not migrated, no access
        return failed(what, f"cannot read the metadata DB ({type(exc).__name__}): see the metadata DB line")
    if pool is None:
        return failed(what, f"missing: {fix}")
    if pool.slots != slots:
        return failed(what, f"{pool.slots} slots, the platform file says {slots}: {fix}")
    return passed(what, f"{slots} slots")


class Target(NamedTuple):
    """A delivery of a spec deployed beside the platform file: what it needs installed, and written."""

    to: str
    extra: str | None  # the extra its loader needs beyond [airflow]
    bucket: str | None  # an s3 target's platform bucket (the workers write it)


def deployed_targets(platform: LoadedPlatform, env_name: str) -> tuple[list[Target], Check]:
    """The targets of the specs in the platform file's folder (the DAG bundle's specs, docs/deploy.md),
    effective in ``env_name``; and a check that they all load."""
    from dag_factory.deliver.dispatch import LOADERS
    from dag_factory.load.files import NoSpecsFound, spec_files
    from dag_factory.load.specs import load_spec
    from dag_factory.spec.job import S3Delivery

    folder = platform.path.parent
    what = f"specs in {folder}"
    try:
        paths = spec_files([folder])
    except NoSpecsFound:
        return [], passed(what, "none")
    targets, invalid = [], []
    for path in paths:
        try:
            spec = load_spec(path, platform).for_env(env_name)
        except DagFactoryError:
            invalid.append(path.name)
            continue
        for target in spec.deliver:
            needs = LOADERS[target.to].needs
            bucket = target.bucket if isinstance(target, S3Delivery) else None
            targets.append(Target(target.to, needs[0] if needs else None, bucket))
    if invalid:
        fix = f"invalid: {', '.join(invalid)}: `dag-factory validate {folder}` shows why"
        return targets, failed(what, fix)
    return targets, passed(what, f"{len(paths)} valid")


def environment_checks(platform: LoadedPlatform, env_name: str) -> list[Check]:
    try:
        env: Environment = platform.environment(env_name)
    except Exception as exc:  # an unknown environment: a UsageError with did-you-mean
        return [failed(f"environment {env_name} in {platform.path}", str(exc))]
    targets, specs = deployed_targets(platform, env_name)
    checks = [specs]
    if isinstance(env, LocalEnvironment):
        return [*checks, *check_extras(["local"], "the local backend"), check_plugin()]
    for extra in sorted({t.extra for t in targets if t.extra}):
        needed_by = ", ".join(sorted({t.to for t in targets if t.extra == extra}))
        checks += check_extras([extra], f"targets: {needed_by}")
    if not isinstance(env, SageMakerEnvironment):  # the sagemaker-job backend (issue 33)
        not_built = "its AWS, job role and image checks are not built yet: docs/deploy.md section 12"
        return [*checks, check_plugin(), failed(f"{env.backend} backend of {env_name}", not_built)]
    checks += [check_plugin(), *check_aws(env, env_name, sorted({t.bucket for t in targets if t.bucket}))]
    checks += [check_ssh(env.connections.ssh), check_pool(env)]
    for kind in ("postgres", "snowflake"):
        if any(t.to == kind for t in targets):
            checks.append(check_warehouse(kind, getattr(env.connections, kind)))
    return checks


def _runs_locally(platform: LoadedPlatform, env_name: str) -> bool:
    try:
        return isinstance(platform.environment(env_name), LocalEnvironment)
    except Exception:  # an unknown environment: environment_checks says so
        return False


def run(platform_path: Path | None, wanted: str | None) -> list[Check]:
    from dag_factory.load.specs import load_platform

    platform = load_platform(platform_path) if platform_path is not None else None
    if wanted is not None and platform is not None and _runs_locally(platform, wanted):
        # `dag-factory run` brings its own metadata DB and sets the environment: this host needs neither
        local = passed("metadata DB and environment setting", "dag-factory run brings its own")
        return [local, *environment_checks(platform, wanted)]
    environment, env_name = check_environment(wanted)
    checks = [check_metadata_db(), environment]
    if env_name is None or platform is None:
        return [*checks, check_plugin()]
    return checks + environment_checks(platform, env_name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dag_factory.airflow.doctor")
    parser.add_argument("--platform", type=Path, help="a valid platform file (the parent checked it)")
    parser.add_argument("--env")
    args = parser.parse_args(argv)
    checks = run(args.platform, args.env)
    sys.stdout.write(json.dumps([check.model_dump() for check in checks]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
