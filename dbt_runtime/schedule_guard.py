"""A scheduled run builds what prefect.yaml declares for its schedule, or stops before dbt.

Why: on Prefect 3.9.1 the default (React) UI's schedule toggle, and `prefect deployment
schedule pause|resume`, send only `{"active": ...}`; the server then resets that schedule's
`parameters` to `{}`. Every run the schedule creates afterwards gets the deployment defaults
(`target: dev`): the prod nightly silently builds dev.

The flow calls `enforce_declared_parameters(locals())` first. For a run created by a schedule
(`created_by.type == "SCHEDULE"`, `display_value` = the schedule's slug) it compares the run's
parameters and the live schedule's with what prefect.yaml (in the cloned repo, i.e. the
deployed commit) declares for that slug, and then:

- match: nothing to do, no noise.
- the live schedule holds `{}` (the toggle's reset, never an operator's intent): the run goes
  ahead with prefect.yaml's parameters, the schedule is repaired (whole schedule written back),
  the flow run's recorded parameters are corrected, and a state message, a WARNING log line and
  a `schedule-guard` artifact say so. The prod data stays fresh and nobody is paged for a
  known, mechanical fault.
- anything else (someone set different, non-empty parameters on the live schedule, or the
  schedule is gone): intent is unknown, so the run FAILS before dbt starts, naming the
  schedule, the difference and the fix. Guessing either way could build the wrong target.

Ad-hoc runs (Quick/Custom run, CLI, API) are never touched: their parameters are the operator's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dbt_runtime import notify
from dbt_runtime.live_schedules import read_live, write_schedule
from dbt_runtime.project import ScheduleSpec, deployment_config, schedules

ARTIFACT_KEY = "schedule-guard"
REPAIR_COMMAND = "python -m migration schedules repair"
CHECK_COMMAND = "python -m migration schedules check"


class ScheduleParametersDrift(RuntimeError):
    """A scheduled run whose parameters differ from prefect.yaml's in a way no rule can settle."""


class Action(StrEnum):
    proceed = "proceed"
    """Run as created (parameters match, or the run was not made by a declared schedule)."""
    run_declared = "run_declared"
    """Run with prefect.yaml's parameters instead of the ones the run was created with."""
    refuse = "refuse"
    """Fail before dbt starts."""


@dataclass(frozen=True)
class GuardDecision:
    """What the guard does with one scheduled run, and what it tells the operator."""

    action: Action
    slug: str
    parameters: dict[str, Any]  # the parameters the run must use (all of them)
    recorded: dict[str, Any]  # what the scheduler would have stored: deployment + schedule
    repair_schedule: bool  # rewrite the live schedule's parameters from prefect.yaml
    message: str  # empty: nothing worth telling

    @property
    def noteworthy(self) -> bool:
        return bool(self.message)


def _plain(value: Any) -> Any:
    """A JSON-comparable form: enums become their values, tuples lists."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_plain(v)!r}" for k, v in sorted(params.items())) or "{}"


def decide(
    slug: str,
    run_parameters: Mapping[str, Any],
    declared: ScheduleSpec | None,
    deployment_parameters: Mapping[str, Any],
    flow_defaults: Mapping[str, Any],
    live_parameters: Mapping[str, Any] | None,
) -> GuardDecision:
    """Decide what a run created by schedule `slug` may do (pure).

    run_parameters: every parameter the flow function received (defaults filled in).
    live_parameters: the schedule's parameters on the server now; None if it no longer exists.
    """
    if declared is None:
        return GuardDecision(
            Action.proceed, slug, dict(run_parameters), dict(run_parameters), False,
            f"schedule {slug!r} is not declared in prefect.yaml; the run keeps the parameters "
            f"it was created with ({_describe(run_parameters)}). `{CHECK_COMMAND}` lists drift.",
        )  # fmt: skip
    recorded = {**deployment_parameters, **declared.parameters}
    expected = {**flow_defaults, **recorded}
    wrong = {
        name: (expected.get(name), value)
        for name, value in run_parameters.items()
        if _plain(value) != _plain(expected.get(name))
    }
    wiped = live_parameters is not None and not live_parameters and bool(declared.parameters)
    live_ok = live_parameters is not None and _plain(live_parameters) == _plain(declared.parameters)
    diff = ", ".join(
        f"{k}={_plain(got)!r} (prefect.yaml: {_plain(want)!r})" for k, (want, got) in wrong.items()
    )
    if not wrong:
        if live_ok:
            return GuardDecision(Action.proceed, slug, dict(run_parameters), recorded, False, "")
        if wiped:
            message = (
                f"schedule {slug!r} had lost its parameters (a UI/CLI toggle resets them to {{}}); "
                f"this run already had prefect.yaml's ({_describe(declared.parameters)}), so it "
                "runs unchanged and the schedule is repaired"
            )
            return GuardDecision(
                Action.proceed, slug, dict(run_parameters), recorded, True, message
            )
        message = (
            f"schedule {slug!r} on the server holds {_describe(live_parameters or {})}, "
            f"prefect.yaml declares {_describe(declared.parameters)}; this run matches "
            f"prefect.yaml and goes ahead. Fix the schedule: `{REPAIR_COMMAND}` or change "
            "prefect.yaml and redeploy"
        )
        return GuardDecision(Action.proceed, slug, dict(run_parameters), recorded, False, message)
    if wiped or live_ok:
        why = (
            "its schedule had lost its parameters (a UI/CLI toggle resets them to {}); the "
            "schedule is repaired"
            if wiped
            else "it was created before its schedule was repaired"
        )
        message = (
            f"scheduled run of {slug!r} was created with {diff}: {why}. It runs with "
            f"prefect.yaml's parameters instead ({_describe(declared.parameters)})"
        )
        parameters = {name: expected.get(name, value) for name, value in run_parameters.items()}
        return GuardDecision(Action.run_declared, slug, parameters, recorded, wiped, message)
    live = "is gone" if live_parameters is None else f"holds {_describe(live_parameters)}"
    message = (
        f"scheduled run of {slug!r} stopped before dbt started: it was created with {diff}, and "
        f"the schedule on the server {live}, not what prefect.yaml declares "
        f"({_describe(declared.parameters)}). Someone changed it on purpose, so no rule can tell "
        f"which is right. Fix: put the wanted parameters in prefect.yaml and redeploy, or restore "
        f"prefect.yaml's with `{REPAIR_COMMAND}`; then start this build again with `prefect "
        f"deployment run ... --param target=...`"
    )
    return GuardDecision(Action.refuse, slug, dict(run_parameters), recorded, False, message)


def report_markdown(decision: GuardDecision, repaired: str) -> str:
    """The `schedule-guard` artifact: what was found and what was done."""
    lines = [
        f"# Schedule guard: `{decision.slug}`",
        "",
        f"**Action:** {decision.action.value}",
        "",
        decision.message,
        "",
        "| parameter | this run uses |",
        "|---|---|",
        *(f"| `{k}` | `{json.dumps(_plain(v))}` |" for k, v in sorted(decision.parameters.items())),
        "",
        f"**Schedule:** {repaired}",
        "",
        f"Check all schedules: `{CHECK_COMMAND}`.",
    ]
    return "\n".join(lines)


# -- runtime (needs a flow run) ----------------------------------------------------------------


def _repair(client: Any, deployment_id: Any, slug: str, declared: ScheduleSpec) -> str:
    """Write the whole schedule back with prefect.yaml's parameters, keeping `active` as is."""
    live = next((s for s in read_live(client, deployment_id) if s.slug == slug), None)
    if live is None:
        return f"not repaired: {slug!r} is no longer on the deployment"
    write_schedule(client, deployment_id, live, active=live.active, parameters=declared.parameters)
    return f"repaired: {slug!r} parameters set back to {_describe(declared.parameters)}"


def enforce_declared_parameters(parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """Check a scheduled run against prefect.yaml; call first in the flow with `locals()`.

    Returns None when the flow should go on as called, or the parameters to call the flow body
    with instead. Raises ScheduleParametersDrift (the run fails before dbt) when it must not run.
    """
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext
    from prefect.states import Running
    from prefect.utilities.callables import get_parameter_defaults

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow is None:
        return None
    created_by = context.flow_run.created_by
    if created_by is None or created_by.type != "SCHEDULE" or not created_by.display_value:
        return None
    slug = created_by.display_value
    declared = next((s for s in schedules() if s.slug == slug), None)
    deployment_parameters = dict(deployment_config().get("parameters") or {})
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(context.flow_run.id)
        live = None
        if run.deployment_id is not None:
            live = next(
                (s for s in client.read_deployment_schedules(run.deployment_id) if s.slug == slug),
                None,
            )
        decision = decide(
            slug,
            parameters,
            declared,
            deployment_parameters,
            get_parameter_defaults(context.flow.fn),
            None if live is None else dict(live.parameters or {}),
        )
        if not decision.noteworthy:
            return None
        repaired = "unchanged"
        if decision.repair_schedule and declared is not None and run.deployment_id is not None:
            try:
                repaired = _repair(client, run.deployment_id, slug, declared)
            except Exception as exc:  # the run itself is still right: report, don't fail it
                repaired = f"NOT repaired ({exc}); run `{REPAIR_COMMAND}`"
        if decision.action is Action.run_declared:
            # The run's page then shows the parameters (and target in its name) it builds with.
            wrong_prefix = notify.target_prefix(str(_plain(parameters.get("target"))))
            name = notify.named_for_target(
                str(_plain(decision.parameters.get("target"))), run.name.removeprefix(wrong_prefix)
            )
            client.update_flow_run(run.id, parameters=decision.recorded, name=name)
        if decision.action is not Action.refuse:
            client.set_flow_run_state(
                run.id, Running(message=f"{decision.message}. Schedule {repaired}."), force=True
            )
    create_markdown_artifact(
        markdown=report_markdown(decision, repaired),
        key=ARTIFACT_KEY,
        description=f"schedule {slug}: {decision.action.value}",
    )
    if decision.action is Action.refuse:
        logger.error(decision.message)
        raise ScheduleParametersDrift(decision.message)
    logger.warning("%s. Schedule %s.", decision.message, repaired)
    return decision.parameters if decision.action is Action.run_declared else None
