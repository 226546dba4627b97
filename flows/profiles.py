"""profiles.yml, scoped to the one target a run builds.

prefect-dbt resolves every `{{ prefect.blocks... }}` reference in profiles.yml, so a missing
Snowflake block would fail a DuckDB run too. A run therefore hands the runner a copy of
profiles.yml that holds only the chosen target (still references, never values), and checks
before dbt starts that every block that target references exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROFILES_FILE = "profiles.yml"
_BLOCK_REF = re.compile(r"prefect\.blocks\.([\w-]+)\.([\w-]+)")
_VARIABLE_REF = re.compile(r"prefect\.variables\.([\w-]+)")

# Which script registers a block of each type (the fix an error message names).
REGISTERED_BY = {
    "snowflake-credentials": "python blocks/register_snowflake.py --target {target}",
    "snowflake-connector": "python blocks/register_snowflake.py --target {target}",
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


async def check_blocks_exist(refs: set[BlockRef], target: str) -> None:
    """Fail before dbt starts when a referenced block is missing, naming the script to run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    missing: list[BlockRef] = []
    async with get_client() as client:
        for ref in refs:
            try:
                await client.read_block_document_by_name(ref.name, ref.block_type)
            except ObjectNotFound:
                missing.append(ref)
    if missing:
        raise ProfileError(missing_block_message(missing, target))
