"""run_results.json -> the run summary (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from dbt_runtime.dbt_artifacts import Outcome, outcome
from dbt_runtime.failures import FailureKind, failure_of
from dbt_runtime.summary import first_error_line, summarize

pytestmark = pytest.mark.observability


def result(unique_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "unique_id": unique_id,
        "status": status,
        "execution_time": extra.pop("execution_time", 0.5),
        "adapter_response": extra.pop("adapter_response", {}),
        "message": extra.pop("message", None),
        "failures": extra.pop("failures", None),
        **extra,
    }


RUN_RESULTS: dict[str, Any] = {
    "metadata": {"dbt_version": "1.11.16"},
    "elapsed_time": 12.34,
    "args": {"which": "build", "target": "prod", "select": ["fct_shipments+"], "exclude": []},
    "results": [
        result("seed.wg.raw_brands", "success", adapter_response={"rows_affected": 12},
               message="INSERT 12"),
        result("model.wg.int_depletions_enriched", "error",
               message="Runtime Error in model int_depletions_enriched (models/x.sql)\n"
                       "  Binder Error: Referenced column \"no_such_column\" not found"),
        result("model.wg.fct_depletions", "skipped"),
        result("test.wg.not_null_fct_shipments_id.abc", "fail", failures=3,
               message="Got 3 results, configured to fail if != 0"),
        result("test.wg.unique_dim_brand_code.def", "pass"),
    ],
}  # fmt: skip


def test_one_row_per_result_in_order_with_dbt_statuses() -> None:
    summary = summarize(RUN_RESULTS)
    assert [(r.unique_id, r.type, r.status) for r in summary.rows] == [
        ("seed.wg.raw_brands", "seed", "success"),
        ("model.wg.int_depletions_enriched", "model", "error"),
        ("model.wg.fct_depletions", "model", "skipped"),
        ("test.wg.not_null_fct_shipments_id.abc", "test", "fail"),
        ("test.wg.unique_dim_brand_code.def", "test", "pass"),
    ]


def test_skipped_nodes_stay_skipped_and_are_counted() -> None:
    summary = summarize(RUN_RESULTS)
    assert [r.unique_id for r in summary.skipped] == ["model.wg.fct_depletions"]
    assert summary.counts == {"error": 1, "fail": 1, "pass": 1, "skipped": 1, "success": 1}


def test_failed_rows_carry_the_cause_not_dbts_header_line() -> None:
    failed = {r.unique_id: r.message for r in summarize(RUN_RESULTS).failed}
    assert failed["model.wg.int_depletions_enriched"] == (
        'Binder Error: Referenced column "no_such_column" not found'
    )
    assert failed["test.wg.not_null_fct_shipments_id.abc"] == (
        "3 failing rows: Got 3 results, configured to fail if != 0"
    )


def test_header_names_command_target_selection_version_counts_and_time() -> None:
    header = summarize(RUN_RESULTS).header()
    assert header.startswith("dbt build --target prod | selection: fct_shipments+ | dbt 1.11.16")
    assert "1 error, 1 fail, 1 pass, 1 skipped, 1 success" in header
    assert header.endswith("12.3s")


def test_rows_affected_only_when_the_adapter_reports_it() -> None:
    rows = {r.unique_id: r for r in summarize(RUN_RESULTS).rows}
    assert rows["seed.wg.raw_brands"].rows_affected == 12
    assert rows["model.wg.fct_depletions"].rows_affected is None
    table = summarize(RUN_RESULTS).table()
    assert table[0] == {
        "unique_id": "seed.wg.raw_brands", "type": "seed", "status": "success",
        "seconds": 0.5, "rows_affected": 12, "message": "INSERT 12",
    }  # fmt: skip


def test_markdown_escapes_pipes_so_the_table_keeps_its_columns() -> None:
    doc = dict(RUN_RESULTS, results=[result("model.wg.a", "error", message="a | b\nc")])
    line = summarize(doc).markdown().splitlines()[-1]
    assert line.count(" | ") == 5
    assert "a \\| b" in line


def test_docs_generate_and_missing_args_fall_back_to_what_the_flow_knows() -> None:
    summary = summarize({"results": [], "args": {"which": "generate"}}, target="local")
    assert (summary.command, summary.target, summary.selection) == ("docs generate", "local", "all")
    assert summary.counts == {}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (None, ""),
        ("", ""),
        ("Got 3 results", "Got 3 results"),
        ("Compilation Error in model x (models/x.sql)\n  'foo' is undefined", "'foo' is undefined"),
        ("Database Error\n  relation missing", "relation missing"),
        ("Database Error", "Database Error"),
        ("x" * 400, "x" * 299 + "…"),
    ],
)
def test_first_error_line(message: str | None, expected: str) -> None:
    assert first_error_line(message) == expected


def test_a_partly_built_microbatch_model_fails_the_run_as_dbt_says() -> None:
    # dbt exits non-zero on `partial success` and `dbt retry` re-runs the node: so the run fails,
    # its task run is Failed and parity counts it failed, all from one vocabulary.
    doc = dict(RUN_RESULTS, results=[result("model.wg.fct_events", "partial success")])
    summary = summarize(doc)
    assert [r.unique_id for r in summary.failed] == ["model.wg.fct_events"]
    failure = failure_of("dbt build --target prod", summary, None)
    assert failure is not None and failure.kind is FailureKind.model_error
    assert outcome("partial success") is Outcome.failed
