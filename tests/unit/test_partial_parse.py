"""dbt's partial-parse state across runs: a stable project path, and state kept in the store.

The last test runs real dbt (DuckDB): state parsed in one checkout, restored into another
(the first one gone, as after a worker run), must build from the new checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dbt_runtime import partial_parse
from migration.synthetic_project import write_project


@pytest.fixture
def store(tmp_path: Path) -> object:
    from prefect.filesystems import LocalFileSystem

    return LocalFileSystem(basepath=str(tmp_path / "store"))


def test_every_checkout_runs_from_the_same_path_per_target(tmp_path: Path) -> None:
    first = write_project(tmp_path / "clone-1", 1).path
    second = shutil.copytree(first, tmp_path / "clone-2")
    link = partial_parse.stable_project_dir(first, "local")
    assert partial_parse.stable_project_dir(second, "local") == link
    assert link.resolve() == second.resolve()  # the newest run's checkout
    assert partial_parse.stable_project_dir(second, "dev") != link  # targets run side by side


def test_another_prefect_api_gets_its_own_path(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    project = write_project(tmp_path / "clone", 1).path
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        one = partial_parse.stable_project_dir(project, "local")
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:2/api"}):
        other = partial_parse.stable_project_dir(project, "local")
    assert one != other


def test_kept_state_is_restored_only_where_dbt_has_none(tmp_path: Path, store: object) -> None:
    project = write_project(tmp_path / "clone", 1).path
    target = project / "target"
    assert not partial_parse.restore(store, "local", project, target)  # nothing kept yet
    target.mkdir()
    (target / partial_parse.STATE_FILE).write_bytes(b"state of run 1")
    partial_parse.keep(store, "local", project, target)
    (target / partial_parse.STATE_FILE).write_bytes(b"dbt's own, newer")
    assert not partial_parse.restore(store, "local", project, target)
    assert (target / partial_parse.STATE_FILE).read_bytes() == b"dbt's own, newer"
    shutil.rmtree(target)  # a fresh checkout
    assert partial_parse.restore(store, "local", project, target)
    assert (target / partial_parse.STATE_FILE).read_bytes() == b"state of run 1"
    assert not partial_parse.restore(store, "dev", project, target.parent / "other")  # per target


def _dbt_build(project: Path, warehouse: Path) -> str:
    dbt = str(Path(sys.executable).parent / "dbt")
    argv = [dbt, "build", "--target", "local", "--project-dir", str(project)]
    env = {"WG_DUCKDB_PATH": str(warehouse), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [*argv, "--profiles-dir", str(project)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def test_real_dbt_reuses_the_state_in_a_new_checkout_and_reads_its_seeds(
    tmp_path: Path, store: object
) -> None:
    first = write_project(tmp_path / "clone-1", 3).path
    link = partial_parse.stable_project_dir(first, "local")
    _dbt_build(link, tmp_path / "warehouse.duckdb")
    partial_parse.keep(store, "local", link, link / "target")

    second = shutil.copytree(first, tmp_path / "clone-2", ignore=shutil.ignore_patterns("target"))
    shutil.rmtree(first)  # the worker deleted the first run's directory
    link = partial_parse.stable_project_dir(second, "local")
    assert partial_parse.restore(store, "local", link, link / "target")
    output = _dbt_build(link, tmp_path / "warehouse.duckdb")  # seeds load from the new checkout
    assert "Unable to do partial parsing" not in output
