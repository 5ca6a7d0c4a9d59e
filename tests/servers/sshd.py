"""A real OpenSSH server on loopback standing in for a SageMaker notebook instance.

Fixture ``sshd_server`` (session): ``/usr/sbin/sshd -D -e -f CONFIG`` listening on 127.0.0.1 and on a pool
of further loopback addresses (127.0.1.1 ...), all on one free port, so that every fake notebook instance
can get its own private IP (see tests/servers/sagemaker.py). Login is ``root`` with a generated ed25519
key; the login environment stands in for the instance's conda env:

- ``HOME`` is a temp dir holding ``anaconda3/bin/activate`` (a fake of SageMaker's
  ``/home/ec2-user/anaconda3/bin/activate``): ``source <activate> python3`` activates
  ``anaconda3/envs/python3``, a venv that sees the project's .venv packages through a .pth file (papermill,
  ipykernel, boto3 ... instantly, no install), with real ``pip`` (unpacked from CPython's bundled wheel, so
  ``pip install papermill==2.7.0 -r requirements.txt`` works offline when the project venv already has the
  packages, and installs into the login venv only, never into the project's .venv) and a ``papermill``
  command. ``anaconda3/bin`` is on the login PATH before activation and holds an ``aws`` shim (not the
  AWS CLI) that implements ``aws s3 sync`` / ``aws s3 cp`` / ``aws s3 ls`` with boto3.
- The working directory of a login is HOME (via the fake home's ``.bashrc``), as on an instance.
- Extra login variables (AWS endpoint and credentials for moto) go in ``authorized_keys`` ``environment=``
  options (``PermitUserEnvironment yes``), set with :meth:`SshdServer.set_login_env`; sshd re-reads the
  file on every login. There is no ``AcceptEnv`` (beyond LANG/LC_*), as on a real instance, so an
  SSHOperator's ``environment=`` does not reach the commands.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from tests.servers.ports import free_port

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
LOGIN_USER = "root"
PRIMARY_ADDRESS = "127.0.0.1"
# further loopback addresses sshd listens on; the ENI patch hands them out to notebook instances.
# sshd's MAX_LISTEN_SOCKS is 16: 127.0.0.1 + 15.
POOL_ADDRESSES = tuple(f"127.0.1.{i}" for i in range(1, 16))
CONDA_ENVS = ("python3",)
START_TIMEOUT_S = 5.0
LOGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # sshd's default

SSH_OPTIONS = (
    "-F", "/dev/null",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
)  # fmt: skip


class SshdStartError(RuntimeError):
    """sshd did not come up; the message carries its log."""


@dataclass
class SshdServer:
    host: str
    port: int
    user: str
    key_file: Path
    public_key: str
    addresses: tuple[str, ...]
    root: Path
    home: Path
    activate_script: Path
    conda_envs: dict[str, Path]
    authorized_keys: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    base_login_env: dict[str, str] = field(default_factory=dict)
    login_env: dict[str, str] = field(default_factory=dict)

    # --- for Airflow -------------------------------------------------------------------------------
    def airflow_conn_extra(self) -> dict[str, object]:
        return {"key_file": str(self.key_file), "no_host_key_check": True, "conn_timeout": 10}

    def airflow_conn_json(self, host: str | None = None) -> str:
        """Value for ``AIRFLOW_CONN_SSH_DEFAULT`` (JSON form)."""
        return json.dumps(
            {
                "conn_type": "ssh",
                "host": host or self.host,
                "login": self.user,
                "port": self.port,
                "extra": self.airflow_conn_extra(),
            }
        )

    def airflow_conn_uri(self, host: str | None = None) -> str:
        """Value for ``AIRFLOW_CONN_SSH_DEFAULT`` (URI form)."""
        query = urlencode({"key_file": str(self.key_file), "no_host_key_check": "true", "conn_timeout": "10"})
        return f"ssh://{quote(self.user)}@{host or self.host}:{self.port}/?{query}"

    # --- for the command builder -------------------------------------------------------------------
    def activate_command(self, env: str = "python3") -> str:
        """The stand-in for ``source /home/ec2-user/anaconda3/bin/activate <env>``."""
        return f"source {self.activate_script} {env}"

    # --- for tests ---------------------------------------------------------------------------------
    def ssh_argv(self, command: str, host: str | None = None) -> list[str]:
        return [
            "ssh", *SSH_OPTIONS, "-i", str(self.key_file), "-p", str(self.port),
            f"{self.user}@{host or self.host}", command,
        ]  # fmt: skip

    def run(
        self, command: str, host: str | None = None, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` over ssh with the OpenSSH client; returns the completed process (text)."""
        return subprocess.run(
            self.ssh_argv(command, host), capture_output=True, text=True, timeout=timeout, check=check,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def set_login_env(self, env: Mapping[str, str]) -> None:
        """Variables every later ssh login sees (on top of HOME and the pip settings)."""
        self.login_env = dict(env)
        _write_authorized_keys(self.authorized_keys, self.public_key, {**self.base_login_env, **env})

    def clear_login_env(self) -> None:
        self.set_login_env({})

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- building blocks ---------------------------------------------------------------------------------
def _write_authorized_keys(path: Path, public_key: str, env: Mapping[str, str]) -> None:
    options = ",".join(f'environment="{k}={_quote_option(v)}"' for k, v in env.items())
    line = f"{options} {public_key}" if options else public_key
    tmp = path.with_suffix(".tmp")
    tmp.write_text(line.strip() + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _quote_option(value: str) -> str:
    if "\n" in value:
        raise ValueError(f"login env values must be one line: {value!r}")
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _sshd_config(root: Path, port: int, addresses: Sequence[str], host_key: Path) -> str:
    listen = "\n".join(f"ListenAddress {a}:{port}" for a in addresses)
    return f"""\
# generated by tests/servers/sshd.py
{listen}
HostKey {host_key}
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitUserEnvironment yes
AcceptEnv LANG LC_*
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
MaxStartups 200:30:400
MaxSessions 100
LogLevel INFO
Subsystem sftp internal-sftp
"""


def _wait_ready(proc: subprocess.Popen[bytes], addresses: Sequence[str], port: int, deadline: float) -> None:
    pending = list(addresses)
    while pending:
        if proc.poll() is not None:
            raise SshdStartError(f"sshd exited with code {proc.returncode}")
        addr = pending[0]
        try:
            with socket.create_connection((addr, port), timeout=0.5) as conn:
                conn.settimeout(1.0)
                banner = conn.recv(64)
            if banner.startswith(b"SSH-2.0"):
                pending.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SshdStartError(f"sshd not answering on {addr}:{port} within {START_TIMEOUT_S}s")
        time.sleep(0.02)


# --- the fake conda install --------------------------------------------------------------------------
ACTIVATE_SCRIPT = """\
# Fake of SageMaker's anaconda3/bin/activate, generated by tests/servers/sshd.py.
# usage: source {root}/bin/activate [ENV]   (ENV defaults to python3)
# as conda's own scripts (conda.sh) and packages' activate.d hooks do: read variables that may be unset
if [ -n "$PS1" ]; then :; fi
export _CONDA_SET_GDAL_DATA="$GDAL_DATA"
_fake_conda_env="${{1:-python3}}"
if [ ! -f "{root}/envs/$_fake_conda_env/bin/activate" ]; then
    echo "activate: no conda env named '$_fake_conda_env' in {root}/envs" >&2
    unset _fake_conda_env
    return 1 2>/dev/null || exit 1
fi
. "{root}/envs/$_fake_conda_env/bin/activate"
export CONDA_DEFAULT_ENV="$_fake_conda_env"
export CONDA_PREFIX="{root}/envs/$_fake_conda_env"
export CONDA_EXE="{root}/bin/conda"
unset _fake_conda_env
"""

PAPERMILL_SHIM = """\
#!{python}
import sys
from papermill.__main__ import papermill
sys.exit(papermill())
"""

PIP_SHIM = """\
#!/bin/sh
exec "{python}" -m pip "$@"
"""

AWS_SHIM = '''\
#!{python}
"""Minimal stand-in for the AWS CLI: `aws s3 sync|cp|ls` with boto3 (honours AWS_ENDPOINT_URL).

Written by tests/servers/sshd.py. Supports: s3 sync SRC DST [--delete] [--exclude P] [--include P]
[--quiet|--only-show-errors|--no-progress|--exact-timestamps]; s3 cp SRC DST [--recursive] [same filters];
s3 ls [s3://bucket[/prefix]] [--recursive]; --version.
"""
import fnmatch
import os
import sys
from pathlib import Path

import boto3

IGNORED_FLAGS = {{"--quiet", "--only-show-errors", "--no-progress", "--exact-timestamps", "--size-only",
                 "--follow-symlinks", "--no-follow-symlinks"}}


def split_s3(url):
    rest = url[len("s3://"):]
    bucket, _, key = rest.partition("/")
    return bucket, key


def included(rel, filters):
    keep = True
    for kind, pattern in filters:
        if fnmatch.fnmatch(rel, pattern):
            keep = kind == "include"
    return keep


def list_local(root):
    root = Path(root)
    if root.is_file():
        return {{root.name: root}}
    return {{p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}}


def list_s3(s3, bucket, prefix):
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    out = {{}}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix):]] = obj["Key"]
    return out


def join_key(prefix, rel):
    return f"{{prefix.rstrip('/')}}/{{rel}}" if prefix else rel


def transfer(s3, src, dst, items, quiet):
    for rel, ref in items:
        if src.startswith("s3://") and dst.startswith("s3://"):
            sb, _ = split_s3(src)
            db, dk = split_s3(dst)
            s3.copy_object(Bucket=db, Key=join_key(dk, rel), CopySource={{"Bucket": sb, "Key": ref}})
        elif src.startswith("s3://"):
            sb, _ = split_s3(src)
            target = Path(dst) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(sb, ref, str(target))
        else:
            db, dk = split_s3(dst)
            s3.upload_file(str(ref), db, join_key(dk, rel))
        if not quiet:
            print(f"copy: {{rel}} -> {{dst}}")


def listing(s3, url):
    if url.startswith("s3://"):
        bucket, prefix = split_s3(url)
        return list_s3(s3, bucket, prefix)
    return list_local(url)


def delete_extra(s3, dst, extra):
    for rel in extra:
        if dst.startswith("s3://"):
            bucket, prefix = split_s3(dst)
            s3.delete_object(Bucket=bucket, Key=join_key(prefix, rel))
        else:
            (Path(dst) / rel).unlink()


def cmd_sync(s3, src, dst, opts):
    source = {{rel: ref for rel, ref in listing(s3, src).items() if included(rel, opts["filters"])}}
    target = listing(s3, dst) if dst.startswith("s3://") or Path(dst).exists() else {{}}
    transfer(s3, src, dst, sorted(source.items()), opts["quiet"])
    if opts["delete"]:
        delete_extra(s3, dst, [r for r in target if r not in source and included(r, opts["filters"])])


def cmd_cp(s3, src, dst, opts):
    if opts["recursive"]:
        return cmd_sync(s3, src, dst, {{**opts, "delete": False}})
    if src.startswith("s3://"):
        bucket, key = split_s3(src)
        if dst.startswith("s3://"):
            db, dk = split_s3(dst)
            dk = join_key(dk, key.rsplit("/", 1)[-1]) if dk.endswith("/") or not dk else dk
            s3.copy_object(Bucket=db, Key=dk, CopySource={{"Bucket": bucket, "Key": key}})
            return None
        target = Path(dst)
        if dst.endswith("/") or target.is_dir():
            target = target / key.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        return None
    bucket, key = split_s3(dst)
    if not key or key.endswith("/"):
        key += Path(src).name
    s3.upload_file(src, bucket, key)
    return None


def cmd_ls(s3, args, opts):
    if not args:
        for b in s3.list_buckets()["Buckets"]:
            print(f"{{b['CreationDate']:%Y-%m-%d %H:%M:%S}} {{b['Name']}}")
        return
    bucket, prefix = split_s3(args[0])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            print(f"{{obj['LastModified']:%Y-%m-%d %H:%M:%S}} {{obj['Size']:>10}} {{obj['Key']}}")


def parse(argv):
    opts = {{"filters": [], "delete": False, "recursive": False, "quiet": False}}
    args = []
    it = iter(argv)
    for a in it:
        if a in ("--exclude", "--include"):
            opts["filters"].append((a[2:], next(it)))
        elif a == "--delete":
            opts["delete"] = True
        elif a == "--recursive":
            opts["recursive"] = True
        elif a in IGNORED_FLAGS:
            opts["quiet"] = opts["quiet"] or a in ("--quiet", "--only-show-errors")
        elif a in ("--region", "--endpoint-url", "--profile"):
            opts[a[2:]] = next(it)
        elif a.startswith("--"):
            sys.exit(f"aws shim: unsupported option {{a}}")
        else:
            args.append(a)
    return args, opts


def main(argv):
    if argv[:1] == ["--version"]:
        print("aws-cli/shim (tests/servers/sshd.py) boto3/" + boto3.__version__)
        return 0
    if len(argv) < 2 or argv[0] != "s3" or argv[1] not in ("sync", "cp", "ls"):
        print("aws shim: only `aws s3 sync|cp|ls` is implemented", file=sys.stderr)
        return 2
    args, opts = parse(argv[2:])
    s3 = boto3.client("s3", region_name=opts.get("region"), endpoint_url=opts.get("endpoint-url"))
    if argv[1] == "ls":
        cmd_ls(s3, args, opts)
        return 0
    if len(args) != 2:
        print(f"aws shim: s3 {{argv[1]}} needs SRC and DST", file=sys.stderr)
        return 2
    (cmd_sync if argv[1] == "sync" else cmd_cp)(s3, args[0], args[1], opts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def _bundled_pip_wheel() -> Path:
    import ensurepip

    bundled = Path(ensurepip.__file__).parent / "_bundled"
    wheels = sorted(bundled.glob("pip-*.whl"))
    if not wheels:
        raise SshdStartError(f"no bundled pip wheel in {bundled}")
    return wheels[-1]


def build_login_env(conda_root: Path, env_name: str = "python3") -> Path:
    """A venv at ``conda_root/envs/env_name`` that sees the project's packages; about 0.3 s."""
    prefix = conda_root / "envs" / env_name
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, capture_output=True
    )
    python = prefix / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # the project's packages come after the env's own site-packages: whatever pip installs here wins
    (site / "_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # and the data files installed with them (nbconvert's HTML templates live in <prefix>/share/jupyter,
    # which a real env's pip install puts under the env's own prefix)
    (prefix / "share").mkdir(exist_ok=True)
    (prefix / "share" / "jupyter").symlink_to(Path(sysconfig.get_paths()["data"]) / "share" / "jupyter")
    with zipfile.ZipFile(_bundled_pip_wheel()) as wheel:
        wheel.extractall(site)
    scripts = {
        "pip": PIP_SHIM.format(python=python),
        "pip3": PIP_SHIM.format(python=python),
        "papermill": PAPERMILL_SHIM.format(python=python),
    }
    for name, text in scripts.items():
        path = prefix / "bin" / name
        path.write_text(text)
        path.chmod(0o755)
    return prefix


def build_fake_conda(home: Path, envs: Sequence[str] = CONDA_ENVS) -> tuple[Path, dict[str, Path]]:
    conda_root = home / "anaconda3"
    (conda_root / "bin").mkdir(parents=True)
    activate = conda_root / "bin" / "activate"
    activate.write_text(ACTIVATE_SCRIPT.format(root=conda_root))
    activate.chmod(0o755)
    envs_built = {name: build_login_env(conda_root, name) for name in envs}
    # `aws` is on the login PATH before any activation, as on an instance
    aws = conda_root / "bin" / "aws"
    aws.write_text(AWS_SHIM.format(python=envs_built[envs[0]] / "bin" / "python"))
    aws.chmod(0o755)
    return activate, envs_built


# --- start / stop ------------------------------------------------------------------------------------
def _check_can_run() -> None:
    if not os.path.isfile(SSHD) or not os.access(SSHD, os.X_OK):
        raise SshdStartError(f"{SSHD} not found: install Debian's openssh-server (scripts/bootstrap.sh)")
    if shutil.which(SSH_KEYGEN) is None or shutil.which("ssh") is None:
        raise SshdStartError("ssh / ssh-keygen not found: install Debian's openssh-client")
    if os.geteuid() != 0:
        raise SshdStartError("sshd_server logs in as root and must run as root (CI and dev machines do)")


def start_sshd(root: Path, addresses: Sequence[str] = (PRIMARY_ADDRESS, *POOL_ADDRESSES)) -> SshdServer:
    """Start sshd under ``root`` (a fresh dir); raises SshdStartError with the sshd log on failure."""
    _check_can_run()
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    host_key = root / "ssh_host_ed25519_key"
    client_key = root / "id_ed25519"
    _keygen(host_key, "sshd-fixture-host")
    _keygen(client_key, "sshd-fixture-client")
    home = root / "home"
    home.mkdir()
    activate, envs = build_fake_conda(home)
    public_key = client_key.with_suffix(".pub").read_text().strip()
    # bash run by sshd (`bash -c COMMAND`, stdin a socket) reads ~/.bashrc, here the fake home's: start in
    # HOME like on an instance (the real cwd would be /root)
    (home / ".bashrc").write_text('cd "$HOME" || return\n')
    base_env = {
        "HOME": str(home), "PATH": f"{activate.parent}:{LOGIN_PATH}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
    }  # fmt: skip
    authorized_keys = root / "authorized_keys"
    _write_authorized_keys(authorized_keys, public_key, base_env)
    log_file = root / "sshd.log"
    errors = []
    for _attempt in range(3):
        port = free_port(addresses)
        config = root / "sshd_config"
        config.write_text(_sshd_config(root, port, addresses, host_key))
        server = SshdServer(
            host=addresses[0], port=port, user=LOGIN_USER, key_file=client_key, public_key=public_key,
            addresses=tuple(addresses), root=root, home=home, activate_script=activate,
            conda_envs=envs, authorized_keys=authorized_keys, log_file=log_file, base_login_env=base_env,
        )  # fmt: skip
        with log_file.open("ab") as log:
            server.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            _wait_ready(server.process, addresses, port, time.monotonic() + START_TIMEOUT_S)
            return server
        except SshdStartError as exc:
            server.stop()
            errors.append(f"port {port}: {exc}")
    raise SshdStartError(
        "sshd did not start:\n  "
        + "\n  ".join(errors)
        + f"\n--- sshd log {log_file} ---\n"
        + (log_file.read_text(errors="replace") if log_file.exists() else "(none)")
    )


@contextlib.contextmanager
def running_sshd() -> Iterator[SshdServer]:
    root = Path(tempfile.mkdtemp(prefix="sshd-fixture-"))
    server = None
    try:
        server = start_sshd(root)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """A real OpenSSH server on loopback (see module doc). Never skips: a failure to start raises."""
    with running_sshd() as server:
        yield server
