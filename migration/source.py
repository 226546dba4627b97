"""What the deploy-time build steps bake into prefect.yaml's pull steps.

`prefect deploy` runs `python -m migration source <repository|credentials|commit>` and pins the
git_clone pull step to the printed values. Production clones the GitHub repository named in
prefect.yaml's `source:` with the GitHubCredentials block; the local stack sets
WG_REPOSITORY_URL to a local git URL, which needs no credentials.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

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
