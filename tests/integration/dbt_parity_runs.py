"""Real dbt runs of the tenant project on DuckDB, kept as artifact directories for parity tests.

Generated once per test session (they cost ~1 minute on 2 cores): each scenario is a real
`dbt` invocation whose target/manifest.json + run_results.json are copied to `<root>/<name>/`.
Two lanes run side by side, each on its own project copy and DuckDB file (DuckDB allows one
writer per file).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dbt_runtime.project import REPO_ROOT

PROJECT = REPO_ROOT / "tenants" / "dbt_williamgrant"
DBT = Path(sys.executable).parent / "dbt"
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
    for stale in ("run_results.json", "sources.json"):  # a command may not rewrite them
        (project / "target" / stale).unlink(missing_ok=True)
    env = {
        **os.environ,
        "WG_DUCKDB_PATH": str(warehouse),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    proc = subprocess.run(
        [str(DBT), *args, "--project-dir", str(project), "--profiles-dir", str(project),
         "--target", "local"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if ok and proc.returncode != 0:
        raise RuntimeError(
            f"dbt {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        )
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
    with ThreadPoolExecutor(max_workers=2) as pool:
        lanes = [pool.submit(_main_lane, root), pool.submit(_changed_lane, root)]
        dirs = {k: v for lane in lanes for k, v in lane.result().items()}
    return DbtRuns(**dirs)
