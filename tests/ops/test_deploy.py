"""deploy: validate, then make the project the current code version in the code bucket (moto S3, or the
local code folder): one immutable folder per content, and a deploy log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.errors import SpecError
from dag_factory.settings import PLATFORM as PLATFORM_ENV_VAR
from tests.paths import REPO
from tests.servers.moto import MotoServer

BUCKET = "automated-notebook-preprod"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo project with its spec and platform, plus files deploy must leave out."""
    monkeypatch.delenv(PLATFORM_ENV_VAR, raising=False)
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples" / "churn-demo", root / "churn")
    platform = (REPO / "project_configs" / "platform.yaml").read_text().replace("../.dag-factory", "local")
    (root / "platform.yaml").write_text(platform)
    spec = (REPO / "project_configs" / "churn-model.yaml").read_text().replace("../examples/churn-demo", ".")
    (root / "churn" / "job.yaml").write_text(spec)
    for junk in (
        ".git/HEAD",
        "outputs/x.parquet",
        "notebooks/.ipynb_checkpoints/a.ipynb",
        "__pycache__/m.pyc",
    ):
        (root / "churn" / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / "churn" / junk).write_text("junk")
    return root / "churn"


def _deploy(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["deploy", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _keys(moto: MotoServer, prefix: str = "churn-model/") -> dict[str, str]:
    pages = moto.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"][len(prefix) :]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def _deployed(output: str) -> str:
    """The version a deploy's last line names."""
    return output.splitlines()[-1].split("version ", 1)[1].split(" ", 1)[0]


EXPECTED = {
    "README.md",
    "job.yaml",
    "requirements.txt",
    "notebooks/01_features.ipynb",
    "notebooks/02_train.ipynb",
}


@pytest.mark.integration
def test_deploy_to_s3(project: Path, aws_env: MotoServer) -> None:
    aws_env.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    code, output = _deploy(str(project), "--env", "preprod", "--dry-run")
    assert code == 0, output
    first = _deployed(output)
    assert output.splitlines()[-1] == (
        f"dry run: would deploy version {first} to s3://{BUCKET}/churn-model/versions/{first}/: "
        "5 added, 0 changed, 0 deleted, 0 unchanged, 4 skipped (the first deploy)"
    )
    assert _keys(aws_env) == {}

    code, output = _deploy(str(project), "--env", "preprod")
    assert code == 0, output
    assert _deployed(output) == first
    files = _keys(aws_env, f"churn-model/versions/{first}/")
    assert set(files) == EXPECTED
    log = set(_keys(aws_env, "churn-model/deploys/"))
    assert len(log) == 1 and next(iter(log)).endswith(f"_{first}")

    code, output = _deploy(str(project / "job.yaml"), "--env", "preprod")  # the same content again
    assert code == 0, output
    assert output.splitlines()[-1] == (
        f"version {first} at s3://{BUCKET}/churn-model/versions/{first}/ is current: "
        "0 added, 0 changed, 0 deleted, 5 unchanged, 4 skipped; nothing changed"
    )
    assert len(_keys(aws_env, "churn-model/deploys/")) == 1

    (project / "README.md").unlink()
    (project / "requirements.txt").write_text("pandas==3.1.1\n")
    code, output = _deploy(str(project), "--env", "preprod", "--dry-run")
    assert "~ requirements.txt" in output and "- README.md" in output
    assert set(_keys(aws_env, "churn-model/versions/")) == {f"{first}/{k}" for k in EXPECTED}
    code, output = _deploy(str(project), "--env", "preprod")
    assert code == 0, output
    second = _deployed(output)
    assert output.splitlines()[-1].endswith(
        f"0 added, 1 changed, 1 deleted, 3 unchanged, 4 skipped (against version {first})"
    )
    after = _keys(aws_env, f"churn-model/versions/{second}/")
    assert set(after) == EXPECTED - {"README.md"}
    assert after["requirements.txt"] != files["requirements.txt"]
    assert _keys(aws_env, f"churn-model/versions/{first}/") == files  # a version never changes
    assert sorted(k.split("_", 1)[1] for k in _keys(aws_env, "churn-model/deploys/")) == sorted(
        [first, second]
    )


@pytest.mark.integration
def test_deploy_without_the_bucket_is_an_error(project: Path, aws_env: MotoServer) -> None:
    result = CliRunner().invoke(app, ["deploy", str(project), "--env", "preprod"])
    assert result.exit_code != 0
    assert "does not exist" in result.output


def test_deploy_to_the_local_code_folder(project: Path) -> None:
    target = project.parent / "local" / "code" / "churn-model"
    code, output = _deploy(str(project), "--env", "local")
    assert code == 0, output
    first = target / "versions" / _deployed(output)
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file()) == sorted(
        EXPECTED
    )
    (project / "README.md").unlink()
    code, output = _deploy(str(project), "--env", "local")
    assert "0 added, 0 changed, 1 deleted, 4 unchanged" in output
    second = target / "versions" / _deployed(output)
    assert not (second / "README.md").exists() and (first / "README.md").exists()
    assert len(list((target / "deploys").iterdir())) == 2


def test_an_invalid_project_is_not_deployed(project: Path) -> None:
    spec = project / "job.yaml"
    spec.write_text(spec.read_text().replace("max_depth: 6", "max_dept: 6"))
    code, output = _deploy(str(project), "--env", "local")
    assert code == 1
    assert "did you mean 'max_depth'?" in output
    assert not (project.parent / "local" / "code").exists()


SECRETS = {
    ".env": "may hold secrets",
    ".env.local": "may hold secrets",
    "prod.env": "may hold secrets",
    "certs/server.pem": "a private key or certificate",
    "certs/server.key": "a private key or certificate",
    "id_rsa": "an ssh key",
    "id_ed25519.pub": "an ssh key",
    ".ssh/config": "ssh keys",
    ".aws/credentials": "cloud credentials",
    ".netrc": "credentials",
    ".pgpass": "credentials",
}
# what the output names for each (a folder once, with a trailing '/')
SKIPPED_LINES = [
    "  skipped .aws/: cloud credentials",
    "  skipped .env: may hold secrets",
    "  skipped .env.local: may hold secrets",
    "  skipped .git/: version control data",
    "  skipped .netrc: credentials",
    "  skipped .pgpass: credentials",
    "  skipped .ssh/: ssh keys",
    "  skipped __pycache__/: python caches",
    "  skipped certs/server.key: a private key or certificate",
    "  skipped certs/server.pem: a private key or certificate",
    "  skipped home-link: a link that leads out of the repository",
    "  skipped id_ed25519.pub: an ssh key",
    "  skipped id_rsa: an ssh key",
    "  skipped notebooks/.ipynb_checkpoints/: editor checkpoints",
    "  skipped outputs/: run outputs",
    "  skipped prod.env: may hold secrets",
    "  skipped shared/: a link to a folder (not followed)",
]


@pytest.fixture
def project_with_secrets(project: Path, tmp_path: Path) -> Path:
    """The demo project holding secrets-looking files and links: none may leave the machine."""
    for name in SECRETS:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("SECRET=1\n")
    outside = tmp_path / "home" / "me" / ".aws-token"  # not in the repository (tmp_path/repo)
    outside.parent.mkdir(parents=True)
    outside.write_text("token\n")
    (project / "home-link").symlink_to(outside)
    (project / "shared").symlink_to(project / "notebooks", target_is_directory=True)
    return project


@pytest.mark.integration
def test_deploy_never_uploads_secrets_and_says_what_it_skipped(
    project_with_secrets: Path, aws_env: MotoServer
) -> None:
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    code, output = _deploy(str(project_with_secrets), "--env", "preprod")
    assert code == 0, output
    version = _deployed(output)
    assert set(_keys(aws_env, f"churn-model/versions/{version}/")) == EXPECTED  # no secret arrived
    lines = output.splitlines()
    assert [line for line in lines if line.startswith("  skipped ")] == SKIPPED_LINES
    assert lines[-1] == (
        f"deployed version {version} to s3://{BUCKET}/churn-model/versions/{version}/: "
        "5 added, 0 changed, 0 deleted, 0 unchanged, 17 skipped (the first deploy)"
    )


def test_deploy_to_the_local_code_folder_skips_secrets_too(project_with_secrets: Path) -> None:
    target = project_with_secrets.parent / "local" / "code" / "churn-model"
    code, output = _deploy(str(project_with_secrets), "--env", "local", "--dry-run")
    assert code == 0, output
    assert [line for line in output.splitlines() if line.startswith("  skipped ")] == SKIPPED_LINES
    assert not target.exists()
    code, output = _deploy(str(project_with_secrets), "--env", "local")
    assert code == 0, output
    version = target / "versions" / _deployed(output)
    assert sorted(p.relative_to(version).as_posix() for p in version.rglob("*")) == sorted(
        ["notebooks", *EXPECTED]
    )


@pytest.mark.integration
def test_deploy_refuses_a_project_dir_outside_the_repository(project: Path, aws_env: MotoServer) -> None:
    """The repository is the folder holding .git (tmp_path/repo); the notebooks here sit beside it."""
    aws_env.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    repo = project.parent
    shutil.rmtree(project / ".git")  # the fixture's junk: here the repository is one level up
    (repo / ".git").mkdir()
    elsewhere = repo.parent / "elsewhere"
    shutil.copytree(project, elsewhere)
    spec = project / "job.yaml"
    spec.write_text(spec.read_text().replace("project_dir: .", "project_dir: ../../elsewhere"))
    code, output = _deploy(str(project), "--env", "preprod")
    assert code == 1
    assert output.splitlines()[0] == (
        f"{spec}:7:14: project_dir: project_dir '../../elsewhere' is {elsewhere}/, outside the spec's "
        f"repository {repo}/ (keep the notebooks inside the repository: the nearest folder above the "
        "spec holding .git (without git: the folder holding project_configs/, else the spec's own folder))"
    )
    assert _keys(aws_env) == {}


def test_deploy_project_refuses_the_outside_folder_without_validate(project: Path) -> None:
    """`dag-factory run` deploys without the validate step: the sync itself refuses too."""
    from dag_factory.load.specs import load_platform, load_spec
    from dag_factory.ops.deploy import deploy_project

    spec = project / "job.yaml"
    spec.write_text(spec.read_text().replace("project_dir: .", "project_dir: .."))
    assert (project / ".git").is_dir()  # the project folder is a repository of its own: .. leaves it
    loaded = load_spec(spec, load_platform(project.parent / "platform.yaml"))
    with pytest.raises(SpecError) as info:
        deploy_project(loaded, "local")
    assert "outside the spec's repository" in str(info.value)
    assert not (project.parent / "local").exists()


def test_warnings_are_shown_but_do_not_stop_a_deploy(project: Path) -> None:
    import nbformat

    path = project / "notebooks" / "02_train.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nsys.exit()"))
    nbformat.write(nb, path)
    code, output = _deploy(str(project), "--env", "local")
    assert code == 0, output
    where = f"notebook notebooks/02_train.ipynb, cell {len(nb.cells)}, line 2"
    assert f"warning: notebooks[1].path: {where}: " in output
    assert "sys.exit() stops papermill at this cell" in output
    version = project.parent / "local" / "code" / "churn-model" / "versions" / _deployed(output)
    assert (version / "notebooks" / "02_train.ipynb").is_file()
