"""Pure statistics over timing samples (seconds per call). No clocks, no I/O."""
from __future__ import annotations

from collections.abc import Sequence


AGREEMENT = 1.25   # two ratios within this factor of each other agree


def best(samples: Sequence[float]) -> float:
    """The least disturbed sample: noise only ever adds time, so the minimum is the estimate."""
    if not samples:
        raise ValueError("no samples")
    return min(samples)


def ratio(samples: Sequence[float], reference: Sequence[float]) -> float:
    """How many times slower the first is than the reference (below 1: faster)."""
    ref = best(reference)
    if ref <= 0:
        raise ValueError("the reference took no measurable time")
    return best(samples) / ref


def margin(value: float, limit: float, kind: str) -> float:
    """How far a value is inside its limit, as a factor (>1: passes with room; <1: fails)."""
    return limit / value if kind == "at most" else value / limit
