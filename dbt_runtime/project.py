"""Facts about this repository, read from the files that own them (prefect.yaml first).

The one place the flow's name (and its earlier names), the tenant project and its profile are
named.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
PROJECT_DIR = REPO_ROOT / "tenants" / "dbt_williamgrant"
PROFILE_NAME = "dbt_williamgrant"
TARGET_DIR = "target"  # dbt_project.yml target-path
DBT_CLOUD_EXPORT = REPO_ROOT / "migration" / "dbt_cloud_export" / "jobs.json"
# The flow is the code, the same for every tenant; a deployment (prefect.yaml `name`, the tenant)
# is its configuration, so runs are `<FLOW_NAME>/<deployment>`. The name is the function's own:
# `uvx prefect-cloud deploy` names the flow after the function in the entrypoint, while
# `prefect deploy` takes @flow(name=...) and would otherwise turn `_` into `-`. Both paths must
# land on the same flow (tests/integration/test_prefect_cloud_quickstart.py).
FLOW_NAME = "dbt_project"
# Earlier names of the flow: kept runs recorded under them stay findable (`prod:last-success`,
# parity `latest:TARGET`). Newest last.
LEGACY_FLOW_NAMES = ("dbt-williamgrant",)


def register_command(kind: str) -> str:
    """How an operator runs the script that registers `kind`'s blocks (blocks/register_<kind>.py),
    from the repository root; every message that names the fix takes the command from here."""
    return f"python -m blocks.register_{kind}"


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule as prefect.yaml declares it.

    Whether it is active is not prefect.yaml's to say: it is the deploy-time answer of the
    build step `active_step_id(slug)` (migration/scheduler.py: who runs the job, recorded on
    the Prefect server), templated into the schedule's `active`.
    """

    slug: str
    cron: str
    timezone: str
    parameters: dict[str, Any]


def active_step_id(slug: str) -> str:
    """The prefect.yaml build step whose stdout (`true`/`false`) is schedule `slug`'s `active`."""
    return f"{slug}-active"


@cache
def prefect_config(path: Path = PREFECT_YAML) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a prefect.yaml mapping")
    return data


def deployment_config(path: Path = PREFECT_YAML) -> dict[str, Any]:
    """The one deployment prefect.yaml declares."""
    deployments = prefect_config(path).get("deployments") or []
    if len(deployments) != 1:
        raise ValueError(f"{path} must declare exactly one deployment, found {len(deployments)}")
    return dict(deployments[0])


def work_pool_name(path: Path = PREFECT_YAML) -> str:
    return str(deployment_config(path)["work_pool"]["name"])


def entrypoint(path: Path = PREFECT_YAML) -> str:
    return str(deployment_config(path)["entrypoint"])


def project_dir_in_use() -> Path:
    """The dbt project a run builds: this repository's, or WG_DBT_PROJECT_DIR (a test's copy)."""
    override = get_settings().dbt_project_dir
    return override.resolve() if override else PROJECT_DIR


def deployment_full_name(path: Path = PREFECT_YAML) -> str:
    """`<flow name>/<deployment name>`, as `prefect deployment run` wants it."""
    return f"{FLOW_NAME}/{deployment_config(path)['name']}"


def schedules(path: Path = PREFECT_YAML) -> list[ScheduleSpec]:
    return [
        ScheduleSpec(
            slug=str(s["slug"]),
            cron=str(s["cron"]),
            timezone=str(s.get("timezone", "UTC")),
            parameters=dict(s.get("parameters") or {}),
        )
        for s in deployment_config(path).get("schedules") or []
    ]


def source_config(path: Path = PREFECT_YAML) -> dict[str, Any]:
    return dict(prefect_config(path).get("source") or {})
