"""Resume a run whose process died (Crashed): run what it did not finish, nothing it did.

A killed process writes no run_results.json, so `dbt retry` has nothing to read. What survives:
- the kept index the run wrote before dbt started (its validated parameters) and the
  manifest.json it kept when dbt started executing (dbt_runtime/artifact_store.py);
- the per-node task runs Prefect recorded while dbt ran (dbt_runtime/node_reporter.py): every node
  the UI shows Completed was built.

From these a run_results.json is written in which those nodes succeeded and every other node
the command executes was "skipped", and the crashed run's own command runs again on
`<its selection>,result:skipped` (dbt's `result:` selector method, with `--state` pointing at
that file): its selection, minus what it built. Its tests run again only where they did not
pass. Nodes it never reached, and the one it was killed in, run.

A node that finished in the instant before the kill, before its event reached Prefect, is
built again: harmless (dbt models are idempotent), and the only way to be wrong is on the side
of rebuilding. A run killed before any node finished is simply run again whole.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prefect.utilities.asyncutils import run_coro_as_sync

from dbt_runtime import artifact_store
from dbt_runtime._statuses import dbt_statuses
from dbt_runtime.invocation import (
    DbtCommand,
    DbtInvocation,
    InvalidParameter,
    KeptRuns,
    KeptState,
    ResolvedState,
    Target,
    build_invocation,
    selectors,
    state_dir,
)
from dbt_runtime.task_runs import SKIPPED_STATE_NAME, TASK_KEY_PREFIX, recorded_task_runs

# The commands a crashed run can be resumed for, and the manifest resource types each executes.
RESUMABLE_COMMANDS: dict[DbtCommand, frozenset[str] | None] = {
    DbtCommand.build: None,  # every executable type
    DbtCommand.run: frozenset({"model"}),
    DbtCommand.test: frozenset({"test", "unit_test"}),
    DbtCommand.seed: frozenset({"seed"}),
    DbtCommand.snapshot: frozenset({"snapshot"}),
}


def succeeded_nodes(task_runs: Iterable[Any]) -> set[str]:
    """dbt unique_ids of the node task runs that ended Completed (not the "Skipped" ones)."""
    prefix = f"{TASK_KEY_PREFIX}-"
    return {
        run.task_key[len(prefix) :]
        for run in task_runs
        if run.task_key.startswith(prefix)
        and run.state is not None
        and run.state.is_completed()
        and run.state.name != SKIPPED_STATE_NAME
    }


def manifest_nodes(manifest: Mapping[str, Any], command: DbtCommand) -> list[str]:
    """The unique_ids of the manifest's nodes `command` executes."""
    types = RESUMABLE_COMMANDS[command]
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    return sorted(
        unique_id
        for unique_id, node in nodes.items()
        if types is None or node.get("resource_type") in types
    )


def write_run_results(dest: Path, statuses: Mapping[str, str]) -> Path:
    """A run_results.json with these node statuses, in dbt's own schema (`result:` reads it)."""
    from dbt.artifacts.schemas.run import RunResultsArtifact
    from dbt.version import __version__

    dest.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = [
        {
            "unique_id": unique_id,
            "status": status,
            "timing": [],
            "thread_id": "resume",
            "execution_time": 0.0,
            "adapter_response": {},
            "message": "from the crashed run's Prefect task runs",
            "failures": None,
            "compiled": None,
            "compiled_code": None,
            "relation_name": None,
            "batch_results": None,
        }
        for unique_id, status in sorted(statuses.items())
    ]
    document = {
        "metadata": {
            "dbt_schema_version": str(RunResultsArtifact.dbt_schema_version),
            "dbt_version": __version__,
            "generated_at": "1970-01-01T00:00:00Z",
            "invocation_id": None,
            "env": {},
        },
        "results": results,
        "elapsed_time": 0.0,
        "args": {},
    }
    path = dest / "run_results.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def resume_invocation(
    parameters: Mapping[str, Any],
    target: Target,
    succeeded: set[str],
    manifest: Mapping[str, Any] | None,
    workdir: Path,
    kept_runs: KeptRuns | None = None,
) -> DbtInvocation:
    """The crashed run's invocation (its recorded `parameters`) minus the `succeeded` nodes."""
    command = DbtCommand(parameters.get("command", DbtCommand.build))
    if command not in RESUMABLE_COMMANDS:
        raise InvalidParameter(
            f"parameter 'command': a crashed `dbt {command.value}` run cannot be resumed; "
            "start it again with the same parameters"
        )
    original: dict[str, Any] = {
        k: parameters.get(k) for k in ("select", "exclude", "vars", "full_refresh")
    }
    original["full_refresh"] = bool(original["full_refresh"])
    if not succeeded or manifest is None:
        whole = build_invocation(
            command, target, state=parameters.get("state"), kept_runs=kept_runs, **original
        )
        why = "no node finished" if not succeeded else "it kept no manifest.json"
        return dataclasses.replace(whole, note=f"running it again whole: {why}")
    # The written run_results.json says "success" for what the crashed run built, "skipped" for
    # the rest; resuming selects the skipped ones. (dbt's enums: read here, when a run resumes,
    # not when the flow module is imported.)
    vocabulary = dbt_statuses()
    statuses = {node: vocabulary.skipped for node in manifest_nodes(manifest, command)}
    statuses.update({node: vocabulary.success for node in succeeded if node in statuses})
    if workdir.exists():
        shutil.rmtree(workdir)
    write_run_results(workdir, statuses)
    # One --state directory serves both: the crashed run's comparison manifest (state:modified,
    # deferral) if it had one, and the run_results.json `result:` reads.
    if (compared := state_dir(parameters.get("state"), kept_runs)) is not None:
        shutil.copy2(compared / "manifest.json", workdir / "manifest.json")
    chosen = selectors("select", original["select"])
    remaining = f"result:{vocabulary.skipped}"
    original["select"] = [f"{s},{remaining}" for s in chosen] or [remaining]
    resumed = build_invocation(command, target, **original)
    note = f"{len(succeeded)} node(s) it built are left out ({remaining})"
    return dataclasses.replace(
        resumed, args=(*resumed.args, "--state", str(workdir)), parameters=parameters, note=note
    )


def resume_after_crash(
    resolved: ResolvedState, target: Target, kept_runs: KeptRuns | None = None
) -> DbtInvocation:
    """`command=retry` for a run with no run_results.json: resume it from the Prefect record."""
    how = "start it again with the same parameters"
    if resolved.flow_run_id is None or resolved.target is None:
        raise InvalidParameter(f"parameter 'state': {resolved.path} has no run_results.json; {how}")
    index = artifact_store.read_index(
        artifact_store.load_store(), resolved.target, resolved.flow_run_id
    )
    parameters = (index or {}).get("parameters")
    if not parameters:
        raise InvalidParameter(
            f"parameter 'state': flow run {resolved.flow_run_id} left no run_results.json and no "
            f"record of its parameters (it ran before resumable runs); {how}"
        )
    task_runs = run_coro_as_sync(recorded_task_runs(resolved.flow_run_id))
    manifest_file = resolved.path / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
    workdir = artifact_store.state_cache_dir(resolved.flow_run_id).with_name(
        f"{resolved.flow_run_id}-resume"
    )
    resumed = resume_invocation(
        parameters, target, succeeded_nodes(task_runs or []), manifest, workdir, kept_runs
    )
    note = f"Resuming crashed flow run {resolved.flow_run_id}: {resumed.note}"
    return dataclasses.replace(resumed, note=note)


class KeptRunStates:
    """`state` references looked up in the kept-artifact store (the flow's `KeptRuns`)."""

    def fetch(self, ref: KeptState) -> ResolvedState:
        try:
            return artifact_store.fetch_state(ref)
        except artifact_store.ArtifactStoreError as exc:
            raise InvalidParameter(f"parameter 'state': {ref.text}: {exc}") from None

    def resume(self, resolved: ResolvedState, target: Target) -> DbtInvocation:
        return resume_after_crash(resolved, target, self)
