"""Custom-run input is data: the hostile-input matrix (`pytest -m security`).

Through the real deployment: every case below passes the server's parameter schema and is
refused by the flow's own checks, before dbt starts, naming the parameter (or job variable).
The job-variable cases, and one parameter case end to end, run through the worker (the env a
Custom run sets reaches the flow through it); the other parameter cases are flow runs of the
same deployment with the same server-validated parameters, run one after another in one process
as the worker's engine runs a flow (`run_flow`): the path a parameter takes is the same, without
a worker process start per case. Then what the server's schema or the work pool's job template
refuse, and a canary password on the Snowflake emulator's dev target.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime import guards, project
from dbt_runtime.invocation import Target
from dbt_runtime.settings import get_settings
from flows.dbt_project import dbt_project
from migration.local_stack import LocalStack
from tests.integration.test_notifications import (
    BLOCK,
    WebhookReceiver,
    apply,
    cli,
    run_deployment_in_process,
    run_deployments_in_process,
)
from tests.integration.test_secrets import CANARY, _run_record, files_containing
from tests.integration.test_snowflake_path import (
    PROJECT_DIR_ENV,
    Emulator,
    copy_project,
    delete_dev_blocks,
    dev_inputs,
    flow_run_id,
    register_dev,
    running_emulator,
)
from tests.prefect_api import log_text, wait_for_logs

pytestmark = [pytest.mark.integration, pytest.mark.security]

JINJA_LEAK = "{{ log('X=' ~ env_var('HOME'), info=True) }}GBP"
# case id -> (parameters, job variables, what the failed run's message says)
HOSTILE_CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "vars-jinja-value": (
        {"vars": {"reporting_currency": JINJA_LEAK}},
        {},
        "parameter 'vars': key 'reporting_currency' holds the Jinja delimiter '{{'",
    ),
    "vars-jinja-key": ({"vars": {"{% do x %}": "1"}}, {}, "parameter 'vars': key '{% do x %}'"),
    "vars-jinja-nested": (
        {"vars": {"a": {"b": ["ok", "{# c #}"]}}},
        {},
        "parameter 'vars': key 'a.b[1]' holds the Jinja delimiter '{#'",
    ),
    "vars-run-query": (
        {"vars": {"x": "{{ run_query('drop schema main cascade') }}"}},
        {},
        "parameter 'vars': key 'x'",
    ),
    "select-too-many": (
        {"select": [f"stg_{i}" for i in range(101)]},
        {},
        "parameter 'select': 101 selectors, more than 100",
    ),
    "exclude-too-long": (
        {"exclude": ["x" * 300]},
        {},
        "parameter 'exclude': a selector of 300 characters",
    ),
    "state-too-long": ({"state": "s" * 5000}, {}, "parameter 'state': 5000 characters"),
    "state-outside-root": ({"state": "/etc"}, {}, "parameter 'state': '/etc' is not under"),
    "state-traversal": ({"state": "../../../etc"}, {}, "is not under the state root"),
    # keys the pool accepts (the deployment sets them), values a run may not change
    "env-tenant": (
        {},
        {"env": {"WG_TENANT": "someone_elses_tenant"}},
        "job variable 'env': a run may not set WG_TENANT",
    ),
    "env-artifacts-block": (
        {},
        {"env": {"WG_ARTIFACTS_BLOCK": "s3-bucket/someone-elses-bucket"}},
        "job variable 'env': a run may not set WG_ARTIFACTS_BLOCK",
    ),
}


# Through the worker: what only the worker carries (job variables), and one parameter case end
# to end. Three runs at once: a dozen flow-run processes starting together on two cores made the
# local SQLite server answer 503 while the worker submitted them.
THROUGH_THE_WORKER = ("vars-jinja-value", "env-tenant", "env-artifacts-block")
CASES_AT_ONCE = 3


async def _run_all(cases: dict[str, tuple[dict[str, Any], dict[str, Any], str]]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    final: dict[str, Any] = {}
    names = list(cases)
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(project.deployment_full_name())
        for start in range(0, len(names), CASES_AT_ONCE):
            created = {}
            for case in names[start : start + CASES_AT_ONCE]:
                params, job_vars, _ = cases[case]
                created[case] = await client.create_flow_run_from_deployment(
                    deployment.id,
                    parameters={"target": "local", "command": "seed", **params},
                    job_variables=job_vars or None,
                )
            deadline = time.monotonic() + 600
            while not set(created) <= set(final):
                for case, run in created.items():
                    if case in final:
                        continue
                    now = await client.read_flow_run(run.id)
                    if now.state is not None and now.state.is_final():
                        final[case] = (now, await _task_run_count(client, run.id))
                if time.monotonic() > deadline:
                    missing = set(created) - set(final)
                    raise TimeoutError(f"runs not final after 600 s: {missing}")
                await asyncio.sleep(1)
    return final


async def _task_run_count(client: Any, run_id: Any) -> int:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = await client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
    )
    return len(runs)


async def _final_runs(ids: dict[str, str]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {
            case: (run := await client.read_flow_run(run_id), await _task_run_count(client, run.id))
            for case, run_id in ids.items()
        }


def _run_in_one_process(stack: LocalStack, cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The parameter cases: runs of the deployment, one after another in one process."""
    runs = run_deployments_in_process(
        stack, {case: {"target": "local", "command": "seed", **p} for case, p in cases.items()}, {}
    )
    return asyncio.run(_final_runs({case: run.id for case, run in runs.items()}))


@pytest.fixture(scope="module")
def hostile_runs(stack: LocalStack) -> dict[str, Any]:
    in_process = {c: p for c, (p, _, _) in HOSTILE_CASES.items() if c not in THROUGH_THE_WORKER}
    needs_worker = {c for c, (_, job_variables, _) in HOSTILE_CASES.items() if job_variables}
    assert needs_worker <= set(THROUGH_THE_WORKER), "job variables reach a run only by the worker"
    through = {c: HOSTILE_CASES[c] for c in THROUGH_THE_WORKER}
    return _run_in_one_process(stack, in_process) | asyncio.run(_run_all(through))


# What a run logs once it goes for the warehouse: it holds its target's slot (guards.py), then
# starts dbt (run.py). Evidence per run: the stack's warehouse file is shared with whatever
# else this test worker ran, so its modification time proves nothing about these runs.
WAREHOUSE_STEPS = (f"holding {guards.limit_name(Target.local)!r}", "Running dbt seed")


@pytest.mark.parametrize("case", list(HOSTILE_CASES))
def test_hostile_custom_run_fails_before_dbt_naming_the_parameter(
    hostile_runs: dict[str, Any], case: str
) -> None:
    run, task_runs = hostile_runs[case]
    expected = HOSTILE_CASES[case][2]
    assert run.state.is_failed(), (run.state.name, run.state.message)
    assert expected in (run.state.message or ""), run.state.message
    assert task_runs == 0  # no dbt node ran
    logs = log_text(wait_for_logs(str(run.id), until="Finished in state Failed"))
    assert not [step for step in WAREHOUSE_STEPS if step in logs], logs  # never reached dbt


# -- refused by the server: the parameter schema and the work pool's job template --------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--param", "timeout_seconds=1000000000000"], "greater than the maximum of 86400"),
        (["--job-variable", "command=sh -c 'cat /etc/passwd'"], "command"),
        (["--job-variable", "working_dir=/tmp/elsewhere"], "working_dir"),
        # env keys that choose code or paths: the pull steps' pip, Python, dbt, the project
        (["--job-variable", 'env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple"}'], "PIP_INDEX_URL"),
        (["--job-variable", 'env={"PYTHONPATH": "/tmp/x"}'], "PYTHONPATH"),
        (["--job-variable", 'env={"WG_DBT_PROJECT_DIR": "/tmp/p"}'], "WG_DBT_PROJECT_DIR"),
        (["--job-variable", 'env={"WG_STATE_ROOT": "/"}'], "WG_STATE_ROOT"),
        (["--job-variable", "image=someone/else:latest"], "someone/else:latest"),
    ],
    ids=[
        "timeout-over-24h",
        "jobvar-command",
        "jobvar-working-dir",
        "env-pip-index",
        "env-pythonpath",
        "env-project-dir",
        "env-state-root",
        "jobvar-image",
    ],
)
def test_server_refuses_what_no_run_may_choose(
    stack: LocalStack, args: list[str], expected: str
) -> None:
    done = stack.prefect(
        "deployment", "run", project.deployment_full_name(), *args, "--param", "target=local",
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert expected in output, output


def test_the_form_shows_the_timeout_bound(stack: LocalStack) -> None:
    async def schema() -> dict[str, Any]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            deployment = await client.read_deployment_by_name(project.deployment_full_name())
            return dict(deployment.parameter_openapi_schema or {})

    timeout = asyncio.run(schema())["properties"]["timeout_seconds"]
    assert timeout["maximum"] == 86400 and timeout["exclusiveMinimum"] == 0


# -- the canary on the Snowflake emulator's dev target -----------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(tmp_path_factory.mktemp("fakesnow")) as running:
        yield running


def _dev_run(project_dir: Path, emulator: Emulator, mp: pytest.MonkeyPatch, **params: Any) -> Any:

    mp.setenv(PROJECT_DIR_ENV, str(project_dir))
    for key, value in emulator.profile_env().items():
        mp.setenv(key, value)
    get_settings.cache_clear()  # settings are read once per process; this test uses two projects
    return dbt_project(target="dev", return_state=True, **params)


def test_canary_password_never_leaves_dbt_whatever_the_parameters(
    stack: LocalStack, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Positive control and leak scan in one test: the emulator received the canary (so its
    absence elsewhere means something), the run's final log line was read (no later batch is
    missed), and no log, artifact, kept or temporary file, or warehouse table holds it. A model
    that asks for the secret gets dbt's own refusal, and the run leaves no block value in the
    environment."""
    import tempfile

    database = "WG_DEV_SECURITY"
    register_dev(dev_inputs(database, WG_SNOWFLAKE_DEV_PASSWORD=CANARY))
    project_dir = copy_project(tmp_path / "dbt_williamgrant")
    probe_dir = copy_project(tmp_path / "probe" / "dbt_williamgrant")
    (probe_dir / "models" / "secret_probe.sql").write_text(
        "select '{{ env_var(\"DBT_ENV_SECRET_PASSWORD\") }}' as leaked\n"
    )
    run_tmp = tmp_path / "run-tmp"
    run_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(run_tmp))
    started, seen = time.time() - 1, len(emulator.logins)
    try:
        good = _dev_run(
            project_dir, emulator, monkeypatch, command="seed", select=["raw_brands"],
            vars={"reporting_currency": "USD"},
        )  # fmt: skip
        leaked_env = [k for k in os.environ if k.startswith(("PREFECT_BLOCKS_", "DBT_ENV_SECRET"))]
        probe = _dev_run(probe_dir, emulator, monkeypatch, command="seed", select=["raw_brands"])
    finally:
        delete_dev_blocks()
    assert good.is_completed(), good.message
    logins = emulator.logins[seen:]
    assert logins and {login.password for login in logins} == {CANARY}  # positive control
    assert leaked_env == []
    assert probe.is_failed()
    assert "Secret env vars are allowed only in profiles.yml" in (probe.message or ""), (
        probe.message
    )

    for state in (good, probe):
        logs, artifacts, record = asyncio.run(_run_record(flow_run_id(state)))
        assert logs and not [m for m in logs if CANARY in m]
        assert not [a for a in artifacts if CANARY in a]
        assert CANARY not in record
    roots = [project_dir, probe_dir, run_tmp, stack.home]
    assert files_containing(CANARY.encode(), roots, started) == []
    rows = emulator.query(database, f"select * from {database}.raw.raw_brands")
    assert rows and not [r for r in rows if CANARY in str(r)]


# -- the canary in notification payloads -------------------------------------------------------

# A model that tries to read the dev password and put it into its error, which the run's final
# state message and so the failure notification carry (the names are the ones prefect-dbt
# would export block fields under, and the registration script's input).
# When it runs (`execute`), after the seed has logged in; at parse time it is plain SQL.
LEAK_ATTEMPT = (
    '{% if execute %}{{ exceptions.raise_compiler_error("leak attempt: ["'
    ' ~ env_var("PREFECT_BLOCKS_SNOWFLAKE_CREDENTIALS_WG_DBT_DEV_PASSWORD", "unset") ~ "|"'
    ' ~ env_var("WG_SNOWFLAKE_DEV_PASSWORD", "unset") ~ "]") }}{% endif %}\n'
    "select 1 as x\n"
)


@pytest.fixture
def dev_rules(stack: LocalStack, tmp_path: Path) -> Iterator[WebhookReceiver]:
    """A webhook receiver and one rule: every failed or completed run on target dev."""
    receiver = WebhookReceiver()
    name = BLOCK.split("/")[1]
    cli(stack, "-m", "blocks.register_notifications", "webhook", "--name", name,
        env={"WG_WEBHOOK_URL": receiver.url})  # fmt: skip
    rules = tmp_path / "notifications.yaml"
    rules.write_text(
        f"rules:\n  - name: dev-outcomes\n    targets: [dev]\n    on: [failed, completed]\n"
        f"    notify: [{BLOCK}]\n"
    )
    apply(stack, rules)
    try:
        yield receiver
    finally:
        rules.write_text("rules: []\n")
        apply(stack, rules)
        receiver.stop()


def test_canary_password_never_reaches_a_notification(
    stack: LocalStack, emulator: Emulator, dev_rules: WebhookReceiver, tmp_path: Path
) -> None:
    """A run of the deployment on dev (the emulator got the canary: positive control) whose
    model tries to read the password into its error: the failure notification carries that
    error text (so a readable secret would be in it) and never the canary."""
    register_dev(dev_inputs("WG_DEV_NOTIFY", WG_SNOWFLAKE_DEV_PASSWORD=CANARY))
    project_dir = copy_project(tmp_path / "dbt_williamgrant")
    (project_dir / "models" / "leak_attempt.sql").write_text(LEAK_ATTEMPT)
    seen = len(emulator.logins)
    try:
        run = run_deployment_in_process(
            stack, project_dir,
            {"target": "dev", "command": "build", "select": ["raw_brands", "leak_attempt"]},
            **emulator.profile_env(),
        )  # fmt: skip
    finally:
        delete_dev_blocks()
    assert run.state == "FAILED" and "leak attempt" in run.message, run
    assert CANARY in {login.password for login in emulator.logins[seen:]}  # positive control
    message = dev_rules.wait_for(run.id)
    assert "leak attempt: [unset|unset]" in message["body"], message  # the error is carried
    assert not [m for m in dev_rules.messages if CANARY in json.dumps(m)]
