"""What a deployment or a Custom run may set on the work pool (runbook/secrets.md).

A run's job variables reach the worker, and the pull steps (`git clone`, `pip install`) run
with them, before the flow's own checks: a run that may choose `command`, `working_dir`, an
image or an environment variable like PIP_INDEX_URL chooses the code that runs. So the pool's
base job template exposes only OPERATOR_JOB_VARIABLES, `image` limited to the images
prefect.yaml pins, and `env` limited to the keys prefect.yaml's deployments set plus
RUN_ENV_ALLOWED; the server refuses anything else (HTTP 422) before a run is created. The flow
then refuses a run's `env` that changes a key the deployment sets (dbt_runtime/guards.py).

One function for every pool: the local stack's process pool, the fresh-environment pool that
stands in for Prefect Cloud's managed pool (its command written in, not a variable) and the
managed pool itself (`make cloud-deploy` restricts the template Prefect Cloud gives it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbt_runtime.project import PREFECT_YAML, job_variables, prefect_config
from dbt_runtime.settings import RUN_ENV_ALLOWED

# The variables kept from a pool type's default template: the process name and labels, output
# streaming, and `env` and `image` (both restricted below). Not `command` (a run would choose
# the code the worker executes), `working_dir` (where the code is cloned), `pip_packages` or
# any other way to install or run something else.
OPERATOR_JOB_VARIABLES = ("env", "name", "labels", "stream_output", "image")


def _job_variables(path: Path) -> list[dict[str, Any]]:
    return [job_variables(d) for d in prefect_config(path).get("deployments") or []]


def env_keys(path: Path = PREFECT_YAML) -> list[str]:
    """The `env` keys the pool accepts: every key a deployment sets, and RUN_ENV_ALLOWED."""
    keys = {str(key) for jv in _job_variables(path) for key in jv.get("env") or {}}
    return sorted(keys | RUN_ENV_ALLOWED)


def images(path: Path = PREFECT_YAML) -> list[str]:
    """The images prefect.yaml's deployments pin (the managed pool's; a process pool ignores)."""
    return sorted({str(jv["image"]) for jv in _job_variables(path) if jv.get("image")})


def operator_job_template(
    default: Mapping[str, Any],
    fixed: Mapping[str, Any] | None = None,
    path: Path = PREFECT_YAML,
) -> dict[str, Any]:
    """A pool type's base job template with only OPERATOR_JOB_VARIABLES exposed, `env` and
    `image` limited to what prefect.yaml sets, and `fixed` job configuration written in.

    Idempotent: applied to its own result it returns the same template.
    """
    variables = dict(default["variables"])
    kept = variables.get("properties") or {}
    properties = {k: dict(v) for k, v in kept.items() if k in OPERATOR_JOB_VARIABLES}
    properties["env"] = {
        **properties.get("env", {"title": "Environment Variables"}),
        "type": "object",
        "description": "Only these keys; a run may change only "
        + ", ".join(sorted(RUN_ENV_ALLOWED))
        + " (runbook/secrets.md).",
        "properties": {key: {"type": "string"} for key in env_keys(path)},
        "additionalProperties": False,
    }
    properties.pop("image", None)
    if pinned := images(path):
        properties["image"] = {
            "title": "Image",
            "description": "One of the images prefect.yaml pins; a process pool ignores it.",
            "type": "string",
            "enum": pinned,
        }
    variables.update(properties=properties, additionalProperties=False)
    variables["required"] = [r for r in variables.get("required", []) if r in properties]
    configuration = {
        k: v for k, v in default["job_configuration"].items() if k in OPERATOR_JOB_VARIABLES
    }
    return {"job_configuration": configuration | dict(fixed or {}), "variables": variables}
