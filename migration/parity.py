"""`python -m migration parity --baseline <DIR | dbt-cloud:JOB_ID>
                            --candidate <DIR | flow-run:ID | latest:TARGET>
                            [--report FILE.md] [--json FILE.json]`

The comparison itself is dbt_runtime/parity.py (the parity flow runs the same). Exit codes:
0 identical or every difference explained; 1 an unexplained difference or a failed candidate
node; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from dbt_runtime.dbt_artifacts import ArtifactError
from dbt_runtime.parity import (
    EXIT_BAD_INPUT,
    BadInput,
    compare,
    render_markdown,
    resolve_baseline,
    resolve_candidate,
)


def run(baseline: str, candidate: str, report_md: Path | None, report_json: Path | None) -> int:
    with tempfile.TemporaryDirectory(prefix="wg-parity-") as tmp:
        try:
            base = resolve_baseline(baseline, Path(tmp))
        except (ArtifactError, BadInput) as exc:
            print(
                f"error: --baseline: {exc}" if isinstance(exc, ArtifactError) else f"error: {exc}",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        try:
            cand = resolve_candidate(candidate, Path(tmp))
        except (ArtifactError, BadInput) as exc:
            print(
                f"error: --candidate: {exc}" if isinstance(exc, ArtifactError) else f"error: {exc}",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    report = compare(base, cand)
    text = render_markdown(report)
    print(text)
    for path, content in ((report_md, text), (report_json, None)):
        if path is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            content if content is not None else json.dumps(report.to_json(), indent=2) + "\n"
        )
    return report.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "parity",
        help="compare dbt Cloud's last successful run with a Prefect run (nodes and statuses)",
        description=(
            "Exit 0: identical or every difference explained; 1: an unexplained difference or a "
            "failed candidate node; 2: bad input. dbt-cloud:JOB_ID reads the DbtCloudCredentials "
            "block named by WG_DBT_CLOUD_BLOCK (default wg-dbt-cloud)."
        ),
    )
    parser.add_argument(
        "--baseline",
        required=True,
        metavar="DIR | dbt-cloud:JOB_ID",
        help="dbt Cloud's side: a directory with manifest.json + run_results.json, "
        "or the last successful run of a dbt Cloud job",
    )
    parser.add_argument(
        "--candidate",
        required=True,
        metavar="DIR | flow-run:ID | latest:TARGET",
        help="Prefect's side: a directory, a flow run's kept artifacts, or the "
        "latest successful run for a target",
    )
    parser.add_argument("--report", type=Path, metavar="FILE.md", help="also write the report")
    parser.add_argument("--json", type=Path, metavar="FILE.json", help="machine-readable report")
    parser.set_defaults(
        handler=lambda args: run(args.baseline, args.candidate, args.report, args.json)
    )
