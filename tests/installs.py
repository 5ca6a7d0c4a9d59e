"""Installing this package as a user would: the wheel built from this checkout, uv, and an environment
that keeps the checkout and our own venv off the installed one's path (tests/test_packaging.py,
tests/test_compat.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.paths import REPO


def uv() -> str:
    return shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv") or "uv"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would put the checkout or our venv on the installed one's path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


NOT_PACKAGED = (".git", ".venv", ".dag-factory", "build", "dist", "*.egg-info", "__pycache__", "out", "dags")


def build_wheel(out: Path) -> Path:
    """The wheel we would publish, built from this checkout into ``out``.

    Built from a copy (in ``out``): setuptools writes build/ and an egg-info into the source tree, and an
    egg-info in the checkout (on sys.path under pytest) would show Airflow our plugin twice in other tests.
    """
    source = out / "source" / "dag-factory"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_PACKAGED))
    subprocess.run(
        [uv(), "build", "--wheel", "--quiet", "--out-dir", str(out), str(source)],
        check=True, capture_output=True, text=True, env=clean_env(), timeout=300,
    )  # fmt: skip
    (built,) = out.glob("dag_factory_notebooks-*.whl")
    return built
