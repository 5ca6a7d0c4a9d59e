"""Activating the notebooks' environment under `set -u`: every step runs `set -euo pipefail`, and
conda's activate scripts (and packages' activate.d hooks) read variables that may be unset. The
harness's stand-ins read them the same way (`harness.conda_activate_script`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security import harness
from tests.security.harness import World


def test_activation_copes_with_scripts_that_read_unset_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World.create(tmp_path / "world")
    monkeypatch.setenv("HOME", str(world.home))
    world.write_spec(harness.BASE)
    for env, plan in harness.plans(world.load()).items():
        group = plan.groups[0]
        # run_group fails the test when a step exits non-zero (bash: "PS1: unbound variable")
        calls = harness.run_group(world, plan, group, harness.render_with_jinja(plan, group), tmp_path)
        if env == "prod":  # prepare and both notebooks source conda's activate with the env's name
            conda = str(world.bin / "conda-activate")
            assert calls.of("activate-args") == [[conda, "python3"]] * 3
        else:  # the local backend's virtualenv: its steps reached papermill after activating
            assert len(calls.of("python")) >= 2
