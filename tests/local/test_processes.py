"""Helpers for the processes of a local run."""

from __future__ import annotations

from dag_factory.local.processes import free_port


def test_free_port() -> None:
    assert 0 < free_port() < 65536
