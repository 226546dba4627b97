"""dbt_runtime/dbt_cloud.py through prefect-dbt's real client, over real HTTPS on loopback.

The fake (tests/fakes/dbt_cloud_server.py) speaks the Admin API v2 endpoints the client calls;
nothing in the client is patched: DbtCloudCredentials(domain=127.0.0.1:PORT) and SSL_CERT_FILE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect_dbt.cloud import DbtCloudCredentials

from dbt_runtime.dbt_cloud import (
    RUN_SUCCESS,
    DbtCloud,
    DbtCloudError,
    fetch_last_successful,
    run_sync,
)
from tests.fakes.dbt_artifacts import manifest, node, run_results
from tests.fakes.dbt_cloud_server import ERROR, FakeDbtCloud

pytestmark = pytest.mark.parity

JOB = 70403103921001
SEED = node("raw_brands", "seed")
DIM = node("dim_brand", depends_on=[SEED["unique_id"]])
TEST = node("unique_dim_brand_id", "test", depends_on=[DIM["unique_id"]])
MANIFEST = manifest(SEED, DIM, TEST)


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDbtCloud]:
    server = FakeDbtCloud(tmp_path / "dbt-cloud").start()
    for key, value in server.client_env().items():
        monkeypatch.setenv(key, value)
    try:
        yield server
    finally:
        server.stop()


def credentials(server: FakeDbtCloud, token: str | None = None) -> DbtCloudCredentials:
    return DbtCloudCredentials(
        api_key=token or server.api_token, account_id=server.account_id, domain=server.domain
    )


def seeded_job(server: FakeDbtCloud) -> int:
    server.add_job(JOB, execute_steps=["dbt source freshness", "dbt seed", "dbt build"])
    freshness = {
        "sources.json": {"results": [{"unique_id": "source.wg.raw.brands", "status": "error"}]}
    }
    seed = {
        "manifest.json": MANIFEST,
        "run_results.json": run_results({SEED["unique_id"]: "success"}, which="seed"),
    }
    build = {
        "manifest.json": MANIFEST,
        "run_results.json": run_results({DIM["unique_id"]: "success", TEST["unique_id"]: "pass"}),
    }
    # An older success, a newer failure, and the newest success: the one parity must use.
    server.add_run(
        JOB,
        run_id=201,
        steps=[freshness, seed, seed | {"run_results.json": run_results({}, which="build")}],
    )
    server.add_run(JOB, run_id=202, steps=[freshness, seed, build], status=ERROR)
    return server.add_run(
        JOB, run_id=203, steps=[freshness, seed, build],
        step_statuses=[ERROR, RUN_SUCCESS, RUN_SUCCESS],
    )  # fmt: skip


def test_last_successful_run_combines_step_artifacts(cloud: FakeDbtCloud, tmp_path: Path):
    run_id = seeded_job(cloud)
    artifacts = fetch_last_successful(JOB, tmp_path / "baseline", credentials(cloud))

    assert artifacts.origin == f"dbt-cloud:{JOB} (run {run_id})"
    assert {uid: r.status for uid, r in artifacts.results().items()} == {
        SEED["unique_id"]: "success",
        DIM["unique_id"]: "success",
        TEST["unique_id"]: "pass",
    }
    assert [i.label for i in artifacts.invocations] == ["step 5 `dbt seed`", "step 6 `dbt build`"]
    freshness_note = next(n for n in artifacts.notes if "dbt source freshness" in n)
    assert "did not pass (dbt Cloud does not fail the job for it)" in freshness_note
    assert "1 source(s) checked (1 error)" in freshness_note
    # Steps are fetched by their run_steps index (clone/profile/deps come first), per step.
    artifact_calls = [
        (r.path, r.query.get("step")) for r in cloud.requests if "/artifacts/" in r.path
    ]
    assert (f"/runs/{run_id}/artifacts/sources.json", ["4"]) in artifact_calls
    assert (f"/runs/{run_id}/artifacts/run_results.json", ["6"]) in artifact_calls
    runs_query = next(r.query for r in cloud.requests if r.path == "/runs/")
    assert runs_query["status"] == ["10"] and runs_query["order_by"] == ["-finished_at"]
    assert (tmp_path / "baseline" / "step-6" / "manifest.json").is_file()


def test_runs_are_listed_across_pages_newest_first(cloud: FakeDbtCloud):
    cloud.add_job(JOB, execute_steps=["dbt build"])
    step = [{"run_results.json": run_results({})}]
    ids = [
        cloud.add_run(JOB, run_id=300 + i, steps=step, status=RUN_SUCCESS if i % 3 else ERROR)
        for i in range(7)
    ]

    async def listed(client: DbtCloud) -> list[int]:
        return [run.id async for run in client.list_runs(JOB, status=RUN_SUCCESS, page_size=2)]

    got = run_sync(listed, credentials(cloud))
    expected = sorted((i for n, i in enumerate(ids) if n % 3), reverse=True)
    assert got == expected and len(got) == 4
    offsets = [r.query["offset"][0] for r in cloud.requests if r.path == "/runs/"]
    assert offsets == ["0", "2"]


def test_a_rejected_token_says_to_re_register_the_block(cloud: FakeDbtCloud, tmp_path: Path):
    seeded_job(cloud)
    with pytest.raises(DbtCloudError, match="rejected the API token \\(401\\)") as error:
        fetch_last_successful(JOB, tmp_path, credentials(cloud, token="dbtc_wrong"))
    assert "python -m blocks.register_dbt_cloud" in str(error.value)
    assert "dbtc_wrong" not in str(error.value)


def test_an_unknown_job_is_a_404_naming_it(cloud: FakeDbtCloud, tmp_path: Path):
    with pytest.raises(DbtCloudError, match="job 999 not found \\(404\\)"):
        fetch_last_successful(999, tmp_path, credentials(cloud))


def test_a_transient_5xx_is_retried(cloud: FakeDbtCloud, tmp_path: Path):
    seeded_job(cloud)
    fault = cloud.inject(503, method="GET", path="/artifacts/manifest.json", times=1)
    artifacts = fetch_last_successful(JOB, tmp_path, credentials(cloud))
    assert fault.hits == 1
    assert DIM["unique_id"] in artifacts.results()


def test_a_persistent_5xx_fails_after_retries(cloud: FakeDbtCloud, tmp_path: Path):
    seeded_job(cloud)
    cloud.inject(500, path="/runs/")
    with pytest.raises(DbtCloudError, match="failed with HTTP 500 after 3 attempt"):
        fetch_last_successful(JOB, tmp_path, credentials(cloud))


def test_a_job_without_successful_runs_is_named(cloud: FakeDbtCloud, tmp_path: Path):
    cloud.add_job(JOB, execute_steps=["dbt build"])
    cloud.add_run(JOB, steps=[{"run_results.json": run_results({})}], status=ERROR)
    with pytest.raises(DbtCloudError, match=f"job {JOB} .* has no successful run"):
        fetch_last_successful(JOB, tmp_path, credentials(cloud))


def test_jobs_are_read_and_updated_and_post_faults_surface(cloud: FakeDbtCloud):
    cloud.add_job(JOB, execute_steps=["dbt build"])

    async def pause(client: DbtCloud) -> dict:
        job = await client.get_job(JOB)
        job["triggers"]["schedule"] = False
        return await client.update_job(JOB, job)

    assert run_sync(pause, credentials(cloud))["triggers"]["schedule"] is False
    assert cloud.jobs[JOB]["triggers"]["schedule"] is False

    cloud.fail_on_post(1, status=400)
    with pytest.raises(DbtCloudError, match=r"update of job .* failed with HTTP 400"):
        run_sync(pause, credentials(cloud))
