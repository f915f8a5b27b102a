"""What grading measured of a submission's speed, read back for feedback, the report and Gradescope.

The trusted runner saves it beside each graded notebook (`<notebook>.performance.json`): every
timing test's measurement (seconds per call of both sides, the ratios of the repeated
measurements), the speed profile (`trusted.profile`: seconds per call of the student's products,
their references and NumPy's product through the grader's call path at a few sizes), and the
grading machine's ceilings (`ceilings`: theoretical and attainable peak, memory bandwidth,
caches). From those this module derives GFLOP/s, the fraction of the attainable peak, and the
range a leaderboard figure could take within measurement noise; what the figures mean for a
student is the assignment's to say (`Assignment.explain`). Nothing here knows of nbgrader.

The attainable peak of a record is at least every speed measured in it (`Ceilings.raised_to`),
and the theoretical peak at least that: no fraction of the peak exceeds 100%.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .ceilings import Ceilings
from .timing import stats
from .trusted.profile import Profile

SUFFIX = ".performance.json"


def arithmetic_intensity(n: int) -> float:
    """FLOP per byte of an n x n float32 product's compulsory traffic: 2 n^3 flops over its
    three matrices, 3 n^2 x 4 bytes, moved once."""
    return 2.0 * n ** 3 / (3 * n * n * 4)


@dataclass
class Performance:
    profile: Profile | None = None
    speeds: list[dict] = field(default_factory=list)
    ceilings: Ceilings | None = None        # of the machine, as measured there

    @classmethod
    def read(cls, path: Path) -> "Performance | None":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        profile = Profile.from_json(data["profile"]) if data.get("profile") else None
        return cls(profile, list(data.get("speeds") or []), read_ceilings(data.get("ceilings")))

    def gflops(self, name: str, size: int) -> float | None:
        return self.profile.gflops(name, size) if self.profile else None

    @property
    def machine(self) -> Ceilings | None:
        """The machine's ceilings, raised to the fastest product this record measured."""
        best = self.profile.best() if self.profile else None
        if self.ceilings is None:
            return None
        if best is None:
            return self.ceilings
        gflops, name, n = best
        label = self.profile.labels.get(name) or name
        return self.ceilings.raised_to(gflops, f"{label} at {n}x{n}")

    @property
    def attainable(self) -> float | None:
        """GFLOP/s of the attainable peak: the machine's, or at least the fastest figure here."""
        machine = self.machine
        best = self.profile.best() if self.profile else None
        found = max(machine.attainable_gflops if machine else 0.0, best[0] if best else 0.0)
        return found or None

    def fraction(self, name: str, size: int) -> float | None:
        """`name`'s GFLOP/s at size x size over the attainable peak (at most 1)."""
        mine, peak = self.gflops(name, size), self.attainable
        return None if mine is None or not peak else mine / peak

    def quoted_size(self, name: str, focus: int) -> int | None:
        """The size a figure of `name` is quoted at: `focus`, else the largest it was timed at."""
        by_size = self.profile.seconds.get(name, {}) if self.profile else {}
        if focus in by_size:
            return focus
        return max(by_size) if by_size else None

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


def read_ceilings(data) -> Ceilings | None:
    """Ceilings from their JSON, None when absent or of another version."""
    try:
        return Ceilings.from_json(data) if data else None
    except (ValueError, TypeError):
        return None


def explained(perf: Performance | None, spec) -> list[str]:
    """The assignment's sentences on what the figures mean, then the profile's own notes."""
    if perf is None:
        return []
    lines = list(spec.explain(perf)) if spec.explain and perf.profile else []
    return lines + (perf.profile.notes if perf.profile else [])
