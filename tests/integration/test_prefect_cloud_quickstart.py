"""R-112: the quickstart (`uvx prefect-cloud deploy`) lands on the deployment `prefect deploy`
creates, with the same typed form.

prefect-cloud's own code runs, as released and pinned (requirements-quickstart.txt), in a venv
that holds nothing else, as `uvx` has it: its `deploy` command with the exact arguments of
`make cloud-quickstart`'s plan, against a recording fake of the Cloud API and GitHub
(tests/fakes/prefect_cloud_quickstart.py). What it would send is compared with what
`prefect deploy --all` registered on the session's local server from prefect.yaml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dbt_runtime import project
from dbt_runtime.invocation import DbtCommand, Target
from migration import cloud
from migration.local_stack import LocalStack
from tests.prefect_api import api_request

HARNESS = project.REPO_ROOT / "tests" / "fakes" / "prefect_cloud_quickstart.py"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prefect_cloud_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with exactly requirements-quickstart.txt (uv's cache makes it a second's work)."""
    venv = tmp_path_factory.mktemp("prefect-cloud") / "venv"
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    pins = project.REPO_ROOT / cloud.QUICKSTART_PINS
    subprocess.run([*uv, "pip", "sync", "-q", "--python", str(python), str(pins)], check=True)
    return python


@pytest.fixture(scope="module")
def quickstart(prefect_cloud_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What prefect-cloud sends when the plan's step runs it: {"flow", "deployment", ...}."""
    (step,) = [s for s in cloud.quickstart_plan("0" * 40) if "prefect-cloud" in s.argv]
    argv = list(step.argv)
    assert argv[:1] == ["env"] and "uvx" in argv, step.render()
    assignments = dict(a.split("=", 1) for a in argv[1 : argv.index("uvx")])
    assert "--constraints" in argv and cloud.QUICKSTART_PINS in argv  # the pinned prefect-cloud
    tmp = tmp_path_factory.mktemp("quickstart")
    out = tmp / "requests.json"
    done = subprocess.run(
        [str(prefect_cloud_python), str(HARNESS), str(out), str(project.REPO_ROOT), "--",
         *argv[argv.index("prefect-cloud") + 1 :]],
        cwd=project.REPO_ROOT,  # where `make cloud-quickstart` runs it
        env={"PATH": os.environ["PATH"], "HOME": str(tmp), **assignments},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sent = json.loads(out.read_text())
    posted = {r["path"].rsplit("/", 2)[-2]: r["json"] for r in sent["requests"]}
    return {"flow": posted["flows"], "deployment": posted["deployments"], **sent}


def test_prefect_cloud_ran_without_the_runtime_installed(quickstart: Any) -> None:
    # Only the repository's own modules (PYTHONPATH=. in the plan), nothing of requirements.txt.
    assert quickstart["importable"] == {
        "prefect": False,
        "dbt": False,
        "yaml": False,
        "dbt_runtime": True,
    }


def test_quickstart_creates_the_flow_and_deployment_the_other_commands_use(
    quickstart: Any, stack: LocalStack
) -> None:
    name = f"{quickstart['flow']['name']}/{quickstart['deployment']['name']}"
    assert name == project.deployment_full_name() == f"{project.FLOW_NAME}/williamgrant"
    deployed = api_request("GET", f"{stack.api_url}/deployments/name/{name}").json()
    flow = api_request("GET", f"{stack.api_url}/flows/{deployed['flow_id']}").json()
    assert f"{flow['name']}/{deployed['name']}" == name  # what `prefect deploy --all` created
    assert quickstart["deployment"]["entrypoint"] == deployed["entrypoint"] == project.entrypoint()
    assert quickstart["deployment"]["parameters"] == deployed["parameters"]


def test_quickstart_form_equals_the_deployed_form_and_is_typed(
    quickstart: Any, stack: LocalStack
) -> None:
    schema = quickstart["deployment"]["parameter_openapi_schema"]
    deployed = api_request(
        "GET", f"{stack.api_url}/deployments/name/{project.deployment_full_name()}"
    ).json()
    assert schema == deployed["parameter_openapi_schema"]
    # ... and typed: the enums resolved, the defaults are values, not null.
    properties, definitions = schema["properties"], schema["definitions"]
    assert properties["command"]["$ref"] == "#/definitions/DbtCommand"
    assert definitions["DbtCommand"]["enum"] == [c.value for c in DbtCommand]
    assert definitions["Target"]["enum"] == [t.value for t in Target]
    assert (properties["command"]["default"], properties["target"]["default"]) == ("build", "dev")
    assert properties["timeout_seconds"]["type"] == "integer"
    assert properties["timeout_seconds"]["default"] == 3 * 60 * 60


def test_both_cloud_paths_retire_the_deployment_of_the_flows_earlier_name(
    stack: LocalStack,
) -> None:
    """After the rename a redeploy creates dbt_project/williamgrant; the old deployment would
    keep its schedules, so both plans delete it (its runs stay)."""
    for plan in (cloud.deploy_plan(), cloud.quickstart_plan("0" * 40)):
        assert any(s.argv[-2:] == ("cloud", "retire-legacy") for s in plan)
    (legacy,) = project.LEGACY_FLOW_NAMES
    api = stack.api_url
    flow_id = api_request("POST", f"{api}/flows/", json={"name": legacy}).json()["id"]
    body = {"name": "williamgrant", "flow_id": flow_id, "entrypoint": "flows/old.py:old"}
    assert api_request("POST", f"{api}/deployments/", json=body).status_code in (200, 201)
    done = subprocess.run(
        [sys.executable, "-m", "migration", "cloud", "retire-legacy"],
        cwd=project.REPO_ROOT, env=stack.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"deleted deployment {legacy}/williamgrant" in done.stdout
    assert api_request("GET", f"{api}/deployments/name/{legacy}/williamgrant").status_code == 404
    current = api_request("GET", f"{api}/deployments/name/{project.deployment_full_name()}")
    assert current.status_code == 200
