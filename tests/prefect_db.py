"""A Prefect database already at its schema's head, for the servers the suite starts.

A server started on an empty home first migrates its SQLite database: about 12 s of CPU on
this machine (healthy after 20-22 s; from a migrated copy, 6-7 s). The servers the suite starts
for itself (each xdist worker's, the cloud-like one, the tenants clone's) start from a copy of
one made per session; tests/e2e/test_make_run.py keeps a fresh machine's path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock


def migrated_database(directory: Path) -> Path:
    """`prefect server database upgrade` into `directory`, once: concurrent callers wait."""
    template = directory / "prefect.db"
    with FileLock(f"{directory}.lock"):
        if not template.exists():
            home = directory / "home"
            home.mkdir(parents=True, exist_ok=True)  # the upgrade command does not make it
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_DATABASE")}
            prefect = str(Path(sys.executable).parent / "prefect")
            subprocess.run(
                [prefect, "server", "database", "upgrade", "-y"],
                env={**env, "PREFECT_HOME": str(home)}, check=True, capture_output=True,
            )  # fmt: skip
            os.replace(home / "prefect.db", template)
    return template


def seed_prefect_home(stack_home: Path, template: Path) -> None:
    """Put the migrated database where a LocalStack rooted at `stack_home` keeps its own."""
    prefect_home = stack_home / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, prefect_home / "prefect.db")
