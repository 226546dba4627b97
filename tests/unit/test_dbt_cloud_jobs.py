"""dbt Cloud job definitions -> prefect.yaml schedules: steps parsed against dbt's own CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime import project
from dbt_runtime.invocation import build_invocation
from dbt_runtime.project import DBT_CLOUD_EXPORT
from migration.dbt_cloud_jobs import (
    JobImportError,
    import_drift,
    import_job,
    load_export,
    load_target_map,
    parse_step,
    scheduled_jobs,
)


def job(steps: list[str], target: str = "prod", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 7,
        "name": "WG Finance Hourly",
        "execute_steps": steps,
        "settings": {"threads": 4, "target_name": target},
        "triggers": {"schedule": True},
        "schedule": {"cron": "15 * * * *"},
        "job_type": "scheduled",
    }
    base.update(fields)
    return base


def test_flags_of_a_dbt_step_become_the_flow_parameters_they_mean() -> None:
    step = parse_step(
        "dbt build -s tag:finance fct_shipments+ --exclude=dim_brand --full-refresh "
        "--vars '{reporting_currency: USD, days: 3}'"
    )
    assert step.command.value == "build"
    assert step.parameters == {
        "select": ["tag:finance", "fct_shipments+"],
        "exclude": ["dim_brand"],
        "full_refresh": True,
        "vars": {"reporting_currency": "USD", "days": 3},
    }
    assert not step.unsupported
    # every parameter name is one the flow's invocation builder accepts
    build_invocation(command="build", target="dev", **step.parameters)


def test_short_and_alias_options_are_recognised_from_dbts_cli() -> None:
    assert parse_step("dbt run -m a b -f").parameters == {
        "select": ["a", "b"],
        "full_refresh": True,
    }
    assert parse_step("dbt source freshness").command.value == "source freshness"
    assert parse_step("dbt test --target dev").target == "dev"


def test_options_the_flow_has_no_parameter_for_are_reported_not_dropped() -> None:
    step = parse_step("dbt build --threads 16 --fail-fast --state prod-artifacts")
    assert step.parameters == {}
    assert step.unsupported == ("--threads 16", "--fail-fast", "--state prod-artifacts")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("dbt compile", "the flow runs only"),
        ("build -s x", "must start with `dbt`"),
        ("dbt build --no-such-flag", "no option '--no-such-flag'"),
        ("dbt build -s 'unterminated", "not a command line"),
        ("dbt build --vars '[1, 2]'", "--vars is not a mapping"),
    ],
)
def test_steps_the_flow_cannot_run_are_refused_naming_the_step(step: str, message: str) -> None:
    with pytest.raises(JobImportError, match=message):
        parse_step(step)


def test_the_export_implies_exactly_prefect_yamls_schedules() -> None:
    imported = [import_job(j).schedule for j in scheduled_jobs(load_export())]
    assert import_drift(imported, project.schedules()) == []


def test_drift_lists_each_difference_by_slug() -> None:
    declared = project.schedules()
    jobs = scheduled_jobs(load_export())
    jobs[0] = {**jobs[0], "schedule": {"cron": "0 4 * * *"}}
    drift = import_drift([import_job(j).schedule for j in jobs], declared)
    assert [(d.slug, d.message.split(":")[0]) for d in drift] == [("wg-prod-nightly", "cron")]
    assert "'0 5 * * *'" in drift[0].message and "'0 4 * * *'" in drift[0].message
    only_one = import_drift([import_job(jobs[1]).schedule], declared)
    assert [d.slug for d in only_one] == ["wg-prod-nightly"]
    assert "no scheduled dbt Cloud job" in only_one[0].message


def test_seed_run_test_steps_become_one_build_with_the_difference_explained() -> None:
    result = import_job(job(["dbt seed", "dbt run", "dbt test"]))
    assert result.schedule.parameters == {"command": "build", "target": "prod"}
    assert result.exact
    assert any("failing test now skips" in n for n in result.notes)


def test_multi_step_jobs_say_what_one_flow_run_cannot_express() -> None:
    result = import_job(
        job(["dbt source freshness", "dbt run -s tag:a", "dbt test -s tag:b"], generate_docs=True)
    )
    assert result.schedule.parameters == {"command": "run", "target": "prod", "select": ["tag:a"]}
    assert not result.exact
    text = "\n".join(result.cannot_express)
    assert "dbt source freshness" in text
    assert "dbt test -s tag:b" in text
    assert "generate_docs" in text


def test_a_target_dbt_cloud_names_differently_needs_a_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(JobImportError, match="--target-map"):
        import_job(job(["dbt build"], target="default"))
    mapping = tmp_path / "targets.yaml"
    mapping.write_text("default: prod\n")
    result = import_job(job(["dbt build"], target="default"), load_target_map(mapping))
    assert result.schedule.parameters["target"] == "prod"
    assert result.schedule.slug == "wg-finance-hourly"
    assert (result.schedule.cron, result.schedule.timezone) == ("15 * * * *", "UTC")


def test_a_step_target_overrides_the_job_setting() -> None:
    assert import_job(job(["dbt build --target dev"])).schedule.parameters["target"] == "dev"


def test_an_invocation_the_flow_would_refuse_is_refused_at_import() -> None:
    with pytest.raises(JobImportError, match=r"WG Finance Hourly.*not a dbt selector"):
        import_job(job(["dbt build -s 'fct;rm'"]))


def test_jobs_without_a_cron_are_not_scheduled_jobs() -> None:
    jobs = [job(["dbt build"]), job(["dbt build"], schedule=None, job_type="ci")]
    assert scheduled_jobs(jobs) == jobs[:1]
    # a job whose schedule trigger was turned off at cutover is still the job it replaces
    off = job(["dbt build"], triggers={"schedule": False})
    assert scheduled_jobs([off]) == [off]


def test_an_api_export_is_written_in_the_shipped_files_format(tmp_path: Path) -> None:
    from migration.import_jobs import export_document

    shipped = load_export()
    written = tmp_path / "jobs.json"
    written.write_text(export_document(list(reversed(shipped))))
    assert load_export(written) == shipped  # same jobs, same order, read by the same loader
    assert set(json.loads(written.read_text())) == set(json.loads(DBT_CLOUD_EXPORT.read_text()))
