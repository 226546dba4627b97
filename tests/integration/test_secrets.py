"""Secrets: a canary password never leaks, rotation needs no redeploy, a missing block fails
the run before dbt starts, and the secret scanner catches plaintext.

Runs the flow in-process on target dev against the fakesnow emulator behind the login
recorder (tests/integration/test_snowflake_path.py explains both); small selections keep the
runs short. The recorder shows what Snowflake would have received, which is what proves a run
used a given secret: fakesnow itself accepts any password.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime.project import REPO_ROOT
from migration.local_stack import LocalStack
from tests.integration.test_snowflake_path import (
    Emulator,
    copy_project,
    delete_dev_blocks,
    dev_inputs,
    flow_run_id,
    register_dev,
    run_dev_flow,
    running_emulator,
)
from tests.prefect_api import read_flow_run_logs, wait_for_logs

pytestmark = [pytest.mark.integration, pytest.mark.snowflake]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(tmp_path_factory.mktemp("fakesnow")) as running:
        yield running


# One seed: a real login and a real write, little work (a model would pull in its tests).
SMALL = {"command": "seed", "select": ["raw_brands"]}


async def _run_record(run_id: str) -> tuple[list[str], list[str], str]:
    """Log messages, artifact texts and the flow run's own record, as the API returns them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
    )

    # Prefect's own last line for the run: every log batch before it has arrived.
    await asyncio.to_thread(wait_for_logs, run_id, "Finished in state")
    logs = [log.message for log in await read_flow_run_logs(run_id)]
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        run = await client.read_flow_run(run_id)
    texts = [f"{a.key} {a.description} {a.data}" for a in artifacts]
    return logs, texts, run.model_dump_json()


def files_containing(needle: bytes, roots: list[Path], since: float) -> list[Path]:
    """Files under `roots` written since `since` whose bytes contain `needle`."""
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime >= since and needle in path.read_bytes():
                    hits.append(path)
            except OSError:
                continue  # vanished while scanning (another process' temp file)
    return hits


# -- canary ---------------------------------------------------------------------------------

CANARY = "canary-Zq7xW3-not-a-real-password"  # pragma: allowlist secret


def test_canary_password_reaches_snowflake_but_no_log_artifact_or_file(
    stack: LocalStack, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    register_dev(dev_inputs("WG_DEV_CANARY", WG_SNOWFLAKE_DEV_PASSWORD=CANARY))
    project = copy_project(tmp_path / "dbt_williamgrant")
    run_tmp = tmp_path / "run-tmp"  # every temporary file the run makes lands here
    run_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(run_tmp))
    started = time.time() - 1
    seen = len(emulator.logins)
    try:
        state = run_dev_flow(project, emulator, monkeypatch, **SMALL)
    finally:
        delete_dev_blocks()
    assert state.is_completed(), state.message
    # The canary was really used: without this, its absence below would prove nothing.
    assert [login.password for login in emulator.logins[seen:]] == [CANARY] * len(
        emulator.logins[seen:]
    ) and emulator.logins[seen:]

    logs, artifacts, record = asyncio.run(_run_record(flow_run_id(state)))
    assert len(logs) > 5, "expected the run's dbt logs"
    assert not [m for m in logs if CANARY in m]
    assert not [a for a in artifacts if CANARY in a]
    assert CANARY not in record
    # The project copy (target/, logs/), the run's temp dirs and the whole local stack: the
    # server's database (logs, artifacts, states), the artifact store, worker/server logs.
    roots = [project, run_tmp, stack.home]
    assert files_containing(CANARY.encode(), roots, started) == []


# -- rotation -------------------------------------------------------------------------------


def test_rotated_password_is_used_by_the_next_run_without_redeploying(
    stack: LocalStack, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Same user and role, new password: what Snowflake received changes with the block.

    Proven: the second run's logins carried the new password and none the old one, with no
    deploy in between (the deployment's `updated` timestamp is unchanged). Not proven here:
    that Snowflake rejects the old password (fakesnow accepts any).
    """
    old = "fake-old-password-1"  # pragma: allowlist secret
    new = "fake-new-password-2"  # pragma: allowlist secret
    deployment_before = _deployment_updated()
    project = copy_project(tmp_path / "dbt_williamgrant")
    try:
        register_dev(dev_inputs("WG_DEV_ROTATE", WG_SNOWFLAKE_DEV_PASSWORD=old))
        seen = len(emulator.logins)
        first = run_dev_flow(project, emulator, monkeypatch, **SMALL)
        first_logins = emulator.logins[seen:]

        register_dev(dev_inputs("WG_DEV_ROTATE", WG_SNOWFLAKE_DEV_PASSWORD=new))
        seen = len(emulator.logins)
        second = run_dev_flow(project, emulator, monkeypatch, **SMALL)
        second_logins = emulator.logins[seen:]
    finally:
        delete_dev_blocks()
    assert first.is_completed() and second.is_completed(), (first.message, second.message)
    assert first_logins and {login.password for login in first_logins} == {old}
    assert second_logins and {login.password for login in second_logins} == {new}
    assert {(lg.user, lg.role) for lg in first_logins + second_logins} == {
        ("WG_DBT_DEV", "WG_DBT_DEV_ROLE")
    }
    assert _deployment_updated() == deployment_before


def _deployment_updated() -> Any:
    async def read() -> Any:
        from prefect.client.orchestration import get_client

        from dbt_runtime.project import deployment_full_name

        async with get_client() as client:
            return (await client.read_deployment_by_name(deployment_full_name())).updated

    return asyncio.run(read())


# -- missing block --------------------------------------------------------------------------


def test_missing_dev_block_fails_the_run_before_dbt_starts_naming_block_and_script(
    stack: LocalStack, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    delete_dev_blocks()
    project = copy_project(tmp_path / "dbt_williamgrant")
    seen = len(emulator.logins)
    state = run_dev_flow(project, emulator, monkeypatch, **SMALL)
    assert state.is_failed()
    assert "snowflake-credentials/wg-dbt-dev not found" in state.message, state.message
    assert "python -m blocks.register_snowflake --target dev" in state.message, state.message
    # dbt never started: no connection to Snowflake, nothing parsed into target/.
    assert emulator.logins[seen:] == []
    assert not (project / "target" / "manifest.json").exists()


# -- the scanner ----------------------------------------------------------------------------


def scan(files: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The scanner as `make lint` runs it, with a copy of the committed baseline (the hook
    rewrites a baseline it finds stale; a test must never touch the real one)."""
    baseline = cwd / ".secrets.baseline"
    shutil.copy(REPO_ROOT / ".secrets.baseline", baseline)
    return subprocess.run(
        [sys.executable, "-m", "detect_secrets.pre_commit_hook", "--baseline", str(baseline),
         *map(str, files)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,  # the hook runs git
    )  # fmt: skip


def test_scanner_rejects_a_plaintext_password_in_a_profile(tmp_path: Path) -> None:
    leaked = tmp_path / "profiles.yml"
    leaked.write_text(
        "dbt_williamgrant:\n  outputs:\n    dev:\n      type: snowflake\n"
        "      password: Xk4-correct-horse-battery-9q\n"  # pragma: allowlist secret
    )
    done = scan([leaked], tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "profiles.yml" in done.stdout + done.stderr


def test_scanner_accepts_the_reference_only_profiles_yml(tmp_path: Path) -> None:
    done = scan([REPO_ROOT / "tenants" / "dbt_williamgrant" / "profiles.yml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
