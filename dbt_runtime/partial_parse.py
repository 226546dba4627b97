"""dbt's partial-parse state, kept between runs: a fresh checkout need not parse from scratch.

A worker starts every run in a fresh clone, where dbt would parse the whole project again
(measured: 5 s of the tenant project's 6 s parse; minutes for thousands of models). dbt keeps
what it parsed in target/partial_parse.msgpack and re-parses only files whose checksums,
vars, profile or dbt version changed, so restoring the last run's file is safe by dbt's own
checks: a stale or foreign file costs a full parse, never correctness.

One catch: dbt records the project's absolute path in that state (seeds are loaded from it),
and every clone lands in a new temporary directory. So dbt runs the project from a stable
path per Prefect API, target and project (and tenant: `prefix`, its kept-artifact prefix,
`dbt_runtime/project.py`): a symlink to this run's checkout
(`stable_project_dir`), inside the worker's private runtime directory (dbt_runtime/_paths.py:
per uid, 0700, owner checked), never a fixed name under the shared /tmp. Runs of one target
never overlap (dbt_runtime/guards.py), so a target's link always points at the run holding
its slot. The state is kept in the artifacts store
(dbt_runtime/artifact_store.py) next to the runs' artifacts: a local folder here, a bucket in
Prefect Cloud, where every run starts in a fresh container.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime._paths import runtime_subdir

STATE_FILE = "partial_parse.msgpack"
STORE_DIR = "_dbt-parse-state"  # under <prefix><target>/ in the store, next to the runs' dirs
LINKS_DIR = "projects"  # under the runtime dir: <api>/<target>/<prefix><project> -> checkout


def project_name(project_dir: Path) -> str:
    return str(yaml.safe_load((project_dir / "dbt_project.yml").read_text())["name"])


def stable_project_dir(project_dir: Path, target: str, prefix: str = "") -> Path:
    """A path that stays the same from run to run, pointing at this run's `project_dir`.

    One per Prefect API, target and tenant (`prefix`, its kept-artifact prefix): the scope in
    which dbt_runtime/guards.py lets one run at a time (two servers' runs on one machine, or two
    tenants' runs, never share a link)."""
    from prefect.settings import PREFECT_API_URL

    api = hashlib.sha256(str(PREFECT_API_URL.value() or "").encode()).hexdigest()[:12]
    scope = [part for part in prefix.split("/") if part]
    link = runtime_subdir(LINKS_DIR, api, target, *scope) / project_name(project_dir)
    staged = link.with_name(f".{link.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    staged.symlink_to(project_dir.resolve(), target_is_directory=True)
    staged.replace(link)  # atomic: the link never dangles
    return link


def _key(target: str, project_dir: Path, prefix: str) -> str:
    return f"{prefix}{target}/{STORE_DIR}/{project_name(project_dir)}/{STATE_FILE}"


def restore(store: Any, target: str, project_dir: Path, target_dir: Path, prefix: str = "") -> bool:
    """Put the kept state into target/ unless dbt already has one there; True if restored."""
    dest = target_dir / STATE_FILE
    if dest.is_file():
        return False
    try:
        data = store.read_path(_key(target, project_dir, prefix))
    except (ValueError, FileNotFoundError, OSError):
        return False  # none kept yet: dbt parses in full, and this run keeps its state
    target_dir.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return True


def keep(store: Any, target: str, project_dir: Path, target_dir: Path, prefix: str = "") -> None:
    source = target_dir / STATE_FILE
    if source.is_file():
        store.write_path(_key(target, project_dir, prefix), source.read_bytes())
