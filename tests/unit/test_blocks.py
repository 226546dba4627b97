"""Block registration inputs: env/stdin only, validated before anything is registered."""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from typing import IO

import pytest

from blocks import register_github, register_notifications, register_snowflake
from blocks._cli import EXIT_BAD_INPUT, EXIT_SERVER_ERROR, Save, ServerError, run, script_parser
from blocks._inputs import InputError
from blocks.register_snowflake import (
    BlockNames,
    SnowflakeInputs,
    block_names,
    check_separation,
    inputs_for,
    snowflake_inputs,
    snowflake_targets,
)
from dbt_runtime.artifact_store import register_hint
from dbt_runtime.dbt_cloud import REGISTER_HINT
from dbt_runtime.notification_rules import REGISTER_SCRIPT
from dbt_runtime.profiles import (
    REGISTERED_BY,
    BlockRef,
    ProfileError,
    drop_unset_fields,
    field_refs,
    load_profiles,
)
from dbt_runtime.project import REPO_ROOT, register_command, tenants

# William Grant's project: prefect.yaml's first tenant (not tenant(): settings are read
# per test, and a module-level read would cache them before a fixture sets WG_* variables).
PROJECT_DIR = tenants()[0].project_dir
PROFILE_NAME = tenants()[0].profile_name

FAKE_PASSWORD = "fake-password-not-real"  # pragma: allowlist secret
NOT_A_KEY = "-----BEGIN PRIVATE KEY-----\nnope\n"  # pragma: allowlist secret
BELL_PASSWORD = "abc\x07def"  # pragma: allowlist secret
IDENTITY = {
    "WG_SNOWFLAKE_DEV_ACCOUNT": "myorg-williamgrant",
    "WG_SNOWFLAKE_DEV_USER": "WG_DBT_DEV",
    "WG_SNOWFLAKE_DEV_ROLE": "WG_DBT_DEV_ROLE",
    "WG_SNOWFLAKE_DEV_WAREHOUSE": "WG_DEV_WH",
    "WG_SNOWFLAKE_DEV_DATABASE": "WG_DEV",
    "WG_SNOWFLAKE_DEV_SCHEMA": "ANALYTICS",
}


def pem(passphrase: str | None = None, kind: str = "rsa") -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


# -- reading and validating -----------------------------------------------------------------


def test_password_auth_from_the_environment() -> None:
    inputs = snowflake_inputs("dev", {**IDENTITY, "WG_SNOWFLAKE_DEV_PASSWORD": FAKE_PASSWORD})
    assert inputs.auth == "password" and inputs.password == FAKE_PASSWORD
    assert (inputs.user, inputs.role, inputs.database) == (
        "WG_DBT_DEV",
        "WG_DBT_DEV_ROLE",
        "WG_DEV",
    )


def test_secrets_never_appear_in_repr() -> None:
    inputs = snowflake_inputs("dev", {**IDENTITY, "WG_SNOWFLAKE_DEV_PASSWORD": FAKE_PASSWORD})
    assert FAKE_PASSWORD not in repr(inputs)


def test_key_pair_auth_with_an_encrypted_key() -> None:
    key = pem("fake-passphrase")
    env = {
        **IDENTITY,
        "WG_SNOWFLAKE_DEV_PRIVATE_KEY": key,
        "WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE": "fake-passphrase",  # pragma: allowlist secret
    }
    inputs = snowflake_inputs("dev", env)
    assert inputs.auth == "key-pair" and inputs.private_key == key.strip()
    assert inputs.password is None


def test_password_from_stdin_with_its_trailing_newline_removed() -> None:
    inputs = snowflake_inputs("dev", IDENTITY, io.StringIO(FAKE_PASSWORD + "\n"), "password")
    assert inputs.password == FAKE_PASSWORD


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WG_SNOWFLAKE_DEV_ACCOUNT is not set"),
        ({"WG_SNOWFLAKE_DEV_ROLE": "  "}, "WG_SNOWFLAKE_DEV_ROLE is not set"),
        ({"WG_SNOWFLAKE_DEV_PASSWORD": None}, "no secret given: set WG_SNOWFLAKE_DEV_PASSWORD"),
        (
            {"WG_SNOWFLAKE_DEV_ACCOUNT": "myorg-wg.snowflakecomputing.com/"},
            "WG_SNOWFLAKE_DEV_ACCOUNT 'myorg-wg.snowflakecomputing.com/' is malformed",
        ),
        (
            {"WG_SNOWFLAKE_DEV_SCHEMA": "analytics; drop"},
            "WG_SNOWFLAKE_DEV_SCHEMA 'analytics; drop'",
        ),
        (
            {"WG_SNOWFLAKE_DEV_PRIVATE_KEY": NOT_A_KEY},
            "both WG_SNOWFLAKE_DEV_PASSWORD and WG_SNOWFLAKE_DEV_PRIVATE_KEY are set",
        ),
        (
            {"WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE": "x"},
            "WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE is set without a private key",
        ),
        (
            {"WG_SNOWFLAKE_DEV_PASSWORD": BELL_PASSWORD},
            "WG_SNOWFLAKE_DEV_PASSWORD contains control",
        ),
    ],
)
def test_bad_input_names_the_variable(env: dict[str, str | None], message: str) -> None:
    full = {**IDENTITY, "WG_SNOWFLAKE_DEV_PASSWORD": FAKE_PASSWORD}
    if env == {}:
        full = {}
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    with pytest.raises(InputError) as error:
        snowflake_inputs("dev", full)
    assert message in str(error.value)
    assert BELL_PASSWORD not in str(error.value)  # a secret is never echoed


@pytest.mark.parametrize(
    ("key", "passphrase", "message"),
    [
        ("not a key", None, "WG_SNOWFLAKE_DEV_PRIVATE_KEY is not a PEM private key"),
        (pem("right"), None, "is encrypted: set WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE"),
        (pem("right"), "wrong", "WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE is not its passphrase"),
        (pem(None), "spare", "is not encrypted: unset WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE"),
        (pem(None, kind="ec"), None, "is not an RSA key"),
    ],
)
def test_unusable_private_key_names_the_variable(
    key: str, passphrase: str | None, message: str
) -> None:
    env = {**IDENTITY, "WG_SNOWFLAKE_DEV_PRIVATE_KEY": key}
    if passphrase:
        env["WG_SNOWFLAKE_DEV_PRIVATE_KEY_PASSPHRASE"] = passphrase
    with pytest.raises(InputError, match=message):
        snowflake_inputs("dev", env)


def test_stdin_and_environment_for_the_same_secret_is_refused() -> None:
    env = {**IDENTITY, "WG_SNOWFLAKE_DEV_PASSWORD": FAKE_PASSWORD}
    with pytest.raises(InputError, match="WG_SNOWFLAKE_DEV_PASSWORD is set and stdin"):
        snowflake_inputs("dev", env, io.StringIO("other"), "password")


def test_empty_stdin_is_refused() -> None:
    with pytest.raises(InputError, match="stdin was empty: expected the value of"):
        snowflake_inputs("dev", IDENTITY, io.StringIO("\n"), "password")


def test_each_target_reads_only_its_own_variables() -> None:
    # Exported dev values can never be registered into prod's block by mistake.
    with pytest.raises(InputError, match="WG_SNOWFLAKE_PROD_ACCOUNT is not set"):
        snowflake_inputs("prod", {**IDENTITY, "WG_SNOWFLAKE_DEV_PASSWORD": FAKE_PASSWORD})


def test_dev_may_not_reuse_the_user_or_role_of_prod() -> None:
    inputs = SnowflakeInputs("dev", "a", "WG_DBT_DEV", "SHARED", "w", "d", "s", FAKE_PASSWORD)
    with pytest.raises(InputError, match="WG_SNOWFLAKE_DEV_ROLE 'SHARED' is also the role of"):
        check_separation(inputs, {"prod": {"user": "WG_DBT_PROD", "role": "shared"}})
    check_separation(inputs, {"prod": {"user": "WG_DBT_PROD", "role": "WG_DBT_PROD_ROLE"}})


# -- the CLI --------------------------------------------------------------------------------


def test_help_lists_every_input_of_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        register_snowflake.build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for target in ("dev", "prod"):
        for spec in inputs_for(target).values():
            assert spec.name in out
    for flag in ("--password-stdin", "--private-key-stdin", "--check", "WG_SNOWFLAKE_HOST"):
        assert flag in out


def test_secrets_cannot_be_given_as_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        register_snowflake.main(["--target", "dev", "--password", FAKE_PASSWORD], env=IDENTITY)
    assert exit_.value.code == EXIT_BAD_INPUT


def test_bad_input_exits_2_before_contacting_prefect(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_server(*args: object) -> None:
        raise AssertionError("nothing may be read or registered on bad input")

    monkeypatch.setattr(register_snowflake, "registered_identities", no_server)
    monkeypatch.setattr(register_snowflake, "register", no_server)
    code = register_snowflake.main(["--target", "dev"], env={**IDENTITY}, stdin=io.StringIO())
    assert code == EXIT_BAD_INPUT
    assert "error: no secret given: set WG_SNOWFLAKE_DEV_PASSWORD" in capsys.readouterr().err


# -- block names come from profiles.yml -----------------------------------------------------


def test_block_names_are_the_ones_profiles_yml_references() -> None:
    profiles = load_profiles(PROJECT_DIR)
    assert snowflake_targets(profiles, PROFILE_NAME) == ["dev", "prod"]
    for target in ("dev", "prod"):
        assert block_names(profiles, PROFILE_NAME, target) == BlockNames(
            credentials=f"wg-dbt-{target}", connector=f"wg-dbt-{target}"
        )


def test_a_renamed_block_in_profiles_yml_renames_what_the_script_registers() -> None:
    profiles = copy.deepcopy(load_profiles(PROJECT_DIR))
    dev = profiles[PROFILE_NAME]["outputs"]["dev"]
    for key, value in dev.items():
        if isinstance(value, str):
            dev[key] = value.replace("wg-dbt-dev", "wg-dbt-dev-v2")
    assert block_names(profiles, PROFILE_NAME, "dev").credentials == "wg-dbt-dev-v2"


def test_local_target_has_no_snowflake_blocks_to_register() -> None:
    with pytest.raises(ProfileError, match="target 'local' reads no Snowflake blocks"):
        block_names(load_profiles(PROJECT_DIR), PROFILE_NAME, "local")


def test_every_field_the_profile_reads_exists_on_the_block_classes() -> None:
    from prefect_snowflake import SnowflakeConnector, SnowflakeCredentials

    fields = {
        "snowflake-credentials": set(SnowflakeCredentials.model_fields),
        "snowflake-connector": {"schema", *SnowflakeConnector.model_fields},
    }
    profiles = load_profiles(PROJECT_DIR)
    for target in ("dev", "prod"):
        settings = profiles[PROFILE_NAME]["outputs"][target]
        for key, ref in field_refs(settings).items():
            assert ref.field in fields[ref.block.block_type], (target, key, ref)


# -- one profile for both auth methods ------------------------------------------------------


def test_references_to_unset_block_fields_are_dropped_from_the_scoped_profile() -> None:
    settings = load_profiles(PROJECT_DIR)[PROFILE_NAME]["outputs"]["dev"]
    creds = BlockRef("snowflake-credentials", "wg-dbt-dev")
    conn = BlockRef("snowflake-connector", "wg-dbt-dev")
    password_block = {
        "account": "a", "user": "u", "role": "r", "authenticator": "snowflake",
        "password": "x", "private_key": None, "private_key_passphrase": None,
    }  # fmt: skip
    connector = {"database": "d", "warehouse": "w", "schema": "s"}
    kept = drop_unset_fields(settings, {creds: password_block, conn: connector}, "dev")
    assert "private_key" not in kept and "private_key_passphrase" not in kept
    assert kept["password"] == settings["password"]  # still a reference, never the value
    assert kept["host"] == settings["host"]


def test_a_profile_field_the_block_lacks_is_named() -> None:
    settings = {"password": "{{ prefect.blocks.snowflake-credentials.wg-dbt-dev.pasword }}"}
    with pytest.raises(ProfileError, match="key 'password' reads field 'pasword'"):
        drop_unset_fields(settings, {BlockRef("snowflake-credentials", "wg-dbt-dev"): {}}, "dev")


def test_emulator_endpoint_defaults_to_snowflakes_own() -> None:
    """Without WG_SNOWFLAKE_* set, dbt renders host "" (the account's host), 443, https."""
    from dbt.config.renderer import ProfileRenderer

    settings = load_profiles(PROJECT_DIR)[PROFILE_NAME]["outputs"]["prod"]
    endpoint = {k: settings[k] for k in ("host", "port", "protocol")}
    from dbt_common.context import set_invocation_context

    # dbt reads env_var() from its invocation context: the environment minus any emulator.
    set_invocation_context({k: v for k, v in os.environ.items() if "SNOWFLAKE" not in k})
    rendered = ProfileRenderer({}).render_data(endpoint)
    assert rendered == {"host": "", "port": 443, "protocol": "https"}


# -- GitHub ---------------------------------------------------------------------------------

FAKE_TOKEN = "github_pat_" + "A1" * 20  # pragma: allowlist secret


def test_github_block_name_is_read_from_prefect_yaml() -> None:
    from dbt_runtime.project import source_config

    assert register_github.block_name() == source_config()["credentials_block"]


def test_github_token_from_env_or_stdin() -> None:
    assert register_github.github_token({"WG_GITHUB_TOKEN": FAKE_TOKEN}) == FAKE_TOKEN
    stdin = io.StringIO(FAKE_TOKEN + "\n")
    assert register_github.github_token({}, stdin, from_stdin=True) == FAKE_TOKEN


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WG_GITHUB_TOKEN is not set"),
        ({"WG_GITHUB_TOKEN": "hunter2"}, "WG_GITHUB_TOKEN is malformed"),
    ],
)
def test_github_bad_token_exits_2_naming_the_variable(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register_github.main([], env=env) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "hunter2" not in err


# -- the shared command line (blocks/_cli.py) ---------------------------------------------------

SCRIPTS = ["snowflake", "github", "dbt_cloud", "notifications", "artifacts"]


@pytest.mark.parametrize("kind", SCRIPTS)
def test_each_script_is_the_module_its_command_names_and_edits_no_sys_path(kind: str) -> None:
    module = importlib.import_module(f"blocks.register_{kind}")
    assert module.build_parser().prog == register_command(kind)
    source = (REPO_ROOT / "blocks" / f"register_{kind}.py").read_text()
    assert "sys.path" not in source and "blocks/register_" not in source


def test_every_fix_the_runtime_names_is_a_script_that_exists() -> None:
    fixes = [*REGISTERED_BY.values(), REGISTER_SCRIPT, REGISTER_HINT]
    fixes.append(register_hint("local-file-system/wg-dbt-artifacts"))
    for fix in fixes:
        found = re.search(r"python -m (blocks\.register_\w+)", fix)
        assert found and importlib.util.find_spec(found[1]), fix


def test_scripts_run_as_modules_from_the_repository_root() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blocks.register_github", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "usage: python -m blocks.register_github" in done.stdout
    assert "WG_GITHUB_TOKEN (secret)" in done.stdout


def _parser() -> argparse.ArgumentParser:
    return script_parser("python -m blocks.register_example", None)


def test_run_saves_nothing_when_prepare_refuses_the_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def prepare(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
        raise InputError(f"WG_EXAMPLE is not set (env has {sorted(env)})")

    assert run(_parser(), prepare, [], env={"OTHER": "x"}) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.err == "error: WG_EXAMPLE is not set (env has ['OTHER'])\n"
    assert captured.out == ""


def test_run_prints_what_was_saved_or_exits_1_on_a_server_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def saved(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
        return lambda: "registered example/x"

    def refused() -> str:
        raise ServerError("could not save example/x: 503")

    assert run(_parser(), saved, [], env={}) == 0
    assert capsys.readouterr().out == "registered example/x\n"
    assert run(_parser(), lambda *_: refused, [], env={}) == EXIT_SERVER_ERROR
    assert capsys.readouterr().err == "error: could not save example/x: 503\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["send-test"], "send-test needs the block: <block type>/<block name>"),
        (["send-test", "wg-dbt-oncall"], "'wg-dbt-oncall': expected <block type>/<block name>"),
        (["slack", "--name", "Bad Name"], "--name 'Bad Name': give the block name"),
        (["slack", "--name", "wg-dbt-oncall"], "WG_SLACK_WEBHOOK_URL is not set"),
    ],
)
def test_notifications_bad_input_exits_2_before_contacting_prefect(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register_notifications.main(argv, env={}) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
