"""The Snowflake half of the product, offline: the real dbt-snowflake adapter, run by the flow
(target dev) with blocks registered by `python -m blocks.register_snowflake`, against the
fakesnow emulator (`python -m fakesnow -s`) on 127.0.0.1.

Between the connector and fakesnow sits a loopback proxy that records each login request, so
the tests can see what Snowflake would have received (user, role, password or key-pair JWT):
fakesnow itself accepts any credentials. profiles.yml reaches the proxy through
WG_SNOWFLAKE_HOST/PORT/PROTOCOL, which production never sets.

Scope, honestly: stock fakesnow 0.12.1 runs a FIRST `dbt build` of this project (seeds, views,
tables, ephemeral, the first incremental and the first snapshot, data tests). A second
incremental or snapshot pass does not work on it (TEMPORARY tables with a database prefix, MERGE
inside a transaction), and dbt unit tests error on it (the fixture rows' casts), so the build
here excludes `test_type:unit` and no test runs a second pass; those are proven on DuckDB
(target local) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from dbt_runtime.project import REPO_ROOT, tenants
from dbt_runtime.settings import env_name, get_settings
from flows.dbt_project import dbt_project
from migration.local_stack import LocalStack, free_port

# William Grant's project: prefect.yaml's first tenant (not tenant(): settings are read
# per test, and a module-level read would cache them before a fixture sets WG_* variables).
PROJECT_DIR = tenants()[0].project_dir

PROJECT_DIR_ENV = env_name("dbt_project_dir")
pytestmark = [pytest.mark.integration, pytest.mark.snowflake]

# What fakesnow cannot run (see the module docstring).
UNSUPPORTED = ["test_type:unit"]
DEV_BLOCKS = (("snowflake-credentials", "wg-dbt-dev"), ("snowflake-connector", "wg-dbt-dev"))
# Obviously fake identities; the emulator accepts anything.
DEV_IDENTITY = {
    "WG_SNOWFLAKE_DEV_ACCOUNT": "fake-account",
    "WG_SNOWFLAKE_DEV_USER": "WG_DBT_DEV",
    "WG_SNOWFLAKE_DEV_ROLE": "WG_DBT_DEV_ROLE",
    "WG_SNOWFLAKE_DEV_WAREHOUSE": "WG_DEV_WH",
    "WG_SNOWFLAKE_DEV_SCHEMA": "ANALYTICS",
}


# -- the emulator and the login recorder ----------------------------------------------------


@dataclass(frozen=True)
class Login:
    """One login request as Snowflake would receive it."""

    user: str
    role: str
    database: str
    authenticator: str
    password: str | None = field(repr=False)
    token: str | None = field(repr=False)


class _Forward(BaseHTTPRequestHandler):
    """Pass every request through to fakesnow; remember login requests."""

    protocol_version = "HTTP/1.1"
    server: _RecordingProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the test output is the place for failures, not request lines

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        if url.path.endswith("/login-request"):
            self.server.record(url.query, body, self.headers.get("Content-Encoding"))
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=300)
        hop = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in hop:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward


class _RecordingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream_port = upstream_port
        self.logins: list[Login] = []
        self._lock = threading.Lock()

    def record(self, query: str, body: bytes, encoding: str | None) -> None:
        data = json.loads(gzip.decompress(body) if encoding == "gzip" else body)["data"]
        params = {k: v[0] for k, v in parse_qs(query).items()}
        with self._lock:
            self.logins.append(
                Login(
                    user=str(data.get("LOGIN_NAME")),
                    role=str(params.get("roleName")),
                    database=str(params.get("databaseName")),
                    authenticator=str(data.get("AUTHENTICATOR", "SNOWFLAKE")),
                    password=data.get("PASSWORD"),
                    token=data.get("TOKEN"),
                )
            )


@dataclass
class Emulator:
    """fakesnow on 127.0.0.1 (a subprocess) behind the recording proxy (a thread)."""

    fakesnow_port: int
    proxy: _RecordingProxy

    @property
    def logins(self) -> list[Login]:
        return list(self.proxy.logins)

    def profile_env(self) -> dict[str, str]:
        """What points profiles.yml's host/port/protocol at the emulator (via the proxy)."""
        return {
            "WG_SNOWFLAKE_HOST": "127.0.0.1",
            "WG_SNOWFLAKE_PORT": str(self.proxy.server_address[1]),
            "WG_SNOWFLAKE_PROTOCOL": "http",
        }

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        """Read what dbt wrote, straight from fakesnow (not through the proxy)."""
        import snowflake.connector

        with snowflake.connector.connect(
            account="fake-account", user="reader", password="unused",  # pragma: allowlist secret
            host="127.0.0.1", port=self.fakesnow_port, protocol="http", database=database,
        ) as con:  # fmt: skip
            return list(con.cursor().execute(sql).fetchall())


def _wait_for_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fakesnow exited ({proc.returncode}); see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"fakesnow not listening on 127.0.0.1:{port} after {timeout}s; see {log}")


@contextlib.contextmanager
def running_emulator(log_dir: Path) -> Iterator[Emulator]:
    """Start fakesnow (in-memory) and the proxy; stop both, fakesnow by its PID."""
    port = free_port()
    log = log_dir / "fakesnow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    proxy = _RecordingProxy(port)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    try:
        _wait_for_port(port, proc, log)
        thread.start()
        yield Emulator(fakesnow_port=port, proxy=proxy)
    finally:
        if thread.is_alive():
            proxy.shutdown()
        proxy.server_close()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


# -- blocks, runs ---------------------------------------------------------------------------


def dev_inputs(database: str, **secrets: str) -> dict[str, str]:
    """The script's environment for target dev: fake identity, `database`, the given secret."""
    return {**DEV_IDENTITY, "WG_SNOWFLAKE_DEV_DATABASE": database, **secrets}


def register_dev(env: Mapping[str, str]) -> None:
    """Register the dev blocks the way an operator does: the script, secrets in env only."""
    from blocks.register_snowflake import main

    assert main(["--target", "dev"], env=env) == 0


async def _delete_blocks(blocks: tuple[tuple[str, str], ...]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        for block_type, name in blocks:
            try:
                doc = await client.read_block_document_by_name(name, block_type)
            except ObjectNotFound:
                continue
            await client.delete_block_document(doc.id)


def delete_dev_blocks() -> None:
    asyncio.run(_delete_blocks(DEV_BLOCKS))


def copy_project(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*")
    return Path(shutil.copytree(PROJECT_DIR, dest, ignore=ignore))


def run_dev_flow(
    project: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, **params: Any
) -> Any:
    """One in-process flow run on target dev (a real flow run on the session's server).

    prefect-dbt hands each resolved block field to dbt through os.environ and leaves it there
    (a worker's flow-run process exits); here they are removed so no secret outlives the run.
    """
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project))
    for key, value in emulator.profile_env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()  # settings are read once per process: re-read these
    with resolved_values_removed():
        return dbt_project(target="dev", return_state=True, **params)


@contextlib.contextmanager
def resolved_values_removed() -> Iterator[None]:
    """Remove the PREFECT_BLOCKS_* variables prefect-dbt sets while resolving profiles.yml."""
    before = set(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - before:
            if key.startswith("PREFECT_BLOCKS_"):
                del os.environ[key]


def flow_run_id(state: Any) -> str:
    return str(state.state_details.flow_run_id)


# -- the first build ------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    state: Any
    logins: list[Login]
    database: str
    public_key_pem: bytes


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(tmp_path_factory.mktemp("fakesnow")) as running:
        yield running


@pytest.fixture(scope="module")
def key_pair_build(
    stack: LocalStack, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Build]:
    """Blocks registered by the script run as a subprocess (key-pair auth, encrypted key in
    the environment), then a full `dbt build --target dev` through the flow."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = "fake-passphrase-for-tests"  # pragma: allowlist secret
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    database = "WG_DEV_BUILD"
    env = {
        **stack.env(),
        **dev_inputs(
            database,
            WG_SNOWFLAKE_DEV_PRIVATE_KEY=pem,
            WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE=passphrase,
        ),
    }
    done = subprocess.run(
        [sys.executable, "-m", "blocks.register_snowflake", "--target", "dev"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "key-pair auth" in done.stdout
    project = copy_project(tmp_path_factory.mktemp("build") / "dbt_williamgrant")
    seen = len(emulator.logins)
    try:
        with pytest.MonkeyPatch.context() as mp:
            state = run_dev_flow(project, emulator, mp, command="build", exclude=UNSUPPORTED)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        yield Build(state, emulator.logins[seen:], database, public)
    finally:
        delete_dev_blocks()


def test_first_dbt_build_on_dev_completes_through_the_flow(key_pair_build: Build) -> None:
    state = key_pair_build.state
    assert state.is_completed(), state.message
    counts = state.result()
    assert counts.get("error", 0) == 0 and counts.get("fail", 0) == 0, counts
    assert counts.get("success", 0) > 0 and counts.get("pass", 0) > 0, counts


def test_dbt_build_landed_every_layer_in_the_dev_database(
    key_pair_build: Build, emulator: Emulator
) -> None:
    db = key_pair_build.database
    seed_rows = sum(1 for _ in (PROJECT_DIR / "seeds" / "raw_brands.csv").open()) - 1

    def count(relation: str) -> int:
        return int(emulator.query(db, f"select count(*) from {db}.{relation}")[0][0])

    assert count("raw.raw_brands") == seed_rows  # seed
    assert count("staging.stg_brands") == seed_rows  # view
    assert count("marts.dim_brand") == seed_rows  # table
    assert count("marts.fct_depletions") > 0  # incremental, first pass
    assert count("snapshots.snap_price_list") == count("staging.stg_price_list")  # snapshot


def test_connection_authenticated_with_the_registered_key_pair(key_pair_build: Build) -> None:
    """Every login of the run was a JWT signed by the key the script registered."""
    import jwt

    logins = key_pair_build.logins
    assert logins, "the run never logged in to the emulator"
    for login in logins:
        assert (login.user, login.role, login.database) == (
            "WG_DBT_DEV",
            "WG_DBT_DEV_ROLE",
            "WG_DEV_BUILD",
        )
        assert login.authenticator == "SNOWFLAKE_JWT" and login.password is None
        assert login.token is not None
        # Signature checked; expiry not (the JWT lives 60 s, the build takes longer).
        claims = jwt.decode(
            login.token,
            key_pair_build.public_key_pem,
            algorithms=["RS256"],
            options={"verify_exp": False},
        )
        assert claims["sub"] == "FAKE-ACCOUNT.WG_DBT_DEV"


def test_check_mode_runs_dbt_debug_with_the_registered_blocks(
    stack: LocalStack, emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:  # fmt: skip
    from blocks.register_snowflake import main

    for key, value in emulator.profile_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(copy_project(tmp_path / "dbt_williamgrant")))
    delete_dev_blocks()
    assert main(["--target", "dev", "--check"]) == 1
    err = capsys.readouterr().err  # the failure is an error: on stderr
    assert "register them: python -m blocks.register_snowflake --target dev" in err
    password = "fake-password-for-check"  # pragma: allowlist secret
    register_dev(dev_inputs("WG_DEV_CHECK", WG_SNOWFLAKE_DEV_PASSWORD=password))
    try:
        seen = len(emulator.logins)
        with resolved_values_removed():
            assert main(["--target", "dev", "--check"]) == 0
        out = capsys.readouterr().out
        assert "password auth" in out and "dbt debug --target dev: OK" in out
        assert [login.password for login in emulator.logins[seen:]] == [password]
    finally:
        delete_dev_blocks()
