"""Keeping and fetching a run's dbt files with a real LocalFileSystem block (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from dbt_runtime import artifact_store
from dbt_runtime.settings import env_name, get_settings

pytestmark = pytest.mark.observability

RUN_ID = "0b8b6c1e-3f0a-4c54-9a51-0e0f3f1c2a77"


def dbt_target_dir(path: Path, statuses: list[str]) -> Path:
    path.mkdir(parents=True)
    results = [{"unique_id": f"model.wg.m{i}", "status": s} for i, s in enumerate(statuses)]
    (path / "run_results.json").write_text(json.dumps({"results": results}))
    (path / "manifest.json").write_text('{"nodes": {}}')
    return path


def test_a_kept_run_is_found_by_its_id_alone_and_fetched_whole(tmp_path: Path) -> None:
    store = LocalFileSystem(basepath=str(tmp_path / "store"))
    target_dir = dbt_target_dir(tmp_path / "project" / "target", ["success", "error"])
    log = tmp_path / "logs" / "dbt.log"
    log.parent.mkdir()
    log.write_text("Binder Error\n")
    kept = artifact_store.keep_run_artifacts(store, "prod", RUN_ID, target_dir, log, {"attempt": 1})
    assert kept.files == ("run_results.json", "manifest.json", "dbt.log")
    assert kept.location == (tmp_path / "store" / "prod" / RUN_ID).as_uri() + "/"

    found = artifact_store.find_kept_run(store, RUN_ID)
    assert (found.target, found.key) == ("prod", f"prod/{RUN_ID}")
    dest = artifact_store.fetch_kept_run(store, found, tmp_path / "fetched")
    assert (dest / "dbt.log").read_text() == "Binder Error\n"
    assert (dest / "run_results.json").read_bytes() == (
        target_dir / "run_results.json"
    ).read_bytes()


def test_a_run_without_kept_artifacts_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalFileSystem(basepath=str(tmp_path))
    with pytest.raises(artifact_store.ArtifactStoreError, match=f"no artifacts kept .*{RUN_ID}"):
        artifact_store.find_kept_run(store, RUN_ID)


def test_retry_material_is_placed_where_dbt_retry_reads_it(tmp_path: Path) -> None:
    previous = dbt_target_dir(tmp_path / "previous", ["success", "skipped"])
    target_dir = tmp_path / "project" / "target"
    artifact_store.place_for_retry(previous, target_dir)
    assert artifact_store.has_retryable_nodes(target_dir / "run_results.json")
    assert (target_dir / "manifest.json").is_file()


def test_only_failed_or_skipped_nodes_make_a_run_worth_retrying(tmp_path: Path) -> None:
    done = dbt_target_dir(tmp_path / "done", ["success", "pass", "warn"])
    assert not artifact_store.has_retryable_nodes(done / "run_results.json")
    assert not artifact_store.has_retryable_nodes(tmp_path / "missing.json")


def test_the_storage_block_is_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert artifact_store.artifacts_block() == "local-file-system/wg-dbt-artifacts"
    monkeypatch.setenv(env_name("artifacts_block"), "s3-bucket/wg-dbt-artifacts")
    get_settings.cache_clear()  # settings are read once per process: a new process reads this
    assert artifact_store.artifacts_block() == "s3-bucket/wg-dbt-artifacts"
    assert "WG_ARTIFACTS_BLOCK" in artifact_store.register_hint()


def test_kept_runs_are_looked_up_under_the_flow_name_and_its_earlier_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dbt_runtime.project import FLOW_NAME, LEGACY_FLOW_NAMES

    asked: list[list[str]] = []

    async def no_runs(flow_names: list[str], *_: object) -> list[object]:
        asked.append(list(flow_names))
        return []

    monkeypatch.setattr(artifact_store, "_flow_runs_newest_first", no_runs)
    with pytest.raises(artifact_store.ArtifactStoreError, match="dbt-williamgrant"):
        artifact_store.latest_kept_run(None, "prod", ["COMPLETED"])
    assert asked == [[FLOW_NAME, *LEGACY_FLOW_NAMES]]
    assert "dbt-williamgrant" in LEGACY_FLOW_NAMES
