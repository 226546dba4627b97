"""Register (or rotate) the dbt Cloud API token the migration tooling reads dbt Cloud with.

    DBT_CLOUD_API_TOKEN=... DBT_CLOUD_ACCOUNT_ID=70403103900001 python blocks/register_dbt_cloud.py
    vault read -field=token secret/dbt-cloud \
        | python blocks/register_dbt_cloud.py --token-stdin --account-id 70403103900001

Writes a prefect-dbt DbtCloudCredentials block (default name `wg-dbt-cloud`, or WG_DBT_CLOUD_BLOCK)
that `python -m migration parity --baseline dbt-cloud:JOB_ID` and the cutover/rollback commands
load. Re-running overwrites it (idempotent): that is how the token is rotated. Parity needs read
access to jobs and runs; cutover/rollback also update jobs (a "Job Admin" service token).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks._inputs import (
    EXIT_BAD_INPUT,
    EnvInput,
    InputError,
    check_value,
    env_value,
    help_text,
    read_stdin_secret,
)
from dbt_runtime.dbt_cloud import BLOCK_ENV, DEFAULT_BLOCK

BLOCK_TYPE = "dbt-cloud-credentials"  # prefect-dbt's block type slug
TOKEN = EnvInput(
    "DBT_CLOUD_API_TOKEN",
    "a dbt Cloud service token (dbtc_...) or personal access token (or --token-stdin)",
    secret=True,
    pattern=re.compile(r"[A-Za-z0-9_\-.]{16,}"),
)
ACCOUNT = EnvInput(
    "DBT_CLOUD_ACCOUNT_ID",
    "the numeric dbt Cloud account id (in the URL: /deploy/<account id>/...) (or --account-id)",
    pattern=re.compile(r"\d+"),
    example="70403103900001",
)
DOMAIN = EnvInput(
    "DBT_CLOUD_DOMAIN",
    "the dbt Cloud host if not cloud.getdbt.com (e.g. emea.dbt.com, ACCOUNT_PREFIX.us1.dbt.com)",
    required=False,
    pattern=re.compile(r"[A-Za-z0-9.\-]+(:\d+)?"),
)
NAME = EnvInput(BLOCK_ENV, f"the block's name (default {DEFAULT_BLOCK})", required=False)


def inputs(
    env: Mapping[str, str], stdin: IO[str] | None, token_stdin: bool, account_id: str | None
) -> tuple[str, int, str, str]:
    """(token, account id, domain, block name), validated; nothing registered on error."""
    if token_stdin:
        if env.get(TOKEN.name, "").strip():
            raise InputError(f"{TOKEN.name} is set and --token-stdin was given too: use one")
        assert stdin is not None
        token = read_stdin_secret(stdin, TOKEN)
    else:
        token = env_value(TOKEN, env) or ""
    if account_id is not None:
        account = check_value(ACCOUNT, account_id.strip())
    else:
        account = env_value(ACCOUNT, env) or ""
    domain = env_value(DOMAIN, env) or "cloud.getdbt.com"
    name = env_value(NAME, env) or DEFAULT_BLOCK
    return token, int(account), domain, name


def register(token: str, account_id: int, domain: str, name: str) -> None:
    from prefect_dbt.cloud import DbtCloudCredentials

    DbtCloudCredentials(api_key=token, account_id=account_id, domain=domain).save(
        name, overwrite=True
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python blocks/register_dbt_cloud.py",
        description=__doc__,
        epilog=help_text("environment:", [TOKEN, ACCOUNT, DOMAIN, NAME])
        + "\n\nThe token is read only from the environment or stdin, never from arguments. "
        "Exit codes: 0 done, 1 server error, 2 bad input (nothing registered).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    parser.add_argument("--account-id", help=f"the account id (instead of {ACCOUNT.name})")
    return parser


def main(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    try:
        token, account, domain, name = inputs(
            os.environ if env is None else env, stdin or sys.stdin, args.token_stdin,
            args.account_id,
        )  # fmt: skip
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    register(token, account, domain, name)
    print(f"registered {BLOCK_TYPE}/{name} for account {account} on {domain}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
