"""The tree shows the pipeline: few top-level modules, and docs/architecture.md shows the real graph."""

from __future__ import annotations

import importlib.util
import re

from tests.paths import REPO


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("architecture", REPO / "scripts" / "architecture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_architecture_page_shows_the_real_import_graph() -> None:
    page = (REPO / "docs" / "architecture.md").read_text()
    shown = re.search(r"```mermaid\n(.*?)```", page, re.S)
    assert shown, "docs/architecture.md has no mermaid block"
    assert shown.group(1) == _generator().mermaid(), "run: python scripts/architecture.py, paste it"


def test_top_level_holds_few_modules() -> None:
    modules = sorted(p.name for p in (REPO / "dag_factory").glob("*.py"))
    assert len(modules) <= 6, modules
    packages = sorted(p.name for p in (REPO / "dag_factory").iterdir() if (p / "__init__.py").is_file())
    assert set(_generator().PACKAGES) == set(packages), "a package is missing from the picture"
