"""`dag-factory dags` into a DAG folder that several repositories share: writing one repository's specs
never removes or replaces another's DAG file; orphans (their spec is gone) go only with --prune."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from tests.paths import REPO

CONFIGS = REPO / "project_configs"


def _repo(root: Path, spec: str, project: str) -> Path:
    """A data-science repository with one spec (the demo's, under another project name) and the platform."""
    configs = root / "project_configs"
    configs.mkdir(parents=True)
    shutil.copy(CONFIGS / "platform.yaml", configs / "platform.yaml")
    text = (CONFIGS / "churn-demo.yaml").read_text().replace("project: churn-demo", f"project: {project}")
    (configs / spec).write_text(text.replace("../examples", str(REPO / "examples")))
    return configs / spec


def _dags(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["dags", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two repositories deployed side by side, each writing its DAG into one shared folder."""
    return (
        _repo(tmp_path / "team-a", "churn.yaml", "churn-a"),
        _repo(tmp_path / "team-b", "scores.yaml", "scores-b"),
        tmp_path / "bundle" / "dags",
    )


def test_two_repos_write_into_one_folder_and_both_dags_load(
    shared: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    spec_a, spec_b, dags = shared
    assert _dags(spec_a, "--output", dags) == (0, f"wrote {dags / 'churn.py'}\n")
    assert _dags(spec_b, "--output", dags) == (0, f"wrote {dags / 'scores.py'}\n")  # a's file is kept
    assert _dags(spec_a, "--output", dags, "--check") == (0, "")  # nobody else's file is stale for a
    assert _dags(spec_b, "--output", dags, "--check") == (0, "")

    monkeypatch.setenv("DAG_FACTORY_ENV", "local")
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == ["churn-a", "scores-b"]


def test_a_spec_that_is_gone_leaves_an_orphan_only_prune_removes(shared: tuple[Path, Path, Path]) -> None:
    spec_a, spec_b, dags = shared
    _dags(spec_a, "--output", dags)
    _dags(spec_b, "--output", dags)
    spec_a.unlink()  # team a removed its job
    orphan = dags / "churn.py"

    assert _dags(spec_b, "--output", dags) == (
        0,
        f"wrote {dags / 'scores.py'}\norphaned: {orphan}: its spec {spec_a} is gone (--prune removes it)\n",
    )
    assert orphan.exists()
    assert _dags(spec_b, "--output", dags, "--check") == (
        1,
        f"stale: {orphan}: its spec {spec_a} is gone (--prune removes it)\n",
    )
    assert _dags(spec_b, "--output", dags, "--prune") == (
        0,
        f"wrote {dags / 'scores.py'}\nremoved {orphan} (its spec is gone)\n",
    )
    assert sorted(p.name for p in dags.iterdir()) == ["scores.py"]


def test_a_spec_never_replaces_another_specs_dag_file_of_the_same_name(tmp_path: Path) -> None:
    mine = _repo(tmp_path / "team-a", "churn.yaml", "churn-a")
    theirs = _repo(tmp_path / "team-b", "churn.yaml", "churn-b")
    dags = tmp_path / "dags"
    _dags(mine, "--output", dags)
    before = (dags / "churn.py").read_text()

    code, output = _dags(theirs, "--output", dags)
    assert code == 2
    assert output == (
        f"error: {dags / 'churn.py'} is the DAG file of another spec ({mine}); {theirs} would replace it: "
        "rename one of the two spec files (the DAG file is named after the spec's file name)\n"
    )
    assert (dags / "churn.py").read_text() == before


def test_files_it_did_not_generate_are_never_touched(shared: tuple[Path, Path, Path]) -> None:
    spec_a, _, dags = shared
    dags.mkdir(parents=True)
    hand_written = dags / "hand_written.py"
    hand_written.write_text("from airflow.sdk import DAG\n")
    assert _dags(spec_a, "--output", dags, "--prune") == (0, f"wrote {dags / 'churn.py'}\n")
    assert hand_written.read_text() == "from airflow.sdk import DAG\n"


def test_a_spec_without_a_platform_file_gets_no_dag_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DAG file whose spec has no platform file cannot import (its environment is unknown): refused, with
    what to pass; --platform pins one into the file, which then loads."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("DAG_FACTORY_PLATFORM", raising=False)
    spec = _repo(tmp_path / "team-a", "churn.yaml", "churn-a")
    lone = tmp_path / "elsewhere" / "churn.yaml"  # the spec alone, outside any folder with a platform file
    lone.parent.mkdir()
    shutil.copy(spec, lone)
    dags = tmp_path / "dags"

    code, output = _dags(lone, "--output", dags)
    assert code == 2
    assert " ".join(output.split()) == (
        f"error: no DAG file written: no platform.yaml found for {lone} (nor in a project_configs/ folder "
        "above it); pass --platform or set $DAG_FACTORY_PLATFORM; a DAG file without one cannot import"
    )
    assert not dags.exists()

    platform = spec.parent / "platform.yaml"
    assert _dags(lone, "--output", dags, "--platform", platform) == (0, f"wrote {dags / 'churn.py'}\n")
    assert _dags(lone, "--output", dags, "--platform", platform, "--check") == (0, "")
    monkeypatch.setenv("DAG_FACTORY_ENV", "local")
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {}
    assert bag.dag_ids == ["churn-a"]
