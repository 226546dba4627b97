"""prefect.yaml's build steps: what every `prefect deploy` resolves before it registers a
deployment, run inside the `prefect deploy` process itself.

Prefect imports a step named `migration.deploy_steps.<function>` from the directory it deploys
from (the repository root, as for `python -m migration`) and templates the returned `value`
into the deployment (`{{ <step id>.value }}`). One interpreter for all of them: as
`run_shell_script` steps, each started Python and imported Prefect again (about 13 s of the
20 s a deploy took here, 2026-12-01). The same answers are printed by the operator commands
`python -m migration source|scheduler active|artifacts --block|concurrency ensure`.

A step that must stop the deploy raises: Prefect prints the message and deploys nothing.
"""

from __future__ import annotations

from typing import Any

from dbt_runtime import artifact_store
from migration import concurrency as concurrency_limits
from migration import scheduler, source


class DeployRefused(RuntimeError):
    """A deploy-time check failed; the message says what to fix."""


def repository() -> dict[str, Any]:
    """The URL the worker's git_clone pull step clones."""
    return {"value": source.repository_url()}


def credentials() -> dict[str, Any]:
    """The GitHub credentials block reference for git_clone ("" for a local repository)."""
    return {"value": source.credentials_reference()}


def commit() -> dict[str, Any]:
    """HEAD of this checkout, which must be on the repository the worker clones."""
    sha = source.deployed_commit()
    try:
        source.check_pushed(sha)
    except source.CommitNotPushed as exc:
        raise DeployRefused(str(exc)) from None
    return {"value": sha}


def schedule_active(slug: str) -> dict[str, Any]:
    """Schedule `slug`'s `active`: whether Prefect runs the job (migration/scheduler.py)."""
    try:
        active = scheduler.active_checked(slug)
    except (scheduler.SchedulerConflict, LookupError) as exc:
        raise DeployRefused(str(exc)) from None
    return {"value": active}


def artifacts_block() -> dict[str, Any]:
    """The storage block the deployment's runs keep dbt's artifacts in."""
    return {"value": artifact_store.artifacts_block()}


def concurrency() -> dict[str, Any]:
    """The one-run-per-target global concurrency limits, created or repaired (idempotent)."""
    return {"value": [change.name for change in concurrency_limits.ensure()]}
