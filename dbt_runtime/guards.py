"""What keeps a dbt run safe to schedule: one run per target at a time, a run timeout, and a
clear, bounded answer when the warehouse cannot be reached.

- Overlap: each tenant's `dbt_runtime.invocation.Target` has a Prefect global concurrency limit
  of ONE slot (`limit_name`: `dbt-<tenant's deployment>-target-<target>`); tenants never wait on
  each other. A run holds its target's slot while dbt executes; a second run for the same
  target WAITS (within its own timeout) rather than being cancelled, so a schedule that fires
  during a long ad-hoc run still builds afterwards. dev and prod have separate limits and run
  side by side. The limits are created by the deploy (prefect.yaml's build step
  `migration.deploy_steps.concurrency`; by hand: ENSURE_COMMAND); a missing limit fails the run
  instead of silently not limiting.
  A slot is a lease (`WG_CONCURRENCY_LEASE_SECONDS`) renewed by the run, which records it in
  the Prefect variable `<limit name>-holder` (`holder_variable`). When a run's process is killed
  nothing releases its slot: the next run of the target takes it back at once if Prefect has
  already marked the holder Crashed (or any final state); otherwise the lease lapses and the
  server frees the slot within the lease plus its reaper interval (15 s).
- Timeout: the flow parameter `timeout_seconds` (default invocation.DEFAULT_TIMEOUT_SECONDS)
  bounds the whole run, waiting for the slot included. Prefect's `@flow(timeout_seconds=...)`
  is fixed at import time, so the flow applies the parameter itself: at the deadline dbt
  receives the same interrupt as Ctrl-C (it cancels its open warehouse queries and writes
  run_results.json), and the flow raises `RunTimedOut`, which Prefect records as a Failed state
  named "TimedOut".
- Warehouse: before dbt starts, a Snowflake target's host is probed over TCP (bounded, retried
  a few times: network blips are transient); a dbt failure that the one warehouse-error
  classifier (`failures.warehouse_problem`) calls transient is retried the same bounded number
  of times. Either way the final error says which account and user could not be reached.
  Refused credentials or a lock are not retried: the run fails with that reason.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from dbt_runtime.failures import warehouse_problem
from dbt_runtime.invocation import MAX_TIMEOUT_SECONDS, InvalidParameter, Target
from dbt_runtime.profiles import (
    BlockField,
    RunProfile,
    VariableRef,
    block_field_value,
    reference,
)
from dbt_runtime.project import Tenant, tenant, tenants
from dbt_runtime.settings import RUN_ENV_ALLOWED, get_settings

SLOTS_PER_TARGET = 1
# The slot's lease (settings.concurrency_lease_seconds) is renewed RENEWALS_PER_LEASE times per
# lease, so an API outage of all but the last renewal keeps the slot, while a killed run's slot is
# free again within a lease + the server's 15 s reaper.
RENEWALS_PER_LEASE = 6
# Transient warehouse errors: attempts in total, and the pause before the 2nd, 3rd, ... attempt.
CONNECT_ATTEMPTS = 3
RETRY_DELAYS_SECONDS = (5.0, 15.0)
CONNECT_TIMEOUT_SECONDS = 10.0
SNOWFLAKE_DOMAIN = "snowflakecomputing.com"
ENSURE_COMMAND = "python -m migration concurrency ensure"


class ConcurrencyNotConfigured(RuntimeError):
    """The target's global concurrency limit does not exist on this Prefect server."""


class RunTimedOut(TimeoutError):
    """The run exceeded `timeout_seconds`; Prefect records a TimedOut state with this message."""


class WarehouseUnreachable(ConnectionError):
    """The warehouse of a target could not be reached after the bounded retries."""


class _StopDbt(KeyboardInterrupt):
    """Delivered to dbt at the deadline: dbt treats it like Ctrl-C and cancels its queries."""


# -- a run's own environment ------------------------------------------------------------------


class RefusedJobVariable(PermissionError):
    """A run's `env` job variable sets what only the deployment may set."""


def refused_run_env(run_env: Mapping[str, Any], deployment_env: Mapping[str, Any]) -> list[str]:
    """The keys of a run's `env` job variable a run may not set: anything outside
    RUN_ENV_ALLOWED that differs from what the deployment itself sets."""
    return sorted(
        key
        for key, value in run_env.items()
        if key not in RUN_ENV_ALLOWED and deployment_env.get(key) != value
    )


def refuse_run_environment(flow_run_id: UUID | str | None) -> None:
    """Fail a run whose `env` job variable chooses code, the project or paths (WG_DBT_PROJECT_DIR,
    DBT_*, PYTHONPATH, ...): those come from the deployment and the worker, never from a run."""
    if flow_run_id is None:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(flow_run_id)))
        run_env = dict((run.job_variables or {}).get("env") or {})
        if not run_env:
            return
        deployment_env: dict[str, Any] = {}
        if run.deployment_id is not None:
            deployment = client.read_deployment(run.deployment_id)
            deployment_env = dict((deployment.job_variables or {}).get("env") or {})
    refused = refused_run_env(run_env, deployment_env)
    if refused:
        raise RefusedJobVariable(
            f"job variable 'env': a run may not set {', '.join(refused)} (it chooses code, the "
            "project or paths: the deployment and the worker set those); a run's env may set "
            f"only {', '.join(sorted(RUN_ENV_ALLOWED))} (runbook/secrets.md)"
        )


# -- per-target concurrency --------------------------------------------------------------------


def limit_name(target: Target | str, of: Tenant | None = None) -> str:
    """The global concurrency limit guarding one tenant's target (default: this process's
    tenant), named after its deployment: `dbt-<deployment>-target-<target>`."""
    return f"dbt-{(of or tenant()).deployment}-target-{Target(target).value}"


def limit_names(of: Tenant | None = None) -> list[str]:
    """One tenant's limits (default: this process's tenant)."""
    return [limit_name(t, of) for t in Target]


def all_limit_names() -> list[str]:
    """Every tenant's limits: what the deploy creates."""
    return [name for t in tenants() for name in limit_names(t)]


@dataclass(frozen=True)
class LimitChange:
    name: str
    action: str  # "created", "updated" or "unchanged"


async def ensure_limits() -> list[LimitChange]:
    """Create (or repair) one single-slot global concurrency limit per tenant and target.
    Idempotent."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    changes: list[LimitChange] = []
    async with get_client() as client:
        for name in all_limit_names():
            try:
                live = await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=SLOTS_PER_TARGET, active=True)
                )
                changes.append(LimitChange(name, "created"))
                continue
            if live.limit != SLOTS_PER_TARGET or not live.active:
                await client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(limit=SLOTS_PER_TARGET, active=True)
                )
                changes.append(LimitChange(name, "updated"))
            else:
                changes.append(LimitChange(name, "unchanged"))
    return changes


def _acquisition_error(name: str, target: Target, exc: BaseException) -> Exception:
    """What went wrong while asking for the slot, as what it is: a missing limit names the
    command that creates it; anything else (a 5xx, the API unreachable) says so."""
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    status = getattr(response, "status_code", None)
    if status is None and "must be created before acquiring" in str(exc):
        return ConcurrencyNotConfigured(
            f"global concurrency limit {name!r} does not exist, so runs for target "
            f"{target.value!r} could overlap: run `{ENSURE_COMMAND}` (`prefect deploy` runs it)"
        )
    if status == 404:
        return ConcurrencyNotConfigured(
            f"global concurrency limit {name!r} not found (HTTP 404): run `{ENSURE_COMMAND}`"
        )
    why = f"HTTP {status}" if status is not None else f"{type(cause or exc).__name__}"
    return SlotUnavailable(
        f"could not acquire concurrency limit {name!r} for target {target.value!r}: the Prefect "
        f"API failed ({why}: {_first_line(cause or exc)}); nothing ran, start the run again"
    )


class SlotUnavailable(RuntimeError):
    """The Prefect API failed while the run asked for its target's slot (not a missing limit)."""


def holder_variable(name: str) -> str:
    """The Prefect variable naming the flow run (and lease) that last took limit `name`."""
    return f"{name}-holder"


def _take_back_from_an_ended_holder(name: str, log: Callable[[str], None]) -> None:
    """Release the slot of limit `name` if the flow run recorded as holding it has ended (a
    killed process: Crashed) while its lease still stands. Anything unexpected leaves the slot
    alone: it then frees itself when the lease lapses."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            variable = client.read_variable_by_name(holder_variable(name))
            record = variable.value if variable else None
            if not isinstance(record, dict):
                return
            lease_id, run_id = UUID(str(record["lease_id"])), UUID(str(record["flow_run_id"]))
            try:
                run = client.read_flow_run(run_id)
            except ObjectNotFound:
                ended = "was deleted"
            else:
                if run.state is None or not run.state.is_final():
                    return  # still running: it holds the slot by right
                ended = f"ended {run.state.name}"
            try:  # the lease still stands (410: released or lapsed already)?
                client.renew_concurrency_lease(lease_id=lease_id, lease_duration=60)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 410:
                    return
                raise
            client.release_concurrency_slots_with_lease(lease_id)
    except Exception as exc:
        log(
            f"could not check who holds {name!r} ({_first_line(exc)}); a killed run's slot "
            "frees itself when its lease lapses"
        )
        return
    log(f"took back {name!r} from flow run {run_id}, which {ended} without releasing it")


def _record_holder(
    name: str, lease_id: UUID, flow_run_id: UUID, log: Callable[[str], None]
) -> None:
    """Record this run and its lease in holder_variable(name), for the next run's take-back."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    value = {"flow_run_id": str(flow_run_id), "lease_id": str(lease_id)}
    try:
        with get_client(sync_client=True) as client:
            try:
                client.update_variable(VariableUpdate(name=holder_variable(name), value=value))
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
                client.create_variable(VariableCreate(name=holder_variable(name), value=value))
    except Exception as exc:
        log(
            f"could not record this run as the holder of {name!r} ({_first_line(exc)}); if "
            "it is killed, its slot frees itself when its lease lapses"
        )


def _keep_lease(
    lease_id: UUID, lease_seconds: float, stop: threading.Event, log: Callable[[str], None]
) -> None:
    """Renew the lease RENEWALS_PER_LEASE times per lease until `stop`; a failed renewal (API
    outage) is retried on the same beat, never abandoned while the lease may still be valid."""
    from prefect.client.orchestration import get_client

    failing_since: float | None = None
    with get_client(sync_client=True) as client:
        while not stop.wait(lease_seconds / RENEWALS_PER_LEASE):
            try:
                client.renew_concurrency_lease(lease_id=lease_id, lease_duration=lease_seconds)
            except Exception as exc:
                failing_since = failing_since or time.monotonic()
                left = lease_seconds - (time.monotonic() - failing_since)
                log(
                    f"could not renew the concurrency lease ({_first_line(exc)}); retrying, "
                    f"the slot stays held for about {max(left, 0):.0f} s more"
                )
            else:
                failing_since = None


@contextlib.contextmanager
def target_slot(
    target: Target,
    wait_seconds: float,
    flow_run_id: UUID | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Iterator[None]:
    """Hold the target's single slot; wait at most `wait_seconds` for it (then RunTimedOut).

    The slot is a lease of `concurrency_lease_seconds` (settings) renewed RENEWALS_PER_LEASE
    times per lease by this process: a short API outage (up to all but one renewal) does not lose
    it. A run with a `flow_run_id` records itself as the holder; a killed holder's slot is taken
    back by the next run once Prefect shows it ended, else freed by the server a lease (+ its
    reaper's 15 s) after the last renewal.
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency._sync import (
        acquire_concurrency_slots_with_lease,
        release_concurrency_slots_with_lease,
    )

    name = limit_name(target)
    lease_seconds = get_settings().concurrency_lease_seconds
    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run_id) if flow_run_id else None
    _take_back_from_an_ended_holder(name, log)
    try:
        response = acquire_concurrency_slots_with_lease(
            [name],
            1,
            timeout_seconds=max(wait_seconds, 1.0),
            lease_duration=lease_seconds,
            strict=True,
            holder=holder,
        )
    except ConcurrencySlotAcquisitionError as exc:
        raise _acquisition_error(name, target, exc) from exc
    except TimeoutError as exc:
        raise RunTimedOut(
            f"waited {wait_seconds:.0f} s (the run's timeout_seconds) for target "
            f"{target.value!r}: another run still holds concurrency limit {name!r}"
        ) from exc
    if flow_run_id is not None:
        _record_holder(name, response.lease_id, flow_run_id, log)
    stop = threading.Event()
    # In a copy of this context: the renewals go to the API this run acquired from (a thread
    # starts with Prefect's import-time settings, which may name no API or another one).
    renewer = threading.Thread(
        target=contextvars.copy_context().run,
        args=(_keep_lease, response.lease_id, lease_seconds, stop, log),
        name="wg-lease",
        daemon=True,
    )
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=5)
        try:
            release_concurrency_slots_with_lease(response.lease_id)
        except Exception as exc:  # the lease lapses on its own within lease_seconds
            log(f"could not release {name!r} ({_first_line(exc)}); it frees itself")


# -- run timeout -------------------------------------------------------------------------------


REINTERRUPT_SECONDS = 5.0  # dbt's own Ctrl-C clean-up (cancel connections) takes less


def run_with_deadline[T](fn: Callable[[], T], seconds: float, message: str) -> T:
    """Run `fn`; after `seconds`, interrupt it like Ctrl-C and raise RunTimedOut(message).

    In the main thread (how the worker runs a flow) SIGALRM interrupts even blocking waits;
    elsewhere a watchdog thread raises the interrupt in the calling thread.
    """
    fired = threading.Event()
    caller = threading.current_thread()
    disarm: Callable[[], None]
    if caller is threading.main_thread():
        # Nest with an alarm someone else armed (Prefect's flow timeout, pytest-timeout): fire
        # theirs at its time, ours at ours, and hand theirs back when done.
        start = time.monotonic()
        previous = signal.getsignal(signal.SIGALRM)
        previous_left = signal.getitimer(signal.ITIMER_REAL)[0]
        previous_at = start + previous_left if previous_left else None
        ours_at = start + max(seconds, 0.001)

        def on_alarm(signum: int, frame: Any) -> None:
            now = time.monotonic()
            if now < ours_at and previous_at is not None and now >= previous_at:
                signal.setitimer(signal.ITIMER_REAL, ours_at - now)
                if callable(previous):
                    previous(signum, frame)
                return
            fired.set()
            # Again every REINTERRUPT_SECONDS until dbt has stopped (disarm): an interrupt that
            # lands in a finalizer or in code that swallows it is lost, and dbt ran on (CI).
            signal.setitimer(signal.ITIMER_REAL, REINTERRUPT_SECONDS)
            raise _StopDbt()

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, min(ours_at, previous_at or ours_at) - start)

        def disarm() -> None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if previous_at is not None and previous_at > time.monotonic():
                signal.setitimer(signal.ITIMER_REAL, previous_at - time.monotonic())
    else:
        from prefect._internal.concurrency.cancellation import _send_exception_to_thread

        stopped = threading.Event()

        def interrupt() -> None:
            fired.set()
            while True:  # again until dbt has stopped, as above
                _send_exception_to_thread(caller, _StopDbt)
                if stopped.wait(REINTERRUPT_SECONDS):
                    return

        timer = threading.Timer(max(seconds, 0.001), interrupt)
        timer.daemon = True
        timer.start()

        def disarm() -> None:
            stopped.set()
            timer.cancel()

    try:
        try:
            result = fn()
        finally:
            disarm()
    except BaseException as exc:
        if fired.is_set():
            raise RunTimedOut(message) from exc
        raise
    if fired.is_set():  # dbt swallowed the interrupt and reported a failure: still a timeout
        raise RunTimedOut(message)
    return result


# -- warehouse reachability --------------------------------------------------------------------

_ENV_VAR = re.compile(  # env_var('NAME', 'default'), optionally piped through a filter
    r"""^\{\{\s*env_var\(\s*['"](\w+)['"]\s*(?:,\s*['"]([^'"]*)['"])?\s*\)"""
    r"""\s*(?:\|\s*\w+\s*)*\}\}$"""
)
# Only connection facts are resolved here; secrets stay with prefect-dbt.
_ADDRESS_FIELDS = ("account", "user", "host", "port")


@dataclass(frozen=True)
class WarehouseAddress:
    """Where a Snowflake target connects, and as whom (no secrets)."""

    target: str
    account: str
    user: str
    host: str
    port: int

    @property
    def who(self) -> str:
        return f"Snowflake account {self.account!r} as user {self.user!r}"


async def _resolve(value: Any, profile: RunProfile) -> Any:
    """One profiles.yml value with its block/variable/env reference replaced (non-secret use).

    Block fields come from the blocks the run's profile already read, not from the server."""
    if not isinstance(value, str):
        return value
    ref = reference(value)
    if isinstance(ref, BlockField):
        with contextlib.suppress(KeyError):
            return block_field_value(profile.blocks.get(ref.block, {}), ref.field)
        return None
    if isinstance(ref, VariableRef):
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            variable = await client.read_variable_by_name(ref.name)
        return variable.value if variable else None
    if m := _ENV_VAR.match(value):
        return os.environ.get(m.group(1), m.group(2))
    return value


async def warehouse_address(profile: RunProfile) -> WarehouseAddress | None:
    """The address a Snowflake target's dbt connection will use; None for other warehouses."""
    settings = profile.settings
    if settings.get("type") != "snowflake":
        return None
    target = profile.target
    resolved = {k: await _resolve(settings.get(k), profile) for k in _ADDRESS_FIELDS}
    account = str(resolved["account"] or "")
    host = resolved["host"] or f"{account}.{SNOWFLAKE_DOMAIN}"
    return WarehouseAddress(
        target=target,
        account=account,
        user=str(resolved["user"] or ""),
        host=str(host),
        port=int(resolved["port"]) if str(resolved["port"] or "").isdigit() else 443,
    )


def with_connection_retries[T](
    fn: Callable[[], T],
    address: WarehouseAddress | None,
    log: Callable[[str], None],
    delays: tuple[float, ...] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`, retrying transient warehouse errors (failures.warehouse_problem: the same
    classifier that reports them) len(delays) times; other errors pass through.

    The last transient error becomes WarehouseUnreachable naming the account and user.
    """
    delays = RETRY_DELAYS_SECONDS if delays is None else delays
    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except Exception as exc:
            problem = warehouse_problem(exc)
            if address is None or problem is None or not problem.transient:
                raise
            if attempt == len(delays):
                raise WarehouseUnreachable(
                    f"cannot connect to {address.who} (target {address.target!r}, "
                    f"{address.host}:{address.port}) after {attempt + 1} attempts: "
                    f"{_first_line(exc)}. Check the network path and the "
                    f"snowflake-credentials/connector blocks of target {address.target!r}."
                ) from exc
            log(
                f"cannot connect to {address.who} (attempt {attempt + 1} of "
                f"{len(delays) + 1}): {_first_line(exc)}; retrying in {delays[attempt]:.0f} s"
            )
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def probe(address: WarehouseAddress, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Open (and close) a TCP connection to the warehouse: fails fast instead of hanging in dbt."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return
    except OSError as exc:
        raise ConnectionError(f"{address.host}:{address.port}: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# -- the guarded run ---------------------------------------------------------------------------


def executed_node_count(result: Any) -> int:
    """Nodes dbt executed, from the flow's result (counts by status, or an object with them)."""
    counts = result if isinstance(result, Mapping) else getattr(result, "counts", None)
    if isinstance(counts, Mapping):
        return sum(int(v) for v in counts.values() if isinstance(v, int))
    return 1  # unknown shape: never turn a run into a failure on a guess


def guarded_run[T](
    target: Target,
    run: Callable[[], T],
    timeout_seconds: float,
    profile: RunProfile,
    what: str,
    log: Callable[[str], None],
    flow_run_id: UUID | None = None,
) -> T:
    """Run dbt for `target` within the run's timeout, alone on its target, retrying only
    transient connection errors; a Snowflake target's warehouse is probed before anything
    waits. `profile` (`profiles.run_profile`) has already checked that its blocks exist."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    if not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise InvalidParameter(
            f"parameter 'timeout_seconds': {timeout_seconds!r} is not between 1 and "
            f"{MAX_TIMEOUT_SECONDS} (24 hours)"
        )
    started = time.monotonic()

    def remaining() -> float:
        return timeout_seconds - (time.monotonic() - started)

    address = run_coro_as_sync(warehouse_address(profile))
    if address is not None:
        with_connection_retries(lambda: probe(address), address, log)
    log(f"waiting for concurrency limit {limit_name(target)!r} (one run per target at a time)")
    with target_slot(target, remaining(), flow_run_id, log):
        log(f"holding {limit_name(target)!r}; {what} has {remaining():.0f} s left of its timeout")
        try:
            return run_with_deadline(
                lambda: with_connection_retries(run, address, log),
                remaining(),
                f"{what} stopped: the run exceeded its timeout of {timeout_seconds:.0f} s "
                "(parameter timeout_seconds)",
            )
        finally:
            log(f"released {limit_name(target)!r}")
