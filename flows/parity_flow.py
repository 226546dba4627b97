"""The parity check as a Prefect flow: the same comparison as `python -m migration parity`,
with the report published as a markdown artifact on the flow run (key `parity-report`).

Not deployed by prefect.yaml (which holds the dbt deployments, one per tenant); run it ad hoc
or serve it (WG_TENANT picks the tenant whose kept runs `latest:TARGET` reads):

    python -m flows.parity_flow --baseline dbt-cloud:70403103921001 --candidate latest:prod

The run ends Failed when parity does not hold (an unexplained difference or a failed candidate
node) or the input is bad, so a notification on Failed flow runs catches it; the artifact says
why either way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from dbt_runtime.dbt_artifacts import ArtifactError
from dbt_runtime.parity import (
    EXIT_OK,
    BadInput,
    compare,
    render_markdown,
    resolve_baseline,
    resolve_candidate,
)

ARTIFACT_KEY = "parity-report"


class ParityNotReached(RuntimeError):
    """Parity does not hold; the message is the verdict, the artifact has the details."""


@flow(name="dbt-parity-check", log_prints=True)
def parity_check(baseline: str, candidate: str) -> dict[str, Any]:
    """Compare a baseline (DIR or dbt-cloud:JOB_ID) with a candidate (DIR, flow-run:ID or
    latest:TARGET); publish the report; fail the run unless parity holds."""
    logger = get_run_logger()
    with tempfile.TemporaryDirectory(prefix="wg-parity-") as tmp:
        try:
            base = resolve_baseline(baseline, Path(tmp))
            cand = resolve_candidate(candidate, Path(tmp))
        except (ArtifactError, BadInput) as exc:
            create_markdown_artifact(
                key=ARTIFACT_KEY, markdown=f"# Parity: BAD INPUT\n\n{exc}\n",
                description="dbt Cloud vs Prefect parity",
            )  # fmt: skip
            raise ValueError(f"parity input: {exc}") from exc
    report = compare(base, cand)
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=render_markdown(report), description=report.verdict
    )
    logger.info(
        "%s (%d matching, %d differences)", report.verdict, report.matching, len(report.differences)
    )
    if report.exit_code != EXIT_OK:
        raise ParityNotReached(report.verdict)
    return report.to_json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.parity_flow", description=__doc__)
    parser.add_argument("--baseline", required=True, metavar="DIR | dbt-cloud:JOB_ID")
    parser.add_argument("--candidate", required=True, metavar="DIR | flow-run:ID | latest:TARGET")
    args = parser.parse_args(argv)
    state = parity_check(args.baseline, args.candidate, return_state=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
