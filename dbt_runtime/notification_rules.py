"""notifications.yaml: who hears about which runs (the rules; migration/notifications.py turns
them into Prefect automations, `python -m blocks.register_notifications` registers their
destinations).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.invocation import Target
from dbt_runtime.notify import WARNED_EVENT
from dbt_runtime.project import REPO_ROOT, register_command

NOTIFICATIONS_FILE = REPO_ROOT / "notifications.yaml"
NAME_PREFIX = "wg-notify/"  # an automation per rule: wg-notify/<rule>
REGISTER_SCRIPT = register_command("notifications")
# block type slug -> the blocks.register_notifications sub-command that creates it
BLOCK_KINDS = {
    "slack-webhook": "slack",
    "sendgrid-email": "email",
    "custom-webhook": "webhook",
}
RULE_KEYS = {"name", "targets", "on", "notify", "enabled", "description"}


class Outcome(StrEnum):
    """What happened to a run; the words a rule's `on:` list uses."""

    failed = "failed"
    """The flow failed: dbt errors or test failures, a bad parameter, a missing block."""
    crashed = "crashed"
    """The run's process or infrastructure died (also: a pull step failed before the flow)."""
    timed_out = "timed_out"
    """The run exceeded its `timeout_seconds` (Prefect state TimedOut)."""
    cancelled = "cancelled"
    """Someone cancelled the run."""
    completed = "completed"
    """The run succeeded (a run whose dbt nodes warned is also `warned`)."""
    warned = "warned"
    """dbt tests or source freshness warned, the run still succeeded (dbt_runtime/notify.py)."""

    @property
    def event(self) -> str:
        if self is Outcome.warned:
            return WARNED_EVENT
        state = {"timed_out": "TimedOut"}.get(self.value, self.value.capitalize())
        return f"prefect.flow-run.{state}"


class NotificationsFileError(ValueError):
    """notifications.yaml is not valid; the message names the rule and key to fix."""


class MissingBlocks(RuntimeError):
    """Destinations that are not registered on the server; the message says how to add them."""


@dataclass(frozen=True)
class Destination:
    """A Prefect notification block, by type slug and name."""

    block_type: str
    block_name: str

    @property
    def ref(self) -> str:
        return f"{self.block_type}/{self.block_name}"

    def how_to_register(self) -> str:
        kind = BLOCK_KINDS.get(self.block_type, "<kind>")
        return f"{REGISTER_SCRIPT} {kind} --name {self.block_name}"


@dataclass(frozen=True)
class Rule:
    """One entry of notifications.yaml."""

    name: str
    targets: tuple[str, ...]  # empty: every target
    on: tuple[Outcome, ...]
    notify: tuple[Destination, ...]
    enabled: bool = True
    description: str = ""

    @property
    def automation_name(self) -> str:
        return f"{NAME_PREFIX}{self.name}"


def _targets() -> list[str]:

    return [t.value for t in Target]


def _as_list(rule: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NotificationsFileError(f"rule {rule!r}: `{key}` must be a list of names")
    return value


def parse_rule(raw: Any, index: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise NotificationsFileError(f"rules[{index}]: expected a mapping with name/on/notify")
    # YAML 1.1 reads a bare `on:` key as the boolean true (as in GitHub Actions files).
    raw = {("on" if key is True else key): value for key, value in raw.items()}
    name = raw.get("name")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise NotificationsFileError(
            f"rules[{index}]: `name` must be letters, digits, '-' or '_' (got {name!r})"
        )
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise NotificationsFileError(
            f"rule {name!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(RULE_KEYS)}"
        )
    targets = _as_list(name, "targets", raw.get("targets") or [])
    bad = [t for t in targets if t not in _targets()]
    if bad:
        raise NotificationsFileError(
            f"rule {name!r}: target(s) {bad} unknown; targets are {', '.join(_targets())}"
        )
    outcomes = []
    for word in _as_list(name, "on", raw.get("on")):
        try:
            outcomes.append(Outcome(word))
        except ValueError:
            allowed = ", ".join(o.value for o in Outcome)
            raise NotificationsFileError(
                f"rule {name!r}: `on: {word}` is not one of: {allowed}"
            ) from None
    destinations = []
    for ref in _as_list(name, "notify", raw.get("notify")):
        block_type, sep, block_name = ref.partition("/")
        if not sep or not block_type or not block_name:
            raise NotificationsFileError(
                f"rule {name!r}: destination {ref!r} must be <block type>/<block name>, "
                "e.g. slack-webhook/wg-dbt-oncall"
            )
        destinations.append(Destination(block_type, block_name))
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise NotificationsFileError(f"rule {name!r}: `enabled` must be true or false")
    return Rule(
        name=name,
        targets=tuple(targets),
        on=tuple(dict.fromkeys(outcomes)),
        notify=tuple(dict.fromkeys(destinations)),
        enabled=enabled,
        description=str(raw.get("description") or ""),
    )


def load_rules(path: Path = NOTIFICATIONS_FILE) -> list[Rule]:
    """The rules of a notifications file, validated; errors name the file and the rule."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NotificationsFileError(f"{path} not found") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise NotificationsFileError(f"{path}: expected a mapping with a `rules:` list")
    try:
        rules = [parse_rule(raw, i) for i, raw in enumerate(data["rules"])]
    except NotificationsFileError as exc:
        raise NotificationsFileError(f"{path}: {exc}") from None
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise NotificationsFileError(f"{path}: rule name {rule.name!r} is used twice")
        seen.add(rule.name)
    return rules
