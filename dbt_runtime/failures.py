"""Why a run failed, in one glance: the class of failure and the failed nodes' first error line.

Pure functions: the flow turns their message into its final Failed state, so on-call reads the
reason in the run list, not in a stack trace. Expected dbt failures (a model's SQL, a test, a
missing block, a bad parameter) never produce a traceback; only unexpected ones do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from dbt_runtime.invocation import InvalidParameter
from dbt_runtime.profiles import ProfileError
from dbt_runtime.summary import NodeRow, RunSummary, first_error_line

MAX_LISTED = 10


class FailureKind(StrEnum):
    """What kind of problem stopped the run, i.e. who fixes it and how."""

    bad_parameter = "bad parameter"
    """A flow parameter dbt cannot run with: fix the parameters and run again."""
    configuration = "configuration"
    """A missing Prefect block / profile target: register it (blocks/), then run again."""
    compile_error = "compile error"
    """dbt could not parse or compile the project (Jinja, ref to a missing node, YAML)."""
    warehouse_error = "warehouse/connection error"
    """The warehouse could not be reached or refused the credentials / lock: often transient."""
    model_error = "model error"
    """A model, seed or snapshot failed in the warehouse (its SQL): fix the model."""
    test_failure = "test failure"
    """Data or unit tests failed: the data (or the test) needs a look."""
    dbt_error = "dbt error"
    """Anything else dbt reported."""


# Messages that mean "could not talk to the warehouse", not "the SQL is wrong".
_WAREHOUSE = re.compile(
    r"could not connect|failed to connect|connection (refused|reset|timed out|error)"
    r"|incorrect username or password|authentication|jwt token|\b250001\b|\b390100\b"
    r"|could not set lock|conflicting lock|network is unreachable|name or service not known"
    r"|timed out|warehouse .* (suspended|does not exist)",
    re.IGNORECASE,
)
_COMPILE = re.compile(r"compilation error|parsing error|jinja", re.IGNORECASE)
_BUILDS_DATA = ("model", "seed", "snapshot")


@dataclass(frozen=True)
class Failure:
    """A failed run, ready to become the flow's final state message."""

    kind: FailureKind
    label: str
    failed: tuple[NodeRow, ...] = ()
    skipped: int = 0
    detail: str = ""

    def message(self, hint: str = "") -> str:
        """Headline, then one line per failed node (`unique_id: first error line`)."""
        what = f"{len(self.failed)} failed" if self.failed else "no node results"
        if self.skipped:
            what += f", {self.skipped} skipped"
        lines = [f"{self.label} failed: {self.kind.value} ({what})"]
        if self.detail:
            lines.append(f"  {self.detail}")
        for row in self.failed[:MAX_LISTED]:
            lines.append(f"  {row.unique_id}: {row.message or row.status}")
        if len(self.failed) > MAX_LISTED:
            lines.append(f"  ... and {len(self.failed) - MAX_LISTED} more (see the summary)")
        if hint:
            lines.append(hint)
        return "\n".join(lines)


def classify_nodes(failed: tuple[NodeRow, ...]) -> FailureKind:
    """The kind of a run whose nodes failed; the most upstream cause wins."""
    messages = [row.message for row in failed]
    if any(_WAREHOUSE.search(m) for m in messages):
        return FailureKind.warehouse_error
    if any(_COMPILE.search(m) for m in messages):
        return FailureKind.compile_error
    if any(row.type in _BUILDS_DATA for row in failed):
        return FailureKind.model_error
    if any(row.type in ("test", "unit_test") for row in failed):
        return FailureKind.test_failure
    return FailureKind.dbt_error


def classify_error(exc: BaseException) -> FailureKind:
    """The kind of an error raised before or instead of node results."""
    if isinstance(exc, InvalidParameter):
        return FailureKind.bad_parameter
    if isinstance(exc, ProfileError):
        return FailureKind.configuration
    text = str(exc)
    if _WAREHOUSE.search(text):
        return FailureKind.warehouse_error
    if _COMPILE.search(text):
        return FailureKind.compile_error
    return FailureKind.dbt_error


def error_detail(exc: BaseException) -> str:
    """The informative line of an exception (prefect-dbt wraps dbt's in 'Failed to invoke...')."""
    text = str(exc)
    _, sep, inner = text.partition("': ")
    if text.startswith("Failed to invoke dbt command") and sep:
        text = inner
    return first_error_line(text) or type(exc).__name__


def failure_of(
    label: str, summary: RunSummary | None, error: BaseException | None
) -> Failure | None:
    """The run's failure, or None when it succeeded (dbt warnings are not failures)."""
    failed = summary.failed if summary else ()
    skipped = len(summary.skipped) if summary else 0
    if failed:
        return Failure(classify_nodes(failed), label, failed, skipped)
    if error is not None:
        return Failure(classify_error(error), label, (), skipped, error_detail(error))
    return None
