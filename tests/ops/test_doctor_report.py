"""The doctor's own checks (dag_factory.ops.doctor: the platform file, the Airflow and provider ranges)
and its output, without servers; the checks against a deployment are in tests/ops/test_doctor.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dag_factory import DISTRIBUTION
from dag_factory.compute.checks import failed, passed
from dag_factory.extras import Installed
from dag_factory.ops import doctor
from dag_factory.settings import PLATFORM
from tests.paths import REPO


def test_the_platform_file_is_found_as_every_command_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv(PLATFORM, raising=False)
    check, found = doctor.check_platform(None)
    assert found == REPO / "project_configs" / "platform.yaml"
    assert check.line == f"ok    platform file {found}  (environments: local, preprod, prod)"


def test_no_platform_file_says_how_to_name_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PLATFORM, raising=False)
    assert doctor.check_platform(None) == (
        failed(
            "platform file",
            "no platform.yaml here, in a project_configs/ folder, or above: pass --platform, set "
            "$DAG_FACTORY_PLATFORM as the DAG-parsing components have it, or run doctor in the DAG bundle",
        ),
        None,
    )


def test_an_invalid_platform_file_fails_with_its_located_problems(tmp_path: Path) -> None:
    bad = tmp_path / "platform.yaml"
    bad.write_text("version: 1\nenvironments: {}\n")
    check, found = doctor.check_platform(bad)
    assert found is None
    assert check.line.startswith(f"FAIL  platform file {bad}  ({bad}:2:")
    assert check.line.endswith(" (fix the file))")


def test_versions_are_checked_against_the_ranges_the_distribution_declares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = [
        Installed("apache-airflow", ">=3.2.0,<4", "3.1.7"),
        Installed("apache-airflow-providers-amazon", ">=9.25.0,<10", "9.39.0"),
        Installed("apache-airflow-providers-ssh", ">=7.0.0,<8", None),
        Installed("boto3", ">=1.41,<2", None),  # not Airflow's: the extras' check says it
    ]
    monkeypatch.setattr(doctor, "extra_requirements", lambda extra: installed)
    assert [c.line for c in doctor.check_versions()] == [
        "FAIL  apache-airflow 3.1.7  (outside the supported >=3.2.0,<4: install a release within it "
        "(pip install 'apache-airflow>=3.2.0,<4' with your Airflow's constraints))",
        "ok    apache-airflow-providers-amazon 9.39.0  (supported >=9.25.0,<10)",
        f"FAIL  apache-airflow-providers-ssh  (not installed: pip install '{DISTRIBUTION}[airflow]')",
    ]


def test_the_real_ranges_are_the_installed_distributions() -> None:
    lines = [c.line for c in doctor.check_versions()]
    assert lines[0].startswith("ok    apache-airflow 3.") and lines[0].endswith("(supported >=3.2.0,<4)")


def test_text_then_a_summary_and_json_for_machines(capsys: pytest.CaptureFixture[str]) -> None:
    checks = [passed("pool p", "4 slots"), failed("subnet s", "fix subnet_id")]
    doctor.render_text(checks)
    assert capsys.readouterr().out == (
        "ok    pool p  (4 slots)\nFAIL  subnet s  (fix subnet_id)\n2 checks, 1 failed\n"
    )
    doctor.render_text(checks[:1])
    assert capsys.readouterr().out.splitlines()[-1] == "1 checks, all ok"
    assert json.loads(doctor.render_json(checks)) == {
        "ok": False,
        "checks": [
            {"ok": True, "what": "pool p", "note": "4 slots"},
            {"ok": False, "what": "subnet s", "note": "fix subnet_id"},
        ],
    }
