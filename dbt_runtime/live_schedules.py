"""The live deployment's schedules as the Prefect API stores them: read and written whole.

On Prefect 3.9.1 a write that sends only `{"active": ...}` (the CLI's pause/resume, the default
UI's toggle) makes the server reset the schedule's `parameters` to `{}`; every write here sends
the whole schedule. Used by the flow's schedule guard and by `python -m migration schedules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


class ScheduleError(RuntimeError):
    """A schedule operation that cannot proceed; the message says what to fix."""


@dataclass(frozen=True)
class LiveSchedule:
    """One schedule as the Prefect API stores it."""

    id: UUID
    slug: str | None
    cron: str | None  # None: an interval/rrule schedule, which prefect.yaml never declares
    timezone: str | None
    active: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def read_live(client: Any, dep_id: UUID) -> list[LiveSchedule]:
    out = []
    for s in client.read_deployment_schedules(dep_id):
        out.append(
            LiveSchedule(
                id=s.id,
                slug=s.slug,
                cron=getattr(s.schedule, "cron", None),
                timezone=getattr(s.schedule, "timezone", None),
                active=bool(s.active),
                parameters=dict(s.parameters or {}),
            )
        )
    return out


def write_schedule(
    client: Any, dep_id: UUID, live: LiveSchedule, *, active: bool, parameters: dict[str, Any]
) -> None:
    """Send the WHOLE schedule: with `active` alone the server resets `parameters` to {}."""
    from prefect.client.schemas.schedules import CronSchedule

    if not live.cron:
        raise ScheduleError(f"schedule {live.slug!r} is not a cron schedule; fix it with `apply`")
    client.update_deployment_schedule(
        dep_id,
        live.id,
        active=active,
        schedule=CronSchedule(cron=live.cron, timezone=live.timezone or "UTC"),
        parameters=parameters,
        slug=live.slug,
    )
