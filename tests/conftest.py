"""Shared fixtures: one local Prefect server + process worker for the whole test session."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbt_runtime.project import REPO_ROOT
from dbt_runtime.settings import get_settings
from migration.local_stack import LocalStack, free_port, prefect_api
from tests.prefect_db import migrated_database, seed_prefect_home

# The servers this suite starts (and `make run` in a clone: the tests pass PREFECT_SERVER_* on)
# skip registering the block types of every installed integration at start-up: it imports
# prefect-dbt, prefect-snowflake, prefect-aws and prefect-github in the server, 12 s of CPU per
# start on this machine (py-spy). Only the UI's block catalog shows them; a block saved by
# blocks/ or a test registers its own type, which is all a run or the tooling reads.
os.environ.setdefault("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", "false")
os.environ.setdefault("PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION", "false")
# A run waiting for its target's slot asks again when the server's 423 says (Retry-After: the
# slot's average occupancy, capped at 30 s): in tests that queue runs, most of a hand-over was
# the next run asleep. Capped at 3 s here.
os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "3")

# pytest-xdist hands each worker whole files (`--dist loadfile`) in collection order
# (`--no-loadscope-reorder`; its default order, most tests first, started the one-test files
# that run `make run` or a bench last, with the other worker idle). The longest files start
# first, so that the end of the session is short files on both workers. Seconds per file
# (setup + call + teardown) from a fresh-clone .ci/run, 2026-11-30; the rest keep pytest's order.
# The parity file goes second: its first six tests run dbt in this process and need no server,
# so the second worker builds them while the first makes the session's migrated Prefect
# database (about 19 s, tests/prefect_db.py), instead of waiting on its lock with a core idle.
LONGEST_FIRST = (
    "tests/integration/test_cloudlike.py",  # 561
    "tests/integration/test_parity_cli.py",  # 235
    "tests/integration/test_docs_commands.py",  # 418
    "tests/integration/test_tenants.py",  # 291
    "tests/integration/test_reliability.py",  # 276
    "tests/integration/test_security.py",  # 205
    "tests/e2e/test_make_run.py",  # 125
    "tests/integration/test_notifications.py",  # 102
    "tests/integration/test_bench_smoke.py",  # 95
    "tests/integration/test_day_one.py",  # 94
    "tests/integration/test_rollback_to_ref.py",  # 92
    "tests/integration/test_browser.py",  # 70
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


def snapshot_repository(dest: Path) -> Path:
    """A git repo holding this working tree as one commit: what the worker's git_clone pulls.

    Runs then execute the code under test (including uncommitted edits), exactly as CI's clean
    checkout would, through the real git_clone + pip_install pull steps.
    """
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot under test"], cwd=dest, check=True)
    return dest


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings are read once per process; a test that sets WG_* variables gets them re-read."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def repo_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_repository(tmp_path_factory.mktemp("repo") / "dbt-williamgrant-prefect")


@pytest.fixture(scope="session")
def migrated_prefect_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's migrated Prefect database (tests/prefect_db.py), made once per session:
    xdist's workers share the session's directory, the first makes it, the other waits."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's, above each worker's
    return migrated_database(shared / "prefect-db")


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, repo_snapshot: Path, migrated_prefect_db: Path
) -> Iterator[LocalStack]:
    """The session's Prefect server on 127.0.0.1 (SQLite), with the deployment and a worker.

    Stopped by PID at the end of the session. Tests get a client through `stack.env()`.
    """
    stack = LocalStack(
        home=tmp_path_factory.mktemp("prefect-stack"), port=free_port(), repository=repo_snapshot
    )
    seed_prefect_home(stack.home, migrated_prefect_db)
    previous = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    try:
        stack.start_server()
        os.environ.update(PREFECT_API_URL=stack.api_url, PREFECT_HOME=str(stack.home / "prefect"))
        stack.ensure_pool()
        stack.ensure_artifact_store()
        stack.deploy()
        stack.start_worker()
        # Setting up the stack read (and cached) the settings: a module fixture that sets WG_*
        # variables before its first test must not run on them (test_observability in isolation).
        get_settings.cache_clear()
        # os.environ alone is not enough: Prefect reads its settings once, at import, and a
        # test module collected earlier may already have imported prefect (and started its
        # event and log workers on another API: prefect_api drains them).
        with prefect_api(stack.api_url):
            yield stack
    finally:
        stack.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
