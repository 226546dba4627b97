"""What on-call sees after a run: summary artifact, kept artifacts, failure reasons, retry, state.

The flow runs in-process against the session's Prefect server (a real flow run with real dbt on
DuckDB), on a copy of the dbt project in tmp_path (WG_DBT_PROJECT_DIR) so models can be broken
without touching the repository. Each copy's target/ is deleted after its run, as the process
worker deletes its working directory: everything asserted afterwards comes from kept artifacts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime.artifact_store import fetch_run_artifacts, latest_run_artifacts
from dbt_runtime.project import REPO_ROOT, tenants
from dbt_runtime.settings import env_name, get_settings
from flows.dbt_project import dbt_project
from migration.local_stack import LocalStack
from tests.prefect_api import log_text, wait_for_logs

# William Grant's project: prefect.yaml's first tenant (not tenant(): settings are read
# per test, and a module-level read would cache them before a fixture sets WG_* variables).
PROJECT_DIR = tenants()[0].project_dir

PROJECT_DIR_ENV = env_name("dbt_project_dir")
pytestmark = [pytest.mark.integration, pytest.mark.observability]

BROKEN_MODEL = "int_depletions_enriched"
BROKEN_SQL = "select no_such_column from {{ ref('stg_depletions') }}\n"
# Downstream of the broken model: dbt skips them.
DOWNSTREAM = {
    "model.dbt_williamgrant.fct_depletions",
    "model.dbt_williamgrant.mart_market_performance_monthly",
}


# Missing when the flaky model first runs; dbt's on-run-end hook creates it (a transient error).
FLAKY_SOURCE = "main.flaky_gate_source"


@dataclass(frozen=True)
class Run:
    project: Path
    state: Any

    @property
    def flow_run_id(self) -> str:
        return str(self.state.state_details.flow_run_id)


def copy_project(dest: Path) -> Path:
    return Path(
        shutil.copytree(
            PROJECT_DIR,
            dest,
            ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*"),
        )
    )


def run_flow(project: Path, monkeypatch: pytest.MonkeyPatch, **params: Any) -> Run:
    """Run the flow in-process on `project`, then delete target/ like the worker would."""
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project))
    monkeypatch.setenv("WG_DUCKDB_PATH", str(project / "warehouse.duckdb"))
    get_settings.cache_clear()  # settings are read once per process: re-read these
    flow = dbt_project.with_options(retries=params.pop("retries", 0), retry_delay_seconds=0)
    state = flow(target="local", return_state=True, **params)
    shutil.rmtree(project / "target", ignore_errors=True)
    return Run(project, state)


def kept_run_results(flow_run_id: str, dest: Path) -> dict[str, Any]:
    return json.loads((fetch_run_artifacts(flow_run_id, dest) / "run_results.json").read_text())


def statuses(run_results: dict[str, Any]) -> dict[str, str]:
    return {r["unique_id"]: r["status"] for r in run_results["results"]}


async def _summary_rows(flow_run_id: str) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    tables = [a for a in artifacts if a.key == "dbt-summary-local"]
    assert len(tables) == 1, [a.key for a in artifacts]
    data = tables[0].data
    return list(json.loads(data) if isinstance(data, str) else data)


@pytest.fixture(scope="module")
def broken_run(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A full build of a project copy whose int_depletions_enriched selects a missing column."""
    project = copy_project(tmp_path_factory.mktemp("broken") / "dbt_williamgrant")
    (project / "models" / "intermediate" / f"{BROKEN_MODEL}.sql").write_text(BROKEN_SQL)
    with pytest.MonkeyPatch.context() as mp:
        yield run_flow(project, mp, command="build")


def test_broken_model_fails_the_run_naming_the_model_and_the_error(broken_run: Run) -> None:
    assert broken_run.state.is_failed()
    message = broken_run.state.message
    assert message.startswith("dbt build --target local failed: model error"), message
    assert f"model.dbt_williamgrant.{BROKEN_MODEL}:" in message
    assert "no_such_column" in message  # the cause, not dbt's "Runtime Error in ..." header
    assert f"command=retry state=flow-run:{broken_run.flow_run_id}" in message
    # Prefect's own last line for the run: every batch before it has arrived.
    logs = log_text(wait_for_logs(broken_run.flow_run_id, until="Finished in state"))
    assert "Traceback" not in logs and "Encountered exception" not in logs


def test_summary_artifact_rows_match_run_results(broken_run: Run, tmp_path: Path) -> None:
    run_results = kept_run_results(broken_run.flow_run_id, tmp_path)
    rows = asyncio.run(_summary_rows(broken_run.flow_run_id))
    assert [(r["unique_id"], r["status"]) for r in rows] == [
        (r["unique_id"], r["status"]) for r in run_results["results"]
    ]
    seeds = [r for r in rows if r["type"] == "seed"]
    assert seeds and all(r["rows_affected"] and r["rows_affected"] > 0 for r in seeds)


def test_skipped_nodes_are_reported_skipped_not_completed(broken_run: Run) -> None:
    rows = {r["unique_id"]: r for r in asyncio.run(_summary_rows(broken_run.flow_run_id))}
    assert rows[f"model.dbt_williamgrant.{BROKEN_MODEL}"]["status"] == "error"
    for node in DOWNSTREAM:
        assert rows[node]["status"] == "skipped", rows[node]
    assert rows["model.dbt_williamgrant.fct_shipments"]["status"] == "success"


def test_failed_runs_artifacts_are_fetchable_after_its_directory_is_gone(
    broken_run: Run, stack: LocalStack, tmp_path: Path
) -> None:
    assert not (broken_run.project / "target").exists()
    dest = tmp_path / "fetched"
    done = subprocess.run(
        [sys.executable, "-m", "migration", "artifacts", "--flow-run", broken_run.flow_run_id,
         "--dest", str(dest)],
        cwd=REPO_ROOT, env=stack.env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {"run_results.json", "manifest.json", "dbt.log"} <= {p.name for p in dest.iterdir()}
    run_results = json.loads((dest / "run_results.json").read_text())
    assert statuses(run_results)[f"model.dbt_williamgrant.{BROKEN_MODEL}"] == "error"
    assert BROKEN_MODEL in (dest / "manifest.json").read_text()
    assert "no_such_column" in (dest / "dbt.log").read_text()


def test_retry_rebuilds_only_what_failed_or_was_skipped(
    broken_run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = statuses(kept_run_results(broken_run.flow_run_id, tmp_path / "before"))
    # The fix lands; the retry runs where the failed run's directory no longer exists.
    shutil.copy2(
        PROJECT_DIR / "models" / "intermediate" / f"{BROKEN_MODEL}.sql",
        broken_run.project / "models" / "intermediate" / f"{BROKEN_MODEL}.sql",
    )
    retry = run_flow(
        broken_run.project,
        monkeypatch,
        command="retry",
        state=f"flow-run:{broken_run.flow_run_id}",
    )
    assert retry.state.is_completed(), retry.state.message
    after = kept_run_results(retry.flow_run_id, tmp_path / "after")
    retried = statuses(after)
    expected = {node for node, status in before.items() if status in ("error", "skipped")}
    assert set(retried) == expected
    assert DOWNSTREAM | {f"model.dbt_williamgrant.{BROKEN_MODEL}"} <= set(retried)
    assert set(retried.values()) <= {"success", "pass"}


def test_flow_level_retry_reruns_only_the_failed_nodes(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A transient failure: the first attempt's model fails, on-run-end heals the warehouse."""
    project = copy_project(tmp_path / "dbt_williamgrant")
    (project / "models" / "flaky_gate.sql").write_text(f"select ok from {FLAKY_SOURCE}\n")
    with (project / "dbt_project.yml").open("a") as f:
        f.write(f'\non-run-end: "create table if not exists {FLAKY_SOURCE} as select 1 as ok"\n')
    run = run_flow(
        project,
        monkeypatch,
        command="build",
        select=["raw_brands", "flaky_gate"],
        retries=1,
    )
    assert run.state.is_completed(), run.state.message
    wait_for_logs(
        run.flow_run_id,
        until="Attempt 2: re-running only the nodes attempt 1 left failed or skipped",
    )
    kept = kept_run_results(run.flow_run_id, tmp_path / "kept")
    nodes = {k: v for k, v in statuses(kept).items() if not k.startswith("operation.")}  # hooks
    assert nodes == {"model.dbt_williamgrant.flaky_gate": "success"}  # the seed was not rebuilt


def test_state_keyword_resolves_the_last_successful_runs_manifest(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "dbt_williamgrant")
    # Relationship tests reach into models this small build leaves out: not part of it.
    partial = {"exclude": ["test_name:relationships"]}
    seed = run_flow(project, monkeypatch, command="build", select=["+dim_brand"], **partial)
    assert seed.state.is_completed(), seed.state.message
    flow_run_id, fetched = latest_run_artifacts("local", tmp_path / "latest", successful=True)
    assert flow_run_id == seed.flow_run_id
    assert (fetched / "manifest.json").is_file()

    # Change one model: state:modified+ against the last successful manifest selects just it.
    dim_brand = project / "models" / "marts" / "dim_brand.sql"
    dim_brand.write_text(dim_brand.read_text() + "\n-- reviewed\n")
    changed = run_flow(
        project,
        monkeypatch,
        command="build",
        select=["state:modified+"],
        state="local:last-success",
        **partial,
    )
    assert changed.state.is_completed(), changed.state.message
    built = statuses(kept_run_results(changed.flow_run_id, tmp_path / "changed"))
    assert "model.dbt_williamgrant.dim_brand" in built
    assert all("dim_brand" in node for node in built), built
