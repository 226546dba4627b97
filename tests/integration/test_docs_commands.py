"""Every ```bash block in README.md and runbook/*.md runs against the local stack.

A doc command that breaks fails CI. What the harness does to a block, and nothing else:
- runs it with `bash -euo pipefail` in a checkout of the code under test (the session's
  `repo_snapshot`, with this venv linked in as `.venv`), with the session stack's environment
  (`PREFECT_API_URL`, `PREFECT_HOME`, `WG_DUCKDB_PATH`, ... from `stack.env()`);
- replaces the local stack's documented address `http://127.0.0.1:4200` by the session server's,
  so `export PREFECT_API_URL=http://127.0.0.1:4200/api` means "this stack" (docs may also just
  use `$PREFECT_API_URL`);
- provides a dbt Cloud: a loopback fake holding the exported jobs, with the DbtCloudCredentials
  block the tooling loads by default (`wg-dbt-cloud`) registered on the session server, so the
  cutover/rollback pages run for real;
- leaves out the commands listed in COVERED_ELSEWHERE (each proven by another test).
Blocks that need something this machine cannot reach (Prefect Cloud login, Snowflake) are
written as ```text in the docs. After each block the harness waits for flow runs it started, and
before each page and at the end, puts the deployment back to day one (dbt Cloud runs the jobs).
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbt_runtime.project import REPO_ROOT
from migration.local_stack import LocalStack
from tests.prefect_api import api_request
from tests.tenant_project import ADD_COMMAND, RUN_COMMAND

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "runbook").glob("*.md"))]
LOCAL_STACK_URL = "http://127.0.0.1:4200"
# Commands the harness does not run, and the test that proves each instead.
COVERED_ELSEWHERE = {
    "make run": "tests/e2e/test_make_run.py (a fresh clone; port 4200 is the operator's)",
    "make test": "this test suite itself",
    # They add a tenant to the repository they run in (the session's deploys read it).
    ADD_COMMAND: "tests/integration/test_tenants.py (a clone with a second tenant)",
    RUN_COMMAND: "tests/integration/test_tenants.py (a clone with a second tenant)",
}
BLOCK_TIMEOUT = 900


@dataclass(frozen=True)
class DocBlock:
    path: Path
    line: int  # of the opening fence
    script: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def bash_blocks(path: Path) -> list[DocBlock]:
    """The fenced ```bash blocks of a Markdown file, with the line each starts on."""
    blocks, current, start = [], None, 0
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fence = line.strip()
        if current is None and re.fullmatch(r"```(bash|sh|shell)", fence):
            current, start = [], n
        elif current is not None and fence == "```":
            blocks.append(DocBlock(path, start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        raise AssertionError(f"{path}:{start}: ```bash block is never closed")
    return blocks


def runnable(script: str, api_url: str) -> str:
    """The block as the harness runs it (see the module docstring)."""
    root = api_url.removesuffix("/api")
    lines = []
    for line in script.splitlines():
        command = line.split("#", 1)[0].strip()
        if command in COVERED_ELSEWHERE:
            lines.append(f"# covered by {COVERED_ELSEWHERE[command]}: {command}")
            continue
        lines.append(line.replace(LOCAL_STACK_URL, root))
    return "\n".join(lines)


ALL_BLOCKS = [b for doc in DOCS for b in bash_blocks(doc)]


def test_extraction_finds_blocks_and_substitutes_only_what_it_documents(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "intro\n```bash\nmake run   # local\nexport PREFECT_API_URL=http://127.0.0.1:4200/api\n"
        "echo $PREFECT_API_URL\n```\n```text\nprefect cloud login\n```\n"
    )
    (block,) = bash_blocks(page)
    assert block.line == 2
    script = runnable(block.script, "http://127.0.0.1:5555/api")
    assert "export PREFECT_API_URL=http://127.0.0.1:5555/api" in script
    assert "# covered by tests/e2e/test_make_run.py" in script
    assert "prefect cloud login" not in script
    assert (REPO_ROOT / COVERED_ELSEWHERE["make run"].split()[0]).is_file()


def test_the_runbook_pages_exist_and_have_commands() -> None:
    pages = {p.name for p in DOCS}
    assert {"README.md", "adhoc-runs.md", "schedules.md", "cutover-and-rollback.md"} <= pages
    assert {"README.md", "schedules.md", "cutover-and-rollback.md"} <= {
        b.path.name for b in ALL_BLOCKS
    }


# -- against the stack -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_env(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, str]]]:
    import certifi
    from prefect_dbt.cloud import DbtCloudCredentials

    from dbt_runtime.dbt_cloud import DEFAULT_BLOCK
    from migration.dbt_cloud_jobs import load_export, scheduled_jobs
    from tests.day_one import restore_day_one
    from tests.fakes.dbt_cloud_server import FakeDbtCloud

    workdir = stack.repository
    venv = workdir / ".venv"  # docs say `.venv/bin/...`; gitignored, so the snapshot lacks it
    if not venv.exists():
        venv.symlink_to(REPO_ROOT / ".venv")
    fake = FakeDbtCloud(tmp_path_factory.mktemp("docs-dbt-cloud")).start()
    block_id = None
    try:
        for job in scheduled_jobs(load_export()):
            fields = {k: v for k, v in job.items() if k not in ("id", "execute_steps")}
            fake.add_job(int(job["id"]), execute_steps=job["execute_steps"], **fields)
        block_id = DbtCloudCredentials(
            api_key=fake.api_token, account_id=fake.account_id, domain=fake.domain
        ).save(DEFAULT_BLOCK, overwrite=True)
        # Trust the fake's certificate on top of the usual CAs (registries stay reachable).
        bundle = tmp_path_factory.mktemp("ca") / "bundle.pem"
        bundle.write_text(Path(certifi.where()).read_text() + fake.ca_file.read_text())
        env = stack.env() | {"SSL_CERT_FILE": str(bundle)}
        env.pop("VIRTUAL_ENV", None)
        yield workdir, env
    finally:
        fake.stop()
        if block_id is not None:
            api_request("DELETE", f"{stack.api_url}/block_documents/{block_id}")
        restore_day_one()  # whatever a page paused or cut over: dbt Cloud runs the jobs again


def wait_for_started_runs(api_url: str, timeout: float = 600) -> None:
    """A block may start a run without --watch; the next one must not share the DuckDB lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = dt.datetime.now(dt.UTC).isoformat()
        body = {
            "flow_runs": {
                "state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}},
                "expected_start_time": {"before_": now},
            }
        }
        if not api_request("POST", f"{api_url}/flow_runs/filter", json=body).json():
            return
        time.sleep(2)
    raise AssertionError(f"flow runs started by a doc block still running after {timeout}s")


@pytest.mark.integration
@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.name for b in ALL_BLOCKS])
def test_doc_commands_run_against_the_local_stack(
    block: DocBlock, docs_env: tuple[Path, dict[str, str]], stack: LocalStack
) -> None:
    from tests.day_one import restore_day_one

    workdir, env = docs_env
    if block is next(b for b in ALL_BLOCKS if b.path == block.path):
        restore_day_one()  # each page starts from day one, whatever ran before
    script = runnable(block.script, stack.api_url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
    )
    wait_for_started_runs(stack.api_url)
    assert done.returncode == 0, (
        f"{block.name}: a documented command failed (exit {done.returncode}). Fix the command "
        f"or the code; mark it ```text only if it needs a service this machine cannot reach.\n"
        f"--- script\n{script}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n"
        f"{done.stderr[-4000:]}"
    )
