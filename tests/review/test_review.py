"""plan, diff and graph: golden outputs for the example spec (REGENERATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from tests.golden import check_golden
from tests.paths import REPO

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
PLATFORM = "project_configs/platform.yaml"
SPEC = "project_configs/churn-model.yaml"
CHANGED = "tests/review/churn-model-changed.yaml"
ASSET_SCHEDULED = "tests/cases/valid/asset_schedule.yaml"


pytestmark = pytest.mark.usefixtures("repo_root")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(("fmt", "name"), [("text", "plan-prod.txt"), ("markdown", "plan-prod.md")])
def test_plan_golden(fmt: str, name: str) -> None:
    code, output = _run("plan", SPEC, "--env", "prod", "--format", fmt)
    assert code == 0, output
    check_golden(output, GOLDEN / name)


@pytest.mark.parametrize(("fmt", "name"), [("text", "plan-assets.txt"), ("markdown", "plan-assets.md")])
def test_plan_of_a_spec_scheduled_on_assets_golden(fmt: str, name: str) -> None:
    code, output = _run("plan", ASSET_SCHEDULED, "--env", "prod", "--format", fmt, "--platform", PLATFORM)
    assert code == 0, output
    check_golden(output, GOLDEN / name)


def test_plan_json_and_mermaid() -> None:
    import json

    code, output = _run("plan", SPEC, "--env", "preprod", "--format", "json")
    assert code == 0, output
    review = json.loads(output)
    assert review["compute"]["instance_type"] == "ml.t3.large"
    assert review["schedule"]["cron"] is None
    assert len(review["groups"]) == 20
    assert review["estimate"]["cost_max_usd"] == 8.0
    code, output = _run("plan", SPEC, "--format", "mermaid")
    assert code == 0
    assert output.startswith("flowchart LR")
    assert "nb_02_train" in output


def test_plan_shared_isolation_shows_one_templated_value(tmp_path: Path) -> None:
    """One instance runs every value in turn: its tasks are listed once, the value shown as `<country>`."""
    spec = tmp_path / "fan_out.yaml"
    fan_out = (REPO / "tests/cases/valid/fan_out.yaml").read_text()
    spec.write_text(fan_out.replace("  max_parallel: 3\n", "  max_parallel: 3\n  isolation: shared\n"))
    code, output = _run("plan", str(spec), "--platform", PLATFORM, "--env", "prod")
    assert code == 0, output
    tasks = next(block for block in output.split("\n\n") if block.startswith("one shared instance"))
    assert tasks.splitlines() == [
        "one shared instance runs all 4 country values, one after another",
        "  create_instance           ml.t3.medium, 30 GB, subnet subnet-0f1e2d3c4b5a60002  [timeout 30m]",
        "  resolve_ip                instance -> network interface -> private ip (xcom)  [timeout 5m]",
        "  prepare                   sync s3://automated-notebook-prod/fan-out/, install papermill==2.7.0 "
        "+ requirements.txt  [timeout 30m]",
        "  nb_01_prepare__<country>  notebooks/01_prepare.ipynb (kernel python3)  [timeout 4h]",
        '  nb_02_score__<country>    notebooks/02_score.ipynb (kernel python3, model="xgb")  [timeout 1h30m]',
        "  stop_instance             teardown: always runs (all_done), also after a failure  [timeout 30m]",
        "  delete_instance           teardown: always runs (all_done), also after a failure  [timeout 30m]",
    ]
    assert "estimate   1 x ml.t3.medium x 4h = 4 instance-hours x $0.05/h = $0.20 per run at most" in output


def test_plan_unknown_env_is_a_located_error() -> None:
    result = CliRunner().invoke(app, ["plan", SPEC, "--env", "prd"])
    assert result.exit_code != 0
    assert "did you mean 'prod'?" in result.output


@pytest.mark.parametrize(("fmt", "name"), [("markdown", "diff-prod.md"), ("text", "diff-prod.txt")])
def test_diff_golden(fmt: str, name: str) -> None:
    code, output = _run("diff", SPEC, CHANGED, "--platform", PLATFORM, "--format", fmt)
    assert code == 0, output
    check_golden(output, GOLDEN / name)


def test_diff_of_identical_specs_says_so() -> None:
    code, output = _run("diff", SPEC, SPEC, "--format", "text")
    assert code == 0
    assert "no change to the generated dag" in output


def test_diff_against_a_git_revision(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "platform.yaml").write_text((REPO / PLATFORM).read_text())
    spec = tmp_path / "job.yaml"
    text = (REPO / SPEC).read_text().replace("../examples/churn-demo", str(REPO / "examples/churn-demo"))
    spec.write_text(text)
    git("init", "-q")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "first")
    spec.write_text(text.replace("max_parallel: 10", "max_parallel: 5").replace(", lu]", "]"))
    code, output = _run("diff", str(spec), "--git", "HEAD", "--format", "text")
    assert code == 0, output
    assert f"{spec}@HEAD -> {spec} (working tree)" in output
    assert "  - lu" in output
    assert "~ max parallel: 10 -> 5" in output
    assert "cost: $18.40 -> $17.48" in output
    result = CliRunner().invoke(app, ["diff", str(spec), "--git", "no-such-rev"])
    assert result.exit_code != 0
    assert "invalid object name 'no-such-rev'" in result.output


def test_diff_needs_two_specs_or_git() -> None:
    code, output = _run("diff", SPEC)
    assert code == 2
    assert "--git" in output


def test_graph_svg_names_every_group(tmp_path: Path) -> None:
    out = tmp_path / "dag.svg"
    code, output = _run("graph", SPEC, "--env", "prod", "-o", str(out))
    assert code == 0, output
    svg = out.read_text()
    assert svg.startswith("<?xml") and "</svg>" in svg
    values = ["de", "fr", "nl", "be", "it", "es", "pt", "at", "ch", "pl"]
    values += ["se", "dk", "no", "fi", "ie", "cz", "hu", "ro", "gr", "lu"]
    for value in values:
        assert f">{value}" in svg, value
    assert "delete_instance" in svg


def test_graph_rejects_an_unknown_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["graph", SPEC, "-o", str(tmp_path / "dag.gif")])
    assert result.exit_code != 0
    assert ".svg" in result.output


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_plan_shows_non_ascii_values_as_text(tmp_path: Path, fmt: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        (REPO / SPEC).read_text().replace("lookback_days: 90", "lookback_days: 90\n  label: välue ✓")
    )
    code, output = _run("plan", str(spec), "--platform", PLATFORM, "--env", "prod", "--format", fmt)
    assert code == 0, output
    assert "välue ✓" in output
    assert "\\u00e4" not in output
