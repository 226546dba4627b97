"""Cutover and rollback: the real Prefect server on one side, a loopback dbt Cloud on the other.

The invariant under test: after every command, including ones that fail midway, exactly one
scheduler is live for each job, and the report says which.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect_dbt.cloud import DbtCloudCredentials

from dbt_runtime import project
from migration import scheduler, schedules
from migration.cli import main as cli
from migration.cutover import JobPair, Sides, job_pairs, switch
from migration.dbt_cloud_jobs import DbtCloudJobs, load_export, scheduled_jobs
from migration.local_stack import LocalStack
from tests.day_one import restore_day_one
from tests.fakes.dbt_cloud_server import FakeDbtCloud
from tests.prefect_api import api_request

pytestmark = pytest.mark.integration


@pytest.fixture
def dbt_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDbtCloud]:
    """The exported jobs, live on a loopback dbt Cloud with their schedules ON."""
    server = FakeDbtCloud(tmp_path / "dbt-cloud").start()
    try:
        for job in scheduled_jobs(load_export()):
            fields = {k: v for k, v in job.items() if k not in ("id", "execute_steps")}
            server.add_job(int(job["id"]), execute_steps=job["execute_steps"], **fields)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        yield server
    finally:
        server.stop()


@pytest.fixture
def sides(stack: LocalStack, dbt_cloud: FakeDbtCloud) -> Iterator[Sides]:
    """Both schedulers before cutover: dbt Cloud ON, Prefect schedules paused (parameters kept).

    The deployment is shared by the session: it is put back to day one (dbt Cloud recorded as
    running every job, Prefect's schedules inactive).
    """
    credentials = DbtCloudCredentials(
        api_key=dbt_cloud.api_token, account_id=dbt_cloud.account_id, domain=dbt_cloud.domain
    )
    for spec in project.schedules():
        schedules.set_active(spec.slug, False)
    try:
        yield Sides(DbtCloudJobs(credentials))
    finally:
        restore_day_one()


def posts(server: FakeDbtCloud) -> int:
    return sum(r.method == "POST" for r in server.requests)


def assert_one_scheduler(sides: Sides, pairs: list[JobPair], live: str) -> None:
    declared = {s.slug: s for s in project.schedules()}
    for pair in pairs:
        state = sides.read(pair)
        assert state.invariant_holds, state
        assert state.live == [live], (pair, state)
        # whichever side is live, the Prefect schedule still builds its own target
        assert state.prefect_parameters == declared[pair.slug].parameters


def test_dry_run_cutover_rollback_and_rerun_keep_one_scheduler_per_job(
    sides: Sides, dbt_cloud: FakeDbtCloud
) -> None:
    pairs = job_pairs(None)
    assert {p.slug for p in pairs} == {s.slug for s in project.schedules()}

    out = io.StringIO()
    dry = switch(sides, pairs, "cutover", apply=False, out=out)
    assert dry.exit_code == 0 and posts(dbt_cloud) == 0
    assert "would activate Prefect schedule" in out.getvalue()
    assert_one_scheduler(sides, pairs, "dbt Cloud")

    out = io.StringIO()
    report = switch(sides, pairs, "cutover", apply=True, out=out)
    assert report.exit_code == 0, out.getvalue()
    assert_one_scheduler(sides, pairs, "Prefect")
    assert all(j["triggers"]["schedule"] is False for j in dbt_cloud.jobs.values())
    # the job was POSTed back whole: nothing but the trigger changed
    assert all(j["execute_steps"] == ["dbt build"] for j in dbt_cloud.jobs.values())
    assert "exactly one scheduler live: Prefect" in out.getvalue()
    # and every later deploy reads who runs each job from the record the cutover wrote
    assert {p.slug: scheduler.read_record(p.slug) for p in pairs} == dict.fromkeys(
        (p.slug for p in pairs), scheduler.PREFECT
    )

    before = posts(dbt_cloud)
    out = io.StringIO()
    assert switch(sides, pairs, "cutover", apply=True, out=out).exit_code == 0
    assert posts(dbt_cloud) == before, "a rerun must change nothing"
    assert out.getvalue().count("already so, skipped") == 2 * len(pairs)

    out = io.StringIO()
    assert switch(sides, pairs, "rollback", apply=True, out=out).exit_code == 0, out.getvalue()
    assert_one_scheduler(sides, pairs, "dbt Cloud")
    assert {scheduler.read_record(p.slug) for p in pairs} == {scheduler.DBT_CLOUD}


def test_cutover_whose_dbt_cloud_update_fails_undoes_prefect_and_says_so(
    sides: Sides, dbt_cloud: FakeDbtCloud
) -> None:
    pairs = job_pairs(None)
    first = pairs[0]
    # every POST fails (the client retries 5xx): dbt Cloud cannot be switched off
    dbt_cloud.inject(503, method="POST", path="/jobs/")
    out = io.StringIO()
    report = switch(sides, pairs, "cutover", apply=True, out=out)
    text = out.getvalue()

    assert report.exit_code == 1, text
    assert report.failed and report.invariant_holds
    assert "step 1: activate Prefect schedule" in text and "done" in text
    assert f"step 2 (disable dbt Cloud schedule of job {first.job_id}) failed" in text
    assert f"undo: pause Prefect schedule {first.slug} (keep parameters): done" in text
    assert "FAILED midway; the invariant holds" in text
    assert f"job {pairs[1].job_id} {pairs[1].job_name!r}: not attempted" in text
    assert_one_scheduler(sides, pairs, "dbt Cloud")

    dbt_cloud.clear_faults()  # the cause fixed, a rerun completes
    assert switch(sides, pairs, "cutover", apply=True, out=io.StringIO()).exit_code == 0
    assert_one_scheduler(sides, pairs, "Prefect")


def test_rollback_failing_midway_leaves_each_job_with_one_scheduler(
    sides: Sides, dbt_cloud: FakeDbtCloud
) -> None:
    pairs = job_pairs(None)
    assert switch(sides, pairs, "cutover", apply=True, out=io.StringIO()).exit_code == 0
    # the first job's re-enable succeeds; every attempt at the second job's fails
    for nth in (2, 3, 4):
        dbt_cloud.fail_on_post(nth, status=503)
    out = io.StringIO()
    report = switch(sides, pairs, "rollback", apply=True, out=out)
    text = out.getvalue()

    assert report.exit_code == 1, text
    assert report.invariant_holds
    assert_one_scheduler(sides, pairs[:1], "dbt Cloud")  # rolled back
    assert_one_scheduler(sides, pairs[1:], "Prefect")  # untouched: Prefect still runs it
    assert f"step 1 (enable dbt Cloud schedule of job {pairs[1].job_id}) failed" in text
    assert "HTTP 503" in text
    assert "FAILED midway; the invariant holds" in text


def test_import_jobs_reads_the_api_and_checks_prefect_yaml(
    stack: LocalStack,
    dbt_cloud: FakeDbtCloud,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    block = "wg-dbt-cloud-import-test"
    block_id = DbtCloudCredentials(
        api_key=dbt_cloud.api_token, account_id=dbt_cloud.account_id, domain=dbt_cloud.domain
    ).save(block, overwrite=True)
    prod = next(p for p in job_pairs(None) if p.slug == "wg-prod-nightly")
    args = ["import-jobs", "--job-id", str(prod.job_id), "--credentials-block", block, "--check"]
    try:
        assert cli(args) == 0, capsys.readouterr()
        assert "- slug: wg-prod-nightly" in capsys.readouterr().out

        dbt_cloud.jobs[prod.job_id]["schedule"] = {"cron": "0 4 * * *"}  # changed in dbt Cloud
        dbt_cloud.jobs[prod.job_id]["execute_steps"] = ["dbt source freshness", "dbt build"]
        assert cli(args) == 1
        out = capsys.readouterr().out
        assert "wg-prod-nightly: cron: prefect.yaml '0 5 * * *', dbt Cloud '0 4 * * *'" in out
        assert "CANNOT EXPRESS: step 'dbt source freshness'" in out

        # --export: the account's jobs, read through the API, become the export file
        export = tmp_path / "jobs.json"
        assert cli(["import-jobs", "--export", str(export), "--credentials-block", block]) == 0
        assert "wg-prod-nightly" in capsys.readouterr().out
        written = {int(j["id"]): j for j in load_export(export)}
        assert written == dbt_cloud.jobs
        assert written[prod.job_id]["schedule"] == {"cron": "0 4 * * *"}
    finally:
        api_request("DELETE", f"{stack.api_url}/block_documents/{block_id}")
