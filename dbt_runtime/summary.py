"""dbt's run_results.json -> the run summary an on-call person reads first.

Pure functions over the JSON dbt writes, not over Prefect task states: prefect-dbt 0.7.25 shows a
skipped node as a Completed task, while run_results.json says `skipped`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dbt_runtime._statuses import dbt_statuses

MESSAGE_CHARS = 300
# run_results' `args.which` -> the command an operator typed.
_WHICH = {"generate": "docs generate", "freshness": "source freshness"}


@dataclass(frozen=True)
class NodeRow:
    """One executed dbt node, as the summary table shows it."""

    unique_id: str
    type: str
    status: str
    seconds: float
    rows_affected: int | None
    message: str


@dataclass(frozen=True)
class RunSummary:
    """What one dbt invocation did: header facts and one row per node, in execution order."""

    command: str
    target: str
    selection: str
    dbt_version: str
    elapsed_seconds: float
    rows: tuple[NodeRow, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Nodes by dbt status, e.g. {"error": 1, "skipped": 4, "success": 20}."""
        return dict(sorted(Counter(row.status for row in self.rows).items()))

    @property
    def failed(self) -> tuple[NodeRow, ...]:
        """Nodes that did not do their job; `warn` is not a failure (dbt exits 0 on it)."""
        failed = dbt_statuses().failed
        return tuple(row for row in self.rows if row.status in failed)

    @property
    def skipped(self) -> tuple[NodeRow, ...]:
        skipped = dbt_statuses().skipped
        return tuple(row for row in self.rows if row.status == skipped)

    def header(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items()) or "no nodes"
        return (
            f"dbt {self.command} --target {self.target} | selection: {self.selection} | "
            f"dbt {self.dbt_version} | {counts} | {self.elapsed_seconds:.1f}s"
        )

    def table(self) -> list[dict[str, Any]]:
        """Rows for a Prefect table artifact (JSON-serialisable dicts)."""
        return [asdict(row) for row in self.rows]

    def markdown(self) -> str:
        lines = [
            f"**{self.header()}**",
            "",
            "| node | type | status | seconds | rows affected | message |",
            "|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            cells = [
                row.unique_id,
                row.type,
                row.status,
                f"{row.seconds:.2f}",
                "" if row.rows_affected is None else str(row.rows_affected),
                row.message,
            ]
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def first_error_line(message: str | None) -> str:
    """The line of a dbt message that says what went wrong.

    dbt prefixes errors with a header such as "Runtime Error in model fct_x (models/fct_x.sql)"
    or a bare "Runtime Error"; the cause is on the next line, so a header followed by more text
    yields that text.
    """
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return ""
    chosen = lines[0]
    header = chosen.endswith(" Error") or (
        " Error in " in chosen and chosen.split(" Error in ")[0].istitle()
    )
    if len(lines) > 1 and header:
        chosen = lines[1]
    return chosen if len(chosen) <= MESSAGE_CHARS else chosen[: MESSAGE_CHARS - 1] + "…"


def _rows_affected(result: Mapping[str, Any]) -> int | None:
    value = (result.get("adapter_response") or {}).get("rows_affected")
    return value if isinstance(value, int) and value >= 0 else None


def node_row(result: Mapping[str, Any]) -> NodeRow:
    unique_id = str(result.get("unique_id", ""))
    status = str(result.get("status", "")).lower()
    message = result.get("message")
    statuses = dbt_statuses()
    if status == statuses.fail and result.get("failures") is not None:
        # A failing test's message is just "Got N results"; say what that means.
        message = f"{result['failures']} failing rows: {message or ''}".strip(": ")
    return NodeRow(
        unique_id=unique_id,
        type=unique_id.split(".", 1)[0],
        status=status,
        seconds=round(float(result.get("execution_time") or 0.0), 3),
        rows_affected=_rows_affected(result),
        message=first_error_line(message) if status != statuses.success else (message or ""),
    )


def _selection(args: Mapping[str, Any]) -> str:
    def words(value: Any) -> list[str]:
        if not value:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, Sequence):
            return [str(v) for v in value]
        return [str(value)]

    parts = words(args.get("select"))
    text = " ".join(parts) if parts else "all"
    excluded = words(args.get("exclude"))
    if excluded:
        text += " --exclude " + " ".join(excluded)
    if args.get("state"):
        text += f" --state {args['state']}"
    return text


def summarize(run_results: Mapping[str, Any], command: str = "", target: str = "") -> RunSummary:
    """Summarise a run_results.json document; `command`/`target` fill gaps in its args."""
    args = run_results.get("args") or {}
    metadata = run_results.get("metadata") or {}
    return RunSummary(
        command=_WHICH.get(str(args.get("which")), str(args.get("which") or command or "?")),
        target=str(args.get("target") or target or "?"),
        selection=_selection(args),
        dbt_version=str(metadata.get("dbt_version", "?")),
        elapsed_seconds=float(run_results.get("elapsed_time") or 0.0),
        rows=tuple(node_row(r) for r in run_results.get("results") or []),
    )
