"""dbt's partial-parse state across runs: a stable project path, and state kept in the store.

tests/integration/test_partial_parse.py proves it with real dbt.
"""

from __future__ import annotations

import shutil
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
