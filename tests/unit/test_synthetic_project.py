"""The synthetic dbt projects `make bench` measures: shape of the DAG and the files written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from migration.synthetic_project import (
    LOCAL_TARGET,
    MAX_LAYERS,
    layout,
    seed_names,
    tenant_profile,
    write_project,
)


@pytest.mark.parametrize("models", [1, 7, 100, 2000])
def test_layout_is_a_layered_dag_over_the_seeds(models: int) -> None:
    specs = layout(models)
    assert len(specs) == models
    assert len({s.name for s in specs}) == models
    layer_of = {s.name: s.layer for s in specs}
    for spec in specs:
        if spec.layer == 0:
            assert spec.parents and set(spec.parents) <= set(seed_names())
            assert spec.materialized == "view"
        else:  # every later model reads only the layer right before it: no cycles, real depth
            assert spec.parents and all(layer_of[p] == spec.layer - 1 for p in spec.parents)
            assert spec.materialized == "table"
    assert max(layer_of.values()) == min(MAX_LAYERS, models) - 1


def test_about_one_test_per_two_models() -> None:
    assert sum(s.tested for s in layout(500)) == 250
    assert sum(s.tested for s in layout(7)) == 4


def test_layout_rejects_an_empty_project() -> None:
    with pytest.raises(ValueError, match="models must be at least 1"):
        layout(0)


def test_written_project_runs_on_the_tenants_local_target(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", 20)
    assert (project.models, project.seeds, project.tests) == (20, 3, 10)
    assert project.nodes == 33
    profile, local = tenant_profile()
    dbt_project = yaml.safe_load((project.path / "dbt_project.yml").read_text())
    assert dbt_project["profile"] == profile
    profiles = yaml.safe_load((project.path / "profiles.yml").read_text())
    # The flow's own profile handling (profiles.run_profile) must find this target.
    assert profiles[profile]["outputs"] == {LOCAL_TARGET: local}
    assert local["type"] == "duckdb"
    assert len(list((project.path / "models").glob("*.sql"))) == 20
    assert len(list((project.path / "seeds").glob("*.csv"))) == 3
    schema = yaml.safe_load((project.path / "models" / "schema.yml").read_text())
    assert len(schema["models"]) == 10
    joined = (project.path / "models" / "m1_0000.sql").read_text()
    assert "ref('m0_0000')" in joined and "ref('m0_0001')" in joined


def test_refuses_to_write_over_an_existing_project(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        write_project(tmp_path / "p", 3)
    assert (tmp_path / "p" / "keep.txt").read_text() == "mine"
