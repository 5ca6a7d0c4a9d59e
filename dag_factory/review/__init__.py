"""The review loop: notebook inspection, plan rendering, diff, graph and deploy (no Airflow import)."""

# The output formats of `plan` and `diff`, the keys of plan_view.RENDERERS and diff.RENDERERS (a test
# holds them equal): here so the CLI offers them without importing the planner at start-up.
PLAN_FORMATS = ("text", "json", "markdown", "mermaid")
DIFF_FORMATS = ("markdown", "text", "json")
