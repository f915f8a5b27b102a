"""What grading measured of a submission's speed, read back for feedback, the report and Gradescope.

The trusted runner saves it beside each graded notebook (`<notebook>.performance.json`): every
timing test's measurement (seconds per call of both sides, the ratios of the repeated
measurements) and the speed profile (`trusted.profile`: seconds per call of the student's
products, a reference and the machine's one-core peak at a few sizes). From those this module
derives GFLOP/s, the fraction of the peak, and the range a leaderboard figure could take within
measurement noise; what the figures mean for a student is the assignment's to say
(`Assignment.explain`). Nothing here knows of nbgrader.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .timing import stats
from .trusted.profile import Profile

SUFFIX = ".performance.json"


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

    def gflops(self, name: str, size: int) -> float | None:
        return self.profile.gflops(name, size) if self.profile else None

    def fraction(self, name: str, size: int) -> float | None:
        """`name`'s GFLOP/s over the machine's one-core peak at size x size."""
        return self.profile.fraction_of_peak(name, size) if self.profile else None

    def speed(self, function: str, reference: str) -> dict | None:
        """A timing test's measurement of `function` against `reference` (the first one)."""
        return next((s for s in self.speeds if s.get("function") == function
                     and s.get("reference") == reference), None)

    def ratio_range(self, function: str, reference: str) -> tuple[float, float, float] | None:
        """(ratio, low, high): the figure and what it could have been within noise.

        The repeated measurements of one test agree within their spread; two figures closer
        than `stats.AGREEMENT` are never told apart by the grader's own timing rule either, so
        the range is at least that wide.
        """
        found = self.speed(function, reference)
        if not found or not found.get("ratio"):
            return None
        width = max(float(found.get("spread") or 1.0), stats.AGREEMENT) ** 0.5
        ratio = float(found["ratio"])
        return ratio, ratio / width, ratio * width


def explained(perf: Performance | None, spec) -> list[str]:
    """The assignment's sentences on what the figures mean, then the profile's own notes."""
    if perf is None:
        return []
    lines = list(spec.explain(perf)) if spec.explain and perf.profile else []
    return lines + (perf.profile.notes if perf.profile else [])
