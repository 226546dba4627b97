"""The task runs dbt's nodes become in a flow run: writing them, their key, their Skipped state,
reading them.

`TaskRunWriter` turns node records (plain lists, see `NodeRecord`) into the task-run state
events Prefect's task engine emits and each node's dbt lines into logs on its task run. It
needs Prefect, not dbt: node_reporter.py (which needs dbt) feeds it records, either in the
flow's process or, for a large project, in a child process of it (`python -m
dbt_runtime.task_runs`, `main()` below) so that Prefect's per-node work runs on another core
than dbt. Read by resume.py, the bench and operators' tooling: reading a run's nodes does not
import dbt, and a run that fails on its parameters fails before dbt is even imported
(flows/dbt_project.py).

What a node costs is per event and per log record, so each node sends as few as it can
(profile and figures: README, "Performance"):
- a node that finishes within RUNNING_GRACE_SECONDS of its start sends one event, its final
  state (the task run still has its start and end time); only a node still running after that
  is announced Running first, so a long model shows as running while it runs;
- a node's dbt lines go out as one log record when it finishes (or is announced Running), not
  one record per line;
- a node's dbt lines go to the server only (the run's logs in the UI), not through Prefect's
  console handler: dbt prints nothing in a flow run (prefect-dbt sets its console level to
  none), and rendering each line with Rich for the worker's output was half the reporter's time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

TASK_KEY_PREFIX = "dbt-node"  # a node's task run: task_key "dbt-node-<unique_id>"
SKIPPED_STATE_NAME = "Skipped"  # a skipped node's task run: Completed, with this name
TASK_RUNS_PAGE = 200  # the server's maximum task runs per read

# A node still running this long after dbt started it is announced Running; one that finishes
# sooner sends only its final state (one event instead of two).
RUNNING_GRACE_SECONDS = 1.0
NODE_LOGGER_NAME = "prefect.task_runs.dbt"  # the node lines' logger: to the API only

# Node records, as node_reporter.py builds them from dbt's events (JSON-friendly lists):
#   ["start", unique_id, resource_type, node_name, started_at]
#   ["finish", unique_id, resource_type, node_name, started_at, finished_at, outcome, status,
#    message]    outcome: one of OUTCOMES; status: dbt's node_status
#   ["log", unique_id or "", logging level, message]
NodeRecord = list[Any]
OUTCOMES = ("completed", "failed", "skipped", "crashed")


@dataclass
class _Node:
    """One dbt node's task run as the writer tracks it."""

    unique_id: str
    task_run: Any  # prefect.client.schemas.objects.TaskRun
    logger: logging.LoggerAdapter[logging.Logger]
    last_event: Any = None  # the previous state event, so the server orders states right
    finished: bool = False
    held_lines: list[tuple[int, str]] = field(default_factory=list)  # until announced/finished
    started: float = 0.0  # when dbt started it (epoch seconds): a writer may see it later


@dataclass
class TaskRunWriter:
    """Node records in, one task run per node (with its state and dbt lines) out.

    Named like prefect-dbt's task runs ("model stg_orders"), with upstream nodes as task inputs
    so the run graph has edges. `handle` takes one record; `tick` is due after each batch of
    records and every `next_wakeup()` seconds (Running announcements, progress lines); `close`
    ends unfinished nodes Crashed.

    A node counts as running from dbt's start time, not from when the writer sees it: a node
    whose start and finish arrive in one batch (the writer was busy or starting) finished
    before it could be shown running, and sends its final state only.
    """

    flow_run_id: UUID
    flow_run_name: str
    flow_name: str
    flow_logger: logging.LoggerAdapter[logging.Logger] | logging.Logger
    manifest_path: Path
    progress_interval: float
    _nodes: dict[str, _Node] = field(default_factory=dict)
    _unannounced: dict[str, _Node] = field(default_factory=dict)  # started, not yet Running
    _parents: dict[str, list[str]] | None = None
    _statuses: Counter[str] = field(default_factory=Counter)
    _last_progress: float = field(default_factory=time.monotonic)

    def handle(self, record: NodeRecord) -> None:
        kind = record[0]
        try:
            if kind == "start":
                self._node_started(*record[1:5])
            elif kind == "finish":
                self._node_finished(*record[1:])
            elif kind == "log":
                self._log(*record[1:])
        except Exception:  # reporting must never fail or stall the dbt run
            logging.getLogger(__name__).exception("could not report dbt record %s", kind)

    def tick(self) -> None:
        """Announce the nodes that outlasted the grace; log progress when it is due."""
        self._announce_long_running()
        now = time.monotonic()
        if now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            self.flow_logger.info("dbt progress: %s", self.progress())

    def next_wakeup(self) -> float:
        """Seconds until the oldest unannounced node reaches the grace, or the next progress
        line is due."""
        due = self._last_progress + self.progress_interval - time.monotonic()
        if self._unannounced:
            oldest = next(iter(self._unannounced.values()))
            due = min(due, oldest.started + RUNNING_GRACE_SECONDS - time.time())
        return max(due, 0.01)

    def close(self) -> None:
        """End the nodes dbt started but never finished (an interrupt) Crashed."""
        for node in self._nodes.values():
            if not node.finished:
                self._finish(node, "crashed", "crashed", "dbt stopped before this node finished")

    def progress(self) -> str:
        running = sum(1 for n in self._nodes.values() if not n.finished)
        done = ", ".join(f"{k} {v}" for k, v in sorted(self._statuses.items()))
        return f"{running} running; finished: {done or 'none yet'}"

    def _announce_long_running(self) -> None:
        """Send Running for the nodes still running after the grace (oldest first)."""
        limit = time.time() - RUNNING_GRACE_SECONDS
        while self._unannounced:
            node = next(iter(self._unannounced.values()))
            if node.started > limit:
                return
            del self._unannounced[node.unique_id]
            node.last_event = _emit(node.task_run, None, node.task_run.state, None)
            self._release_lines(node)

    def _release_lines(self, node: _Node) -> None:
        """A node's held dbt lines as one log record (its START and result lines, typically)."""
        if node.held_lines:
            level = max(level for level, _ in node.held_lines)
            node.logger.log(level, "%s", "\n".join(line for _, line in node.held_lines))
            node.held_lines.clear()

    def _upstream_of(self, unique_id: str) -> list[str]:
        """The node's parents, from the manifest dbt wrote after parsing (read once)."""
        if self._parents is None:
            try:
                self._parents = dict(json.loads(self.manifest_path.read_text())["parent_map"])
            except (OSError, ValueError, KeyError):
                self._parents = {}
        return self._parents.get(unique_id, [])

    def _node_started(
        self, unique_id: str, resource_type: str, node_name: str, started_at: str
    ) -> None:
        from prefect._internal.uuid7 import uuid7
        from prefect.client.schemas.objects import TaskRun, TaskRunResult
        from prefect.logging.loggers import PrefectLogAdapter
        from prefect.states import Running

        if unique_id in self._nodes:
            return
        name = f"{resource_type} {node_name}"
        state: Any = Running(timestamp=_timestamp(started_at))
        upstream: list[Any] = [
            TaskRunResult(id=self._nodes[p].task_run.id)
            for p in self._upstream_of(unique_id)
            if p in self._nodes
        ]
        task_run_id = uuid7()
        state.state_details.task_run_id = task_run_id
        state.state_details.flow_run_id = self.flow_run_id
        task_run = TaskRun(
            id=task_run_id,
            name=name,
            flow_run_id=self.flow_run_id,
            task_key=f"{TASK_KEY_PREFIX}-{unique_id}",
            dynamic_key=str(task_run_id),
            tags=["dbt", resource_type],
            task_inputs={"upstream": upstream} if upstream else {},
            expected_start_time=state.timestamp,
            start_time=state.timestamp,
            run_count=1,
            state_id=state.id,
            state_type=state.type,
            state_name=state.name,
            state=state,
        )
        logger = PrefectLogAdapter(
            _node_logger(),
            extra={
                "task_run_id": task_run_id,
                "flow_run_id": str(self.flow_run_id),
                "task_run_name": name,
                "task_name": TASK_KEY_PREFIX,
                "flow_run_name": self.flow_run_name,
                "flow_name": self.flow_name,
            },
        )
        node = _Node(
            unique_id=unique_id,
            task_run=task_run,
            logger=logger,
            started=state.timestamp.timestamp(),
        )
        self._nodes[unique_id] = node
        self._unannounced[unique_id] = node  # announced Running only if it outlasts the grace

    def _node_finished(
        self,
        unique_id: str,
        resource_type: str,
        node_name: str,
        started_at: str,
        finished_at: str,
        outcome: str,
        status: str,
        message: str,
    ) -> None:
        if unique_id not in self._nodes:  # finished without a start event (skipped): one step
            self._node_started(unique_id, resource_type, node_name, started_at)
        node = self._nodes[unique_id]
        if not node.finished:
            self._finish(node, outcome, status, message, _timestamp(finished_at))

    def _finish(
        self, node: _Node, outcome: str, status: str, message: str, when: datetime | None = None
    ) -> None:
        from prefect.states import Completed, Crashed, Failed

        stamp = when or _timestamp("")
        if stamp <= node.task_run.state.timestamp:  # states must move forward in time
            stamp = node.task_run.state.timestamp + timedelta(microseconds=1)
        state: Any
        if outcome == "failed":
            state = Failed(message=message or f"dbt status: {status}", timestamp=stamp)
        elif outcome == "skipped":
            state = Completed(name=SKIPPED_STATE_NAME, message=message or status, timestamp=stamp)
        elif outcome == "crashed":
            state = Crashed(message=message, timestamp=stamp)
        else:
            state = Completed(message=message or None, timestamp=stamp)
        task_run = node.task_run
        state.state_details.task_run_id = task_run.id
        state.state_details.flow_run_id = self.flow_run_id
        previous = task_run.state
        task_run.total_run_time = stamp - previous.timestamp
        task_run.end_time = stamp
        task_run.state, task_run.state_id = state, state.id
        task_run.state_type, task_run.state_name = state.type, state.name
        # A node that never announced Running sends only this, its final state.
        self._unannounced.pop(node.unique_id, None)
        node.last_event = _emit(task_run, previous, state, node.last_event)
        node.finished = True
        self._release_lines(node)
        self._statuses[status] += 1

    def _log(self, unique_id: str, level: int, message: str) -> None:
        node = self._nodes.get(unique_id) if unique_id else None
        if node is None:
            self.flow_logger.log(level, "%s", message)
        elif node.unique_id in self._unannounced:  # may finish within the grace: one record
            node.held_lines.append((level, message))
        else:  # announced Running, or finished
            node.logger.log(level, "%s", message)


def _emit(task_run: Any, previous: Any, state: Any, follows: Any) -> Any:
    # Exactly the event the task engine emits for a client-side task run state change.
    from prefect.utilities.engine import emit_task_run_state_change_event

    return emit_task_run_state_change_event(
        task_run=task_run, initial_state=previous, validated_state=state, follows=follows
    )


def _node_logger() -> logging.Logger:
    """The logger of dbt's per-node lines: Prefect's API handler only (the run's logs in the UI),
    not its console handler (see the module docstring)."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger(NODE_LOGGER_NAME)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(APILogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def _timestamp(value: str) -> datetime:
    """dbt's ISO timestamps (UTC, written without a zone: dbt/task/runnable.py); now when dbt
    gave none."""
    from prefect.types._datetime import now

    if value:
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return now("UTC")


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


# -- the child process: `python -m dbt_runtime.task_runs` ------------------------------------
# stdin: one JSON line `{"flow_run": <the FlowRun>, "flow_name": ..., "manifest_path": ...,
# "progress_interval": ...}`, then one JSON list of node records per line, until EOF (the flow
# is done with dbt, or died). Then unfinished nodes end Crashed, and every event and log is
# delivered before the process exits.


def main() -> int:
    from prefect.client.schemas.objects import FlowRun
    from prefect.context import FlowRunContext
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.logging.loggers import PrefectLogAdapter, get_logger

    start = json.loads(sys.stdin.readline())
    flow_run = FlowRun.model_validate(start["flow_run"])
    # Prefect's events worker relates each event to the flow run (and its flow, deployment,
    # work pool, tags: what the server's task-run recorder and the UI read) from the current
    # FlowRunContext; here that context holds only the flow run, not a running flow.
    context = FlowRunContext.model_construct(flow_run=flow_run)
    flow_logger = PrefectLogAdapter(  # what get_run_logger() gives the flow: console and API
        get_logger("flow_runs"),
        extra={
            "flow_run_id": str(flow_run.id),
            "flow_run_name": flow_run.name,
            "flow_name": start["flow_name"],
        },
    )
    writer = TaskRunWriter(
        flow_run_id=flow_run.id,
        flow_run_name=flow_run.name,
        flow_name=start["flow_name"],
        flow_logger=flow_logger,
        manifest_path=Path(start["manifest_path"]),
        progress_interval=float(start["progress_interval"]),
    )
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def read() -> None:  # a thread, so that waiting for input never delays a tick
        for line in sys.stdin:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="node-records", daemon=True).start()
    with context:
        done = False
        while not done:
            try:
                batch = [lines.get(timeout=writer.next_wakeup())]
            except queue.Empty:
                batch = []
            while not lines.empty():  # the whole backlog, then one tick
                batch.append(lines.get())
            for line in batch:
                if line is None:
                    done = True
                    break
                for record in json.loads(line):
                    writer.handle(record)
            writer.tick()
        writer.close()
        EventsWorker.drain_all()
        APILogWorker.drain_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
