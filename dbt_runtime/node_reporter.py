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
- one background thread turns them into node records (plain lists: the node, its times, its
  outcome, its lines with the run's secrets masked) and hands them to a TaskRunWriter
  (dbt_runtime/task_runs.py), which emits the same task-run state events the task engine emits
  and routes each node's lines to its task run;
- in a project of at least WG_REPORTER_PROCESS_MIN_NODES nodes the writer runs in a child
  process (records over a pipe): building events and log records, and Prefect's websocket and
  log batching, then use another core instead of taking dbt's GIL. The child's start-up (about
  2 s of imports) is more than a small project saves, so a small one writes in this process.

The flow run shows each node as a task run while dbt runs: Completed / Failed (skipped nodes:
Completed named "Skipped"), Running first when it outlasts the grace; the node's dbt log lines
on its task run, and a progress line every WG_PROGRESS_INTERVAL_SECONDS. Outside a flow run
nothing is reported (as with PrefectDbtRunner).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prefect.settings import get_current_settings
from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

from dbt_runtime._statuses import dbt_statuses
from dbt_runtime.profiles import PREFECT_BLOCK_ENV_PREFIX, SECRET_ENV_PREFIX
from dbt_runtime.settings import get_settings
from dbt_runtime.task_runs import NodeRecord, TaskRunWriter

# Node lifecycle events; everything else with a message is a log line.
NODE_START = "NodeStart"
NODE_FINISHED = "NodeFinished"
# dbt EventLevel values at or above INFO: what the runner's log level (INFO) shows.
LOGGED_LEVELS = frozenset({"info", "warn", "error"})
_LOG_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
# How long close() waits for the child to deliver what it was sent before it is killed.
CHILD_DRAIN_SECONDS = 120.0


@dataclass
class NodeReporter:
    """Turns dbt node events into Prefect task runs and logs, off dbt's threads.

    `callback` is what dbt calls (from its worker threads); `start()` / `close()` bracket one
    dbt invocation. `close()` drains the queue, so every node that finished is reported before
    the flow run ends; nodes dbt started but never finished (interrupt) end Crashed.
    """

    flow_run: Any  # prefect.client.schemas.objects.FlowRun
    flow_name: str
    flow_logger: logging.LoggerAdapter[logging.Logger] | logging.Logger
    manifest_path: Path
    progress_interval: float = field(
        default_factory=lambda: get_settings().progress_interval_seconds
    )
    process_min_nodes: int = field(
        default_factory=lambda: get_settings().reporter_process_min_nodes
    )
    on_first_node: Callable[[], None] | None = None
    """Called on the reporter thread when dbt starts its first node (its manifest is written)."""
    scrub: Callable[[str], str] = str
    """Masks the run's secrets: dbt masks them in its own file and console output only, and
    this forwards raw event messages."""
    _queue: queue.SimpleQueue[tuple[str, Any] | None] = field(default_factory=queue.SimpleQueue)
    _writer: TaskRunWriter | None = None  # in this process
    _child: subprocess.Popen[bytes] | None = None  # or in a child process
    _thread: threading.Thread | None = None

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
        self._writer = TaskRunWriter(
            flow_run_id=self.flow_run.id,
            flow_run_name=self.flow_run.name,
            flow_name=self.flow_name,
            flow_logger=self.flow_logger,
            manifest_path=self.manifest_path,
            progress_interval=self.progress_interval,
        )
        # The thread runs in a copy of this context: Prefect's settings and events client.
        ctx = contextvars.copy_context()
        self._thread = threading.Thread(
            target=ctx.run, args=(self._work,), name="dbt-node-reporter", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Report everything queued, end unfinished nodes Crashed, stop the thread (and the
        child, once it delivered everything)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        if self._child is not None:
            self._close_child(self._child)
            self._child = None
        elif self._writer is not None:
            self._writer.close()

    def _work(self) -> None:
        first_node_seen = False
        while True:
            timeout = self._writer.next_wakeup() if self._writer is not None else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if self._writer is not None:
                    self._writer.tick()
                continue
            batch = [item]
            while item is not None and not self._queue.empty():  # what dbt queued meanwhile
                item = self._queue.get()
                batch.append(item)
            records: list[NodeRecord] = []
            for entry in batch:
                if entry is None:
                    break
                try:
                    record = self._record(*entry)
                    if not first_node_seen and record[0] != "log":
                        first_node_seen = True
                        self._first_node()
                    records.append(record)
                except Exception:  # reporting must never fail or stall the dbt run
                    logging.getLogger(__name__).exception("could not read dbt event")
            self._deliver(records)
            if batch[-1] is None:
                return

    def _deliver(self, records: list[NodeRecord]) -> None:
        if self._child is not None:
            stdin: IO[bytes] | None = self._child.stdin
            try:
                if stdin is not None and records:
                    stdin.write(json.dumps(records).encode() + b"\n")
                    stdin.flush()
            except OSError:  # the child died: its nodes end Crashed on the server's side
                logging.getLogger(__name__).exception("the node reporter process is gone")
        elif self._writer is not None:
            for record in records:
                self._writer.handle(record)
            self._writer.tick()

    def _first_node(self) -> None:
        """dbt parsed the project and starts its first node: keep the manifest, and choose
        where the task runs are written by the project's size."""
        if self.on_first_node is not None:
            try:
                self.on_first_node()
            except Exception:  # e.g. storage down: the nodes are still reported
                logging.getLogger(__name__).exception("on_first_node failed")
        try:
            nodes = len(json.loads(self.manifest_path.read_text())["nodes"])
        except (OSError, ValueError, KeyError):
            nodes = 0
        if nodes and nodes >= self.process_min_nodes:
            self._child = self._start_child()
            if self._child is not None:
                self._writer = None

    def _start_child(self) -> subprocess.Popen[bytes] | None:
        env = writer_environment(
            os.environ, get_current_settings().to_environment_variables(exclude_unset=True)
        )
        start = {
            "flow_run": self.flow_run.model_dump(mode="json"),
            "flow_name": self.flow_name,
            "manifest_path": str(self.manifest_path),
            "progress_interval": self.progress_interval,
        }
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "dbt_runtime.task_runs"], stdin=subprocess.PIPE, env=env
            )
            assert child.stdin is not None
            child.stdin.write(json.dumps(start).encode() + b"\n")
            child.stdin.flush()
        except OSError:  # no child: this process writes the task runs
            logging.getLogger(__name__).exception("could not start the node reporter process")
            return None
        return child

    def _close_child(self, child: subprocess.Popen[bytes]) -> None:
        """End of input: the child ends unfinished nodes Crashed, delivers, exits."""
        try:
            if child.stdin is not None:
                child.stdin.close()
            code = child.wait(timeout=CHILD_DRAIN_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            code = child.wait()
        if code != 0:
            self.flow_logger.warning(
                "the node reporter process exited with %s: some node task runs may be missing",
                code,
            )

    def _record(self, kind: str, event: Any) -> NodeRecord:
        """A dbt event as a node record (dbt_runtime/task_runs.py), secrets masked."""
        if kind == "log":
            try:  # only some dbt event types have a node_info field at all
                unique_id = (
                    event.data.node_info.unique_id if event.data.HasField("node_info") else ""
                )
            except ValueError:
                unique_id = ""
            level = _LOG_LEVELS.get(event.info.level, logging.INFO)
            return ["log", unique_id, level, self.scrub(event.info.msg)]
        info = event.data.node_info
        unique_id = info.unique_id
        resource_type = info.resource_type or unique_id.split(".", 1)[0]
        started = [unique_id, resource_type, info.node_name or unique_id, info.node_started_at]
        if kind == NODE_START:
            return ["start", *started]
        result = event.data.run_result
        message = self.scrub(result.message) if result is not None else ""
        # dbt's node_status: failed -> Failed, skipped -> Completed named Skipped, else Completed.
        statuses = dbt_statuses()
        status = info.node_status or statuses.success
        outcome = (
            "failed"
            if status in statuses.failed
            else "skipped"
            if status == statuses.skipped
            else "completed"
        )
        return ["finish", *started, info.node_finished_at, outcome, status, message]


def writer_environment(
    environ: Mapping[str, str], prefect_settings: Mapping[str, str]
) -> dict[str, str]:
    """The task-run writer process's environment: this one's without the run's secrets (dbt's
    DBT_ENV_SECRET_* and prefect-dbt's PREFECT_BLOCKS_* copies), with this run's Prefect
    settings (API URL and key, also when set in-process) and this package importable."""
    env = {
        key: value
        for key, value in environ.items()
        if not key.startswith((SECRET_ENV_PREFIX, PREFECT_BLOCK_ENV_PREFIX))
    }
    env.update(prefect_settings)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


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
            flow_run=ctx.flow_run,
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
