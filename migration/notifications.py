"""notifications.yaml -> Prefect automations: what dbt Cloud's job notifications did.

`python -m migration notifications apply [--dry-run] [--file F] [--allow-missing-blocks]`
makes the server's automations match the file, `... notifications ls` lists them. The deploy
runs `apply` (`make deploy`, `make cloud-deploy`, the local stack).

- One automation per rule, named `wg-notify/<rule>` and tagged MANAGED_TAG. Only automations
  carrying that tag are ever changed or deleted; hand-made automations are left alone.
- Idempotent: an automation that already matches its rule is not touched; one that differs
  (edited or paused in the UI) is updated back to the file; duplicates are removed; a managed
  automation whose rule left the file is deleted.
- A rule matches Prefect's flow-run state events (failed, crashed, timed_out, cancelled,
  completed) and the flow's own `warned` event (dbt_runtime/notify.py), for runs of THIS deployment
  (prefect.yaml) on the rule's targets. The target is read from the run name, which the flow
  sets to `<target>: <name>` as it starts; a run that never got that far (a pull step failed)
  has no target yet and reaches every rule that listens for its outcome.
- Destinations are notification blocks by `<block type>/<block name>`, registered by
  `python -m blocks.register_notifications`. A missing block fails `apply`, naming the command that
  registers it (`--allow-missing-blocks`: the local stack, which has no Slack; the rule's
  other destinations are still applied and an unbuildable rule's automation is kept as is).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from dbt_runtime.notification_rules import (
    NOTIFICATIONS_FILE,
    Destination,
    MissingBlocks,
    NotificationsFileError,
    Rule,
    load_rules,
)
from dbt_runtime.notify import RUN_NAME_SEPARATOR, WARNED_EVENT, target_prefix
from dbt_runtime.project import FLOW_NAME, deployment_config

MANAGED_TAG = "managed-by:notifications.yaml"


@dataclass(frozen=True)
class Change:
    """One thing `apply` does (or would do, with --dry-run)."""

    action: str  # create | update | delete | unchanged | skip
    name: str
    detail: str = ""

    def render(self) -> str:
        return f"{self.action:9} {self.name}" + (f"  ({self.detail})" if self.detail else "")


# -- the file ----------------------------------------------------------------------------------

# -- rule -> automation --------------------------------------------------------------------------

# Jinja for the server's send-notification action. `flow_run`, `flow`, `deployment` are read from
# the API when the action fires; `event` is the state event (or the flow's warned event).
_PRELUDE = (
    "{%- set target = flow_run.parameters.target | default('(default)') -%}"
    "{%- set warned = event.event == '" + WARNED_EVENT + "' -%}"
    "{%- set outcome = 'Completed with warnings' if warned else flow_run.state.name -%}"
    "{%- set schedule = flow_run.created_by.display_value if flow_run.created_by"
    " and flow_run.created_by.type == 'SCHEDULE' else 'ad-hoc' -%}"
)
SUBJECT_TEMPLATE = (
    _PRELUDE + "dbt {{ target }}: {{ outcome }} - {{ flow.name }}/{{ deployment.name }}"
    " ({{ schedule }})"
)
BODY_TEMPLATE = (
    _PRELUDE
    + """Deployment: {{ flow.name }}/{{ deployment.name }}
Target: {{ target }}
Schedule: {{ schedule }}
Outcome: {{ outcome }}
Run: {{ flow_run.name }} {{ flow_run|ui_url }}
{% if warned %}Warned nodes ({{ event.payload.warned_count }}):
{% for node in event.payload.warned %}  {{ node.unique_id }}: {{ node.message }}
{% endfor %}{% elif flow_run.state.message %}{{ flow_run.state.message }}
{% endif %}Summary: artifact dbt-summary-{{ target }} in {{ flow_run|ui_url }}?tab=Artifacts
"""
)


def name_patterns(rule: Rule) -> list[str] | None:
    """Glob patterns for the run name (`prefect.resource.name`), or None: any run name.

    `<target>: *` for each target, plus the runs whose name has no target yet (they failed or
    crashed before the flow started): better every listener hears of those than none.
    """
    if not rule.targets:
        return None
    return [f"{target_prefix(t)}*" for t in rule.targets] + [f"!*{RUN_NAME_SEPARATOR}*"]


def trigger_spec(rule: Rule, deployment: str, flow: str) -> dict[str, Any]:
    """The EventTrigger of a rule, as JSON-able data (what the API stores)."""
    match: dict[str, Any] = {"prefect.resource.id": "prefect.flow-run.*"}
    patterns = name_patterns(rule)
    if patterns is not None:
        match["prefect.resource.name"] = patterns
    return {
        "type": "event",
        "expect": sorted(outcome.event for outcome in rule.on),
        "match": match,
        # this deployment of this flow: both, since deployment names are unique per flow only
        "match_related": [
            {"prefect.resource.role": "flow", "prefect.resource.name": flow},
            {"prefect.resource.role": "deployment", "prefect.resource.name": deployment},
        ],
        "for_each": ["prefect.resource.id"],
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
    }


def automation_spec(
    rule: Rule, block_ids: Mapping[Destination, UUID], deployment: str, flow: str
) -> dict[str, Any]:
    """The automation for a rule (destinations without a block id are left out)."""
    outcomes = ", ".join(o.value for o in rule.on)
    scope = ", ".join(rule.targets) or "every target"
    description = (
        f"{rule.description + ' ' if rule.description else ''}"
        f"[{outcomes} on {scope}] Managed by notifications.yaml (rule {rule.name}): "
        "`python -m migration notifications apply` overwrites changes made here."
    )
    return {
        "name": rule.automation_name,
        "description": description,
        "enabled": rule.enabled,
        "tags": [MANAGED_TAG],
        "trigger": trigger_spec(rule, deployment, flow),
        "actions": [
            {
                "type": "send-notification",
                "block_document_id": str(block_ids[d]),
                "subject": SUBJECT_TEMPLATE,
                "body": BODY_TEMPLATE,
            }
            for d in rule.notify
            if d in block_ids
        ],
        "actions_on_trigger": [],
        "actions_on_resolve": [],
    }


_COMPARED = ("name", "description", "enabled", "tags", "trigger", "actions")


def comparable(automation: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `apply` owns, normalised through Prefect's own model (ids dropped)."""
    from prefect.events.schemas.automations import AutomationCore

    dumped = AutomationCore.model_validate(
        {k: v for k, v in automation.items() if k in AutomationCore.model_fields}
    ).model_dump(mode="json")
    out: dict[str, Any] = {key: dumped.get(key) for key in _COMPARED}
    trigger: dict[str, Any] = {k: v for k, v in (out["trigger"] or {}).items() if k != "id"}
    for key in ("expect", "after", "for_each"):  # sets: order is not a difference
        if isinstance(trigger.get(key), list):
            trigger[key] = sorted(trigger[key])
    out["trigger"] = trigger
    return out


def is_managed(automation: Mapping[str, Any]) -> bool:
    return MANAGED_TAG in (automation.get("tags") or [])


def plan_changes(
    desired: Sequence[Mapping[str, Any]],
    existing: Sequence[Mapping[str, Any]],
    keep: Iterable[str] = (),
) -> list[tuple[Change, Mapping[str, Any] | None, str | None]]:
    """What to do to make the managed automations equal `desired`. Pure.

    Returns (change, spec to write or None, id of the existing automation or None).
    `keep` names automations to leave alone (rules that could not be built this time).
    """
    managed: dict[str, list[Mapping[str, Any]]] = {}
    for automation in existing:
        if is_managed(automation):
            managed.setdefault(str(automation["name"]), []).append(automation)
    keep = set(keep)
    steps: list[tuple[Change, Mapping[str, Any] | None, str | None]] = []
    for spec in desired:
        name = str(spec["name"])
        current = managed.pop(name, [])
        if not current:
            steps.append((Change("create", name), spec, None))
            continue
        first, *duplicates = current
        if comparable(first) == comparable(spec):
            steps.append((Change("unchanged", name), None, None))
        else:
            what = [k for k in _COMPARED if comparable(first)[k] != comparable(spec)[k]]
            steps.append(
                (Change("update", name, "differs in " + ", ".join(what)), spec, first["id"])
            )
        for extra in duplicates:
            steps.append((Change("delete", name, "duplicate"), None, str(extra["id"])))
    for name in sorted(keep):
        kept = "kept as it is" if managed.pop(name, None) else "not created"
        steps.append((Change("skip", name, f"no destination block registered: {kept}"), None, None))
    for name, leftovers in sorted(managed.items()):
        for automation in leftovers:
            steps.append(
                (Change("delete", name, "no longer in the file"), None, str(automation["id"]))
            )
    return steps


# -- server --------------------------------------------------------------------------------------


async def _block_ids(client: Any, destinations: Iterable[Destination]) -> dict[Destination, UUID]:
    from prefect.exceptions import ObjectNotFound

    found: dict[Destination, UUID] = {}
    for destination in destinations:
        try:
            block = await client.read_block_document_by_name(
                destination.block_name, destination.block_type, include_secrets=False
            )
        except ObjectNotFound:
            continue
        found[destination] = block.id
    return found


async def _existing(client: Any) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in await client.read_automations()]


@dataclass(frozen=True)
class ApplyResult:
    changes: tuple[Change, ...]
    missing: tuple[Destination, ...]


async def apply(
    path: Path = NOTIFICATIONS_FILE, dry_run: bool = False, allow_missing_blocks: bool = False
) -> ApplyResult:
    """Make the server's managed automations match the file."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    rules = load_rules(path)
    deployment, flow = str(deployment_config()["name"]), FLOW_NAME
    async with get_client() as client:
        wanted = {d for rule in rules for d in rule.notify}
        block_ids = await _block_ids(client, wanted)
        missing = tuple(sorted(wanted - set(block_ids), key=lambda d: d.ref))
        if missing and not allow_missing_blocks:
            raise MissingBlocks(
                "\n".join(
                    f"block {d.ref} (notifications.yaml) not found: run `{d.how_to_register()}`"
                    for d in missing
                )
            )
        desired, unbuildable = [], []
        for rule in rules:
            if any(d in block_ids for d in rule.notify):
                desired.append(automation_spec(rule, block_ids, deployment, flow))
            else:
                unbuildable.append(rule.automation_name)
        steps = plan_changes(desired, await _existing(client), keep=unbuildable)
        for change, spec, existing_id in steps:
            if dry_run:
                continue
            if change.action == "create" and spec is not None:
                await client.create_automation(AutomationCore.model_validate(spec))
            elif change.action == "update" and spec is not None and existing_id:
                await client.update_automation(
                    UUID(existing_id), AutomationCore.model_validate(spec)
                )
            elif change.action == "delete" and existing_id:
                await client.delete_automation(UUID(existing_id))
    return ApplyResult(tuple(change for change, _, _ in steps), missing)


async def managed_automations() -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return [a for a in await _existing(client) if is_managed(a)]


# -- CLI -----------------------------------------------------------------------------------------


def apply_main(path: Path, dry_run: bool, allow_missing_blocks: bool) -> int:
    try:
        result = asyncio.run(apply(path, dry_run, allow_missing_blocks))
    except (NotificationsFileError, MissingBlocks) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for destination in result.missing:
        print(
            f"warning: block {destination.ref} not found, its notifications are NOT sent: "
            f"run `{destination.how_to_register()}`",
            file=sys.stderr,
        )
    for change in result.changes:
        print(change.render())
    if dry_run:
        print("--dry-run: changed nothing.")
    return 0


def ls_main(as_json: bool) -> int:
    automations = asyncio.run(managed_automations())
    if as_json:
        print(json.dumps(automations, indent=2, default=str))
        return 0
    if not automations:
        print(
            f"no automations tagged {MANAGED_TAG!r}: run `python -m migration notifications apply`"
        )
    for a in sorted(automations, key=lambda a: a["name"]):
        trigger = a.get("trigger") or {}
        events = ", ".join(sorted(trigger.get("expect") or []))
        names = (trigger.get("match") or {}).get("prefect.resource.name") or ["any run"]
        state = "enabled" if a.get("enabled") else "PAUSED"
        print(f"{a['name']}  [{state}]  {events}  runs: {', '.join(names)}  "
              f"destinations: {len(a.get('actions') or [])}")  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "notifications",
        help="apply notifications.yaml as Prefect automations (apply [--dry-run]) or list them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["apply", "ls"])
    parser.add_argument(
        "--file", type=Path, default=NOTIFICATIONS_FILE, help="default: %(default)s"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    parser.add_argument(
        "--allow-missing-blocks",
        action="store_true",
        help="warn instead of failing when a destination block is not registered (local stack)",
    )
    parser.add_argument("--json", action="store_true", help="ls: the automations as JSON")
    parser.set_defaults(
        handler=lambda args: (
            ls_main(args.json)
            if args.action == "ls"
            else apply_main(args.file, args.dry_run, args.allow_missing_blocks)
        )
    )
