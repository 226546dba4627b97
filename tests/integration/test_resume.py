"""Resuming a crashed run with real dbt (DuckDB, no server): the `result:` selection that the
resume builds runs exactly the nodes the crashed run did not finish, and the run_results.json it
writes is one dbt itself reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbt_runtime.invocation import Target, build_invocation
from dbt_runtime.resume import resume_invocation, write_run_results
from migration.synthetic_project import write_project
from tests.dbt_cli import dbt

pytestmark = pytest.mark.dbt


def test_the_written_run_results_is_one_dbt_itself_reads(tmp_path: Path) -> None:
    from dbt.artifacts.schemas.run import RunResultsArtifact

    write_run_results(tmp_path, {"model.p.a": "success", "model.p.b": "skipped"})
    artifact = RunResultsArtifact.read_and_check_versions(str(tmp_path / "run_results.json"))
    assert [(r.unique_id, r.status) for r in artifact.results] == [
        ("model.p.a", "success"),
        ("model.p.b", "skipped"),
    ]


@pytest.mark.parametrize("select", [[], ["seed_0+"]], ids=["everything", "a-selection"])
def test_real_dbt_resumes_without_rebuilding_what_succeeded(
    tmp_path: Path, select: list[str]
) -> None:
    """Half of the run's nodes "built before the crash" (in dbt's order, so their tests ran
    only for some): the resume runs exactly the rest, models and tests."""
    project = write_project(tmp_path / "project", 6).path
    warehouse = tmp_path / "warehouse.duckdb"
    parameters = build_invocation("build", "local", select=select).parameters
    original = build_invocation("build", "local", select=select).args
    everything, _ = dbt(project, *original, warehouse=warehouse)
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    run_results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    order = [
        r["unique_id"] for r in sorted(run_results, key=lambda r: r["timing"][0]["started_at"])
    ]
    built = set(order[: len(order) // 2])
    resumed = resume_invocation(parameters, Target.local, built, manifest, tmp_path / "resume")
    rebuilt, _ = dbt(project, *resumed.args, warehouse=warehouse)
    assert set(rebuilt) == set(everything) - built
