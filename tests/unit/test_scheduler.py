"""Who runs each job: the deploy-time decision for a schedule's `active` (pure)."""

from __future__ import annotations

import pytest

from migration.scheduler import (
    DBT_CLOUD,
    PREFECT,
    DbtCloudSide,
    SchedulerConflict,
    deploy_active,
    parse_record,
)

SLUG = "wg-prod-nightly"


def job(schedule_on: bool | None, error: str = "") -> DbtCloudSide:
    return DbtCloudSide(70403103921001, "WG prod nightly", schedule_on, "dbt Cloud API", error)


def test_day_one_a_missing_record_means_dbt_cloud_runs_the_job() -> None:
    assert parse_record(SLUG, None) == DBT_CLOUD
    assert deploy_active(SLUG, parse_record(SLUG, None), job(True)) is False


@pytest.mark.parametrize("dbt_cloud_on", [True, False, None])
def test_recorded_dbt_cloud_always_deploys_the_schedule_inactive(dbt_cloud_on: bool | None) -> None:
    assert deploy_active(SLUG, DBT_CLOUD, job(dbt_cloud_on)) is False


def test_recorded_prefect_deploys_active_once_dbt_clouds_schedule_is_off() -> None:
    assert deploy_active(SLUG, PREFECT, job(False)) is True
    assert deploy_active("prefect-only", PREFECT, None) is True  # no dbt Cloud job to clash


def test_activating_next_to_a_live_dbt_cloud_schedule_is_refused_naming_job_slug_and_fix() -> None:
    with pytest.raises(SchedulerConflict) as refused:
        deploy_active(SLUG, PREFECT, job(True))
    message = str(refused.value)
    assert "refusing to deploy schedule wg-prod-nightly active" in message
    assert "dbt Cloud job 70403103921001 'WG prod nightly' still has its schedule ON" in message
    assert "python -m migration cutover --job-id 70403103921001 --apply" in message
    assert "python -m migration rollback --job-id 70403103921001 --apply" in message


def test_an_unreadable_dbt_cloud_refuses_activation_rather_than_guess() -> None:
    with pytest.raises(SchedulerConflict, match=r"cannot read dbt Cloud job 70403103921001.*503"):
        deploy_active(SLUG, PREFECT, job(None, error="HTTP 503"))


def test_a_mistyped_record_is_refused_naming_the_variable_and_allowed_values() -> None:
    assert parse_record(SLUG, " Prefect ") == PREFECT
    with pytest.raises(
        SchedulerConflict, match=r"scheduler-wg-prod-nightly is 'prefekt'.*dbt-cloud, prefect"
    ):
        parse_record(SLUG, "prefekt")
