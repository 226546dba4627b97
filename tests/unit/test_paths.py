"""dbt_runtime/_paths.py: the worker's private runtime directory is private, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbt_runtime._paths import UnsafeDirectory, private_dir, runtime_dir


def test_the_runtime_directory_is_made_0700(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WG_RUNTIME_DIR", str(tmp_path / "rt"))
    made = runtime_dir()
    assert made == tmp_path / "rt" and made.stat().st_mode & 0o777 == 0o700


@pytest.mark.security
def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match="has mode 777, not 700"):
        private_dir(shared)


@pytest.mark.security
def test_a_symlink_planted_at_the_fixed_path_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    (tmp_path / "wg-dbt").symlink_to(theirs)
    with pytest.raises(UnsafeDirectory, match="is not a directory"):
        private_dir(tmp_path / "wg-dbt")
