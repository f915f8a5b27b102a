"""Interleaved CPU-time measurement of several pieces of code.

A *sampler* runs its code a given number of times and returns the CPU seconds that took. This module
decides how many calls make a sample long enough, then takes samples of every sampler in turn,
round after round, so that whatever disturbs the machine during the measurement disturbs all of
them alike. It knows nothing of notebooks, students or processes: samplers bring their own clock.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping

Sampler = Callable[[int], float]   # calls -> CPU seconds for that many calls


def local_sampler(fn: Callable, args: tuple = (), kwargs: Mapping | None = None,
                  clock: Callable[[], float] = time.process_time) -> Sampler:
    """Time fn(*args, **kwargs) in this process by its CPU clock."""
    kwargs = dict(kwargs or {})

    def sample(calls: int) -> float:
        start = clock()
        for _ in range(calls):
            fn(*args, **kwargs)
        return clock() - start

    return sample


class ClockError(RuntimeError):
    """A sampler's clock did not advance: nothing can be timed with it."""


def calls_per_sample(sampler: Sampler, min_sample: float, max_calls: int = 1 << 20) -> int:
    """The number of calls whose sample lasts at least `min_sample` seconds (powers of 4)."""
    calls = 1
    while (elapsed := sampler(calls)) < min_sample:
        if calls >= max_calls:
            if elapsed <= 0:
                raise ClockError(f"{calls} calls took no measurable time: the clock is not running")
            break
        calls *= 4
    return calls


def interleaved(samplers: Mapping[str, Sampler], rounds: int = 15,
                min_sample: float = 0.002) -> dict[str, list[float]]:
    """Seconds per call of each sampler, one sample per round each, taken in alternation."""
    for sampler in samplers.values():
        sampler(1)  # warm-up: caches, lazy imports, first-touch page faults
    calls = {name: calls_per_sample(s, min_sample) for name, s in samplers.items()}
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(rounds):
        for name, sampler in samplers.items():
            samples[name].append(sampler(calls[name]) / calls[name])
    return samples
