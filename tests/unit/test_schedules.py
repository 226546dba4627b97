"""Schedule drift and what pause/resume write back (pure; the API side is in integration)."""

from __future__ import annotations

from uuid import uuid4

from dbt_runtime import project
from migration.schedules import LiveSchedule, parameters_to_keep, schedule_drift


def live_copy(spec: project.ScheduleSpec, **changes: object) -> LiveSchedule:
    fields: dict = dict(
        id=uuid4(), slug=spec.slug, cron=spec.cron, timezone=spec.timezone,
        active=False, parameters=dict(spec.parameters),
    )  # fmt: skip
    fields.update(changes)
    return LiveSchedule(**fields)


def test_live_schedules_equal_to_prefect_yaml_have_no_drift() -> None:
    declared = project.schedules()
    assert schedule_drift(declared, [live_copy(s) for s in declared]) == []


def test_a_toggle_that_wiped_parameters_is_reported_as_building_the_defaults() -> None:
    declared = project.schedules()
    prod = next(s for s in declared if s.parameters["target"] == "prod")
    live = [live_copy(s, parameters={}) if s is prod else live_copy(s) for s in declared]
    (drift,) = schedule_drift(declared, live)
    assert (drift.slug, drift.field, drift.live) == (prod.slug, "parameters", {})
    assert "wiped" in str(drift) and "deployment defaults" in str(drift)


def test_cron_timezone_active_missing_and_undeclared_are_all_drift() -> None:
    a, b = project.schedules()[:2]
    live = [
        live_copy(a, cron="0 6 * * *", timezone="Europe/London", active=True),
        LiveSchedule(id=uuid4(), slug="made-in-the-ui", cron="* * * * *", timezone="UTC",
                     active=True, parameters={}),
    ]  # fmt: skip
    recorded = {a.slug: False, b.slug: False}  # day one: dbt Cloud runs both jobs
    drift = schedule_drift([a, b], live, recorded)
    found = {(d.slug, d.field) for d in drift}
    assert found == {
        (a.slug, "cron"), (a.slug, "timezone"), (a.slug, "active"),
        (b.slug, "missing"), ("made-in-the-ui", "undeclared"),
    }  # fmt: skip
    (active,) = (d for d in drift if d.field == "active")
    assert str(active) == (
        f"{a.slug}: active is True, but the record says dbt-cloud runs the job "
        f"(Prefect variable scheduler-{a.slug})"
    )
    # without the record, whether a schedule is active is nobody's drift
    assert (a.slug, "active") not in {(d.slug, d.field) for d in schedule_drift([a, b], live)}


def test_pause_resume_keep_live_parameters_but_restore_wiped_ones() -> None:
    prod = next(s for s in project.schedules() if s.parameters["target"] == "prod")
    custom = {"command": "build", "target": "prod", "select": ["tag:nightly"]}
    assert parameters_to_keep(live_copy(prod, parameters=custom), prod) == custom
    assert parameters_to_keep(live_copy(prod, parameters={}), prod) == prod.parameters
    assert parameters_to_keep(live_copy(prod, parameters={}), None) == {}
