"""prefect.yaml: the one deployment, its pull steps and schedules that replicate dbt Cloud."""

from __future__ import annotations

from pathlib import Path

from dbt_runtime import project
from dbt_runtime.invocation import DbtCommand, Target
from migration.dbt_cloud_jobs import load_export, schedule_for_job, scheduled_jobs

REPO = project.REPO_ROOT


def test_exactly_one_deployment_with_documented_defaults() -> None:
    deployment = project.deployment_config()
    assert deployment["parameters"] == {"command": "build", "target": "dev"}
    assert deployment["enforce_parameter_schema"] is True
    assert deployment["entrypoint"].startswith("flows/")


def test_pull_steps_clone_the_deployed_commit_then_install_requirements() -> None:
    pull = project.prefect_config()["pull"]
    (clone_step,) = pull[0].values()
    assert "git_clone" in next(iter(pull[0]))
    assert clone_step["commit_sha"] == "{{ commit.stdout }}"
    (install_step,) = pull[1].values()
    assert install_step["directory"] == "{{ clone.directory }}"
    assert install_step["script"].split() == [
        "python", "-m", "migration", "requirements", "install", "--file", "requirements.txt",
    ]  # fmt: skip


def test_schedules_replicate_the_dbt_cloud_jobs() -> None:
    declared = {s.slug: s for s in project.schedules()}
    expected = {s.slug: s for s in map(schedule_for_job, scheduled_jobs(load_export()))}
    assert declared == expected


def test_schedules_have_slugs_utc_and_their_own_target() -> None:
    schedules = project.schedules()
    assert len(schedules) >= 2
    assert all(s.slug and s.timezone == "UTC" for s in schedules)
    assert {s.parameters["target"] for s in schedules} >= {"dev", "prod"}
    for s in schedules:
        assert s.parameters["target"] in {t.value for t in Target}
        assert s.parameters.get("command", "build") in {c.value for c in DbtCommand}


def test_runtime_is_pinned() -> None:
    assert (REPO / ".python-version").read_text().strip() == "3.12"
    lines = [
        line.strip()
        for line in Path(REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines and all("==" in line for line in lines)
    names = {line.split("==")[0].lower() for line in lines}
    assert {"prefect", "prefect-dbt", "dbt-core", "dbt-snowflake", "prefect-github"} <= names
    assert next(line for line in lines if line.startswith("dbt-core==")).startswith(
        "dbt-core==1.11."
    )
