"""Every knob of the runtime and its tooling: one object, one env prefix (`WG_`), read once.

Nothing else reads the environment for configuration. Each field's description is what the
README's knob table says (tests/unit/test_settings.py keeps them in step). dbt's own
`env_var()` calls in a tenant's profiles.yml (e.g. WG_DUCKDB_PATH) are dbt's configuration, not
these knobs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "WG_"


class Settings(BaseSettings):
    """The runtime's configuration, from `WG_<FIELD>` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    artifacts_block: str = Field(
        default="local-file-system/wg-dbt-artifacts",
        description="The storage block that keeps each run's dbt artifacts, "
        "`<block type slug>/<block name>`.",
    )
    dbt_cloud_block: str = Field(
        default="wg-dbt-cloud",
        description="The DbtCloudCredentials block the parity check and job import read.",
    )
    tenant: str = Field(
        default="",
        description="The tenant (folder under tenants/) this process builds; each prefect.yaml "
        "deployment sets it for its runs; unset: prefect.yaml's first deployment's.",
    )
    dbt_project_dir: Path | None = Field(
        default=None,
        description="Build this copy of the dbt project instead of the repository's "
        "(tests break models in a copy).",
    )
    repository_url: str = Field(
        default="",
        description="The git URL the deployment's git_clone pull step clones instead of "
        "prefect.yaml's GitHub repository (the local stack's file:// URL).",
    )
    prefect_port: int = Field(
        default=4200, description="The port of the local Prefect server `make run` starts."
    )
    # Each poll costs the local server about 60 ms of CPU (it records the poll): at 1 s an idle
    # stack kept 10% of a core busy, at 2 s 7% (measured 2026-11-30), for half a second more
    # between trigger and start on average.
    worker_query_seconds: float = Field(
        default=2.0,
        description="How often the local worker asks the server for runs "
        "(Prefect's default is 10 s).",
    )
    concurrency_lease_seconds: float = Field(
        default=90.0,
        ge=60,  # the Prefect server's bounds for a lease
        le=86400,
        description="How long a run's hold on its target's concurrency slot lasts unless the run "
        "renews it (guards.py renews it several times per lease): a run already waiting when "
        "the holder is killed gets the slot this long, plus the server's 15 s check, after it "
        "died (a run starting later takes it back at once). Between 60 and 86400.",
    )
    progress_interval_seconds: float = Field(
        default=10.0, description="How often a flow run logs dbt's node progress."
    )
    runtime_dir: Path | None = Field(
        default=None,
        description="The worker's private directory (0700, owner checked) for project links "
        "and fetched runs; unset: `wg-dbt-<uid>` in the system temp directory.",
    )
    state_root: Path | None = Field(
        default=None,
        description="The one directory under which a `state` parameter may name a "
        "directory; unset: `state/` in the runtime directory.",
    )


# Settings that choose code, the project or paths: the deployment and the worker's own
# environment set them, never a run's `env` job variable (dbt_runtime/guards.py refuses them).
# A run's `env` may set only RUN_ENV_ALLOWED (runbook/secrets.md says why).
RUN_ENV_ALLOWED = frozenset({"WG_PROGRESS_INTERVAL_SECONDS"})


@cache
def get_settings() -> Settings:
    """The settings, read from the environment once per process."""
    return Settings()


def env_name(field: str) -> str:
    """The environment variable that sets a knob, e.g. `artifacts_block` -> WG_ARTIFACTS_BLOCK."""
    if field not in Settings.model_fields:
        raise KeyError(f"no setting {field!r}")
    return f"{ENV_PREFIX}{field.upper()}"


def default(field: str) -> object:
    """A knob's default, as the Settings class declares it."""
    return Settings.model_fields[field].default


@contextlib.contextmanager
def environment_overlay(values: Mapping[str, str]) -> Iterator[None]:
    """`values` set in os.environ for the block, each key put back as it was after (unset when
    it was unset): what a run or a command lends its environment, it gets back."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
