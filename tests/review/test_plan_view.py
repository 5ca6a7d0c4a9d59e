"""The `plan` command's view: its formats."""

from __future__ import annotations


def test_the_cli_offers_exactly_the_formats_plan_and_diff_render() -> None:
    """The CLI reads the format names from `review` so that starting it does not import the planner."""
    from dag_factory.review import DIFF_FORMATS, PLAN_FORMATS, diff, plan_view

    assert tuple(plan_view.RENDERERS) == PLAN_FORMATS
    assert tuple(diff.RENDERERS) == DIFF_FORMATS
