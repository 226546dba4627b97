"""Real dbt runs of the tenant project on DuckDB, kept as artifact directories for parity tests.

Generated once per test module: each scenario is a real dbt invocation (dbt's programmatic
`dbtRunner`, in this process: dbt is imported once, not six times) whose target/manifest.json +
run_results.json are copied to `<root>/<name>/`. Two lanes, one after the other (dbt in one
process is not thread-safe), each on its own project copy and DuckDB file.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dbt_runtime.project import REPO_ROOT

PROJECT = REPO_ROOT / "tenants" / "dbt_williamgrant"
BROKEN_MODEL = "models/marts/dim_market.sql"
ADDED_MODEL = "models/marts/mart_brand_count.sql"
EXCLUDE = "fct_shipments+"


@dataclass(frozen=True)
class DbtRuns:
    build: Path  # dbt build (the reference run)
    exclude: Path  # dbt build --exclude fct_shipments+
    run: Path  # dbt run (models only, no tests)
    freshness: Path  # dbt source freshness (manifest.json + sources.json; no run_results)
    broken: Path  # dbt build with dim_market.sql broken
    added: Path  # dbt build of a project version with mart_brand_count added


def _copy_project(dest: Path) -> Path:
    shutil.copytree(
        PROJECT, dest, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb")
    )
    return dest


def _dbt(project: Path, warehouse: Path, keep: Path, *args: str, ok: bool = True) -> Path:
    from dbt.cli.main import dbtRunner

    for stale in ("run_results.json", "sources.json"):  # a command may not rewrite them
        (project / "target" / stale).unlink(missing_ok=True)
    previous = os.environ.get("WG_DUCKDB_PATH")
    os.environ["WG_DUCKDB_PATH"] = str(warehouse)  # the project's profiles.yml reads it
    try:
        result = dbtRunner().invoke(
            [*args, "--project-dir", str(project), "--profiles-dir", str(project),
             "--target", "local", "--no-send-anonymous-usage-stats", "--quiet"]
        )  # fmt: skip
    finally:
        if previous is None:
            os.environ.pop("WG_DUCKDB_PATH", None)
        else:
            os.environ["WG_DUCKDB_PATH"] = previous
    if ok and not result.success:
        raise RuntimeError(f"dbt {' '.join(args)} failed: {result.exception or result.result}")
    keep.mkdir(parents=True)
    for name in ("manifest.json", "run_results.json", "sources.json"):
        if (project / "target" / name).exists():
            shutil.copy2(project / "target" / name, keep / name)
    return keep


def _main_lane(root: Path) -> dict[str, Path]:
    project = _copy_project(root / "lane-main" / "project")
    warehouse = root / "lane-main" / "warehouse.duckdb"
    return {
        "build": _dbt(project, warehouse, root / "build", "build"),
        "exclude": _dbt(project, warehouse, root / "exclude", "build", "--exclude", EXCLUDE),
        "run": _dbt(project, warehouse, root / "run", "run"),
        # Exit code 1 when a source is stale past error_after; this project's only warn.
        "freshness": _dbt(project, warehouse, root / "freshness", "source", "freshness", ok=False),
    }


def _changed_lane(root: Path) -> dict[str, Path]:
    broken = _copy_project(root / "lane-changed" / "broken")
    (broken / BROKEN_MODEL).write_text("select * from a_table_that_does_not_exist\n")
    added = _copy_project(root / "lane-changed" / "added")
    (added / ADDED_MODEL).write_text("select count(*) as brands from {{ ref('dim_brand') }}\n")
    warehouse = root / "lane-changed" / "warehouse.duckdb"
    return {
        "broken": _dbt(broken, warehouse, root / "broken", "build", ok=False),
        "added": _dbt(added, warehouse, root / "added", "build"),
    }


def generate(root: Path) -> DbtRuns:
    return DbtRuns(**_main_lane(root), **_changed_lane(root))
