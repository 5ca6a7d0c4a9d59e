"""Spec texts shared by several test modules."""

# The smallest valid spec; tests append keys to it or replace lines (line numbers matter).
MINIMAL_SPEC = """\
version: 1
project: demo
owner: ds-team
start_date: 2026-01-05
compute:
  instance_type: ml.t3.medium
notebooks:
  - path: notebooks/run.ipynb
"""
