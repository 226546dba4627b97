"""Facts about this repository, read from the files that own them (prefect.yaml first).

The one place the flow's name (and its earlier names) is named, and where a tenant's facts are
derived: a tenant is a folder `tenants/<name>/` (a dbt project) plus the one prefect.yaml
deployment whose `work_pool.job_variables.env` sets WG_TENANT to that folder name. Its project
directory, profile name (dbt_project.yml `profile:`), deployment, concurrency limits and
kept-artifact prefix all follow from those two; no code names a tenant.

Why the deployment's env, and not the flow looking itself up in prefect.yaml by deployment name:
the env reaches the run through the one settings object (WG_TENANT), works for an in-process
run without a Prefect deployment, and dbt_runtime/guards.py already refuses a run whose `env`
job variable differs from its deployment's, so a Custom run cannot pick another tenant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.invocation import Target
from dbt_runtime.settings import env_name, get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
TENANTS_DIR = "tenants"  # <repository>/tenants/<tenant>/ holds each tenant's dbt project
# A tenant name is a folder name that is also safe in block, limit and storage-key names; it may
# not be a target name, which the first tenant's kept runs use as their first key segment.
TENANT_NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
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
    build step `active_step_id(slug)` (migration/deploy_steps.py, migration/scheduler.py: who
    runs the job, recorded on the Prefect server), templated into the schedule's `active`.
    """

    slug: str
    cron: str
    timezone: str
    parameters: dict[str, Any]


def active_step_id(slug: str) -> str:
    """The prefect.yaml build step whose `value` (true/false) is schedule `slug`'s `active`."""
    return f"{slug}-active"


def active_template(slug: str) -> str:
    """Schedule `slug`'s `active` in prefect.yaml: its build step's answer, never a literal."""
    return "{{ " + active_step_id(slug) + ".value }}"


def prefect_config(path: Path = PREFECT_YAML) -> dict[str, Any]:
    """prefect.yaml, parsed once per content (`tenants add` rewrites it within a process)."""
    return _parsed(path.read_text(), str(path))


@cache
def _parsed(text: str, where: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not a prefect.yaml mapping")
    return data


class TenantError(ValueError):
    """prefect.yaml and tenants/ disagree about a tenant; the message names the fix."""


@dataclass(frozen=True)
class Tenant:
    """One tenant: its folder under tenants/ and the prefect.yaml deployment that runs it."""

    name: str
    """The folder under tenants/ (= WG_TENANT in its deployment's env)."""
    deployment: str
    """Its prefect.yaml deployment's name: runs are `dbt_project/<deployment>`."""
    project_dir: Path
    first: bool
    """prefect.yaml's first deployment: the CLI's default tenant, and the one whose runs were
    kept before there were tenants, so its kept runs keep their unprefixed layout."""

    @property
    def full_name(self) -> str:
        """`<flow name>/<deployment name>`, as `prefect deployment run` wants it."""
        return f"{FLOW_NAME}/{self.deployment}"

    @property
    def profile_name(self) -> str:
        """The dbt profile the project reads (dbt_project.yml `profile:`)."""
        return profile_name(self.project_dir)

    @property
    def artifacts_prefix(self) -> str:
        """Where its runs' artifacts and caches live in the artifacts store: `<tenant>/`, or
        nothing for the first tenant (its runs kept at `<target>/<flow run id>/` stay found)."""
        return "" if self.first else f"{self.name}/"

    def artifact_key(self, kind: str, target: str) -> str:
        """A Prefect artifact key of its runs, e.g. `dbt-summary-<deployment>-local` (the first
        tenant's keep their names from before tenants: `dbt-summary-local`)."""
        scope = "" if self.first else f"{self.deployment}-"
        return f"dbt-{kind}-{scope}{target}"


def profile_name(project_dir: Path) -> str:
    """dbt_project.yml's `profile:` of the project in `project_dir`."""
    config = project_dir / "dbt_project.yml"
    try:
        name = (yaml.safe_load(config.read_text()) or {}).get("profile")
    except OSError as exc:
        raise TenantError(f"{config}: cannot read the dbt project ({exc})") from None
    if not name:
        raise TenantError(f"{config} has no `profile:`; name the profile its profiles.yml holds")
    return str(name)


def job_variables(deployment: dict[str, Any]) -> dict[str, Any]:
    """A prefect.yaml deployment entry's `work_pool.job_variables` ({} when it sets none)."""
    return dict((deployment.get("work_pool") or {}).get("job_variables") or {})


def declared_tenant(deployment: dict[str, Any]) -> str | None:
    """The tenant a prefect.yaml deployment entry runs (its env's WG_TENANT), or None."""
    env = job_variables(deployment).get("env") or {}
    value = env.get(env_name("tenant"))
    return str(value) if value else None


def tenant_name_problem(name: str) -> str | None:
    """Why `name` cannot be a tenant's folder name (None: it can)."""
    if not TENANT_NAME.match(name):
        return "use 2-63 lowercase letters, digits and '_', starting with a letter"
    if name in {t.value for t in Target}:
        return "a target name is not a tenant name"
    return None


def tenants(path: Path = PREFECT_YAML) -> tuple[Tenant, ...]:
    """Every tenant, in prefect.yaml's order: exactly one deployment per tenant folder."""
    deployments = prefect_config(path).get("deployments") or []
    if not deployments:
        raise TenantError(f"{path} declares no deployment")
    found: list[Tenant] = []
    for i, entry in enumerate(deployments):
        name = declared_tenant(entry)
        deployment = str(entry.get("name") or "")
        if name is None:
            raise TenantError(
                f"{path}: deployment {deployment!r} sets no work_pool.job_variables.env."
                f"{env_name('tenant')}: name the folder under {TENANTS_DIR}/ it builds"
            )
        if problem := tenant_name_problem(name):
            raise TenantError(f"{path}: deployment {deployment!r}: tenant {name!r}: {problem}")
        if any(t.name == name for t in found):
            raise TenantError(
                f"{path}: tenant {name!r} has more than one deployment; one per tenant"
            )
        project_dir = path.parent / TENANTS_DIR / name
        if not (project_dir / "dbt_project.yml").is_file():
            raise TenantError(
                f"{path}: deployment {deployment!r} runs tenant {name!r}, but "
                f"{TENANTS_DIR}/{name}/dbt_project.yml does not exist"
            )
        found.append(Tenant(name, deployment, project_dir, first=i == 0))
    return tuple(found)


def tenant(name: str | None = None, path: Path = PREFECT_YAML) -> Tenant:
    """The tenant `name`; by default this process's (WG_TENANT, which each deployment sets for
    its runs), else prefect.yaml's first."""
    known = tenants(path)
    name = name or get_settings().tenant
    if not name:
        return known[0]
    for t in known:
        if t.name == name:
            return t
    raise TenantError(
        f"no tenant {name!r} in {path} (tenants: {', '.join(t.name for t in known)}); "
        f"add one with `python -m migration tenants add {name}`"
    )


def deployment_config(path: Path = PREFECT_YAML, tenant_name: str | None = None) -> dict[str, Any]:
    """The prefect.yaml deployment entry of a tenant (default: this process's tenant)."""
    chosen = tenant(tenant_name, path)
    for entry in prefect_config(path).get("deployments") or []:
        if declared_tenant(entry) == chosen.name:
            return dict(entry)
    raise AssertionError("unreachable: tenants() read the same file")  # pragma: no cover


def work_pool_name(path: Path = PREFECT_YAML) -> str:
    """The work pool every tenant's deployment runs on (the platform's one pool)."""
    pools = {str(d["work_pool"]["name"]) for d in prefect_config(path).get("deployments") or []}
    if len(pools) != 1:
        raise TenantError(f"{path}: deployments use work pools {sorted(pools)}; use one")
    return pools.pop()


def entrypoint(path: Path = PREFECT_YAML) -> str:
    return str(deployment_config(path)["entrypoint"])


def project_dir_in_use() -> Path:
    """The dbt project a run builds: its tenant's, or WG_DBT_PROJECT_DIR (a test's copy)."""
    override = get_settings().dbt_project_dir
    return override.resolve() if override else tenant().project_dir


def deployment_full_name(path: Path = PREFECT_YAML, tenant_name: str | None = None) -> str:
    """`<flow name>/<deployment name>`, as `prefect deployment run` wants it."""
    return f"{FLOW_NAME}/{deployment_config(path, tenant_name)['name']}"


def _schedule_specs(entry: dict[str, Any]) -> list[ScheduleSpec]:
    return [
        ScheduleSpec(
            slug=str(s["slug"]),
            cron=str(s["cron"]),
            timezone=str(s.get("timezone", "UTC")),
            parameters=dict(s.get("parameters") or {}),
        )
        for s in entry.get("schedules") or []
    ]


def schedules(path: Path = PREFECT_YAML, tenant_name: str | None = None) -> list[ScheduleSpec]:
    """A tenant's schedules (default: this process's tenant)."""
    return _schedule_specs(deployment_config(path, tenant_name))


def all_schedules(path: Path = PREFECT_YAML) -> dict[str, ScheduleSpec]:
    """slug -> schedule, over every tenant's deployment (slugs are unique across them)."""
    out: dict[str, ScheduleSpec] = {}
    for entry in prefect_config(path).get("deployments") or []:
        for spec in _schedule_specs(dict(entry)):
            if spec.slug in out:
                raise TenantError(f"{path}: schedule slug {spec.slug!r} is declared twice")
            out[spec.slug] = spec
    return out


def source_config(path: Path = PREFECT_YAML) -> dict[str, Any]:
    return dict(prefect_config(path).get("source") or {})
