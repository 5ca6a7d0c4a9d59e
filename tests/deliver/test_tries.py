"""Per-try outputs (dag_factory.deliver.tries): a later try starts from what its predecessors left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dag_factory.deliver.tries import set_aside_failed_tries
from tests.servers.moto import MotoServer


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_a_retry_sets_aside_what_earlier_tries_wrote_locally(tmp_path: Path) -> None:
    run = tmp_path / "out" / "manual__1"
    prefix = run / "de"
    (prefix / "features").mkdir(parents=True)
    (prefix / "features" / "f.parquet").write_text("from nb_01")  # a predecessor's output

    assert set_aside_failed_tries(str(prefix), "de.nb_02_train", 1) == []  # first try: a manifest
    (prefix / "predictions").mkdir()
    (prefix / "predictions" / "part-a1.parquet").write_text("half of try 1")
    (prefix / "02_train.ipynb").write_text("executed, failed")

    moved = set_aside_failed_tries(str(prefix), "de.nb_02_train", 2)
    assert moved == ["02_train.ipynb", "predictions/part-a1.parquet"]
    assert _tree(prefix) == {"features/f.parquet"}
    aside = run / ".dag-factory" / "failed-tries" / "de" / "de.nb_02_train" / "try-1"
    assert _tree(aside) == {"02_train.ipynb", "predictions/part-a1.parquet"}
    (prefix / "predictions" / "part-b2.parquet").write_text("all of try 2")
    # a third try (after a second failure) moves only try 2's files, into try-2
    assert set_aside_failed_tries(str(prefix), "de.nb_02_train", 3) == ["predictions/part-b2.parquet"]
    assert (run / ".dag-factory" / "failed-tries" / "de" / "de.nb_02_train" / "try-2").is_dir()


def test_steps_and_values_keep_their_own_manifests(tmp_path: Path) -> None:
    run = tmp_path / "manual__1"
    for value in ("de", "fr"):
        (run / value).mkdir(parents=True)
        set_aside_failed_tries(str(run / value), f"{value}.nb_01", 1)
        (run / value / "x.json").write_text("[]")
    # fr's first notebook succeeded; its second one starts: fr's x.json was there before it
    assert set_aside_failed_tries(str(run / "fr"), "fr.nb_02", 1) == []
    assert set_aside_failed_tries(str(run / "fr"), "fr.nb_02", 2) == []
    assert set_aside_failed_tries(str(run / "de"), "de.nb_01", 2) == ["x.json"]
    assert _tree(run / "fr") == {"x.json"}


@pytest.mark.integration
def test_a_retry_sets_aside_what_earlier_tries_wrote_in_s3(aws_env: MotoServer) -> None:
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="out", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    prefix = "s3://out/churn/manual__1/de"
    s3.put_object(Bucket="out", Key="churn/manual__1/de/features/f.parquet", Body=b"nb_01")
    assert set_aside_failed_tries(prefix, "de.nb_02_train", 1, s3) == []
    s3.put_object(Bucket="out", Key="churn/manual__1/de/predictions/part-a1.parquet", Body=b"half")

    assert set_aside_failed_tries(prefix, "de.nb_02_train", 2, s3) == ["predictions/part-a1.parquet"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="out")["Contents"]}
    assert keys == {
        "churn/manual__1/de/features/f.parquet",
        "churn/manual__1/.dag-factory/outputs/de/de.nb_02_train.json",
        "churn/manual__1/.dag-factory/failed-tries/de/de.nb_02_train/try-1/predictions/part-a1.parquet",
    }


@pytest.mark.integration
def test_a_large_output_is_set_aside_by_a_server_side_multipart_copy(aws_env: MotoServer) -> None:
    # copy_object stops at 5 GB: the move is boto3's managed copy, in parts above its 8 MB threshold
    # (the moved object's ETag counts them), and no byte goes through the worker
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="out", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    prefix = "s3://out/churn/manual__1/de"
    assert set_aside_failed_tries(prefix, "de.nb_02_train", 1, s3) == []
    body = b"x" * (9 * 2**20)
    s3.put_object(Bucket="out", Key="churn/manual__1/de/predictions/big.parquet", Body=body)
    calls: list[tuple[str, str | None]] = []  # (operation, key)

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params.get("Key")))

    s3.meta.events.register("before-parameter-build.s3", record)

    assert set_aside_failed_tries(prefix, "de.nb_02_train", 2, s3) == ["predictions/big.parquet"]
    moved = s3.head_object(
        Bucket="out",
        Key="churn/manual__1/.dag-factory/failed-tries/de/de.nb_02_train/try-1/predictions/big.parquet",
    )
    assert moved["ContentLength"] == len(body)
    assert moved["ETag"].strip('"').endswith("-2"), moved["ETag"]  # 8 MB + 1 MB
    assert "UploadPartCopy" in {name for name, _ in calls}
    through_the_worker = {"CopyObject", "GetObject", "PutObject", "UploadPart"}
    assert [c for c in calls if c[0] in through_the_worker and str(c[1]).endswith("big.parquet")] == [], calls
