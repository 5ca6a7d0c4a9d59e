"""The churn-demo example notebooks run with papermill, deterministically, and fail on request."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill as pm
import pytest
from papermill.exceptions import PapermillExecutionError

from tests.paths import REPO

pytestmark = pytest.mark.integration  # every test executes the notebooks in a real kernel

PROJECT = REPO / "examples" / "churn-demo"
NOTEBOOKS = [PROJECT / "notebooks" / "01_features.ipynb", PROJECT / "notebooks" / "02_train.ipynb"]
STANDARD = {"env", "aws_account_id", "logical_date", "run_id", "country", "output_prefix"}

Runner = Callable[..., Path]


@pytest.fixture(scope="module")
def run_project(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """Run both notebooks for one country/date into a fresh prefix; memoised per argument set."""
    root = tmp_path_factory.mktemp("churn")
    done: dict[tuple[Any, ...], Path] = {}

    def run(country: str, logical_date: str = "2026-01-05", tag: str = "", **extra: Any) -> Path:
        key = (country, logical_date, tag, tuple(sorted(extra.items())))
        if key in done:
            return done[key]
        prefix = root / f"{country}-{logical_date}{tag}"
        (prefix / "executed").mkdir(parents=True)
        params = {"country": country, "logical_date": logical_date, "output_prefix": str(prefix), **extra}
        for notebook in NOTEBOOKS:
            pm.execute_notebook(
                str(notebook),
                str(prefix / "executed" / notebook.name),
                parameters=params,
                kernel_name="python3",
                progress_bar=False,
                cwd=str(PROJECT),
            )
        done[key] = prefix
        return prefix

    return run


def _parameters_source(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected exactly one cell tagged parameters"
    return str(cells[0].source)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_commit_ready(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    namespace: dict[str, Any] = {}
    exec(_parameters_source(notebook), namespace)
    assert namespace.keys() >= STANDARD
    assert namespace["env"] == "local" and namespace["country"] == "de"


def test_job_parameters_declared() -> None:
    features: dict[str, Any] = {}
    train: dict[str, Any] = {}
    exec(_parameters_source(NOTEBOOKS[0]), features)
    exec(_parameters_source(NOTEBOOKS[1]), train)
    assert features["lookback_days"] == 90 and features["n_customers"] == 500
    assert train["max_depth"] == 4 and train["fail_for"] == ""


def test_outputs_written(run_project: Runner) -> None:
    prefix = run_project("de")
    assert (prefix / "features" / "features.parquet").is_file()
    predictions = pd.read_parquet(prefix / "predictions" / "predictions.parquet")
    assert list(predictions.columns) == ["customer_id", "churn_probability", "predicted_churn"]
    assert str(predictions["customer_id"].dtype) == "int64"
    assert str(predictions["churn_probability"].dtype) == "float64"
    assert str(predictions["predicted_churn"].dtype) == "bool"
    assert len(predictions) == 500
    assert predictions["churn_probability"].between(0, 1).all()
    metrics = json.loads((prefix / "metrics" / "metrics.json").read_text())
    assert isinstance(metrics, list) and len(metrics) == 1
    assert metrics[0]["country"] == "de" and metrics[0]["n_rows"] == 500
    assert 0 <= metrics[0]["accuracy"] <= 1
    assert (prefix / "executed" / "02_train.ipynb").is_file()


def test_countries_differ(run_project: Runner) -> None:
    de = pd.read_parquet(run_project("de") / "predictions" / "predictions.parquet")
    fr = pd.read_parquet(run_project("fr") / "predictions" / "predictions.parquet")
    assert not de["churn_probability"].equals(fr["churn_probability"])


def test_same_country_and_date_is_deterministic(run_project: Runner) -> None:
    first = pd.read_parquet(run_project("fr") / "predictions" / "predictions.parquet")
    again = pd.read_parquet(run_project("fr", tag="-again") / "predictions" / "predictions.parquet")
    pd.testing.assert_frame_equal(first, again)


def test_fail_for_raises_with_executed_notebook_saved(run_project: Runner, tmp_path: Path) -> None:
    prefix = run_project("de")
    out = tmp_path / "02_train.ipynb"
    with pytest.raises(PapermillExecutionError, match="forced failure for de") as excinfo:
        pm.execute_notebook(
            str(NOTEBOOKS[1]),
            str(out),
            parameters={"country": "de", "output_prefix": str(prefix), "fail_for": "de"},
            kernel_name="python3",
            progress_bar=False,
        )
    assert excinfo.value.ename == "RuntimeError"
    saved = nbformat.read(out, as_version=4)
    failed = [c for c in saved.cells if c.cell_type == "code" and any(o.get("ename") for o in c.outputs)]
    assert len(failed) == 1 and "forced failure for de" in failed[0].source + str(failed[0].outputs)


@pytest.mark.integration
def test_s3_output_prefix(aws_env: Any, tmp_path: Path) -> None:
    """Production writes to s3:// (here moto via AWS_ENDPOINT_URL): the same notebooks, unchanged."""
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="churn-out", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    prefix = "s3://churn-out/churn-model/2026-01-05/nl"
    for notebook in NOTEBOOKS:
        pm.execute_notebook(
            str(notebook),
            str(tmp_path / notebook.name),
            parameters={"country": "nl", "output_prefix": prefix},
            kernel_name="python3",
            progress_bar=False,
        )
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="churn-out")["Contents"]}
    assert keys == {
        f"churn-model/2026-01-05/nl/{name}"
        for name in ("features/features.parquet", "predictions/predictions.parquet", "metrics/metrics.json")
    }
    body = s3.get_object(Bucket="churn-out", Key="churn-model/2026-01-05/nl/metrics/metrics.json")["Body"]
    assert json.loads(body.read())[0]["country"] == "nl"
