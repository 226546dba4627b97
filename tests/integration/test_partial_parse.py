"""dbt's partial-parse state with real dbt (DuckDB, no server): parsed in one checkout, restored
into another (the first one gone, as after a worker run), it builds from the new checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dbt_runtime import partial_parse
from migration.synthetic_project import write_project
from tests.dbt_cli import dbt

pytestmark = pytest.mark.dbt


@pytest.fixture
def store(tmp_path: Path) -> object:
    from prefect.filesystems import LocalFileSystem

    return LocalFileSystem(basepath=str(tmp_path / "store"))


def test_real_dbt_reuses_the_state_in_a_new_checkout_and_reads_its_seeds(
    tmp_path: Path, store: object
) -> None:
    first = write_project(tmp_path / "clone-1", 3).path
    link = partial_parse.stable_project_dir(first, "local")
    dbt(link, "build", "--target", "local", warehouse=tmp_path / "warehouse.duckdb")
    partial_parse.keep(store, "local", link, link / "target")

    second = shutil.copytree(first, tmp_path / "clone-2", ignore=shutil.ignore_patterns("target"))
    shutil.rmtree(first)  # the worker deleted the first run's directory
    link = partial_parse.stable_project_dir(second, "local")
    assert partial_parse.restore(store, "local", link, link / "target")
    _, output = dbt(link, "build", "--target", "local", warehouse=tmp_path / "warehouse.duckdb")
    # the seeds load from the new checkout
    assert "Unable to do partial parsing" not in output
