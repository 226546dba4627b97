"""`python -m migration tenants ls|add NAME`: the tenants this repository runs, and a new one.

A tenant is a folder `tenants/<NAME>/` (a dbt project whose profiles.yml offers the platform's
targets dev, prod and local) plus its deployment entry in prefect.yaml (dbt_runtime/project.py).
`add` checks the folder, then appends to prefect.yaml what the tenant needs and nothing else:
- its deployment, shaped like the first tenant's (entrypoint, parameter defaults, work pool,
  image, the artifacts-block env), with `WG_TENANT: NAME`, the one fact tying it to the folder;
- its schedules (`--schedule SLUG TARGET CRON`), each `active` templated from a
  `migration.deploy_steps.schedule_active` build step added to prefect.yaml's top-level
  `build:` (a deployment's own `build:` would replace the shared steps, not add to them);
and prints the blocks its profiles.yml names, with the command that registers each. The text is
appended, not re-dumped, so prefect.yaml keeps its comments; the result is read back and checked
the way every other command reads it.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.invocation import Target
from dbt_runtime.profiles import (
    REGISTERED_BY,
    ProfileError,
    block_refs,
    load_profiles,
    profile_targets,
)
from dbt_runtime.project import (
    PREFECT_YAML,
    TENANTS_DIR,
    TenantError,
    active_step_id,
    active_template,
    all_schedules,
    declared_tenant,
    prefect_config,
    profile_name,
    tenant_name_problem,
    tenants,
)
from dbt_runtime.settings import env_name

DEPLOYMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
SLUG = re.compile(r"^[a-z][a-z0-9-]{1,60}$")
SCHEDULER_STEP = "migration.deploy_steps.schedule_active"


@dataclass(frozen=True)
class ScheduleArg:
    slug: str
    target: str
    cron: str


@dataclass(frozen=True)
class Scaffold:
    """What `tenants add` writes and tells the operator."""

    prefect_yaml: str  # the new file text
    deployment: str
    blocks: tuple[tuple[str, str], ...]  # (block `<type>/<name>`, command that registers it)


def default_deployment_name(tenant: str) -> str:
    """`dbt_shop` -> `shop`: the deployment (and so limit) name a tenant gets unless told."""
    return tenant.removeprefix("dbt_").replace("_", "-")


def folder_problems(project_dir: Path) -> list[str]:
    """Why `project_dir` is not yet a tenant folder (empty: it is)."""
    where = f"{TENANTS_DIR}/{project_dir.name}"
    if not (project_dir / "dbt_project.yml").is_file():
        return [f"{where}/dbt_project.yml not found: a tenant is a dbt project in that folder"]
    try:
        profile = profile_name(project_dir)
        targets = profile_targets(load_profiles(project_dir), profile)
    except (TenantError, ProfileError, OSError, ValueError) as exc:
        return [f"{where}: {exc}"]
    missing = [t.value for t in Target if t.value not in targets]
    if missing:
        return [
            f"{where}/profiles.yml profile {profile!r} has no target {', '.join(missing)}: "
            f"every tenant offers the platform's targets {', '.join(t.value for t in Target)}"
        ]
    return []


def tenant_blocks(project_dir: Path) -> dict[str, set[str]]:
    """`<type>/<name>` of each block the tenant's profiles.yml reads -> its targets."""
    targets = profile_targets(load_profiles(project_dir), profile_name(project_dir))
    found: dict[str, set[str]] = {}
    for target, settings in targets.items():
        for ref in block_refs(settings):
            found.setdefault(f"{ref.block_type}/{ref.name}", set()).add(target)
    return found


def shared_blocks(new: dict[str, set[str]], others: dict[str, dict[str, set[str]]]) -> list[str]:
    """Blocks the new tenant would share with another tenant (pure): least privilege means
    each tenant has its own credentials."""
    return [
        f"{block} (also read by tenant {owner})"
        for owner, blocks in sorted(others.items())
        for block in sorted(set(new) & set(blocks))
    ]


def deployment_entry(
    name: str, deployment: str, template: dict[str, Any], schedules: list[ScheduleArg]
) -> dict[str, Any]:
    """The new tenant's prefect.yaml entry, shaped like `template` (the first tenant's)."""
    work_pool = copy.deepcopy(template["work_pool"])
    env = dict((work_pool.get("job_variables") or {}).get("env") or {})
    env[env_name("tenant")] = name
    work_pool.setdefault("job_variables", {})["env"] = env
    entry: dict[str, Any] = {
        "name": deployment,
        "description": f"dbt Core for {TENANTS_DIR}/{name}.",
        "entrypoint": template["entrypoint"],
        "enforce_parameter_schema": template.get("enforce_parameter_schema", True),
        "tags": ["dbt", deployment],
        "parameters": dict(template.get("parameters") or {}),
        "work_pool": work_pool,
    }
    if schedules:
        entry["schedules"] = [
            {
                "slug": s.slug,
                "cron": s.cron,
                "timezone": "UTC",
                "active": active_template(s.slug),
                "parameters": {"command": "build", "target": s.target},
            }
            for s in schedules
        ]
    return entry


def _dump(data: Any, indent: str) -> str:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
    return "".join(f"{indent}{line}\n" if line else "\n" for line in text.splitlines())


def scheduler_steps(slugs: list[str]) -> str:
    """The build steps whose value is each schedule's `active` (migration/deploy_steps.py)."""
    steps = [{SCHEDULER_STEP: {"id": active_step_id(slug), "slug": slug}} for slug in slugs]
    return _dump(steps, "  ") if steps else ""


def insert_entry(text: str, entry: dict[str, Any], steps: str) -> str:
    """prefect.yaml `text` with `steps` after the last scheduler build step (or at the end of
    `build:`) and `entry` appended to `deployments:`, which must be the file's last key."""
    lines = text.splitlines(keepends=True)
    top_level = [i for i, line in enumerate(lines) if re.match(r"^[A-Za-z_-]+:", line)]
    keys = [lines[i].split(":", 1)[0] for i in top_level]
    if not keys or keys[-1] != "deployments":
        raise TenantError("prefect.yaml: `deployments:` must be the last top-level key")
    if steps:
        if "build" not in keys:
            raise TenantError("prefect.yaml has no top-level `build:` for the scheduler steps")
        start = top_level[keys.index("build")]
        end = top_level[keys.index("build") + 1]
        scheduler = [i for i in range(start, end) if SCHEDULER_STEP in lines[i]]
        if scheduler:  # after the last scheduler step and its own keys (indented deeper)
            at = scheduler[-1] + 1
            while at < end and lines[at].startswith("    "):
                at += 1
        else:  # after the last step line of the list, before trailing comments/blank lines
            at = max(i for i in range(start, end) if lines[i].startswith("  ")) + 1
            while lines[at - 1].lstrip().startswith("#"):
                at -= 1
        lines[at:at] = [steps]
    body = "".join(lines)
    if not body.endswith("\n"):
        body += "\n"
    return body + _dump([entry], "  ")


def scaffold(
    name: str,
    deployment: str | None = None,
    schedules: list[ScheduleArg] | None = None,
    path: Path = PREFECT_YAML,
) -> Scaffold:
    """Check tenant `name`'s folder and prefect.yaml; the new prefect.yaml text (not written)."""
    schedules = schedules or []
    if problem := tenant_name_problem(name):
        raise TenantError(f"tenant name {name!r}: {problem} (it is the folder under tenants/)")
    known = tenants(path)
    if any(t.name == name for t in known):
        raise TenantError(f"{path.name} already has a deployment for tenant {name!r}")
    project_dir = path.parent / TENANTS_DIR / name
    if problems := folder_problems(project_dir):
        raise TenantError("; ".join(problems))
    deployment = deployment or default_deployment_name(name)
    if not DEPLOYMENT_NAME.match(deployment):
        raise TenantError(
            f"--deployment {deployment!r}: use lowercase letters, digits and '-' (it names the "
            "deployment and the concurrency limits dbt-<deployment>-target-<target>)"
        )
    if any(t.deployment == deployment for t in known):
        raise TenantError(f"--deployment {deployment!r}: {path.name} already has that deployment")
    taken = all_schedules(path)
    for s in schedules:
        if not SLUG.match(s.slug):
            raise TenantError(f"--schedule {s.slug!r}: a slug is lowercase letters, digits, '-'")
        if s.slug in taken or [x.slug for x in schedules].count(s.slug) > 1:
            raise TenantError(f"--schedule {s.slug!r}: that slug is already declared")
        if s.target not in {t.value for t in Target}:
            raise TenantError(
                f"--schedule {s.slug}: target {s.target!r} is not one of "
                f"{', '.join(t.value for t in Target)}"
            )
    blocks = tenant_blocks(project_dir)
    others = {t.name: tenant_blocks(t.project_dir) for t in known}
    if shared := shared_blocks(blocks, others):
        raise TenantError(
            f"{TENANTS_DIR}/{name}/profiles.yml reads blocks another tenant reads: "
            f"{'; '.join(shared)}; give each tenant its own blocks (least privilege)"
        )
    template = next(
        dict(d) for d in prefect_config(path)["deployments"] if declared_tenant(d) == known[0].name
    )
    entry = deployment_entry(name, deployment, template, schedules)
    text = insert_entry(path.read_text(), entry, scheduler_steps([s.slug for s in schedules]))
    commands = []
    for block, targets in sorted(blocks.items()):
        block_type = block.split("/", 1)[0]
        for target in sorted(targets):
            how = REGISTERED_BY.get(block_type, "register it in Prefect").format(target=target)
            commands.append((block, f"{env_name('tenant')}={name} {how}"))
    return Scaffold(text, deployment, tuple(dict.fromkeys(commands)))


def add_main(args: argparse.Namespace) -> int:
    path: Path = args.prefect_yaml
    schedules = [ScheduleArg(slug, target, cron) for slug, target, cron in args.schedule or []]
    try:
        result = scaffold(args.name, args.deployment, schedules, path)
    except TenantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(result.prefect_yaml, end="")
        return 0
    before = path.read_text()
    path.write_text(result.prefect_yaml)
    try:  # read back as every command reads it
        added = next(t for t in tenants(path) if t.name == args.name)
    except (TenantError, StopIteration) as exc:
        path.write_text(before)
        print(f"error: the new prefect.yaml does not read back ({exc}); unchanged", file=sys.stderr)
        return 1
    print(f"{path.name}: added deployment {added.full_name} for {TENANTS_DIR}/{added.name}")
    for s in schedules:
        print(f"  schedule {s.slug} ({s.target}, {s.cron}), build step {active_step_id(s.slug)}")
    print(f"  concurrency limits dbt-{added.deployment}-target-<target> (created by the deploy)")
    print(f"  kept artifacts under {added.artifacts_prefix}<target>/<flow run id>/")
    print("blocks its profiles.yml reads (register each before a dev/prod run):")
    for block, command in result.blocks:
        print(f"  {block}: {command}")
    if not result.blocks:
        print("  none")
    print(f"next: commit, `make deploy`; try it locally: make run TENANT={added.name}")
    return 0


def ls_main(args: argparse.Namespace) -> int:
    for t in tenants(args.prefect_yaml):
        default = " (default)" if t.first else ""
        print(f"{t.name}{default}: {t.full_name}, profile {t.profile_name}, {t.project_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tenants",
        help="list the tenants, or add one: prefect.yaml entry, schedule steps, blocks to register",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["ls", "add"])
    parser.add_argument("name", nargs="?", help="add: the folder under tenants/, e.g. dbt_shop")
    parser.add_argument(
        "--deployment", help="add: the deployment name (default: NAME without dbt_, '_' -> '-')"
    )
    parser.add_argument(
        "--schedule",
        nargs=3,
        action="append",
        metavar=("SLUG", "TARGET", "CRON"),
        help='add: a schedule, e.g. --schedule shop-prod-nightly prod "0 6 * * *" (repeatable)',
    )
    parser.add_argument("--dry-run", action="store_true", help="add: print the new prefect.yaml")
    parser.add_argument("--prefect-yaml", type=Path, default=PREFECT_YAML, help=argparse.SUPPRESS)

    def handler(args: argparse.Namespace) -> int:
        if args.action == "add":
            if not args.name:
                parser.error("add needs NAME, the folder under tenants/")
            return add_main(args)
        return ls_main(args)

    parser.set_defaults(handler=handler)
