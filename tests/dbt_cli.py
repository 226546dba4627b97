"""The dbt CLI on a DuckDB project, as an operator would run it (tests that need real dbt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def dbt(project: Path, *args: str, warehouse: Path) -> tuple[list[str], str]:
    """Run `dbt ARGS` in `project`; return the unique_ids it executed and its output."""
    exe = str(Path(sys.executable).parent / "dbt")
    argv = [exe, *args, "--project-dir", str(project), "--profiles-dir", str(project)]
    env = {"WG_DUCKDB_PATH": str(warehouse), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    return sorted(r["unique_id"] for r in results), done.stdout
