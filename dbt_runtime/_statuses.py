"""dbt's node status vocabulary, taken from dbt's own enums: the one place that names a status.

run_results.json, dbt's node events and the summary all carry `NodeStatus` values
(`dbt.artifacts.schemas.results`); the sets derived here say what a status means to this
project. Everything else asks `dbt_statuses()` instead of spelling "error" or "skipped".

dbt's enum module imports dbt's whole node graph (+2.3 s measured with `python -X importtime`),
and operator commands (`python -m migration --help`, `artifacts`, `parity`) import the modules
that classify statuses without ever running dbt. So dbt is imported on first use, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# dbt 1.12 (state-aware orchestration) reports a node whose relation is current as `reused`;
# dbt 1.11 has no enum member for it yet, and artifacts from dbt Cloud may already carry it.
REUSED = "reused"


@dataclass(frozen=True)
class DbtStatuses:
    """dbt's node statuses as plain strings (how run_results.json and dbt's events carry them)."""

    success: str
    passed: str
    fail: str
    warn: str
    skipped: str
    failed: frozenset[str]
    """The node did not do its job and dbt exits non-zero (dbt/task/runnable.py
    `interpret_results`): error, fail, runtime error, partial success."""
    ok: frozenset[str]
    """Built or passed: success, pass, no-op, reused, and warn (dbt exits 0 on warnings)."""


@cache
def dbt_statuses() -> DbtStatuses:
    """The vocabulary, read from dbt's enums on first use."""
    # Function-level import: start-up time of the operator CLI (see the module docstring).
    from dbt.artifacts.schemas.results import NodeStatus

    return DbtStatuses(
        success=NodeStatus.Success.value,
        passed=NodeStatus.Pass.value,
        fail=NodeStatus.Fail.value,
        warn=NodeStatus.Warn.value,
        skipped=NodeStatus.Skipped.value,
        failed=frozenset(
            s.value
            for s in (
                NodeStatus.Error,
                NodeStatus.Fail,
                NodeStatus.RuntimeErr,
                NodeStatus.PartialSuccess,
            )
        ),
        ok=frozenset(
            s.value for s in (NodeStatus.Success, NodeStatus.Pass, NodeStatus.NoOp, NodeStatus.Warn)
        )
        | {REUSED},
    )


@cache
def retryable_statuses() -> frozenset[str]:
    """What `dbt retry` re-runs, from dbt's retry task itself (dbt/task/retry.py)."""
    # Function-level import: dbt's retry task imports every dbt task (+1.5 s over the enums);
    # only a flow-level retry asks, and it is about to run `dbt retry` anyway.
    from dbt.artifacts.schemas.results import NodeStatus
    from dbt.task.retry import RETRYABLE_STATUSES

    # dbt adds `warn` to its module-level set, in-process, when a retry runs with
    # --warn-error; our retries never pass that flag, so a warning is never retried here.
    return frozenset(s.value for s in RETRYABLE_STATUSES if s != NodeStatus.Warn)
