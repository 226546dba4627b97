"""dbt_runtime/parity.py without dbt or a server: classification, explanations, exit codes,
selector evaluation and the report text, on small hand-written artifacts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dbt_runtime.dbt_artifacts import RunArtifacts, parse_manifest, parse_run_results
from dbt_runtime.parity import (
    EXIT_DIFFERENT,
    EXIT_OK,
    Kind,
    compare,
    differences_of,
    render_markdown,
    select_nodes,
)
from tests.fakes.dbt_artifacts import manifest, node, run_results

pytestmark = pytest.mark.parity

SEED = node("raw_brands", "seed")
STG = node("stg_brands", depends_on=[SEED["unique_id"]], tags=["finance"])
EPH = node("int_prices", materialized="ephemeral", depends_on=[STG["unique_id"]])
DIM = node("dim_brand", materialized="table", depends_on=[STG["unique_id"], EPH["unique_id"]])
FCT = node("fct_sales", materialized="table", depends_on=[DIM["unique_id"]])
TEST_DIM = node("unique_dim_brand_id", "test", depends_on=[DIM["unique_id"]])
TEST_REL = node("rel_fct_dim", "test", depends_on=[FCT["unique_id"], DIM["unique_id"]])
NODES = [SEED, STG, EPH, DIM, FCT, TEST_DIM, TEST_REL]
ALL_OK = {
    SEED["unique_id"]: "success",
    STG["unique_id"]: "success",
    DIM["unique_id"]: "success",
    FCT["unique_id"]: "success",
    TEST_DIM["unique_id"]: "pass",
    TEST_REL["unique_id"]: "pass",
}


def uid(n: dict[str, Any]) -> str:
    return str(n["unique_id"])


def side(
    statuses: dict[str, str],
    nodes: list[dict[str, Any]] = NODES,
    *,
    steps: list[dict[str, Any]] | None = None,
    disabled: list[dict[str, Any]] = (),  # type: ignore[assignment]
    **args: Any,
) -> RunArtifacts:
    invocations = steps or [run_results(statuses, **args)]
    return RunArtifacts(
        origin="test",
        manifest=parse_manifest(manifest(*nodes, disabled=disabled), "manifest.json"),
        invocations=tuple(
            parse_run_results(json.loads(json.dumps(i)), f"step {n}")
            for n, i in enumerate(invocations)
        ),
    )


BASELINE = side(ALL_OK)


def test_identical_runs_are_at_parity():
    report = compare(BASELINE, side(ALL_OK))
    assert report.differences == ()
    assert report.matching == len(ALL_OK)
    assert report.exit_code == EXIT_OK
    assert report.verdict == "AT PARITY: identical node sets and statuses"


def test_a_model_added_since_the_baseline_is_explained():
    new = node("mart_new", depends_on=[uid(DIM)])
    report = compare(BASELINE, side({**ALL_OK, uid(new): "success"}, [*NODES, new]))
    [difference] = report.differences
    assert (difference.unique_id, difference.kind, difference.explained) == (
        uid(new),
        Kind.added,
        True,
    )
    assert report.exit_code == EXIT_OK


def test_a_model_removed_since_the_baseline_is_explained():
    nodes = [n for n in NODES if n is not FCT and n is not TEST_REL]
    statuses = {k: v for k, v in ALL_OK.items() if k not in (uid(FCT), uid(TEST_REL))}
    report = compare(BASELINE, side(statuses, nodes))
    assert {d.kind for d in report.differences} == {Kind.removed}
    assert set(differences_of(report, Kind.removed)) == {uid(FCT), uid(TEST_REL)}
    assert report.exit_code == EXIT_OK


def test_a_model_disabled_in_the_candidate_project_is_explained():
    off = dict(FCT, config={"materialized": "table", "enabled": False})
    nodes = [n for n in NODES if n is not FCT and n is not TEST_REL]
    statuses = {k: v for k, v in ALL_OK.items() if k not in (uid(FCT), uid(TEST_REL))}
    report = compare(BASELINE, side(statuses, nodes, disabled=[off]))
    by_id = {d.unique_id: d for d in report.differences}
    assert by_id[uid(FCT)].kind is Kind.disabled
    assert "disabled in the candidate's project" in by_id[uid(FCT)].explanation
    assert report.exit_code == EXIT_OK


def test_a_model_made_ephemeral_is_explained():
    baseline_nodes = [dict(n, config={"materialized": "view"}) if n is EPH else n for n in NODES]
    baseline = side({**ALL_OK, uid(EPH): "success"}, baseline_nodes)
    report = compare(baseline, side(ALL_OK))
    [difference] = report.differences
    assert (difference.unique_id, difference.kind) == (uid(EPH), Kind.ephemeral)
    assert report.exit_code == EXIT_OK


def test_ephemeral_models_never_count_as_differences():
    # EPH is ephemeral on both sides: in neither run_results, so not a difference at all.
    assert uid(EPH) not in ALL_OK
    assert compare(BASELINE, side(ALL_OK)).differences == ()


def test_tests_not_run_by_dbt_run_are_explained_by_the_command():
    models = {k: v for k, v in ALL_OK.items() if k.startswith("model.")}
    report = compare(BASELINE, side(models, which="run"))
    kinds = {d.unique_id: d.kind for d in report.differences}
    assert kinds == {
        uid(SEED): Kind.command,
        uid(TEST_DIM): Kind.command,
        uid(TEST_REL): Kind.command,
    }
    explanation = next(d.explanation for d in report.differences if d.unique_id == uid(TEST_DIM))
    assert explanation == "the candidate ran `dbt run`, which does not execute tests"
    assert report.exit_code == EXIT_OK


def test_nodes_excluded_by_the_candidate_selection_are_explained():
    statuses = {k: v for k, v in ALL_OK.items() if k not in (uid(FCT), uid(TEST_REL))}
    report = compare(BASELINE, side(statuses, exclude=["fct_sales+"]))
    assert {d.unique_id: d.kind for d in report.differences} == {
        uid(FCT): Kind.selection,
        uid(TEST_REL): Kind.selection,
    }
    assert "`dbt build --exclude fct_sales+`" in report.differences[0].explanation
    assert report.exit_code == EXIT_OK


def test_a_node_the_selection_includes_but_that_did_not_run_is_unexplained():
    statuses = {k: v for k, v in ALL_OK.items() if k != uid(FCT)}
    report = compare(BASELINE, side(statuses))
    [difference] = report.differences
    assert (difference.unique_id, difference.kind, difference.explained) == (
        uid(FCT),
        Kind.missing,
        False,
    )
    assert report.exit_code == EXIT_DIFFERENT
    assert report.verdict == "NOT AT PARITY: 1 unexplained difference(s)"


def test_an_extra_node_the_baseline_selection_included_is_unexplained():
    baseline = side({k: v for k, v in ALL_OK.items() if k != uid(STG)})
    report = compare(baseline, side(ALL_OK))
    assert [(d.kind, d.explained) for d in report.differences] == [(Kind.extra, False)]
    assert report.exit_code == EXIT_DIFFERENT


def test_a_selector_this_tool_cannot_evaluate_is_not_taken_as_an_explanation():
    statuses = {k: v for k, v in ALL_OK.items() if k not in (uid(FCT), uid(TEST_REL))}
    report = compare(BASELINE, side(statuses, select=["state:modified+"]))
    assert {(d.kind, d.explained) for d in report.differences} == {(Kind.selection, False)}
    assert "cannot evaluate" in report.differences[0].explanation
    assert report.exit_code == EXIT_DIFFERENT


def test_a_failed_candidate_node_fails_parity_and_explains_the_skips_it_caused():
    statuses = {
        **ALL_OK,
        uid(DIM): "error",
        uid(FCT): "skipped",
        uid(TEST_DIM): "skipped",
        uid(TEST_REL): "skipped",
    }
    report = compare(BASELINE, side(statuses))
    kinds = {d.unique_id: (d.kind, d.explained) for d in report.differences}
    assert kinds[uid(DIM)] == (Kind.failed, False)
    assert kinds[uid(FCT)] == (Kind.skipped_upstream, True)
    skipped = next(d for d in report.differences if d.unique_id == uid(TEST_REL))
    assert skipped.explanation == f"skipped: upstream failed: {uid(DIM)}"
    assert report.candidate_failures == (uid(DIM),)
    assert report.exit_code == EXIT_DIFFERENT
    assert report.verdict == "NOT AT PARITY: 1 candidate node(s) failed"


def test_a_failed_test_in_the_candidate_fails_parity_even_when_new():
    new_test = node("new_check", "test", depends_on=[uid(DIM)])
    report = compare(BASELINE, side({**ALL_OK, uid(new_test): "fail"}, [*NODES, new_test]))
    assert [(d.unique_id, d.kind) for d in report.differences] == [(uid(new_test), Kind.failed)]
    assert report.exit_code == EXIT_DIFFERENT


def test_a_skip_without_failed_upstream_is_unexplained():
    report = compare(BASELINE, side({**ALL_OK, uid(FCT): "skipped"}))
    assert [(d.kind, d.explained) for d in report.differences] == [(Kind.status_changed, False)]
    assert report.exit_code == EXIT_DIFFERENT


@pytest.mark.parametrize(
    ("status", "hint"),
    [("warn", "the test now warns"), ("reused", "reused the current relation")],
)
def test_both_succeeded_with_a_different_status_is_explained(status: str, hint: str):
    target = TEST_DIM if status == "warn" else DIM
    report = compare(BASELINE, side({**ALL_OK, uid(target): status}))
    [difference] = report.differences
    assert difference.kind is Kind.status_changed and difference.explained
    assert hint in difference.explanation
    assert report.exit_code == EXIT_OK


def test_dbt_cloud_steps_combine_and_freshness_is_not_a_build():
    seed = run_results({uid(SEED): "success"}, which="seed")
    models = run_results({k: v for k, v in ALL_OK.items() if k.startswith("model.")}, which="run")
    tests = run_results({uid(TEST_DIM): "pass", uid(TEST_REL): "pass"}, which="test")
    freshness = run_results({"source.wg.raw.brands": "error"}, which="source-freshness")
    baseline = side({}, steps=[freshness, seed, models, tests])
    assert set(baseline.results()) == set(ALL_OK)
    report = compare(baseline, side(ALL_OK))
    assert report.differences == ()
    assert report.exit_code == EXIT_OK


def test_a_later_step_result_replaces_an_earlier_one():
    first = run_results({uid(DIM): "error"}, which="run")
    again = run_results(ALL_OK, which="build")
    assert side({}, steps=[first, again]).results()[uid(DIM)].status == "success"


def test_report_names_every_difference_and_its_explanation():
    statuses = {k: v for k, v in ALL_OK.items() if k not in (uid(FCT), uid(TEST_REL))}
    statuses[uid(DIM)] = "error"
    report = compare(BASELINE, side(statuses, exclude=["fct_sales+"]))
    text = render_markdown(report)
    assert text.startswith("# Parity: NOT AT PARITY: 1 candidate node(s) failed")
    assert "Differences: 3 (2 explained, 1 unexplained). Candidate failures: 1." in text
    assert text.index("## Unexplained differences") < text.index("## Explained differences")
    assert f"- `{uid(DIM)}` (model, success -> error): failed in the candidate" in text
    assert f"- `{uid(FCT)}` (model, success -> -): outside the candidate's selection" in text
    data = json.loads(json.dumps(report.to_json()))
    assert data["exit_code"] == EXIT_DIFFERENT
    assert {d["unique_id"] for d in data["differences"]} == {uid(DIM), uid(FCT), uid(TEST_REL)}


SELECTOR_MANIFEST = parse_manifest(manifest(*NODES), "manifest.json")


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("dim_brand", {uid(DIM)}),
        ("dim_brand+", {uid(DIM), uid(FCT), uid(TEST_DIM), uid(TEST_REL)}),
        ("+dim_brand", {uid(SEED), uid(STG), uid(EPH), uid(DIM)}),
        ("1+dim_brand", {uid(STG), uid(EPH), uid(DIM)}),
        ("dim_brand+1", {uid(DIM), uid(FCT), uid(TEST_DIM), uid(TEST_REL)}),
        ("@fct_sales", {uid(SEED), uid(STG), uid(EPH), uid(DIM), uid(FCT), uid(TEST_REL)}),
        ("tag:finance", {uid(STG)}),
        ("tag:finance+,resource_type:model", {uid(STG), uid(EPH), uid(DIM), uid(FCT)}),
        ("path:models/fct_sales.sql", {uid(FCT)}),
        ("resource_type:seed", {uid(SEED)}),
        ("wg.stg_*", {uid(STG)}),
    ],
)
def test_selectors(term: str, expected: set[str]):
    assert select_nodes(SELECTOR_MANIFEST, term) == expected


def test_unsupported_selector_methods_are_reported_as_unknown():
    assert select_nodes(SELECTOR_MANIFEST, "state:modified+") is None
    assert select_nodes(SELECTOR_MANIFEST, "config.materialized:table") is None
