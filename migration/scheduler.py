"""Who runs each dbt Cloud job — dbt Cloud or Prefect — recorded once, read by every deploy.

The record: one Prefect Variable per schedule on the Prefect server being deployed to,
`scheduler-<slug>` = `dbt-cloud` | `prefect`. A missing variable means `dbt-cloud` (day one:
dbt Cloud live, Prefect's schedules present and inactive). `cutover --apply` and
`rollback --apply` write it together with the live schedule; an operator can read or change it
in the UI (Variables) without a commit.

`active_checked(SLUG)` is a prefect.yaml build step (migration.deploy_steps.schedule_active),
one per schedule, so it runs on every `prefect deploy` (make deploy, make cloud-deploy, rollback
--to-ref, plain `prefect deploy --all`); `python -m migration scheduler active SLUG` prints the
same answer. It creates a missing record as `dbt-cloud`, answers true or false, which
prefect.yaml templates into that schedule's `active`, and fails the deploy rather than make a
schedule active while its dbt Cloud job's schedule is on. dbt Cloud is read
through the DbtCloudCredentials block when it exists, from the recorded export
(migration/dbt_cloud_export/jobs.json) otherwise (the local stack).

Why a build step's output and not `active: "{{ prefect.variables.scheduler-... }}"`: Prefect
3.9.1's `prefect deploy` resolves variables before the build steps run, and renders a missing
variable as "" — which fails the schedule's boolean validation, so a fresh workspace could not
deploy at all (prefect/cli/deploy/_core.py, prefect/utilities/templating resolve_variables).
A step output templated as the whole value is passed through as is: the step's boolean.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_runtime.dbt_cloud import DbtCloudBlockMissing, DbtCloudError, load_credentials
from dbt_runtime.project import DBT_CLOUD_EXPORT, REPO_ROOT, all_schedules
from dbt_runtime.settings import get_settings
from migration.dbt_cloud_jobs import DbtCloudJobs, load_export, schedule_slug, scheduled_jobs

DBT_CLOUD, PREFECT = "dbt-cloud", "prefect"
SCHEDULERS = (DBT_CLOUD, PREFECT)


class SchedulerConflict(RuntimeError):
    """A deploy that would break "exactly one scheduler per job"; the message names the fix."""


def variable_name(slug: str) -> str:
    return f"scheduler-{slug}"


def parse_record(slug: str, value: Any) -> str:
    """The recorded scheduler of `slug`; a missing record is dbt Cloud (day one)."""
    if value is None:
        return DBT_CLOUD
    who = str(value).strip().lower()
    if who not in SCHEDULERS:
        raise SchedulerConflict(
            f"Prefect variable {variable_name(slug)} is {value!r}; it must be one of "
            f"{', '.join(SCHEDULERS)} (who runs the job): fix it in the UI (Variables) or run "
            "`python -m migration cutover|rollback --job-id N --apply`"
        )
    return who


@dataclass(frozen=True)
class DbtCloudSide:
    """The dbt Cloud job a schedule replaces, and whether its schedule is on."""

    job_id: int
    job_name: str
    schedule_on: bool | None  # None: could not be read
    source: str  # where that was read: the API or the export file
    error: str = ""


def deploy_active(slug: str, recorded: str, job: DbtCloudSide | None) -> bool:
    """Whether a deploy makes schedule `slug` active (pure): what the record says, unless that
    would put a second scheduler next to dbt Cloud's, which is refused."""
    if recorded == DBT_CLOUD:
        return False
    if job is None:  # no dbt Cloud job maps to this schedule: Prefect is the only scheduler
        return True
    fix = (
        f"fix: `python -m migration cutover --job-id {job.job_id} --apply` (Prefect takes the "
        f"job, dbt Cloud's schedule goes off) or `python -m migration rollback --job-id "
        f"{job.job_id} --apply` (dbt Cloud keeps it)"
    )
    if job.schedule_on is None:
        raise SchedulerConflict(
            f"refusing to deploy schedule {slug} active: cannot read dbt Cloud job {job.job_id} "
            f"{job.job_name!r} ({job.error}), so it may still run there too; {fix}"
        )
    if job.schedule_on:
        raise SchedulerConflict(
            f"refusing to deploy schedule {slug} active: dbt Cloud job {job.job_id} "
            f"{job.job_name!r} still has its schedule ON ({job.source}), so both would run it; "
            f"{fix}"
        )
    return True


# -- the record (Prefect Variables) -------------------------------------------------------------


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def read_record(slug: str, create_missing: bool = False) -> str:
    """Who runs `slug`'s job per the record; `create_missing` writes day one's `dbt-cloud`."""
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    with _client() as client:
        variable = client.read_variable_by_name(variable_name(slug))
        if variable is None and create_missing:
            try:
                client.create_variable(VariableCreate(name=variable_name(slug), value=DBT_CLOUD))
            except ObjectAlreadyExists:  # a concurrent deploy created it
                variable = client.read_variable_by_name(variable_name(slug))
    return parse_record(slug, None if variable is None else variable.value)


def write_record(slug: str, who: str) -> None:
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    if who not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {who!r}")
    name = variable_name(slug)
    with _client() as client:
        if client.read_variable_by_name(name) is None:
            client.create_variable(VariableCreate(name=name, value=who))
        else:
            client.update_variable(VariableUpdate(name=name, value=who))


def recorded_active(slugs: list[str]) -> dict[str, bool]:
    """slug -> whether the record puts Prefect in charge (what `schedules check` compares)."""
    return {slug: read_record(slug) == PREFECT for slug in slugs}


# -- dbt Cloud ----------------------------------------------------------------------------------


def export_jobs(jobs_file: Path = DBT_CLOUD_EXPORT) -> dict[str, dict[str, Any]]:
    """slug -> the exported scheduled job it replaces."""
    return {schedule_slug(j): j for j in scheduled_jobs(load_export(jobs_file))}


def dbt_cloud_side(
    job: Mapping[str, Any], block: str | None = None, jobs_file: Path = DBT_CLOUD_EXPORT
) -> DbtCloudSide:
    """Whether the job's dbt Cloud schedule is on: live through the DbtCloudCredentials block,
    or as the export records it when no such block exists (the local stack)."""
    job_id, name = int(job["id"]), str(job.get("name"))
    block = block or get_settings().dbt_cloud_block
    try:
        credentials = load_credentials(block)
    except DbtCloudBlockMissing:
        on = bool((job.get("triggers") or {}).get("schedule"))
        where = (
            jobs_file.relative_to(REPO_ROOT) if jobs_file.is_relative_to(REPO_ROOT) else jobs_file
        )
        return DbtCloudSide(
            job_id, name, on, f"per {where}; no block dbt-cloud-credentials/{block}"
        )
    except DbtCloudError as exc:
        return DbtCloudSide(job_id, name, None, "dbt Cloud API", str(exc))
    try:
        live = DbtCloudJobs(credentials).get_job(job_id)
    except DbtCloudError as exc:
        return DbtCloudSide(job_id, name, None, "dbt Cloud API", str(exc))
    on = bool((live.get("triggers") or {}).get("schedule"))
    return DbtCloudSide(job_id, name, on, f"dbt Cloud API, block {block}")


def active_for_deploy(slug: str, block: str | None = None) -> bool:
    """The build step's answer for one schedule: the record, checked against dbt Cloud."""
    recorded = read_record(slug, create_missing=True)
    if recorded == DBT_CLOUD:
        return False  # inactive never double-runs: no need to ask dbt Cloud
    job = export_jobs().get(slug)
    return deploy_active(slug, recorded, None if job is None else dbt_cloud_side(job, block))


# -- CLI ----------------------------------------------------------------------------------------


def active_checked(slug: str, block: str | None = None) -> bool:
    """active_for_deploy for a schedule prefect.yaml declares (LookupError otherwise), saying
    on stderr who runs the job. The build step migration.deploy_steps.schedule_active."""
    # every tenant's deploy runs every tenant's steps: any tenant's schedule
    if slug not in all_schedules():
        raise LookupError(f"prefect.yaml declares no schedule {slug!r}")
    active = active_for_deploy(slug, block)
    who = PREFECT if active else DBT_CLOUD
    print(f"schedule {slug}: {who} runs the job ({variable_name(slug)})", file=sys.stderr)
    return active


def main(args: argparse.Namespace) -> int:
    try:
        active = active_checked(args.slug, args.credentials_block)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    except SchedulerConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("true" if active else "false")  # the schedule's `active`, as the build step answers
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "scheduler",
        help="deploy-time `active` of a schedule: who runs the job (dbt Cloud or Prefect)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["active"])
    parser.add_argument("slug", help="schedule slug, e.g. wg-prod-nightly")
    parser.add_argument(
        "--credentials-block",
        default=None,
        help="DbtCloudCredentials block (default: $WG_DBT_CLOUD_BLOCK or wg-dbt-cloud)",
    )
    parser.set_defaults(handler=main)
