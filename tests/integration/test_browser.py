"""The Prefect UI as users use it, in headless Chromium (Debian's, never `playwright install`).

(a) Toggling the prod schedule off and on in the default (React, /v2/) UI must not make its next
    run build dev. The toggle happens in the browser; the next run is made by the server's own
    scheduling code (POST /deployments/{id}/schedule, what the scheduler service calls, with
    the same created_by and idempotency key), then executed in-process right away instead of
    waiting for 05:00. Only its start time is ours. There is no Snowflake here: the proof is
    that the run went for the prod target's credentials (its blocks are what the run stops on).
(b) A Custom run from the default UI's form, with target, select and vars typed in, completes
    through the worker with exactly those parameters.
(c) That run's page shows the dbt summary artifact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dbt_runtime import project
from migration.local_stack import LocalStack
from tests.prefect_api import api_client, log_text, wait_for_logs

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = project.REPO_ROOT / "test-results" / "browser"
RUN_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: `apt-get install chromium` (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # A persistent context is the only way to give Chromium a fresh user-data-dir of ours.
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(30_000)
        context.route("**/api/**", _retry_lost_races)
        try:
            yield context
        finally:
            context.close()


def _retry_lost_races(route: Any) -> None:
    """The browser's API calls get the retries Prefect's clients make (`api_client`): the local
    server's SQLite answers 503 to a write that lost a race with the worker or the scheduler.
    The UI does not retry; Prefect Cloud (Postgres) does not lose such races."""
    for attempt in range(6):
        response = route.fetch()
        if response.status != 503:
            break
        time.sleep(0.1 * 2**attempt)  # back-off between attempts, as Prefect's client does
    route.fulfill(response=response)


def _screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    page = chromium.new_page()
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:  # the call phase was reported already
        _screenshot(page, request.node.name)
    page.close()


def _api(stack: LocalStack) -> httpx.Client:
    return api_client(stack.api_url)


def _deployment(stack: LocalStack) -> dict[str, Any]:
    with _api(stack) as api:
        name = project.deployment_full_name()
        response = api.get(f"/deployments/name/{name}")
        response.raise_for_status()
        return dict(response.json())


def _prod_spec() -> project.ScheduleSpec:
    return next(s for s in project.schedules() if s.parameters.get("target") == "prod")


def _cron_label(cron: str) -> str:
    """How the React UI words a daily `M H * * *` cron: "At 05:00 AM"."""
    minute, hour, *rest = cron.split()
    assert rest == ["*", "*", "*"], f"teach _cron_label the cron {cron!r}"
    h = int(hour)
    return f"At {(h % 12) or 12:02d}:{int(minute):02d} {'AM' if h < 12 else 'PM'}"


def _wait_final(stack: LocalStack, flow_run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    with _api(stack) as api:
        while True:
            run = api.get(f"/flow_runs/{flow_run_id}").json()
            if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                return dict(run)
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run_id} still {run['state']['name']}")
            time.sleep(2)


# -- (a) ---------------------------------------------------------------------------------------


def test_v2_toggle_of_the_prod_schedule_keeps_its_next_run_on_prod(
    stack: LocalStack, page: Any
) -> None:
    from playwright.sync_api import expect
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    from dbt_runtime.schedule_guard import ARTIFACT_KEY
    from flows.dbt_project import dbt_project
    from migration.schedules import read_live, write_schedule

    spec = _prod_spec()
    deployment = _deployment(stack)
    dep_id = deployment["id"]
    consumed: str | None = None  # the scheduled run this test starts
    with get_client(sync_client=True) as client:
        before = next(s for s in read_live(client, dep_id) if s.slug == spec.slug)
        # As after the cutover: Prefect runs prod (day one deploys it paused).
        write_schedule(client, dep_id, before, active=True, parameters=spec.parameters)
    try:
        page.goto(f"{stack.ui_url}/v2/deployments/deployment/{dep_id}")
        card = (
            page.locator("div")
            .filter(has_text=_cron_label(spec.cron))
            .filter(has=page.get_by_role("switch"))
            .last
        )
        switch = card.get_by_role("switch")
        for active in (False, True):
            with page.expect_request(
                lambda r: r.method == "PATCH" and r.url.endswith(f"/schedules/{before.id}")
            ) as sent:
                switch.click()
            assert json.loads(sent.value.post_data or "{}").get("active") is active
            # Wait for the UI to settle on the new state before the next click (a fixed pause
            # lost the second click on a busy machine).
            expect(switch).to_have_attribute(
                "aria-checked", "true" if active else "false", timeout=30_000
            )
            expect(switch).to_be_enabled(timeout=30_000)
        assert switch.get_attribute("aria-checked") == "true"

        # The next run, made by the server's scheduling code from the schedule as it is now.
        with _api(stack) as api:
            api.post(
                f"/deployments/{dep_id}/schedule", json={"min_runs": 10, "max_runs": 10}
            ).raise_for_status()
            runs = api.post(
                "/flow_runs/filter",
                json={
                    "deployments": {"id": {"any_": [dep_id]}},
                    "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
                    "sort": "EXPECTED_START_TIME_ASC",
                },
            ).json()
        ours = [r for r in runs if (r.get("created_by") or {}).get("id") == str(before.id)]
        assert ours, f"the server scheduled no run for {spec.slug}: {runs}"
        scheduled = ours[0]
        assert scheduled["created_by"] == {
            "id": str(before.id), "type": "SCHEDULE", "display_value": spec.slug,
        }  # fmt: skip

        # Start it now rather than at the cron time: Pending, so no worker races us for it.
        consumed = scheduled["id"]
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(scheduled["id"], Pending(), force=True)
            flow_run = client.read_flow_run(scheduled["id"])
        state = run_flow(
            dbt_project, flow_run=flow_run, parameters=flow_run.parameters,
            return_type="state",
        )  # fmt: skip

        # It built prod: no Snowflake here, so it stops at the prod target's blocks.
        message = state.message or ""
        assert "wg-dbt-prod" in message and "wg-dbt-dev" not in message, message
        with _api(stack) as api:
            after_run = api.get(f"/flow_runs/{scheduled['id']}").json()
            artifacts = api.post(
                "/artifacts/filter",
                json={"artifacts": {"flow_run_id": {"any_": [scheduled["id"]]}}},
            ).json()
            states = api.get("/flow_run_states/", params={"flow_run_id": scheduled["id"]}).json()
        assert after_run["parameters"]["target"] == "prod"
        if scheduled["parameters"].get("target") != "prod":
            # The toggle had wiped the schedule: the guard must have said so and repaired it.
            assert ARTIFACT_KEY in {a["key"] for a in artifacts}
            assert any(spec.slug in (s.get("message") or "") for s in states), states
        with get_client(sync_client=True) as client:
            live = next(s for s in read_live(client, dep_id) if s.slug == spec.slug)
        assert live.parameters == spec.parameters and live.active
    finally:
        with get_client(sync_client=True) as client:  # other tests share this deployment
            live = next(s for s in read_live(client, dep_id) if s.slug == spec.slug)
            write_schedule(client, dep_id, live, active=before.active, parameters=before.parameters)
        if consumed is not None:  # its cron slot is free again: the next time finds a run there
            with _api(stack) as api:
                api.delete(f"/flow_runs/{consumed}").raise_for_status()


# -- (b), (c) ----------------------------------------------------------------------------------

# One item holding two selectors, as dbt users type them on the command line.
CUSTOM = {
    "target": "local",
    "select": ["+mart_market_performance_monthly +dim_brand"],
    "vars": {"reporting_currency": "EUR"},
}


def _field(page: Any, title: str) -> Any:
    """One parameter of the run form: the innermost block holding its label and its input."""
    label = page.get_by_text(title, exact=False).first
    return page.locator("div").filter(has=label).filter(has=page.locator("fieldset")).last


@pytest.fixture(scope="module")
def custom_run(stack: LocalStack, chromium: Any) -> dict[str, Any]:
    """Submit the default UI's Custom run form once; the run as it finished."""
    deployment = _deployment(stack)
    page = chromium.new_page()
    try:
        page.goto(f"{stack.ui_url}/v2/deployments/deployment/{deployment['id']}")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Custom run").click()
        target = _field(page, "Target (--target)")
        target.wait_for()
        form_text = page.locator("main").inner_text()
        target.get_by_role("button").filter(has_text="dev").click()
        page.get_by_role("option", name=CUSTOM["target"], exact=True).click()

        select = _field(page, "Select (--select)")
        select.get_by_role("button", name="Add item").click()
        select.locator("textarea, input").first.fill(CUSTOM["select"][0])

        editor = _field(page, "Vars (--vars, JSON)").locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+a")
        page.keyboard.type(json.dumps(CUSTOM["vars"]))

        with page.expect_response(lambda r: r.url.endswith("/create_flow_run")) as created:
            page.get_by_role("button", name="Submit").click()
        assert created.value.status == 201, created.value.text()
        flow_run_id = created.value.json()["id"]
    except Exception:
        _screenshot(page, "custom_run_form")
        raise
    finally:
        page.close()
    return {"run": _wait_final(stack, flow_run_id), "form_text": form_text}


def test_custom_run_form_labels_every_parameter_with_title_description_and_default(
    custom_run: dict[str, Any],
) -> None:
    text = custom_run["form_text"]
    schema = _deployment_schema()
    for name, prop in schema["properties"].items():
        assert prop["title"] != name, f"parameter {name!r} has no title"
        assert prop["title"] in text, prop["title"]
        assert prop.get("description") and prop["description"].split()[0] in text, name
    assert "type None" not in text


def _deployment_schema() -> dict[str, Any]:
    from prefect.utilities.callables import parameter_schema

    from flows.dbt_project import dbt_project

    return parameter_schema(dbt_project.fn).model_dump_for_openapi()


def test_custom_run_with_select_and_vars_completes_with_exactly_those_parameters(
    stack: LocalStack, custom_run: dict[str, Any]
) -> None:
    run = custom_run["run"]
    logs = log_text(wait_for_logs(run["id"], until="Finished in state"))
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{logs}"
    submitted = {k: v for k, v in run["parameters"].items() if k in CUSTOM}
    assert submitted == CUSTOM
    assert f"--select {CUSTOM['select'][0]}" in logs
    assert f"--vars {json.dumps(CUSTOM['vars'])}" in logs
    assert "--target local" in logs


def test_custom_run_page_shows_the_dbt_summary_artifact(
    stack: LocalStack, custom_run: dict[str, Any], page: Any
) -> None:
    run_id = custom_run["run"]["id"]
    page.goto(f"{stack.ui_url}/v2/runs/flow-run/{run_id}")
    page.get_by_role("tab", name="Artifacts").click()
    from playwright.sync_api import expect

    expect(page.get_by_text("dbt-summary-local").first).to_be_visible()
