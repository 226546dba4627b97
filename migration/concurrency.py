"""`python -m migration concurrency ensure`: the per-target concurrency limits runs rely on.

prefect.yaml cannot declare global concurrency limits, so `prefect deploy` creates them in a
build step (migration.deploy_steps.concurrency, this code), against whatever server it deploys
to: the local stack of `make run` and Prefect Cloud alike. One limit per
`dbt_runtime.invocation.Target`; see dbt_runtime/guards.py.
"""

from __future__ import annotations

import argparse
import asyncio

from dbt_runtime.guards import SLOTS_PER_TARGET, LimitChange, ensure_limits


def ensure() -> list[LimitChange]:
    """Create or repair every tenant's limits, saying what changed."""
    changes = asyncio.run(ensure_limits())
    for change in changes:
        print(f"concurrency limit {change.name} ({SLOTS_PER_TARGET} slot): {change.action}")
    return changes


def ensure_main() -> int:
    ensure()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "concurrency", help="create the one-run-per-target concurrency limits (deploy build step)"
    )
    parser.add_argument("action", choices=["ensure"])
    parser.set_defaults(handler=lambda args: ensure_main())
