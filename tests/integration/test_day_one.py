"""Exactly one scheduler per job from day one, through real deploys of prefect.yaml.

The session's Prefect server on one side, a loopback dbt Cloud holding the exported jobs on the
other, found through a DbtCloudCredentials block as in production. Every step is followed by a
real `prefect deploy --all` (`stack.deploy()`), which must keep who runs each job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect_dbt.cloud import DbtCloudCredentials

from dbt_runtime.settings import env_name
from migration import scheduler, schedules
from migration.cli import main as cli
from migration.cutover import job_pairs
from migration.dbt_cloud_jobs import load_export, scheduled_jobs
from migration.local_stack import LocalStack
from tests.day_one import restore_day_one
from tests.fakes.dbt_cloud_server import FakeDbtCloud
from tests.prefect_api import api_request

pytestmark = pytest.mark.integration

BLOCK = "wg-dbt-cloud-day-one-test"


@pytest.fixture
def dbt_cloud(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeDbtCloud]:
    """dbt Cloud with the exported jobs scheduled, reachable by this process and by the deploy's
    build steps (same environment); the stack is put back to day one afterwards."""
    server = FakeDbtCloud(tmp_path / "dbt-cloud").start()
    block_id = None
    try:
        for job in scheduled_jobs(load_export()):
            fields = {k: v for k, v in job.items() if k not in ("id", "execute_steps")}
            server.add_job(int(job["id"]), execute_steps=job["execute_steps"], **fields)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        monkeypatch.setenv(env_name("dbt_cloud_block"), BLOCK)
        block_id = DbtCloudCredentials(
            api_key=server.api_token, account_id=server.account_id, domain=server.domain
        ).save(BLOCK, overwrite=True)
        yield server
    finally:
        if block_id is not None:
            api_request("DELETE", f"{stack.api_url}/block_documents/{block_id}")
        server.stop()
        restore_day_one()


def live_per_job(server: FakeDbtCloud) -> dict[str, list[str]]:
    """slug -> the schedulers live for its job, read from both sides as a user would."""
    prefect = {s.slug: s.active for s in schedules.live_schedules()}
    return {
        pair.slug: [
            name
            for name, on in (
                ("dbt Cloud", server.jobs[pair.job_id]["triggers"]["schedule"]),
                ("Prefect", prefect[pair.slug]),
            )
            if on
        ]
        for pair in job_pairs(None)
    }


def test_deploys_keep_exactly_one_scheduler_per_job_through_cutover_and_rollback(
    stack: LocalStack, dbt_cloud: FakeDbtCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = job_pairs(None)
    prod = next(p for p in pairs if p.slug == "wg-prod-nightly")
    dbt_cloud_everywhere = {p.slug: ["dbt Cloud"] for p in pairs}
    prefect_everywhere = {p.slug: ["Prefect"] for p in pairs}

    # Day one: dbt Cloud runs the jobs; a deploy leaves Prefect's schedules inactive.
    stack.deploy()
    assert live_per_job(dbt_cloud) == dbt_cloud_everywhere

    # Someone records Prefect for prod (the UI's Variables page) while dbt Cloud still runs it:
    # the deploy fails, naming the job, the schedule and the fix, and activates nothing.
    scheduler.write_record(prod.slug, scheduler.PREFECT)
    with pytest.raises(RuntimeError) as refused:
        stack.deploy()
    assert f"refusing to deploy schedule {prod.slug} active" in str(refused.value)
    assert f"dbt Cloud job {prod.job_id}" in str(refused.value)
    assert f"python -m migration cutover --job-id {prod.job_id} --apply" in str(refused.value)
    assert live_per_job(dbt_cloud) == dbt_cloud_everywhere
    scheduler.write_record(prod.slug, scheduler.DBT_CLOUD)

    # Cutover: Prefect runs every job; the redeploy keeps it so.
    assert cli(["cutover", "--credentials-block", BLOCK, "--apply"]) == 0, capsys.readouterr()
    assert live_per_job(dbt_cloud) == prefect_everywhere
    stack.deploy()
    assert live_per_job(dbt_cloud) == prefect_everywhere

    # Rollback: dbt Cloud runs every job again; the redeploy does not turn Prefect's back on.
    assert cli(["rollback", "--credentials-block", BLOCK, "--apply"]) == 0, capsys.readouterr()
    assert live_per_job(dbt_cloud) == dbt_cloud_everywhere
    stack.deploy()
    assert live_per_job(dbt_cloud) == dbt_cloud_everywhere
    # and the live schedules still build their own targets
    assert cli(["schedules", "check"]) == 0, capsys.readouterr()
