"""What a scheduled run does when its parameters or its schedule's differ from prefect.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from dbt_runtime.invocation import DbtCommand, Target
from dbt_runtime.project import ScheduleSpec, deployment_config, schedules
from dbt_runtime.schedule_guard import Action, decide, report_markdown

PROD = next(s for s in schedules() if s.parameters.get("target") == "prod")
DEPLOYMENT_DEFAULTS = dict(deployment_config()["parameters"])
FLOW_DEFAULTS: dict[str, Any] = {
    "command": DbtCommand.build,
    "target": Target.dev,
    "select": [],
    "exclude": [],
    "vars": {},
    "full_refresh": False,
    "state": "",
    "timeout_seconds": 10800,
}


def run_with(**overrides: Any) -> dict[str, Any]:
    """The parameters a flow function receives: its defaults, then what the run carries."""
    return {**FLOW_DEFAULTS, **overrides}


def test_prod_schedule_is_declared_with_a_target_other_than_the_deployment_default() -> None:
    # The hazard only exists because the deployment default differs from prod's.
    assert PROD.parameters["target"] != DEPLOYMENT_DEFAULTS["target"]


def test_matching_run_and_schedule_proceed_silently() -> None:
    decision = decide(
        PROD.slug, run_with(**PROD.parameters), PROD, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS,
        dict(PROD.parameters),
    )  # fmt: skip
    assert decision.action is Action.proceed
    assert not decision.noteworthy and not decision.repair_schedule


def test_run_of_a_wiped_prod_schedule_builds_prod_and_repairs_the_schedule() -> None:
    # What a V2 UI toggle leaves: schedule parameters {}, runs get the deployment default (dev).
    decision = decide(
        PROD.slug, run_with(**DEPLOYMENT_DEFAULTS), PROD, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS, {}
    )
    assert decision.action is Action.run_declared
    assert decision.parameters["target"] == "prod"
    assert decision.parameters["timeout_seconds"] == 10800  # everything else as the flow's
    assert decision.repair_schedule
    assert decision.recorded == {**DEPLOYMENT_DEFAULTS, **PROD.parameters}
    assert PROD.slug in decision.message and "target='dev'" in decision.message


def test_run_created_before_a_repair_still_builds_what_prefect_yaml_says() -> None:
    decision = decide(
        PROD.slug, run_with(target="dev"), PROD, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS,
        dict(PROD.parameters),
    )  # fmt: skip
    assert decision.action is Action.run_declared
    assert decision.parameters["target"] == "prod"
    assert not decision.repair_schedule  # nothing left to repair


def test_deliberately_changed_schedule_fails_before_dbt_naming_schedule_and_fix() -> None:
    live = {"command": "build", "target": "dev", "exclude": ["tag:slow"]}
    decision = decide(PROD.slug, run_with(**live), PROD, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS, live)
    assert decision.action is Action.refuse
    assert not decision.repair_schedule
    assert PROD.slug in decision.message
    assert "schedules repair" in decision.message and "prefect.yaml" in decision.message
    assert "exclude=['tag:slow']" in decision.message


def test_run_of_a_deleted_schedule_with_other_parameters_is_refused() -> None:
    decision = decide(
        PROD.slug, run_with(target="dev"), PROD, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS, None
    )
    assert decision.action is Action.refuse
    assert "is gone" in decision.message


def test_correct_run_of_a_wiped_schedule_runs_unchanged_but_repairs_it() -> None:
    decision = decide(
        PROD.slug, run_with(**PROD.parameters), PROD, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS, {}
    )
    assert decision.action is Action.proceed
    assert decision.repair_schedule and decision.noteworthy


def test_undeclared_schedule_keeps_its_own_parameters_and_says_so() -> None:
    decision = decide(
        "made-in-the-ui", run_with(target="prod", select=["dim_brand"]), None,
        DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS, {"target": "prod", "select": ["dim_brand"]},
    )  # fmt: skip
    assert decision.action is Action.proceed
    assert decision.parameters["select"] == ["dim_brand"]
    assert "not declared in prefect.yaml" in decision.message


@pytest.mark.parametrize("declared_target", ["dev", "prod"])
def test_enum_values_compare_equal_to_prefect_yaml_strings(declared_target: str) -> None:
    spec = ScheduleSpec("s", "0 5 * * *", "UTC", {"target": declared_target})
    decision = decide(
        "s", run_with(target=Target(declared_target)), spec, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS,
        {"target": declared_target},
    )  # fmt: skip
    assert decision.action is Action.proceed and not decision.noteworthy


def test_artifact_names_schedule_action_and_the_target_built() -> None:
    decision = decide(
        PROD.slug, run_with(**DEPLOYMENT_DEFAULTS), PROD, DEPLOYMENT_DEFAULTS, FLOW_DEFAULTS, {}
    )
    text = report_markdown(decision, "repaired: ...")
    assert PROD.slug in text and "run_declared" in text
    assert '| `target` | `"prod"` |' in text
    assert "schedules check" in text


def test_repair_fixes_wiped_parameters_but_leaves_a_pause_alone() -> None:
    from uuid import uuid4

    from migration.schedules import LiveSchedule, repairs_needed

    paused_and_wiped = LiveSchedule(uuid4(), PROD.slug, PROD.cron, PROD.timezone, False, {})
    fixes = repairs_needed([PROD], [paused_and_wiped])
    assert [d.field for d in fixes] == ["parameters"]
    healthy_but_paused = LiveSchedule(
        uuid4(), PROD.slug, PROD.cron, PROD.timezone, False, dict(PROD.parameters)
    )
    assert repairs_needed([PROD], [healthy_but_paused]) == []
