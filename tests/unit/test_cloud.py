"""The Prefect Cloud path, checked offline: plans derived from prefect.yaml and the pins."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from dbt_runtime import project
from migration import cloud
from migration.local_stack import free_port

REPO = project.REPO_ROOT


def _make(verb: str) -> subprocess.CompletedProcess[str]:
    """`make <verb> DRY_RUN=1` with an API URL nothing listens on: any API call would fail."""
    env = {
        **os.environ,
        "DRY_RUN": "1",
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
    }
    venv = os.path.dirname(os.path.dirname(sys.executable))
    return subprocess.run(
        ["make", "--no-print-directory", verb, f"VENV={venv}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_managed_pool_image_pins_the_prefect_version_and_python_of_the_repo() -> None:
    image = cloud.deployed_image()
    assert image == cloud.expected_image()
    assert image == f"prefecthq/prefect:{cloud.pinned_version('prefect')}-python3.12"
    assert str(project.prefect_config()["prefect-version"]) == cloud.pinned_version("prefect")


def test_cloud_deploy_dry_run_prints_the_plan_and_changes_nothing() -> None:
    done = _make("cloud-deploy")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ensure-pool" in out and "check-blocks" in out
    assert re.search(r"-m prefect --no-prompt deploy --all\n", out)
    assert "changed nothing" in out


def test_cloud_quickstart_dry_run_deploys_the_same_flow_with_python_312() -> None:
    done = _make("cloud-quickstart")
    assert done.returncode == 0, done.stderr
    deployment = project.deployment_config()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    expected = (
        "env PYTHONPATH=. uvx --constraints requirements-quickstart.txt "
        f"prefect-cloud deploy {deployment['entrypoint']} "
        f"--from {project.source_config()['github_repository']}/tree/{head} "
        "--with-requirements requirements.txt --with-python 3.12 "
        f"--name {deployment['name']} -p command=build -p target=dev"
    )
    assert expected in done.stdout
    # what prefect.yaml's build steps do on a deploy: limits first, then the schedules
    steps = [line for line in done.stdout.splitlines() if line.startswith("  $ ")]
    assert "-m migration concurrency ensure" in steps[0]
    assert "-m migration schedules apply" in done.stdout
    assert "-m migration notifications apply" in done.stdout


def test_quickstart_prefect_cloud_is_the_pinned_one() -> None:
    pin = cloud.pinned_version("prefect-cloud", cloud.QUICKSTART_PINS)
    assert (REPO / "requirements-quickstart.in").read_text().count(f"prefect-cloud=={pin}") == 1


def test_prefect_cloud_cli_still_takes_the_flags_the_quickstart_uses() -> None:
    uvx = os.path.join(os.path.dirname(sys.executable), "uvx")
    done = subprocess.run(
        [uvx, "--constraints", cloud.QUICKSTART_PINS, "prefect-cloud", "deploy", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (step,) = [s for s in cloud.quickstart_plan("0" * 40) if "prefect-cloud" in s.argv]
    argv = step.argv[step.argv.index("prefect-cloud") :]
    used = {arg for arg in argv if arg.startswith("-")}
    missing = [flag for flag in used if flag not in done.stdout]
    assert not missing, f"prefect-cloud deploy no longer documents {missing}"
