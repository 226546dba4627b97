"""Small hand-written dbt artifacts (dicts shaped like dbt's JSON) for unit tests.

Only the fields dbt really writes and parity reads; the real-dbt tests in
tests/integration/test_parity_cli.py prove the same code on artifacts dbt produced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PKG = "wg"


def node(
    name: str,
    resource_type: str = "model",
    *,
    depends_on: Sequence[str] = (),
    materialized: str = "view",
    tags: Sequence[str] = (),
    enabled: bool = True,
    path: str = "",
) -> dict[str, Any]:
    folders = {"model": "models", "seed": "seeds", "snapshot": "snapshots"}
    folder = folders.get(resource_type, "tests")
    return {
        "unique_id": f"{resource_type}.{PKG}.{name}",
        "resource_type": resource_type,
        "name": name,
        "package_name": PKG,
        "fqn": [PKG, name],
        "original_file_path": path or f"{folder}/{name}.sql",
        "tags": list(tags),
        "config": {"materialized": materialized, "enabled": enabled},
        "depends_on": {"macros": [], "nodes": list(depends_on)},
    }


def manifest(
    *nodes: dict[str, Any], version: int = 12, disabled: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    return {
        "metadata": {
            "dbt_schema_version": f"https://schemas.getdbt.com/dbt/manifest/v{version}.json",
            "dbt_version": "1.11.16",
        },
        "nodes": {n["unique_id"]: n for n in nodes},
        "sources": {},
        "disabled": {d["unique_id"]: [d] for d in disabled},
    }


def run_results(
    statuses: dict[str, str],
    *,
    which: str = "build",
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    version: int = 6,
) -> dict[str, Any]:
    return {
        "metadata": {
            "dbt_schema_version": f"https://schemas.getdbt.com/dbt/run-results/v{version}.json",
            "dbt_version": "1.11.16",
        },
        "results": [
            {"unique_id": uid, "status": status, "message": None, "failures": None}
            for uid, status in statuses.items()
        ],
        "elapsed_time": 1.0,
        "args": {"which": which, "select": list(select), "exclude": list(exclude)},
    }


def write_dir(directory: Path, manifest_data: dict[str, Any], results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps(manifest_data))
    (directory / "run_results.json").write_text(json.dumps(results))
    return directory
