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


def test_samplers_alternate_and_samples_reach_the_minimum_length():
    order: list[str] = []

    def sampler(name: str, per_call: float):
        def sample(calls: int) -> float:
            order.append(name)
            return calls * per_call
        return sample

    samples = measure.interleaved({"a": sampler("a", 0.001), "b": sampler("b", 0.0001)},
                                  rounds=3, min_sample=0.002)
    assert samples == {"a": [0.001] * 3, "b": [0.0001] * 3}
    assert order[-6:] == ["a", "b"] * 3   # rounds alternate a, b, a, b...
    assert measure.calls_per_sample(sampler("b", 0.0001), 0.002) == 64   # 4**3 >= 20 calls


def test_a_clock_that_does_not_run_is_refused():
    with pytest.raises(measure.ClockError, match="clock is not running"):
        measure.calls_per_sample(lambda calls: 0.0, 0.002, max_calls=64)


def test_local_sampler_counts_cpu_time_of_real_work():
    spent = measure.local_sampler(lambda: sum(range(200_000)))(5)
    assert spent > 0
