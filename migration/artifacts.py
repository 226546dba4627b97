"""`python -m migration artifacts`: list and fetch the dbt artifacts kept per flow run.

Every run of the flow keeps run_results.json, manifest.json and dbt.log (plus sources.json /
catalog.json when dbt wrote them) under `<target>/<flow_run_id>/` in the storage block named in
flows/artifact_store.py. These functions are also the API other tooling uses (parity):

    fetch_run_artifacts(flow_run_id, dest) -> dest
    latest_run_artifacts(target, dest, successful=True) -> (flow_run_id, dest)

Heavy imports (Prefect) happen inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SUCCESSFUL_STATES = ["COMPLETED"]
FINISHED_STATES = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


def fetch_run_artifacts(flow_run_id: str, dest: Path) -> Path:
    """Copy the kept files of one flow run into `dest` (created); return `dest`.

    Raises flows.artifact_store.ArtifactStoreError naming the run and block when none were kept.
    """
    from flows import artifact_store

    store = artifact_store.load_store()
    kept = artifact_store.find_kept_run(store, flow_run_id)
    return artifact_store.fetch_kept_run(store, kept, dest)


def latest_run_artifacts(target: str, dest: Path, successful: bool = True) -> tuple[str, Path]:
    """Fetch the newest (Completed, unless successful=False) run on `target` into `dest`."""
    from flows import artifact_store
    from flows.dbt_williamgrant import FLOW_NAME
    from flows.invocation import Target

    target = Target(target).value
    store = artifact_store.load_store()
    states = SUCCESSFUL_STATES if successful else FINISHED_STATES
    kept = artifact_store.latest_kept_run(store, target, states, FLOW_NAME)
    return kept.flow_run_id, artifact_store.fetch_kept_run(store, kept, dest)


def main(args: argparse.Namespace) -> int:
    from flows import artifact_store

    try:
        store = artifact_store.load_store()
        if args.flow_run:
            kept = artifact_store.find_kept_run(store, args.flow_run)
        else:
            states = SUCCESSFUL_STATES if args.successful else FINISHED_STATES
            from flows.dbt_williamgrant import FLOW_NAME

            kept = artifact_store.latest_kept_run(store, args.target, states, FLOW_NAME)
    except artifact_store.ArtifactStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"flow run {kept.flow_run_id} (target {kept.target}): {kept.location}")
    for name in kept.files:
        print(f"  {name}")
    if args.dest:
        dest = artifact_store.fetch_kept_run(store, kept, args.dest)
        print(f"fetched {len(kept.files)} files to {dest}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from flows.invocation import Target

    parser = sub.add_parser(
        "artifacts",
        help="list / fetch the dbt artifacts (run_results, manifest, dbt.log) kept per flow run",
        description=(
            "List (and with --dest fetch) the dbt artifacts a flow run kept. Examples: "
            "`--flow-run <id> --dest ./run-artifacts`, `--latest --target prod --successful`."
        ),
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--flow-run", metavar="ID", help="the flow run id (from the UI or logs)")
    which.add_argument("--latest", action="store_true", help="the newest run on --target")
    parser.add_argument(
        "--target", choices=[t.value for t in Target], help="with --latest: the target"
    )
    parser.add_argument(
        "--successful", action="store_true", help="with --latest: only Completed runs"
    )
    parser.add_argument("--dest", type=Path, help="copy the files into this directory")

    def handler(args: argparse.Namespace) -> int:
        if args.latest and not args.target:
            parser.error("--latest needs --target (dev, prod or local)")
        return main(args)

    parser.set_defaults(handler=handler)
