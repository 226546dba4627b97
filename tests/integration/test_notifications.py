"""Notifications on the real local server: notifications.yaml -> automations -> a webhook.

A loopback HTTP receiver stands in for Slack; a `custom-webhook` block registered by
`python -m blocks.register_notifications` points at it; `python -m migration notifications apply`
creates the automations; the server's own trigger and action services deliver the messages.
Runs are real flow runs of the deployment on target `local` (DuckDB), executed in this process
like a worker executes them (a Pending run of the deployment, then Prefect's flow engine).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime.project import REPO_ROOT, tenants
from dbt_runtime.settings import env_name
from migration import notifications
from migration.local_stack import LocalStack

# William Grant's project: prefect.yaml's first tenant (not tenant(): settings are read
# per test, and a module-level read would cache them before a fixture sets WG_* variables).
PROJECT_DIR = tenants()[0].project_dir

PROJECT_DIR_ENV = env_name("dbt_project_dir")
pytestmark = [pytest.mark.integration, pytest.mark.notifications]

BLOCK = "custom-webhook/wg-notify-test"
DELIVERY_TIMEOUT = 120.0  # automations fire asynchronously; bounded wait
GRACE = 5.0  # after a message arrived: time for a (wrong) second one to show up
RULES = f"""
rules:
  - name: local-problems
    targets: [local]
    on: [failed, crashed, timed_out, warned]
    notify: [{BLOCK}]
  - name: dev-problems
    targets: [dev]
    on: [failed, warned]
    notify: [{BLOCK}]
  - name: prod-success
    targets: [prod]
    on: [completed]
    notify: [{BLOCK}]
"""
BROKEN_MODEL = "broken_for_notifications"
WARNING_TEST = "warns_for_notifications"


class WebhookReceiver:
    """Records every JSON POST; 127.0.0.1 only, stopped by the fixture that started it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                receiver.messages.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def about(self, flow_run_id: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if flow_run_id in m.get("body", "")]

    def wait_for(self, flow_run_id: str, timeout: float = DELIVERY_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.about(flow_run_id):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no notification about flow run {flow_run_id} within {timeout}s; "
                    f"received: {self.messages}"
                )
            time.sleep(0.5)
        return self.about(flow_run_id)[0]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def cli(stack: LocalStack, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT, env=stack.env() | (env or {}), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def apply(stack: LocalStack, rules_file: Path) -> str:
    return cli(stack, "-m", "migration", "notifications", "apply", "--file", str(rules_file))


# Runs of the deployment executed the way a worker's subprocess executes one: a Pending run
# (the worker only picks up Scheduled runs, so this one is ours; the server validates its
# parameters against the deployment's schema), then Prefect's flow engine. In a fresh process:
# Prefect reads its settings (the session server's URL) once, at import, and its background
# log/event threads would not see this process's temporary settings. Several runs share the
# process (and its imports), one after another.
_RUN_SCRIPT = """
import asyncio, json, sys
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Pending
from flows.dbt_project import dbt_project
from dbt_runtime import project

async def pending_run(parameters):
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(project.deployment_full_name())
        return await client.create_flow_run_from_deployment(
            deployment.id, parameters=parameters, state=Pending()
        )

for name, parameters in json.loads(sys.argv[1]).items():
    flow_run = asyncio.run(pending_run(parameters))
    print(json.dumps({"name": name, "id": str(flow_run.id)}), flush=True)
    state = run_flow(dbt_project, flow_run=flow_run, parameters=flow_run.parameters,
                     return_type="state")
    print(json.dumps({"name": name, "id": str(flow_run.id), "type": state.type.value,
                      "message": state.message}), flush=True)
"""


@dataclass(frozen=True)
class Run:
    id: str
    state: str  # Prefect state type: COMPLETED, FAILED, ...
    message: str


def run_deployments_in_process(
    stack: LocalStack, runs: dict[str, dict[str, Any]], env: dict[str, str]
) -> dict[str, Run]:
    """Each named parameter set as a run of the deployment, in one process: name -> its Run."""
    done = subprocess.run(
        [sys.executable, "-c", _RUN_SCRIPT, json.dumps(runs)],
        cwd=REPO_ROOT, env=stack.env() | env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    ended = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"name"')]
    out = {r["name"]: Run(r["id"], r["type"], r["message"] or "") for r in ended if "type" in r}
    assert set(out) == set(runs), f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return out


def run_deployment_in_process(
    stack: LocalStack, project_dir: Path, params: dict[str, Any], **extra_env: str
) -> Run:
    env = {
        PROJECT_DIR_ENV: str(project_dir),
        "WG_DUCKDB_PATH": str(project_dir.parent / "notifications.duckdb"),
        **extra_env,
    }
    return run_deployments_in_process(stack, {"run": params}, env)["run"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rules_file(
    stack: LocalStack, receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The webhook block and the test rules applied; afterwards no managed automation is left."""
    name = BLOCK.split("/")[1]
    out = cli(stack, "-m", "blocks.register_notifications", "webhook", "--name", name,
              env={"WG_WEBHOOK_URL": receiver.url})  # fmt: skip
    assert f"registered {BLOCK}" in out
    path = tmp_path_factory.mktemp("notifications") / "notifications.yaml"
    path.write_text(RULES)
    apply(stack, path)
    try:
        yield path
    finally:
        empty = path.with_name("empty.yaml")
        empty.write_text("rules: []\n")
        apply(stack, empty)


@pytest.fixture(scope="module")
def dbt_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with one broken model and one singular test that only warns."""
    copy = tmp_path_factory.mktemp("project") / "dbt_williamgrant"
    ignore = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb")
    shutil.copytree(PROJECT_DIR, copy, ignore=ignore)
    (copy / "models" / "marts" / f"{BROKEN_MODEL}.sql").write_text(
        "select * from a_table_that_does_not_exist\n"
    )
    (copy / "tests" / f"{WARNING_TEST}.sql").write_text(
        "{{ config(severity='warn') }}\nselect 1 as always_one_row\n"
    )
    return copy


def test_failing_local_run_delivers_exactly_one_message_with_what_on_call_needs(
    rules_file: Path, dbt_project: Path, receiver: WebhookReceiver, stack: LocalStack
) -> None:
    run = run_deployment_in_process(
        stack, dbt_project, {"target": "local", "select": [BROKEN_MODEL]}
    )
    assert run.state == "FAILED", run

    message = receiver.wait_for(run.id)
    subject, body = message["subject"], message["body"]
    assert subject.startswith("dbt local: Failed - dbt_project/williamgrant (ad-hoc)")
    assert "Deployment: dbt_project/williamgrant" in body
    assert "Target: local" in body
    assert "Schedule: ad-hoc" in body
    # the failed node with its first error line (the flow's final state message)
    assert f"model.dbt_williamgrant.{BROKEN_MODEL}" in body
    assert "a_table_that_does_not_exist" in body
    assert f"{stack.ui_url}/runs/flow-run/{run.id}" in body
    assert f"{stack.ui_url}/runs/flow-run/{run.id}?tab=Artifacts" in body
    assert "dbt-summary-local" in body
    assert message["text"].startswith(subject)  # what a Slack-compatible receiver shows

    time.sleep(GRACE)  # a duplicate (dev rule, a second automation) would arrive by now
    assert len(receiver.about(run.id)) == 1, receiver.about(run.id)


def test_warning_only_run_delivers_a_warning_message(
    rules_file: Path, dbt_project: Path, receiver: WebhookReceiver, stack: LocalStack
) -> None:
    run = run_deployment_in_process(
        stack, dbt_project, {"target": "local", "select": [WARNING_TEST]}
    )
    assert run.state == "COMPLETED", run

    message = receiver.wait_for(run.id)
    assert message["subject"].startswith("dbt local: Completed with warnings")
    assert "Outcome: Completed with warnings" in message["body"]
    assert f"test.dbt_williamgrant.{WARNING_TEST}: " in message["body"]
    time.sleep(GRACE)
    assert len(receiver.about(run.id)) == 1, receiver.about(run.id)


def test_successful_local_run_delivers_none_even_with_a_success_rule_for_prod(
    rules_file: Path, dbt_project: Path, receiver: WebhookReceiver, stack: LocalStack
) -> None:
    """`local` stands for a non-prod target here: dev needs Snowflake, which is not reachable."""
    quiet = run_deployment_in_process(
        stack, dbt_project, {"target": "local", "select": ["raw_brands"]}
    )
    assert quiet.state == "COMPLETED", quiet
    # Positive control, started after the quiet run ended: once its message is in, any
    # message about the quiet run would have been delivered too.
    control = run_deployment_in_process(
        stack, dbt_project, {"target": "local", "state": "/no/manifest/here"}
    )
    assert control.state == "FAILED", control
    assert "parameter 'state'" in receiver.wait_for(control.id)["body"]
    time.sleep(GRACE)
    assert receiver.about(quiet.id) == []


async def _managed() -> list[dict[str, Any]]:
    return await notifications.managed_automations()


def test_apply_is_idempotent_restores_paused_automations_and_removes_dropped_rules(
    rules_file: Path, stack: LocalStack
) -> None:
    from prefect.automations import Automation, DoNothing, EventTrigger

    declared = {f"wg-notify/{name}" for name in ("local-problems", "dev-problems", "prod-success")}
    handmade = Automation(
        name="someone's own automation",
        trigger=EventTrigger(expect={"prefect.flow-run.Failed"}),
        actions=[DoNothing()],
    ).create()
    try:
        out = apply(stack, rules_file)  # the fixture applied once already
        assert set(out.split()) >= {"unchanged", *declared} and "create" not in out, out
        names = sorted(a["name"] for a in asyncio.run(_managed()))
        assert names == sorted(declared)  # one automation per rule, after two applies

        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:  # what the UI toggle / CLI pause does
            client.pause_automation(Automation.read(name="wg-notify/prod-success").id)
        out = apply(stack, rules_file)
        assert "update    wg-notify/prod-success" in out and "enabled" in out, out
        assert Automation.read(name="wg-notify/prod-success").enabled

        fewer = rules_file.with_name("fewer.yaml")
        fewer.write_text(RULES.split("  - name: dev-problems")[0])
        out = apply(stack, fewer)
        assert "delete    wg-notify/dev-problems" in out, out
        names = sorted(a["name"] for a in asyncio.run(_managed()))
        assert names == ["wg-notify/local-problems"]
        assert Automation.read(name="someone's own automation").id == handmade.id
    finally:
        apply(stack, rules_file)
        assert handmade.id is not None
        handmade.delete()
