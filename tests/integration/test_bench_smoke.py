"""`make bench` end to end on a tiny size: the harness runs plain dbt and the deployed flow
side by side and writes bench/results.json. Benchmarks are not tests: the shape is asserted,
never a timing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dbt_runtime.task_runs import recorded_task_runs
from migration.bench import run_bench
from migration.local_stack import LocalStack

pytestmark = pytest.mark.integration


async def task_run_states(flow_run_id: str) -> list[str]:
    return [r.state_name or "" for r in await recorded_task_runs(flow_run_id)]


def test_bench_writes_results_with_a_ratio_per_size(stack: LocalStack, tmp_path: Path) -> None:
    results_path = tmp_path / "bench" / "results.json"
    run_bench([10], repeats=1, results_path=results_path, trigger=False, api_url=stack.api_url)

    results = json.loads(results_path.read_text())
    assert results["flow_over_plain_10"] > 0
    size = results["sizes"]["10"]
    assert (size["models"], size["nodes"]) == (10, 18)
    assert sorted(r["mode"] for r in size["runs"]) == ["flow", "plain"]
    assert all(r["ok"] for r in size["runs"]), size["runs"]
    assert results["peak_rss_mb"] > 0 and results["pip_noop_s"] > 0
    assert set(results) >= {"trigger_to_dbt_start_s", "trigger_to_completed_s", "machine_start"}
    assert results["machine_start"]["versions"]["prefect"]
    # The flow run it measured shows every dbt node (seeds, models, tests) as its own run.
    flow = next(r for r in size["runs"] if r["mode"] == "flow")
    states = asyncio.run(task_run_states(flow["flow_run_id"]))
    assert len(states) == size["nodes"] and set(states) == {"Completed"}
    # ...and the harness reports that visibility for every measured run, with the summary.
    assert (flow["task_runs"], flow["summary_rows"]) == (size["nodes"], size["nodes"])
    # Client and server CPU apart, the per-node overhead, and how live the node states were.
    assert flow["cpu_s"] > 0 and flow["server_cpu_s"] > 0  # the session's server, from /proc
    assert flow["wall_s"] >= flow["flow_call_s"] > 0  # the whole process, not just the call
    assert flow["visibility_p95_s"] is not None and flow["visibility_p95_s"] >= 0
    assert results["per_node_overhead_ms"]["10"] == size["per_node_overhead_ms"] is not None
    # Beside it, the floor no flow code can go under: an empty flow's process against the same
    # server, less a bare interpreter's, per node of each size.
    floor = results["prefect_floor"]
    assert len(floor["runs_s"]["empty_flow"]) == len(floor["runs_s"]["python"]) == 1
    assert floor["floor_s"] > 0
    assert results["prefect_floor_ms_per_node"] == {"10": round(floor["floor_s"] * 1000 / 18, 2)}
