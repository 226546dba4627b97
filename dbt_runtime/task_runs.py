"""The task runs dbt's nodes become in a flow run: their key, their Skipped state, reading them.

Written by node_reporter.py (which needs dbt), read by resume.py, the bench and operators'
tooling (which do not): kept apart so that reading a run's nodes does not import dbt, and a
run that fails on its parameters fails before dbt is even imported (flows/dbt_project.py).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

TASK_KEY_PREFIX = "dbt-node"  # a node's task run: task_key "dbt-node-<unique_id>"
SKIPPED_STATE_NAME = "Skipped"  # a skipped node's task run: Completed, with this name
TASK_RUNS_PAGE = 200  # the server's maximum task runs per read


async def recorded_task_runs(flow_run_id: str) -> list[Any]:
    """Every task run the server recorded for a flow run (pages of the server's maximum)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    async with get_client() as client:
        while True:
            page = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
                offset=len(runs),
                limit=TASK_RUNS_PAGE,
            )
            runs += page
            if len(page) < TASK_RUNS_PAGE:
                return runs
