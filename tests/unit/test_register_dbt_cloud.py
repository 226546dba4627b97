"""blocks.register_dbt_cloud's inputs, without a server: env/stdin only, named errors."""

from __future__ import annotations

import io

import pytest

from blocks._inputs import InputError
from blocks.register_dbt_cloud import inputs, main

pytestmark = pytest.mark.parity
TOKEN = "dbtc_" + "a1B2" * 8
ENV = {"DBT_CLOUD_API_TOKEN": TOKEN, "DBT_CLOUD_ACCOUNT_ID": "70403103900001"}


def test_reads_token_and_account_from_the_environment_with_defaults():
    assert inputs(ENV, None, False, None) == (
        TOKEN,
        70403103900001,
        "cloud.getdbt.com",
        "wg-dbt-cloud",
    )
    env = {**ENV, "DBT_CLOUD_DOMAIN": "emea.dbt.com", "WG_DBT_CLOUD_BLOCK": "other"}
    assert inputs(env, None, False, "42")[1:] == (42, "emea.dbt.com", "other")


def test_token_from_stdin_and_not_both():
    stdin = io.StringIO(TOKEN + "\n")
    env = {"DBT_CLOUD_ACCOUNT_ID": "1"}
    assert inputs(env, stdin, True, None)[0] == TOKEN
    with pytest.raises(InputError, match="DBT_CLOUD_API_TOKEN is set and --token-stdin"):
        inputs(ENV, io.StringIO(TOKEN), True, None)


@pytest.mark.parametrize(
    ("env", "account", "message"),
    [
        ({"DBT_CLOUD_ACCOUNT_ID": "1"}, None, "DBT_CLOUD_API_TOKEN is not set"),
        ({"DBT_CLOUD_API_TOKEN": TOKEN}, None, "DBT_CLOUD_ACCOUNT_ID is not set"),
        (ENV, "acme", "DBT_CLOUD_ACCOUNT_ID 'acme' is malformed"),
        (
            {**ENV, "DBT_CLOUD_DOMAIN": "https://x/"},
            None,
            "DBT_CLOUD_DOMAIN 'https://x/' is malformed",
        ),
    ],
)
def test_bad_input_names_the_variable_and_never_echoes_the_token(env, account, message):
    with pytest.raises(InputError, match=message) as error:
        inputs(env, None, False, account)
    assert TOKEN not in str(error.value)


def test_bad_input_exits_2_before_registering(capsys: pytest.CaptureFixture[str]):
    assert main([], env={"DBT_CLOUD_ACCOUNT_ID": "1"}) == 2
    assert "error: DBT_CLOUD_API_TOKEN is not set" in capsys.readouterr().err
