"""A loopback dbt Cloud: the Admin API v2 endpoints our tooling calls, over real HTTPS.

prefect-dbt's `DbtCloudAdministrativeClient` always builds `https://{domain}/api/v2/accounts/N`,
so the fake serves TLS with a throwaway self-signed certificate for 127.0.0.1. The client is used
unmodified: point `DbtCloudCredentials(domain=server.domain)` at it and let the client trust the
certificate through the standard `SSL_CERT_FILE` variable (`server.client_env()`), the same knob an
operator behind a TLS-inspecting proxy uses.

Usage (the test owns the lifecycle):

    server = FakeDbtCloud(tmp_path).start()
    try:
        server.add_job(JOB, execute_steps=["dbt seed", "dbt run"])
        server.add_run(JOB, steps=[{"manifest.json": {...}, "run_results.json": {...}}, {...}])
        server.inject(500, method="GET", path="/runs/", times=1)   # one transient 5xx
        server.fail_on_post(2, status=503)                         # the 2nd POST fails
        ...
    finally:
        server.stop()

Endpoints (all under /api/v2/accounts/{account_id}):
    GET  /runs/?job_definition_id=&status=&order_by=&offset=&limit=&include_related=
    GET  /runs/{id}/?include_related=["run_steps"]
    GET  /runs/{id}/artifacts/?step=N            list of artifact paths for step N (default: last)
    GET  /runs/{id}/artifacts/{path}?step=N      the artifact's bytes
    GET  /jobs/  GET /jobs/{id}/  POST /jobs/{id}/ (update: merges the body into the job)
Wrong bearer token -> 401; unknown account/job/run/artifact -> 404, like dbt Cloud.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# dbt Cloud run status codes (Admin API v2).
QUEUED, STARTING, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 2, 3, 10, 20, 30
STATUS_HUMANIZED = {
    1: "Queued",
    2: "Starting",
    3: "Running",
    10: "Success",
    20: "Error",
    30: "Cancelled",
}

# dbt Cloud prepends these to every run before the job's execute_steps; artifact `?step=N`
# indexes count them, which is why the client must map steps by name, not by position.
PRELUDE_STEPS = [
    "Clone git repository",
    "Create profile from connection Snowflake",
    "Invoke dbt with `dbt deps`",
]


@dataclass
class Fault:
    """Answer matching requests with `status` instead of serving them."""

    status: int
    method: str | None = None  # None: any method
    path: str | None = None  # substring of the path after /api/v2/accounts/{id}; None: any
    times: int | None = None  # None: forever
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and (
            self.path is None or self.path in path
        )


@dataclass
class Request:
    method: str
    path: str  # after /api/v2/accounts/{id}
    query: dict[str, list[str]]
    body: Any
    status: int = 0


@dataclass
class _Run:
    data: dict[str, Any]
    steps: list[dict[str, Any]]  # run_steps, prelude included
    artifacts: dict[int, dict[str, bytes]]  # step index -> path -> content


@dataclass
class FakeDbtCloud:
    """One dbt Cloud account on 127.0.0.1. `start()` returns self; the test calls `stop()`."""

    workdir: Path
    account_id: int = 70403103900001
    api_token: str = "dbtc_loopback_test_token"
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    runs: dict[int, _Run] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    post_failures: dict[int, int] = field(default_factory=dict)  # nth POST -> status
    _posts: int = 0
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeDbtCloud:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = _self_signed_certificate(self.workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "call start() first"
        return int(self._httpd.server_address[1])

    @property
    def domain(self) -> str:
        """What `DbtCloudCredentials.domain` must be to reach this server."""
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "dbt-cloud-fake-cert.pem"

    def client_env(self) -> dict[str, str]:
        """Environment a client process needs to trust the fake's certificate."""
        return {"SSL_CERT_FILE": str(self.ca_file)}

    # ---- seeding ---------------------------------------------------------------------------
    def add_job(self, job_id: int, *, execute_steps: list[str], **fields: Any) -> dict[str, Any]:
        job: dict[str, Any] = {
            "id": job_id,
            "account_id": self.account_id,
            "project_id": 70403103910001,
            "environment_id": 70403103920001,
            "name": f"job {job_id}",
            "execute_steps": list(execute_steps),
            "settings": {"threads": 4, "target_name": "prod"},
            "triggers": {"github_webhook": False, "schedule": True, "on_merge": False},
            "schedule": {"cron": "0 5 * * *"},
            "state": 1,
            "generate_docs": False,
            "run_generate_sources": False,
        }
        job.update(fields)
        with self._lock:
            self.jobs[job_id] = job
        return job

    def add_run(
        self,
        job_id: int,
        *,
        steps: list[dict[str, Any]],
        run_id: int | None = None,
        status: int = SUCCESS,
        step_statuses: list[int] | None = None,
        finished_at: dt.datetime | None = None,
    ) -> int:
        """A run of `job_id`; `steps[i]` maps artifact path -> JSON object (or bytes) for the
        job's i-th execute step. Returns the run id."""
        job = self.jobs[job_id]
        commands = job["execute_steps"]
        if len(steps) != len(commands):
            raise ValueError(f"job {job_id} has {len(commands)} execute_steps, got {len(steps)}")
        with self._lock:
            run_id = run_id or (max(self.runs, default=100) + 1)
            finished = finished_at or (
                dt.datetime(2026, 11, 1, 5, tzinfo=dt.UTC) + dt.timedelta(hours=run_id)
            )
            statuses = step_statuses or [status] * len(commands)
            run_steps = [
                {"index": i + 1, "name": name, "status": SUCCESS, "status_humanized": "Success"}
                for i, name in enumerate(PRELUDE_STEPS)
            ]
            artifacts: dict[int, dict[str, bytes]] = {}
            for command, step_status, files in zip(commands, statuses, steps, strict=True):
                index = len(run_steps) + 1
                run_steps.append(
                    {
                        "index": index,
                        "name": f"Invoke dbt with `{command}`",
                        "status": step_status,
                        "status_humanized": STATUS_HUMANIZED[step_status],
                    }
                )
                artifacts[index] = {
                    path: content if isinstance(content, bytes) else json.dumps(content).encode()
                    for path, content in files.items()
                }
            self.runs[run_id] = _Run(
                data={
                    "id": run_id,
                    "account_id": self.account_id,
                    "job_definition_id": job_id,
                    "job_id": job_id,
                    "status": status,
                    "status_humanized": STATUS_HUMANIZED[status],
                    "created_at": (finished - dt.timedelta(minutes=10)).isoformat(),
                    "finished_at": finished.isoformat(),
                    "git_sha": "0" * 40,
                    "is_complete": status >= SUCCESS,
                    "href": f"https://cloud.getdbt.com/deploy/{self.account_id}/runs/{run_id}",
                },
                steps=run_steps,
                artifacts=artifacts,
            )
        return run_id

    # ---- faults ----------------------------------------------------------------------------
    def inject(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
    ) -> Fault:
        """Answer requests matching method/path-substring with `status` (`times` times)."""
        fault = Fault(status=status, method=method, path=path, times=times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def fail_on_post(self, nth: int, status: int = 500) -> None:
        """The nth POST received from now on (1-based, counting all POSTs) fails with `status`."""
        with self._lock:
            self.post_failures[self._posts + nth] = status

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()
            self.post_failures.clear()

    # ---- request handling ------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return _error(400, "Request body is not JSON.")
        prefix = f"/api/v2/accounts/{self.account_id}"
        path = parts.path[len(prefix) :] if parts.path.startswith(prefix) else parts.path
        record = Request(method=method, path=path, query=query, body=payload)
        with self._lock:
            self.requests.append(record)
            status, response, ctype = self._route(
                method, parts.path, prefix, path, query, headers, payload
            )
            record.status = status
        return status, response, ctype

    def _route(
        self,
        method: str,
        full_path: str,
        prefix: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        payload: Any,
    ) -> tuple[int, bytes, str]:
        if method == "POST":
            self._posts += 1
            if self._posts in self.post_failures:
                return _error(self.post_failures.pop(self._posts), "Injected failure on POST.")
        for fault in self.faults:
            if fault.matches(method, path):
                fault.hits += 1
                return _error(fault.status, f"Injected fault {fault.status}.")
        if headers.get("authorization") != f"Bearer {self.api_token}":
            return _error(401, "Invalid token.")
        if not full_path.startswith(prefix + "/"):
            return _error(404, "Account not found.")

        if method == "GET" and path == "/runs/":
            return self._list_runs(query)
        if method == "GET" and path == "/jobs/":
            return _ok(list(self.jobs.values()))
        if m := re.fullmatch(r"/jobs/(\d+)/", path):
            job = self.jobs.get(int(m[1]))
            if job is None:
                return _error(404, f"Job {m[1]} not found.")
            if method == "POST":
                if not isinstance(payload, dict):
                    return _error(400, "Job update needs a JSON object.")
                job.update({k: v for k, v in payload.items() if k != "id"})
            return _ok(job)
        if m := re.fullmatch(r"/runs/(\d+)/(artifacts/(.*))?", path):
            run = self.runs.get(int(m[1]))
            if run is None:
                return _error(404, f"Run {m[1]} not found.")
            if m[2] is None:
                data = dict(run.data)
                if "run_steps" in json.dumps(query.get("include_related", [])):
                    data["run_steps"] = run.steps
                return _ok(data)
            step = int(query["step"][0]) if "step" in query else max(run.artifacts)
            files = run.artifacts.get(step)
            if files is None:
                return _error(404, f"Step {step} of run {m[1]} has no artifacts.")
            if not m[3]:
                return _ok(sorted(files))
            if m[3] not in files:
                return _error(404, f"Artifact {m[3]} not found for step {step} of run {m[1]}.")
            return 200, files[m[3]], "application/json"
        return _error(404, f"No such endpoint: {method} {path}")

    def _list_runs(self, query: dict[str, list[str]]) -> tuple[int, bytes, str]:
        def first(name: str) -> str | None:
            return query[name][0] if name in query else None

        runs = [r.data for r in self.runs.values()]
        if (job := first("job_definition_id")) is not None:
            runs = [r for r in runs if str(r["job_definition_id"]) == job]
        if (status := first("status")) is not None:
            runs = [r for r in runs if str(r["status"]) == status]
        order_by = first("order_by") or "id"
        key = order_by.lstrip("-")
        runs.sort(key=lambda r: r[key], reverse=order_by.startswith("-"))
        offset = int(first("offset") or 0)
        limit = min(int(first("limit") or 100), 100)  # dbt Cloud caps pages at 100
        page = runs[offset : offset + limit]
        extra = {
            "filters": {k: v[0] for k, v in query.items()},
            "order_by": order_by,
            "pagination": {"count": len(page), "total_count": len(runs)},
        }
        return _ok(page, extra=extra)


def _ok(data: Any, extra: dict[str, Any] | None = None) -> tuple[int, bytes, str]:
    body: dict[str, Any] = {
        "status": {
            "code": 200,
            "is_success": True,
            "user_message": "Success!",
            "developer_message": "",
        },
        "data": data,
    }
    if extra is not None:
        body["extra"] = extra
    return 200, json.dumps(body).encode(), "application/json"


def _error(code: int, message: str) -> tuple[int, bytes, str]:
    body = {
        "status": {
            "code": code,
            "is_success": False,
            "user_message": message,
            "developer_message": "",
        },
        "data": None,
    }
    return code, json.dumps(body).encode(), "application/json"


def _handler_for(server: FakeDbtCloud) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, ctype = server.handle(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler


def _self_signed_certificate(workdir: Path) -> tuple[Path, Path]:
    """A CA-flagged self-signed certificate for 127.0.0.1 (trusted via SSL_CERT_FILE)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = workdir / "dbt-cloud-fake-cert.pem", workdir / "dbt-cloud-fake-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbt-cloud-fake")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
