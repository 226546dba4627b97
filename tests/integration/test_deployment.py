"""The real prefect.yaml on a real local server: schedules, schema enforcement, ad-hoc runs."""

from __future__ import annotations

import io
import json
import time

import duckdb
import pytest

from dbt_runtime import project
from migration.local_stack import LocalStack, trigger_run
from tests.prefect_api import api_request

pytestmark = pytest.mark.integration


def query_warehouse(stack: LocalStack, sql: str, timeout: float = 60) -> list[tuple]:
    """Read the local DuckDB warehouse once the flow-run process has released its lock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with duckdb.connect(str(stack.warehouse), read_only=True) as con:
                return con.execute(sql).fetchall()
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _deployment(stack: LocalStack) -> dict:
    out = stack.prefect("deployment", "inspect", project.deployment_full_name()).stdout
    # `inspect` prints a Python-literal dict; the API gives JSON.
    dep_id = out.split("'id': '", 1)[1].split("'", 1)[0]
    return api_request("GET", f"{stack.api_url}/deployments/{dep_id}").json()


def test_server_stores_each_schedule_with_its_own_parameters(stack: LocalStack) -> None:
    deployment = _deployment(stack)
    live = {s["slug"]: s for s in deployment["schedules"]}
    for declared in project.schedules():
        assert live[declared.slug]["parameters"] == declared.parameters
        assert live[declared.slug]["schedule"]["cron"] == declared.cron
        assert live[declared.slug]["schedule"]["timezone"] == "UTC"
        # day one: the export says dbt Cloud still runs the job, so the deploy left it inactive
        assert live[declared.slug]["active"] is False
    assert deployment["parameters"] == {"command": "build", "target": "dev"}
    assert deployment["enforce_parameter_schema"] is True


def test_pull_step_is_pinned_to_the_deployed_commit(stack: LocalStack) -> None:
    import subprocess

    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=stack.repository, capture_output=True, text=True
    ).stdout.strip()
    clone = _deployment(stack)["pull_steps"][0]["prefect.deployments.steps.git_clone"]
    assert clone["commit_sha"] == head
    assert clone["repository"] == stack.repository.as_uri()


def test_server_rejects_a_target_outside_the_enum_naming_the_allowed_values(
    stack: LocalStack,
) -> None:
    done = stack.prefect(
        "deployment", "run", project.deployment_full_name(), "--param", "target=staging",
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "staging" in output
    assert all(t in output for t in ("dev", "prod", "local")), output


def test_adhoc_run_with_overrides_completes_through_the_worker(stack: LocalStack) -> None:
    log = io.StringIO()
    result = trigger_run(
        stack,
        {
            "target": "local",
            "select": ["+mart_market_performance_monthly", "+dim_brand"],
            "vars": {"reporting_currency": "USD"},
        },
        out=log,
    )
    assert result["state"] == "Completed", log.getvalue()
    logs = log.getvalue()
    assert "git_clone" in logs and "run_shell_script" in logs  # clone, then requirements
    assert '--vars {"reporting_currency": "USD"}' in logs
    # select narrowed the build: the mart and its upstream ran, an unrelated dim did not
    assert "model marts.mart_market_performance_monthly" in logs
    assert "marts.dim_distributor" not in logs
    assert sum(result["nodes"].values()) > 10, result["nodes"]
    currencies = query_warehouse(
        stack, "select distinct reporting_currency from marts.mart_market_performance_monthly"
    )
    assert currencies == [("USD",)]
    assert json.dumps(result)  # the printed summary is plain JSON
