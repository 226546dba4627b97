"""dbt Cloud job definitions -> the prefect.yaml schedule entries they imply."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from migration.project import DBT_CLOUD_EXPORT, ScheduleSpec


def load_export(path: Path = DBT_CLOUD_EXPORT) -> list[dict[str, Any]]:
    """Jobs from a saved `GET /api/v2/accounts/{id}/jobs/` response (or a bare list of jobs)."""
    data = json.loads(path.read_text())
    jobs = data["data"] if isinstance(data, dict) else data
    if not isinstance(jobs, list):
        raise ValueError(f"{path}: expected the v2 jobs response (a `data` list of jobs)")
    return jobs


def schedule_slug(job: dict[str, Any]) -> str:
    """The schedule slug for a job: its name, lower-case, dashes (stable across redeploys)."""
    return re.sub(r"[^a-z0-9]+", "-", str(job["name"]).lower()).strip("-")


def schedule_for_job(job: dict[str, Any]) -> ScheduleSpec:
    """The schedule a scheduled dbt Cloud job becomes (dbt Cloud crons are UTC)."""
    steps = [str(s) for s in job.get("execute_steps") or []]
    commands = {s.removeprefix("dbt ").split()[0] for s in steps}
    command = commands.pop() if len(commands) == 1 else "build"
    return ScheduleSpec(
        slug=schedule_slug(job),
        cron=str(job["schedule"]["cron"]),
        timezone="UTC",
        active=bool((job.get("triggers") or {}).get("schedule")),
        parameters={"command": command, "target": str(job["settings"]["target_name"])},
    )


def scheduled_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [j for j in jobs if (j.get("triggers") or {}).get("schedule") and j.get("schedule")]
