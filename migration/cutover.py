"""Cutover from dbt Cloud to Prefect, and back: exactly one scheduler is live for each job.

`python -m migration cutover [--job-id ID ...] [--apply]`
    1. activate the job's Prefect schedule (keeping its parameters), then
    2. disable the dbt Cloud job's schedule (`triggers.schedule = false`: GET job -> POST job).
`python -m migration rollback [--job-id ID ...] [--apply]`
    1. re-enable the dbt Cloud job's schedule, then
    2. pause the Prefect schedule (keeping its parameters).
`python -m migration rollback --to-ref REF [--apply]`
    redeploy an earlier git ref of this repository (the pull step pins the deployed commit).

Each also records who now runs the job (migration/scheduler.py, a Prefect Variable per
schedule), which every later deploy reads for the schedule's `active`: a redeploy keeps the
cutover or the rollback.

Order matters: the new scheduler comes up before the old one goes down, so a failure between
the two steps can at worst cause one duplicate run, never a missed one; and a failed second step
is undone, so the command always ends with one scheduler per job, and says which. Dry-run by
default; every step is idempotent (a step whose side is already right is skipped and logged).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dbt_runtime.dbt_cloud import DEFAULT_BLOCK, DbtCloudError, load_credentials
from dbt_runtime.project import DBT_CLOUD_EXPORT, REPO_ROOT, schedules
from migration import scheduler
from migration import schedules as prefect_schedules
from migration.dbt_cloud_jobs import (
    DbtCloudJobs,
    JobImportError,
    load_export,
    schedule_slug,
    scheduled_jobs,
)

Direction = Literal["cutover", "rollback"]

EXIT_OK, EXIT_FAILED_INVARIANT_HELD, EXIT_BAD_INPUT, EXIT_INVARIANT_BROKEN = 0, 1, 2, 3


@dataclass(frozen=True)
class JobPair:
    """A dbt Cloud job and the Prefect schedule (slug) that replaces it."""

    job_id: int
    job_name: str
    slug: str


@dataclass(frozen=True)
class SideState:
    """What one job's two schedulers are doing; None: could not be read."""

    dbt_cloud_schedule: bool | None
    prefect_active: bool | None
    prefect_parameters: dict[str, Any] | None = None

    @property
    def live(self) -> list[str]:
        return [
            name
            for name, on in (
                ("dbt Cloud", self.dbt_cloud_schedule),
                ("Prefect", self.prefect_active),
            )
            if on
        ]

    @property
    def known(self) -> bool:
        return self.dbt_cloud_schedule is not None and self.prefect_active is not None

    @property
    def invariant_holds(self) -> bool:
        return self.known and len(self.live) == 1


@dataclass(frozen=True)
class JobOutcome:
    pair: JobPair
    before: SideState
    after: SideState
    steps: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class SwitchReport:
    direction: Direction
    applied: bool
    outcomes: tuple[JobOutcome, ...]

    @property
    def invariant_holds(self) -> bool:
        return all(o.after.invariant_holds for o in self.outcomes)

    @property
    def failed(self) -> bool:
        return any(o.error for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        if not self.invariant_holds:
            return EXIT_INVARIANT_BROKEN
        return EXIT_FAILED_INVARIANT_HELD if self.failed else EXIT_OK


def describe(pair: JobPair, state: SideState) -> str:
    def word(on: bool | None, yes: str, no: str) -> str:
        return "UNKNOWN (could not be read)" if on is None else (yes if on else no)

    dbt = word(state.dbt_cloud_schedule, "schedule ON", "schedule OFF")
    prefect = word(state.prefect_active, "ACTIVE", "PAUSED")
    params = f" parameters={state.prefect_parameters}" if state.prefect_parameters else ""
    if state.invariant_holds:
        verdict = f"exactly one scheduler live: {state.live[0]}"
    elif not state.known:
        verdict = "INVARIANT UNKNOWN: check both sides by hand"
    else:
        verdict = "INVARIANT BROKEN: " + (
            "both live (duplicate runs)" if state.live else "none live"
        )
    return (
        f"job {pair.job_id} {pair.job_name!r}: dbt Cloud {dbt}; "
        f"Prefect schedule {pair.slug} {prefect}{params} -> {verdict}"
    )


# -- the two sides ------------------------------------------------------------------------------


class Sides:
    """Reads and writes of both schedulers for one deployment (Prefect) and account (dbt Cloud)."""

    def __init__(self, dbt_cloud: DbtCloudJobs, deployment: str | None = None) -> None:
        self.dbt_cloud = dbt_cloud
        self.deployment = deployment

    def read(self, pair: JobPair) -> SideState:
        try:
            dbt_on: bool | None = bool(
                (self.dbt_cloud.get_job(pair.job_id).get("triggers") or {}).get("schedule")
            )
        except DbtCloudError:
            dbt_on = None
        try:
            live = {s.slug: s for s in prefect_schedules.live_schedules(self.deployment)}
            got = live.get(pair.slug)
            prefect_on = None if got is None else got.active
            params = None if got is None else got.parameters
        except Exception:  # an unreachable API: reported as unknown, never guessed
            prefect_on, params = None, None
        return SideState(dbt_on, prefect_on, params)

    def set_prefect(self, pair: JobPair, active: bool) -> None:
        prefect_schedules.set_active(pair.slug, active, self.deployment)
        self.set_record(pair, active)

    def set_record(self, pair: JobPair, prefect_live: bool) -> None:
        """What every later deploy reads for this schedule's `active`."""
        scheduler.write_record(
            pair.slug, scheduler.PREFECT if prefect_live else scheduler.DBT_CLOUD
        )

    def set_dbt_cloud(self, pair: JobPair, enabled: bool) -> None:
        job = self.dbt_cloud.set_schedule_trigger(pair.job_id, enabled)
        if bool((job.get("triggers") or {}).get("schedule")) != enabled:
            raise DbtCloudError(
                f"dbt Cloud accepted the update of job {pair.job_id} but triggers.schedule is "
                f"still {not enabled}"
            )


def _log(steps: list[str], message: str, out: Any) -> None:
    steps.append(message)
    print(f"  {message}", file=out, flush=True)


def switch_job(
    sides: Sides, pair: JobPair, direction: Direction, apply: bool, out: Any = sys.stdout
) -> JobOutcome:
    """One job's cutover or rollback: bring the new side up, take the old side down, or undo."""
    before = sides.read(pair)
    steps: list[str] = []
    print(f"{direction} {describe(pair, before)}", file=out, flush=True)
    if not before.known:
        _log(steps, "cannot read both sides; nothing changed", out)
        return JobOutcome(pair, before, before, tuple(steps), "state unknown before starting")

    # (side name, current value, wanted value, setter); the first is brought up first.
    prefect_up = direction == "cutover"
    first_name, second_name = ("Prefect", "dbt Cloud") if prefect_up else ("dbt Cloud", "Prefect")

    def setter(name: str) -> Any:
        if name == "Prefect":
            return lambda on: sides.set_prefect(pair, on)
        return lambda on: sides.set_dbt_cloud(pair, on)

    def current(state: SideState, name: str) -> bool | None:
        return state.prefect_active if name == "Prefect" else state.dbt_cloud_schedule

    def what(name: str, on: bool) -> str:
        if name == "Prefect":
            return f"{'activate' if on else 'pause'} Prefect schedule {pair.slug} (keep parameters)"
        return f"{'enable' if on else 'disable'} dbt Cloud schedule of job {pair.job_id}"

    error = None
    for n, (name, on) in enumerate(((first_name, True), (second_name, False)), start=1):
        if current(before, name) == on:
            _log(steps, f"step {n}: {what(name, on)}: already so, skipped", out)
            continue
        if not apply:
            _log(steps, f"step {n}: would {what(name, on)} (dry run; --apply to act)", out)
            continue
        try:
            setter(name)(on)
            _log(steps, f"step {n}: {what(name, on)}: done", out)
        except Exception as exc:
            error = f"step {n} ({what(name, on)}) failed: {exc}"
            _log(steps, error, out)
            if n == 2:
                # The old side is still up. If the POST did land anyway, keep the new side;
                # otherwise take the new side back down so only the old scheduler is live.
                now = sides.read(pair)
                if current(now, name) != on:
                    try:
                        setter(first_name)(False)
                        _log(steps, f"undo: {what(first_name, False)}: done", out)
                    except Exception as undo_exc:
                        _log(steps, f"undo: {what(first_name, False)} FAILED: {undo_exc}", out)
                else:
                    _log(steps, f"{second_name} reports the change applied; no undo needed", out)
            break
    after = sides.read(pair) if apply else before
    if apply and after.prefect_active is not None:
        # Whatever happened above (including skipped and undone steps), record the side that
        # now runs the job, so the next deploy keeps it.
        who = scheduler.PREFECT if after.prefect_active else scheduler.DBT_CLOUD
        try:
            sides.set_record(pair, after.prefect_active)
            _log(steps, f"record: {scheduler.variable_name(pair.slug)} = {who}", out)
        except Exception as exc:
            error = (
                error or f"recording {who} in {scheduler.variable_name(pair.slug)} failed: {exc}"
            )
            _log(steps, f"record {scheduler.variable_name(pair.slug)} = {who} FAILED: {exc}", out)
    print(f"  now: {describe(pair, after)}", file=out, flush=True)
    if not apply and not after.invariant_holds:
        print("  (dry run: the state above is the current one)", file=out, flush=True)
    return JobOutcome(pair, before, after, tuple(steps), error)


def switch(
    sides: Sides, pairs: list[JobPair], direction: Direction, apply: bool, out: Any = sys.stdout
) -> SwitchReport:
    """Every job in turn; stops at the first failure so the operator sees one problem at a time."""
    outcomes = []
    for pair in pairs:
        outcome = switch_job(sides, pair, direction, apply, out)
        outcomes.append(outcome)
        if outcome.error:
            break
    report = SwitchReport(direction, apply, tuple(outcomes))
    skipped = pairs[len(outcomes) :]
    print(f"\n{direction} {'applied' if apply else 'dry run'}: final state", file=out)
    for o in outcomes:
        print(f"  {describe(o.pair, o.after)}", file=out)
    for p in skipped:
        print(
            f"  job {p.job_id} {p.job_name!r}: not attempted (stopped at the failure above)",
            file=out,
        )
    if report.failed and report.invariant_holds:
        print(
            f"{direction} FAILED midway; the invariant holds (one scheduler per job, as listed). "
            "Fix the cause and rerun: every step is idempotent.",
            file=out,
        )
    elif not report.invariant_holds:
        print(
            "INVARIANT BROKEN for a job above: fix it by hand now (dbt Cloud job settings -> "
            "Triggers -> Schedule; `python -m migration schedules pause|resume SLUG`).",
            file=out,
        )
    return report


def job_pairs(job_ids: list[int] | None, jobs_file: Path = DBT_CLOUD_EXPORT) -> list[JobPair]:
    """The jobs to switch (default: every scheduled job in the export) and their slugs."""
    jobs = {int(j["id"]): j for j in load_export(jobs_file)}
    missing = [i for i in job_ids or [] if i not in jobs]
    if missing:
        raise JobImportError(f"job ids {missing} are not in {jobs_file}")
    chosen = [jobs[i] for i in job_ids] if job_ids else scheduled_jobs(list(jobs.values()))
    declared = {s.slug for s in schedules()}
    pairs = [JobPair(int(j["id"]), str(j["name"]), schedule_slug(j)) for j in chosen]
    for p in pairs:
        if p.slug not in declared:
            raise JobImportError(
                f"job {p.job_id} {p.job_name!r} maps to schedule {p.slug!r}, which prefect.yaml "
                "does not declare; add it (`python -m migration import-jobs`) and redeploy"
            )
    return pairs


# -- rollback of the deployment to an earlier git ref -------------------------------------------


@dataclass(frozen=True)
class RefRollback:
    ref: str
    commit: str
    applied: bool
    output: str
    restored_active: tuple[str, ...] = ()


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise JobImportError(f"git {' '.join(args)} in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


def rollback_to_ref(
    ref: str, apply: bool, repo: Path = REPO_ROOT, deployment: str | None = None
) -> RefRollback:
    """Redeploy `ref` from a temporary worktree: `prefect --no-prompt deploy --all` there.

    The worktree's own build steps pin the pull step to its commit, so runs execute exactly
    that ref's code. Which schedules are active is an operational state, not a release's: it is
    read before and restored after, so a redeploy never turns a paused scheduler back on.
    """
    commit = _git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    if not apply:
        return RefRollback(
            ref, commit, False, f"would deploy {ref} = {commit} from a worktree of {repo}"
        )
    before = {s.slug: s.active for s in prefect_schedules.live_schedules(deployment)}
    with tempfile.TemporaryDirectory(prefix="wg-rollback-") as tmp:
        worktree = Path(tmp) / "tree"
        _git(repo, "worktree", "add", "--detach", str(worktree), commit)
        try:
            env = dict(os.environ)
            # The venv's bin first: an earlier ref's build steps ran `python -m migration ...`.
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            done = subprocess.run(
                [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"],
                cwd=worktree,
                env=env,
                capture_output=True,
                text=True,
            )
        finally:
            _git(repo, "worktree", "remove", "--force", str(worktree))
    if done.returncode != 0:
        raise JobImportError(f"prefect deploy of {ref} failed:\n{done.stdout}\n{done.stderr}")
    restored = []
    for s in prefect_schedules.live_schedules(deployment):
        if s.slug in before and s.active != before[s.slug]:
            prefect_schedules.set_active(str(s.slug), before[s.slug], deployment)
            restored.append(f"{s.slug} {'active' if before[s.slug] else 'paused'}")
    return RefRollback(ref, commit, True, done.stdout, tuple(restored))


# -- CLI ----------------------------------------------------------------------------------------


def _sides(args: argparse.Namespace) -> Sides:
    return Sides(DbtCloudJobs(load_credentials(args.credentials_block)), args.deployment)


def main(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "to_ref", None):
            result = rollback_to_ref(args.to_ref, args.apply)
            if not result.applied:
                print(result.output + " (dry run; --apply to act)")
                return EXIT_OK
            print(result.output)
            print(f"deployed {result.ref} = {result.commit}; runs now execute that commit")
            for r in result.restored_active:
                print(f"kept the schedule state from before the redeploy: {r}")
            return EXIT_OK
        pairs = job_pairs(args.job_id, args.jobs_file)
        report = switch(_sides(args), pairs, args.direction, args.apply)
        return report.exit_code
    except (JobImportError, DbtCloudError, prefect_schedules.ScheduleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--job-id", type=int, action="append", help="dbt Cloud job id (default: all scheduled)"
    )
    parser.add_argument(
        "--jobs-file",
        type=Path,
        default=DBT_CLOUD_EXPORT,
        help="the dbt Cloud jobs export that names the jobs (default: %(default)s)",
    )
    parser.add_argument(
        "--credentials-block",
        default=None,
        help=f"DbtCloudCredentials block (default: $WG_DBT_CLOUD_BLOCK or {DEFAULT_BLOCK})",
    )
    parser.add_argument(
        "--deployment", default=None, help="FLOW/DEPLOYMENT (default: the --tenant's)"
    )
    parser.add_argument("--apply", action="store_true", help="act (default: dry run)")


def register(sub: argparse._SubParsersAction) -> None:
    cut = sub.add_parser(
        "cutover",
        help="activate Prefect schedules, then disable the dbt Cloud job schedules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(cut)
    cut.set_defaults(handler=main, direction="cutover")
    back = sub.add_parser(
        "rollback",
        help="re-enable dbt Cloud job schedules, then pause Prefect's; or --to-ref REF",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(back)
    back.add_argument("--to-ref", help="redeploy this earlier git ref of the repository instead")
    back.set_defaults(handler=main, direction="rollback")
