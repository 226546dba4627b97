"""The requirements pull step: pip is skipped only when every pin is installed."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from dbt_runtime.project import REPO_ROOT
from migration.requirements import unsatisfied

PREFECT = version("prefect")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return path


def test_this_repositorys_pins_are_what_this_environment_has() -> None:
    assert unsatisfied(REPO_ROOT / "requirements.txt") == []


def test_a_pin_at_another_version_or_not_installed_is_unsatisfied(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        f"prefect=={PREFECT}\n"
        "    # via prefect-dbt\n"
        "pyyaml==0.0.1\n"
        "no-such-distribution-wg==1.0\n"
        'prefect==0.0.1 ; python_version < "3"   # never this interpreter: ignored\n',
    )
    assert unsatisfied(path) == [
        "pyyaml==0.0.1 (installed " + version("pyyaml") + ")",
        "no-such-distribution-wg==1.0 (not installed)",
    ]


def test_pip_options_leave_the_decision_to_pip(tmp_path: Path) -> None:
    path = _file(tmp_path, f"--index-url https://example.invalid/simple\nprefect=={PREFECT}\n")
    assert unsatisfied(path) == ["--index-url https://example.invalid/simple (pip option)"]


def _step(*args: str) -> subprocess.CompletedProcess[str]:
    """The pull step exactly as prefect.yaml runs it."""
    argv = [sys.executable, "-m", "migration", "requirements", "install", *args]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def test_the_step_skips_pip_when_everything_is_installed(tmp_path: Path) -> None:
    done = _step("--file", str(_file(tmp_path, f"prefect=={PREFECT}\n")))
    assert done.returncode == 0, done.stderr
    assert "every requirement is installed; pip skipped" in done.stdout


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    done = _step("--file", str(tmp_path / "nope.txt"))
    assert done.returncode == 2
    assert f"requirements file {tmp_path / 'nope.txt'} not found" in done.stderr
