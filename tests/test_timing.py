"""The timing package: pure statistics, and the interleaving that calls samplers."""
from __future__ import annotations

import pytest

from autograder.timing import measure, stats


def test_statistics():
    assert stats.best([3.0, 1.5, 2.0]) == 1.5
    assert stats.ratio([4.0, 3.0], [1.5, 2.0]) == 2.0
    assert stats.margin(2.0, 2.5, "at most") == 1.25
    assert stats.margin(200.0, 100.0, "at least") == 2.0
    with pytest.raises(ValueError):
        stats.best([])
    with pytest.raises(ValueError):
        stats.ratio([1.0], [0.0])


def test_a_ratio_is_settled_only_far_past_its_limit_in_three_samples():
    assert stats.far_past([31.0] * 3, [1.0], at_most=10)        # 31x against a limit of 10x
    assert not stats.far_past([29.0] * 3, [1.0], at_most=10)    # could still come down
    assert not stats.far_past([], [1.0], at_most=10)            # nothing measured yet
    assert stats.far_past([0.05] * 3, [1.0], at_most=0.01)      # a speedup of 20 against 100
    # One sample, however far past, is not a verdict: a single cold or disturbed one happens.
    assert not stats.far_past([120.0, 80.0], [1.0], at_most=10)
    assert not stats.far_past([120.0, 80.0, 9.0], [1.0], at_most=10)


def test_a_pass_stops_well_within_in_five_samples_and_is_far_within_at_three_times():
    assert stats.well_within([1.0] * 5, [1.0] * 5, at_most=1.25)
    assert not stats.well_within([1.0] * 4, [1.0] * 5, at_most=1.25)   # too few samples yet
    assert not stats.well_within([1.0] * 5, [1.0] * 5, at_most=1.2)
    assert stats.far_within(0.5, at_most=1.5) and not stats.far_within(0.51, at_most=1.5)


def _sampler(name: str, per_call: float, order: list[str]):
    def sample(calls: int) -> float:
        order.append(name)
        return calls * per_call
    return sample


def test_samplers_alternate_and_samples_reach_the_minimum_length():
    order: list[str] = []
    result = measure.interleaved({"a": _sampler("a", 0.001, order),
                                  "b": _sampler("b", 0.0001, order)}, rounds=3, min_sample=0.002)
    assert result.samples == {"a": [0.001] * 3, "b": [0.0001] * 3}
    assert result.calls == {"a": 2, "b": 32} and result.stopped == ""
    assert order[-4:] == ["a", "b"] * 2   # rounds alternate a, b, a, b...
    assert measure.calls_per_sample(_sampler("b", 0.0001, []), 0.002) == (32, pytest.approx(0.0032))


def test_measuring_stops_once_settled_and_at_the_budget():
    order: list[str] = []
    settled = measure.interleaved({"ref": _sampler("ref", 0.001, order),
                                   "slow": _sampler("slow", 1.0, order)}, rounds=15,
                                  stop=lambda s: "settled" * stats.far_past(s["slow"], s["ref"],
                                                                            at_most=10))
    # Warm-up and first sample of each, then two more rounds: three samples settle it.
    assert settled.stopped == "settled" and settled.samples["slow"] == [1.0] * 3
    assert order.count("slow") == 4

    spent = measure.interleaved({"a": _sampler("a", 0.5, [])}, rounds=15, budget=2.0)
    # warm-up 0.5 s, then samples of 0.5 s: the one that goes past 2 s is kept, and it stops.
    assert spent.stopped == "budget" and len(spent.samples["a"]) == 4
    assert spent.spent == pytest.approx(2.5)


def test_a_clock_that_does_not_run_is_refused():
    with pytest.raises(measure.ClockError, match="clock is not running"):
        measure.calls_per_sample(lambda calls: 0.0, 0.002, max_calls=64)


def test_local_sampler_counts_cpu_time_of_real_work():
    spent = measure.local_sampler(lambda: sum(range(200_000)))(5)
    assert spent > 0


def test_a_measurement_can_skip_the_warm_up_and_reuse_the_calls_per_sample():
    order: list[str] = []
    samplers = {"a": _sampler("a", 0.001, order), "b": _sampler("b", 0.0001, order)}
    first = measure.interleaved(samplers, rounds=3, min_sample=0.002, warm_up=False)
    # No warm-up call: a's search is 1 then 2 calls, b's 1, 2, ... 32; then two more rounds.
    assert order == ["a"] * 2 + ["b"] * 6 + ["a", "b"] * 2 and first.calls == {"a": 2, "b": 32}
    order.clear()
    again = measure.interleaved(samplers, rounds=3, min_sample=0.002, calls=first.calls)
    assert order == ["a", "b"] * 3 and again.samples == first.samples

