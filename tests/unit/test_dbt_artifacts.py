"""dbt_runtime/dbt_artifacts.py: reading manifest/run_results across dbt versions, and refusing
files that are not the artifact they should be, with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbt_runtime.dbt_artifacts import (
    ArtifactError,
    Outcome,
    load_dir,
    read_manifest,
    read_run_results,
    version_notes,
)
from tests.fakes.dbt_artifacts import manifest, node, run_results, write_dir

pytestmark = pytest.mark.parity

STG = node("stg_brands")
DIM = node("dim_brand", materialized="table", depends_on=[STG["unique_id"]])
TEST = node("unique_dim_brand_id", "test", depends_on=[DIM["unique_id"]])


@pytest.mark.parametrize(("manifest_v", "results_v"), [(10, 4), (11, 5), (12, 6), (12, 4)])
def test_reads_every_schema_version_in_use_alike(tmp_path: Path, manifest_v: int, results_v: int):
    write_dir(
        tmp_path,
        manifest(STG, DIM, TEST, version=manifest_v),
        run_results({DIM["unique_id"]: "success", TEST["unique_id"]: "pass"}, version=results_v),
    )
    artifacts = load_dir(tmp_path)
    assert artifacts.manifest.schema_version == manifest_v
    assert artifacts.manifest.nodes[DIM["unique_id"]].depends_on == (STG["unique_id"],)
    assert artifacts.manifest.nodes[TEST["unique_id"]].is_test
    assert {uid: r.status for uid, r in artifacts.results().items()} == {
        DIM["unique_id"]: "success",
        TEST["unique_id"]: "pass",
    }
    assert artifacts.invocations[0].command == "build"
    assert version_notes([artifacts.manifest, *artifacts.invocations]) == []


def test_a_newer_schema_is_read_with_a_note_not_rejected(tmp_path: Path):
    write_dir(
        tmp_path, manifest(DIM, version=13), run_results({DIM["unique_id"]: "success"}, version=7)
    )
    artifacts = load_dir(tmp_path)
    notes = version_notes([artifacts.manifest, *artifacts.invocations])
    assert len(notes) == 2
    assert "manifest schema v13 is outside the tested v10-v12" in notes[0]
    assert "run-results schema v7 is outside the tested v4-v6" in notes[1]


def test_statuses_from_newer_dbt_are_kept_and_classified():
    from dbt_runtime.dbt_artifacts import outcome

    assert outcome("reused") is Outcome.ok  # dbt 1.12 state-aware orchestration
    assert outcome("Success") is Outcome.ok
    assert outcome("warn") is Outcome.ok
    assert outcome("runtime error") is Outcome.failed
    assert outcome("partial success") is Outcome.failed
    assert outcome("skipped") is Outcome.skipped
    assert outcome("brand-new-status") is Outcome.other


def test_unknown_status_survives_reading(tmp_path: Path):
    path = tmp_path / "run_results.json"
    path.write_text(
        json.dumps(run_results({DIM["unique_id"]: "reused", STG["unique_id"]: "novel"}))
    )
    results = read_run_results(path).results
    assert results[DIM["unique_id"]].status == "reused"
    assert results[STG["unique_id"]].outcome is Outcome.other


def test_disabled_nodes_and_selection_args_are_read(tmp_path: Path):
    off = node("old_model", enabled=False)
    data = manifest(STG, disabled=[off])
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    parsed = read_manifest(tmp_path / "manifest.json")
    assert off["unique_id"] in parsed.disabled
    assert off["unique_id"] not in parsed.nodes

    results = run_results({}, which="run", select=["tag:finance", "dim_brand+"], exclude=["x"])
    (tmp_path / "run_results.json").write_text(json.dumps(results))
    invocation = read_run_results(tmp_path / "run_results.json")
    assert invocation.select == ("tag:finance", "dim_brand+")
    assert invocation.exclude == ("x",)
    assert invocation.executed_types == {"model"}
    assert invocation.describe() == "dbt run --select tag:finance dim_brand+ --exclude x"


def test_selection_given_as_one_string_is_split(tmp_path: Path):
    data = run_results({})
    data["args"]["select"] = "a b+"  # older dbt wrote the raw CLI string
    (tmp_path / "run_results.json").write_text(json.dumps(data))
    assert read_run_results(tmp_path / "run_results.json").select == ("a", "b+")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "not a dbt manifest.json: not JSON"),
        ("[1, 2]", "top level is not a JSON object"),
        ('{"nodes": {}}', "not a dbt manifest.json (no metadata.dbt_schema_version)"),
        (json.dumps(run_results({})), "is a dbt run-results artifact, expected manifest.json"),
    ],
)
def test_a_file_that_is_not_a_manifest_is_a_clear_error(tmp_path: Path, content: str, message: str):
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(ArtifactError, match=str(path)) as error:
        read_manifest(path)
    assert message in str(error.value)


def test_a_manifest_given_as_run_results_is_named(tmp_path: Path):
    path = tmp_path / "run_results.json"
    path.write_text(json.dumps(manifest(DIM)))
    with pytest.raises(
        ArtifactError, match=r"is a dbt manifest artifact, expected run_results\.json"
    ):
        read_run_results(path)


def test_missing_directory_and_missing_files_are_named(tmp_path: Path):
    with pytest.raises(ArtifactError, match="no such directory"):
        load_dir(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(DIM)))
    with pytest.raises(ArtifactError, match=r"missing run_results\.json"):
        load_dir(tmp_path)
