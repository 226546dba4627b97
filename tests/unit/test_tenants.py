"""Tenants: resolution from prefect.yaml + tenants/ (dbt_runtime/project.py) and the scaffold of
`python -m migration tenants add` (migration/tenants.py). Pure: files in tmp_path only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dbt_runtime import artifact_store, project
from dbt_runtime.project import REPO_ROOT, Tenant, TenantError
from migration import tenants as scaffolding
from migration.cli import main as cli_main
from migration.tenants import ScheduleArg, scaffold
from tests.tenant_project import DEPLOYMENT, NAME, PROFILE, write_shop_project

FIRST = project.tenants()[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """prefect.yaml and the first tenant's dbt project files, plus the shop tenant's folder."""
    shutil.copy2(REPO_ROOT / "prefect.yaml", tmp_path / "prefect.yaml")
    first = tmp_path / project.TENANTS_DIR / FIRST.name
    first.mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy2(FIRST.project_dir / name, first / name)
    write_shop_project(tmp_path / project.TENANTS_DIR / NAME)
    return tmp_path


def added(repo: Path, *schedules: ScheduleArg) -> Path:
    path = repo / "prefect.yaml"
    path.write_text(scaffold(NAME, schedules=list(schedules), path=path).prefect_yaml)
    return path


def test_the_first_deployment_is_the_default_tenant_and_keeps_its_names(repo: Path) -> None:
    path = added(repo)
    first, shop = project.tenants(path)
    assert project.tenant(path=path) == first and first.first
    assert (first.artifacts_prefix, first.artifact_key("summary", "local")) == (
        "", "dbt-summary-local",
    )  # fmt: skip
    assert (shop.name, shop.deployment, shop.profile_name) == (NAME, DEPLOYMENT, PROFILE)
    assert shop.project_dir == repo / "tenants" / NAME
    assert shop.full_name == f"dbt_project/{DEPLOYMENT}"
    assert shop.artifacts_prefix == f"{NAME}/"
    assert shop.artifact_key("summary", "local") == f"dbt-summary-{DEPLOYMENT}-local"


def test_a_process_builds_the_tenant_its_deployment_names(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = added(repo, ScheduleArg("shop-prod-nightly", "prod", "0 6 * * *"))
    monkeypatch.setenv("WG_TENANT", NAME)
    assert project.tenant(path=path).name == NAME
    assert project.deployment_full_name(path) == f"dbt_project/{DEPLOYMENT}"
    assert [s.slug for s in project.schedules(path)] == ["shop-prod-nightly"]
    assert set(project.all_schedules(path)) == {
        "wg-prod-nightly", "wg-dev-weekday", "shop-prod-nightly",
    }  # fmt: skip
    monkeypatch.setenv("WG_TENANT", "dbt_nobody")
    project.get_settings.cache_clear()
    with pytest.raises(TenantError, match=r"no tenant 'dbt_nobody'.*migration tenants add"):
        project.tenant(path=path)


def _edit(path: Path, change: object) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda d: d["deployments"][1]["work_pool"]["job_variables"]["env"].pop("WG_TENANT"),
         "sets no work_pool.job_variables.env.WG_TENANT"),
        (lambda d: d["deployments"][1]["work_pool"]["job_variables"]["env"].update(
            WG_TENANT=d["deployments"][0]["work_pool"]["job_variables"]["env"]["WG_TENANT"]),
         "more than one deployment; one per tenant"),
        (lambda d: d["deployments"][1]["work_pool"]["job_variables"]["env"].update(
            WG_TENANT="dbt_gone"), "tenants/dbt_gone/dbt_project.yml does not exist"),
        (lambda d: d["deployments"][1]["work_pool"]["job_variables"]["env"].update(
            WG_TENANT="prod"), "a target name is not a tenant name"),
    ],
)  # fmt: skip
def test_a_prefect_yaml_that_does_not_tie_each_deployment_to_one_tenant_is_refused(
    repo: Path, change: object, error: str
) -> None:
    path = added(repo)
    _edit(path, change)
    with pytest.raises(TenantError, match=error):
        project.tenants(path)


def test_the_scaffold_appends_the_entry_and_its_schedule_steps_keeping_comments(
    repo: Path,
) -> None:
    before = (repo / "prefect.yaml").read_text()
    path = added(repo, ScheduleArg("shop-prod-nightly", "prod", "0 6 * * *"))
    text = path.read_text()
    assert text.startswith(before.split("deployments:")[0].split("  # (each tenant")[0])
    assert all(line in text for line in before.splitlines() if line.strip().startswith("#"))
    data = yaml.safe_load(text)
    shop = data["deployments"][-1]
    first = data["deployments"][0]
    assert shop["name"] == DEPLOYMENT
    assert shop["entrypoint"] == first["entrypoint"]
    assert shop["parameters"] == first["parameters"]
    assert shop["work_pool"]["name"] == first["work_pool"]["name"]
    assert shop["work_pool"]["job_variables"]["env"] == {
        **first["work_pool"]["job_variables"]["env"], "WG_TENANT": NAME,
    }  # fmt: skip
    (schedule,) = shop["schedules"]
    assert schedule == {
        "slug": "shop-prod-nightly", "cron": "0 6 * * *", "timezone": "UTC",
        "active": "{{ shop-prod-nightly-active.value }}",
        "parameters": {"command": "build", "target": "prod"},
    }  # fmt: skip
    steps = {step["id"]: (name, step) for item in data["build"] for name, step in item.items()}
    assert steps["shop-prod-nightly-active"] == (
        "migration.deploy_steps.schedule_active",
        {"id": "shop-prod-nightly-active", "slug": "shop-prod-nightly"},
    )
    ids = list(steps)  # after the first tenant's scheduler steps, before the artifacts block
    assert ids.index("shop-prod-nightly-active") == ids.index("wg-dev-weekday-active") + 1
    assert "deployments" not in {k for k in data if k != "deployments"}  # still the last key


def test_the_scaffold_names_the_blocks_to_register_with_the_tenant(repo: Path) -> None:
    result = scaffold(NAME, path=repo / "prefect.yaml")
    assert dict(result.blocks)["snowflake-credentials/shop-dbt-prod"] == (
        f"WG_TENANT={NAME} python -m blocks.register_snowflake --target prod"
    )
    assert {block for block, _ in result.blocks} == {
        f"snowflake-{kind}/shop-dbt-{target}"
        for kind in ("credentials", "connector")
        for target in ("dev", "prod")
    }


def test_the_scaffold_refuses_what_would_let_tenants_share_or_collide(repo: Path) -> None:
    path = repo / "prefect.yaml"
    profiles = repo / "tenants" / NAME / "profiles.yml"
    good = profiles.read_text()
    profiles.write_text(good.replace("shop-dbt-dev", "wg-dbt-dev"))
    with pytest.raises(TenantError, match=r"wg-dbt-dev.*also read by tenant.*least privilege"):
        scaffold(NAME, path=path)
    profiles.write_text(good.replace("    prod:", "    production:"))
    with pytest.raises(TenantError, match="has no target prod"):
        scaffold(NAME, path=path)
    profiles.write_text(good)
    with pytest.raises(TenantError, match="'wg-prod-nightly': that slug is already declared"):
        scaffold(NAME, schedules=[ScheduleArg("wg-prod-nightly", "prod", "0 1 * * *")], path=path)
    with pytest.raises(TenantError, match="already has that deployment"):
        scaffold(NAME, deployment=FIRST.deployment, path=path)
    with pytest.raises(TenantError, match=r"dbt_project\.yml not found"):
        scaffold("dbt_missing", path=path)
    with pytest.raises(TenantError, match="a target name is not a tenant name"):
        scaffold("local", path=path)
    path.write_text(scaffold(NAME, path=path).prefect_yaml)
    with pytest.raises(TenantError, match="already has a deployment for tenant"):
        scaffold(NAME, path=path)


def test_the_cli_refuses_an_unknown_tenant_naming_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["artifacts", "--block", "--tenant", "dbt_nobody"]) == 2
    assert "migration tenants add dbt_nobody" in capsys.readouterr().err


def test_default_deployment_names() -> None:
    assert scaffolding.default_deployment_name("dbt_shop") == "shop"
    assert scaffolding.default_deployment_name("retail_eu") == "retail-eu"


def test_kept_runs_of_a_later_tenant_live_under_its_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    shop = Tenant(NAME, DEPLOYMENT, Path("/nowhere"), first=False)
    assert artifact_store.run_key("local", "abc") == "local/abc"  # the first tenant's, unchanged
    monkeypatch.setattr(artifact_store, "tenant", lambda: shop)
    assert artifact_store.run_key("local", "abc") == f"{NAME}/local/abc"
