"""One CLI for the migration tooling: `python -m migration <command>`.

Each command lives in its own module, which exposes `register(subparsers)`: it adds its parser
and sets `handler` (a function of the parsed args returning the exit code). Modules are imported
only when the CLI is built, and heavy imports stay inside the handlers, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence

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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m migration",
        description="Operator tooling for the William Grant dbt Cloud -> Prefect migration.",
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)
