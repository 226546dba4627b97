"""`python -m migration parity` on artifacts of real dbt runs of the tenant project (DuckDB).

The runs (tests/integration/dbt_parity_runs.py) are made once per module: a full build, a build
with --exclude, a models-only run, a build with a broken model, a project version with a model
added, and a source freshness check. The CLI runs as operators run it (a subprocess), and its
exit code, report and JSON are what the tests check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime.project import REPO_ROOT
from tests.fakes.dbt_cloud_server import FakeDbtCloud
from tests.integration.dbt_parity_runs import ADDED_MODEL, EXCLUDE, DbtRuns, generate

pytestmark = [pytest.mark.integration, pytest.mark.parity]
PKG = "dbt_williamgrant"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> DbtRuns:
    return generate(tmp_path_factory.mktemp("dbt-parity-runs"))


def parity(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"parity-{uuid.uuid4().hex}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "migration", "parity", *args, "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env or dict(os.environ),
    )  # fmt: skip
    report = json.loads(out.read_text()) if out.exists() else None
    out.unlink(missing_ok=True)
    return proc, report


def kinds(report: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {d["unique_id"]: (d["kind"], d["explained"]) for d in report["differences"]}


def test_the_same_build_is_at_parity(runs: DbtRuns, tmp_path: Path):
    md = tmp_path / "report.md"
    proc, report = parity(
        "--baseline", str(runs.build), "--candidate", str(runs.build), "--report", str(md)
    )
    assert proc.returncode == 0, proc.stderr
    assert report is not None and report["differences"] == []
    assert report["matching"] == 47  # 25 built + 22 tests/unit tests in the tenant project
    assert proc.stdout.startswith("# Parity: AT PARITY: identical node sets and statuses")
    assert md.read_text() == proc.stdout.rstrip("\n") + "\n"


def test_an_excluded_subgraph_is_explained_by_the_selection(runs: DbtRuns):
    proc, report = parity("--baseline", str(runs.build), "--candidate", str(runs.exclude))
    assert proc.returncode == 0, proc.stdout
    assert report is not None
    found = kinds(report)
    assert found[f"model.{PKG}.fct_shipments"] == ("selection", True)
    assert found[f"model.{PKG}.mart_market_performance_monthly"] == ("selection", True)
    # Tests of the excluded models were dropped too (dbt's eager indirect selection).
    assert found[f"test.{PKG}.unique_fct_shipments_shipment_id.c7c159f82c"] == ("selection", True)
    assert all(kind == "selection" for kind, _ in found.values())
    assert f"outside the candidate's selection `dbt build --exclude {EXCLUDE}`" in proc.stdout


def test_a_models_only_run_explains_missing_tests_and_seeds_by_its_command(runs: DbtRuns):
    proc, report = parity("--baseline", str(runs.build), "--candidate", str(runs.run))
    assert proc.returncode == 0, proc.stdout
    assert report is not None
    by_type: dict[str, set[str]] = {}
    for d in report["differences"]:
        by_type.setdefault(d["resource_type"], set()).add(d["kind"])
    assert by_type == {
        "seed": {"command"}, "snapshot": {"command"}, "test": {"command"}, "unit_test": {"command"},
    }  # fmt: skip
    assert "which does not execute tests" in proc.stdout


def test_a_broken_model_fails_parity_and_explains_what_it_skipped(runs: DbtRuns):
    proc, report = parity("--baseline", str(runs.build), "--candidate", str(runs.broken))
    assert proc.returncode == 1
    assert report is not None
    assert report["candidate_failures"] == [f"model.{PKG}.dim_market"]
    found = kinds(report)
    assert found[f"model.{PKG}.dim_market"] == ("failed", False)
    assert found[f"model.{PKG}.mart_market_performance_monthly"] == ("skipped_upstream", True)
    assert proc.stdout.startswith("# Parity: NOT AT PARITY: 1 candidate node(s) failed")
    assert f"skipped: upstream failed: model.{PKG}.dim_market" in proc.stdout


def test_a_model_added_since_the_baseline_is_explained_and_removal_the_other_way(runs: DbtRuns):
    added = f"model.{PKG}.{Path(ADDED_MODEL).stem}"
    proc, report = parity("--baseline", str(runs.build), "--candidate", str(runs.added))
    assert proc.returncode == 0, proc.stdout
    assert report is not None and kinds(report) == {added: ("added", True)}

    proc, report = parity("--baseline", str(runs.added), "--candidate", str(runs.build))
    assert proc.returncode == 0, proc.stdout
    assert report is not None and kinds(report) == {added: ("removed", True)}


def test_bad_input_exits_2_saying_what(runs: DbtRuns, tmp_path: Path):
    proc, _ = parity("--baseline", str(tmp_path / "nowhere"), "--candidate", str(runs.build))
    assert proc.returncode == 2
    assert f"--baseline: {tmp_path / 'nowhere'}: no such directory" in proc.stderr

    proc, _ = parity("--baseline", str(runs.build), "--candidate", str(runs.freshness))
    assert proc.returncode == 2
    assert "missing run_results.json" in proc.stderr

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "manifest.json").write_text("<html>not json</html>")
    (garbage / "run_results.json").write_text((runs.build / "run_results.json").read_text())
    proc, _ = parity("--baseline", str(runs.build), "--candidate", str(garbage))
    assert proc.returncode == 2
    assert f"{garbage / 'manifest.json'}: not a dbt manifest.json: not JSON" in proc.stderr

    proc, _ = parity("--baseline", "dbt-cloud:abc", "--candidate", str(runs.build))
    assert proc.returncode == 2
    assert "JOB_ID must be the numeric dbt Cloud job id" in proc.stderr


# ---- dbt Cloud baseline and Prefect candidates: these need the session's Prefect server ------
@pytest.fixture
def dbt_cloud(tmp_path: Path, runs: DbtRuns) -> Iterator[FakeDbtCloud]:
    """A loopback dbt Cloud whose job ran `dbt source freshness` then `dbt build` (real files)."""
    server = FakeDbtCloud(tmp_path / "dbt-cloud").start()
    try:
        server.add_job(4242, execute_steps=["dbt source freshness", "dbt build"])
        freshness = {
            name: (runs.freshness / name).read_bytes() for name in ("manifest.json", "sources.json")
        }
        build = {
            name: (runs.build / name).read_bytes() for name in ("manifest.json", "run_results.json")
        }
        server.add_run(4242, steps=[freshness, build])
        yield server
    finally:
        server.stop()


def register_block(server: FakeDbtCloud, name: str, domain: str | None = None) -> None:
    env = {
        **os.environ,
        "DBT_CLOUD_API_TOKEN": server.api_token,
        "DBT_CLOUD_ACCOUNT_ID": str(server.account_id),
        "DBT_CLOUD_DOMAIN": domain or server.domain,
        "WG_DBT_CLOUD_BLOCK": name,
    }
    for _ in range(2):  # idempotent: registering again overwrites
        proc = subprocess.run(
            [sys.executable, "-m", "blocks.register_dbt_cloud"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"registered dbt-cloud-credentials/{name}" in proc.stdout


@pytest.mark.integration
def test_dbt_cloud_baseline_through_the_block(stack: Any, dbt_cloud: FakeDbtCloud, runs: DbtRuns):
    name = f"parity-{uuid.uuid4().hex[:8]}"
    register_block(dbt_cloud, name)
    env = {**os.environ, **dbt_cloud.client_env(), "WG_DBT_CLOUD_BLOCK": name}

    proc, report = parity("--baseline", "dbt-cloud:4242", "--candidate", str(runs.build), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report is not None and report["differences"] == []
    assert "dbt-cloud:4242 (run " in proc.stdout
    assert "`dbt source freshness` passed" in proc.stdout or "did not pass" in proc.stdout

    proc, _ = parity("--baseline", "dbt-cloud:4243", "--candidate", str(runs.build), env=env)
    assert proc.returncode == 2
    assert "job 4243 not found (404)" in proc.stderr

    dbt_cloud.inject(401)
    proc, _ = parity("--baseline", "dbt-cloud:4242", "--candidate", str(runs.build), env=env)
    assert proc.returncode == 2
    assert "rejected the API token (401)" in proc.stderr


@pytest.mark.integration
def test_unreachable_dbt_cloud_and_missing_block_exit_2(
    stack: Any, dbt_cloud: FakeDbtCloud, runs: DbtRuns
):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    name = f"parity-down-{uuid.uuid4().hex[:8]}"
    register_block(dbt_cloud, name, domain=f"127.0.0.1:{closed}")
    env = {**os.environ, **dbt_cloud.client_env(), "WG_DBT_CLOUD_BLOCK": name}
    proc, _ = parity("--baseline", "dbt-cloud:4242", "--candidate", str(runs.build), env=env)
    assert proc.returncode == 2
    assert (
        f"dbt Cloud 127.0.0.1:{closed}, account {dbt_cloud.account_id} unreachable" in proc.stderr
    )

    env["WG_DBT_CLOUD_BLOCK"] = "no-such-block"
    proc, _ = parity("--baseline", "dbt-cloud:4242", "--candidate", str(runs.build), env=env)
    assert proc.returncode == 2
    assert "block dbt-cloud-credentials/no-such-block not found" in proc.stderr
    assert "run python -m blocks.register_dbt_cloud " in proc.stderr


@pytest.mark.integration
def test_prefect_candidate_by_flow_run_id(stack: Any, runs: DbtRuns):
    from dbt_runtime import artifact_store

    flow_run_id = str(uuid.uuid4())
    artifact_store.keep_run_artifacts(
        artifact_store.load_store(), "local", flow_run_id, runs.exclude, None, {}
    )
    proc, report = parity("--baseline", str(runs.build), "--candidate", f"flow-run:{flow_run_id}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report is not None and report["candidate"]["origin"] == f"flow run {flow_run_id}"
    assert {d["kind"] for d in report["differences"]} == {"selection"}

    missing = str(uuid.uuid4())
    proc, _ = parity("--baseline", str(runs.build), "--candidate", f"flow-run:{missing}")
    assert proc.returncode == 2
    assert f"no artifacts kept for flow run {missing}" in proc.stderr

    proc, _ = parity("--baseline", str(runs.build), "--candidate", "latest:staging")
    assert proc.returncode == 2
    assert "--candidate latest:staging" in proc.stderr


@pytest.mark.integration
def test_the_parity_flow_publishes_the_report_as_a_markdown_artifact(stack: Any, runs: DbtRuns):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.parity_flow import ARTIFACT_KEY, parity_check

    ok = parity_check(str(runs.build), str(runs.added))
    assert ok["exit_code"] == 0
    failed = parity_check(str(runs.build), str(runs.broken), return_state=True)
    assert failed.is_failed()

    async def latest() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            )

    published = {a.flow_run_id: a for a in asyncio.run(latest())}
    failed_report = published[failed.state_details.flow_run_id]
    assert failed_report.type == "markdown"
    assert str(failed_report.data).startswith("# Parity: NOT AT PARITY: 1 candidate node(s) failed")
    assert f"model.{PKG}.dim_market" in str(failed_report.data)
