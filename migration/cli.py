"""One CLI for the migration tooling: `python -m migration <command>`.

Each command lives in its own module, which exposes `register(subparsers)`: it adds its parser
and sets `handler` (a function of the parsed args returning the exit code). Modules are imported
only when the CLI is built, and heavy imports stay inside the handlers, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from dbt_runtime.project import TenantError, tenant
from dbt_runtime.settings import env_name, get_settings

Handler = Callable[[argparse.Namespace], int]

# The command modules, in the order `--help` lists them.
COMMAND_MODULES = [
    "migration.local_stack",
    "migration.cloudlike",
    "migration.source",
    "migration.concurrency",
    "migration.cloud",
    "migration.notifications",
    "migration.schedules",
    "migration.import_jobs",
    "migration.scheduler",
    "migration.cutover",
    "migration.bench",
    "migration.artifacts",
    "migration.parity",
    "migration.tenants",
]
# The commands that act for one tenant take `--tenant NAME` (default: WG_TENANT if set, else
# prefect.yaml's first deployment's tenant).
TENANT_COMMANDS = (
    "local", "schedules", "parity", "cutover", "rollback", "import-jobs", "artifacts",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m migration",
        description="Operator tooling for the dbt Cloud -> Prefect migration of the tenants.",
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in TENANT_COMMANDS:
        sub.choices[command].add_argument(
            "--tenant",
            metavar="NAME",
            help="the tenant (folder under tenants/); default: prefect.yaml's first deployment's",
        )
    return parser


def use_tenant(name: str) -> None:
    """Act as tenant `name` for the rest of this process (and what it starts): the same
    setting, WG_TENANT, that each deployment gives its runs."""
    tenant(name)  # unknown: TenantError naming prefect.yaml and `tenants add`
    os.environ[env_name("tenant")] = name
    get_settings.cache_clear()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "tenant", None):
        try:
            use_tenant(args.tenant)
        except TenantError as exc:
            print(f"error: --tenant: {exc}", file=sys.stderr)
            return 2
    handler: Handler = args.handler
    return handler(args)
