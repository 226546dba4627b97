"""Parity: did Prefect build what dbt Cloud built? (R-116, A-106)

The comparison is pure (`compare(baseline, candidate) -> ParityReport`): node sets by unique_id
and resource type, then statuses. Every difference is classified and, where the artifacts prove
why, explained (selection, project changes, ephemeral models, commands that do not run tests,
skips caused by an upstream failure). Exit codes: 0 identical or every difference explained;
1 an unexplained difference or a failed candidate node; 2 bad input.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from dbt_runtime import artifact_store
from dbt_runtime._statuses import REUSED, dbt_statuses
from dbt_runtime.dbt_artifacts import (
    Invocation,
    Manifest,
    Node,
    NodeResult,
    Outcome,
    RunArtifacts,
    load_dir,
    version_notes,
)
from dbt_runtime.dbt_cloud import DbtCloudError, fetch_last_successful, load_credentials

EXIT_OK, EXIT_DIFFERENT, EXIT_BAD_INPUT = 0, 1, 2


class Kind(StrEnum):
    """How a node differs between baseline (dbt Cloud) and candidate (Prefect)."""

    added = "added"
    removed = "removed"
    disabled = "disabled"
    ephemeral = "ephemeral"
    command = "command"
    selection = "selection"
    skipped_upstream = "skipped_upstream"
    status_changed = "status_changed"
    failed = "failed"
    missing = "missing"
    extra = "extra"


# What each kind means, printed as the heading of its section in the report.
MEANING: dict[Kind, str] = {
    Kind.added: "executed by the candidate only: new in the project since the baseline run",
    Kind.removed: "executed by the baseline only: no longer in the candidate's project",
    Kind.disabled: "disabled (enabled: false) in the project of the side that skipped it",
    Kind.ephemeral: "ephemeral on the side that skipped it: compiled into children, never run",
    Kind.command: "that side's dbt command never executes this resource type (tests vs models)",
    Kind.selection: "outside that side's --select/--exclude (run_results `args`)",
    Kind.skipped_upstream: "skipped in the candidate because a node it depends on failed",
    Kind.status_changed: "executed on both sides with a different status",
    Kind.failed: "failed in the candidate: never acceptable for cutover",
    Kind.missing: "executed by the baseline only, for no reason the artifacts show",
    Kind.extra: "executed by the candidate only, for no reason the artifacts show",
}


@dataclass(frozen=True)
class Difference:
    unique_id: str
    resource_type: str
    kind: Kind
    explained: bool
    explanation: str
    baseline_status: str = ""  # "" = not executed
    candidate_status: str = ""


@dataclass(frozen=True)
class SideSummary:
    origin: str
    dbt_version: str
    invocations: tuple[str, ...]
    executed: dict[str, int]  # resource type -> nodes executed
    statuses: dict[str, int]


@dataclass(frozen=True)
class ParityReport:
    baseline: SideSummary
    candidate: SideSummary
    matching: int
    differences: tuple[Difference, ...]
    candidate_failures: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def unexplained(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if not d.explained)

    @property
    def exit_code(self) -> int:
        return EXIT_DIFFERENT if self.unexplained or self.candidate_failures else EXIT_OK

    @property
    def verdict(self) -> str:
        if self.candidate_failures:
            return f"NOT AT PARITY: {len(self.candidate_failures)} candidate node(s) failed"
        if self.unexplained:
            return f"NOT AT PARITY: {len(self.unexplained)} unexplained difference(s)"
        if self.differences:
            return f"AT PARITY: {len(self.differences)} difference(s), all explained"
        return "AT PARITY: identical node sets and statuses"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        data["exit_code"] = self.exit_code
        return data


# ---- selection ---------------------------------------------------------------------------------
def _ancestors(manifest: Manifest, unique_id: str, depth: int | None) -> set[str]:
    found: set[str] = set()
    frontier, level = {unique_id}, 0
    while frontier and (depth is None or level < depth):
        nxt: set[str] = set()
        for uid in frontier:
            node = manifest.nodes.get(uid)
            nxt.update(p for p in (node.depends_on if node else ()) if p not in found)
        found |= nxt
        frontier, level = nxt, level + 1
    return found


def _descendants(manifest: Manifest, seeds: set[str], depth: int | None) -> set[str]:
    children = manifest.children()
    found: set[str] = set()
    frontier, level = set(seeds), 0
    while frontier and (depth is None or level < depth):
        nxt = {c for uid in frontier for c in children.get(uid, ()) if c not in found}
        found |= nxt
        frontier, level = nxt, level + 1
    return found


def _fqn_matches(node: Node, value: str) -> bool:
    """dbt's default method: a node name, or a prefix of the fqn with or without the package."""
    if fnmatch.fnmatchcase(node.name, value):
        return True
    parts = value.split(".")
    fqn = list(node.fqn)
    return any(
        len(candidate) >= len(parts)
        and all(fnmatch.fnmatchcase(c, p) for c, p in zip(candidate, parts, strict=False))
        for candidate in (fqn, fqn[1:])
    )


def _method_matches(node: Node, method: str, value: str) -> bool | None:
    """dbt's selector methods this tool understands; None for the others (state:, config.)."""
    if method in ("", "fqn", "path", "file") and ("/" in value or value.endswith(".sql")):
        return node.path == value or node.path.startswith(value.rstrip("/") + "/")
    if method in ("", "fqn"):
        return _fqn_matches(node, value)
    if method == "tag":
        return any(fnmatch.fnmatchcase(tag, value) for tag in node.tags)
    if method == "resource_type":
        return node.resource_type == value
    if method == "path":
        return node.path == value or node.path.startswith(value.rstrip("/") + "/")
    if method == "package":
        return bool(node.fqn) and node.fqn[0] == value
    if method == "source":
        return node.resource_type == "source" and ".".join(node.fqn[1:]).startswith(value)
    return None


_TERM = re.compile(
    r"^(?P<at>@)?(?:(?P<up_depth>\d*)(?P<up>\+))?(?P<spec>[^+@]+)(?:(?P<down>\+)(?P<down_depth>\d*))?$"
)


def select_nodes(manifest: Manifest, term: str) -> set[str] | None:
    """The unique_ids one selector term selects (`a,b` = intersection), or None if unsupported."""
    result: set[str] | None = None
    for part in term.split(","):
        m = _TERM.match(part)
        if m is None:
            return None
        method, _, value = m["spec"].rpartition(":")
        matched: set[str] = set()
        for node in manifest.nodes.values():
            hit = _method_matches(node, method, value)
            if hit is None:
                return None
            if hit:
                matched.add(node.unique_id)
        expanded = set(matched)
        if m["down"] or m["at"]:
            expanded |= _descendants(manifest, matched, int(m["down_depth"] or 0) or None)
        if m["at"]:  # @x: x, its descendants, and all ancestors of those
            for uid in list(expanded):
                expanded |= _ancestors(manifest, uid, None)
        elif m["up"]:
            for uid in matched:
                expanded |= _ancestors(manifest, uid, int(m["up_depth"] or 0) or None)
        result = expanded if result is None else result & expanded
    return result or set()


def _union(manifest: Manifest, terms: tuple[str, ...]) -> set[str] | None:
    chosen: set[str] = set()
    for term in terms:
        picked = select_nodes(manifest, term)
        if picked is None:
            return None
        chosen |= picked
    return chosen


def is_selected(invocation: Invocation, manifest: Manifest, unique_id: str) -> bool | None:
    """Whether the invocation's --select/--exclude pick `unique_id` (None: a selector method this
    tool cannot evaluate, e.g. state: or config.). Tests follow dbt's default eager indirect
    selection: picked when any node they test is picked, dropped when any is excluded."""
    node = manifest.nodes[unique_id]
    everything = set(manifest.nodes)
    selected = _union(manifest, invocation.select) if invocation.select else everything
    excluded = _union(manifest, invocation.exclude)
    if selected is None or excluded is None:
        return None
    if unique_id in excluded:
        return False
    if node.is_test:
        tested = [p for p in node.depends_on if p in manifest.nodes]
        if any(p in excluded for p in tested):
            return False
        return unique_id in selected or any(p in selected for p in tested)
    return unique_id in selected


# ---- comparison --------------------------------------------------------------------------------
def _why_not_executed(
    uid: str, side: RunArtifacts, side_name: str
) -> tuple[Kind, bool, str] | None:
    """Why `side` did not execute `uid` (which the other side executed), if its artifacts show it.

    None: the node is absent from that side's project (the caller reports added/removed)."""
    manifest = side.manifest
    if uid in manifest.disabled:
        return Kind.disabled, True, f"disabled in the {side_name}'s project (enabled: false)"
    if uid not in manifest.nodes:
        return None
    node = manifest.nodes[uid]
    if node.materialized == "ephemeral":
        why = f"ephemeral in the {side_name}'s project: compiled into its children, never executed"
        return Kind.ephemeral, True, why
    running = [i for i in side.build_invocations if node.resource_type in i.executed_types]
    if not running:
        commands = ", ".join(f"`{i.describe()}`" for i in side.build_invocations) or "no build"
        what = "tests" if node.is_test else f"{node.resource_type}s"
        return Kind.command, True, f"the {side_name} ran {commands}, which does not execute {what}"
    verdicts = [(inv, is_selected(inv, manifest, uid)) for inv in running]
    if all(v is False for _, v in verdicts):
        why = f"outside the {side_name}'s selection `{verdicts[0][0].describe()}`"
        return Kind.selection, True, why
    unknown = [inv for inv, v in verdicts if v is None]
    if unknown and not any(v for _, v in verdicts):
        why = (
            f"the {side_name}'s selection `{unknown[0].describe()}` uses a selector this tool "
            "cannot evaluate: confirm by hand that it leaves this node out"
        )
        return Kind.selection, False, why
    kind = Kind.missing if side_name == "candidate" else Kind.extra
    return kind, False, f"the {side_name}'s selection includes it, yet it was not executed there"


def _failed_upstream(
    uid: str, artifacts: RunArtifacts, results: dict[str, NodeResult]
) -> list[str]:
    return sorted(
        a
        for a in _ancestors(artifacts.manifest, uid, None)
        if a in results and results[a].outcome is Outcome.failed
    )


def _node(uid: str, *sides: RunArtifacts) -> Node:
    for side in sides:
        if uid in side.manifest.nodes:
            return side.manifest.nodes[uid]
        if uid in side.manifest.disabled:
            return side.manifest.disabled[uid]
    return Node(unique_id=uid, resource_type=uid.split(".", 1)[0], name=uid.rsplit(".", 1)[-1])


def _summary(side: RunArtifacts, results: dict[str, NodeResult]) -> SideSummary:
    types = Counter(_node(uid, side).resource_type for uid in results)
    return SideSummary(
        origin=side.origin,
        dbt_version=side.manifest.dbt_version,
        invocations=tuple(
            (f"{i.label}: " if i.label else "") + (i.invocation_command or i.describe())
            for i in side.invocations
        ),
        executed=dict(sorted(types.items())),
        statuses=dict(sorted(Counter(r.status for r in results.values()).items())),
    )


def compare(baseline: RunArtifacts, candidate: RunArtifacts) -> ParityReport:
    """Classify every node whose execution or status differs between the two runs."""
    base, cand = baseline.results(), candidate.results()
    differences: list[Difference] = []
    matching = 0
    for uid in sorted(set(base) | set(cand)):
        node = _node(uid, candidate, baseline)
        b, c = base.get(uid), cand.get(uid)
        bs, cs = (b.status if b else ""), (c.status if c else "")
        found: tuple[Kind, bool, str]
        if c is None:
            found = _why_not_executed(uid, candidate, "candidate") or (
                Kind.removed,
                True,
                "removed from the project since the baseline run",
            )
        elif c.outcome is Outcome.failed:
            first_line = (c.message or cs).strip().splitlines()[0]
            found = Kind.failed, False, f"failed in the candidate: {first_line}"
        elif b is None:
            found = _why_not_executed(uid, baseline, "baseline") or (
                Kind.added,
                True,
                "added to the project since the baseline run",
            )
        elif bs == cs:
            matching += 1
            continue
        elif c.outcome is Outcome.skipped:
            upstream = _failed_upstream(uid, candidate, cand)
            found = (
                (Kind.skipped_upstream, True, f"skipped: upstream failed: {', '.join(upstream)}")
                if upstream
                else (Kind.status_changed, False, "skipped in the candidate, no failed upstream")
            )
        elif b.outcome is Outcome.ok and c.outcome is Outcome.ok:
            hint = {
                dbt_statuses().warn: " (the test now warns: check the data)",
                REUSED: " (dbt reused the current relation instead of rebuilding it)",
            }.get(cs, "")
            found = Kind.status_changed, True, f"both succeeded: {bs} -> {cs}{hint}"
        elif c.outcome is Outcome.ok and b.outcome in (Outcome.skipped, Outcome.failed):
            found = Kind.status_changed, True, f"the candidate built what the baseline left {bs}"
        else:
            found = Kind.status_changed, False, f"status {bs!r} -> {cs!r}"
        kind, explained, why = found
        differences.append(Difference(uid, node.resource_type, kind, explained, why, bs, cs))

    failures = tuple(sorted(uid for uid, r in cand.items() if r.outcome is Outcome.failed))
    notes = [*baseline.notes, *candidate.notes]
    notes += version_notes(
        [baseline.manifest, *baseline.invocations, candidate.manifest, *candidate.invocations]
    )
    return ParityReport(
        baseline=_summary(baseline, base),
        candidate=_summary(candidate, cand),
        matching=matching,
        differences=tuple(differences),
        candidate_failures=failures,
        notes=tuple(notes),
    )


# ---- rendering ---------------------------------------------------------------------------------
def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing"


def _side(title: str, side: SideSummary) -> list[str]:
    lines = [f"**{title}**: {side.origin} (dbt {side.dbt_version or 'unknown'})", ""]
    lines += [f"- ran `{invocation}`" for invocation in side.invocations]
    lines.append(f"- executed: {_counts(side.executed)}")
    lines.append(f"- statuses: {_counts(side.statuses)}")
    return [*lines, ""]


def render_markdown(report: ParityReport) -> str:
    lines = [f"# Parity: {report.verdict}", ""]
    lines += _side("Baseline", report.baseline) + _side("Candidate", report.candidate)
    explained = len(report.differences) - len(report.unexplained)
    lines += [
        "",
        f"Matching nodes: {report.matching}. Differences: {len(report.differences)} "
        f"({explained} explained, {len(report.unexplained)} unexplained). "
        f"Candidate failures: {len(report.candidate_failures)}.",
    ]
    if report.differences:
        by_type = Counter(d.resource_type for d in report.differences)
        lines.append(f"Differences by resource type: {_counts(dict(sorted(by_type.items())))}.")
    for title, wanted in (("Unexplained differences", False), ("Explained differences", True)):
        rows = [d for d in report.differences if d.explained is wanted]
        if not rows:
            continue
        lines += ["", f"## {title}", ""]
        by_kind: dict[Kind, list[Difference]] = {}
        for d in rows:
            by_kind.setdefault(d.kind, []).append(d)
        for kind, items in by_kind.items():
            lines.append(f"### {kind.value} ({len(items)}): {MEANING[kind]}")
            lines.append("")
            for d in items:
                status = f"{d.baseline_status or '-'} -> {d.candidate_status or '-'}"
                lines.append(f"- `{d.unique_id}` ({d.resource_type}, {status}): {d.explanation}")
            lines.append("")
    if report.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in report.notes)]
    return "\n".join(lines).rstrip() + "\n"


# ---- inputs ------------------------------------------------------------------------------------
class BadInput(Exception):
    """Exit 2: the message says which input to fix."""


def resolve_baseline(spec: str, workdir: Path) -> RunArtifacts:
    if spec.startswith("dbt-cloud:"):
        job = spec.removeprefix("dbt-cloud:")
        if not job.isdigit():
            raise BadInput(f"--baseline {spec}: JOB_ID must be the numeric dbt Cloud job id")
        try:
            return fetch_last_successful(int(job), workdir / "baseline", load_credentials())
        except DbtCloudError as exc:
            raise BadInput(f"--baseline {spec}: {exc}") from exc
    return load_dir(Path(spec))


def resolve_candidate(spec: str, workdir: Path) -> RunArtifacts:
    kind, _, value = spec.partition(":")
    if kind in ("flow-run", "latest") and value:
        # Kept artifacts of Prefect flow runs (dbt_runtime/artifact_store.py).
        dest = workdir / "candidate"
        try:
            if kind == "flow-run":
                directory = artifact_store.fetch_run_artifacts(value, dest)
                origin = f"flow run {value}"
            else:
                flow_run_id, directory = artifact_store.latest_run_artifacts(value, dest, True)
                origin = f"latest successful run on target {value}: flow run {flow_run_id}"
        except (LookupError, ValueError, RuntimeError, OSError, httpx.HTTPError) as exc:
            raise BadInput(f"--candidate {spec}: {exc}") from exc
        return load_dir(directory, origin=origin)
    return load_dir(Path(spec))


def differences_of(report: ParityReport, kind: Kind) -> list[str]:
    """unique_ids of one kind of difference (tests, tooling)."""
    return [d.unique_id for d in report.differences if d.kind is kind]


def summarize(reports: Iterable[ParityReport]) -> int:
    """The worst exit code over several checks (e.g. one per target)."""
    return max((r.exit_code for r in reports), default=EXIT_OK)
