"""A tenant's dbt project, orchestrated by Prefect: the flow and its parameters.

The same flow for every tenant: each prefect.yaml deployment fixes the tenant it builds (its env's
WG_TENANT; dbt_runtime/project.py), never a parameter, so a Custom run cannot change it.

Typed parameters -> validated dbt argv (dbt_runtime/invocation.py) -> one run per target within
the run timeout (dbt_runtime/guards.py) -> dbt through prefect-dbt's runner with a task run per
node, kept artifacts and a summary (dbt_runtime/run.py). A scheduled run first checks that it
builds what prefect.yaml declares for its schedule (dbt_runtime/schedule_guard.py). Deployment,
schedules and per-schedule parameters live in prefect.yaml, not here.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import State
from pydantic import Field

from dbt_runtime import guards, notify, schedule_guard
from dbt_runtime.invocation import (
    DEFAULT_TIMEOUT_SECONDS,
    MAX_TIMEOUT_SECONDS,
    DbtCommand,
    Target,
    build_invocation,
)
from dbt_runtime.project import FLOW_NAME
from dbt_runtime.resume import KeptRunStates


@flow(name=FLOW_NAME, log_prints=True, flow_run_name=notify.run_name)
def dbt_project(
    # The UI forms' labels: Prefect titles a parameter with its name unless json_schema_extra
    # says otherwise; descriptions come from the docstring below.
    command: Annotated[DbtCommand, Field(json_schema_extra={"title": "dbt command"})] = (
        DbtCommand.build
    ),
    target: Annotated[Target, Field(json_schema_extra={"title": "Target (--target)"})] = Target.dev,
    select: Annotated[list[str], Field(json_schema_extra={"title": "Select (--select)"})] = [],  # noqa: B006 - the form's default; never mutated
    exclude: Annotated[list[str], Field(json_schema_extra={"title": "Exclude (--exclude)"})] = [],  # noqa: B006
    vars: Annotated[  # noqa: A002 - dbt's own name for it
        dict[str, Any], Field(json_schema_extra={"title": "Vars (--vars, JSON)"})
    ] = {},  # noqa: B006
    full_refresh: Annotated[bool, Field(json_schema_extra={"title": "Full refresh"})] = False,
    state: Annotated[str, Field(json_schema_extra={"title": "State (--state)"})] = "",
    timeout_seconds: Annotated[
        int,
        Field(gt=0, le=MAX_TIMEOUT_SECONDS, json_schema_extra={"title": "Timeout (seconds)"}),
    ] = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, int] | State:
    """Run dbt for the deployment's tenant (its dbt project under tenants/).

    Args:
        command: The dbt command to run; scheduled runs use `build`.
        target: The profiles.yml target: `dev` / `prod` (Snowflake), `local` (DuckDB).
        select: dbt selectors to include, e.g. `fct_shipments+` or `tag:finance`; empty: all.
        exclude: dbt selectors to leave out.
        vars: dbt project variables, e.g. {"reporting_currency": "USD"}.
        full_refresh: Rebuild incremental models and seeds from scratch (build/run/seed).
        state: For state:modified selection / deferral: a directory with a manifest.json, or a
            kept run: `prod:last-success`, `prod:last-failure`, `flow-run:<id>`. With
            command=retry: the flow run whose failed and skipped nodes to re-run (for a
            Crashed run: everything it did not finish).
        timeout_seconds: Stop dbt and end the run TimedOut after this long (default 3 hours,
            at most 86400 = 24 hours), waiting for another run of the same target included.
    """
    # A Custom run's `env` job variable may not choose code, project, paths or the tenant.
    guards.refuse_run_environment(flow_run.id)
    # A scheduled run builds what prefect.yaml declares for its schedule.
    if (declared := schedule_guard.enforce_declared_parameters(locals())) is not None:
        return dbt_project.fn(**declared)
    invocation = build_invocation(
        command=command,
        target=target,
        select=select,
        exclude=exclude,
        vars=vars,
        full_refresh=full_refresh,
        state=state,
        kept_runs=KeptRunStates(),
    )
    # Imported here, after the checks above: it imports dbt and prefect-dbt (+3.5 s of CPU per
    # flow run measured with `python -X importtime` here), which a run refused for its
    # parameters or its environment never needs, so it fails that much sooner.
    from dbt_runtime.run import run_flow

    # The profile and its blocks once, then one run per target at a time within
    # timeout_seconds, transient connection errors retried (dbt_runtime/run.py).
    return run_flow(invocation, timeout_seconds)
