"""What the flow tells Prefect so that notification automations (notifications.yaml) can match.

Prefect's own flow-run state events (Failed, Crashed, TimedOut, Completed, ...) carry the run's
name but not its parameters, and an automation can only match event labels. So:

- `run_name`: every run is renamed to `<target>: <generated name>` when the flow starts, which
  puts the target into the label (`prefect.resource.name`) of every later state event. A rule
  for target `prod` matches runs named `prod: *`.
- `report_warnings`: dbt exits 0 when tests or source freshness only warn, so the run ends
  Completed. When any node warned, the flow emits WARNED_EVENT about itself (target and the
  warned nodes in the payload), which the `warned` rules match.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dbt_runtime._statuses import dbt_statuses

WARNED_EVENT = "wg.dbt.run.warned"
TARGET_LABEL = "wg.target"
RUN_NAME_SEPARATOR = ": "
WARNED_LISTED = 20  # nodes named in the event; the summary artifact has them all


def target_prefix(target: str) -> str:
    """How a run name starts once the flow knows the run's target."""
    return f"{target}{RUN_NAME_SEPARATOR}"


def named_for_target(target: str, current_name: str) -> str:
    """`prod: witty-otter` from `witty-otter`; unchanged if it already says so (re-runs)."""
    prefix = target_prefix(target)
    return current_name if current_name.startswith(prefix) else f"{prefix}{current_name}"


def run_name() -> str:
    """Prefect's `flow_run_name` callable: the generated name, prefixed with the target."""
    import inspect

    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow is None:
        raise RuntimeError("run_name() is called by Prefect as a flow run starts")
    target = (context.parameters or {}).get("target")
    if target is None:  # not passed: the flow's own default, read from its signature
        target = inspect.signature(context.flow.fn).parameters["target"].default
    return named_for_target(str(getattr(target, "value", target)), context.flow_run.name)


def warned_nodes(rows: Iterable[Any]) -> list[dict[str, str]]:
    """`unique_id` and first message line of each node whose dbt status is `warn`."""
    nodes = []
    warn = dbt_statuses().warn
    for row in rows:
        if str(row.status) == warn:
            lines = str(row.message or "").strip().splitlines()
            nodes.append({"unique_id": str(row.unique_id), "message": lines[0] if lines else ""})
    return nodes


def warned_event_payload(target: str, nodes: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "target": target,
        "warned_count": len(nodes),
        "warned": nodes[:WARNED_LISTED],
    }


def report_warnings(target: str, summary: Any) -> bool:
    """Emit WARNED_EVENT for the current flow run if any dbt node warned; True if it did.

    `summary` is the run's dbt_runtime.summary.RunSummary (or None when dbt wrote no results).
    Never raises: a notification hiccup must not change the outcome of the build.
    """
    nodes = warned_nodes(summary.rows) if summary is not None else []
    if not nodes:
        return False
    try:
        from prefect import get_run_logger
        from prefect.events import emit_event
        from prefect.runtime import flow_run

        # Related resources (flow, deployment, tags, work pool) are attached by Prefect's
        # events worker from the run context, like on its own state events.
        emit_event(
            event=WARNED_EVENT,
            resource={
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.name": str(flow_run.name),
                TARGET_LABEL: target,
            },
            payload=warned_event_payload(target, nodes),
        )
        get_run_logger().warning(
            "%d dbt node(s) warned: %s", len(nodes), ", ".join(n["unique_id"] for n in nodes)
        )
    except Exception as exc:
        import logging

        logging.getLogger(__name__).warning("could not report dbt warnings: %s", exc)
        return False
    return True
