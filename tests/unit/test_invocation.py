"""Flow parameters -> dbt argv: what reaches dbt, and what is refused before it starts."""

from __future__ import annotations

import json

import pytest

from dbt_runtime.invocation import DbtCommand, InvalidParameter, Target, build_invocation


def test_scheduled_defaults_build_the_target() -> None:
    inv = build_invocation("build", "prod")
    assert inv.args == ("build", "--target", "prod")
    assert inv.label == "dbt build --target prod"


def test_overrides_become_separate_arguments() -> None:
    inv = build_invocation(
        DbtCommand.build,
        Target.dev,
        select=["fct_shipments+", "tag:finance"],
        exclude=["stg_budget"],
        vars={"reporting_currency": "USD"},
        full_refresh=True,
    )
    assert inv.args == (
        "build", "--target", "dev",
        "--select", "fct_shipments+", "tag:finance",
        "--exclude", "stg_budget",
        "--vars", json.dumps({"reporting_currency": "USD"}),
        "--full-refresh",
    )  # fmt: skip


def test_two_word_commands_split_into_dbt_subcommands() -> None:
    assert build_invocation("source freshness", "local").args[:2] == ("source", "freshness")
    assert build_invocation("docs generate", "local").args[:2] == ("docs", "generate")


def test_space_separated_selectors_typed_in_a_form_are_split_like_dbt_does() -> None:
    assert build_invocation("run", "local", select="stg_brands  dim_brand").args[-3:] == (
        "--select", "stg_brands", "dim_brand",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"command": "deploy"}, "'command'"),
        ({"target": "staging"}, "'target'"),
        ({"select": ["--full-refresh"]}, "'select'"),
        ({"exclude": ["x; rm -rf /"]}, "'exclude'"),
        ({"select": [""]}, "'select'"),
        ({"select": ["a\x00b"]}, "'select'"),
        ({"vars": ["not", "a", "mapping"]}, "'vars'"),
        ({"vars": "{not json"}, "'vars'"),
        ({"vars": {"big": "x" * 70_000}}, "'vars'"),
        ({"state": "/nonexistent/state"}, "'state'"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(kwargs: dict, names: str) -> None:
    params = {"command": "build", "target": "local", **kwargs}
    with pytest.raises(InvalidParameter, match=names):
        build_invocation(**params)


def test_unknown_target_error_lists_the_allowed_values() -> None:
    with pytest.raises(InvalidParameter, match="dev, prod, local"):
        build_invocation("build", "staging")


@pytest.mark.parametrize("command", ["test", "snapshot", "source freshness", "docs generate"])
def test_full_refresh_on_a_command_without_it_is_an_error_not_dropped(command: str) -> None:
    with pytest.raises(InvalidParameter, match="full_refresh"):
        build_invocation(command, "local", full_refresh=True)


def test_state_must_hold_a_manifest(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WG_STATE_ROOT", str(tmp_path))
    (tmp_path / "manifest.json").write_text("{}")
    inv = build_invocation("build", "local", select=["state:modified+"], state=str(tmp_path))
    assert inv.args[-2:] == ("--state", str(tmp_path))


# -- hostile input (issue 15): parameters are data, bounded ------------------------------------


@pytest.mark.security
@pytest.mark.parametrize(
    ("vars_", "where"),
    [
        ({"reporting_currency": "{{ env_var('HOME') }}"}, "reporting_currency"),
        ({"{% if 1 %}": "x"}, "{% if 1 %}"),
        ({"a": [{"b": "{# c #}"}]}, "a[0].b"),
    ],
    ids=["value", "key", "nested"],
)
def test_vars_holding_a_jinja_delimiter_are_refused_naming_the_key(
    vars_: dict[str, object], where: str
) -> None:
    with pytest.raises(InvalidParameter, match="parameter 'vars': key") as caught:
        build_invocation("build", "local", vars=vars_)
    assert repr(where) in str(caught.value)


def test_selectors_state_are_bounded() -> None:
    with pytest.raises(InvalidParameter, match="101 selectors, more than 100"):
        build_invocation("build", "local", select=[f"m{i}" for i in range(101)])
    with pytest.raises(InvalidParameter, match="'exclude': a selector of 257 characters"):
        build_invocation("build", "local", exclude=["x" * 257])
    with pytest.raises(InvalidParameter, match="'state': 5000 characters"):
        build_invocation("build", "local", state="s" * 5000)


@pytest.mark.security
def test_state_directories_outside_the_root_are_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WG_STATE_ROOT", str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "manifest.json").write_text("{}")
    for state in (str(tmp_path / "elsewhere"), "../elsewhere"):
        with pytest.raises(InvalidParameter, match="is not under the state root"):
            build_invocation("build", "local", state=state)


@pytest.mark.security
def test_retry_refuses_a_command_the_deployment_does_not_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WG_STATE_ROOT", str(tmp_path))
    (tmp_path / "run_results.json").write_text(
        json.dumps({"args": {"which": "run-operation", "macro": "drop_everything"}})
    )
    with pytest.raises(InvalidParameter, match="ran `dbt run-operation`, which this deployment"):
        build_invocation("retry", "local", state=str(tmp_path))
    (tmp_path / "run_results.json").write_text(
        json.dumps({"args": {"which": "build", "vars": {"x": "{{ run_query('x') }}"}}})
    )
    with pytest.raises(InvalidParameter, match="parameter 'vars'"):
        build_invocation("retry", "local", state=str(tmp_path))


@pytest.mark.security
def test_the_label_carries_command_and_selection_not_the_vars_payload() -> None:
    inv = build_invocation("build", "local", select=["fct_shipments"], vars={"blob": "y" * 60000})
    assert inv.label.startswith("dbt build --target local --select fct_shipments --vars ")
    assert len(inv.label) <= 400 and "y" * 100 not in inv.label
