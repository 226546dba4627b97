"""Why a run failed, in one glance: the class of failure and the failed nodes' first error line.

Pure functions: the flow turns their message into its final Failed state, so on-call reads the
reason in the run list, not in a stack trace. Expected dbt failures (a model's SQL, a test, a
missing block, a bad parameter) never produce a traceback; only unexpected ones do.
"""

from __future__ import annotations

import re
import socket
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
    """The warehouse could not be reached, refused the credentials, or held a lock
    (see WarehouseProblem: only an unreachable warehouse is retried)."""
    model_error = "model error"
    """A model, seed or snapshot failed in the warehouse (its SQL): fix the model."""
    test_failure = "test failure"
    """Data or unit tests failed: the data (or the test) needs a look."""
    dbt_error = "dbt error"
    """Anything else dbt reported."""


class WarehouseProblem(StrEnum):
    """Why the warehouse, not the project, stopped the run; decides whether a retry can help."""

    unreachable = "the warehouse could not be reached"
    """Network, DNS, a refused or reset connection, a timeout while connecting: transient, so
    the guards retry it (a bounded number of times) before failing the run."""
    credentials = "the warehouse refused the credentials"
    """Wrong password or key, invalid JWT: the same login fails again; fix the block
    (python -m blocks.register_snowflake --target <target>)."""
    lock = "a lock is held by someone else"
    """Another process holds the lock (DuckDB file, Snowflake object): not retried."""
    unavailable = "the warehouse is unavailable"
    """A suspended or missing warehouse, a statement timeout: needs a look, not a retry."""

    @property
    def transient(self) -> bool:
        """Whether the same call may well succeed seconds later, i.e. whether to retry it."""
        return self is WarehouseProblem.unreachable


# Message text of each problem, most specific first: a Snowflake login failure is
# "250001 (08001): Failed to connect to DB: ... Incorrect username or password was specified.",
# so the credentials text must win over the generic "failed to connect".
_PROBLEMS: tuple[tuple[WarehouseProblem, re.Pattern[str]], ...] = tuple(
    (problem, re.compile(pattern, re.IGNORECASE))
    for problem, pattern in (
        (
            WarehouseProblem.credentials,
            r"incorrect username or password|authentication (failed|token)|failed to authenticate"
            r"|jwt token|\b390100\b",
        ),
        (WarehouseProblem.lock, r"could not set lock|conflicting lock"),
        (
            WarehouseProblem.unreachable,
            r"could not connect|failed to connect|failed to establish a new connection"
            r"|connection (refused|reset|aborted|timed out|error)|max retries exceeded"
            r"|network is unreachable|name or service not known"
            r"|temporary failure in name resolution|read timed out|\b250001\b|\b251012\b",
        ),
        (WarehouseProblem.unavailable, r"warehouse .* (suspended|does not exist)|timed out"),
    )
)


def warehouse_problem(error: BaseException | str) -> WarehouseProblem | None:
    """The warehouse problem an error (or one it was raised from) or a node message reports;
    None when the warehouse is not the problem. The one classifier: the guards retry what it
    calls transient, and the failure message reports what it finds as a warehouse error."""
    chain: list[BaseException] = []
    seen: BaseException | None = error if isinstance(error, BaseException) else None
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    texts = [str(e) for e in chain] if chain else [str(error)]
    for problem, pattern in _PROBLEMS:
        if any(pattern.search(text) for text in texts):
            return problem
    # No telling text, but the type says it: a socket that could not connect or timed out.
    if any(isinstance(e, ConnectionError | socket.timeout) for e in chain):
        return WarehouseProblem.unreachable
    return None


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
    problem: WarehouseProblem | None = None  # set when kind is warehouse_error

    @property
    def transient(self) -> bool:
        """A warehouse that could not be reached: the guards retry the run, nothing else."""
        return self.problem is not None and self.problem.transient

    def message(self, hint: str = "") -> str:
        """Headline, then one line per failed node (`unique_id: first error line`)."""
        what = f"{len(self.failed)} failed" if self.failed else "no node results"
        if self.skipped:
            what += f", {self.skipped} skipped"
        why = f": {self.problem.value}" if self.problem else ""
        lines = [f"{self.label} failed: {self.kind.value}{why} ({what})"]
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
    if any(warehouse_problem(m) for m in messages):
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
    if warehouse_problem(exc):
        return FailureKind.warehouse_error
    if _COMPILE.search(str(exc)):
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
        problem = next(filter(None, (warehouse_problem(row.message) for row in failed)), None)
        return Failure(classify_nodes(failed), label, failed, skipped, problem=problem)
    if error is not None:
        kind = classify_error(error)
        problem = warehouse_problem(error) if kind is FailureKind.warehouse_error else None
        return Failure(kind, label, (), skipped, error_detail(error), problem)
    return None
