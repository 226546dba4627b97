"""One CLI for the migration tooling; each subcommand's logic lives in its own module."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _local(args: argparse.Namespace) -> int:
    from migration import local_stack

    if args.action == "stop":
        return local_stack.stop_main()
    return local_stack.run_main(json.loads(args.parameters))


def _source(args: argparse.Namespace) -> int:
    from migration import source

    return source.main(args.what)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m migration",
        description="Operator tooling for the William Grant dbt Cloud -> Prefect migration.",
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")

    local = sub.add_parser(
        "local", help="run the deployment on a local Prefect server + worker (make run / stop)"
    )
    local.add_argument("action", choices=["run", "stop"])
    local.add_argument(
        "--parameters",
        default='{"target": "local"}',
        help="JSON flow parameters of the ad-hoc run (default: %(default)s)",
    )
    local.set_defaults(handler=_local)

    source = sub.add_parser(
        "source", help="deploy-time values for prefect.yaml's pull steps (used by prefect deploy)"
    )
    source.add_argument("what", choices=["repository", "credentials", "commit"])
    source.set_defaults(handler=_source)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)
