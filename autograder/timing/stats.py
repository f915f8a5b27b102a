"""Pure statistics over timing samples (seconds per call). No clocks, no I/O."""
from __future__ import annotations

from collections.abc import Sequence

AGREEMENT = 1.25   # two ratios within this factor of each other agree
SETTLED = 3.0      # a ratio this many times past its limit is a verdict: measuring more won't help
SETTLE_SAMPLES = 3  # ... once that many samples of it say so: its first sample can be cold
WELL_WITHIN = 1.25  # a ratio this far inside its limit passes this measurement...
WITHIN_SAMPLES = 5  # ... once that many samples of each side say so


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


def far_past(samples: Sequence[float], reference: Sequence[float], at_most: float,
             factor: float = SETTLED, min_samples: int = SETTLE_SAMPLES) -> bool:
    """Whether the ratio so far is over `factor` times the limit `at_most`, in `min_samples`
    samples or more.

    More samples can only lower the first's best (noise adds time), so this could still turn;
    but honest code measured with the reference never came near three times its limit (README:
    timing figures) except in a single disturbed sample (the first of a new size, cold: once
    12x against a limit of 1.5x), and the best of three disturbed samples is not seen.
    """
    return (len(samples) >= min_samples and bool(reference)
            and ratio(samples, reference) > factor * at_most)


def well_within(samples: Sequence[float], reference: Sequence[float], at_most: float,
                factor: float = WELL_WITHIN, min_samples: int = WITHIN_SAMPLES) -> bool:
    """Whether the ratio so far is `factor` times inside the limit `at_most`, with `min_samples`
    samples or more of each side.

    A disturbed reference sample makes the ratio look better, so one measurement that stops here
    is no verdict on its own: the caller measures again and wants two that agree (a code 1.55x
    over its limit must meet a reference slowed by 1.3x or more in five samples running, twice).
    """
    return (len(samples) >= min_samples and len(reference) >= min_samples
            and ratio(samples, reference) * factor <= at_most)


def far_within(ratio_measured: float, at_most: float, factor: float = SETTLED) -> bool:
    """Whether one measurement's ratio is `factor` times inside the limit `at_most`: a pass
    that a second measurement need not confirm.

    For code over its limit to read this, the reference's best sample would have to be slowed
    `factor` times while the code's was not. A busy machine does not slow a CPU clock that much:
    the reference tiling timed against an honest tiling read 0.85-1.23x in 200 runs with both
    cores held (README: timing figures), and code of the student's spinning over 64 MiB on the
    same core between calls slowed the reference's best sample by 5%.
    """
    return ratio_measured * factor <= at_most

