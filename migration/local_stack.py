"""The local stand-in for Prefect Cloud: a Prefect server (SQLite) and a process worker.

`make run` = `python -m migration local run`: start (or reuse) the server on 127.0.0.1, create
the work pool prefect.yaml names, `prefect --no-prompt deploy --all` from the real prefect.yaml,
start a worker, trigger an ad-hoc run, stream its logs and report the final state.
`make stop` = `python -m migration local stop`: stop what was started, by PID.
Everything lives under `.local/` (gitignored); the tests use the same class with their own home.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt_runtime.artifact_store import register_local_store
from dbt_runtime.project import REPO_ROOT, deployment_full_name, work_pool_name
from dbt_runtime.settings import env_name, environment_overlay, get_settings
from migration.source import REPOSITORY_ENV
from migration.work_pool import operator_job_template

DEFAULT_HOME = REPO_ROOT / ".local"


@contextlib.contextmanager
def prefect_api(api_url: str) -> Iterator[None]:
    """This process's Prefect client on `api_url` for the block.

    Prefect's process-wide event and log workers keep the API they started on whatever the
    settings say later: runs made here would report their task runs to another server (one
    that may have stopped). A process that talks to more than one server (a test session,
    `make run` after the bench) drains them on the way in, and on the way out, after they
    delivered what this API's runs emitted.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _drain_prefect_workers()
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        try:
            yield
        finally:
            _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Deliver what Prefect's event and log workers hold, then stop them (they restart on the
    next run, on the API of that moment). From a thread of its own: drain_all only returns an
    awaitable where an event loop runs (Playwright's sync API runs one in the test thread)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    def drain() -> None:
        for service in (EventsWorker, APILogWorker):
            service.drain_all(timeout=30)

    drainer = threading.Thread(target=drain, name="wg-drain-prefect-workers")
    drainer.start()
    drainer.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalStack:
    """A Prefect server + process worker rooted at `home`, talking only over loopback."""

    home: Path = DEFAULT_HOME
    port: int = field(default_factory=lambda: get_settings().prefect_port)
    repository: Path = REPO_ROOT
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_limit: int | None = None  # flow runs the worker runs at once (None: no limit)
    # What stop() ends, in order, by the PID files _spawn wrote.
    processes: tuple[str, ...] = ("worker", "server")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def warehouse(self) -> Path:
        """The DuckDB file of target `local`: outside any run's working dir, so it persists."""
        return self.home / "warehouse" / "local.duckdb"

    def env(self) -> dict[str, str]:
        """Environment for every Prefect command, worker and flow run of this stack."""
        env = dict(os.environ)
        # The server, worker and deploy serve every tenant; a run's tenant is its deployment's
        # (`--tenant` of `local run` chooses which deployment to run, not the stack's).
        env.pop(env_name("tenant"), None)
        env.update(
            PREFECT_HOME=str(self.home / "prefect"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_UI_URL=self.ui_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            WG_DUCKDB_PATH=str(self.warehouse),
            **{REPOSITORY_ENV: self.repository.resolve().as_uri()},
        )
        # The venv's bin first, so build steps' `python` and the worker's `prefect` are ours.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.extra_env)
        return env

    # -- processes -------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.home / "pids" / f"{name}.pid"

    def _running_pid(self, name: str) -> int | None:
        path = self._pid_file(name)
        if not path.exists():
            return None
        pid = int(path.read_text().strip() or 0)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            path.unlink(missing_ok=True)
            return None
        return pid

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        (self.home / "pids").mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - child owns it
        with _interruptible_children():
            proc = subprocess.Popen(
                argv,
                env={**self.env(), **(env or {})},
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends children too
            )
        self._pid_file(name).write_text(str(proc.pid))
        return proc.pid

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def start_server(self, timeout: float = 300) -> None:
        if self._running_pid("server") and self.healthy():
            return
        if self.healthy():
            raise RuntimeError(
                f"something else already serves {self.api_url}; stop it or set WG_PREFECT_PORT"
            )
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)
        prefect = str(Path(sys.executable).parent / "prefect")
        self._spawn(
            "server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self._running_pid("server"):
                raise RuntimeError(f"Prefect server exited; see {self.home / 'logs/server.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prefect server not healthy after {timeout}s")
            time.sleep(0.5)

    def start_worker(self) -> None:
        if self._running_pid("worker"):
            return
        prefect = str(Path(sys.executable).parent / "prefect")
        self._spawn(
            "worker",
            [prefect, "worker", "start", "--pool", work_pool_name(), "--type", "process"]
            + (["--limit", str(self.worker_limit)] if self.worker_limit else []),
            # Poll for runs every WG_WORKER_QUERY_SECONDS instead of Prefect's 10 s: an ad-hoc
            # run starts within a couple of seconds; each poll costs the server a write.
            {"PREFECT_WORKER_QUERY_SECONDS": str(get_settings().worker_query_seconds)},
        )

    def stop(self) -> list[str]:
        """Stop the worker, then the server (process groups, by PID). Returns what was stopped."""
        stopped = []
        for name in self.processes:
            pid = self._running_pid(name)
            if pid is None:
                continue
            _stop_group(pid)
            self._pid_file(name).unlink(missing_ok=True)
            stopped.append(f"{name} (pid {pid})")
        return stopped

    # -- Prefect commands --------------------------------------------------------------------

    def prefect(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the `prefect` CLI against this stack from the repository root."""
        prefect = str(Path(sys.executable).parent / "prefect")
        return subprocess.run(
            [prefect, *args],
            env=self.env(),
            cwd=self.repository,
            check=check,
            capture_output=True,
            text=True,
        )

    def ensure_pool(self) -> None:
        """Create the process work pool prefect.yaml names, unless it exists."""
        asyncio.run(self._ensure_pool())

    @property
    def artifacts(self) -> Path:
        """Where runs keep dbt's target/ files: outside the worker's per-run directories."""
        return self.home / "artifacts"

    def ensure_artifact_store(self) -> None:
        """Point the artifacts storage block (dbt_runtime/artifact_store.py) at `artifacts`."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            register_local_store(self.artifacts)

    async def _ensure_pool(self) -> None:
        from prefect.client.orchestration import PrefectClient
        from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
        from prefect.workers.process import ProcessWorker

        template = operator_job_template(ProcessWorker.get_default_base_job_template())
        async with PrefectClient(self.api_url) as client:
            try:
                pool = await client.read_work_pool(work_pool_name())
            except ObjectNotFound:
                with contextlib.suppress(ObjectAlreadyExists):
                    await client.create_work_pool(
                        WorkPoolCreate(
                            name=work_pool_name(), type="process", base_job_template=template
                        )
                    )
                return
            if pool.base_job_template != template:
                await client.update_work_pool(
                    work_pool_name(), WorkPoolUpdate(base_job_template=template)
                )

    def deploy(self) -> str:
        """`prefect --no-prompt deploy --all` from the real prefect.yaml."""
        done = self.prefect("--no-prompt", "deploy", "--all", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"prefect deploy failed:\n{done.stdout}\n{done.stderr}")
        # notifications.yaml -> automations; locally its Slack/e-mail blocks do not exist.
        notify = subprocess.run(
            [sys.executable, "-m", "migration", "notifications", "apply", "--allow-missing-blocks"],
            env=self.env(), cwd=REPO_ROOT, capture_output=True, text=True,
        )  # fmt: skip
        if notify.returncode != 0:
            raise RuntimeError(f"notifications apply failed:\n{notify.stdout}\n{notify.stderr}")
        return done.stdout + notify.stdout + notify.stderr  # stderr: blocks not registered


@contextlib.contextmanager
def _interruptible_children() -> Iterator[None]:
    """Children started inside get SIGINT's default action, even where this process ignores it.

    A worker stops on SIGTERM by sending itself SIGINT (Prefect's signal handlers), and an
    ignored SIGINT is inherited: started from a background job of a script (`make run &`,
    nohup, some CI runners), the worker ignored `make stop` and was killed 20 s later, its flow
    runs with it, unreported. A handler set here is reset to the default in a child at exec.
    """
    if (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_group(pid: int, timeout: float = 20) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers; reap the leader if it is ours."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):  # reap: a zombie would look alive
                os.waitpid(pid, os.WNOHANG)
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


# -- runs --------------------------------------------------------------------------------------


async def _trigger_and_follow(
    stack: LocalStack, parameters: dict[str, Any], timeout: float, out: Any
) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import LogSort
    from prefect.deployments import run_deployment

    flow_run = await run_deployment(  # type: ignore[misc]
        deployment_full_name(), parameters=parameters, timeout=0
    )
    print(
        f"flow run {flow_run.name} ({flow_run.id}): {stack.ui_url}/runs/flow-run/{flow_run.id}",
        file=out,
        flush=True,
    )
    seen = 0
    quiet_polls = 0
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(flow_run.id)
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])),
                sort=LogSort.TIMESTAMP_ASC,
                offset=seen,
            )
            for log in logs:
                print(f"  {log.timestamp:%H:%M:%S} {log.message}", file=out, flush=True)
            seen += len(logs)
            # The run's last log batches land after its final state: stop after 3 quiet polls.
            quiet_polls = 0 if logs else quiet_polls + 1
            if run.state and run.state.is_final() and quiet_polls >= 3:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run.id} not finished after {timeout}s")
            await asyncio.sleep(1)
        nodes = await _summary_counts(client, flow_run.id)
    return {
        "flow_run_id": str(flow_run.id),
        "state": run.state.name if run.state else "Unknown",
        "message": run.state.message if run.state else "",
        "nodes": nodes,
        "url": f"{stack.ui_url}/runs/flow-run/{flow_run.id}",
    }


async def _summary_counts(client: Any, flow_run_id: Any) -> dict[str, int]:
    """Nodes by dbt status, read from the run's summary artifact (one row per executed node).

    dbt's statuses, not task-run states: a skipped node reads as skipped.
    """
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    counts: dict[str, int] = {}
    for artifact in artifacts:
        if artifact.type != "table" or not str(artifact.key or "").startswith("dbt-summary-"):
            continue
        rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        for row in rows or []:
            counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
    return dict(sorted(counts.items()))


def trigger_run(
    stack: LocalStack, parameters: dict[str, Any], timeout: float = 900, out: Any = sys.stdout
) -> dict[str, Any]:
    """Start an ad-hoc run of the tenant's deployment (WG_TENANT, `--tenant`), stream its logs,
    return its final state."""

    # The stack's PREFECT_* for this call only: a caller that goes on (a test session) must not
    # keep talking to a stack that has since stopped. Prefect reads its settings when first
    # imported, maybe before this: point this process's client at the stack explicitly too.
    stack_env = {k: v for k, v in stack.env().items() if k.startswith("PREFECT_")}
    with environment_overlay(stack_env), prefect_api(stack.api_url):
        return asyncio.run(_trigger_and_follow(stack, parameters, timeout, out))


def run_main(parameters: dict[str, Any]) -> int:
    stack = LocalStack(port=get_settings().prefect_port)
    print(f"Prefect server: {stack.ui_url} (home {stack.home})", flush=True)
    stack.start_server()
    stack.ensure_pool()
    stack.ensure_artifact_store()
    print("Deploying prefect.yaml ...", flush=True)
    print(stack.deploy(), flush=True)
    stack.start_worker()
    result = trigger_run(stack, parameters)
    print(json.dumps(result, indent=2))
    total = sum(result["nodes"].values())
    print(f"{result['state']}: {total} dbt nodes {result['nodes']} -> {result['url']}")
    return 0 if result["state"] == "Completed" else 1


def stop_main() -> int:
    stack = LocalStack(port=get_settings().prefect_port)
    stopped = stack.stop()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "local", help="run the deployment on a local Prefect server + worker (make run / stop)"
    )
    parser.add_argument("action", choices=["run", "stop"])
    parser.add_argument(
        "--parameters",
        default='{"target": "local"}',
        help="JSON flow parameters of the ad-hoc run (default: %(default)s)",
    )
    parser.set_defaults(
        handler=lambda args: (
            stop_main() if args.action == "stop" else run_main(json.loads(args.parameters))
        )
    )
