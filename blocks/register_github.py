"""Register (or rotate) the GitHub token the deployment's git_clone pull step uses.

    WG_GITHUB_TOKEN=... python -m blocks.register_github
    gh auth token | python -m blocks.register_github --token-stdin

Writes a prefect-github GitHubCredentials block named as prefect.yaml's
`source.credentials_block`; `python -m migration source credentials` puts a reference to it
into the git_clone step at deploy time, so workers clone the private repository with the
token the block holds when each run starts: re-running this script rotates it, no redeploy.
Use a fine-grained token with read-only "Contents" access to that one repository.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from typing import IO

from blocks._cli import Save, script_main, script_parser
from blocks._inputs import EnvInput, InputError, secret_value
from dbt_runtime.project import register_command, source_config

BLOCK_TYPE = "github-credentials"  # prefect-github's block type slug
TOKEN = EnvInput(
    "WG_GITHUB_TOKEN",
    "a GitHub token: fine-grained (github_pat_...) or classic/app (ghp_, gho_, ghu_, ghs_, "
    "ghr_) (or --token-stdin)",
    secret=True,
    pattern=re.compile(r"github_pat_[A-Za-z0-9_]{20,}|gh[pousr]_[A-Za-z0-9]{30,}"),
)


def block_name() -> str:
    """The name prefect.yaml's `source.credentials_block` gives the block (read, not copied)."""
    name = str(source_config().get("credentials_block") or "")
    if not name:
        raise InputError("prefect.yaml has no source.credentials_block to register")
    return name


def github_token(
    env: Mapping[str, str], stdin: IO[str] | None = None, from_stdin: bool = False
) -> str:
    return secret_value(TOKEN, env, stdin, "--token-stdin" if from_stdin else None)


def register(token: str, name: str) -> None:
    from prefect_github import GitHubCredentials

    GitHubCredentials(token=token).save(name, overwrite=True)


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(register_command("github"), __doc__, {"environment:": [TOKEN]})
    parser.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    return parser


def prepare(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
    name = block_name()
    token = github_token(env, stdin, args.token_stdin)

    def save() -> str:
        register(token, name)
        return (
            f"registered {BLOCK_TYPE}/{name}; the git_clone pull step of the next run uses it "
            "(deployments made with `make deploy` reference it by name)"
        )

    return save


main = script_main(build_parser, prepare)


if __name__ == "__main__":
    sys.exit(main())
