"""Spec values that become SageMaker tag values are checked at validate: AWS allows letters, digits and
spaces of any script and _ . : / = + - @, at most 256 characters (`^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$`).
moto does not check tags, so without this every CreateNotebookInstance of such a spec failed in AWS."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from dag_factory.errors import SpecError
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.planner import plan_dag
from tests.paths import REPO
from tests.specs import MINIMAL_SPEC

PLATFORM = load_platform(REPO / "project_configs" / "platform.yaml")
SPECS = sorted(p for p in (REPO / "project_configs").glob("*.yaml") if p.name != "platform.yaml")


def aws_accepts_tag_value(value: str) -> bool:
    """SageMaker's Tag.Value pattern, written out (Python's re has no \\p{...})."""
    allowed = set("_.:/=+-@")
    return len(value) <= 256 and all(c in allowed or unicodedata.category(c)[0] in "LZN" for c in value)


def _problems(tmp_path: Path, owner: str) -> list[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL_SPEC.replace("owner: ds-team", f"owner: {owner}"))
    try:
        load_spec(spec, PLATFORM)
    except SpecError as exc:
        return [d.render().removeprefix(f"{spec}:") for d in exc.diagnostics]
    return []


@pytest.mark.parametrize(
    "owner", ["Data Science (EU)", "team#1", "a,b", "x" * 257, "growth*", "'quoted'", "[bracket]", "a|b"]
)
def test_owners_aws_refuses_are_refused_at_validate(tmp_path: Path, owner: str) -> None:
    assert not aws_accepts_tag_value(owner)
    [problem] = _problems(tmp_path, repr(owner))
    assert problem.startswith("3:8: owner: ")


def test_the_message_names_the_allowed_characters(tmp_path: Path) -> None:
    assert _problems(tmp_path, "Data Science (EU)") == [
        "3:8: owner: 'Data Science (EU)' holds '(', which AWS does not allow in a tag "
        "(it becomes a SageMaker tag value: use letters, digits, spaces and _ . : / = + - @)"
    ]


@pytest.mark.parametrize(
    "owner", ["growth-data-science", "Data Science EU", "équipe données", "ds@example.com"]
)
def test_owners_aws_accepts_are_accepted(tmp_path: Path, owner: str) -> None:
    assert aws_accepts_tag_value(owner)
    assert _problems(tmp_path, repr(owner)) == []


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_tag_value_the_plan_derives_from_a_valid_spec_is_one_aws_accepts(spec: Path) -> None:
    loaded = load_spec(spec, PLATFORM)
    for env in ("preprod", "prod"):
        plan = plan_dag(loaded, env)
        for group in plan.groups:
            [create] = [t for t in group.tasks if t.kind == "create_instance"]
            assert create.args.tags, "the plan tags every instance"
            for key, value in create.args.tags.items():
                assert aws_accepts_tag_value(value), (key, value)
