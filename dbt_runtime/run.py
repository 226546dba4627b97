"""One dbt invocation, run the way the flow needs it (flows/dbt_project.py calls `run_flow`).

Around dbt: a profile scoped to the target, read once with its blocks before anything waits
(profiles.run_profile), then the guards (one run per target, the timeout, connection retries);
dbt's partial-parse state restored and kept (partial_parse.py); dbt through prefect-dbt's runner
with a task run per node (node_reporter.py); dbt's target/ files kept per flow run whatever
happens (artifact_store.py); the summary artifact; and a failure that says what failed.
A flow-level retry re-runs only what the previous attempt left failed or skipped.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from dbt.cli.main import dbtRunner
from dbt.version import __version__ as dbt_version
from prefect import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.utilities.asyncutils import run_coro_as_sync

from dbt_runtime import artifact_store, guards, notify, packages, partial_parse
from dbt_runtime.failures import Failure, failure_of
from dbt_runtime.invocation import DbtCommand, DbtInvocation, require_selected_nodes
from dbt_runtime.node_reporter import run_dbt_with_node_reporting
from dbt_runtime.profiles import (
    RunProfile,
    load_profiles,
    run_profile,
    secrets_in_environment,
)
from dbt_runtime.project import TARGET_DIR, profile_name, project_dir_in_use, tenant
from dbt_runtime.resume import RESUMABLE_COMMANDS
from dbt_runtime.summary import RunSummary, summarize

# Commands whose failed nodes `dbt retry` can re-run (the ones a crashed run can resume).
RETRYABLE_COMMANDS = frozenset(RESUMABLE_COMMANDS)


def run_flow(invocation: DbtInvocation, timeout_seconds: float) -> dict[str, int] | State:
    """The flow's body: the run's profile, then dbt under the guards; a selection that ran no
    node fails (NothingSelected) instead of succeeding silently."""
    logger = get_run_logger()
    target = invocation.target.value
    # profiles.yml and its blocks are read once, here; a missing block fails before anything
    # waits, naming the script that registers it.
    # The tenant's project (fixed by its deployment: WG_TENANT) and the profile it names.
    project_dir = project_dir_in_use()
    profile = run_coro_as_sync(
        run_profile(load_profiles(project_dir), profile_name(project_dir), target)
    )
    result = guards.guarded_run(
        invocation.target,
        lambda: run_dbt(invocation, profile),
        timeout_seconds,
        profile,
        invocation.label,
        logger.info,
        flow_run.id,
    )
    require_selected_nodes(invocation, guards.executed_node_count(result))
    return result


def run_dbt(invocation: DbtInvocation, profile: RunProfile) -> dict[str, int] | State:
    """Run one validated invocation through prefect-dbt's runner with the run's `profile`.

    Whatever happens, dbt's target/ files are kept per flow run and a summary artifact is
    published. An expected dbt failure returns a Failed state whose message names the failed
    nodes (no traceback); an unreachable warehouse is raised so the guards can retry it.
    """
    logger = get_run_logger()
    # dbt's partial-parse state holds absolute paths: run from a path stable across runs.
    prefix = tenant().artifacts_prefix
    project_dir = partial_parse.stable_project_dir(
        project_dir_in_use(), invocation.target.value, prefix
    )
    target_dir = project_dir / TARGET_DIR
    flow_run_id = str(flow_run.id or "no-flow-run")
    store = _artifact_store(logger)
    invocation = _continue_previous_attempt(invocation, store, flow_run_id, flow_run.run_count)
    with tempfile.TemporaryDirectory(prefix="wg-profiles-") as tmp:
        profiles_dir = profile.write(Path(tmp))
        _prepare_target_dir(target_dir, invocation)
        _keep_start(store, invocation, flow_run_id, logger)
        _partial_parse(store, "restore", invocation, project_dir, logger)
        if invocation.note:
            logger.info("%s", invocation.note)
        logger.info("Running %s in %s", invocation.label, project_dir)
        log_dir = Path(tmp) / "logs"
        error: Exception | None = None
        try:
            _install_packages(store, project_dir, profiles_dir, logger)
            # prefect-dbt's runner with a task run per node, reported off dbt's threads
            # (dbt_runtime/node_reporter.py); failures are read from run_results.json below.
            # Secrets exist (as DBT_ENV_SECRET_*) only while dbt runs (profiles.py).
            with secrets_in_environment(profile):
                run_dbt_with_node_reporting(
                    invocation.args,
                    project_dir,
                    profiles_dir,
                    raise_on_failure=False,
                    on_first_node=lambda: _keep_manifest(
                        store, invocation, flow_run_id, target_dir
                    ),
                    scrub=profile.scrub,
                    log_path=str(log_dir),
                )
        except Exception as exc:  # dbt's own errors (parse, compile) arrive as ValueError
            error = exc
        finally:  # success, failure, timeout or interrupt: keep what dbt wrote
            kept = _keep_artifacts(store, invocation, flow_run_id, target_dir, log_dir, logger)
            _partial_parse(store, "keep", invocation, project_dir, logger)
        run_results = target_dir / "run_results.json"
        summary = (
            summarize(json.loads(run_results.read_text()), invocation.command.value)
            if run_results.is_file()
            else None
        )
    if error is not None and profile.secrets:  # dbt's exception text is not masked by dbt
        error = type(error)(profile.scrub(str(error)))
    failure = failure_of(invocation.label, summary, error)
    _publish(invocation, summary, failure, kept, logger)
    if failure is None:
        notify.report_warnings(invocation.target.value, summary)  # notifications.yaml `warned`
        counts = summary.counts if summary else {}
        logger.info("%s finished: %s", invocation.label, counts or "no nodes executed")
        return counts
    message = failure.message(
        f"Kept artifacts: python -m migration artifacts --flow-run {flow_run_id}\n"
        f"Rerun only what failed: command=retry state=flow-run:{flow_run_id}"
    )
    if failure.transient:
        # An unreachable warehouse: raised for the guards to retry (and, when retries are
        # exhausted, to name the account). Refused credentials or a lock fail below like any
        # expected failure: a retry cannot help and a traceback would hide the reason.
        raise RuntimeError(message) from error
    logger.error(message)
    return Failed(message=message)


def _artifact_store(logger: Any) -> Any:
    try:
        return artifact_store.load_store()
    except artifact_store.ArtifactStoreError as exc:
        # The build matters more than its artifacts: run, but say loudly what is lost.
        logger.warning("dbt artifacts of this run will NOT be kept: %s", exc)
        return None


def _continue_previous_attempt(
    invocation: DbtInvocation, store: Any, flow_run_id: str, attempt: int
) -> DbtInvocation:
    """On a flow-level retry, re-run only what the previous attempt left failed or skipped."""
    if attempt <= 1 or store is None or invocation.command not in RETRYABLE_COMMANDS:
        return invocation
    try:
        kept = artifact_store.find_kept_run(store, flow_run_id, [invocation.target.value])
    except artifact_store.ArtifactStoreError:
        return invocation  # the previous attempt never reached dbt: run it whole
    previous = artifact_store.fetch_kept_run(
        store, kept, artifact_store.state_cache_dir(flow_run_id)
    )
    if not artifact_store.has_retryable_nodes(previous / "run_results.json"):
        return invocation
    get_run_logger().info(
        "Attempt %s: re-running only the nodes attempt %s left failed or skipped (dbt retry)",
        attempt,
        attempt - 1,
    )
    args = ("retry", "--target", invocation.target.value)
    return DbtInvocation(DbtCommand.retry, invocation.target, args, retry_from=previous)


def _prepare_target_dir(target_dir: Path, invocation: DbtInvocation) -> None:
    """No stale run_results/manifest from an earlier run; for retry, the retried run's."""
    for name in artifact_store.KEPT_FILES:
        (target_dir / name).unlink(missing_ok=True)
    if invocation.retry_from is not None:
        artifact_store.place_for_retry(invocation.retry_from, target_dir)


def _run_facts(invocation: DbtInvocation) -> dict[str, Any]:
    return {
        "args": list(invocation.args),
        "parameters": dict(invocation.parameters),
        "attempt": flow_run.run_count,
    }


def _keep_start(store: Any, invocation: DbtInvocation, flow_run_id: str, logger: Any) -> None:
    """Record the run before dbt starts: a crashed run is then found and resumable."""
    if store is None:
        return
    try:
        artifact_store.keep_run_start(
            store, invocation.target.value, flow_run_id, _run_facts(invocation)
        )
    except Exception as exc:  # never let storage stop the build
        logger.warning("could not record the run in %s: %s", artifact_store.artifacts_block(), exc)


def _partial_parse(
    store: Any, action: str, invocation: DbtInvocation, project_dir: Path, logger: Any
) -> None:
    """Restore dbt's partial-parse state before dbt (partial_parse.py), keep it after."""
    if store is None:
        return
    target, prefix = invocation.target.value, tenant().artifacts_prefix
    try:
        if action == "restore":
            if partial_parse.restore(store, target, project_dir, project_dir / TARGET_DIR, prefix):
                logger.info("Restored dbt's partial-parse state of the last %s run", target)
        else:
            partial_parse.keep(store, target, project_dir, project_dir / TARGET_DIR, prefix)
    except Exception as exc:  # a cache: never let it fail the run
        logger.warning("dbt partial-parse state not %sd: %s", action, exc)


def _install_packages(store: Any, project_dir: Path, profiles_dir: Path, logger: Any) -> None:
    """`dbt deps` before dbt runs, as dbt Cloud did; cached by the lock's hash (packages.py)."""

    def deps() -> None:
        args = ["deps", "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir)]
        result = dbtRunner().invoke(args)
        if not result.success:
            raise RuntimeError(f"dbt deps failed: {result.exception or 'see its log lines'}")

    ready = packages.ensure_packages(store, project_dir, deps, dbt_version)
    if ready is not None:
        logger.info("dbt packages %s (%s)", ready.how, ready.key)


def _keep_manifest(
    store: Any, invocation: DbtInvocation, flow_run_id: str, target_dir: Path
) -> None:
    """As dbt starts executing: its manifest, so a crash can be resumed (dbt_runtime/resume.py)."""
    if store is not None:
        manifest = {"manifest.json": target_dir / "manifest.json"}
        artifact_store.keep_run_files(
            store, invocation.target.value, flow_run_id, manifest, _run_facts(invocation)
        )


def _keep_artifacts(
    store: Any,
    invocation: DbtInvocation,
    flow_run_id: str,
    target_dir: Path,
    log_dir: Path,
    logger: Any,
) -> artifact_store.KeptRun | None:
    if store is None:
        return None
    try:
        kept = artifact_store.keep_run_artifacts(
            store,
            invocation.target.value,
            flow_run_id,
            target_dir,
            log_dir / artifact_store.LOG_FILE,
            _run_facts(invocation),
        )
    except Exception as exc:  # never let storage hide dbt's own outcome
        block = artifact_store.artifacts_block()
        logger.warning("could not keep dbt artifacts in %s: %s", block, exc)
        return None
    logger.info("Kept %s at %s", ", ".join(kept.files) or "no files", kept.location)
    return kept


def _publish(
    invocation: DbtInvocation,
    summary: RunSummary | None,
    failure: Failure | None,
    kept: artifact_store.KeptRun | None,
    logger: Any,
) -> None:
    """The run summary (table artifact) and a link to the kept files, on every run."""
    from prefect.artifacts import create_link_artifact, create_table_artifact

    target = invocation.target.value
    keys = tenant().artifact_key  # per tenant: one tenant's latest summary never hides another's
    header = summary.header() if summary else f"{invocation.label}: dbt wrote no run_results.json"
    if failure is not None:
        header += f"\n\n**Failed: {failure.kind.value}**"
    try:
        create_table_artifact(
            table=summary.table() if summary else [],
            key=keys("summary", target),
            description=header,
        )
        if kept is not None:
            create_link_artifact(
                link=kept.location,
                link_text=f"dbt artifacts: {', '.join(kept.files)}",
                key=keys("artifacts", target),
                description=(
                    f"Fetch: `python -m migration artifacts --flow-run {kept.flow_run_id} "
                    "--dest ./run-artifacts`"
                ),
            )
    except Exception as exc:  # an artifact API hiccup must not change the run's outcome
        logger.warning("could not publish the run summary: %s", exc)
    if summary is not None:
        logger.info("%s", summary.header())
        for row in summary.failed + summary.skipped:
            logger.info("  %s %s %s", row.status, row.unique_id, row.message)
