"""dbt packages (`packages.yml`) installed before dbt runs, cached in the kept-artifact store.

dbt Cloud ran `dbt deps` implicitly; dbt Core on a fresh clone fails on the first `ref` into a
package that is not installed. So a run of a project with packages.yml (or dependencies.yml)
installs them first. The installed packages are kept in the artifacts store
(dbt_runtime/artifact_store.py) as one archive named by the hash of what pins them
(package-lock.yml when the project has one, else packages.yml, plus the dbt version): a run whose
lock is unchanged restores the archive instead of running `dbt deps` (which also reaches hub /
git), and a changed lock installs afresh and keeps the new archive. A project without packages
is untouched.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PACKAGE_FILES = ("packages.yml", "dependencies.yml")
LOCK_FILE = "package-lock.yml"
STORE_DIR = "_dbt-packages"  # <STORE_DIR>/<project>/<hash>.tar.gz in the store


@dataclass(frozen=True)
class PackagesReady:
    """How this run got its packages: `installed` (dbt deps ran) or `restored` (from `key`)."""

    how: str
    key: str


def package_file(project_dir: Path) -> Path | None:
    return next((project_dir / f for f in PACKAGE_FILES if (project_dir / f).is_file()), None)


def install_path(project_dir: Path) -> Path:
    config = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    return project_dir / str(config.get("packages-install-path", "dbt_packages"))


def lock_key(project_dir: Path, dbt_version: str) -> str | None:
    """The store key of this project's packages, by the hash of what pins them; None: none."""
    declared = package_file(project_dir)
    if declared is None:
        return None
    lock = project_dir / LOCK_FILE
    pinned = lock if lock.is_file() else declared
    digest = hashlib.sha256(pinned.read_bytes() + dbt_version.encode()).hexdigest()[:16]
    name = yaml.safe_load((project_dir / "dbt_project.yml").read_text())["name"]
    return f"{STORE_DIR}/{name}/{digest}.tar.gz"


def _archive(folder: Path) -> bytes:
    buffer = io.BytesIO()
    # dereference: a `local:` package is a symlink into this run's checkout
    with tarfile.open(fileobj=buffer, mode="w:gz", dereference=True) as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def _unpack(data: bytes, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def ensure_packages(
    store: Any, project_dir: Path, dbt_deps: Any, dbt_version: str
) -> PackagesReady | None:
    """Install the project's packages before dbt runs: restored from `store` by the lock's
    hash, else `dbt_deps()` (raises on failure) and kept. None: the project has no packages."""
    key = lock_key(project_dir, dbt_version)
    if key is None:
        return None
    folder = install_path(project_dir)
    if store is not None:
        try:
            _unpack(store.read_path(key), folder)
            return PackagesReady("restored", key)
        except (ValueError, OSError):  # none kept for this lock yet (FileNotFoundError)
            pass
    dbt_deps()
    if store is not None and folder.is_dir():
        store.write_path(key, _archive(folder))
    return PackagesReady("installed", key)
