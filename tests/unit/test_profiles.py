"""profiles.yml scoped to one target, its one reference parser, and the run's profile: read
once, with every block it references read once, before dbt starts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prefect.client.orchestration
import pytest
import yaml
from prefect.exceptions import ObjectNotFound

from dbt_runtime.invocation import Target
from dbt_runtime.profiles import (
    BlockField,
    BlockRef,
    ProfileError,
    RunProfile,
    VariableRef,
    block_refs,
    load_profiles,
    missing_block_message,
    profile_targets,
    reference,
    references,
    render_settings,
    run_profile,
    scope_to_target,
    secrets_in_environment,
)
from dbt_runtime.project import tenants

# William Grant's project: prefect.yaml's first tenant (not tenant(): settings are read
# per test, and a module-level read would cache them before a fixture sets WG_* variables).
PROJECT_DIR = tenants()[0].project_dir
PROFILE_NAME = tenants()[0].profile_name

CREDENTIALS = BlockRef("snowflake-credentials", "wg-dbt-dev")
CONNECTOR = BlockRef("snowflake-connector", "wg-dbt-dev")


def target_settings(target: str) -> dict[str, Any]:
    return scope_to_target(load_profiles(PROJECT_DIR), PROFILE_NAME, target)[PROFILE_NAME][
        "outputs"
    ][target]


class FakeServer:
    """Prefect's client as read_blocks uses it: registered block documents, reads counted."""

    def __init__(self, blocks: dict[BlockRef, dict[str, Any]]) -> None:
        self.blocks = blocks
        self.reads: list[BlockRef] = []

    def __call__(self) -> FakeServer:  # get_client()
        return self

    async def __aenter__(self) -> FakeServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read_block_document_by_name(self, name: str, block_type: str) -> Any:
        ref = BlockRef(block_type, name)
        self.reads.append(ref)
        if ref not in self.blocks:
            raise ObjectNotFound(http_exc=Exception(f"{ref} not found"))
        return SimpleNamespace(data=self.blocks[ref])


def test_profiles_yml_has_exactly_the_flow_targets() -> None:
    targets = profile_targets(load_profiles(PROJECT_DIR), PROFILE_NAME)
    assert set(targets) == {t.value for t in Target}


def test_a_local_run_writes_only_its_target_and_asks_the_server_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeServer({})
    monkeypatch.setattr(prefect.client.orchestration, "get_client", server)
    profile = asyncio.run(run_profile(load_profiles(PROJECT_DIR), PROFILE_NAME, "local"))
    written = yaml.safe_load((profile.write(tmp_path) / "profiles.yml").read_text())
    assert list(written[PROFILE_NAME]["outputs"]) == ["local"]
    assert "prefect.blocks" not in (tmp_path / "profiles.yml").read_text()
    assert server.reads == []


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_snowflake_targets_reference_only_their_own_blocks(target: str) -> None:
    refs = block_refs(target_settings(target))
    assert refs, "Snowflake targets must take every connection value from blocks"
    assert all(ref.name.endswith(f"-{target}") for ref in refs)


def test_snowflake_targets_hold_no_literal_secret() -> None:
    targets = profile_targets(load_profiles(PROJECT_DIR), PROFILE_NAME)
    for name in ("dev", "prod"):
        for key in ("password", "private_key", "private_key_passphrase", "account", "user"):
            value = targets[name].get(key)
            assert value is None or "prefect.blocks" in str(value), (name, key)


def test_unknown_target_names_the_ones_that_exist() -> None:
    with pytest.raises(ProfileError, match=r"has no target 'qa'.*dev, local, prod"):
        asyncio.run(run_profile(load_profiles(PROJECT_DIR), PROFILE_NAME, "qa"))


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("{{ prefect.blocks.snowflake-credentials.wg-dbt-dev.account }}",
         BlockField(CREDENTIALS, "account")),
        ("{{prefect.blocks.snowflake-connector.wg-dbt-dev.credentials.role}}",
         BlockField(CONNECTOR, "credentials.role")),  # a key path into nested block data
        ("{{ prefect.blocks.snowflake-connector.wg-dbt-dev }}", BlockField(CONNECTOR, "")),
        ("{{ prefect.variables.wg-dev-schema }}", VariableRef("wg-dev-schema")),
        ("{{ env_var('WG_SNOWFLAKE_HOST', '') }}", None),
        ("WG_DEV", None),
        ("db_{{ prefect.variables.suffix }}", None),  # not exactly one reference
    ],
)  # fmt: skip
def test_one_parser_reads_block_fields_and_variables_as_prefect_resolves_them(
    value: str, parsed: BlockField | VariableRef | None
) -> None:
    assert reference(value) == parsed


def test_references_inside_longer_or_nested_values_are_found_too() -> None:
    settings = {
        "database": "db_{{ prefect.variables.suffix }}",
        "hooks": ["{{ prefect.blocks.a.b.c }}"],
    }
    assert references(settings) == [VariableRef("suffix"), BlockField(BlockRef("a", "b"), "c")]


def test_a_runs_profile_reads_each_block_once_and_names_the_script_for_a_missing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = FakeServer({CREDENTIALS: {"account": "wg12345", "user": "DBT_DEV"}})
    monkeypatch.setattr(prefect.client.orchestration, "get_client", server)
    with pytest.raises(ProfileError) as caught:
        asyncio.run(run_profile(load_profiles(PROJECT_DIR), PROFILE_NAME, "dev"))
    assert "block snowflake-connector/wg-dbt-dev not found" in str(caught.value)
    assert "run `python -m blocks.register_snowflake --target dev`" in str(caught.value)
    assert sorted(server.reads, key=str) == sorted(block_refs(target_settings("dev")), key=str)


def test_a_runs_profile_keeps_what_it_read_for_the_guards_but_never_shows_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = {
        "account": "wg12345", "user": "DBT_DEV", "role": "R", "authenticator": "snowflake",
        "password": "s3cr3t-value",  # pragma: allowlist secret
        "private_key": None, "private_key_passphrase": None,
    }  # fmt: skip
    connector = {"database": "D", "warehouse": "W", "schema": "S"}
    server = FakeServer({CREDENTIALS: credentials, CONNECTOR: connector})
    monkeypatch.setattr(prefect.client.orchestration, "get_client", server)
    profile = asyncio.run(run_profile(load_profiles(PROJECT_DIR), PROFILE_NAME, "dev"))
    assert len(server.reads) == 2  # once per block, for the whole run
    assert profile.blocks[CREDENTIALS]["account"] == "wg12345"
    assert "private_key" not in profile.settings  # the password block leaves it unset
    assert "s3cr3t-value" not in repr(profile)
    assert "s3cr3t-value" not in yaml.safe_dump(profile.document())


def test_missing_block_message_names_block_and_script() -> None:
    msg = missing_block_message([BlockRef("snowflake-credentials", "wg-dbt-prod")], "prod")
    assert "snowflake-credentials/wg-dbt-prod not found" in msg
    assert "python -m blocks.register_snowflake --target prod" in msg


# -- secrets reach dbt only as DBT_ENV_SECRET_* (issue 15) -------------------------------------


@pytest.mark.security
def test_secret_fields_are_written_as_dbt_secret_env_references_never_values(
    tmp_path: Path,
) -> None:
    creds = BlockRef("snowflake-credentials", "wg-dbt-dev")
    settings = {
        "type": "snowflake",
        "user": "{{ prefect.blocks.snowflake-credentials.wg-dbt-dev.user }}",
        "password": "{{ prefect.blocks.snowflake-credentials.wg-dbt-dev.password }}",
    }
    canary = "pw-canary-123"  # pragma: allowlist secret
    blocks = {creds: {"user": "WG_DBT_DEV", "password": canary}}
    rendered, secrets = render_settings(settings, blocks, {}, "dev")
    assert rendered["user"] == "WG_DBT_DEV"
    assert rendered["password"] == "{{ env_var('DBT_ENV_SECRET_PASSWORD') }}"
    profile = RunProfile("wg", "dev", settings, blocks, rendered, secrets)
    written = (profile.write(tmp_path / "p") / "profiles.yml").read_text()
    assert canary not in written and "prefect.blocks" not in written
    assert profile.scrub(f"login with {canary} failed") == "login with ***** failed"
    os.environ["PREFECT_BLOCKS_LEFTOVER"] = "x"
    with secrets_in_environment(profile):
        assert os.environ["DBT_ENV_SECRET_PASSWORD"] == canary
        assert "PREFECT_BLOCKS_LEFTOVER" not in os.environ
    assert "DBT_ENV_SECRET_PASSWORD" not in os.environ


def test_a_block_value_holding_jinja_is_refused() -> None:
    settings = {"user": "{{ prefect.blocks.snowflake-credentials.c.user }}"}
    blocks = {BlockRef("snowflake-credentials", "c"): {"user": "{{ env_var('HOME') }}"}}
    with pytest.raises(ProfileError, match="holds a Jinja delimiter"):
        render_settings(settings, blocks, {}, "dev")
