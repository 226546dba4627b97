"""prefect.yaml: one deployment per tenant, pull steps and schedules that replicate dbt Cloud."""

from __future__ import annotations

from pathlib import Path

from dbt_runtime import project
from dbt_runtime.invocation import DbtCommand, Target
from migration.dbt_cloud_jobs import load_export, schedule_for_job, scheduled_jobs

REPO = project.REPO_ROOT


def test_one_deployment_per_tenant_with_documented_defaults() -> None:
    entries = project.prefect_config()["deployments"]
    tenants = project.tenants()
    assert [project.declared_tenant(d) for d in entries] == [t.name for t in tenants]
    assert len({t.name for t in tenants}) == len(tenants)  # tenants() refuses a second entry
    for deployment in entries:
        assert deployment["parameters"] == {"command": "build", "target": "dev"}
        assert deployment["enforce_parameter_schema"] is True
        assert deployment["entrypoint"] == project.entrypoint()


def test_william_grant_keeps_its_deployment_limits_and_kept_run_layout() -> None:
    """R-102: still one deployment, dbt_project/williamgrant, first in prefect.yaml, so its
    kept runs (`<target>/<flow run id>/`), limits and artifact keys keep their names."""
    (wg,) = (t for t in project.tenants() if t.name == "dbt_williamgrant")
    assert wg == project.tenant() and wg.first
    assert (wg.full_name, wg.profile_name, wg.artifacts_prefix) == (
        "dbt_project/williamgrant", "dbt_williamgrant", "",
    )  # fmt: skip
    assert wg.artifact_key("summary", "prod") == "dbt-summary-prod"
    assert [s.slug for s in project.schedules()] == ["wg-prod-nightly", "wg-dev-weekday"]


def test_pull_steps_clone_the_deployed_commit_then_install_requirements() -> None:
    pull = project.prefect_config()["pull"]
    (clone_step,) = pull[0].values()
    assert "git_clone" in next(iter(pull[0]))
    assert clone_step["commit_sha"] == "{{ commit.value }}"
    # Declarative: no repository code runs before the requirements are installed.
    assert "run_shell_script" in next(iter(pull[1]))
    (install_step,) = pull[1].values()
    assert install_step["directory"] == "{{ clone.directory }}"
    assert install_step["script"].split() == [
        "uv", "pip", "install", "--python", "python", "--quiet", "-r", "requirements.txt",
    ]  # fmt: skip
    assert len(pull) == 2


def test_runs_are_told_the_artifacts_block_the_deploy_was_given() -> None:
    build = {next(iter(step.values()))["id"]: step for step in project.prefect_config()["build"]}
    assert list(build["artifacts-block"]) == ["migration.deploy_steps.artifacts_block"]
    for deployment in project.prefect_config()["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env == {
            "WG_TENANT": project.declared_tenant(deployment),
            "WG_ARTIFACTS_BLOCK": "{{ artifacts-block.value }}",
        }


def test_schedules_replicate_the_dbt_cloud_jobs() -> None:
    """Cadence, timezone and target (and the rest of the parameters) of each dbt Cloud job;
    not whether it is active: that is who runs the job, decided at deploy time."""
    declared = {s.slug: s for s in project.schedules()}
    expected = {s.slug: s for s in map(schedule_for_job, scheduled_jobs(load_export()))}
    assert set(declared) == set(expected)
    for slug, want in expected.items():
        got = declared[slug]
        assert (got.cron, got.timezone, got.parameters["target"]) == (
            want.cron, want.timezone, want.parameters["target"],
        ), slug  # fmt: skip
        assert got.parameters == want.parameters, slug


def test_every_schedule_is_active_only_as_its_deploy_time_scheduler_step_says() -> None:
    """No literal `active`: each schedule's is the answer of a build step that reads who runs
    the job, so no deploy turns on a Prefect schedule next to a live dbt Cloud one."""
    steps = {
        step["id"]: (name, step)
        for item in project.prefect_config()["build"]
        for name, step in item.items()
    }
    entries = [s for d in project.prefect_config()["deployments"] for s in d.get("schedules", [])]
    for entry in entries:
        step_id = project.active_step_id(entry["slug"])
        assert entry["active"] == "{{ " + step_id + ".value }}", entry["slug"]
        assert steps[step_id] == (
            "migration.deploy_steps.schedule_active",
            {"id": step_id, "slug": entry["slug"]},
        )


def test_every_build_step_is_a_function_of_the_deploy_steps_module() -> None:
    """`prefect deploy` imports each step from the repository root: a name that is not there
    fails the deploy, so a typo is caught here first. None spawns a shell."""
    from migration import deploy_steps

    for item in project.prefect_config()["build"]:
        ((name, step),) = item.items()
        module, function = name.rsplit(".", 1)
        assert module == "migration.deploy_steps", name
        assert callable(getattr(deploy_steps, function, None)), name
        assert set(step) - {"id"} <= set(getattr(deploy_steps, function).__code__.co_varnames)


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


def test_the_flow_is_named_after_its_function_as_prefect_cloud_names_it() -> None:
    # `prefect deploy` names the flow from @flow(name=...), `uvx prefect-cloud deploy` after the
    # entrypoint's function: both must give FLOW_NAME (tests/integration/
    # test_prefect_cloud_quickstart.py runs prefect-cloud itself).
    from flows.dbt_project import dbt_project

    path, function = project.entrypoint().split(":")
    assert (path, function) == ("flows/dbt_project.py", project.FLOW_NAME)
    assert dbt_project.name == dbt_project.fn.__name__ == project.FLOW_NAME
    assert project.FLOW_NAME not in project.LEGACY_FLOW_NAMES
