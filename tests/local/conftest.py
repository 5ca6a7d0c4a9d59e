"""Local runs leave their home's Execution API up for the next run: stop those a test started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dag_factory.local.execution_server import STATE_FILE, stop_execution_api


@pytest.fixture(autouse=True)
def _stop_execution_apis(tmp_path: Path) -> Iterator[None]:
    yield
    for state in tmp_path.rglob(STATE_FILE):
        stop_execution_api(state.parent)
