"""Pure parts of the benchmark harness: size parsing, medians and ratios, per-node figures."""

from __future__ import annotations

import os

import pytest

from migration.bench import (
    Measurement,
    marginal_per_node_ms,
    median_ratio,
    p95,
    parse_repeats,
    parse_sizes,
    process_group_cpu_seconds,
    size_summary,
)


def test_sizes_come_from_a_space_or_comma_separated_list() -> None:
    assert parse_sizes("100 500 2000") == [100, 500, 2000]
    assert parse_sizes("10,20") == [10, 20]


@pytest.mark.parametrize("bad", ["", "ten", "100 -5", "0"])
def test_bad_sizes_name_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match="BENCH_SIZES"):
        parse_sizes(bad)


def run(mode: str, wall: float, ok: bool = True) -> Measurement:
    return Measurement(mode, wall, None, 1.0, 100.0, ok)


def test_ratio_is_of_medians_and_ignores_failed_runs() -> None:
    runs = [run("plain", 10), run("flow", 11), run("plain", 12), run("flow", 13)]
    runs += [run("plain", 30), run("flow", 12), run("flow", 99, ok=False)]
    medians, ratio = median_ratio(runs)
    assert medians == {"plain": 12, "flow": 12}
    assert ratio == 1.0


def test_no_ratio_without_both_modes() -> None:
    assert median_ratio([run("plain", 10), run("flow", 5, ok=False)]) == ({"plain": 10}, None)


def test_cpu_ratio_uses_the_cpu_seconds() -> None:
    runs = [
        Measurement("plain", 50, None, 20.0, 1, True),
        Measurement("flow", 40, 39, 22.0, 1, True),
    ]
    assert median_ratio(runs, "cpu_s") == ({"plain": 20.0, "flow": 22.0}, 1.1)


def test_per_node_figures_divide_the_difference_of_medians_by_the_nodes() -> None:
    runs = [
        Measurement("plain", 30.0, None, 28.0, 1, True, server_cpu_s=0.1),
        Measurement("flow", 33.0, 31.0, 30.0, 1, True, server_cpu_s=4.1, visibility_p95_s=0.4),
        Measurement("plain", 32.0, None, 28.0, 1, True, server_cpu_s=0.1),
        Measurement("flow", 34.0, 32.0, 31.0, 1, True, server_cpu_s=4.1, visibility_p95_s=0.9),
    ]
    size = size_summary(500, 1000, runs)
    assert size["median_wall_s"] == {"plain": 31.0, "flow": 33.5}
    assert size["per_node_overhead_ms"] == 2.5  # (33.5 - 31) s / 1000 nodes
    assert size["per_node_client_cpu_ms"] == 2.5
    assert size["per_node_server_cpu_ms"] == 4.0
    assert size["wall_spread_s"] == {"plain": [30.0, 32.0], "flow": [33.0, 34.0]}
    assert size["visibility_p95_s"] == 0.9  # the worst run's
    assert size["flow_outside_call_s"] == 2.0  # imports and exit: wall - flow call


def test_the_marginal_cost_per_node_cancels_what_every_run_pays_once() -> None:
    # 4 s per run whatever the size (imports, exit), plus 1 ms per node.
    sizes = {
        str(models): {
            "nodes": nodes,
            "median_wall_s": {"plain": nodes / 100, "flow": nodes / 100 + 4 + nodes / 1000},
        }
        for models, nodes in ((500, 1000), (2000, 4000))
    }
    assert marginal_per_node_ms(sizes) == {"1000-4000": 1.0}
    assert marginal_per_node_ms({"500": sizes["500"]}) == {}


def test_p95_stays_within_the_values() -> None:
    assert p95([]) is None
    assert p95([0.5]) == 0.5
    assert p95([float(i) for i in range(1, 101)]) == 95.05


def test_cpu_of_a_process_group_counts_this_process() -> None:
    assert process_group_cpu_seconds(None) is None
    assert process_group_cpu_seconds(os.getpgid(0)) > 0  # pytest itself has used CPU


def test_repeats_are_one_count_or_one_per_size() -> None:
    assert parse_repeats("3", [100, 500, 2000]) == [3, 3, 3]
    assert parse_repeats("5 2", [500, 2000]) == [5, 2]


@pytest.mark.parametrize("bad", ["", "five", "5 2 1", "0"])
def test_bad_repeats_name_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match="BENCH_REPEATS"):
        parse_repeats(bad, [500, 2000])
