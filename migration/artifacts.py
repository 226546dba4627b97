"""`python -m migration artifacts`: list and fetch the dbt artifacts kept per flow run.

Every run of the flow keeps run_results.json, manifest.json and dbt.log (plus sources.json /
catalog.json when dbt wrote them) under `<target>/<flow_run_id>/` in the storage block named by
the WG_ARTIFACTS_BLOCK setting (dbt_runtime/artifact_store.py, which also has the API other
tooling uses: `fetch_run_artifacts`, `latest_run_artifacts`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dbt_runtime import artifact_store
from dbt_runtime.invocation import FINISHED_STATE_TYPES, StateKeyword, Target


def main(args: argparse.Namespace) -> int:
    if args.block:  # a prefect.yaml build step: what the deployment's runs are told to use
        print(artifact_store.artifacts_block())
        return 0
    try:
        store = artifact_store.load_store()
        if args.flow_run:
            kept = artifact_store.find_kept_run(store, args.flow_run)
        else:
            states = (
                StateKeyword.last_success.state_types if args.successful else FINISHED_STATE_TYPES
            )
            kept = artifact_store.latest_kept_run(store, args.target, states)
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
    which.add_argument(
        "--block", action="store_true", help="print the storage block runs keep artifacts in"
    )
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
