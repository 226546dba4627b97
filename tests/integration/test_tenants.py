"""Two tenants on one platform (issue 17): a second, differently shaped dbt project added with
`python -m migration tenants add` in a clone of the code under test, both deployed with the real
`prefect --no-prompt deploy --all`, both run at once through one worker on target `local`.

Its own stack (server + worker on 127.0.0.1, stopped by PID): the session's deploys the
repository as it is, with one tenant.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from migration.local_stack import LocalStack, free_port, prefect_api
from tests.dbt_cli import dbt
from tests.prefect_db import seed_prefect_home
from tests.tenant_project import (
    ADD_COMMAND,
    DEPLOYMENT,
    NAME,
    RUN_COMMAND,
    RUNBOOK,
    write_shop_project,
)

pytestmark = [pytest.mark.integration, pytest.mark.tenants]

GIT = ["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost"]
FIRST, FIRST_DEPLOYMENT = "dbt_williamgrant", "williamgrant"
RUN_TIMEOUT = 600


@dataclass(frozen=True)
class Run:
    id: str
    state: str
    message: str
    start: Any
    end: Any
    logs: list[tuple[Any, str]]
    artifacts: dict[str, Any]  # key -> data


@dataclass(frozen=True)
class Outcome:
    stack: LocalStack
    clone: Path
    added: str  # what `tenants add` printed
    make_run: str  # what `make run TENANT=...` printed
    first: Run
    second: Run
    refused: dict[str, Run]


async def _wait(client: Any, ids: dict[str, Any]) -> dict[str, Run]:
    """Each flow run's final state, with its logs (up to "released ...", which the guard logs
    last) and artifacts."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import LogSort

    done: dict[str, Run] = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(done) < len(ids):
        for case, run_id in ids.items():
            if case in done:
                continue
            run = await client.read_flow_run(run_id)
            if run.state is None or not run.state.is_final():
                continue
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                sort=LogSort.TIMESTAMP_ASC,
            )
            if run.state.is_completed() and not any("released" in x.message for x in logs):
                continue  # its last log lines are still on their way
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            done[case] = Run(
                str(run_id),
                run.state.name,
                run.state.message or "",
                run.start_time,
                run.end_time,
                [(x.timestamp, x.message) for x in logs],
                {str(a.key): a.data for a in artifacts if a.key},
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"flow runs not final after {RUN_TIMEOUT} s: {set(ids) - set(done)}")
        await asyncio.sleep(1)
    return done


async def _start(client: Any, deployment: str, parameters: dict[str, Any], **kw: Any) -> Any:
    dep = await client.read_deployment_by_name(f"dbt_project/{deployment}")
    run = await client.create_flow_run_from_deployment(dep.id, parameters=parameters, **kw)
    return run.id


async def _exercise(stack: LocalStack, clone: Path) -> tuple[Run, Run, dict[str, Run]]:
    from prefect.client.orchestration import get_client

    local = {"target": "local"}
    async with get_client() as client:
        both = {
            FIRST: await _start(client, FIRST_DEPLOYMENT, local),
            NAME: await _start(client, DEPLOYMENT, local),
        }
        runs = await _wait(client, both)
        first, second = runs[FIRST], runs[NAME]
        refused = {
            # the deployment's env fixes the tenant: a run cannot change it, nor the project
            "env-tenant": await _start(
                client, DEPLOYMENT, local, job_variables={"env": {"WG_TENANT": FIRST}}
            ),
            # kept runs resolve only within the run's own tenant, both ways
            "state-other": await _start(
                client, DEPLOYMENT, {**local, "state": f"flow-run:{first.id}"}
            ),
            "retry-other": await _start(
                client,
                FIRST_DEPLOYMENT,
                {**local, "command": "retry", "state": f"flow-run:{second.id}"},
            ),
        }
        return first, second, await _wait(client, refused)


def _sh(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A runbook command as an operator types it (bash, from the repository root)."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def outcome(
    repo_snapshot: Path, tmp_path_factory: pytest.TempPathFactory, migrated_prefect_db: Path
) -> Iterator[Outcome]:
    """The runbook's steps in a clone: the folder, `tenants add`, commit, `make run TENANT=`
    (which starts the clone's own stack on a free port and deploys both tenants); then both
    tenants' runs at once, and the Custom runs that try to cross over."""

    root = tmp_path_factory.mktemp("tenants")
    clone = root / "repo"
    subprocess.run(["git", "clone", "-q", str(repo_snapshot), str(clone)], check=True)
    # The runbook says `.venv/bin/...` and `make`: this session's venv, same pins (gitignored).
    (clone / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port = free_port()
    # Not this session's API or home, nor make's own variables; the server settings of
    # tests/conftest.py (no block catalog at start-up, ...) apply to the clone's server too.
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("PREFECT_SERVER_") or not k.startswith(("PREFECT_", "MAKE", "MFLAGS"))
    }
    env["WG_PREFECT_PORT"] = str(port)
    write_shop_project(clone / "tenants" / NAME)
    added = _sh(ADD_COMMAND, clone, env)
    assert added.returncode == 0, added.stdout + added.stderr
    subprocess.run([*GIT, "add", "-A"], cwd=clone, check=True)
    subprocess.run([*GIT, "commit", "-qm", "tenant dbt_shop"], cwd=clone, check=True)
    stack = LocalStack(home=clone / ".local", port=port, repository=clone)
    seed_prefect_home(stack.home, migrated_prefect_db)
    try:
        ran = _sh(RUN_COMMAND, clone, env)
        assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
        with prefect_api(stack.api_url):
            first, second, refused = asyncio.run(_exercise(stack, clone))
            yield Outcome(stack, clone, added.stdout, ran.stdout, first, second, refused)
    finally:
        stack.stop()


def _kept_nodes(outcome: Outcome, prefix: str, run: Run) -> list[str]:
    path = outcome.stack.artifacts / f"{prefix}local" / run.id / "run_results.json"
    return sorted(r["unique_id"] for r in json.loads(path.read_text())["results"])


def _plain_build(project: Path, dest: Path) -> list[str]:
    copy = Path(shutil.copytree(project, dest, ignore=shutil.ignore_patterns("target", "logs")))
    nodes, _ = dbt(copy, "build", "--target", "local", warehouse=dest.parent / "plain.duckdb")
    return nodes


def test_the_runbook_shows_the_commands_this_test_runs() -> None:
    lines = {line.strip() for line in RUNBOOK.read_text().splitlines()}
    assert {ADD_COMMAND, RUN_COMMAND} <= lines


def test_make_run_runs_the_chosen_tenant(outcome: Outcome) -> None:
    last = outcome.make_run.strip().splitlines()[-1]
    assert last.startswith("Completed: 10 dbt nodes"), last  # the shop project's 10 nodes


def test_tenants_add_names_what_the_new_tenant_needs(outcome: Outcome) -> None:
    assert f"added deployment dbt_project/{DEPLOYMENT} for tenants/{NAME}" in outcome.added
    assert f"concurrency limits dbt-{DEPLOYMENT}-target-<target>" in outcome.added
    assert f"snowflake-credentials/shop-dbt-prod: WG_TENANT={NAME}" in outcome.added


def test_each_tenant_builds_exactly_its_own_project(outcome: Outcome, tmp_path: Path) -> None:
    assert (outcome.first.state, outcome.second.state) == ("Completed", "Completed"), (
        outcome.first.message,
        outcome.second.message,
    )
    for run, tenant, prefix in ((outcome.first, FIRST, ""), (outcome.second, NAME, f"{NAME}/")):
        plain = _plain_build(outcome.clone / "tenants" / tenant, tmp_path / tenant / "project")
        assert _kept_nodes(outcome, prefix, run) == plain, tenant
    shop = _kept_nodes(outcome, f"{NAME}/", outcome.second)
    assert all(node.split(".")[1] == "shop" for node in shop)


def test_the_two_ran_at_once_each_on_its_own_limit(outcome: Outcome) -> None:
    first, second = outcome.first, outcome.second
    assert first.start < second.end and second.start < first.end  # through one worker, at once
    for run, deployment in ((first, FIRST_DEPLOYMENT), (second, DEPLOYMENT)):
        own = f"dbt-{deployment}-target-local"
        limits = [m for _, m in run.logs if "concurrency limit" in m or "holding" in m]
        assert limits and all(own in m for m in limits), limits
        waited = next(t for t, m in run.logs if m.startswith("waiting for concurrency limit"))
        held = next(t for t, m in run.logs if m.startswith(f"holding '{own}'"))
        assert (held - waited).total_seconds() < 10  # the slot was free: nothing else holds it


def test_kept_artifacts_and_summaries_are_separate(outcome: Outcome) -> None:
    artifacts = outcome.stack.artifacts
    first, second = outcome.first, outcome.second
    assert (artifacts / "local" / first.id / "kept.json").is_file()
    assert (artifacts / NAME / "local" / second.id / "kept.json").is_file()
    assert not (artifacts / "local" / second.id).exists()
    assert not (artifacts / NAME / "local" / first.id).exists()
    assert set(first.artifacts) == {"dbt-summary-local", "dbt-artifacts-local"}
    assert set(second.artifacts) == {
        f"dbt-summary-{DEPLOYMENT}-local", f"dbt-artifacts-{DEPLOYMENT}-local",
    }  # fmt: skip
    for run, prefix, key in (
        (first, "", "dbt-summary-local"),
        (second, f"{NAME}/", f"dbt-summary-{DEPLOYMENT}-local"),
    ):
        rows = run.artifacts[key]
        rows = json.loads(rows) if isinstance(rows, str) else rows
        assert sorted(r["unique_id"] for r in rows) == _kept_nodes(outcome, prefix, run)


def test_the_operator_commands_act_for_the_tenant_they_are_given(outcome: Outcome) -> None:
    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "migration", *args],
            cwd=outcome.clone, env=outcome.stack.env(), capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    latest = ("artifacts", "--latest", "--target", "local")
    assert f"flow run {outcome.second.id} " in cli(*latest, "--tenant", NAME)
    assert f"flow run {outcome.first.id} " in cli(*latest)  # default: the first tenant
    listed = cli("schedules", "ls", "--tenant", NAME)
    assert "shop-prod-nightly" in listed and "wg-prod-nightly" not in listed


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("env-tenant", "job variable 'env': a run may not set WG_TENANT"),
        ("state-other", f"parameter 'state': flow-run:{{first}}: flow run {{first}} is a run of "
         f"deployment {FIRST_DEPLOYMENT} (tenant {FIRST}), not of dbt_project/{DEPLOYMENT}"),
        ("retry-other", f"parameter 'state': flow-run:{{second}}: flow run {{second}} is a run of "
         f"deployment {DEPLOYMENT} (tenant {NAME}), not of dbt_project/{FIRST_DEPLOYMENT}"),
    ],
)  # fmt: skip
def test_a_custom_run_cannot_reach_another_tenant(
    outcome: Outcome, case: str, expected: str
) -> None:
    run = outcome.refused[case]
    expected = expected.format(first=outcome.first.id, second=outcome.second.id)
    assert run.state == "Failed", (run.state, run.message)
    assert expected in run.message, run.message
    assert not any(m.startswith("Running dbt") for _, m in run.logs)  # refused before dbt


def test_the_server_refuses_a_run_that_points_at_another_tenants_project(
    outcome: Outcome,
) -> None:
    """WG_DBT_PROJECT_DIR set by a run would choose the code dbt runs: the pool's job template
    has no such `env` key, so the server creates no run at all (HTTP 422, naming the key)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    from dbt_runtime.project import tenants

    async def start() -> Any:
        async with get_client() as client:
            env = {"WG_DBT_PROJECT_DIR": str(tenants()[0].project_dir)}
            return await _start(client, DEPLOYMENT, {"target": "local"}, job_variables={"env": env})

    with pytest.raises(PrefectHTTPStatusError) as refused:
        asyncio.run(start())
    assert refused.value.response.status_code == 422
    assert "WG_DBT_PROJECT_DIR" in refused.value.response.text
