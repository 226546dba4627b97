"""As Prefect Cloud runs it (`make run-cloudlike`): every flow run in a fresh environment, kept
artifacts in S3, and everything that reads an earlier run working from there.

A module-scoped stack of its own (migration/cloudlike.py: a second Prefect server on a free port,
a worker whose job command is migration/fresh_env.py, moto's S3 server and fakesnow on
127.0.0.1, blocks registered by the blocks/ scripts with fake credentials in their
environment), deploying the session's snapshot of this working tree through the real
prefect.yaml: git_clone, then the requirements installed by the pull step into an environment
that holds only Python, prefect and uv.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime import artifact_store, guards, packages
from dbt_runtime.invocation import Target
from dbt_runtime.project import REPO_ROOT, deployment_full_name, tenants
from dbt_runtime.settings import env_name, get_settings
from migration.cloudlike import (
    BUCKET,
    EMULATOR_EXCLUDE,
    S3_BLOCK,
    CloudlikeStack,
    identity,
    kept_location,
    scheduled_parameters,
)
from migration.local_stack import prefect_api, trigger_run
from tests.prefect_api import engine_pids, log_text, wait_for_logs
from tests.prefect_db import seed_prefect_home

# William Grant's project: prefect.yaml's first tenant (not tenant(): settings are read
# per test, and a module-level read would cache them before a fixture sets WG_* variables).
PROJECT_DIR = tenants()[0].project_dir

pytestmark = [pytest.mark.integration, pytest.mark.cloudlike]
BLOCK_ENV = env_name("artifacts_block")


@pytest.fixture(scope="module")
def cloud(
    tmp_path_factory: pytest.TempPathFactory, repo_snapshot: Path, migrated_prefect_db: Path
) -> Iterator[CloudlikeStack]:
    stack = CloudlikeStack(home=tmp_path_factory.mktemp("cloudlike"), repository=repo_snapshot)
    seed_prefect_home(stack.home, migrated_prefect_db)
    previous = os.environ.get(BLOCK_ENV)
    try:
        stack.prepare()
        os.environ[BLOCK_ENV] = S3_BLOCK  # this process reads the same bucket as the runs
        with prefect_api(stack.api_url):
            yield stack
    finally:
        stack.stop()
        if previous is None:
            os.environ.pop(BLOCK_ENV, None)
        else:
            os.environ[BLOCK_ENV] = previous


@pytest.fixture(scope="module")
def first_runs(cloud: CloudlikeStack) -> dict[str, dict[str, Any]]:
    """What `make run-cloudlike` runs: a scheduled-style prod build, then an ad-hoc dev build."""
    runs = {
        "prod": scheduled_parameters(),
        "dev": {"target": "dev", "command": "build", "exclude": EMULATOR_EXCLUDE},
    }
    out = {}
    for target, parameters in runs.items():
        result = trigger_run(cloud, parameters, timeout=900, out=sys.stderr)
        result["kept"] = kept_location(cloud, result["flow_run_id"])
        out[target] = result
    return out


def _cli(cloud: CloudlikeStack, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m migration ...` as an operator runs it: a fresh HOME and TMPDIR, so what it
    reads comes from the server and the bucket, not from this machine's disk."""
    fresh = Path(os.environ.get("TMPDIR", "/tmp")) / f"wg-operator-{uuid.uuid4().hex[:8]}"
    (fresh / "tmp").mkdir(parents=True)
    try:
        return subprocess.run(
            [sys.executable, "-m", "migration", *argv],
            env={**cloud.env(), BLOCK_ENV: S3_BLOCK, "HOME": str(fresh),
                 "TMPDIR": str(fresh / "tmp"), **env},
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _s3_keys(cloud: CloudlikeStack, prefix: str) -> set[str]:
    import boto3

    keys = cloud.aws_env()
    s3 = boto3.client(
        "s3",
        endpoint_url=cloud.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=keys["WG_ARTIFACTS_AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["WG_ARTIFACTS_AWS_SECRET_ACCESS_KEY"],
    )
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for item in listed.get("Contents", [])}


# -- make run-cloudlike ------------------------------------------------------------------------


def test_prod_and_dev_builds_complete_keeping_their_artifacts_in_s3(
    cloud: CloudlikeStack, first_runs: dict[str, dict[str, Any]]
) -> None:
    for target, result in first_runs.items():
        assert result["state"] == "Completed", (target, result["message"])
        assert result["nodes"].get("success", 0) > 20, result["nodes"]
        run_id = result["flow_run_id"]
        assert result["kept"] == f"s3://{BUCKET}/{target}/{run_id}/", result["kept"]
        kept = _s3_keys(cloud, f"{target}/{run_id}/")
        assert {f"{target}/{run_id}/{n}" for n in ("run_results.json", "manifest.json")} <= kept
        assert _s3_keys(cloud, f"{target}/_dbt-parse-state/"), "no parse state kept"


def test_every_run_starts_fresh_and_the_pull_steps_install_the_rest(
    cloud: CloudlikeStack, first_runs: dict[str, dict[str, Any]]
) -> None:
    """Before any pull step: no dbt, an empty HOME and working directory; the run then built
    with dbt, so git_clone and the requirements step put everything else there."""
    for result in first_runs.values():
        record = cloud.fresh_record(result["flow_run_id"])
        assert record is not None, "the run did not start through migration/fresh_env.py"
        assert record["dbt_importable"] is False
        assert record["prefect_importable"] is True
        assert record["home_entries"] == [] and record["cwd_entries"] == []
        assert record["prefix"] == str(cloud.home / "container" / "env")
        logs = log_text(wait_for_logs(result["flow_run_id"], "finished"))
        assert "Running dbt build" in logs or "dbt build" in logs


def test_artifacts_cli_and_parity_read_the_latest_prod_run_from_s3(
    cloud: CloudlikeStack, first_runs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    prod = first_runs["prod"]["flow_run_id"]
    listed = _cli(cloud, "artifacts", "--latest", "--target", "prod", "--successful")
    assert listed.returncode == 0, listed.stderr
    assert f"flow run {prod} (target prod): s3://{BUCKET}/prod/{prod}/" in listed.stdout
    fetched = _cli(cloud, "artifacts", "--flow-run", prod, "--dest", str(tmp_path / "baseline"))
    assert fetched.returncode == 0, fetched.stderr
    parity = _cli(
        cloud, "parity", "--baseline", str(tmp_path / "baseline"), "--candidate", "latest:prod"
    )
    assert parity.returncode == 0, parity.stdout + parity.stderr
    assert "NOT AT PARITY" not in parity.stdout


def test_a_missing_object_reads_as_not_kept(cloud: CloudlikeStack) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(FileNotFoundError, match=f"not kept: s3://{BUCKET}/prod/{missing}/"):
        artifact_store.load_store().read_path(f"prod/{missing}/kept.json")
    done = _cli(cloud, "artifacts", "--flow-run", missing)
    assert done.returncode == 1
    assert f"no artifacts kept for flow run {missing}" in done.stderr
    assert f"in block {S3_BLOCK}" in done.stderr


# -- crash, resume, state keywords ---------------------------------------------------------------


async def _active_slots(target: Target) -> int:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(guards.limit_name(target))
        return int(limit.active_slots)


def _kill_mid_build(parameters: dict[str, Any]) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from dbt_runtime.task_runs import recorded_task_runs

    async def scenario() -> Any:
        run = await run_deployment(  # type: ignore[misc]
            deployment_full_name(), parameters=parameters, timeout=0
        )
        deadline = time.monotonic() + 900
        async with get_client() as client:
            while True:  # dbt has built some nodes: mid-build
                done = [
                    t
                    for t in await recorded_task_runs(str(run.id))
                    if t.state and t.state.is_completed()
                ]
                if len(done) >= 3:
                    break
                assert time.monotonic() < deadline, "the build never got going"
                await asyncio.sleep(0.5)
            for pid in engine_pids(str(run.id)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            while not ((live := await client.read_flow_run(run.id)).state.is_final()):
                assert time.monotonic() < deadline
                await asyncio.sleep(1)
            assert await _active_slots(Target.prod) == 1  # nothing released the dead run's slot
            return live

    return asyncio.run(scenario())


@pytest.fixture(scope="module")
def crashed_and_resumed(
    cloud: CloudlikeStack, first_runs: dict[str, dict[str, Any]]
) -> tuple[Any, dict[str, Any]]:
    from dbt_runtime.resume import succeeded_nodes
    from dbt_runtime.task_runs import recorded_task_runs

    # A database of its own: fakesnow cannot run a second incremental/snapshot pass. Re-running
    # the script is a rotation: the next run reads the new block, no redeploy.
    cloud.script(
        "blocks.register_snowflake", "--target", "prod",
        env={**identity("prod"), "WG_SNOWFLAKE_PROD_DATABASE": "WG_PROD_RESUME"},
    )  # fmt: skip
    crashed = _kill_mid_build(scheduled_parameters())
    assert crashed.state.name == "Crashed", crashed.state
    built = succeeded_nodes(asyncio.run(recorded_task_runs(str(crashed.id))))
    assert built, "killed before any node finished: nothing to prove"
    resumed = trigger_run(
        cloud, {"target": "prod", "command": "retry", "state": "prod:last-failure"}, 900,
        out=sys.stderr,
    )  # fmt: skip
    resumed["built_before"] = built
    return crashed, resumed


def test_a_killed_prod_build_resumes_in_a_new_fresh_environment_rebuilding_nothing_it_finished(
    cloud: CloudlikeStack, crashed_and_resumed: tuple[Any, dict[str, Any]]
) -> None:
    from dbt_runtime.task_runs import TASK_KEY_PREFIX, recorded_task_runs

    crashed, resumed = crashed_and_resumed
    assert resumed["state"] == "Completed", resumed["message"]
    record = cloud.fresh_record(resumed["flow_run_id"])
    assert record is not None and record["dbt_importable"] is False
    assert record["home_entries"] == []
    logs = log_text(wait_for_logs(resumed["flow_run_id"], "finished"))
    assert f"Resuming crashed flow run {crashed.id}" in logs
    # the killed run's slot, taken back at once rather than when its lease lapses
    assert f"took back {guards.limit_name(Target.prod)!r} from flow run {crashed.id}" in logs
    # the parse cache came from the bucket into a container that never saw the earlier runs
    assert "Restored dbt's partial-parse state of the last prod run" in logs
    rebuilt = {
        t.task_key.removeprefix(f"{TASK_KEY_PREFIX}-")
        for t in asyncio.run(recorded_task_runs(resumed["flow_run_id"]))
    }
    assert rebuilt and not rebuilt & resumed["built_before"], sorted(
        rebuilt & resumed["built_before"]
    )


def test_state_prod_last_success_resolves_from_the_bucket_in_a_fresh_environment(
    cloud: CloudlikeStack, crashed_and_resumed: tuple[Any, dict[str, Any]]
) -> None:
    _, resumed = crashed_and_resumed
    result = trigger_run(
        cloud,
        {"target": "prod", "command": "test", "state": "prod:last-success",
         "exclude": EMULATOR_EXCLUDE},
        900, out=sys.stderr,
    )  # fmt: skip
    assert result["state"] == "Completed", result["message"]
    index = artifact_store.read_index(artifact_store.load_store(), "prod", result["flow_run_id"])
    assert index is not None
    state_dir = index["args"][index["args"].index("--state") + 1]
    assert state_dir.endswith(resumed["flow_run_id"]), index["args"]  # the newest success


# -- packages, cloud-deploy ------------------------------------------------------------------


def _project_with_local_package(dest: Path) -> Path:
    """A checkout of the tenant project that depends on a local package (offline)."""
    project = Path(shutil.copytree(PROJECT_DIR, dest / "project", ignore=shutil.ignore_patterns(
        "target", "logs", "dbt_packages", "*.duckdb*")))  # fmt: skip
    package = dest / "wg_helpers"
    (package / "macros").mkdir(parents=True)
    (package / "dbt_project.yml").write_text(
        "name: wg_helpers\nversion: '1.0.0'\nconfig-version: 2\nmacro-paths: [macros]\n"
    )
    (package / "macros" / "cents.sql").write_text(
        "{% macro cents(x) %}({{ x }} * 100){% endmacro %}\n"
    )
    # relative, as a repository would name it: the same text in every checkout
    (project / "packages.yml").write_text("packages:\n  - local: ../wg_helpers\n")
    return project


def test_packages_install_before_dbt_once_then_restore_by_the_locks_hash(
    cloud: CloudlikeStack, tmp_path: Path
) -> None:
    from dbt.cli.main import dbtRunner
    from dbt.version import __version__

    store = artifact_store.load_store()
    deps_runs: list[Path] = []

    def checkout(name: str) -> tuple[Path, Any]:
        project = _project_with_local_package(tmp_path / name)

        def deps() -> None:
            deps_runs.append(project)
            result = dbtRunner().invoke(["deps", "--project-dir", str(project)])
            assert result.success, result.exception

        return project, deps

    cold, deps = checkout("cold")
    first = packages.ensure_packages(store, cold, deps, __version__)
    warm, deps = checkout("warm")  # the next run: a fresh clone, dbt_packages/ empty
    second = packages.ensure_packages(store, warm, deps, __version__)
    assert first is not None and first.how == "installed"
    assert second is not None and second.how == "restored" and second.key == first.key
    assert deps_runs == [cold]  # the warm run did not reinstall
    assert (warm / "dbt_packages" / "wg_helpers" / "macros" / "cents.sql").is_file()
    assert first.key in _s3_keys(cloud, "_dbt-packages/")
    changed, deps = checkout("changed")
    (changed / "package-lock.yml").write_text("packages: []\nsha1_hash: changed\n")
    assert packages.lock_key(changed, __version__) != first.key  # a new lock installs afresh
    assert packages.ensure_packages(None, PROJECT_DIR, deps, __version__) is None  # no packages


def test_cloud_deploy_refuses_without_a_durable_artifacts_store(cloud: CloudlikeStack) -> None:
    local_block = "local-file-system/wg-dbt-artifacts"
    local = _cli(cloud, "cloud", "check-blocks", **{BLOCK_ENV: local_block})
    assert local.returncode == 1
    assert "is a folder on the worker's disk" in local.stderr
    assert "python -m blocks.register_artifacts --bucket" in local.stderr
    s3 = _cli(cloud, "cloud", "check-blocks")
    assert "worker's disk" not in s3.stderr and S3_BLOCK not in s3.stderr, s3.stderr
    get_settings.cache_clear()
