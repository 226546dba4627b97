"""Register (or rotate) the Snowflake blocks that a profiles.yml target reads.

    WG_SNOWFLAKE_DEV_PASSWORD=... python -m blocks.register_snowflake --target dev
    vault read -field=key secret/wg/dev | python -m blocks.register_snowflake --target dev \\
        --private-key-stdin
    python -m blocks.register_snowflake --target dev --check

Writes a SnowflakeCredentials block (account, user, role and ONE auth method: password, or
key-pair = private key + optional passphrase) and a SnowflakeConnector block (database,
warehouse, schema) that references it. The block names are the ones profiles.yml's target
references (the one place the naming rule lives); runs read the blocks when they start, so
re-running this script rotates a secret for the next run with no code change and no redeploy.
Everything is validated before anything is saved: bad input exits 2 and registers nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from blocks._cli import Save, ServerError, script_main, script_parser
from blocks._inputs import EnvInput, InputError, env_value, read_stdin_secret
from dbt_runtime import project
from dbt_runtime.invocation import Target
from dbt_runtime.profiles import (
    REGISTERED_BY,
    ProfileError,
    RunProfile,
    block_refs,
    load_profiles,
    profile_targets,
    run_profile,
    secrets_in_environment,
)
from dbt_runtime.project import project_dir_in_use, register_command

COMMAND = register_command("snowflake")

CREDENTIALS_TYPE = "snowflake-credentials"  # prefect-snowflake's block type slugs
CONNECTOR_TYPE = "snowflake-connector"
# SnowflakeCredentials.authenticator for each auth method
PASSWORD_AUTH = "snowflake"  # pragma: allowlist secret
KEY_PAIR_AUTH = "snowflake_jwt"
PEM_HEADER = "-----BEGIN PRIVATE KEY-----"  # pragma: allowlist secret (a header, not a key)

# Unquoted Snowflake identifiers; quoted ones (spaces, lower case) are not worth the risk here.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
# <orgname>-<account_name> or a legacy locator (xy12345.eu-west-1.aws), never the full URL.
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
_USER = re.compile(r"[A-Za-z0-9_.@$-]+")


def env_prefix(target: str) -> str:
    return f"WG_SNOWFLAKE_{target.upper()}_"


def inputs_for(target: str) -> dict[str, EnvInput]:
    """Every input of `--target target`, keyed by the block field it fills."""
    p = env_prefix(target)

    def ident(name: str, what: str, example: str) -> EnvInput:
        return EnvInput(
            p + name, f"{what} (unquoted identifier)", pattern=_IDENTIFIER, example=example
        )

    return {
        "account": EnvInput(
            p + "ACCOUNT",
            "Snowflake account identifier (not the URL)",
            pattern=_ACCOUNT,
            example="myorg-williamgrant",
        ),
        "user": EnvInput(
            p + "USER",
            f"the {target} service user",
            pattern=_USER,
            example=f"WG_DBT_{target.upper()}",
        ),
        "role": ident("ROLE", f"the {target} role dbt runs as", f"WG_DBT_{target.upper()}_ROLE"),
        "warehouse": ident("WAREHOUSE", "the warehouse dbt runs on", f"WG_{target.upper()}_WH"),
        "database": ident("DATABASE", "the database dbt builds in", f"WG_{target.upper()}"),
        "schema": ident("SCHEMA", "dbt's default schema (models may override it)", "ANALYTICS"),
        "password": EnvInput(
            p + "PASSWORD",
            "password auth: the user's password (or --password-stdin)",
            secret=True,
            required=False,
        ),
        "private_key": EnvInput(
            p + "PRIVATE_KEY",
            "key-pair auth: the PEM private key, -----BEGIN ... PRIVATE KEY----- "
            "(or --private-key-stdin)",
            secret=True,
            required=False,
        ),
        "private_key_passphrase": EnvInput(
            p + "PRIVATE_KEY_PASSPHRASE",
            "key-pair auth: the passphrase of an encrypted key",
            secret=True,
            required=False,
        ),
    }


@dataclass(frozen=True)
class SnowflakeInputs:
    """Validated values for one target; secrets are left out of repr() so they never print."""

    target: str
    account: str
    user: str
    role: str
    warehouse: str
    database: str
    schema: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)

    @property
    def auth(self) -> str:
        return "key-pair" if self.private_key else "password"


def _check_private_key(pem: str, passphrase: str | None, key: EnvInput, phrase: EnvInput) -> None:
    """Refuse a key dbt-snowflake could not use, naming the variable (never the key)."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not pem.startswith("-----BEGIN") or "PRIVATE KEY-----" not in pem:
        raise InputError(f"{key.name} is not a PEM private key ({PEM_HEADER} ...)")
    try:
        loaded = load_pem_private_key(pem.encode(), passphrase.encode() if passphrase else None)
    except TypeError:  # cryptography says which way round the passphrase is wrong
        if passphrase:
            raise InputError(f"{key.name} is not encrypted: unset {phrase.name}") from None
        raise InputError(f"{key.name} is encrypted: set {phrase.name}") from None
    except ValueError:
        raise InputError(
            f"{key.name} could not be read: corrupt, or {phrase.name} is not its passphrase"
        ) from None
    if not isinstance(loaded, RSAPrivateKey):
        raise InputError(f"{key.name} is not an RSA key: Snowflake key-pair auth needs RSA")


def snowflake_inputs(
    target: str,
    env: Mapping[str, str],
    stdin: IO[str] | None = None,
    stdin_field: str | None = None,
) -> SnowflakeInputs:
    """Read and validate every input of `target`; raise InputError naming the first bad one.

    `stdin_field` ("password" or "private_key") reads that one secret from `stdin` instead.
    """
    specs = inputs_for(target)
    values: dict[str, str | None] = {}
    for name, spec in specs.items():
        multiline = name == "private_key"
        if name == stdin_field:
            if env.get(spec.name, "").strip():
                raise InputError(f"{spec.name} is set and stdin was asked for too: use one")
            assert stdin is not None
            values[name] = read_stdin_secret(stdin, spec, multiline)
        else:
            values[name] = env_value(spec, env, multiline)

    password, key = values["password"], values["private_key"]
    passphrase = values["private_key_passphrase"]
    if password and key:
        raise InputError(
            f"both {specs['password'].name} and {specs['private_key'].name} are set: "
            "a block holds one auth method; unset the one you are not using"
        )
    if not password and not key:
        raise InputError(
            f"no secret given: set {specs['password'].name} (password auth) or "
            f"{specs['private_key'].name} (key-pair auth), or pipe one in with "
            "--password-stdin / --private-key-stdin"
        )
    if password and passphrase:
        raise InputError(
            f"{specs['private_key_passphrase'].name} is set without a private key: "
            f"unset it, or use {specs['private_key'].name}"
        )
    if key:
        _check_private_key(key, passphrase, specs["private_key"], specs["private_key_passphrase"])
    return SnowflakeInputs(target=target, **values)  # type: ignore[arg-type]


# -- block names, from profiles.yml ----------------------------------------------------------


@dataclass(frozen=True)
class BlockNames:
    credentials: str
    connector: str


def snowflake_targets(profiles: dict[str, Any], profile_name: str) -> list[str]:
    """The profiles.yml targets that read Snowflake blocks (dev, prod)."""
    return sorted(
        target
        for target, settings in profile_targets(profiles, profile_name).items()
        if any(ref.block_type == CREDENTIALS_TYPE for ref in block_refs(settings))
    )


def block_names(profiles: dict[str, Any], profile_name: str, target: str) -> BlockNames:
    """The blocks `target` references in profiles.yml: exactly one of each Snowflake type."""
    outputs = profile_targets(profiles, profile_name)
    if target not in snowflake_targets(profiles, profile_name):
        raise ProfileError(
            f"profiles.yml target {target!r} reads no Snowflake blocks "
            f"(targets that do: {', '.join(snowflake_targets(profiles, profile_name))})"
        )
    refs = block_refs(outputs[target])
    names: dict[str, str] = {}
    for block_type in (CREDENTIALS_TYPE, CONNECTOR_TYPE):
        found = sorted({ref.name for ref in refs if ref.block_type == block_type})
        if len(found) != 1:
            raise ProfileError(
                f"profiles.yml target {target!r} must reference exactly one {block_type} "
                f"block, found {found or 'none'}"
            )
        names[block_type] = found[0]
    return BlockNames(credentials=names[CREDENTIALS_TYPE], connector=names[CONNECTOR_TYPE])


def check_separation(inputs: SnowflakeInputs, others: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse to give a target the user or role another target's block already uses.

    `others`: target -> that target's registered credentials (user, role). Separate users and
    roles are what keep the dev schedule from ever acting with prod's privileges.
    """
    specs = inputs_for(inputs.target)
    for other, data in sorted(others.items()):
        for key in ("user", "role"):
            mine = getattr(inputs, key)
            if data.get(key) and str(data[key]).upper() == mine.upper():
                raise InputError(
                    f"{specs[key].name} {mine!r} is also the {key} of target {other!r}: each "
                    "target needs its own Snowflake user and role (runbook/secrets.md)"
                )


# -- Prefect ---------------------------------------------------------------------------------


def _profile() -> tuple[dict[str, Any], str]:

    project_dir = project_dir_in_use()  # the tenant's (WG_TENANT), or WG_DBT_PROJECT_DIR
    return load_profiles(project_dir), project.profile_name(project_dir)


def registered_identities(
    profiles: dict[str, Any], profile_name: str, target: str
) -> dict[str, dict[str, Any]]:
    """user/role of the other Snowflake targets' credentials blocks that exist."""
    from prefect.exceptions import ObjectNotFound
    from prefect_snowflake import SnowflakeCredentials

    found: dict[str, dict[str, Any]] = {}
    for other in snowflake_targets(profiles, profile_name):
        if other == target:
            continue
        try:
            block = SnowflakeCredentials.load(
                block_names(profiles, profile_name, other).credentials
            )
        except (ObjectNotFound, ValueError):
            continue
        found[other] = {"user": block.user, "role": block.role}
    return found


def register(inputs: SnowflakeInputs, names: BlockNames) -> None:
    """Save both blocks (overwrite: re-running rotates). The connector references the saved
    credentials block instead of embedding a copy, so a rotation reaches it too."""
    from prefect_snowflake import SnowflakeConnector, SnowflakeCredentials

    auth: dict[str, Any] = (
        {
            "authenticator": KEY_PAIR_AUTH,
            "private_key": inputs.private_key.encode(),
            "private_key_passphrase": inputs.private_key_passphrase,
        }
        if inputs.private_key
        else {"authenticator": PASSWORD_AUTH, "password": inputs.password}
    )
    SnowflakeCredentials(account=inputs.account, user=inputs.user, role=inputs.role, **auth).save(
        names.credentials, overwrite=True
    )
    credentials = SnowflakeCredentials.load(names.credentials)
    SnowflakeConnector(
        credentials=credentials,
        database=inputs.database,
        warehouse=inputs.warehouse,
        schema=inputs.schema,
    ).save(names.connector, overwrite=True)


def check(target: str, names: BlockNames) -> str:
    """Load the blocks, then `dbt debug --target <target>` through the flow's scoped profile."""
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings
    from prefect_snowflake import SnowflakeConnector, SnowflakeCredentials

    try:
        credentials = SnowflakeCredentials.load(names.credentials)
        connector = SnowflakeConnector.load(names.connector)
    except ValueError as exc:  # Prefect's "Unable to find block document named ..."
        fix = REGISTERED_BY[CREDENTIALS_TYPE].format(target=target)
        raise ServerError(f"{exc}\n  register them: {fix}") from exc
    auth = "key-pair" if credentials.authenticator == KEY_PAIR_AUTH else "password"
    print(
        f"{CREDENTIALS_TYPE}/{names.credentials}: account {credentials.account}, user "
        f"{credentials.user}, role {credentials.role}, {auth} auth\n"
        f"{CONNECTOR_TYPE}/{names.connector}: database {connector.database}, warehouse "
        f"{connector.warehouse}, schema {connector.schema_}",
        flush=True,
    )
    project_dir = project_dir_in_use()
    with tempfile.TemporaryDirectory(prefix="wg-profiles-") as tmp:
        try:
            profile: RunProfile = run_coro_as_sync(
                run_profile(load_profiles(project_dir), project.profile_name(project_dir), target)
            )
        except ProfileError as exc:
            raise ServerError(str(exc)) from exc
        profiles_dir = profile.write(Path(tmp))
        runner = PrefectDbtRunner(
            settings=PrefectDbtSettings(project_dir=project_dir, profiles_dir=profiles_dir),
            raise_on_failure=False,
        )
        # Logs in the temporary directory: a check leaves nothing behind in the project.
        with secrets_in_environment(profile):  # as a run hands them to dbt
            result = runner.invoke(["debug", "--target", target], log_path=str(Path(tmp) / "logs"))
    if not result.success:
        raise ServerError(f"dbt debug --target {target}: FAILED (see the output above)")
    return f"dbt debug --target {target}: OK"


# -- CLI -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    targets = [t.value for t in Target if t is not Target.local]
    parser = script_parser(
        COMMAND,
        __doc__,
        {f"environment, --target {t}:": list(inputs_for(t).values()) for t in targets},
        notes="Exactly one of *_PASSWORD / *_PRIVATE_KEY. A local emulator only: "
        "WG_SNOWFLAKE_HOST, WG_SNOWFLAKE_PORT, WG_SNOWFLAKE_PROTOCOL (read by profiles.yml at "
        "run time, not here).",
    )
    parser.add_argument("--target", required=True, choices=targets, help="profiles.yml target")
    stdin = parser.add_mutually_exclusive_group()
    stdin.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    stdin.add_argument(
        "--private-key-stdin", action="store_true", help="read the PEM private key from stdin"
    )
    stdin.add_argument(
        "--check",
        action="store_true",
        help="register nothing: load the blocks and run `dbt debug --target T` with them",
    )
    return parser


def prepare(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
    target = args.target
    try:
        profiles, profile_name = _profile()
        names = block_names(profiles, profile_name, target)
        if args.check:
            return lambda: check(target, names)
        stdin_field = (
            "password" if args.password_stdin else "private_key" if args.private_key_stdin else None
        )
        inputs = snowflake_inputs(target, env, stdin, stdin_field)
        check_separation(inputs, registered_identities(profiles, profile_name, target))
    except ProfileError as exc:  # profiles.yml cannot name the blocks: nothing to register
        raise InputError(str(exc)) from exc

    def save() -> str:
        register(inputs, names)
        return (
            f"registered {CREDENTIALS_TYPE}/{names.credentials} ({inputs.auth} auth, user "
            f"{inputs.user}, role {inputs.role}) and {CONNECTOR_TYPE}/{names.connector} "
            f"(database {inputs.database}, warehouse {inputs.warehouse}, schema "
            f"{inputs.schema}); the next run of target {target} uses them.\n"
            f"verify: {COMMAND} --target {target} --check"
        )

    return save


main = script_main(build_parser, prepare)


if __name__ == "__main__":
    sys.exit(main())
