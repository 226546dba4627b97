"""dbt_runtime/node_reporter.py without dbt running: what the task-run writer process is given."""

from __future__ import annotations

import os
import subprocess
import sys

from dbt_runtime.node_reporter import writer_environment

SECRET = "hunter2-canary"  # pragma: allowlist secret


def test_the_writer_process_gets_the_runs_prefect_settings_and_none_of_its_secrets() -> None:
    environ = {
        "PATH": "/usr/bin",
        "PREFECT_API_URL": "http://old",
        "DBT_ENV_SECRET_SNOWFLAKE_PASSWORD": SECRET,
        "PREFECT_BLOCKS_SNOWFLAKECREDENTIALS_WG_DEV_PASSWORD": SECRET,
        "PYTHONPATH": "/elsewhere",
    }
    env = writer_environment(environ, {"PREFECT_API_URL": "http://127.0.0.1:1/api"})

    assert SECRET not in env.values()
    assert env["PATH"] == "/usr/bin"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:1/api"  # the run's, set in-process
    # The writer is `python -m dbt_runtime.task_runs`: importable from any working directory.
    probe = subprocess.run(
        [sys.executable, "-c", "import dbt_runtime.task_runs"],
        env={**env, "PATH": os.environ["PATH"]},
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
