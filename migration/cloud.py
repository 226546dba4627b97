"""Deploying to Prefect Cloud: `make cloud-deploy` and `make cloud-quickstart`.

Both are plans (lists of argv commands) derived from prefect.yaml, requirements.txt and
.python-version, so what they print under DRY_RUN=1 is exactly what they run. Neither builds a
shell string.

- cloud-deploy: the full path. Create the managed work pool if missing, check that the blocks
  the deployment needs exist (naming the script that registers each), `prefect --no-prompt
  deploy --all` (prefect.yaml's schedules, pull steps and parameters, as on the local stack).
- cloud-quickstart (R-112): `uvx prefect-cloud deploy ...` for the same entrypoint and
  deployment name, so both paths land on the same flow and deployment (prefect-cloud names the
  flow after the function; dbt_runtime/project.py FLOW_NAME is that name). prefect-cloud is
  pinned by requirements-quickstart.txt (uvx --constraints). It reads the flow file as text and
  evaluates its annotations in its own environment: with the repository on PYTHONPATH the
  parameter enums (dbt_runtime/invocation.py, standard library only) resolve and the Custom-run
  form stays typed. What prefect.yaml's build steps do on a deploy, the plan does around it: the
  per-target concurrency limits first, then prefect.yaml's schedules (UTC, slugs, `active` from
  the scheduler record, as a deploy sets it; prefect-cloud can set one local-time schedule only)
  and the notification automations.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from dataclasses import dataclass

from dbt_runtime import artifact_store
from dbt_runtime.profiles import REGISTERED_BY, block_refs, load_profiles, profile_targets
from dbt_runtime.project import (
    LEGACY_FLOW_NAMES,
    REPO_ROOT,
    deployment_config,
    deployment_full_name,
    entrypoint,
    job_variables,
    register_command,
    source_config,
    tenants,
    work_pool_name,
)
from migration.source import deployed_commit
from migration.work_pool import operator_job_template

MANAGED_POOL_TYPE = "prefect:managed"
QUICKSTART_PINS = "requirements-quickstart.txt"  # prefect-cloud and its dependencies, pinned
IMAGE_REPOSITORY = "prefecthq/prefect"


@dataclass(frozen=True)
class Step:
    """One command of a plan and why it runs."""

    argv: tuple[str, ...]
    why: str

    def render(self) -> str:
        import shlex

        return shlex.join(self.argv)


def python_version() -> str:
    return (REPO_ROOT / ".python-version").read_text().strip()


def pinned_version(package: str, pins: str = "requirements.txt") -> str:
    """The `==` pin of `package` in `pins` (a requirements file of this repository)."""
    for line in (REPO_ROOT / pins).read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name.lower() == package.lower():
            return version.split()[0]
    raise ValueError(f"{pins} does not pin {package}")


def expected_image() -> str:
    """The official image that pins the Prefect version and Python of this repository."""
    return f"{IMAGE_REPOSITORY}:{pinned_version('prefect')}-python{python_version()}"


def deployed_image() -> str:
    return str(job_variables(deployment_config()).get("image", ""))


def github_ref(commit: str) -> str:
    """`owner/repo/tree/<commit>`: what `prefect-cloud deploy --from` takes."""
    return f"{source_config()['github_repository']}/tree/{commit}"


def _python() -> str:
    return sys.executable


def _finishing_steps() -> list[Step]:
    """What both cloud paths end with, after their deployment exists."""
    return [
        Step(
            (_python(), "-m", "migration", "cloud", "retire-legacy"),
            "delete the deployment of the flow's earlier name, if any (its runs stay)",
        ),
        Step(
            (_python(), "-m", "migration", "notifications", "apply"),
            "apply notifications.yaml: one automation per rule; fails if a destination block "
            "is missing",
        ),
    ]


def deploy_plan() -> list[Step]:
    pool = work_pool_name()
    return [
        Step(
            (_python(), "-m", "migration", "cloud", "ensure-pool"),
            f"create work pool {pool!r} ({MANAGED_POOL_TYPE}) unless it exists",
        ),
        Step(
            (_python(), "-m", "migration", "cloud", "check-blocks"),
            "check the blocks the deployment needs exist (GitHub, Snowflake dev/prod, and an "
            "S3 bucket for kept artifacts: WG_ARTIFACTS_BLOCK)",
        ),
        Step(
            (_python(), "-m", "prefect", "--no-prompt", "deploy", "--all"),
            "deploy prefect.yaml: one deployment, pull steps pinned to HEAD, schedules by slug",
        ),
        *_finishing_steps(),
    ]


def quickstart_plan(commit: str) -> list[Step]:
    deployment = deployment_config()
    params = [
        arg
        for name, value in (deployment.get("parameters") or {}).items()
        for arg in ("-p", f"{name}={value}")
    ]
    return [
        Step(
            (_python(), "-m", "migration", "concurrency", "ensure"),
            "create the one-run-per-target concurrency limits every run checks (as a deploy does)",
        ),
        Step(
            (
                "env",
                "PYTHONPATH=.",  # the parameter enums resolve, so the form is typed
                "uvx",
                "--constraints",
                QUICKSTART_PINS,
                "prefect-cloud",
                "deploy",
                entrypoint(),
                "--from",
                github_ref(commit),
                "--with-requirements",
                "requirements.txt",
                "--with-python",
                python_version(),
                "--name",
                str(deployment["name"]),
                *params,
            ),
            f"deploy {deployment_full_name()} with the Prefect Cloud GitHub quickstart "
            "(managed pool)",
        ),
        Step(
            (_python(), "-m", "migration", "schedules", "apply"),
            "replace prefect-cloud's single local-time schedule with prefect.yaml's (UTC, slugs), "
            "each active only if the scheduler record says Prefect runs the job",
        ),
        *_finishing_steps(),
    ]


def required_blocks() -> list[tuple[str, str, str]]:
    """(block type, block name, script that registers it) for everything a Cloud run needs."""

    needed = [
        (
            "github-credentials",
            str(source_config()["credentials_block"]),
            REGISTERED_BY["github-credentials"],
        )
    ]
    for tenant in tenants():  # each tenant's own blocks, named in its profiles.yml
        outputs = profile_targets(load_profiles(tenant.project_dir), tenant.profile_name)
        for target, settings in sorted(outputs.items()):
            for ref in sorted(block_refs(settings), key=str):
                script = REGISTERED_BY.get(ref.block_type, "register it").format(target=target)
                if not tenant.first:
                    script = f"WG_TENANT={tenant.name} {script}"
                needed.append((ref.block_type, ref.name, script))
    store_type, _, store_name = artifact_store.artifacts_block().partition("/")
    needed.append((store_type, store_name, f"{register_command('artifacts')} --bucket <bucket>"))
    return needed


async def _missing_blocks() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    # Every Cloud run starts in a fresh container: kept artifacts need a bucket, not a folder.
    problem = artifact_store.durable_store_problem()
    missing = [problem] if problem else []
    async with get_client() as client:
        for block_type, name, script in required_blocks():
            try:
                await client.read_block_document_by_name(name, block_type)
            except ObjectNotFound:
                missing.append(f"block {block_type}/{name} not found: run `{script}`")
    return missing


async def _ensure_managed_pool() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    pool = work_pool_name()
    async with get_client() as client:
        try:
            existing = await client.read_work_pool(pool)
            said = f"work pool {pool!r} exists (type {existing.type})"
        except ObjectNotFound:
            existing = await client.create_work_pool(
                WorkPoolCreate(name=pool, type=MANAGED_POOL_TYPE)
            )
            said = f"created work pool {pool!r} ({MANAGED_POOL_TYPE})"
        # Prefect Cloud gives the pool its type's default template: keep only what a run may set.
        template = operator_job_template(existing.base_job_template)
        if template != existing.base_job_template:
            await client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
            said += "; its job template now exposes only what an operator may change"
        return said


async def _retire_legacy() -> list[str]:
    """Delete `<earlier flow name>/<deployment>`: after the flow's rename a redeploy creates the
    deployment under the new name, and the old one would keep its schedules. Its flow runs are
    kept, and found by the flow's earlier names (dbt_runtime/artifact_store.py)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    done = []
    async with get_client() as client:
        for flow in LEGACY_FLOW_NAMES:
            name = f"{flow}/{deployment_config()['name']}"
            try:
                old = await client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            await client.delete_deployment(old.id)
            done.append(f"deleted deployment {name} (runs kept); it is {deployment_full_name()}")
    return done or ["no deployment under an earlier flow name"]


def execute(plan: list[Step], dry_run: bool) -> int:
    for number, step in enumerate(plan, 1):
        print(f"[{number}/{len(plan)}] {step.why}\n  $ {step.render()}", flush=True)
        if dry_run:
            continue
        if subprocess.run(step.argv, cwd=REPO_ROOT).returncode != 0:
            print(f"step {number} failed; nothing after it ran", file=sys.stderr)
            return 1
    if dry_run:
        print("DRY_RUN=1: printed the plan, changed nothing.")
    return 0


def _head() -> str:

    return deployed_commit()


def main(action: str, dry_run: bool) -> int:
    if action == "deploy":
        return execute(deploy_plan(), dry_run)
    if action == "quickstart":
        return execute(quickstart_plan(_head()), dry_run)
    if action == "ensure-pool":
        print(asyncio.run(_ensure_managed_pool()))
        return 0
    if action == "retire-legacy":
        print("\n".join(asyncio.run(_retire_legacy())))
        return 0
    if action == "check-blocks":
        missing = asyncio.run(_missing_blocks())
        for line in missing:
            print(line, file=sys.stderr)
        if not missing:
            print(f"all {len(required_blocks())} blocks the deployment needs exist")
        return 1 if missing else 0
    raise ValueError(action)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cloud",
        help="deploy to Prefect Cloud: full path (deploy) or the uvx prefect-cloud quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "action",
        choices=["deploy", "quickstart", "ensure-pool", "check-blocks", "retire-legacy"],
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print every command, run none (`make cloud-deploy DRY_RUN=1` passes it)",
    )
    parser.set_defaults(handler=lambda args: main(args.action, args.dry_run))
