"""dbt_runtime/guards.py without a server: limit names, run deadline, connection-error retries."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from dbt_runtime import guards
from dbt_runtime.failures import WarehouseProblem, warehouse_problem
from dbt_runtime.invocation import (
    InvalidParameter,
    NothingBuilt,
    NothingSelected,
    Target,
    build_invocation,
    require_selected_nodes,
)
from dbt_runtime.profiles import BlockRef, RunProfile
from dbt_runtime.project import Tenant

pytestmark = pytest.mark.reliability

ADDRESS = guards.WarehouseAddress(
    target="dev", account="wg12345.eu-west-1", user="DBT_DEV", host="127.0.0.1", port=9
)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_target_gets_its_own_single_slot_limit() -> None:
    names = guards.limit_names()
    assert len(set(names)) == len(Target)
    assert guards.limit_name("prod") == "dbt-williamgrant-target-prod"
    assert guards.SLOTS_PER_TARGET == 1
    with pytest.raises(ValueError):
        guards.limit_name("staging")


def test_each_tenant_gets_its_own_limits_named_after_its_deployment() -> None:
    shop = Tenant("dbt_shop", "shop", Path("/nowhere"), first=False)
    assert guards.limit_name(Target.local, shop) == "dbt-shop-target-local"
    assert not set(guards.limit_names(shop)) & set(guards.limit_names())
    assert set(guards.limit_names()) <= set(guards.all_limit_names())


def test_deadline_interrupts_a_blocking_call_and_names_the_timeout() -> None:
    before = signal.getsignal(signal.SIGALRM)  # pytest-timeout's alarm: must survive
    with pytest.raises(guards.RunTimedOut, match="timeout_seconds"):
        guards.run_with_deadline(lambda: time.sleep(60), 0.2, "dbt build stopped: timeout_seconds")
    assert signal.getsignal(signal.SIGALRM) is before
    assert (signal.getitimer(signal.ITIMER_REAL)[0] > 0) == callable(before)


def test_deadline_delivers_a_ctrl_c_so_dbt_cancels_its_queries() -> None:
    seen: list[BaseException] = []

    def dbt_like() -> None:
        try:
            time.sleep(60)
        except KeyboardInterrupt as exc:  # dbt's handler: cancel connections, write results
            seen.append(exc)
            raise

    with pytest.raises(guards.RunTimedOut):
        guards.run_with_deadline(dbt_like, 0.2, "stopped")
    assert seen and isinstance(seen[0], KeyboardInterrupt)


def test_deadline_returns_the_result_when_in_time() -> None:
    assert guards.run_with_deadline(lambda: 42, 30, "stopped") == 42
    # a later alarm of ours never goes off after we returned
    assert (
        signal.getitimer(signal.ITIMER_REAL)[0] == 0 or signal.getitimer(signal.ITIMER_REAL)[0] > 30
    )


def test_deadline_also_works_off_the_main_thread() -> None:
    outcome: list[BaseException] = []

    def busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)

    def worker() -> None:
        try:
            guards.run_with_deadline(busy, 0.2, "stopped off main")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert outcome and isinstance(outcome[0], guards.RunTimedOut)


def test_real_snowflake_connector_failure_is_a_transient_warehouse_problem() -> None:
    import snowflake.connector

    with pytest.raises(snowflake.connector.errors.OperationalError) as caught:
        snowflake.connector.connect(
            account="wg12345", user="DBT_DEV", password="not-a-secret",  # pragma: allowlist secret
            host="127.0.0.1", port=closed_port(), protocol="http",
            login_timeout=5, network_timeout=5,
        )  # fmt: skip
    wrapped = ValueError(f"Failed to invoke dbt command 'build': {caught.value}")
    assert warehouse_problem(wrapped) is WarehouseProblem.unreachable
    assert warehouse_problem(ValueError("Compilation Error in model stg_brands")) is None


def test_transient_connection_errors_are_retried_a_bounded_number_of_times() -> None:
    calls: list[int] = []
    pauses: list[float] = []
    logs: list[str] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("Connection refused")
        return "built"

    out = guards.with_connection_retries(
        flaky, ADDRESS, logs.append, delays=(1.0, 2.0), sleep=pauses.append
    )
    assert out == "built" and len(calls) == 3
    assert pauses == [1.0, 2.0]
    assert "attempt 1 of 3" in logs[0] and "DBT_DEV" in logs[0]


def test_an_unreachable_warehouse_ends_with_account_and_user_named() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        guards.probe(
            guards.WarehouseAddress("dev", "wg12345", "DBT_DEV", "127.0.0.1", closed_port())
        )

    with pytest.raises(guards.WarehouseUnreachable) as caught:
        guards.with_connection_retries(
            down, ADDRESS, lambda _: None, delays=(0, 0), sleep=lambda _: None
        )
    assert len(calls) == 3
    assert str(caught.value).startswith(
        "cannot connect to Snowflake account 'wg12345.eu-west-1' as user 'DBT_DEV'"
    )


def test_errors_that_are_not_about_the_connection_are_not_retried() -> None:
    calls: list[int] = []

    def broken_model() -> None:
        calls.append(1)
        raise ValueError("Database Error in model fct_shipments: invalid identifier 'QTY'")

    with pytest.raises(ValueError, match="invalid identifier"):
        guards.with_connection_retries(broken_model, ADDRESS, lambda _: None, sleep=lambda _: None)
    assert len(calls) == 1


def test_duckdb_targets_need_no_network_probe() -> None:
    import asyncio

    profile = RunProfile("wg", "local", {"type": "duckdb", "path": "x.duckdb"})
    assert asyncio.run(guards.warehouse_address(profile)) is None


def test_a_selector_that_matches_nothing_fails_instead_of_succeeding_silently() -> None:
    inv = build_invocation("build", "local", select=["fct_shipment"], exclude=["stg_budget"])
    with pytest.raises(NothingSelected, match="parameter 'select': 'fct_shipment'"):
        require_selected_nodes(inv, executed_nodes=0)
    require_selected_nodes(inv, executed_nodes=3)
    # a whole-project run that finds nothing built nothing: a broken project path, not green
    with pytest.raises(NothingBuilt, match="executed no node"):
        require_selected_nodes(build_invocation("build", "local"), executed_nodes=0)
    # commands that need not execute nodes (docs, freshness of no sources) stay as dbt says
    require_selected_nodes(build_invocation("docs generate", "local"), executed_nodes=0)


def test_undecodable_text_in_vars_is_refused_naming_vars() -> None:
    # b"\xff" read with errors="surrogateescape" -> what non-UTF-8 input becomes in Python
    bad = b"caf\xff".decode("utf-8", errors="surrogateescape")
    with pytest.raises(InvalidParameter, match=r"'vars'.*UTF-8"):
        build_invocation("build", "local", vars={"region": bad})
    with pytest.raises(InvalidParameter, match=r"'select'.*control"):
        build_invocation("build", "local", select=[f"stg_{bad}"])


def test_executed_node_count_reads_the_flow_result() -> None:
    assert guards.executed_node_count({"success": 3, "skipped": 1}) == 4
    assert guards.executed_node_count({}) == 0


def test_the_probe_address_follows_the_profiles_emulator_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    settings = {
        "type": "snowflake",
        "account": "wg12345",
        "user": "DBT_DEV",
        "host": "{{ env_var('WG_SNOWFLAKE_HOST', '') }}",
        "port": "{{ env_var('WG_SNOWFLAKE_PORT', '443') | as_number }}",
    }
    monkeypatch.delenv("WG_SNOWFLAKE_HOST", raising=False)
    monkeypatch.delenv("WG_SNOWFLAKE_PORT", raising=False)
    real = asyncio.run(guards.warehouse_address(RunProfile("wg", "dev", settings)))
    assert real is not None
    assert (real.host, real.port) == ("wg12345.snowflakecomputing.com", 443)
    monkeypatch.setenv("WG_SNOWFLAKE_HOST", "127.0.0.1")
    monkeypatch.setenv("WG_SNOWFLAKE_PORT", "8123")
    emulator = asyncio.run(guards.warehouse_address(RunProfile("wg", "dev", settings)))
    assert emulator is not None
    assert (emulator.host, emulator.port) == ("127.0.0.1", 8123)


def test_the_probe_address_comes_from_the_blocks_the_run_already_read() -> None:
    import asyncio

    creds = BlockRef("snowflake-credentials", "wg-dbt-dev")
    settings = {
        "type": "snowflake",
        "account": "{{ prefect.blocks.snowflake-credentials.wg-dbt-dev.account }}",
        "user": "{{ prefect.blocks.snowflake-credentials.wg-dbt-dev.user }}",
    }
    # No server in a unit test: a second read of the block would fail here.
    profile = RunProfile("wg", "dev", settings, {creds: {"account": "wg12345", "user": "DBT_DEV"}})
    address = asyncio.run(guards.warehouse_address(profile))
    assert address is not None
    assert address.who == "Snowflake account 'wg12345' as user 'DBT_DEV'"
    assert (address.host, address.port) == ("wg12345.snowflakecomputing.com", 443)


@pytest.mark.security
def test_a_runs_env_may_not_choose_code_project_or_paths() -> None:
    run_env = {
        "WG_DBT_PROJECT_DIR": "/tmp/x",
        "PYTHONPATH": "/tmp/y",
        "WG_PROGRESS_INTERVAL_SECONDS": "5",
        "WG_ARTIFACTS_BLOCK": "local-file-system/wg-dbt-artifacts",
    }
    deployment_env = {"WG_ARTIFACTS_BLOCK": "local-file-system/wg-dbt-artifacts"}
    assert guards.refused_run_env(run_env, deployment_env) == ["PYTHONPATH", "WG_DBT_PROJECT_DIR"]
