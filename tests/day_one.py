"""The shared stack's scheduling state as the session deployed it: day one."""

from __future__ import annotations


def restore_day_one() -> None:
    """dbt Cloud runs every job (recorded), Prefect's schedules inactive as prefect.yaml declares
    them: what a test that cut over, or toggled a schedule, leaves for the tests after it."""
    from dbt_runtime import project
    from migration import scheduler, schedules

    for spec in project.schedules():
        scheduler.write_record(spec.slug, scheduler.DBT_CLOUD)
    schedules.apply()
