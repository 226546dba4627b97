"""dbt Cloud job definitions -> the prefect.yaml schedule entries they imply (pure functions).

A dbt Cloud job is a cron (UTC), a target (`settings.target_name`) and `execute_steps`, each a
dbt command line. The flow runs ONE dbt command per run, with the parameters in
dbt_runtime/invocation.py; each step is parsed against dbt's own CLI definition (`shlex` + the click
options of that dbt command), and its flags are mapped onto the flow's parameters. What one flow
run cannot express is reported, never silently dropped.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.dbt_cloud import run_sync
from dbt_runtime.invocation import DbtCommand, Target, build_invocation
from dbt_runtime.project import DBT_CLOUD_EXPORT, ScheduleSpec, active_template

# Steps that dbt Cloud can run in sequence and `dbt build` covers in one DAG-ordered run.
_BUILD_PARTS = {DbtCommand.seed, DbtCommand.run, DbtCommand.test, DbtCommand.snapshot}


class JobImportError(ValueError):
    """A job that cannot become a schedule; the message names the job and what to fix."""


def load_export(path: Path = DBT_CLOUD_EXPORT) -> list[dict[str, Any]]:
    """Jobs from a saved `GET /api/v2/accounts/{id}/jobs/` response (or a bare list of jobs)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise JobImportError(f"{path}: cannot read a dbt Cloud jobs export: {exc}") from None
    jobs = data["data"] if isinstance(data, dict) else data
    if isinstance(jobs, dict):  # a single `GET .../jobs/{id}/` response
        jobs = [jobs]
    if not isinstance(jobs, list):
        raise JobImportError(f"{path}: expected the v2 jobs response (a `data` list of jobs)")
    return jobs


def schedule_slug(job: Mapping[str, Any]) -> str:
    """The schedule slug for a job: its name, lower-case, dashes (stable across redeploys)."""
    return re.sub(r"[^a-z0-9]+", "-", str(job["name"]).lower()).strip("-")


def scheduled_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs that run on a cron in dbt Cloud (or did, before cutover disabled their trigger)."""
    return [
        j
        for j in jobs
        if (j.get("schedule") or {}).get("cron")
        and ((j.get("triggers") or {}).get("schedule") or j.get("job_type") == "scheduled")
    ]


# -- one step ----------------------------------------------------------------------------------


def flow_parameters() -> set[str]:
    """The dbt options the flow exposes as parameters (derived from build_invocation)."""
    return set(inspect.signature(build_invocation).parameters) - {"command", "target"}


@dataclass(frozen=True)
class StepParameters:
    """One `dbt ...` step as flow parameters, plus what the flow cannot express."""

    step: str
    command: DbtCommand
    parameters: dict[str, Any]
    target: str | None = None  # a `--target` in the step overrides the job's target_name
    unsupported: tuple[str, ...] = ()


def _dbt_options(command: DbtCommand) -> dict[str, Any]:
    """Option string -> click parameter of `dbt <command>` (dbt's CLI is the authority)."""
    from dbt.cli.main import cli

    words = command.value.split()
    click_command: Any = cli.commands[words[0]]
    for word in words[1:]:
        click_command = click_command.commands[word]
    options: dict[str, Any] = {}
    for param in click_command.params:
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            options[opt] = param
    return options


def parse_step(step: str) -> StepParameters:
    """`dbt build -s tag:x --exclude y --full-refresh --vars '{k: v}'` -> flow parameters."""
    try:
        words = shlex.split(step)
    except ValueError as exc:
        raise JobImportError(f"step {step!r}: not a command line: {exc}") from None
    if not words or words[0] != "dbt":
        raise JobImportError(f"step {step!r}: a dbt Cloud step must start with `dbt`")
    command = None
    for n in (2, 1):  # "source freshness", "docs generate" before "build"
        try:
            command = DbtCommand(" ".join(words[1 : 1 + n]))
            rest = words[1 + n :]
            break
        except ValueError:
            continue
    if command is None:
        allowed = ", ".join(c.value for c in DbtCommand)
        raise JobImportError(f"step {step!r}: the flow runs only dbt {allowed}")
    options = _dbt_options(command)
    exposed = flow_parameters()
    params: dict[str, Any] = {}
    target = None
    unsupported: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        opt, _, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        param = options.get(opt)
        if param is None:
            raise JobImportError(f"step {step!r}: `dbt {command.value}` has no option {word!r}")
        i += 1
        if getattr(param, "is_flag", False):
            value: Any = opt not in getattr(param, "secondary_opts", [])
        elif param.multiple:  # dbt's MultiOption: every word up to the next option
            value = [inline] if inline else []
            while i < len(rest) and not rest[i].startswith("-"):
                value.append(rest[i])
                i += 1
        else:
            if not inline and i >= len(rest):
                raise JobImportError(f"step {step!r}: {opt} needs a value")
            value = inline or rest[i]
            i += not inline
        if param.name == "target":
            target = str(value)
        elif param.name == "vars":
            parsed = yaml.safe_load(value)  # dbt's --vars is a YAML mapping
            if not isinstance(parsed, dict):
                raise JobImportError(f"step {step!r}: --vars is not a mapping: {value!r}")
            params["vars"] = parsed
        elif param.name in exposed and param.name != "state":
            params[param.name] = value
        else:
            # --state points at a path on dbt Cloud's machine; --threads, --defer, ... are not
            # flow parameters. Listed so the operator decides, not dropped silently.
            unsupported.append(word if param.is_flag else f"{opt} {value}")
    return StepParameters(
        step=step, command=command, parameters=params, target=target, unsupported=tuple(unsupported)
    )


# -- one job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobImport:
    """A dbt Cloud job as the prefect.yaml schedule it implies, and what does not carry over."""

    job_id: int | None
    job_name: str
    schedule: ScheduleSpec
    notes: tuple[str, ...] = ()  # behaviour that differs but the schedule still replaces the job
    cannot_express: tuple[str, ...] = ()  # the schedule does NOT replace this part of the job

    @property
    def exact(self) -> bool:
        return not self.cannot_express


def load_target_map(path: Path | None) -> dict[str, str]:
    """dbt Cloud target name -> profiles.yml target, from a YAML/JSON mapping file."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise JobImportError(f"--target-map {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise JobImportError(
            f"--target-map {path}: expected a mapping like `default: prod` "
            "(dbt Cloud target name: profiles.yml target)"
        )
    return {str(k): v for k, v in data.items()}


def _target(job: Mapping[str, Any], name: str, target_map: Mapping[str, str]) -> str:
    mapped = target_map.get(name, name)
    if mapped not in {t.value for t in Target}:
        allowed = ", ".join(t.value for t in Target)
        raise JobImportError(
            f"job {job.get('name')!r}: dbt Cloud target {name!r} is not a profiles.yml target "
            f"({allowed}); map it in a --target-map file, e.g. `{name}: prod`"
        )
    return mapped


def import_job(job: Mapping[str, Any], target_map: Mapping[str, str] | None = None) -> JobImport:
    """The schedule a scheduled dbt Cloud job becomes (dbt Cloud crons are UTC)."""
    target_map = target_map or {}
    name = str(job.get("name") or job.get("id"))
    cron = (job.get("schedule") or {}).get("cron")
    if not cron:
        raise JobImportError(f"job {name!r} has no schedule.cron: it is not a scheduled job")
    steps = [parse_step(str(s)) for s in job.get("execute_steps") or []]
    if not steps:
        raise JobImportError(f"job {name!r} has no execute_steps")
    notes: list[str] = []
    cannot: list[str] = []

    freshness = [s for s in steps if s.command is DbtCommand.source_freshness]
    docs = [s for s in steps if s.command is DbtCommand.docs_generate]
    main = [s for s in steps if s not in freshness and s not in docs]
    for s in freshness:
        cannot.append(
            f"step {s.step!r}: a flow run is one dbt command; run source freshness as its own "
            "schedule or ad-hoc run (in dbt Cloud its failure did not fail the job)"
        )
    for s in docs:
        cannot.append(f"step {s.step!r}: docs are not generated by the scheduled run")
    if job.get("generate_docs"):
        cannot.append("generate_docs: the job also generated docs; the scheduled run does not")
    if job.get("run_generate_sources"):
        cannot.append("run_generate_sources: the job also checked source freshness")
    if not main:
        main = steps[:1]  # e.g. a freshness-only job: keep its one command, flagged above
    if len(main) == 1:
        chosen = main[0]
    else:
        commands = [s.command for s in main]
        same_flags = all(s.parameters == main[0].parameters for s in main)
        if set(commands) <= _BUILD_PARTS and same_flags and len(set(commands)) == len(commands):
            chosen = StepParameters(
                step=" && ".join(s.step for s in main),
                command=DbtCommand.build,
                parameters=main[0].parameters,
                target=main[0].target,
                unsupported=tuple(u for s in main for u in s.unsupported),
            )
            notes.append(
                f"steps {[s.step for s in main]} become one `dbt build` (DAG order): a failing "
                "test now skips its downstream models instead of failing after they ran"
            )
        else:
            chosen = main[0]
            cannot.extend(
                f"step {s.step!r}: a flow run is one dbt command; only {main[0].step!r} is "
                "scheduled (split the job into schedules or use `dbt build` with selectors)"
                for s in main[1:]
            )
    cannot.extend(
        f"step {chosen.step!r}: option {u!r} is not a flow parameter" for u in chosen.unsupported
    )
    if (job.get("settings") or {}).get("threads"):
        notes.append(
            f"threads={job['settings']['threads']} comes from profiles.yml's target, not the job"
        )
    target_name = chosen.target or str((job.get("settings") or {}).get("target_name") or "")
    parameters: dict[str, Any] = {
        "command": chosen.command.value,
        "target": _target(job, target_name, target_map),
    }
    parameters.update(chosen.parameters)
    # The invocation must be one the flow accepts (e.g. --full-refresh with test is refused).
    try:
        build_invocation(**parameters)
    except ValueError as exc:
        raise JobImportError(f"job {name!r}: {exc}") from None
    return JobImport(
        job_id=job.get("id"),
        job_name=name,
        schedule=ScheduleSpec(
            slug=schedule_slug(job),
            cron=str(cron),
            timezone="UTC",
            parameters=parameters,
        ),
        notes=tuple(notes),
        cannot_express=tuple(cannot),
    )


def schedule_for_job(
    job: dict[str, Any], target_map: Mapping[str, str] | None = None
) -> ScheduleSpec:
    """The schedule a scheduled dbt Cloud job becomes (dbt Cloud crons are UTC)."""
    return import_job(job, target_map).schedule


def schedule_entry(spec: ScheduleSpec) -> dict[str, Any]:
    """The prefect.yaml `schedules:` item for a spec, in prefect.yaml's key order. `active` is
    the answer of the build step migration.deploy_steps.schedule_active (add it too)."""
    return {
        "slug": spec.slug,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "active": active_template(spec.slug),
        "parameters": dict(spec.parameters),
    }


@dataclass(frozen=True)
class ImportDrift:
    slug: str
    message: str


def import_drift(imported: list[ScheduleSpec], declared: list[ScheduleSpec]) -> list[ImportDrift]:
    """Where prefect.yaml's schedules differ from what the dbt Cloud jobs imply.

    Whether a schedule is active is not compared: it is the cutover's to decide (a job disabled
    at cutover is still the job prefect.yaml replaces).
    """
    out = []
    have = {s.slug: s for s in declared}
    for spec in imported:
        got = have.get(spec.slug)
        if got is None:
            out.append(ImportDrift(spec.slug, "missing from prefect.yaml"))
            continue
        for name in ("cron", "timezone", "parameters"):
            want, is_ = getattr(spec, name), getattr(got, name)
            if want != is_:
                out.append(
                    ImportDrift(spec.slug, f"{name}: prefect.yaml {is_!r}, dbt Cloud {want!r}")
                )
    wanted = {s.slug for s in imported}
    out += [
        ImportDrift(s.slug, "in prefect.yaml but no scheduled dbt Cloud job implies it")
        for s in declared
        if s.slug not in wanted
    ]
    return out


__all__ = [
    "DbtCloudJobs",
    "ImportDrift",
    "JobImport",
    "JobImportError",
    "StepParameters",
    "import_drift",
    "import_job",
    "load_export",
    "load_target_map",
    "parse_step",
    "schedule_entry",
    "schedule_for_job",
    "schedule_slug",
    "scheduled_jobs",
]


# -- the dbt Cloud Admin API v2 (jobs) ---------------------------------------------------------


class DbtCloudJobs:
    """Synchronous GET/POST of dbt Cloud jobs over dbt_runtime.dbt_cloud's client (real HTTP)."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def get_job(self, job_id: int) -> dict[str, Any]:

        return run_sync(lambda cloud: cloud.get_job(job_id), self.credentials)

    def set_schedule_trigger(self, job_id: int, enabled: bool) -> dict[str, Any]:
        """GET the job, set `triggers.schedule`, POST the whole job back (v2 has no PATCH)."""

        async def update(cloud: Any) -> dict[str, Any]:
            job = await cloud.get_job(job_id)
            job["triggers"] = {**(job.get("triggers") or {}), "schedule": enabled}
            return dict(await cloud.update_job(job_id, job))

        return run_sync(update, self.credentials)
