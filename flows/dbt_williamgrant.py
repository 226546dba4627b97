"""The William Grant dbt project, orchestrated by Prefect.

Thin by design: typed parameters -> validated dbt argv -> prefect-dbt's PrefectDbtRunner
(a Prefect task run and logs per dbt node) -> a short result. Deployment, schedules and
per-schedule parameters live in prefect.yaml, not here.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

from flows.invocation import DbtCommand, DbtInvocation, Target, build_invocation
from flows.profiles import block_refs, check_blocks_exist, write_scoped_profiles

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIR = REPO_ROOT / "tenants" / "dbt_williamgrant"
PROFILE_NAME = "dbt_williamgrant"
FLOW_NAME = "dbt-williamgrant"


def node_counts(result: Any) -> dict[str, int]:
    """Nodes by dbt status ("success", "error", "skipped", "pass", "fail", "warn", ...)."""
    results = getattr(getattr(result, "result", None), "results", None) or []
    return dict(sorted(Counter(str(getattr(r.status, "value", r.status)) for r in results).items()))


def run_dbt(invocation: DbtInvocation, project_dir: Path = PROJECT_DIR) -> dict[str, int]:
    """Run one validated invocation through PrefectDbtRunner with a target-scoped profile."""
    logger = get_run_logger()
    with tempfile.TemporaryDirectory(prefix="wg-profiles-") as tmp:
        profiles_dir, target_settings = write_scoped_profiles(
            project_dir, PROFILE_NAME, invocation.target.value, Path(tmp)
        )
        run_coro_as_sync(check_blocks_exist(block_refs(target_settings), invocation.target.value))
        logger.info("Running %s in %s", invocation.label, project_dir)
        runner = PrefectDbtRunner(
            settings=PrefectDbtSettings(project_dir=project_dir, profiles_dir=profiles_dir),
            raise_on_failure=True,
        )
        result = runner.invoke(list(invocation.args))
    counts = node_counts(result)
    logger.info("%s finished: %s", invocation.label, counts or "no nodes executed")
    return counts


@flow(name=FLOW_NAME, log_prints=True)
def dbt_williamgrant(
    command: DbtCommand = DbtCommand.build,
    target: Target = Target.dev,
    select: list[str] = [],  # noqa: B006 - shown as the form's default; never mutated
    exclude: list[str] = [],  # noqa: B006
    vars: dict[str, Any] = {},  # noqa: A002, B006 - dbt's own name for it
    full_refresh: bool = False,
    state: str = "",
) -> dict[str, int]:
    """Run dbt for the William Grant project (tenants/dbt_williamgrant).

    Args:
        command: The dbt command to run; scheduled runs use `build`.
        target: The profiles.yml target: `dev` / `prod` (Snowflake), `local` (DuckDB).
        select: dbt selectors to include, e.g. `fct_shipments+` or `tag:finance`; empty: all.
        exclude: dbt selectors to leave out.
        vars: dbt project variables, e.g. {"reporting_currency": "USD"}.
        full_refresh: Rebuild incremental models and seeds from scratch (build/run/seed).
        state: Directory with a dbt manifest.json for state:modified selection / deferral.
    """
    invocation = build_invocation(
        command=command,
        target=target,
        select=select,
        exclude=exclude,
        vars=vars,
        full_refresh=full_refresh,
        state=state,
    )
    return run_dbt(invocation)
