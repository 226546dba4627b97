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

Secrets reach dbt only the way dbt protects them (the Cosmos model: a profile lists its secret
fields and renders them as references, never values). prefect-dbt would export every block
field as `PREFECT_BLOCKS_<...>` for the whole run, where any model's `env_var()` reads it. So
the runtime resolves the references itself: a secret field (SECRET_FIELDS, or one the block's
own schema marks secret) becomes `{{ env_var('DBT_ENV_SECRET_<KEY>') }}` in the written
profile, set only while dbt runs (`secrets_in_environment`); dbt scrubs those values from its
logs and refuses them to model Jinja ("Secret env vars are allowed only in profiles.yml").
Other block fields are written as literal values (refused if they hold Jinja).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.project import register_command
from dbt_runtime.settings import environment_overlay

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


# Block fields that are secrets whatever the block's schema says (dbt adapters' credential keys).
SECRET_FIELDS = frozenset(
    {
        "password",
        "private_key",
        "private_key_passphrase",
        "token",
        "api_key",
        "client_secret",
        "refresh_token",
        "keyfile_json",
    }
)
# dbt's own prefix: scrubbed from logs, refused to models.
SECRET_ENV_PREFIX = "DBT_ENV_SECRET_"  # pragma: allowlist secret
PREFECT_BLOCK_ENV_PREFIX = "PREFECT_BLOCKS_"  # what prefect-dbt exports block values as
MASK = "*****"  # what dbt writes in place of a secret
_JINJA = ("{{", "{%", "{#")


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


async def read_blocks(
    refs: set[BlockRef], target: str
) -> tuple[dict[BlockRef, dict[str, Any]], dict[BlockRef, frozenset[str]]]:
    """The registered data of each block and the fields its schema marks secret; fail naming
    the script when any block is missing."""
    if not refs:  # a DuckDB target: nothing to ask the server
        return {}, {}
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found: dict[BlockRef, dict[str, Any]] = {}
    secret: dict[BlockRef, frozenset[str]] = {}
    missing: list[BlockRef] = []
    async with get_client() as client:
        for ref in refs:
            try:
                document = await client.read_block_document_by_name(ref.name, ref.block_type)
            except ObjectNotFound:
                missing.append(ref)
            else:
                found[ref] = dict(document.data)
                schema = getattr(document, "block_schema", None)
                fields = (schema.fields if schema is not None else {}) or {}
                secret[ref] = frozenset(str(f) for f in fields.get("secret_fields") or ())
    if missing:
        raise ProfileError(missing_block_message(missing, target))
    return found, secret


def is_secret(path: str, schema_secrets: frozenset[str] = frozenset()) -> bool:
    """Whether a block field (key path) is a secret: by name, or as the block's schema says
    (`a.*` in a schema marks everything under `a`)."""
    if path.rsplit(".", 1)[-1] in SECRET_FIELDS or path in schema_secrets:
        return True
    return any(s.endswith(".*") and path.startswith(s[:-1]) for s in schema_secrets)


def secret_env_name(key: str) -> str:
    """The variable a profile key's secret reaches dbt in, e.g. DBT_ENV_SECRET_PASSWORD."""
    return f"{SECRET_ENV_PREFIX}{re.sub(r'[^A-Za-z0-9]', '_', key).upper()}"


def render_settings(
    settings: Mapping[str, Any],
    blocks: Mapping[BlockRef, Mapping[str, Any]],
    schema_secrets: Mapping[BlockRef, frozenset[str]],
    target: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The target's settings as dbt gets them, and the secrets they read from the environment.

    Each key that is exactly a block field: a secret -> `{{ env_var('DBT_ENV_SECRET_<KEY>') }}`
    (its value returned, to be set only while dbt runs); anything else -> the literal value,
    refused if it holds Jinja (a block is data). A block reference inside other text or nested
    data is refused: only a whole value can be rendered safely. Prefect variables are left to
    prefect-dbt, which writes them as literal text."""
    rendered: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    exact = field_refs(settings)
    for key, value in settings.items():
        ref = exact.get(key)
        if ref is None:
            if any(isinstance(r, BlockField) for r in references(value)):
                raise ProfileError(
                    f"profiles.yml target {target!r} key {key!r}: a block reference must be the "
                    "whole value (so a secret can be handed to dbt as a secret)"
                )
            rendered[key] = value
            continue
        data = blocks.get(ref.block)
        if data is None:
            raise ProfileError(f"profiles.yml target {target!r} key {key!r}: {ref.block} not read")
        field_value = block_field_value(data, ref.field)
        if is_secret(ref.field, schema_secrets.get(ref.block, frozenset())):
            secrets[secret_env_name(key)] = str(field_value)
            rendered[key] = f"{{{{ env_var('{secret_env_name(key)}') }}}}"
            continue
        if isinstance(field_value, str) and any(d in field_value for d in _JINJA):
            raise ProfileError(
                f"profiles.yml target {target!r} key {key!r}: block {ref.block} field "
                f"{ref.field!r} holds a Jinja delimiter; block values are data"
            )
        rendered[key] = field_value
    return rendered, secrets


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
    # `settings` with block fields resolved (secrets as DBT_ENV_SECRET_* references).
    rendered: dict[str, Any] | None = field(repr=False, default=None)
    # DBT_ENV_SECRET_<KEY> -> value: set only while dbt runs (`secrets_in_environment`).
    secrets: Mapping[str, str] = field(repr=False, default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The scoped profiles.yml dbt reads: this profile with this one target, no block
        reference left (prefect-dbt then exports nothing), secrets as env_var references."""
        outputs = {self.target: self.settings if self.rendered is None else self.rendered}
        return {self.profile_name: {"target": self.target, "outputs": outputs}}

    def write(self, dest: Path) -> Path:
        """Write profiles.yml into `dest` (dbt's --profiles-dir; made 0700); return `dest`."""
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest.chmod(0o700)
        path = dest / PROFILES_FILE
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(self.document(), sort_keys=False))
        return dest

    def secret_values(self) -> list[str]:
        """What must never be shown: each secret, and each longer line of a multi-line one."""
        values = {v for v in self.secrets.values() if v}
        for value in list(values):
            values.update(line.strip() for line in value.splitlines() if len(line.strip()) >= 8)
        return sorted(values, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """`text` with every secret of this profile masked as dbt masks them."""
        for value in self.secret_values():
            text = text.replace(value, MASK)
        return text


@contextlib.contextmanager
def secrets_in_environment(profile: RunProfile) -> Iterator[None]:
    """The profile's DBT_ENV_SECRET_* variables set while dbt runs, restored after; no
    PREFECT_BLOCKS_* variable (prefect-dbt's unprotected copies) is left in the environment."""
    for key in [k for k in os.environ if k.startswith(PREFECT_BLOCK_ENV_PREFIX)]:
        del os.environ[key]
    with environment_overlay(profile.secrets):
        yield


async def run_profile(profiles: dict[str, Any], profile_name: str, target: str) -> RunProfile:
    """A run's profile from a loaded profiles.yml, before dbt starts: scoped to `target`,
    every block it references read once (a missing one fails naming the script that registers
    it; a field a block lacks fails naming the key), references to unset fields dropped,
    block fields rendered (secrets as DBT_ENV_SECRET_* references, `render_settings`)."""
    scoped = scope_to_target(profiles, profile_name, target)
    settings = scoped[profile_name]["outputs"][target]
    blocks, schema_secrets = await read_blocks(block_refs(settings), target)
    kept = drop_unset_fields(settings, blocks, target)
    rendered, secrets = render_settings(kept, blocks, schema_secrets, target)
    return RunProfile(profile_name, target, kept, blocks, rendered, secrets)
