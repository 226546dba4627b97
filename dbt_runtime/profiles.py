"""profiles.yml, scoped to the one target a run builds, and the one parser of its references.

prefect-dbt resolves every `{{ prefect.blocks... }}` reference in profiles.yml, so a missing
Snowflake block would fail a DuckDB run too. A run therefore hands the runner a copy of
profiles.yml that holds only the chosen target (still references, never values). `run_profile`
builds that copy once per run: it reads profiles.yml once, and every block the target
references once, failing before dbt starts when one is missing (naming the script that
registers it). The guards and dbt both use what it read.

One profile serves password and key-pair auth: a block leaves the other method's fields unset
(None), and prefect-dbt would hand dbt the string "None" for them (dbt-snowflake then tries to
parse "None" as a private key). run_profile drops those references from the scoped copy, so dbt
sees the key as absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.project import register_command

PROFILES_FILE = "profiles.yml"
# Prefect's placeholder grammar (prefect.utilities.templating): a block field is
# `prefect.blocks.<type slug>.<document name>.<key path>` (type and name hold no dot; the key
# path may go into nested data), a variable `prefect.variables.<name>`.
_PLACEHOLDER = re.compile(
    r"\{\{\s*prefect\.(?:"
    r"blocks\.(?P<type>[\w-]+)\.(?P<name>[\w-]+)(?:\.(?P<path>[\w.\-\[\]$]+))?"
    r"|variables\.(?P<variable>[\w-]+)"
    r")\s*\}\}"
)

# Which script registers a block of each type (the fix an error message names).
REGISTERED_BY = {
    "snowflake-credentials": register_command("snowflake") + " --target {target}",
    "snowflake-connector": register_command("snowflake") + " --target {target}",
    "github-credentials": register_command("github"),
}


class ProfileError(ValueError):
    """profiles.yml cannot serve the requested target; the message names what to fix."""


@dataclass(frozen=True)
class BlockRef:
    block_type: str
    name: str

    def __str__(self) -> str:
        return f"{self.block_type}/{self.name}"


@dataclass(frozen=True)
class BlockField:
    """`{{ prefect.blocks.<type>.<name>.<field> }}`: one field (key path) of one block."""

    block: BlockRef
    field: str  # "" when the reference names the whole block


@dataclass(frozen=True)
class VariableRef:
    """`{{ prefect.variables.<name> }}`."""

    name: str


Reference = BlockField | VariableRef


def _parsed(match: re.Match[str]) -> Reference:
    if match["variable"]:
        return VariableRef(match["variable"])
    return BlockField(BlockRef(match["type"], match["name"]), match["path"] or "")


def references(value: Any) -> list[Reference]:
    """Every block or variable reference anywhere in a value (nested mappings and lists too)."""
    if isinstance(value, str):
        return [_parsed(m) for m in _PLACEHOLDER.finditer(value)]
    if isinstance(value, Mapping):
        return [ref for item in value.values() for ref in references(item)]
    if isinstance(value, list | tuple):
        return [ref for item in value for ref in references(item)]
    return []


def reference(value: Any) -> Reference | None:
    """The reference a profile value is, exactly (nothing around it); else None."""
    match = _PLACEHOLDER.fullmatch(value.strip()) if isinstance(value, str) else None
    return _parsed(match) if match else None


def block_field_value(data: Mapping[str, Any], path: str) -> Any:
    """A block's field by key path (`a.b` goes into nested data); KeyError when it has none."""
    value: Any = data
    for key in path.split(".") if path else ():
        if not isinstance(value, Mapping) or key not in value:
            raise KeyError(path)
        value = value[key]
    return value


def load_profiles(profiles_dir: Path) -> dict[str, Any]:
    path = profiles_dir / PROFILES_FILE
    if not path.is_file():
        raise ProfileError(f"{path} not found")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ProfileError(f"{path} holds no dbt profile")
    return data


def profile_targets(profiles: dict[str, Any], profile_name: str) -> dict[str, Any]:
    """The `outputs` of one profile: target name -> connection settings."""
    try:
        outputs = profiles[profile_name]["outputs"]
    except (KeyError, TypeError):
        raise ProfileError(f"profiles.yml has no profile {profile_name!r} with outputs") from None
    return dict(outputs)


def scope_to_target(profiles: dict[str, Any], profile_name: str, target: str) -> dict[str, Any]:
    """profiles.yml reduced to `target`, so only that target's references get resolved."""
    outputs = profile_targets(profiles, profile_name)
    if target not in outputs:
        raise ProfileError(
            f"profiles.yml profile {profile_name!r} has no target {target!r} "
            f"(it has: {', '.join(sorted(outputs))})"
        )
    return {profile_name: {"target": target, "outputs": {target: outputs[target]}}}


def block_refs(settings: Any) -> set[BlockRef]:
    """Every block a target's settings reference."""
    return {ref.block for ref in references(settings) if isinstance(ref, BlockField)}


def field_refs(settings: Mapping[str, Any]) -> dict[str, BlockField]:
    """Profile key -> the block field, for each key whose value is exactly one block field."""
    return {
        key: ref
        for key, value in settings.items()
        if isinstance(ref := reference(value), BlockField)
    }


def variable_refs(settings: Any) -> set[str]:
    """Every Prefect variable a target's settings reference."""
    return {ref.name for ref in references(settings) if isinstance(ref, VariableRef)}


def missing_block_message(missing: list[BlockRef], target: str) -> str:
    lines = [f"profiles.yml target {target!r} needs Prefect blocks that do not exist:"]
    for ref in sorted(missing, key=str):
        fix = REGISTERED_BY.get(ref.block_type, "register it").format(target=target)
        lines.append(f"  block {ref} not found: run `{fix}`")
    return "\n".join(lines)


async def read_blocks(refs: set[BlockRef], target: str) -> dict[BlockRef, dict[str, Any]]:
    """The registered data of each block; fail naming the script when any is missing."""
    if not refs:  # a DuckDB target: nothing to ask the server
        return {}
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found: dict[BlockRef, dict[str, Any]] = {}
    missing: list[BlockRef] = []
    async with get_client() as client:
        for ref in refs:
            try:
                document = await client.read_block_document_by_name(ref.name, ref.block_type)
            except ObjectNotFound:
                missing.append(ref)
            else:
                found[ref] = dict(document.data)
    if missing:
        raise ProfileError(missing_block_message(missing, target))
    return found


def drop_unset_fields(
    settings: Mapping[str, Any], blocks: Mapping[BlockRef, Mapping[str, Any]], target: str
) -> dict[str, Any]:
    """`settings` without the keys whose block field is unset (None) in the registered block.

    Pure: reads only whether a field is None, never copies a value into the profile. A field
    the block does not have at all is a profiles.yml typo and fails here, naming it.
    """
    kept = dict(settings)
    for key, ref in field_refs(settings).items():
        data = blocks.get(ref.block)
        if data is None:
            continue
        try:
            value = block_field_value(data, ref.field)
        except KeyError:
            raise ProfileError(
                f"profiles.yml target {target!r} key {key!r} reads field {ref.field!r} of block "
                f"{ref.block}, which has no such field (it has: {', '.join(sorted(data))})"
            ) from None
        if value is None:
            del kept[key]
    return kept


@dataclass(frozen=True)
class RunProfile:
    """profiles.yml as one run uses it: scoped to its target, checked against the blocks.

    Built once per run (`run_profile`); the guards read the warehouse address from it and dbt
    gets it written out (`write`). `settings` still holds references, never secret values.
    """

    profile_name: str
    target: str
    settings: dict[str, Any]
    # The registered data of every block `settings` references, as read once for this run.
    # It holds secrets: kept out of repr so no log line or traceback ever shows them.
    blocks: Mapping[BlockRef, Mapping[str, Any]] = field(repr=False, default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The scoped profiles.yml: this profile with this one target."""
        return {self.profile_name: {"target": self.target, "outputs": {self.target: self.settings}}}

    def write(self, dest: Path) -> Path:
        """Write profiles.yml into `dest` (dbt's --profiles-dir); return `dest`."""
        dest.mkdir(parents=True, exist_ok=True)
        (dest / PROFILES_FILE).write_text(yaml.safe_dump(self.document(), sort_keys=False))
        return dest


async def run_profile(profiles: dict[str, Any], profile_name: str, target: str) -> RunProfile:
    """A run's profile from a loaded profiles.yml, before dbt starts: scoped to `target`,
    every block it references read once (a missing one fails naming the script that registers
    it; a field a block lacks fails naming the key), references to unset fields dropped."""
    scoped = scope_to_target(profiles, profile_name, target)
    settings = scoped[profile_name]["outputs"][target]
    blocks = await read_blocks(block_refs(settings), target)
    return RunProfile(profile_name, target, drop_unset_fields(settings, blocks, target), blocks)
