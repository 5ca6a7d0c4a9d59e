"""Projects the local-backend tests run: the demo job, a probe of what a value's environment sees, and
a job of one notebook."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import nbformat
import yaml

from tests.notebooks import write_notebook
from tests.paths import REPO
from tests.wheels import make_wheel

RUN_DATE = dt.date(2026, 1, 5)  # the logical date the local-run tests run at


def demo_project(
    tmp_path: Path, notebook_params: dict[str, object] | None = None, prices: dict[str, float] | None = None
) -> tuple[Path, Path]:
    """The demo spec and a platform whose local root is under tmp_path."""
    platform = yaml.safe_load((REPO / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    if prices:
        platform["environments"]["local"]["instance_prices"] = prices
    spec = yaml.safe_load((REPO / "project_configs" / "churn-demo.yaml").read_text())
    shutil.copytree(REPO / "examples" / "churn-demo", tmp_path / "churn-demo")  # project_dir stays
    spec["project_dir"] = "churn-demo"  # inside the spec's repository (here: tmp_path)
    if notebook_params:
        spec["notebooks"][1]["parameters"].update(notebook_params)
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    (tmp_path / "churn-demo.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "churn-demo.yaml", tmp_path / "platform.yaml"


# the notebook of probe_project: writes what its value sees (its environment, work dir, siblings' files)
PROBE = """\
import importlib.util, json, pathlib, subprocess, sys
here = pathlib.Path.cwd()
others = sorted(p.name for p in here.glob("written-by-*"))
pathlib.Path(f"written-by-{country}").write_text(country)
if install:
    wheel = "dfiso-1.0-py3-none-any.whl"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", wheel], check=True)
    importlib.invalidate_caches()
    import dfiso
found = importlib.util.find_spec("dfiso") is not None
seen = {"prefix": sys.prefix, "cwd": str(here), "others": others, "dfiso": found}
out = pathlib.Path(output_prefix)
out.mkdir(parents=True, exist_ok=True)
(out / "seen.json").write_text(json.dumps(seen))
"""


def probe_project(tmp_path: Path, name: str, values: list[str]) -> tuple[Path, Path]:
    """A project of one PROBE notebook fanned out over ``values`` (de installs a local wheel at run time),
    its spec and a platform whose local root is under tmp_path."""
    folder = tmp_path / name
    (folder / "notebooks").mkdir(parents=True)
    (folder / "requirements.txt").write_text("six==1.17.0\n")
    make_wheel(folder)
    parameters = (
        'env = "local"\naws_account_id = ""\nlogical_date = ""\nrun_id = ""\ncountry = "de"\n'
        'output_prefix = "/tmp/out"\ninstall = False\n'
    )
    write_notebook(folder / "notebooks" / "probe.ipynb", PROBE, parameters=parameters)
    spec = {
        "version": 1,
        "project": name,
        "owner": "platform-tests",
        "project_dir": str(folder),
        "start_date": dt.date(2026, 1, 5),
        "compute": {"instance_type": "ml.t3.medium", "max_parallel": 2, "timeout": "30m"},
        "fan_out": {"name": "country", "values": values, "parameters": {"de": {"install": True}}},
        "notebooks": [{"path": "notebooks/probe.ipynb"}],
    }
    if "de" not in values:
        del spec["fan_out"]["parameters"]
    platform = yaml.safe_load((REPO / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / f"{name}.yaml", tmp_path / "platform.yaml"


def one_notebook_job(tmp_path: Path, name: str, nb: Any, **fields: Any) -> tuple[Path, Path]:
    """notebooks/<name>.ipynb in a project of its own, its spec (fields override) and a platform."""
    project = tmp_path / name
    (project / "notebooks").mkdir(parents=True)
    nbformat.write(nb, project / "notebooks" / f"{name}.ipynb")
    platform = yaml.safe_load((REPO / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    spec = {
        "version": 1,
        "project": name,
        "owner": "data-science",
        "start_date": RUN_DATE,
        "project_dir": str(project),
        "runtime": {"requirements": None},
        "compute": {"instance_type": "ml.t3.medium", "timeout": "30m"},
        "notebooks": [{"path": f"notebooks/{name}.ipynb"}],
        "retries": 0,
        **fields,
    }
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path / f"{name}.yaml", tmp_path / "platform.yaml"
