"""`migration schedules` against the real local Prefect server and the session's deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbt_runtime import project
from migration.cli import main as cli
from migration.local_stack import LocalStack
from tests.day_one import restore_day_one
from tests.prefect_api import api_request

pytestmark = pytest.mark.integration

PROD = next(s for s in project.schedules() if s.parameters["target"] == "prod")


def live(stack: LocalStack) -> dict[str, dict]:
    name = project.deployment_full_name()
    dep = api_request("GET", f"{stack.api_url}/deployments/name/{name}").json()
    return {s["slug"]: s for s in dep["schedules"]} | {"_id": dep["id"]}


@pytest.fixture
def restore_schedules(stack: LocalStack) -> Iterator[None]:
    """Other tests share the deployment: leave it at day one (dbt Cloud runs the jobs)."""
    yield
    restore_day_one()
    assert cli(["schedules", "check"]) == 0


def test_pause_then_resume_keeps_the_prod_schedule_building_prod(
    stack: LocalStack, restore_schedules: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["schedules", "pause", PROD.slug]) == 0
    paused = live(stack)[PROD.slug]
    assert paused["active"] is False
    assert paused["parameters"] == PROD.parameters  # target: prod survives the pause

    assert cli(["schedules", "ls"]) == 0
    listing = capsys.readouterr().out
    assert f"{PROD.slug}  cron='{PROD.cron}' tz=UTC PAUSED" in listing
    assert "next runs: " in listing

    assert cli(["schedules", "resume", PROD.slug]) == 0
    resumed = live(stack)[PROD.slug]
    assert resumed["active"] is True
    assert resumed["parameters"]["target"] == "prod"
    assert resumed["parameters"] == PROD.parameters
    assert resumed["schedule"]["cron"] == PROD.cron and resumed["schedule"]["timezone"] == "UTC"
    # a resume by hand is not who runs the job: check flags it, a deploy or apply undoes it
    capsys.readouterr()
    assert cli(["schedules", "check"]) == 1
    assert (
        f"{PROD.slug}: active is True, but the record says dbt-cloud runs the job"
        in capsys.readouterr().out
    )


def test_check_catches_a_ui_toggle_that_wiped_parameters_and_apply_repairs_it(
    stack: LocalStack, restore_schedules: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = live(stack)
    # What the default (React) UI and `prefect deployment schedule pause` send.
    api_request(
        "PATCH",
        f"{stack.api_url}/deployments/{before['_id']}/schedules/{before[PROD.slug]['id']}",
        json={"active": False},
    ).raise_for_status()
    assert live(stack)[PROD.slug]["parameters"] == {}, "server no longer wipes: revisit the guard"
    capsys.readouterr()

    assert cli(["schedules", "check"]) == 1
    out = capsys.readouterr().out
    assert f"{PROD.slug}: parameters is {{}}, prefect.yaml says {PROD.parameters!r}" in out
    assert "active is" not in out  # paused, as the record says on day one
    assert "schedules apply" in out

    # resuming by our CLI already restores the wiped parameters, so the prod run builds prod
    assert cli(["schedules", "resume", PROD.slug]) == 0
    assert "restored prefect.yaml's" in capsys.readouterr().out
    assert live(stack)[PROD.slug]["parameters"] == PROD.parameters

    api_request(
        "PATCH",
        f"{stack.api_url}/deployments/{before['_id']}/schedules/{before[PROD.slug]['id']}",
        json={"active": False},
    ).raise_for_status()
    assert cli(["schedules", "apply"]) == 0
    assert f"updated {PROD.slug} (parameters)" in capsys.readouterr().out
    assert cli(["schedules", "check"]) == 0
    assert live(stack)[PROD.slug]["id"] == before[PROD.slug]["id"]  # updated in place, by slug

    # repair: the parameters come back, the pause an operator made stays
    api_request(
        "PATCH",
        f"{stack.api_url}/deployments/{before['_id']}/schedules/{before[PROD.slug]['id']}",
        json={"active": False},
    ).raise_for_status()
    assert cli(["schedules", "repair"]) == 0
    repaired = live(stack)[PROD.slug]
    assert (repaired["active"], repaired["parameters"]) == (False, PROD.parameters)


def test_apply_removes_schedules_prefect_yaml_does_not_declare(
    stack: LocalStack, restore_schedules: None, capsys: pytest.CaptureFixture[str]
) -> None:
    dep_id = live(stack)["_id"]
    api_request("POST",
        f"{stack.api_url}/deployments/{dep_id}/schedules",
        json=[{"schedule": {"cron": "* * * * *", "timezone": "UTC"}, "active": False,
               "slug": "added-in-the-ui"}],
    ).raise_for_status()  # fmt: skip
    assert cli(["schedules", "check"]) == 1
    assert "added-in-the-ui: on the deployment but not in prefect.yaml" in capsys.readouterr().out
    assert cli(["schedules", "apply"]) == 0
    assert "added-in-the-ui" not in live(stack)
    assert set(live(stack)) - {"_id"} == {s.slug for s in project.schedules()}


def test_unknown_slug_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], stack: LocalStack
) -> None:
    assert cli(["schedules", "pause", "wg-nope"]) == 2
    err = capsys.readouterr().err
    assert "wg-nope" in err and PROD.slug in err
