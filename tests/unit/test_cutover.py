"""The cutover report: which scheduler is live, whether the invariant holds, the exit code."""

from __future__ import annotations

import pytest

from migration.cutover import JobOutcome, JobPair, SideState, SwitchReport, describe, job_pairs
from migration.dbt_cloud_jobs import JobImportError

PAIR = JobPair(1, "WG prod nightly", "wg-prod-nightly")


@pytest.mark.parametrize(
    ("dbt_cloud", "prefect", "verdict"),
    [
        (True, False, "exactly one scheduler live: dbt Cloud"),
        (False, True, "exactly one scheduler live: Prefect"),
        (True, True, "INVARIANT BROKEN: both live (duplicate runs)"),
        (False, False, "INVARIANT BROKEN: none live"),
        (None, True, "INVARIANT UNKNOWN"),
    ],
)
def test_the_report_names_the_live_scheduler_or_the_broken_invariant(
    dbt_cloud: bool | None, prefect: bool | None, verdict: str
) -> None:
    state = SideState(dbt_cloud, prefect, {"target": "prod"})
    assert verdict in describe(PAIR, state)
    assert state.invariant_holds == verdict.startswith("exactly one")


def test_exit_codes_separate_done_undone_failure_and_broken_invariant() -> None:
    ok, broken = SideState(False, True), SideState(True, True)

    def report(after: SideState, error: str | None) -> SwitchReport:
        return SwitchReport("cutover", True, (JobOutcome(PAIR, ok, after, (), error),))

    assert report(ok, None).exit_code == 0
    assert report(SideState(True, False), "step 2 failed").exit_code == 1
    assert report(broken, "step 2 failed").exit_code == 3


def test_jobs_map_to_prefect_yaml_slugs_and_unknown_ids_are_refused() -> None:
    pairs = job_pairs(None)
    assert [p.slug for p in pairs] == ["wg-prod-nightly", "wg-dev-weekday"]
    assert job_pairs([pairs[1].job_id]) == pairs[1:]
    with pytest.raises(JobImportError, match="12345"):
        job_pairs([12345])
