"""What the deploy-time build steps bake into prefect.yaml's pull steps.

`prefect deploy` pins the git_clone pull step to these values (build steps in
migration/deploy_steps.py; `python -m migration source <repository|credentials|commit>` prints
them). Production clones the GitHub repository named in
prefect.yaml's `source:` with the GitHubCredentials block; the local stack sets
WG_REPOSITORY_URL to a local git URL, which needs no credentials.

`commit` also fails the deploy (naming the commit and the fix) unless the repository
the worker clones holds the commit: prefect.yaml's `source.branch` on GitHub must contain it
(it was pushed); a WG_REPOSITORY_URL override (the local stack's file:// repository) must hold
it on some branch. Checked with `git ls-remote`, fetching the tip only when it is not local.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from dbt_runtime.project import REPO_ROOT, source_config
from dbt_runtime.settings import env_name, get_settings

REPOSITORY_ENV = env_name("repository_url")


def repository_url() -> str:
    override = get_settings().repository_url.strip()
    if override:
        return override
    return f"https://github.com/{source_config()['github_repository']}.git"


def credentials_reference() -> str:
    """A block reference for GitHub over https; nothing for a local repository."""
    if not repository_url().startswith("https://github.com/"):
        return ""
    block = source_config()["credentials_block"]
    return "{{ prefect.blocks.github-credentials." + block + " }}"


class CommitNotPushed(RuntimeError):
    """The deployed commit is not where the worker clones from; the message says what to do."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Never wait for a password prompt in a deploy: missing credentials are an error here.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env)


def remote_tips(url: str, branch: str | None, repo: Path = REPO_ROOT) -> list[str]:
    """The commit(s) the worker's repository serves: `branch`'s tip, or every branch's."""
    pattern = [f"refs/heads/{branch}"] if branch else []
    done = _git(repo, "ls-remote", "--heads", url, *pattern)
    if done.returncode != 0:
        raise CommitNotPushed(f"cannot read {url} (git ls-remote): {done.stderr.strip()}")
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def contains(repo: Path, url: str, tip: str, commit: str) -> bool:
    """Whether `tip` (of `url`) has `commit` in its history; fetches `tip` if not local."""
    if tip == commit:
        return True
    if _git(repo, "cat-file", "-e", f"{tip}^{{commit}}").returncode != 0:
        _git(repo, "fetch", "--quiet", "--no-tags", url, tip)
    return _git(repo, "merge-base", "--is-ancestor", commit, tip).returncode == 0


def check_on_remote(commit: str, url: str, branch: str | None, repo: Path = REPO_ROOT) -> None:
    """Raise CommitNotPushed unless `url`'s `branch` (None: any branch) holds `commit`."""
    tips = remote_tips(url, branch, repo)
    if any(contains(repo, url, tip, commit) for tip in tips):
        return
    where = f"branch {branch} of {url}" if branch else f"any branch of {url}"
    push = f" (`git push origin HEAD:{branch}`)" if branch else ""
    raise CommitNotPushed(
        f"commit {commit} is not on {where}, so the worker's git_clone pull step could not "
        f"fetch it: push it first{push}, or deploy a commit that is already there"
    )


def check_pushed(commit: str) -> None:
    """The deployed commit against the repository the worker clones (prefect.yaml `source:`,
    or any branch of the WG_REPOSITORY_URL override)."""
    override = bool(get_settings().repository_url.strip())
    branch = None if override else str(source_config().get("branch") or "main")
    check_on_remote(commit, repository_url(), branch)


def deployed_commit() -> str:
    """HEAD of this checkout: what a run will execute. Uncommitted changes are not deployed."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        print(
            f"warning: uncommitted changes are not deployed; runs execute commit {commit[:12]}",
            file=sys.stderr,
        )
    return commit


def main(what: str) -> int:
    if what == "commit":
        commit = deployed_commit()
        try:
            check_pushed(commit)
        except CommitNotPushed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(commit)
        return 0
    value = {
        "repository": repository_url,
        "credentials": credentials_reference,
        "commit": deployed_commit,
    }[what]()
    print(value)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "source", help="deploy-time values for prefect.yaml's pull steps (used by prefect deploy)"
    )
    parser.add_argument("what", choices=["repository", "credentials", "commit"])
    parser.set_defaults(handler=lambda args: main(args.what))
