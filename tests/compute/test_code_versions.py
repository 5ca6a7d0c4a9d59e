"""Deployed code versions: immutable, content-addressed, and the one a run syncs is the one current when
it was queued (dag_factory.compute.code_versions, with the local code folder as the store)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dag_factory.compute.code_versions import (
    CodeVersionError,
    FolderCodeStore,
    content_version,
    current_version,
    deploys,
    file_md5,
    publish,
    version_at,
    version_files,
)

MONDAY = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def _project(folder: Path, files: dict[str, str]) -> tuple[dict[str, Path], dict[str, str]]:
    paths = {}
    for key, text in files.items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths[key] = path
    return paths, {key: file_md5(path) for key, path in paths.items()}


def _deploy(store: FolderCodeStore, source: Path, files: dict[str, str], at: dt.datetime) -> str:
    paths, md5s = _project(source, files)
    publish(store, paths, md5s, at)
    return content_version(md5s)


def test_a_run_syncs_the_version_current_when_it_was_queued(tmp_path: Path) -> None:
    store = FolderCodeStore(tmp_path / "code" / "churn")
    one = _deploy(store, tmp_path / "v1", {"nb.ipynb": "1", "requirements.txt": "pandas"}, MONDAY)
    two = _deploy(
        store, tmp_path / "v2", {"nb.ipynb": "2", "requirements.txt": "pandas"}, MONDAY.replace(hour=10)
    )
    assert one != two

    assert version_at(store, MONDAY.replace(minute=30)) == one  # queued before the second deploy
    assert version_at(store, MONDAY) == one  # a deploy counts from its own instant
    assert version_at(store, MONDAY.replace(hour=11)) == two
    assert current_version(store) == two
    # both versions stay whole: a lane that syncs late still reads its run's files
    assert (store.root / "versions" / one / "nb.ipynb").read_text() == "1"
    assert (store.root / "versions" / two / "nb.ipynb").read_text() == "2"
    assert (
        set(version_files(store, one)) == set(version_files(store, two)) == {"nb.ipynb", "requirements.txt"}
    )


def test_no_version_before_the_run_is_a_clear_error(tmp_path: Path) -> None:
    store = FolderCodeStore(tmp_path / "code" / "churn")
    _deploy(store, tmp_path / "v1", {"nb.ipynb": "1"}, MONDAY)
    with pytest.raises(CodeVersionError) as info:
        version_at(store, MONDAY - dt.timedelta(seconds=1))
    assert str(info.value) == (
        f"no version of the code at {store.root} was deployed before 2026-12-07T08:59:59+00:00 "
        "(when this run was queued): run `dag-factory deploy`, then trigger the run again"
    )


def test_the_same_content_is_the_same_version_and_no_new_deploy(tmp_path: Path) -> None:
    store = FolderCodeStore(tmp_path / "code" / "churn")
    files = {"nb.ipynb": "1", "data/a.csv": "x"}
    first = _deploy(store, tmp_path / "a", files, MONDAY)
    again = _deploy(store, tmp_path / "b", files, MONDAY.replace(hour=12))  # another checkout, same files
    assert first == again
    assert deploys(store) == [("20261207T090000.000000Z", first)]


def test_a_revert_makes_an_earlier_version_current_again(tmp_path: Path) -> None:
    store = FolderCodeStore(tmp_path / "code" / "churn")
    one = _deploy(store, tmp_path / "v1", {"nb.ipynb": "1"}, MONDAY)
    two = _deploy(store, tmp_path / "v2", {"nb.ipynb": "2"}, MONDAY.replace(hour=10))
    back = _deploy(store, tmp_path / "v3", {"nb.ipynb": "1"}, MONDAY.replace(hour=11))
    assert back == one
    assert [version for _, version in deploys(store)] == [one, two, one]
    assert version_at(store, MONDAY.replace(hour=10, minute=30)) == two
    assert version_at(store, MONDAY.replace(hour=12)) == one
