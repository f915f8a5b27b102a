"""What grading measured of a submission's speed, read back for feedback, the report and Gradescope.

The trusted runner saves it beside each graded notebook (`<notebook>.performance.json`): every
timing test's measurement (seconds per call of both sides, the ratios of the repeated
measurements) and the speed profile (`trusted.profile`: seconds per call of the student's
products, a reference and the machine's one-core peak at a few sizes). From those this module
derives GFLOP/s, the fraction of the peak, a sentence on what the gap means, and the range a
leaderboard figure could take within measurement noise. Nothing here knows of nbgrader.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .timing import stats
from .trusted.profile import PEAK, Profile

SUFFIX = ".performance.json"
FOCUS = 256                          # the size feedback quotes, as the timing tests use
BLOCKED, NUMPY = "matmul_blocked", "matmul_numpy"


@dataclass
class Performance:
    profile: Profile | None = None
    speeds: list[dict] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "Performance | None":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        profile = Profile.from_json(data["profile"]) if data.get("profile") else None
        return cls(profile, list(data.get("speeds") or []))

    # figures --------------------------------------------------------------------------------
    def gflops(self, name: str, size: int = FOCUS) -> float | None:
        return self.profile.gflops(name, size) if self.profile else None

    def fraction(self, name: str, size: int = FOCUS) -> float | None:
        return self.profile.fraction_of_peak(name, size) if self.profile else None

    def speed(self, function: str, reference: str, size: int = FOCUS) -> dict | None:
        """The timing tests' measurement of `function` against `reference` at size x size."""
        return next((s for s in self.speeds if s.get("function") == function
                     and s.get("reference") == reference
                     and [size, size] in s.get("shapes", [])), None)

    def ratio_range(self, function: str, reference: str, size: int = FOCUS
                    ) -> tuple[float, float, float] | None:
        """(ratio, low, high): the figure and what it could have been within noise.

        The repeated measurements of one test agree within their spread; two figures closer
        than `stats.AGREEMENT` are never told apart by the grader's own timing rule either, so
        the range is at least that wide.
        """
        found = self.speed(function, reference, size)
        if not found or not found.get("ratio"):
            return None
        width = max(float(found.get("spread") or 1.0), stats.AGREEMENT) ** 0.5
        ratio = float(found["ratio"])
        return ratio, ratio / width, ratio * width

    # words ----------------------------------------------------------------------------------
    def meaning(self, size: int = FOCUS) -> list[str]:
        """What the figures say, in a sentence or two for the student."""
        lines = []
        peak, blocked = self.gflops(PEAK, size), self.fraction(BLOCKED, size)
        reference = self.fraction(f"{BLOCKED} reference", size)
        if blocked is not None and peak:
            ref = f" (the reference tiling: {reference:.0%})" if reference is not None else ""
            if blocked >= 0.8:
                lines.append(f"Your tiles run at {blocked:.0%} of BLAS at {size}x{size}{ref}: at "
                             f"this size the library's own tricks buy little more; the plot shows "
                             f"how the gap grows with the size.")
            elif blocked >= 0.15:
                lines.append(f"Your tiles run at {blocked:.0%} of BLAS{ref}: the remaining gap is "
                             f"what BLAS does inside a tile (SIMD, packing, register blocking) and "
                             f"Python's cost per tile; see question 3.")
            else:
                lines.append(f"Your tiles run at {blocked:.0%} of BLAS{ref}: most of the time goes "
                             f"to Python, not to multiplying; whole tiles multiplied with @, without "
                             f"per-element loops or copies, close most of that gap (Part 2).")
        numpy = self.fraction(NUMPY, size)
        if numpy is not None and peak:
            if numpy >= 0.7:
                lines.append(f"matmul_numpy runs at the machine's one-core peak "
                             f"({peak:.1f} GFLOP/s at {size}x{size}).")
            else:
                lines.append(f"matmul_numpy reaches only {numpy:.0%} of the one-core peak: look "
                             f"for copies or dtype conversions around a @ b.")
        if self.profile:
            lines += self.profile.notes
        return lines
