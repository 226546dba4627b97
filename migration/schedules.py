"""The live deployment's schedules, kept exactly as prefect.yaml declares them.

`python -m migration schedules ls|pause SLUG|resume SLUG|check|apply|repair`.

Why this exists: on Prefect 3.9.1, `prefect deployment schedule pause|resume` and the default
(React) UI's toggle send only `{"active": ...}`, and the server then resets the schedule's
`parameters` to `{}` — a paused and resumed prod schedule silently builds the deployment default
(dev). Every write here sends the whole schedule (cron, timezone, active, parameters, slug), and
`check` finds the damage a toggle elsewhere did.

Whether a schedule is active is the record's (migration/scheduler.py: who runs the job), not
prefect.yaml's: `apply` sets it as a deploy does, refusing to activate a schedule while its dbt
Cloud job's schedule is on; `check` compares it with the record; `pause`/`resume` change the
live schedule only, so the next deploy or `apply` puts back what the record says.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from dbt_runtime.live_schedules import LiveSchedule, ScheduleError, read_live, write_schedule
from dbt_runtime.project import ScheduleSpec, deployment_full_name, schedules
from migration import scheduler

NEXT_RUNS = 3


@dataclass(frozen=True)
class Drift:
    """One difference between prefect.yaml and the live deployment."""

    slug: str
    field: str
    declared: Any
    live: Any

    def __str__(self) -> str:
        if self.field == "missing":
            return f"{self.slug}: declared in prefect.yaml but not on the deployment"
        if self.field == "undeclared":
            return f"{self.slug}: on the deployment but not in prefect.yaml"
        if self.field == "active":
            who = scheduler.PREFECT if self.declared else scheduler.DBT_CLOUD
            return (
                f"{self.slug}: active is {self.live!r}, but the record says {who} runs the job "
                f"(Prefect variable {scheduler.variable_name(self.slug)})"
            )
        hint = ""
        if self.field == "parameters" and self.live == {} and self.declared:
            hint = " (wiped: a CLI/UI toggle sent only `active`; this schedule now builds the "
            hint += "deployment defaults)"
        return (
            f"{self.slug}: {self.field} is {self.live!r}, prefect.yaml says {self.declared!r}{hint}"
        )


def schedule_drift(
    declared: Sequence[ScheduleSpec],
    live: Sequence[LiveSchedule],
    active: Mapping[str, bool] | None = None,
) -> list[Drift]:
    """Every field where the live schedules differ from prefect.yaml's, and from the record's
    `active` (slug -> active) when given (pure)."""
    out: list[Drift] = []
    by_slug = {s.slug: s for s in live}
    for spec in declared:
        got = by_slug.get(spec.slug)
        if got is None:
            out.append(Drift(spec.slug, "missing", spec, None))
            continue
        fields: list[tuple[str, Any, Any]] = [
            ("cron", spec.cron, got.cron),
            ("timezone", spec.timezone, got.timezone),
        ]
        if active is not None and spec.slug in active:
            fields.append(("active", active[spec.slug], got.active))
        fields.append(("parameters", spec.parameters, got.parameters))
        for name, want, have in fields:
            if want != have:
                out.append(Drift(spec.slug, name, want, have))
    declared_slugs = {s.slug for s in declared}
    for s in live:
        if s.slug not in declared_slugs:
            out.append(Drift(s.slug or f"<no slug, id {s.id}>", "undeclared", None, s))
    return out


def parameters_to_keep(live: LiveSchedule, declared: ScheduleSpec | None) -> dict[str, Any]:
    """What a pause/resume writes back: the live parameters, unless a toggle wiped them.

    An empty live mapping where prefect.yaml declares parameters is the server's reset, never an
    operator's intent, so the declared parameters come back; anything else is kept as it is.
    """
    if not live.parameters and declared is not None and declared.parameters:
        return dict(declared.parameters)
    return dict(live.parameters)


async def next_runs(spec: LiveSchedule, n: int = NEXT_RUNS) -> list[dt.datetime]:
    """The next `n` times the cron fires, computed by the server's own schedule code."""
    if not spec.cron:
        return []
    from prefect.server.schemas.schedules import CronSchedule

    cron = CronSchedule(cron=spec.cron, timezone=spec.timezone or "UTC")
    return [d for d in await cron.get_dates(n=n, start=dt.datetime.now(dt.UTC))]


# -- the API -----------------------------------------------------------------------------------


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def deployment_id(client: Any, name: str | None = None) -> UUID:
    from prefect.exceptions import ObjectNotFound

    name = name or deployment_full_name()
    try:
        return UUID(str(client.read_deployment_by_name(name).id))
    except ObjectNotFound:
        raise ScheduleError(
            f"deployment {name!r} not found at the Prefect API; deploy prefect.yaml first "
            "(`make deploy`)"
        ) from None


def live_schedules(name: str | None = None) -> list[LiveSchedule]:
    with _client() as client:
        return read_live(client, deployment_id(client, name))


@dataclass(frozen=True)
class ToggleResult:
    slug: str
    was_active: bool
    active: bool
    parameters: dict[str, Any]
    restored_parameters: bool


def set_active(slug: str, active: bool, name: str | None = None) -> ToggleResult:
    """Pause or resume one schedule by slug, keeping its parameters. Idempotent."""
    declared = next((s for s in schedules() if s.slug == slug), None)
    with _client() as client:
        dep_id = deployment_id(client, name)
        live = {s.slug: s for s in read_live(client, dep_id)}
        if slug not in live:
            raise ScheduleError(
                f"schedule {slug!r} is not on deployment {name or deployment_full_name()!r} "
                f"(live slugs: {', '.join(str(s) for s in live) or 'none'}); "
                "`python -m migration schedules apply` creates prefect.yaml's schedules"
            )
        current = live[slug]
        params = parameters_to_keep(current, declared)
        write_schedule(client, dep_id, current, active=active, parameters=params)
        after = {s.slug: s for s in read_live(client, dep_id)}[slug]
    if after.active != active or after.parameters != params:
        raise ScheduleError(
            f"schedule {slug!r}: the server stored active={after.active} parameters="
            f"{after.parameters}, expected active={active} parameters={params}"
        )
    return ToggleResult(
        slug=slug,
        was_active=current.active,
        active=after.active,
        parameters=after.parameters,
        restored_parameters=params != current.parameters,
    )


def apply(name: str | None = None) -> list[str]:
    """Make the live schedules exactly prefect.yaml's: update by slug, create, delete the rest;
    each active as a deploy makes it (the record, refused while dbt Cloud runs the job too)."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    changes: list[str] = []
    declared = schedules()
    try:
        active = {spec.slug: scheduler.active_for_deploy(spec.slug) for spec in declared}
    except scheduler.SchedulerConflict as exc:
        raise ScheduleError(str(exc)) from None
    with _client() as client:
        dep_id = deployment_id(client, name)
        live = read_live(client, dep_id)
        by_slug = {s.slug: s for s in live}
        for spec in declared:
            cron = CronSchedule(cron=spec.cron, timezone=spec.timezone)
            got = by_slug.get(spec.slug)
            if got is None:
                client.create_deployment_schedules(
                    dep_id,
                    [
                        DeploymentScheduleCreate(
                            schedule=cron,
                            active=active[spec.slug],
                            parameters=spec.parameters,
                            slug=spec.slug,
                        )
                    ],
                )
                changes.append(f"created {spec.slug}")
            elif schedule_drift([spec], [got], active):
                client.update_deployment_schedule(
                    dep_id,
                    got.id,
                    active=active[spec.slug],
                    schedule=cron,
                    parameters=spec.parameters,
                    slug=spec.slug,
                )
                fields = ", ".join(d.field for d in schedule_drift([spec], [got], active))
                changes.append(f"updated {spec.slug} ({fields})")
        wanted = {s.slug for s in declared}
        for s in live:
            if s.slug not in wanted:
                client.delete_deployment_schedule(dep_id, s.id)
                changes.append(f"deleted {s.slug or s.id} (not in prefect.yaml)")
        remaining = schedule_drift(declared, read_live(client, dep_id), active)
    if remaining:
        raise ScheduleError("after apply, still drifting: " + "; ".join(map(str, remaining)))
    return changes


def repairs_needed(declared: Sequence[ScheduleSpec], live: Sequence[LiveSchedule]) -> list[Drift]:
    """The drift `repair` fixes: cron, timezone, parameters of declared schedules (pure).

    `active` is left out on purpose: pausing is an operator's decision; a wiped `parameters`
    never is.
    """
    return [
        d for d in schedule_drift(declared, live) if d.field in ("cron", "timezone", "parameters")
    ]


def repair(name: str | None = None) -> list[str]:
    """Restore prefect.yaml's cron, timezone and parameters on the live schedules, by slug,
    keeping each schedule paused or active as it is (what undoes a UI/CLI toggle's reset)."""
    from prefect.client.schemas.schedules import CronSchedule

    changes: list[str] = []
    declared = schedules()
    with _client() as client:
        dep_id = deployment_id(client, name)
        by_slug = {s.slug: s for s in read_live(client, dep_id)}
        for spec in declared:
            got = by_slug.get(spec.slug)
            fixes = repairs_needed([spec], [got]) if got is not None else []
            if got is None or not fixes:
                continue
            client.update_deployment_schedule(
                dep_id,
                got.id,
                active=got.active,
                schedule=CronSchedule(cron=spec.cron, timezone=spec.timezone),
                parameters=spec.parameters,
                slug=spec.slug,
            )
            fields = ", ".join(d.field for d in fixes)
            changes.append(
                f"repaired {spec.slug} ({fields}); still {'active' if got.active else 'paused'}"
            )
        remaining = repairs_needed(declared, read_live(client, dep_id))
    if remaining:
        raise ScheduleError("after repair, still drifting: " + "; ".join(map(str, remaining)))
    return changes


# -- CLI ---------------------------------------------------------------------------------------


def _ls(name: str | None) -> int:
    live = live_schedules(name)
    if not live:
        print("no schedules on the deployment; `python -m migration schedules apply` adds them")
    for s in live:
        times = asyncio.run(next_runs(s))
        print(
            f"{s.slug}  cron={s.cron!r} tz={s.timezone} "
            f"{'active' if s.active else 'PAUSED'}  parameters={s.parameters}"
        )
        print("    next runs: " + (", ".join(f"{t:%Y-%m-%d %H:%M %Z}" for t in times) or "-"))
    return 0


def _check(name: str | None) -> int:
    declared = schedules()
    active = scheduler.recorded_active([s.slug for s in declared])
    drift = schedule_drift(declared, live_schedules(name), active)
    if not drift:
        states = ", ".join(f"{s.slug} {'active' if active[s.slug] else 'paused'}" for s in declared)
        print(f"schedules match prefect.yaml and the scheduler record ({states})")
        return 0
    print("schedule drift (live deployment vs prefect.yaml and the scheduler record):")
    for d in drift:
        print(f"  - {d}")
    print(
        "fix: `python -m migration schedules repair` (prefect.yaml's cron and parameters, "
        "paused stays paused), `python -m migration schedules apply` (makes the live schedules "
        "exactly prefect.yaml's), or change prefect.yaml and redeploy"
    )
    return 1


def _toggle(slug: str, active: bool, name: str | None) -> int:
    result = set_active(slug, active, name)
    verb = "resumed" if active else "paused"
    already = " (it already was)" if result.was_active == active else ""
    print(f"{verb} {result.slug}{already}; parameters kept: {result.parameters}")
    if result.restored_parameters:
        print("  note: its parameters had been wiped by an earlier toggle; restored prefect.yaml's")
    return 0


def _repair(name: str | None) -> int:
    changes = repair(name)
    print("\n".join(changes) if changes else "nothing to repair: schedules match prefect.yaml")
    return 0


def _apply(name: str | None) -> int:
    changes = apply(name)
    print("\n".join(changes) if changes else "nothing to do: schedules already match prefect.yaml")
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "ls":
            return _ls(args.deployment)
        if args.action == "check":
            return _check(args.deployment)
        if args.action == "apply":
            return _apply(args.deployment)
        if args.action == "repair":
            return _repair(args.deployment)
        if not args.slug:
            print(f"error: `schedules {args.action}` needs a SLUG", file=sys.stderr)
            return 2
        return _toggle(args.slug, args.action == "resume", args.deployment)
    except ScheduleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "schedules",
        help="list, pause/resume (keeping parameters), check, apply or repair the schedules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["ls", "pause", "resume", "check", "apply", "repair"])
    parser.add_argument(
        "slug", nargs="?", help="schedule slug (pause/resume), e.g. wg-prod-nightly"
    )
    parser.add_argument(
        "--deployment",
        default=None,
        help="FLOW/DEPLOYMENT (default: the --tenant's, in prefect.yaml)",
    )
    parser.set_defaults(handler=main)
