"""profiles.yml scoped to one target: only that target's block references are resolved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dbt_runtime.invocation import Target
from dbt_runtime.profiles import (
    BlockRef,
    ProfileError,
    block_refs,
    load_profiles,
    missing_block_message,
    profile_targets,
    write_scoped_profiles,
)
from dbt_runtime.project import PROFILE_NAME, PROJECT_DIR


def test_profiles_yml_has_exactly_the_flow_targets() -> None:
    targets = profile_targets(load_profiles(PROJECT_DIR), PROFILE_NAME)
    assert set(targets) == {t.value for t in Target}


def test_local_target_references_no_block(tmp_path: Path) -> None:
    profiles_dir, settings = write_scoped_profiles(PROJECT_DIR, PROFILE_NAME, "local", tmp_path)
    assert block_refs(settings) == set()
    written = yaml.safe_load((profiles_dir / "profiles.yml").read_text())
    assert list(written[PROFILE_NAME]["outputs"]) == ["local"]
    assert "prefect.blocks" not in (profiles_dir / "profiles.yml").read_text()


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_snowflake_targets_reference_only_their_own_blocks(target: str, tmp_path: Path) -> None:
    _, settings = write_scoped_profiles(PROJECT_DIR, PROFILE_NAME, target, tmp_path)
    refs = block_refs(settings)
    assert refs, "Snowflake targets must take every connection value from blocks"
    assert all(ref.name.endswith(f"-{target}") for ref in refs)


def test_snowflake_targets_hold_no_literal_secret() -> None:
    targets = profile_targets(load_profiles(PROJECT_DIR), PROFILE_NAME)
    for name in ("dev", "prod"):
        for key in ("password", "private_key", "private_key_passphrase", "account", "user"):
            value = targets[name].get(key)
            assert value is None or "prefect.blocks" in str(value), (name, key)


def test_unknown_target_names_the_ones_that_exist(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"has no target 'qa'.*dev, local, prod"):
        write_scoped_profiles(PROJECT_DIR, PROFILE_NAME, "qa", tmp_path)


def test_missing_block_message_names_block_and_script() -> None:
    msg = missing_block_message([BlockRef("snowflake-credentials", "wg-dbt-prod")], "prod")
    assert "snowflake-credentials/wg-dbt-prod not found" in msg
    assert "python -m blocks.register_snowflake --target prod" in msg
