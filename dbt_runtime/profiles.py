"""profiles.yml, scoped to the one target a run builds.

prefect-dbt resolves every `{{ prefect.blocks... }}` reference in profiles.yml, so a missing
Snowflake block would fail a DuckDB run too. A run therefore hands the runner a copy of
profiles.yml that holds only the chosen target (still references, never values), and checks
before dbt starts that every block that target references exists.

One profile serves password and key-pair auth: a block leaves the other method's fields unset
(None), and prefect-dbt would hand dbt the string "None" for them (dbt-snowflake then tries to
parse "None" as a private key). fit_to_registered_blocks drops those references from the
scoped copy, so dbt sees the key as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.project import register_command

PROFILES_FILE = "profiles.yml"
_BLOCK_REF = re.compile(r"prefect\.blocks\.([\w-]+)\.([\w-]+)")
_VARIABLE_REF = re.compile(r"prefect\.variables\.([\w-]+)")
# A profile value that is exactly one block field: "{{ prefect.blocks.<type>.<name>.<field> }}".
_FIELD_REF = re.compile(r"^\{\{\s*prefect\.blocks\.([\w-]+)\.([\w-]+)\.([\w.-]+)\s*\}\}$")

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
    """Every `prefect.blocks.<type>.<name>` a target's settings reference."""
    return {BlockRef(t, n) for t, n in _BLOCK_REF.findall(yaml.safe_dump(settings))}


def field_refs(settings: dict[str, Any]) -> dict[str, tuple[BlockRef, str]]:
    """Profile key -> (block, field) for each key whose value is exactly one block field."""
    refs: dict[str, tuple[BlockRef, str]] = {}
    for key, value in settings.items():
        match = _FIELD_REF.match(value) if isinstance(value, str) else None
        if match:
            refs[key] = (BlockRef(match[1], match[2]), match[3])
    return refs


def variable_refs(settings: Any) -> set[str]:
    return set(_VARIABLE_REF.findall(yaml.safe_dump(settings)))


def write_scoped_profiles(
    profiles_dir: Path, profile_name: str, target: str, dest: Path
) -> tuple[Path, dict[str, Any]]:
    """Write the target-scoped profiles.yml into `dest`; return it and the target's settings."""
    scoped = scope_to_target(load_profiles(profiles_dir), profile_name, target)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / PROFILES_FILE).write_text(yaml.safe_dump(scoped, sort_keys=False))
    return dest, scoped[profile_name]["outputs"][target]


def missing_block_message(missing: list[BlockRef], target: str) -> str:
    lines = [f"profiles.yml target {target!r} needs Prefect blocks that do not exist:"]
    for ref in sorted(missing, key=str):
        fix = REGISTERED_BY.get(ref.block_type, "register it").format(target=target)
        lines.append(f"  block {ref} not found: run `{fix}`")
    return "\n".join(lines)


async def read_blocks(refs: set[BlockRef], target: str) -> dict[BlockRef, dict[str, Any]]:
    """The registered data of each block; fail naming the script when any is missing."""
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


async def check_blocks_exist(refs: set[BlockRef], target: str) -> None:
    """Fail before dbt starts when a referenced block is missing, naming the script to run."""
    await read_blocks(refs, target)


def drop_unset_fields(
    settings: dict[str, Any], blocks: dict[BlockRef, dict[str, Any]], target: str
) -> dict[str, Any]:
    """`settings` without the keys whose block field is unset (None) in the registered block.

    Pure: reads only whether a field is None, never copies a value into the profile. A field
    the block does not have at all is a profiles.yml typo and fails here, naming it.
    """
    kept = dict(settings)
    for key, (ref, field) in field_refs(settings).items():
        data = blocks.get(ref)
        if data is None:
            continue
        if field not in data:
            raise ProfileError(
                f"profiles.yml target {target!r} key {key!r} reads field {field!r} of block "
                f"{ref}, which has no such field (it has: {', '.join(sorted(data))})"
            )
        if data[field] is None:
            del kept[key]
    return kept


async def fit_to_registered_blocks(profiles_dir: Path, profile_name: str, target: str) -> None:
    """Check the scoped profiles.yml against the registered blocks, before dbt starts.

    Fails when a block is missing (naming the script that registers it) or a referenced field
    does not exist; drops references to fields the block leaves unset (the other auth method).
    """
    scoped = scope_to_target(load_profiles(profiles_dir), profile_name, target)
    settings = scoped[profile_name]["outputs"][target]
    blocks = await read_blocks(block_refs(settings), target)
    scoped[profile_name]["outputs"][target] = drop_unset_fields(settings, blocks, target)
    (profiles_dir / PROFILES_FILE).write_text(yaml.safe_dump(scoped, sort_keys=False))
