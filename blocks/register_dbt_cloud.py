"""Register (or rotate) the dbt Cloud API token the migration tooling reads dbt Cloud with.

    DBT_CLOUD_API_TOKEN=... DBT_CLOUD_ACCOUNT_ID=70403103900001 python -m blocks.register_dbt_cloud
    vault read -field=token secret/dbt-cloud \
        | python -m blocks.register_dbt_cloud --token-stdin --account-id 70403103900001

Writes a prefect-dbt DbtCloudCredentials block (default name `wg-dbt-cloud`, or WG_DBT_CLOUD_BLOCK)
that `python -m migration parity --baseline dbt-cloud:JOB_ID` and the cutover/rollback commands
load. Re-running overwrites it (idempotent): that is how the token is rotated. Parity needs read
access to jobs and runs; cutover/rollback also update jobs (a "Job Admin" service token).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from typing import IO

from blocks._cli import Save, script_main, script_parser
from blocks._inputs import EnvInput, check_value, env_value, secret_value
from dbt_runtime.dbt_cloud import BLOCK_ENV, DEFAULT_BLOCK
from dbt_runtime.project import register_command

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
    token = secret_value(TOKEN, env, stdin, "--token-stdin" if token_stdin else None)
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
    environment = {"environment:": [TOKEN, ACCOUNT, DOMAIN, NAME]}
    parser = script_parser(register_command("dbt_cloud"), __doc__, environment)
    parser.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    parser.add_argument("--account-id", help=f"the account id (instead of {ACCOUNT.name})")
    return parser


def prepare(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
    token, account, domain, name = inputs(env, stdin, args.token_stdin, args.account_id)

    def save() -> str:
        register(token, account, domain, name)
        return f"registered {BLOCK_TYPE}/{name} for account {account} on {domain}"

    return save


main = script_main(build_parser, prepare)


if __name__ == "__main__":
    sys.exit(main())
