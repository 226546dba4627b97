"""Register (or rotate) the GitHub token the deployment's git_clone pull step uses.

    WG_GITHUB_TOKEN=... python blocks/register_github.py
    gh auth token | python blocks/register_github.py --token-stdin

Writes a prefect-github GitHubCredentials block named as prefect.yaml's
`source.credentials_block`; `python -m migration source credentials` puts a reference to it
into the git_clone step at deploy time, so workers clone the private repository with the
token the block holds when each run starts: re-running this script rotates it, no redeploy.
Use a fine-grained token with read-only "Contents" access to that one repository.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from dbt_runtime.project import source_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks._inputs import (
    EXIT_BAD_INPUT,
    EnvInput,
    InputError,
    env_value,
    help_text,
    read_stdin_secret,
)

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
    if from_stdin:
        if env.get(TOKEN.name, "").strip():
            raise InputError(f"{TOKEN.name} is set and --token-stdin was given too: use one")
        assert stdin is not None
        return read_stdin_secret(stdin, TOKEN)
    token = env_value(TOKEN, env)
    assert token is not None  # required
    return token


def register(token: str, name: str) -> None:
    from prefect_github import GitHubCredentials

    GitHubCredentials(token=token).save(name, overwrite=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python blocks/register_github.py",
        description=__doc__,
        epilog=help_text("environment:", [TOKEN])
        + "\n\nThe token is read only from the environment or stdin, never from arguments. "
        "Exit codes: 0 done, 1 server error, 2 bad input (nothing registered).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    return parser


def main(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    try:
        name = block_name()
        token = github_token(
            os.environ if env is None else env, stdin or sys.stdin, args.token_stdin
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    register(token, name)
    print(
        f"registered {BLOCK_TYPE}/{name}; the git_clone pull step of the next run uses it "
        "(deployments made with `make deploy` reference it by name)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
