"""dbt_runtime/node_reporter.py on a real dbt build inside a real flow run: each node becomes a
task run with its state and its own dbt log lines, failures and skips included; a node that
outlasts the grace shows Running while it runs, a fast one sends only its final state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.runtime import flow_run

from dbt_runtime.node_reporter import RUNNING_GRACE_SECONDS, run_dbt_with_node_reporting
from migration.local_stack import LocalStack
from migration.synthetic_project import write_project

pytestmark = pytest.mark.integration

SLOW_NODE = f"""
import os
import time

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas import filters


def running_on_server():
    running = filters.TaskRunFilter(
        name=filters.TaskRunFilterName(any_=["model slow_node"]),
        state=filters.TaskRunFilterState(name=filters.TaskRunFilterStateName(any_=["Running"])),
    )
    # dbt's threads do not carry the test's Prefect settings: name the stack's server.
    with SyncPrefectClient(os.environ["PREFECT_API_URL"]) as client:
        return bool(client.read_task_runs(task_run_filter=running))


def model(dbt, session):
    time.sleep({3 * RUNNING_GRACE_SECONDS})
    deadline = time.monotonic() + 120
    while not running_on_server() and time.monotonic() < deadline:
        time.sleep(0.2)
    return session.sql("select 1 as id")
"""


async def task_runs_and_logs(flow_run_id: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    by_id = {r.id: r.name for r in runs}
    lines: dict[str, list[str]] = {}
    for log in logs:
        lines.setdefault(by_id.get(log.task_run_id, "<flow>"), []).append(log.message)
    return {r.name: r for r in runs}, lines


def test_each_node_is_a_task_run_with_state_and_logs(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = write_project(tmp_path / "project", 4)  # m0_0000 <- m1_0000 <- m2_0000 <- m3_0000
    (project.path / "models" / "m1_0000.sql").write_text("select * from no_such_table\n")
    # A dbt-duckdb Python model that runs past the grace: it must show Running while it runs.
    # It runs (in this process) until the server shows it Running, or 120 s, whichever is first.
    (project.path / "models" / "slow_node.py").write_text(SLOW_NODE)
    monkeypatch.setenv("WG_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))

    @flow(name="node-reporter-test")
    def build() -> tuple[bool, str]:
        result = run_dbt_with_node_reporting(
            ["build"], project.path, project.path, raise_on_failure=False
        )
        return bool(result.success), str(flow_run.id)

    success, flow_run_id = build()

    assert not success
    # Task-run states travel as events and logs in batches: both arrive shortly after the run.
    deadline = time.monotonic() + 60
    while True:
        runs, logs = asyncio.run(task_runs_and_logs(flow_run_id))
        failed_logs = " ".join(logs.get("model m1_0000", []))
        if (len(runs) == 10 and "no_such_table" in failed_logs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(runs) == 10  # 3 seeds, 5 models, 2 tests (2 of them skipped)
    assert runs["seed seed_0"].state_name == "Completed"
    assert runs["model m0_0000"].state_name == "Completed"
    failed = runs["model m1_0000"]
    assert failed.state_name == "Failed"
    assert "no_such_table" in (failed.state.message if failed.state else "")
    # dbt skips what depends on the failure; the UI shows those nodes, named Skipped.
    assert runs["model m2_0000"].state_name == "Skipped"
    # Upstream nodes are task inputs, so the run graph draws dbt's DAG.
    upstream = {str(i.id) for i in runs["model m0_0000"].task_inputs["upstream"]}
    assert upstream == {str(runs["seed seed_0"].id)}
    assert any("OK created" in line for line in logs["model m0_0000"])
    assert any("no_such_table" in line for line in logs["model m1_0000"])
    # A fast node: one record with its START and result lines; its only state the final one.
    assert any("START" in rec and "OK created" in rec for rec in logs["model m0_0000"])
    assert asyncio.run(state_names(runs["model m0_0000"].id)) == ["Completed"]
    # The slow node was announced Running before it completed, and finished as it ran.
    slow = runs["model slow_node"]
    assert asyncio.run(state_names(slow.id)) == ["Running", "Completed"]
    assert slow.total_run_time.total_seconds() >= 3 * RUNNING_GRACE_SECONDS


async def state_names(task_run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        states = await client.read_task_run_states(task_run_id)
    return [s.name or "" for s in sorted(states, key=lambda s: s.timestamp)]
