"""project_dir: where the repository of a spec ends, and the one located problem when the folder is
missing, not a folder, or outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.load.project import project_dir_problems, repository_root
from dag_factory.load.specs import load_spec
from tests.paths import REPO
from tests.specs import MINIMAL_SPEC


def _spec(folder: Path, project_dir: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "job.yaml"
    extra = f"project_dir: {project_dir}\n" if project_dir is not None else ""
    spec.write_text(MINIMAL_SPEC + extra)
    return spec


def _problems(spec: Path) -> list[str]:
    return [d.render().removeprefix(f"{spec}:") for d in project_dir_problems(load_spec(spec))]


def test_the_repository_is_the_nearest_folder_with_git(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    assert repository_root(_spec(tmp_path / "repo" / "a" / "b", None)) == tmp_path / "repo"


def test_a_git_worktree_has_a_git_file(tmp_path: Path) -> None:
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text("gitdir: /elsewhere\n")
    assert repository_root(_spec(tmp_path / "wt" / "configs", None)) == tmp_path / "wt"


def test_without_git_the_folder_holding_project_configs(tmp_path: Path) -> None:
    assert repository_root(_spec(tmp_path / "copy" / "project_configs" / "team", None)) == tmp_path / "copy"


def test_without_git_nor_project_configs_the_spec_folder(tmp_path: Path) -> None:
    assert repository_root(_spec(tmp_path / "loose", None)) == tmp_path / "loose"


def test_this_repository_and_its_examples() -> None:
    spec = REPO / "project_configs" / "churn-model.yaml"
    assert repository_root(spec) == REPO
    assert project_dir_problems(load_spec(spec)) == []


def test_a_folder_inside_is_fine(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert _problems(_spec(tmp_path / "configs", "../notebooks")) == []


@pytest.mark.parametrize(
    ("project_dir", "message"),
    [
        (
            "../outside",
            "project_dir '../outside' is {root}/outside/, outside the spec's repository {root}/repo/",
        ),
        ("../repo/missing", "project_dir '../repo/missing': no such folder {root}/repo/missing/"),
        ("file.txt", "project_dir 'file.txt' is a file, not a folder"),
        ("x" * 300, "project_dir '" + "x" * 56 + "... cannot be read: File name too long"),
    ],
)
def test_one_problem_at_project_dir(tmp_path: Path, project_dir: str, message: str) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "repo" / "file.txt").write_text("x")
    [problem] = _problems(_spec(tmp_path / "repo", project_dir))
    assert problem.startswith("9:14: project_dir: " + message.format(root=tmp_path) + " (")


def test_a_link_out_of_the_repository_is_outside(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "repo" / "notebooks").symlink_to(tmp_path / "home", target_is_directory=True)
    [problem] = _problems(_spec(tmp_path / "repo", "notebooks"))
    assert "outside the spec's repository" in problem
