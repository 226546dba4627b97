"""Reliability on the real local server and real dbt: bad input stops before dbt, one run per
target at a time, the run timeout, a killed run, an unreachable warehouse."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime import artifact_store, guards, project
from dbt_runtime.invocation import Target
from dbt_runtime.profiles import ProfileError, run_profile
from dbt_runtime.settings import env_name, get_settings
from dbt_runtime.task_runs import recorded_task_runs
from migration.local_stack import LocalStack, free_port
from tests.integration.test_observability import copy_project
from tests.prefect_api import Outage, engine_pids

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ONE_SEED = "raw_brands"  # the cheapest real dbt node: a few rows of CSV


@pytest.fixture
def warehouse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stack: LocalStack) -> Path:
    """Runs in this process write their own DuckDB file (one writer per file)."""
    path = tmp_path / "williamgrant.duckdb"
    monkeypatch.setenv("WG_DUCKDB_PATH", str(path))
    return path


def run_flow(**parameters: Any) -> Any:
    """One real flow run (in this process, on the session server); returns its final state."""
    from flows.dbt_project import dbt_project

    return dbt_project(**parameters, return_state=True)


async def _task_runs(flow_run_id: Any) -> list[Any]:
    return await recorded_task_runs(str(flow_run_id))


async def _logged_since(since: datetime, text: str) -> bool:
    """Whether any run logged a line containing `text` since `since`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTimestamp
    from prefect.client.schemas.sorting import LogSort

    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=since)),
            sort=LogSort.TIMESTAMP_ASC,
            limit=200,
        )
    return any(text in log.message for log in logs)


async def _active_slots(target: Target) -> int:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(guards.limit_name(target))
        return int(limit.active_slots)


# -- bad input: Failed before dbt starts, naming the parameter ---------------------------------


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"vars": ["reporting_currency", "USD"]}, "vars: Input should be a valid dictionary"),
        ({"select": ["-x"]}, "parameter 'select': '-x' is not a dbt selector"),
        ({"exclude": ["stg_brands;touch /tmp/pwned"]}, "parameter 'exclude'"),
        ({"select": [" "]}, "parameter 'select': empty selector"),
        ({"command": "test", "full_refresh": True}, "`dbt test` has no --full-refresh"),
        ({"state": "/nonexistent/prod-manifest"}, "parameter 'state'"),
        ({"select": ["stg_brands\x1b[2J"]}, "parameter 'select': contains control characters"),
        ({"vars": {"blob": "x" * 100_000}}, "more than 65536"),
    ],
    ids=["vars-list", "leading-dash", "shell", "empty", "full-refresh", "state", "ctrl", "huge"],
)
def test_bad_input_fails_the_run_before_dbt_naming_the_parameter(
    warehouse: Path, parameters: dict[str, Any], expected: str
) -> None:
    state = run_flow(**{"target": "local", **parameters})
    assert state.is_failed()
    assert expected in state.message
    assert asyncio.run(_task_runs(state.state_details.flow_run_id)) == []  # no dbt node ran
    assert not warehouse.exists()  # dbt never opened the warehouse


def test_server_rejects_an_unknown_command_naming_the_allowed_ones(stack: LocalStack) -> None:
    done = stack.prefect(
        "deployment", "run", project.deployment_full_name(), "--param", "command=deploy",
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "'deploy' is not one of" in output, output
    assert all(f"'{c}'" in output for c in ("build", "run", "test", "seed")), output


def test_a_selector_matching_no_node_fails_the_run_with_a_clear_message(warehouse: Path) -> None:
    state = run_flow(target="local", command="build", select=["raw_brand"])
    assert state.is_failed()
    assert "parameter 'select': 'raw_brand' matches no enabled node" in state.message


def test_a_missing_block_for_the_target_fails_before_dbt_naming_the_script(
    stack: LocalStack,
) -> None:
    name = f"wg-missing-{uuid.uuid4().hex[:8]}"
    settings = {
        "type": "snowflake",
        "account": f"{{{{ prefect.blocks.snowflake-credentials.{name}.account }}}}",
    }
    # The flow reads its profile (and every block it references) before the guards run.
    with pytest.raises(ProfileError) as caught:
        asyncio.run(run_profile({"wg": {"outputs": {"dev": settings}}}, "wg", "dev"))
    assert f"block snowflake-credentials/{name} not found" in str(caught.value)
    assert "python -m blocks.register_snowflake --target dev" in str(caught.value)


# -- overlap -----------------------------------------------------------------------------------


def test_the_deploy_created_one_single_slot_limit_per_target(stack: LocalStack) -> None:
    from prefect.client.orchestration import get_client

    async def limits() -> dict[str, int]:
        async with get_client() as client:
            return {
                limit.name: limit.limit for limit in await client.read_global_concurrency_limits()
            }

    live = asyncio.run(limits())
    assert {name: live.get(name) for name in guards.limit_names()} == {
        name: 1 for name in guards.limit_names()
    }


def test_a_run_waits_for_its_target_and_times_out_naming_the_holder(warehouse: Path) -> None:
    with guards.target_slot(Target.local, wait_seconds=30):  # another run of target local
        state = run_flow(target="local", command="seed", select=[ONE_SEED], timeout_seconds=3)
    assert state.name == "TimedOut"
    assert guards.limit_name(Target.local) in state.message
    assert asyncio.run(_task_runs(state.state_details.flow_run_id)) == []
    assert asyncio.run(_active_slots(Target.local)) == 0


def test_another_target_busy_does_not_block_this_one(warehouse: Path) -> None:
    with guards.target_slot(Target.prod, wait_seconds=30):  # a prod build is running
        state = run_flow(target="local", command="seed", select=[ONE_SEED])
    assert state.is_completed(), state.message
    assert asyncio.run(_active_slots(Target.prod)) == 0


def test_the_slot_is_renewed_on_the_api_the_run_acquired_it_from(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's API may live only in its settings context (an in-process run, the tests); the
    renewing thread must use it, not Prefect's import-time settings, which here name a closed
    port (in CI they named no API at all: the thread started an ephemeral server of its own,
    where the lease does not exist, and the real lease would have lapsed under a long build)."""
    import prefect.context
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_URL

    closed = f"http://127.0.0.1:{free_port()}/api"
    import_time = prefect.context.GLOBAL_SETTINGS_CONTEXT
    monkeypatch.setattr(
        prefect.context,
        "GLOBAL_SETTINGS_CONTEXT",
        prefect.context.SettingsContext(
            profile=import_time.profile,
            settings=import_time.settings.copy_with_update(updates={PREFECT_API_URL: closed}),
        ),
    )
    renewed_at: list[str] = []
    renew = SyncPrefectClient.renew_concurrency_lease

    def spy(client: Any, *args: Any, **kwargs: Any) -> Any:
        renewed_at.append(str(client.api_url))
        return renew(client, *args, **kwargs)

    monkeypatch.setattr(SyncPrefectClient, "renew_concurrency_lease", spy)
    lease = get_settings().concurrency_lease_seconds
    monkeypatch.setattr(guards, "RENEWALS_PER_LEASE", lease / 0.05)  # a renewal every 0.05 s
    said: list[str] = []
    with guards.target_slot(Target.dev, wait_seconds=30, log=said.append):
        deadline = time.monotonic() + 30
        while len(renewed_at) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(renewed_at) >= 3, "the lease was not renewed"
    assert {url.rstrip("/") for url in renewed_at} == {stack.api_url}
    assert not [line for line in said if "could not renew" in line], said
    assert asyncio.run(_active_slots(Target.dev)) == 0


def _running_holder_of(target: Target) -> Any:
    """A Running flow run recorded as holding `target`'s slot; nothing renews or releases its
    lease, as when its process is killed."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease
    from prefect.states import Running

    @flow(name="wg-holder")
    def holder() -> None:  # pragma: no cover - never run: its flow run only holds a slot
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(holder, name=f"holder-{uuid.uuid4().hex[:6]}")
        client.set_flow_run_state(run.id, Running(), force=True)
    lease = acquire_concurrency_slots_with_lease(
        [guards.limit_name(target)], 1, timeout_seconds=10, lease_duration=60, strict=True
    )
    guards._record_holder(guards.limit_name(target), lease.lease_id, run.id, print)
    return run


def test_the_next_run_takes_back_a_slot_whose_holder_ended_but_not_one_still_running(
    stack: LocalStack,
) -> None:
    name = guards.limit_name(Target.prod)
    running = _running_holder_of(Target.prod)
    said: list[str] = []
    with (
        pytest.raises(guards.RunTimedOut, match=name),
        guards.target_slot(Target.prod, wait_seconds=2, log=said.append),
    ):
        pass
    assert not [line for line in said if "took back" in line], said
    # The same lease, its holder now Crashed (the worker saw its process die): taken back.
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(running.id, Crashed(), force=True)
    with guards.target_slot(Target.prod, wait_seconds=5, log=said.append):
        assert asyncio.run(_active_slots(Target.prod)) == 1  # this run's own slot, not two
    assert said == [
        f"took back {name!r} from flow run {running.id}, which ended Crashed without releasing it"
    ]
    assert asyncio.run(_active_slots(Target.prod)) == 0


def _wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def test_an_api_outage_during_a_run_keeps_its_slot_and_renewals_resume(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewer says it could not renew, keeps trying through the outage, and renews again
    once the API is back; all the while the target's single slot stays held by this run."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    renewed: list[float] = []
    renew = SyncPrefectClient.renew_concurrency_lease

    def spy(client: Any, *args: Any, **kwargs: Any) -> Any:
        result = renew(client, *args, **kwargs)
        renewed.append(time.monotonic())  # only renewals the server accepted
        return result

    monkeypatch.setattr(SyncPrefectClient, "renew_concurrency_lease", spy)
    lease = get_settings().concurrency_lease_seconds
    monkeypatch.setattr(guards, "RENEWALS_PER_LEASE", lease / 0.1)  # a renewal every 0.1 s
    outage, said = Outage(stack.port), []

    def held() -> int:  # read from the server directly, not through the outage
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            return asyncio.run(_active_slots(Target.dev))

    updates = {PREFECT_API_URL: outage.api_url, PREFECT_CLIENT_MAX_RETRIES: 0}
    try:
        with (
            temporary_settings(updates=updates),
            guards.target_slot(Target.dev, wait_seconds=30, log=said.append),
        ):
            _wait_until(lambda: renewed, "a first renewal")
            outage.cut()
            _wait_until(lambda: len([m for m in said if "could not renew" in m]) >= 3,
                        "three failed renewals reported")  # fmt: skip
            assert held() == 1  # read past the outage
            back = time.monotonic()
            outage.restore()
            _wait_until(lambda: renewed[-1] > back, "a renewal after the API came back")
            assert held() == 1
    finally:
        outage.close()
    assert "the slot stays held for about" in said[0], said
    assert held() == 0  # released on the way out


def _interval(logs: list[Any], start: str, end: str) -> tuple[datetime, datetime]:
    started = next(log.timestamp for log in logs if start in log.message)
    ended = next(log.timestamp for log in logs if end in log.message)
    return started, ended


async def _trigger_many(
    n: int, parameters: dict[str, Any], timeout: float, last_log: str = "released"
) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.deployments import run_deployment

    runs = await asyncio.gather(
        *(
            run_deployment(project.deployment_full_name(), parameters=parameters, timeout=0)  # type: ignore[misc]
            for _ in range(n)
        )
    )
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            states = [await client.read_flow_run(r.id) for r in runs]
            if all(s.state and s.state.is_final() for s in states):
                break
            assert time.monotonic() < deadline, [s.state.name for s in states if s.state]
            await asyncio.sleep(2)
        out = []
        for run in states:
            # A run's last log batches land after its final state: wait for its last line.
            while True:
                logs = await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                    sort=LogSort.TIMESTAMP_ASC,
                )
                if any(last_log in log.message for log in logs) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            out.append((run, logs, await _task_runs(run.id)))
        return out


def test_five_concurrent_triggers_never_run_dbt_at_the_same_time(stack: LocalStack) -> None:
    """Through the worker (no worker concurrency limit: all 5 start), one tiny seed each."""
    results = asyncio.run(
        _trigger_many(5, {"target": "local", "command": "seed", "select": [ONE_SEED]}, 900)
    )
    assert [run.state.name for run, _, _ in results] == ["Completed"] * 5, [
        (run.state.name, run.state.message) for run, _, _ in results
    ]
    holds = sorted(_interval(logs, "holding", "released") for _, logs, _ in results)
    for (_, previous_end), (next_start, _) in itertools.pairwise(holds):
        assert previous_end <= next_start, holds  # never two dbt executions for one target
    nodes = sorted((tr.start_time, tr.end_time) for _, _, task_runs in results for tr in task_runs)
    assert len(nodes) == 5
    for (_, previous_end), (next_start, _) in itertools.pairwise(nodes):
        assert previous_end <= next_start, nodes
    waited = [logs for _, logs, _ in results]
    assert all(any("waiting for concurrency limit" in log.message for log in run) for run in waited)


# -- timeout -----------------------------------------------------------------------------------


def test_the_run_timeout_stops_dbt_and_marks_the_run_timed_out(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the project with a model that outlasts the timeout on any machine: a warm,
    # fast machine built the whole project in under 3 s and the timeout then hit after dbt.
    project_copy = copy_project(tmp_path / "dbt_williamgrant")
    (project_copy / "models" / "zz_outlasts_the_timeout.py").write_text(
        "import time\n\n\ndef model(dbt, session):\n    time.sleep(30)\n"
        "    return session.sql('select 1 as id')\n"
    )
    monkeypatch.setenv(env_name("dbt_project_dir"), str(project_copy))
    get_settings.cache_clear()  # settings are read once per process: re-read this one
    state = run_flow(target="local", command="build", timeout_seconds=3)
    assert state.name == "TimedOut"
    assert "exceeded its timeout of 3 s (parameter timeout_seconds)" in state.message
    built = {tr.name: tr for tr in asyncio.run(_task_runs(state.state_details.flow_run_id))}
    slow = built.get("model zz_outlasts_the_timeout")
    assert slow is None or not slow.state.is_completed()  # stopped mid-way, not after dbt
    assert asyncio.run(_active_slots(Target.local)) == 0  # the slot is not leaked


# -- warehouse unreachable ---------------------------------------------------------------------


@contextlib.contextmanager
def snowflake_blocks(port: int) -> Iterator[dict[str, Any]]:
    """Real SnowflakeCredentials/Connector blocks with unique names, and a target's settings
    that reference them (as profiles.yml does) with the host pointed at `port`."""
    from prefect_snowflake import SnowflakeConnector, SnowflakeCredentials

    name = f"wg-reliability-{uuid.uuid4().hex[:8]}"
    credentials = SnowflakeCredentials(account="wg12345", user="DBT_DEV", password="not-real")
    credentials.save(name)
    SnowflakeConnector(
        credentials=credentials, database="WG_DEV", warehouse="WG_XS", schema="DBT"
    ).save(name)
    try:
        yield {
            "type": "snowflake",
            "account": f"{{{{ prefect.blocks.snowflake-credentials.{name}.account }}}}",
            "user": f"{{{{ prefect.blocks.snowflake-credentials.{name}.user }}}}",
            "host": "127.0.0.1",
            "port": port,
        }
    finally:
        for kind in ("snowflake-credentials", "snowflake-connector"):
            with contextlib.suppress(Exception):
                asyncio.run(_delete_block(kind, name))


async def _delete_block(kind: str, name: str) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        doc = await client.read_block_document_by_name(name, kind)
        await client.delete_block_document(doc.id)


def test_an_unreachable_warehouse_fails_fast_naming_account_and_user(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    monkeypatch.setattr(guards, "RETRY_DELAYS_SECONDS", (0.1, 0.1))
    logs: list[str] = []
    dbt_calls: list[int] = []
    with snowflake_blocks(closed) as settings, pytest.raises(guards.WarehouseUnreachable) as err:
        profile = asyncio.run(run_profile({"wg": {"outputs": {"dev": settings}}}, "wg", "dev"))
        guards.guarded_run(
            Target.dev, lambda: dbt_calls.append(1), 600, profile, "dbt build", logs.append
        )
    message = str(err.value)
    assert message.startswith("cannot connect to Snowflake account 'wg12345' as user 'DBT_DEV'")
    assert f"127.0.0.1:{closed}" in message and "after 3 attempts" in message
    assert dbt_calls == []  # dbt never started
    assert sum("retrying" in line for line in logs) == 2  # bounded: 2 retries, then give up
    assert asyncio.run(_active_slots(Target.dev)) == 0


# -- crash -------------------------------------------------------------------------------------


def test_a_killed_run_ends_crashed_frees_its_target_and_resumes_without_rebuilding(
    stack: LocalStack,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from dbt_runtime.resume import succeeded_nodes
    from dbt_runtime.task_runs import TASK_KEY_PREFIX

    async def scenario() -> Any:
        run = await run_deployment(  # type: ignore[misc]
            project.deployment_full_name(),
            parameters={"target": "local", "command": "build"},
            timeout=0,
        )
        async with get_client() as client:
            deadline = time.monotonic() + 600
            while True:  # wait until dbt has built some nodes, i.e. is mid-build
                done = [
                    tr for tr in await _task_runs(run.id) if tr.state and tr.state.is_completed()
                ]
                if len(done) >= 3:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.5)
            pids = engine_pids(str(run.id))
            assert pids, "flow-run process not found"
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            while True:
                live = await client.read_flow_run(run.id)
                if live.state and live.state.is_final():
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(1)
            # nothing released the dead run's slot: its lease still holds it
            assert await _active_slots(Target.local) == 1
            return live

    crashed = asyncio.run(scenario())
    assert crashed.state.name == "Crashed", crashed.state
    built = succeeded_nodes(asyncio.run(_task_runs(crashed.id)))
    assert built, "the crash came before any node finished: nothing to prove"
    # Resume it through the deployment, as an operator would: the next run of the target takes
    # the dead run's slot back at once (no waiting for its lease to lapse), and runs only what
    # the crashed run did not finish.
    resumed = asyncio.run(
        _trigger_many(
            1, {"target": "local", "command": "retry", "state": f"flow-run:{crashed.id}"}, 600
        )
    )
    ((run, logs, resumed_runs),) = resumed
    assert run.state.name == "Completed", run.state.message
    assert any(f"Resuming crashed flow run {crashed.id}" in log.message for log in logs)
    # The next run of target local took the dead run's slot back: this one, or a run of another
    # test file on the session server that asked first.
    took_back = (
        f"took back {guards.limit_name(Target.local)!r} from flow run {crashed.id}, which ended "
        "Crashed without releasing it"
    )
    assert asyncio.run(_logged_since(crashed.state.timestamp, took_back)), took_back
    rebuilt = {tr.task_key.removeprefix(f"{TASK_KEY_PREFIX}-") for tr in resumed_runs}
    assert rebuilt and not rebuilt & built, sorted(rebuilt & built)  # no successful node rebuilt
    store = artifact_store.load_store()  # the manifest the crashed run kept as dbt started
    manifest = json.loads(
        store.read_path(f"{artifact_store.run_key('local', str(crashed.id))}/manifest.json")
    )
    executable = {"model", "seed", "snapshot", "test", "unit_test"}
    every_node = {
        unique_id
        for unique_id, node in {**manifest["nodes"], **manifest["unit_tests"]}.items()
        if node["resource_type"] in executable
    }
    assert rebuilt | built == every_node, sorted(every_node - (rebuilt | built))
