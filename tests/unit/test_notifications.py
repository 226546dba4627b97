"""notifications.yaml -> automations, without a server: parsing, matching, planning, messages."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest

from dbt_runtime import notification_rules as nr
from dbt_runtime import notify
from dbt_runtime.invocation import Target
from migration import notifications as n

pytestmark = pytest.mark.notifications

DEPLOYMENT, FLOW = "williamgrant", "dbt_project"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notifications.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def rule(**overrides: Any) -> nr.Rule:
    values: dict[str, Any] = {
        "name": "prod-failures",
        "targets": ("prod",),
        "on": (nr.Outcome.failed, nr.Outcome.crashed, nr.Outcome.timed_out),
        "notify": (nr.Destination("custom-webhook", "hook"),),
    }
    return nr.Rule(**(values | overrides))


# -- the file --------------------------------------------------------------------------------


def test_the_repository_file_is_valid_and_names_only_known_targets_and_block_kinds() -> None:
    rules = nr.load_rules()
    assert rules, "notifications.yaml declares no rule"
    assert {t for r in rules for t in r.targets} <= {t.value for t in Target}
    assert {d.block_type for r in rules for d in r.notify} <= set(nr.BLOCK_KINDS)
    prod_failures = [r for r in rules if "prod" in r.targets and nr.Outcome.failed in r.on]
    assert prod_failures and all(r.enabled for r in prod_failures)


def test_bare_on_key_is_read_as_on_not_as_yaml_true(tmp_path: Path) -> None:
    path = write(tmp_path, """
        rules:
          - name: x
            on: [failed, warned]
            notify: [slack-webhook/a]
    """)  # fmt: skip
    (only,) = nr.load_rules(path)
    assert only.on == (nr.Outcome.failed, nr.Outcome.warned)
    assert only.targets == ()  # every target


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("targets: [staging]\n    on: [failed]\n    notify: [a/b]", "staging"),
        ("on: [exploded]\n    notify: [a/b]", "exploded"),
        ("on: [failed]\n    notify: [just-a-name]", "<block type>/<block name>"),
        ("on: [failed]\n    notify: [a/b]\n    mute: true", "mute"),
        ("on: [failed]\n    notify: [a/b]\n    enabled: maybe", "enabled"),
    ],
)
def test_bad_rules_are_refused_naming_the_file_rule_and_what_to_fix(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "notifications.yaml"
    path.write_text(f"rules:\n  - name: bad-rule\n    {body}\n")
    with pytest.raises(nr.NotificationsFileError) as err:
        nr.load_rules(path)
    assert str(path) in str(err.value) and "bad-rule" in str(err.value)
    assert expected in str(err.value)


def test_a_rule_name_used_twice_is_refused(tmp_path: Path) -> None:
    rule_text = "  - name: twice\n    on: [failed]\n    notify: [a/b]\n"
    path = tmp_path / "notifications.yaml"
    path.write_text("rules:\n" + rule_text + rule_text)
    with pytest.raises(nr.NotificationsFileError, match="twice"):
        nr.load_rules(path)


def test_each_outcome_maps_to_the_event_prefect_or_the_flow_emits() -> None:
    assert nr.Outcome.failed.event == "prefect.flow-run.Failed"
    assert nr.Outcome.crashed.event == "prefect.flow-run.Crashed"
    assert nr.Outcome.timed_out.event == "prefect.flow-run.TimedOut"
    assert nr.Outcome.completed.event == "prefect.flow-run.Completed"
    assert nr.Outcome.warned.event == notify.WARNED_EVENT


# -- matching: the server's own trigger code decides ---------------------------------------------


def server_trigger(r: nr.Rule) -> Any:
    from prefect.server.events.schemas.automations import EventTrigger

    return EventTrigger.model_validate(n.trigger_spec(r, DEPLOYMENT, FLOW))


def state_event(event: str, run_name: str, deployment: str = DEPLOYMENT) -> Any:
    from prefect.server.events.schemas.events import ReceivedEvent

    return ReceivedEvent(
        occurred=datetime.now(UTC),
        event=event,
        resource={"prefect.resource.id": f"prefect.flow-run.{uuid4()}",
                  "prefect.resource.name": run_name},
        related=[
            {"prefect.resource.id": f"prefect.flow.{uuid4()}", "prefect.resource.role": "flow",
             "prefect.resource.name": FLOW},
            {"prefect.resource.id": f"prefect.deployment.{uuid4()}",
             "prefect.resource.role": "deployment", "prefect.resource.name": deployment},
        ],
        id=uuid4(),
    )  # fmt: skip


def test_a_prod_rule_hears_prod_runs_and_runs_without_a_target_yet_but_not_dev() -> None:
    trigger = server_trigger(rule())
    assert trigger.covers(state_event("prefect.flow-run.Failed", "prod: witty-otter"))
    assert trigger.covers(state_event("prefect.flow-run.TimedOut", "prod: witty-otter"))
    # crashed in a pull step: the flow never set the target, every listener hears it
    assert trigger.covers(state_event("prefect.flow-run.Crashed", "witty-otter"))
    assert not trigger.covers(state_event("prefect.flow-run.Failed", "dev: witty-otter"))
    assert not trigger.covers(state_event("prefect.flow-run.Failed", "local: witty-otter"))
    assert not trigger.covers(state_event("prefect.flow-run.Completed", "prod: witty-otter"))
    assert not trigger.covers(
        state_event("prefect.flow-run.Failed", "prod: witty-otter", deployment="other")
    )


def test_the_warned_event_the_flow_emits_matches_a_warned_rule() -> None:
    trigger = server_trigger(rule(on=(nr.Outcome.warned,)))
    assert trigger.covers(state_event(notify.WARNED_EVENT, "prod: witty-otter"))
    assert not trigger.covers(state_event("prefect.flow-run.Completed", "prod: witty-otter"))


def test_a_rule_without_targets_hears_every_target() -> None:
    trigger = server_trigger(rule(targets=()))
    for name in ("prod: a-b", "dev: a-b", "local: a-b", "a-b"):
        assert trigger.covers(state_event("prefect.flow-run.Failed", name))


def test_run_names_carry_the_target_once() -> None:
    assert notify.named_for_target("prod", "witty-otter") == "prod: witty-otter"
    assert notify.named_for_target("prod", "prod: witty-otter") == "prod: witty-otter"


def test_only_warn_nodes_are_reported_with_their_first_message_line() -> None:
    rows = [
        SimpleNamespace(unique_id="test.p.a", status="warn", message="Got 3 results\nmore"),
        SimpleNamespace(unique_id="source.p.raw.b", status="warn", message=None),
        SimpleNamespace(unique_id="model.p.c", status="success", message="OK"),
        SimpleNamespace(unique_id="test.p.d", status="pass", message=""),
    ]
    assert notify.warned_nodes(rows) == [
        {"unique_id": "test.p.a", "message": "Got 3 results"},
        {"unique_id": "source.p.raw.b", "message": ""},
    ]
    assert notify.report_warnings("prod", SimpleNamespace(rows=rows[2:])) is False
    assert notify.report_warnings("prod", None) is False


# -- planning ----------------------------------------------------------------------------------


def spec(r: nr.Rule) -> dict[str, Any]:
    return n.automation_spec(r, {d: uuid4() for d in r.notify}, DEPLOYMENT, FLOW)


def as_stored(spec_: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What the server gives back: ids filled in, the trigger's own id differs."""
    from prefect.automations import Automation

    stored = Automation.model_validate(spec_ | changes).model_dump(mode="json")
    return stored | {"id": str(uuid4())}


def actions(steps: list[Any]) -> list[tuple[str, str]]:
    return [(change.action, change.name) for change, _, _ in steps]


def test_plan_creates_what_is_missing_and_leaves_equal_automations_alone() -> None:
    a, b = spec(rule(name="a")), spec(rule(name="b"))
    assert actions(n.plan_changes([a, b], [])) == [
        ("create", "wg-notify/a"),
        ("create", "wg-notify/b"),
    ]
    assert actions(n.plan_changes([a, b], [as_stored(a), as_stored(b)])) == [
        ("unchanged", "wg-notify/a"),
        ("unchanged", "wg-notify/b"),
    ]


def test_plan_restores_an_automation_paused_or_edited_outside_the_file() -> None:
    a = spec(rule(name="a"))
    (step,) = n.plan_changes([a], [as_stored(a, enabled=False)])
    assert step[0].action == "update" and "enabled" in step[0].detail
    assert step[1] == a


def test_plan_deletes_duplicates_and_rules_removed_from_the_file_but_nothing_unmanaged() -> None:
    a, gone = spec(rule(name="a")), spec(rule(name="gone"))
    handmade = as_stored(spec(rule(name="handmade")), tags=[], name="someone's automation")
    existing = [as_stored(a), as_stored(a), as_stored(gone), handmade]
    steps = n.plan_changes([a], existing)
    assert actions(steps) == [
        ("unchanged", "wg-notify/a"),
        ("delete", "wg-notify/a"),
        ("delete", "wg-notify/gone"),
    ]
    deleted = {existing_id for change, _, existing_id in steps if change.action == "delete"}
    assert handmade["id"] not in deleted


def test_plan_keeps_the_automation_of_a_rule_whose_blocks_are_missing() -> None:
    kept = spec(rule(name="kept"))
    steps = n.plan_changes([], [as_stored(kept)], keep=["wg-notify/kept"])
    assert actions(steps) == [("skip", "wg-notify/kept")]


def test_a_disabled_rule_becomes_a_paused_automation() -> None:
    assert spec(rule(enabled=False))["enabled"] is False
    assert n.MANAGED_TAG in spec(rule())["tags"]


# -- the message -------------------------------------------------------------------------------


def render(
    template: str, event: str, *, scheduled: bool, state_message: str = ""
) -> tuple[str, str]:
    """The rendered template and the flow run id, as the server's action renders it."""
    from prefect.server.events.actions import JinjaTemplateAction
    from prefect.server.schemas.core import CreatedBy, Deployment, Flow, FlowRun
    from prefect.server.schemas.states import State, StateType
    from prefect.server.utilities.user_templates import render_user_template_sync
    from prefect.settings import PREFECT_UI_URL, temporary_settings

    JinjaTemplateAction._register_filters_if_needed()
    created_by = (
        CreatedBy(id=uuid4(), type="SCHEDULE", display_value="wg-prod-nightly")
        if scheduled
        else None
    )
    flow_run = FlowRun(
        id=uuid4(),
        name="prod: witty-otter",
        flow_id=uuid4(),
        parameters={"target": "prod", "command": "build"},
        created_by=created_by,
        state=State(type=StateType.FAILED, name="Failed", message=state_message),
    )
    context = {
        "flow_run": flow_run,
        "flow": Flow(name=FLOW),
        "deployment": Deployment(name=DEPLOYMENT, flow_id=uuid4()),
        "event": SimpleNamespace(
            event=event,
            payload={
                "warned_count": 1,
                "warned": [{"unique_id": "test.p.t", "message": "Got 2 results"}],
            },
        ),
    }
    with temporary_settings({PREFECT_UI_URL: "https://ui.example"}):
        return render_user_template_sync(template, context), str(flow_run.id)


def test_failure_message_has_deployment_target_schedule_failed_nodes_and_links() -> None:
    failure = (
        "dbt build --target prod failed: model error (1 failed)\n"
        "  model.dbt_williamgrant.fct_x: Catalog Error: Table y does not exist"
    )
    body, run_id = render(
        n.BODY_TEMPLATE, "prefect.flow-run.Failed", scheduled=True, state_message=failure
    )
    assert "Deployment: dbt_project/williamgrant" in body
    assert "Target: prod" in body
    assert "Schedule: wg-prod-nightly" in body
    assert "model.dbt_williamgrant.fct_x: Catalog Error: Table y does not exist" in body
    assert f"https://ui.example/runs/flow-run/{run_id}" in body
    assert f"https://ui.example/runs/flow-run/{run_id}?tab=Artifacts" in body
    assert "dbt-summary-prod" in body
    subject, _ = render(n.SUBJECT_TEMPLATE, "prefect.flow-run.Failed", scheduled=True)
    assert subject == "dbt prod: Failed - dbt_project/williamgrant (wg-prod-nightly)"


def test_warning_message_lists_warned_nodes_and_says_ad_hoc() -> None:
    body, _ = render(n.BODY_TEMPLATE, notify.WARNED_EVENT, scheduled=False)
    assert "Outcome: Completed with warnings" in body
    assert "Schedule: ad-hoc" in body
    assert "test.p.t: Got 2 results" in body
    subject, _ = render(n.SUBJECT_TEMPLATE, notify.WARNED_EVENT, scheduled=False)
    assert subject.startswith("dbt prod: Completed with warnings")
