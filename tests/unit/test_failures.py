"""Failure reasons and `state` keywords (pure: nothing is looked up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbt_runtime import guards
from dbt_runtime.failures import (
    FailureKind,
    WarehouseProblem,
    classify_error,
    classify_nodes,
    error_detail,
    failure_of,
    warehouse_problem,
)
from dbt_runtime.invocation import (
    InvalidParameter,
    KeptState,
    Target,
    build_invocation,
    state_reference,
)
from dbt_runtime.profiles import ProfileError
from dbt_runtime.summary import NodeRow, summarize

pytestmark = pytest.mark.observability

RUN_ID = "0b8b6c1e-3f0a-4c54-9a51-0e0f3f1c2a77"


def row(unique_id: str, status: str, message: str = "") -> NodeRow:
    return NodeRow(unique_id, unique_id.split(".")[0], status, 1.0, None, message)


@pytest.mark.parametrize(
    ("failed", "kind"),
    [
        ([row("test.wg.not_null_x", "fail", "3 failing rows")], FailureKind.test_failure),
        ([row("model.wg.x", "error", "Binder Error: column y not found"),
          row("test.wg.t", "fail")], FailureKind.model_error),
        ([row("model.wg.x", "error", "250001: Could not connect to Snowflake backend")],
         FailureKind.warehouse_error),
        ([row("model.wg.x", "error", "IO Error: Could not set lock on file")],
         FailureKind.warehouse_error),
        ([row("model.wg.x", "error", "Compilation Error in model x")], FailureKind.compile_error),
        ([row("seed.wg.raw", "error", "CSV parse error")], FailureKind.model_error),
    ],
)  # fmt: skip
def test_failed_nodes_are_classified_by_their_most_upstream_cause(
    failed: list[NodeRow], kind: FailureKind
) -> None:
    assert classify_nodes(tuple(failed)) is kind


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidParameter("parameter 'select': 'a;b' is not a dbt selector"),
         FailureKind.bad_parameter),
        (ProfileError("block snowflake-credentials/wg-dbt-prod not found"),
         FailureKind.configuration),
        (ValueError("Failed to invoke dbt command 'build': Parsing Error\n  bad yaml"),
         FailureKind.compile_error),
        (ValueError("Failed to invoke dbt command 'build': Could not connect to Snowflake"),
         FailureKind.warehouse_error),
        (ValueError("something else"), FailureKind.dbt_error),
    ],
)  # fmt: skip
def test_errors_without_node_results_are_classified(error: Exception, kind: FailureKind) -> None:
    assert classify_error(error) is kind


AUTH_ERROR = ValueError(
    "Failed to invoke dbt command 'build --target prod': Database Error\n"
    "  250001 (08001): Failed to connect to DB: wg12345.snowflakecomputing.com:443. "
    "Incorrect username or password was specified."
)


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (AUTH_ERROR, WarehouseProblem.credentials),
        ("250001 (08001): Could not connect to Snowflake backend after 2 attempt(s).",
         WarehouseProblem.unreachable),
        ("HTTPSConnectionPool: Max retries exceeded (Name or service not known)",
         WarehouseProblem.unreachable),
        (RuntimeError("dbt build failed"), None),
        ("IO Error: Could not set lock on file \"warehouse.duckdb\": Conflicting lock",
         WarehouseProblem.lock),
        ("Warehouse 'WG_XS' cannot be resumed: warehouse WG_XS does not exist",
         WarehouseProblem.unavailable),
        ("Database Error in model authentication_events: invalid identifier 'QTY'", None),
        ("Binder Error: column y not found", None),
    ],
)  # fmt: skip
def test_one_classifier_names_the_warehouse_problem(
    error: BaseException | str, problem: WarehouseProblem | None
) -> None:
    assert warehouse_problem(error) is problem


def test_a_refused_connection_in_an_errors_cause_is_transient() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "")
        except OSError as exc:
            raise RuntimeError("dbt build failed") from exc
    except RuntimeError as wrapped:
        problem = warehouse_problem(wrapped)
    assert problem is WarehouseProblem.unreachable and problem.transient


def test_an_auth_error_fails_the_run_as_a_warehouse_error_and_is_not_retried() -> None:
    failure = failure_of("dbt build --target prod", None, AUTH_ERROR)
    assert failure is not None and failure.kind is FailureKind.warehouse_error
    # run_dbt raises only transient failures (for the retries); this one becomes the run's
    # Failed state with this message, no traceback.
    assert not failure.transient
    assert failure.message().splitlines()[0] == (
        "dbt build --target prod failed: warehouse/connection error: "
        "the warehouse refused the credentials (no node results)"
    )
    calls: list[int] = []

    def dbt() -> None:
        calls.append(1)
        raise RuntimeError(failure.message()) from AUTH_ERROR

    address = guards.WarehouseAddress("prod", "wg12345", "DBT_PROD", "127.0.0.1", 9)
    with pytest.raises(RuntimeError, match="refused the credentials"):
        guards.with_connection_retries(dbt, address, lambda _: None, sleep=lambda _: None)
    assert calls == [1]


def test_an_unreachable_warehouse_is_raised_for_the_retries() -> None:
    error = ValueError(
        "Failed to invoke dbt command 'build': 250001: Could not connect to Snowflake"
    )
    failure = failure_of("dbt build --target dev", None, error)
    assert failure is not None and failure.transient


def test_message_names_each_failed_node_with_its_error_and_the_next_step() -> None:
    summary = summarize(
        {
            "args": {"which": "build"},
            "results": [
                {"unique_id": "model.wg.fct_x", "status": "error",
                 "message": "Runtime Error in model fct_x (models/fct_x.sql)\n  Division by zero!"},
                {"unique_id": "model.wg.mart_y", "status": "skipped"},
                {"unique_id": "model.wg.dim_z", "status": "success"},
            ],
        }
    )  # fmt: skip
    failure = failure_of("dbt build --target prod", summary, None)
    assert failure is not None
    assert failure.message("Rerun only what failed: command=retry").splitlines() == [
        "dbt build --target prod failed: model error (1 failed, 1 skipped)",
        "  model.wg.fct_x: Division by zero!",
        "Rerun only what failed: command=retry",
    ]


def test_a_run_with_only_warnings_is_not_a_failure() -> None:
    summary = summarize({"results": [{"unique_id": "test.wg.t", "status": "warn"}]})
    assert failure_of("dbt test --target dev", summary, None) is None


def test_an_error_before_any_node_ran_keeps_its_informative_line() -> None:
    error = ValueError(
        "Failed to invoke dbt command 'build --target dev': Compilation Error\n"
        "  Model 'model.wg.x' depends on a node named 'missing' which was not found"
    )
    failure = failure_of("dbt build --target dev", None, error)
    assert failure is not None and failure.kind is FailureKind.compile_error
    assert error_detail(error).startswith("Model 'model.wg.x' depends on a node named 'missing'")
    assert "compile error (no node results)" in failure.message()


def test_long_failure_lists_are_cut_with_a_pointer_to_the_summary() -> None:
    failed = tuple(row(f"test.wg.t{i}", "fail", "1 failing rows") for i in range(15))
    from dbt_runtime.failures import Failure

    text = Failure(FailureKind.test_failure, "dbt test --target prod", failed).message()
    assert "... and 5 more (see the summary)" in text
    assert text.count("test.wg.t") == 10


# -- `state` keywords ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "parsed"),
    [
        ("prod:last-success", KeptState(target=Target.prod, keyword="last-success")),
        ("dev:last-failure", KeptState(target=Target.dev, keyword="last-failure")),
        (f"flow-run:{RUN_ID}", KeptState(flow_run_id=RUN_ID)),
        (RUN_ID.upper(), KeptState(flow_run_id=RUN_ID)),
        ("/srv/prod-manifest", Path("/srv/prod-manifest")),
        ("", None),
    ],
)
def test_state_keywords_parse_without_looking_anything_up(
    state: str, parsed: KeptState | Path | None
) -> None:
    assert state_reference(state) == parsed


@pytest.mark.parametrize("state", ["staging:last-success", "prod:latest-success", "prod:last-x"])
def test_unknown_state_keywords_name_the_accepted_forms(state: str) -> None:
    with pytest.raises(InvalidParameter, match=r"parameter 'state'.*prod\|local.*last-success"):
        state_reference(state)


def test_retry_needs_to_know_which_run_to_retry() -> None:
    with pytest.raises(InvalidParameter, match=r"command 'retry' needs the flow run to retry"):
        build_invocation("retry", "prod")


def test_retry_does_not_take_a_selection() -> None:
    with pytest.raises(InvalidParameter, match=r"parameter 'select': `dbt retry` has no"):
        build_invocation("retry", "prod", select=["fct_x"], state=f"flow-run:{RUN_ID}")


def test_retry_from_a_directory_uses_its_run_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_STATE_ROOT", str(tmp_path))
    (tmp_path / "run_results.json").write_text('{"args": {"which": "build"}}')
    invocation = build_invocation("retry", "prod", state=str(tmp_path))
    assert invocation.args == ("retry", "--target", "prod")
    assert invocation.retry_from == tmp_path
