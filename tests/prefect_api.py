"""Reading what a flow run left on the Prefect server, the way the UI shows it.

A run's last log batches reach the server after the run's final state (Prefect ships logs in
the background), so a test that reads logs waits until the line it expects is there, with a
deadline: never a fixed sleep, never a single read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prefect.utilities.asyncutils import run_coro_as_sync

LOG_PAGE = 200  # the server's maximum logs per read


def api_client(api_url: str = "") -> httpx.Client:
    """Plain HTTP to the server, with the retries Prefect's own clients make.

    The local server runs on SQLite: a write that loses a race with another one (the worker,
    the scheduler, a run's events) is answered 503 Service Unavailable, which Prefect's clients
    retry. A test calling the API itself retries the same way, or it fails on the race instead
    of on what it checks.
    """
    from prefect.client.base import PrefectHttpxSyncClient

    return PrefectHttpxSyncClient(base_url=api_url, timeout=30, raise_on_all_errors=False)


def api_request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request through `api_client` (an absolute URL under the server's /api)."""
    with api_client() as client:
        return client.request(method, url, **kwargs)


async def read_flow_run_logs(flow_run_id: str) -> list[Any]:
    """Every log record of a flow run (its task runs' included), oldest first, all pages."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    logs: list[Any] = []
    async with get_client() as client:
        while batch := await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            sort=LogSort.TIMESTAMP_ASC,
            offset=len(logs),
            limit=LOG_PAGE,
        ):
            logs += batch
            if len(batch) < LOG_PAGE:
                break
    return logs


def wait_for_logs(flow_run_id: str, until: str, timeout: float = 60.0) -> list[Any]:
    """The run's log records once one of them contains `until` (its last expected line).

    Fails naming the line and showing the newest records when it does not arrive in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        # Also from inside a running event loop (Playwright's sync API runs one).
        logs = run_coro_as_sync(read_flow_run_logs(flow_run_id))
        if any(until in log.message for log in logs):
            return logs
        if time.monotonic() > deadline:
            tail = "\n".join(log.message for log in logs[-15:])
            raise AssertionError(
                f"flow run {flow_run_id}: no log line containing {until!r} after {timeout:.0f} s; "
                f"newest lines:\n{tail}"
            )
        time.sleep(0.5)


def log_text(logs: list[Any]) -> str:
    return "\n".join(log.message for log in logs)


def engine_pids(flow_run_id: str) -> list[int]:
    """PIDs of the process(es) executing this flow run (children of a worker), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environ and b"prefect" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


class Outage:
    """A TCP forwarder on 127.0.0.1 in front of the session's server that can go down (open
    connections are cut, new ones are closed at once) and come back on the same port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self.open: set[socket.socket] = set()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.down.set()
        for sock in list(self.open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.open.clear()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()
