"""dbt_runtime/settings.py: one object holds every knob, and the README's table says the same."""

from __future__ import annotations

import re

import pytest

from dbt_runtime.project import REPO_ROOT
from dbt_runtime.settings import Settings, default, env_name, get_settings

README_ROW = re.compile(r"^\| `(?P<env>WG_[A-Z_]+)` \| (?P<default>[^|]*) \| (?P<what>[^|]*) \|$")


def _readme_knobs() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        if m := README_ROW.match(line.strip()):
            rows[m["env"]] = (m["default"].strip(), m["what"].strip())
    return rows


def test_the_readme_table_lists_every_knob_with_its_default_and_description() -> None:
    documented = _readme_knobs()
    assert sorted(documented) == sorted(env_name(f) for f in Settings.model_fields)
    for field, info in Settings.model_fields.items():
        shown_default, description = documented[env_name(field)]
        value = default(field)
        assert shown_default == ("(unset)" if value in (None, "") else f"`{value}`"), field
        assert description == info.description, field


def test_a_knob_is_read_from_its_environment_variable_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WG_ARTIFACTS_BLOCK", "s3-bucket/elsewhere")
    first = get_settings()
    assert first.artifacts_block == "s3-bucket/elsewhere"
    monkeypatch.setenv("WG_ARTIFACTS_BLOCK", "s3-bucket/changed-mid-run")
    assert get_settings() is first  # a run sees one configuration from start to end


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prefect_port", "not-a-port"),
        ("concurrency_lease_seconds", "30"),  # the server refuses leases under 60 s
    ],
)
def test_a_malformed_knob_fails_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    monkeypatch.setenv(env_name(field), value)
    with pytest.raises(ValueError, match=field):
        Settings()
