"""The pool's job template: what a deployment or a Custom run may set (migration/work_pool.py)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from prefect.workers.process import ProcessWorker

from dbt_runtime.project import prefect_config
from dbt_runtime.settings import RUN_ENV_ALLOWED
from migration.work_pool import env_keys, images, operator_job_template

DEFAULT = ProcessWorker.get_default_base_job_template()


def _deployment_job_variables() -> list[dict[str, Any]]:
    return [d["work_pool"]["job_variables"] for d in prefect_config()["deployments"]]


def _accepts(template: dict[str, Any], job_variables: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(job_variables, template["variables"])
    except jsonschema.ValidationError:
        return False
    return True


def test_every_deployment_in_prefect_yaml_passes_the_template() -> None:
    template = operator_job_template(DEFAULT)
    for job_variables in _deployment_job_variables():
        env = {k: "resolved at deploy" for k in job_variables.get("env") or {}}
        assert _accepts(template, {**job_variables, "env": env}), job_variables


@pytest.mark.parametrize(
    "job_variables",
    [
        {"command": "sh -c 'cat /etc/passwd'"},
        {"working_dir": "/tmp/elsewhere"},
        {"env": {"PIP_INDEX_URL": "http://127.0.0.1:9/simple"}},
        {"env": {"PYTHONPATH": "/tmp/x"}},
        {"env": {"WG_DBT_PROJECT_DIR": "/tmp/p"}},
        {"image": "someone/else:latest"},
    ],
    ids=["command", "working-dir", "pip-index", "pythonpath", "project-dir", "image"],
)
def test_a_run_cannot_choose_code_or_paths(job_variables: dict[str, Any]) -> None:
    assert not _accepts(operator_job_template(DEFAULT), job_variables)


def test_a_run_may_set_what_the_runbook_says() -> None:
    allowed = {key: "5" for key in RUN_ENV_ALLOWED}
    assert _accepts(operator_job_template(DEFAULT), {"env": allowed, "image": images()[0]})


def test_env_keys_and_images_come_from_prefect_yaml() -> None:
    declared = {k for jv in _deployment_job_variables() for k in jv.get("env") or {}}
    assert set(env_keys()) == declared | RUN_ENV_ALLOWED
    assert images() == sorted({jv["image"] for jv in _deployment_job_variables()})


def test_the_fixed_command_is_written_in_and_the_template_is_stable() -> None:
    template = operator_job_template(DEFAULT, fixed={"command": "python fresh_env.py"})
    assert template["job_configuration"]["command"] == "python fresh_env.py"
    assert "command" not in template["variables"]["properties"]
    # applied again (every `make run`, every cloud-deploy) it changes nothing
    fixed = {"command": "python fresh_env.py"}
    assert operator_job_template(template, fixed=fixed) == template
    assert operator_job_template(operator_job_template(DEFAULT)) == operator_job_template(DEFAULT)
