"""Pure parts of the benchmark harness: size parsing and the median ratio."""

from __future__ import annotations

import pytest

from migration.bench import Measurement, median_ratio, parse_sizes


def test_sizes_come_from_a_space_or_comma_separated_list() -> None:
    assert parse_sizes("100 500 2000") == [100, 500, 2000]
    assert parse_sizes("10,20") == [10, 20]


@pytest.mark.parametrize("bad", ["", "ten", "100 -5", "0"])
def test_bad_sizes_name_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match="BENCH_SIZES"):
        parse_sizes(bad)


def run(mode: str, wall: float, ok: bool = True) -> Measurement:
    return Measurement(mode, wall, wall, 1.0, 100.0, ok)


def test_ratio_is_of_medians_and_ignores_failed_runs() -> None:
    runs = [run("plain", 10), run("flow", 11), run("plain", 12), run("flow", 13)]
    runs += [run("plain", 30), run("flow", 12), run("flow", 99, ok=False)]
    medians, ratio = median_ratio(runs)
    assert medians == {"plain": 12, "flow": 12}
    assert ratio == 1.0


def test_no_ratio_without_both_modes() -> None:
    assert median_ratio([run("plain", 10), run("flow", 5, ok=False)]) == ({"plain": 10}, None)


def test_cpu_ratio_uses_the_cpu_seconds() -> None:
    runs = [Measurement("plain", 50, 50, 20.0, 1, True), Measurement("flow", 40, 40, 22.0, 1, True)]
    assert median_ratio(runs, "cpu_s") == ({"plain": 20.0, "flow": 22.0}, 1.1)
