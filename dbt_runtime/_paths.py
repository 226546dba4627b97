"""The worker's private runtime directory: fixed per user, outside HOME, 0700, owner checked.

dbt's partial-parse state records absolute paths, so the project link must sit at a path that
stays the same from run to run; a fixed name under the shared /tmp could be created first by
another local user (pointing dbt's project at their code). So the directory is per uid, made
0700, and refused when it is a symlink, someone else's, or readable by others.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from dbt_runtime.settings import env_name, get_settings


class UnsafeDirectory(PermissionError):
    """A private directory exists but is not private; the message names the fix."""


def private_dir(path: Path) -> Path:
    """`path`, created 0700 if missing; refused unless it is ours, a real dir, and private."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    info = path.lstat()
    problem = ""
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory (a symlink?)"
    elif info.st_uid != os.getuid():
        problem = f"belongs to uid {info.st_uid}, not {os.getuid()}"
    elif info.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):o}, not 700"
    if problem:
        raise UnsafeDirectory(
            f"{path} {problem}: remove it, or point {env_name('runtime_dir')} at a directory "
            "only the worker's user can write"
        )
    return path


def runtime_dir() -> Path:
    """The worker's private directory (WG_RUNTIME_DIR, default `<tmp>/wg-dbt-<uid>`)."""
    configured = get_settings().runtime_dir
    base = configured or Path(tempfile.gettempdir()) / f"wg-dbt-{os.getuid()}"
    return private_dir(base)


def runtime_subdir(*parts: str) -> Path:
    """A private directory under the runtime directory, each level checked."""
    path = runtime_dir()
    for part in parts:
        path = private_dir(path / part)
    return path


def state_root() -> Path:
    """The one directory under which `state` may name a directory (WG_STATE_ROOT)."""
    configured = get_settings().state_root
    return configured.resolve() if configured else runtime_subdir("state")
