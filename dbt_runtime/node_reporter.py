"""Per-node visibility in Prefect without slowing dbt down.

prefect-dbt's PrefectDbtRunner makes every dbt node a real Prefect task: a thread per node
running the full task engine (context hydration, a client, parameter collection, a waiter
thread). Measured here that costs 3.9x plain dbt wall time at 155 nodes: the per-node machinery
competes for the GIL with dbt's own threads.

The task engine itself only *emits events* (`prefect.task-run.Running`, `...Completed`); the
server's task-run recorder turns those events into the task runs the UI shows. This module
keeps PrefectDbtRunner (profiles with block references, argument handling, raise_on_failure)
and replaces only its dbt callback (`_create_unified_callback`, the one seam prefect-dbt offers):

- on dbt's threads the callback does almost nothing: it keeps the node events and the INFO+
  log lines and puts them on a queue;
- one background thread turns them into the same task-run state events the task engine emits
  (one task run per node, named like prefect-dbt's: "model stg_orders", with upstream nodes as
  task inputs so the run graph has edges) and routes each node's log lines to its task run;
- Prefect's own batching does the rest: events go out over one websocket, logs in batches.

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

The flow run shows each node as a task run while dbt runs: Completed / Failed (skipped nodes:
Completed named "Skipped"), Running first when it outlasts the grace; the node's dbt log lines
on its task run, and a progress line every WG_PROGRESS_INTERVAL_SECONDS. Outside a flow run
nothing is reported (as with PrefectDbtRunner).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

from dbt_runtime._statuses import dbt_statuses
from dbt_runtime.settings import get_settings
from dbt_runtime.task_runs import SKIPPED_STATE_NAME, TASK_KEY_PREFIX

# Node lifecycle events; everything else with a message is a log line.
NODE_START = "NodeStart"
NODE_FINISHED = "NodeFinished"
# dbt EventLevel values at or above INFO: what the runner's log level (INFO) shows.
LOGGED_LEVELS = frozenset({"info", "warn", "error"})
# A node still running this long after dbt started it is announced Running; one that finishes
# sooner sends only its final state (one event instead of two).
RUNNING_GRACE_SECONDS = 1.0
NODE_LOGGER_NAME = "prefect.task_runs.dbt"  # the node lines' logger: to the API only


@dataclass
class _Node:
    """One dbt node's task run as the reporter tracks it."""

    unique_id: str
    task_run: Any  # prefect.client.schemas.objects.TaskRun
    logger: logging.LoggerAdapter[logging.Logger]
    last_event: Any = None  # the previous state event, so the server orders states right
    finished: bool = False
    held_lines: list[tuple[int, str]] = field(default_factory=list)  # until announced/finished
    started: float = 0.0  # time.monotonic() when the reporter saw it start


@dataclass
class NodeReporter:
    """Turns dbt node events into Prefect task runs and logs, off dbt's threads.

    `callback` is what dbt calls (from its worker threads); `start()` / `close()` bracket one
    dbt invocation. `close()` drains the queue, so every node that finished is reported before
    the flow run ends; nodes dbt started but never finished (interrupt) end Crashed.
    """

    flow_run_id: UUID
    flow_run_name: str
    flow_name: str
    flow_logger: logging.LoggerAdapter[logging.Logger] | logging.Logger
    manifest_path: Path
    progress_interval: float = field(
        default_factory=lambda: get_settings().progress_interval_seconds
    )
    on_first_node: Callable[[], None] | None = None
    """Called on the reporter thread when dbt starts its first node (its manifest is written)."""
    scrub: Callable[[str], str] = str
    """Masks the run's secrets: dbt masks them in its own file and console output only, and
    this forwards raw event messages."""
    _queue: queue.SimpleQueue[tuple[str, Any] | None] = field(default_factory=queue.SimpleQueue)
    _nodes: dict[str, _Node] = field(default_factory=dict)
    _unannounced: dict[str, _Node] = field(default_factory=dict)  # started, not yet Running
    _parents: dict[str, list[str]] | None = None
    _thread: threading.Thread | None = None
    _statuses: Counter[str] = field(default_factory=Counter)
    _last_progress: float = 0.0

    # -- dbt's side: as cheap as possible ------------------------------------------------------

    def callback(self, event: Any) -> None:
        """dbt's event callback. Runs on dbt's threads: filter, enqueue, return."""
        name = event.info.name
        if name in (NODE_START, NODE_FINISHED):
            self._queue.put((name, event))
        elif event.info.level in LOGGED_LEVELS and event.info.msg:
            self._queue.put(("log", event))

    # -- the background thread -----------------------------------------------------------------

    def start(self) -> None:
        # The thread runs in a copy of this context: Prefect's settings and events client.
        ctx = contextvars.copy_context()
        self._thread = threading.Thread(
            target=ctx.run, args=(self._work,), name="dbt-node-reporter", daemon=True
        )
        self._last_progress = time.monotonic()
        self._thread.start()

    def close(self) -> None:
        """Report everything queued, end unfinished nodes Crashed, stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        for node in self._nodes.values():
            if not node.finished:
                self._finish(node, "crashed", "dbt stopped before this node finished")

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._next_wakeup())
            except queue.Empty:
                item = ("tick", None)
            if item is None:
                return
            kind, event = item
            try:
                if kind == NODE_START:
                    self._node_started(event)
                elif kind == NODE_FINISHED:
                    self._node_finished(event)
                elif kind == "log":
                    self._log(event)
                self._announce_long_running()
            except Exception:  # reporting must never fail or stall the dbt run
                logging.getLogger(__name__).exception("could not report dbt event %s", kind)
            now = time.monotonic()
            if now - self._last_progress >= self.progress_interval:
                self._last_progress = now
                self.flow_logger.info("dbt progress: %s", self.progress())

    def _next_wakeup(self) -> float:
        """Seconds until the oldest unannounced node reaches the grace, or the next progress
        line is due."""
        now = time.monotonic()
        due = self._last_progress + self.progress_interval
        if self._unannounced:
            oldest = next(iter(self._unannounced.values()))
            due = min(due, oldest.started + RUNNING_GRACE_SECONDS)
        return max(due - now, 0.01)

    def _announce_long_running(self) -> None:
        """Send Running for the nodes still running after the grace (oldest first)."""
        limit = time.monotonic() - RUNNING_GRACE_SECONDS
        while self._unannounced:
            node = next(iter(self._unannounced.values()))
            if node.started > limit:
                return
            del self._unannounced[node.unique_id]
            node.last_event = self._emit(node.task_run, None, node.task_run.state, None)
            self._release_lines(node)

    def _release_lines(self, node: _Node) -> None:
        """A node's held dbt lines as one log record (its START and result lines, typically)."""
        if node.held_lines:
            level = max(level for level, _ in node.held_lines)
            node.logger.log(level, "%s", "\n".join(line for _, line in node.held_lines))
            node.held_lines.clear()

    def progress(self) -> str:
        running = sum(1 for n in self._nodes.values() if not n.finished)
        done = ", ".join(f"{k} {v}" for k, v in sorted(self._statuses.items()))
        return f"{running} running; finished: {done or 'none yet'}"

    def _upstream_of(self, unique_id: str) -> list[str]:
        """The node's parents, from the manifest dbt wrote after parsing (read once)."""
        if self._parents is None:
            try:
                self._parents = dict(json.loads(self.manifest_path.read_text())["parent_map"])
            except (OSError, ValueError, KeyError):
                self._parents = {}
        return self._parents.get(unique_id, [])

    def _node_started(self, event: Any) -> None:
        from prefect.client.schemas.objects import TaskRun, TaskRunResult
        from prefect.logging.loggers import PrefectLogAdapter
        from prefect.states import Running

        info = event.data.node_info
        unique_id = info.unique_id
        if unique_id in self._nodes:
            return
        if not self._nodes and self.on_first_node is not None:
            try:
                self.on_first_node()
            except Exception:  # e.g. storage down: the node is still reported
                logging.getLogger(__name__).exception("on_first_node failed")
        resource_type = info.resource_type or unique_id.split(".", 1)[0]
        name = f"{resource_type} {info.node_name or unique_id}"
        state: Any = Running(timestamp=_timestamp(info.node_started_at))
        upstream: list[Any] = [
            TaskRunResult(id=self._nodes[p].task_run.id)
            for p in self._upstream_of(unique_id)
            if p in self._nodes
        ]
        from prefect._internal.uuid7 import uuid7

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
            unique_id=unique_id, task_run=task_run, logger=logger, started=time.monotonic()
        )
        self._nodes[unique_id] = node
        self._unannounced[unique_id] = node  # announced Running only if it outlasts the grace

    def _node_finished(self, event: Any) -> None:
        info = event.data.node_info
        if info.unique_id not in self._nodes:
            self._node_started(event)  # finished without a start event (skipped): one step
        node = self._nodes[info.unique_id]
        if node.finished:
            return
        result = event.data.run_result
        message = self.scrub(result.message) if result is not None else ""
        self._finish(node, info.node_status, message, _timestamp(info.node_finished_at))

    def _finish(self, node: _Node, status: str, message: str, when: datetime | None = None) -> None:
        from prefect.states import Completed, Crashed, Failed

        stamp = when or _timestamp("")
        if stamp <= node.task_run.state.timestamp:  # states must move forward in time
            stamp = node.task_run.state.timestamp + timedelta(microseconds=1)
        state: Any
        # dbt's node_status: failed -> Failed, skipped -> Completed named Skipped, else Completed.
        statuses = dbt_statuses()
        if status in statuses.failed:
            state = Failed(message=message or f"dbt status: {status}", timestamp=stamp)
        elif status == statuses.skipped:
            state = Completed(
                name=SKIPPED_STATE_NAME, message=message or statuses.skipped, timestamp=stamp
            )
        elif status == "crashed":
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
        node.last_event = self._emit(task_run, previous, state, node.last_event)
        node.finished = True
        self._release_lines(node)
        self._statuses[status or statuses.success] += 1

    def _emit(self, task_run: Any, previous: Any, state: Any, follows: Any) -> Any:
        # Exactly the event the task engine emits for a client-side task run state change.
        from prefect.utilities.engine import emit_task_run_state_change_event

        return emit_task_run_state_change_event(
            task_run=task_run, initial_state=previous, validated_state=state, follows=follows
        )

    def _log(self, event: Any) -> None:
        level = _LOG_LEVELS.get(event.info.level, logging.INFO)
        try:  # only some dbt event types have a node_info field at all
            unique_id = event.data.node_info.unique_id if event.data.HasField("node_info") else ""
        except ValueError:
            unique_id = ""
        node = self._nodes.get(unique_id) if unique_id else None
        message = self.scrub(event.info.msg)
        if node is None:
            self.flow_logger.log(level, "%s", message)
        elif node.unique_id in self._unannounced:  # may finish within the grace: one record
            node.held_lines.append((level, message))
        else:  # announced Running, or finished
            node.logger.log(level, "%s", message)


_LOG_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


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


class NodeReportingDbtRunner(PrefectDbtRunner):
    """PrefectDbtRunner with the per-node task machinery replaced by a NodeReporter.

    Everything else is prefect-dbt's: settings, block references in profiles.yml resolved to
    environment variables, argument handling, raise_on_failure. prefect-dbt's post_model hooks
    and dbt assets are not produced (this project uses neither).
    """

    def __init__(self, reporter_factory: Callable[[], NodeReporter | None], **kwargs: Any):
        super().__init__(**kwargs)
        self._reporter_factory = reporter_factory
        self.reporter: NodeReporter | None = None

    def _create_unified_callback(self, *args: Any, **kwargs: Any) -> Callable[[Any], None]:
        self.reporter = self._reporter_factory()
        if self.reporter is None:
            return lambda event: None
        self.reporter.start()
        return self.reporter.callback


def run_dbt_with_node_reporting(
    args: Sequence[str],
    project_dir: Path,
    profiles_dir: Path,
    raise_on_failure: bool = True,
    on_first_node: Callable[[], None] | None = None,
    scrub: Callable[[str], str] = str,
    **dbt_kwargs: Any,
) -> Any:
    """Drop-in for `PrefectDbtRunner(settings=..., raise_on_failure=...).invoke(args, **kw)`.

    Returns dbt's `dbtRunnerResult`; raises like PrefectDbtRunner (ValueError naming the failed
    nodes) when raise_on_failure. Every finished node is reported before this returns or raises.
    `on_first_node` runs once, when dbt has parsed the project and starts executing.
    """
    settings = PrefectDbtSettings(project_dir=project_dir, profiles_dir=profiles_dir)

    def reporter() -> NodeReporter | None:
        from prefect.context import FlowRunContext
        from prefect.logging import get_run_logger

        ctx = FlowRunContext.get()
        if ctx is None or ctx.flow_run is None:
            return None
        return NodeReporter(
            flow_run_id=ctx.flow_run.id,
            flow_run_name=ctx.flow_run.name,
            flow_name=ctx.flow.name if ctx.flow else "",
            flow_logger=get_run_logger(),
            manifest_path=Path(project_dir) / settings.target_path / "manifest.json",
            on_first_node=on_first_node,
            scrub=scrub,
        )

    runner = NodeReportingDbtRunner(
        reporter_factory=reporter, settings=settings, raise_on_failure=raise_on_failure
    )
    try:
        return runner.invoke(list(args), **dbt_kwargs)
    finally:
        if runner.reporter is not None:
            runner.reporter.close()
