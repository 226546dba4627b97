"""`rollback --to-ref`: redeploy an earlier commit and prove a run executes that commit's code."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbt_runtime import project
from migration import schedules
from migration.cutover import rollback_to_ref
from migration.local_stack import LocalStack, trigger_run
from migration.source import REPOSITORY_ENV
from tests.prefect_api import api_request

pytestmark = pytest.mark.integration

GIT = ["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost"]
BROKEN = 'raise RuntimeError("release B is broken")'


def deployed_clone_step(stack: LocalStack) -> dict:
    name = project.deployment_full_name()
    dep = api_request("GET", f"{stack.api_url}/deployments/name/{name}").json()
    return dict(dep["pull_steps"][0]["prefect.deployments.steps.git_clone"])


@pytest.fixture
def two_releases(
    stack: LocalStack, repo_snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str, str]]:
    """A repository with release A (the code under test) and a broken release B on top.

    The session's deployment is redeployed from its own snapshot afterwards.
    """
    repo = tmp_path / "releases"
    subprocess.run(["git", "clone", "-q", str(repo_snapshot), str(repo)], check=True)
    flow = repo / "flows" / "dbt_project.py"
    source = flow.read_text()
    assert source.count("    invocation = build_invocation(") == 1
    anchor = "    invocation = build_invocation("
    flow.write_text(source.replace(anchor, f"    {BROKEN}\n{anchor}"))
    subprocess.run([*GIT, "commit", "-qam", "release B"], cwd=repo, check=True)

    def rev(ref: str) -> str:
        return subprocess.run(
            ["git", "rev-parse", ref], cwd=repo, check=True, capture_output=True, text=True
        ).stdout.strip()

    monkeypatch.setenv(REPOSITORY_ENV, repo.as_uri())  # the worker clones this repository
    try:
        yield repo, rev("HEAD~1"), rev("HEAD")
    finally:
        stack.deploy()
        schedules.apply()
        assert deployed_clone_step(stack)["repository"] == repo_snapshot.as_uri()


def test_rollback_to_an_earlier_ref_deploys_and_runs_that_refs_code(
    stack: LocalStack, two_releases: tuple[Path, str, str]
) -> None:
    repo, release_a, release_b = two_releases
    assert rollback_to_ref("HEAD", apply=True, repo=repo).commit == release_b
    assert deployed_clone_step(stack)["commit_sha"] == release_b

    dry = rollback_to_ref("HEAD~1", apply=False, repo=repo)
    assert (dry.commit, dry.applied) == (release_a, False)
    assert deployed_clone_step(stack)["commit_sha"] == release_b  # a dry run changes nothing

    # who runs a job is not a release's to say: dbt Cloud still does (day one), so the
    # redeploy of an earlier release leaves the Prefect schedule paused
    paused = project.schedules()[-1].slug
    result = rollback_to_ref("HEAD~1", apply=True, repo=repo)
    assert result.commit == release_a
    step = deployed_clone_step(stack)
    assert (step["repository"], step["commit_sha"]) == (repo.as_uri(), release_a)
    live = {s.slug: s for s in schedules.live_schedules()}
    declared = {s.slug: s for s in project.schedules()}
    assert live[paused].active is False
    assert live[paused].parameters == declared[paused].parameters
    worktrees = subprocess.run(
        ["git", "worktree", "list", "--porcelain"], cwd=repo, capture_output=True, text=True
    ).stdout
    assert worktrees.count("worktree ") == 1, "the temporary worktree is removed"

    # one run through the worker: release B raises at flow start, release A runs dbt
    log = io.StringIO()
    run = trigger_run(
        stack, {"target": "local", "command": "seed", "select": ["raw_brands"]}, out=log
    )
    assert run["state"] == "Completed", log.getvalue()
    assert "release B is broken" not in log.getvalue()
    assert "Running dbt seed --target local --select raw_brands" in log.getvalue()
