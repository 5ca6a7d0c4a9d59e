"""The test suite's own layout: a helper shared by test modules lives in a helper module, never in a
test module or a conftest.py (importing one runs its tests' set-up twice and hides the helper)."""

from __future__ import annotations

import ast

from tests.paths import REPO

TESTS = REPO / "tests"


def _is_test_or_conftest(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def _imported_modules(tree: ast.Module, package: list[str]) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names (``from pkg import test_x`` and relative
    imports from ``package`` included)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def test_no_test_module_imports_a_test_module_or_a_conftest() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        package = list(path.relative_to(REPO).parent.parts)
        for module in _imported_modules(ast.parse(path.read_text(), str(path)), package):
            if module.startswith("tests.") and _is_test_or_conftest(module):
                offenders.append(f"{path.relative_to(REPO)} imports {module}")
    assert offenders == [], (
        f"move what they import to a helper module (not test_*, not conftest): {offenders}"
    )
