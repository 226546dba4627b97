"""Reading dbt's manifest.json and run_results.json, whichever dbt wrote them.

Only the fields parity needs are read, so artifacts from dbt Cloud (often a different dbt version
than the Prefect worker's) and dbt Core compare alike: manifest v10-v12 and run_results v4-v6 are
the versions in use (dbt 1.6-1.11); newer versions are read the same way because these fields
have been stable. A status dbt adds later (1.12's `reused`) is kept verbatim and classified as
`other` until taught, rather than rejected. A file that is not the dbt artifact it should be
raises ArtifactError naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dbt_runtime._statuses import dbt_statuses

MANIFEST = "manifest.json"
RUN_RESULTS = "run_results.json"
SUPPORTED = {"manifest": range(10, 13), "run-results": range(4, 7)}
_SCHEMA = re.compile(r"/dbt/(?P<kind>[a-z-]+)/v(?P<version>\d+)\.json$")


class ArtifactError(ValueError):
    """A path that is not a readable dbt artifact; the message names the file."""


class Outcome(StrEnum):
    """What a node status means for parity."""

    ok = "ok"
    """Built or passed: success, pass, warn (a warning does not fail dbt), no-op, reused."""
    failed = "failed"
    """error, fail, runtime error, partial success: dbt exits non-zero."""
    skipped = "skipped"
    """Not executed, usually because an upstream node failed."""
    other = "other"
    """A status this tool does not know yet (a newer dbt); reported verbatim, never hidden."""


def outcome(status: str) -> Outcome:
    status = status.lower()
    statuses = dbt_statuses()
    if status in statuses.ok:
        return Outcome.ok
    if status in statuses.failed:
        return Outcome.failed
    if status == statuses.skipped:
        return Outcome.skipped
    return Outcome.other


# The resource types each dbt command executes (what a run_results can contain).
COMMAND_RESOURCE_TYPES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "build": frozenset({"model", "seed", "snapshot", "test", "unit_test"}),
        "run": frozenset({"model"}),
        "test": frozenset({"test", "unit_test"}),
        "seed": frozenset({"seed"}),
        "snapshot": frozenset({"snapshot"}),
        # `dbt retry` re-runs what failed in the previous invocation, whatever its type.
        "retry": frozenset({"model", "seed", "snapshot", "test", "unit_test"}),
    }
)
# Commands whose results are not builds: compared separately or not at all.
NON_BUILD_COMMANDS = frozenset(
    {
        "source-freshness",
        "freshness",
        "docs",
        "generate",
        "compile",
        "run-operation",
        "ls",
        "list",
        "parse",
        "show",
        "debug",
        "deps",
        "clean",
    }
)


@dataclass(frozen=True)
class Node:
    """A manifest entry: model, seed, snapshot, test, unit test, source..."""

    unique_id: str
    resource_type: str
    name: str
    materialized: str = ""
    enabled: bool = True
    depends_on: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    fqn: tuple[str, ...] = ()
    path: str = ""

    @property
    def is_test(self) -> bool:
        return self.resource_type in {"test", "unit_test"}


@dataclass(frozen=True)
class Manifest:
    origin: str
    schema_version: int
    dbt_version: str
    nodes: Mapping[str, Node]
    disabled: Mapping[str, Node]

    def children(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {}
        for node in self.nodes.values():
            for parent in node.depends_on:
                result.setdefault(parent, set()).add(node.unique_id)
        return result


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    message: str = ""

    @property
    def outcome(self) -> Outcome:
        return outcome(self.status)


@dataclass(frozen=True)
class Invocation:
    """One dbt command's run_results: what was asked (args) and what happened."""

    origin: str
    schema_version: int
    dbt_version: str
    command: str  # args.which: build, run, test, seed, snapshot, source-freshness...
    select: tuple[str, ...]
    exclude: tuple[str, ...]
    resource_types: tuple[str, ...]
    exclude_resource_types: tuple[str, ...]
    invocation_command: str
    results: Mapping[str, NodeResult]
    label: str = ""  # e.g. the dbt Cloud step name

    @property
    def is_build(self) -> bool:
        return self.command not in NON_BUILD_COMMANDS

    @property
    def executed_types(self) -> frozenset[str]:
        types = COMMAND_RESOURCE_TYPES.get(self.command, frozenset())
        if self.resource_types:
            types = types & frozenset(self.resource_types)
        return types - frozenset(self.exclude_resource_types)

    def describe(self) -> str:
        """The command and its selection (what decides which nodes run), without paths."""
        parts = [f"dbt {self.command}"]
        parts += [f"--select {' '.join(self.select)}"] if self.select else []
        parts += [f"--exclude {' '.join(self.exclude)}"] if self.exclude else []
        return " ".join(parts)


@dataclass(frozen=True)
class RunArtifacts:
    """One side of a parity check: a manifest plus the invocations that built from it.

    A Prefect flow run has one invocation; a dbt Cloud run has one per execute step."""

    origin: str
    manifest: Manifest
    invocations: tuple[Invocation, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def build_invocations(self) -> tuple[Invocation, ...]:
        return tuple(i for i in self.invocations if i.is_build)

    def results(self) -> dict[str, NodeResult]:
        """Build results by unique_id; a later step's result for a node replaces an earlier
        one (`dbt run` then `dbt build` re-runs the model: the last word is what counts)."""
        combined: dict[str, NodeResult] = {}
        for invocation in self.build_invocations:
            combined.update(invocation.results)
        return combined


def _load_json(path: Path, kind: str) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found (expected dbt's {kind})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a dbt {kind}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: not a dbt {kind}: top level is not a JSON object")
    return data


def _schema(data: Mapping[str, Any], origin: str, expected: str) -> tuple[int, str]:
    metadata = data.get("metadata")
    url = metadata.get("dbt_schema_version", "") if isinstance(metadata, dict) else ""
    match = _SCHEMA.search(str(url))
    label = {"manifest": MANIFEST, "run-results": RUN_RESULTS}[expected]
    if match is None:
        raise ArtifactError(
            f"{origin}: not a dbt {label} (no metadata.dbt_schema_version); "
            "pass the target/ directory of a dbt invocation"
        )
    if match["kind"] != expected:
        raise ArtifactError(f"{origin}: is a dbt {match['kind']} artifact, expected {label}")
    return int(match["version"]), str(metadata.get("dbt_version", "")) if metadata else ""


def _node(raw: Mapping[str, Any], enabled: bool = True) -> Node:
    config = raw.get("config") or {}
    depends = raw.get("depends_on") or {}
    return Node(
        unique_id=str(raw["unique_id"]),
        resource_type=str(raw.get("resource_type", "")),
        name=str(raw.get("name", "")),
        materialized=str(config.get("materialized") or ""),
        enabled=enabled and bool(config.get("enabled", True)),
        depends_on=tuple(depends.get("nodes") or ()),
        tags=tuple(raw.get("tags") or ()),
        fqn=tuple(raw.get("fqn") or ()),
        path=str(raw.get("original_file_path") or ""),
    )


def parse_manifest(data: Mapping[str, Any], origin: str) -> Manifest:
    version, dbt_version = _schema(data, origin, "manifest")
    nodes: dict[str, Node] = {}
    try:
        # unit_tests exist from v12; seeds/tests/snapshots live in `nodes`.
        for section in ("nodes", "sources", "unit_tests"):
            for raw in (data.get(section) or {}).values():
                node = _node(raw)
                nodes[node.unique_id] = node
        disabled: dict[str, Node] = {}
        for unique_id, variants in (data.get("disabled") or {}).items():
            # dbt keeps a list of disabled variants per unique_id (one per version/file).
            if unique_id not in nodes and variants:
                disabled[unique_id] = _node(variants[0], enabled=False)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{origin}: malformed dbt {MANIFEST}: {exc!r}") from exc
    return Manifest(
        origin=origin,
        schema_version=version,
        dbt_version=dbt_version,
        nodes=MappingProxyType(nodes),
        disabled=MappingProxyType(disabled),
    )


def _strings(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(str(v) for v in value)


def parse_run_results(data: Mapping[str, Any], origin: str, label: str = "") -> Invocation:
    version, dbt_version = _schema(data, origin, "run-results")
    args = data.get("args") or {}
    try:
        results = {
            str(r["unique_id"]): NodeResult(
                unique_id=str(r["unique_id"]),
                status=str(r.get("status", "")).lower(),
                message=str(r.get("message") or ""),
            )
            for r in data["results"]
        }
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{origin}: malformed dbt {RUN_RESULTS}: {exc!r}") from exc
    # `which` is the subcommand since dbt 1.5; older files only had `rpc_method`.
    command = str(args.get("which") or args.get("rpc_method") or "")
    return Invocation(
        origin=origin,
        schema_version=version,
        dbt_version=dbt_version,
        command=command,
        select=_strings(args.get("select") or args.get("models")),
        exclude=_strings(args.get("exclude")),
        resource_types=_strings(args.get("resource_types") or args.get("resource_type")),
        exclude_resource_types=_strings(args.get("exclude_resource_types")),
        invocation_command=str(args.get("invocation_command") or ""),
        results=MappingProxyType(results),
        label=label,
    )


def read_manifest(path: Path) -> Manifest:
    return parse_manifest(_load_json(path, MANIFEST), str(path))


def read_run_results(path: Path, label: str = "") -> Invocation:
    return parse_run_results(_load_json(path, RUN_RESULTS), str(path), label)


def load_dir(directory: Path, origin: str | None = None) -> RunArtifacts:
    """A directory holding manifest.json + run_results.json (a dbt target/ or kept artifacts)."""
    if not directory.is_dir():
        raise ArtifactError(
            f"{directory}: no such directory (expected one holding {MANIFEST} and {RUN_RESULTS})"
        )
    missing = [name for name in (MANIFEST, RUN_RESULTS) if not (directory / name).is_file()]
    if missing:
        raise ArtifactError(f"{directory}: missing {' and '.join(missing)}")
    return RunArtifacts(
        origin=origin or str(directory),
        manifest=read_manifest(directory / MANIFEST),
        invocations=(read_run_results(directory / RUN_RESULTS),),
    )


def version_notes(artifacts: Iterable[Manifest | Invocation]) -> list[str]:
    """Warnings for schema versions outside what this tool was tested with."""
    notes = []
    for item in artifacts:
        kind = "manifest" if isinstance(item, Manifest) else "run-results"
        if item.schema_version not in SUPPORTED[kind]:
            known = SUPPORTED[kind]
            notes.append(
                f"{item.origin}: {kind} schema v{item.schema_version} is outside the tested "
                f"v{known.start}-v{known.stop - 1}; read with the same fields"
            )
    return notes
