"""Deploy-time check that the worker's repository holds the deployed commit (local git repos)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from migration.source import CommitNotPushed, check_on_remote

GIT = ["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def remote_and_clone(tmp_path: Path) -> tuple[Path, Path]:
    """A "GitHub" repository (main, release) and an operator's clone of it."""
    remote = tmp_path / "remote"
    remote.mkdir()
    git(remote, "init", "-q", "-b", "main")
    commit(remote, "first")
    git(remote, "branch", "release")
    commit(remote, "second")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    return remote, clone


def test_a_pushed_commit_and_its_ancestors_pass(remote_and_clone: tuple[Path, Path]) -> None:
    remote, clone = remote_and_clone
    url = remote.as_uri()
    check_on_remote(git(clone, "rev-parse", "HEAD"), url, "main", clone)
    check_on_remote(git(clone, "rev-parse", "HEAD~1"), url, "main", clone)  # rollback --to-ref


def test_an_unpushed_commit_fails_naming_commit_branch_and_the_push(
    remote_and_clone: tuple[Path, Path],
) -> None:
    remote, clone = remote_and_clone
    local_only = commit(clone, "not pushed")
    with pytest.raises(CommitNotPushed) as refused:
        check_on_remote(local_only, remote.as_uri(), "main", clone)
    message = str(refused.value)
    assert f"commit {local_only} is not on branch main of {remote.as_uri()}" in message
    assert "git push origin HEAD:main" in message


def test_a_remote_branch_that_moved_ahead_is_fetched_to_decide(
    remote_and_clone: tuple[Path, Path],
) -> None:
    remote, clone = remote_and_clone
    head = git(clone, "rev-parse", "HEAD")
    commit(remote, "someone else's push")  # the clone has not seen this tip
    check_on_remote(head, remote.as_uri(), "main", clone)


def test_on_another_branch_only_fails_for_the_source_branch_but_passes_an_override(
    remote_and_clone: tuple[Path, Path],
) -> None:
    remote, clone = remote_and_clone
    git(remote, "checkout", "-q", "release")
    on_release = commit(remote, "hotfix on release")
    git(clone, "fetch", "-q")
    with pytest.raises(CommitNotPushed, match="not on branch main"):
        check_on_remote(on_release, remote.as_uri(), "main", clone)
    # the local stack (WG_REPOSITORY_URL): any branch the worker can fetch from will do
    check_on_remote(on_release, remote.as_uri(), None, clone)


def test_the_local_stacks_snapshot_holds_its_own_head(tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    git(snapshot, "init", "-q", "-b", "main")
    head = commit(snapshot, "snapshot under test")
    check_on_remote(head, snapshot.as_uri(), None, snapshot)


def test_an_unreachable_repository_fails_naming_it(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere").as_uri()
    with pytest.raises(CommitNotPushed, match=f"cannot read {missing}"):
        check_on_remote("0" * 40, missing, "main", tmp_path)
