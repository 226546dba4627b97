"""`make run` / `make stop` from a fresh clone, as the README promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from migration.local_stack import free_port

pytestmark = pytest.mark.e2e


def _pids_alive(clone: Path) -> list[int]:
    alive = []
    for pid_file in (clone / ".local" / "pids").glob("*.pid"):
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def test_make_run_from_a_fresh_clone_completes_and_make_stop_cleans_up(
    repo_snapshot: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_snapshot), str(clone)], check=True)
    # Reuse this session's venv (same pins): installing is what CI's own `make test` just did.
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "WG_PREFECT_PORT": str(free_port())}
    # Under `make test` these would make the inner make print "Entering/Leaving directory".
    for inherited in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(inherited, None)
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    try:
        run = subprocess.run(
            ["make", "run", f"VENV={venv}"], cwd=clone, env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        last = run.stdout.strip().splitlines()[-1]
        # e.g. "Completed: 47 dbt nodes {'pass': 22, 'success': 25} -> http://.../runs/flow-run/<id>"
        assert re.match(r"Completed: (\d+) dbt nodes \{'pass': \d+, 'success': \d+\}", last), last
        assert "/runs/flow-run/" in last
        assert "Done. PASS=" in run.stdout  # dbt's own summary, streamed from the run's logs
        assert _pids_alive(clone), "make run should leave its server and worker up"
    finally:
        stop = subprocess.run(
            ["make", "stop", f"VENV={venv}"], cwd=clone, env=env, capture_output=True, text=True
        )
    assert stop.returncode == 0, stop.stderr
    assert "stopped: worker" in stop.stdout
    assert _pids_alive(clone) == []
