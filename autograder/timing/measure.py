"""Interleaved CPU-time measurement of several pieces of code.

A *sampler* runs its code a given number of times and returns the CPU seconds that took. This module
decides how many calls make a sample long enough, then takes samples of every sampler in turn,
round after round, so that whatever disturbs the machine during the measurement disturbs all of
them alike. It stops early when the caller's `stop` says the outcome is settled, or when the
samples have used the CPU `budget`. It knows nothing of notebooks, students or processes:
samplers bring their own clock.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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


@dataclass
class Measurement:
    """Seconds per call of each sampler, one sample per round each; why it ended, if early."""
    samples: dict[str, list[float]]
    stopped: str = ""                   # "" (all rounds), "budget", or what `stop` said
    spent: float = 0.0                  # CPU seconds of every sample taken, warm-ups included
    calls: dict[str, int] = field(default_factory=dict)


def calls_per_sample(sampler: Sampler, min_sample: float,
                     max_calls: int = 1 << 20) -> tuple[int, float]:
    """(calls, seconds): the number of calls whose sample lasts at least `min_sample` seconds
    (a power of 2: a sample lasts less than twice `min_sample`), and how long that last sample
    took."""
    calls = 1
    while (elapsed := sampler(calls)) < min_sample:
        if calls >= max_calls:
            if elapsed <= 0:
                raise ClockError(f"{calls} calls took no measurable time: the clock is not running")
            break
        calls *= 2
    return calls, elapsed


def interleaved(samplers: Mapping[str, Sampler], rounds: int = 15, min_sample: float = 0.002,
                stop: Callable[[dict[str, list[float]]], str] | None = None,
                budget: float | None = None, warm_up: bool = True,
                calls: Mapping[str, int] | None = None) -> Measurement:
    """Sample each sampler once per round, in the mapping's order, round after round.

    Every sampler is first warmed up (one call: caches, lazy imports, first-touch page faults) and
    its calls per sample found, in turn; the sample that settles the number of calls is its first
    sample. `warm_up=False` leaves out the warm-up call, for code the caller has just called on
    such inputs; `calls` gives the calls per sample an earlier measurement of the same samplers
    found, and those samplers are neither warmed up nor searched again. After every sample,
    `stop(samples)` may end the measurement by saying why (any non-empty text, kept in
    `stopped`); so does spending more than `budget` CPU seconds in all.
    """
    result = Measurement({name: [] for name in samplers})
    known = dict(calls or {})

    def done(seconds: float) -> bool:
        result.spent += seconds
        if stop is not None and all(result.samples.values()) and (why := stop(result.samples)):
            result.stopped = why
        elif budget is not None and result.spent > budget:
            result.stopped = "budget"
        return bool(result.stopped)

    for name, sampler in samplers.items():
        if name in known:
            result.calls[name] = known[name]
            continue
        if warm_up and done(sampler(1)):
            return result
        n, seconds = calls_per_sample(sampler, min_sample)
        result.calls[name] = n
        result.samples[name].append(seconds / n)
        if done(seconds):
            return result
    for _ in range(rounds):
        for name, sampler in samplers.items():
            if len(result.samples[name]) >= rounds:
                continue
            seconds = sampler(result.calls[name])
            result.samples[name].append(seconds / result.calls[name])
            if done(seconds):
                return result
    return result
    return result
