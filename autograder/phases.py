"""Where grading's time goes: wall and CPU seconds of named phases.

CPU is this process's own plus that of its child processes reaped during the phase
(`RUSAGE_CHILDREN`): a kernel or worker that exits within a phase is counted there, one still
running is counted when it exits. Phases add up when a name is used again.
"""
from __future__ import annotations

import resource
import time
from contextlib import contextmanager

SUFFIX = ".phases.json"        # beside the graded notebook, as nbgrader writes its outputs


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Phases:
    def __init__(self, seconds: dict[str, list[float]] | None = None):
        self.seconds: dict[str, list[float]] = dict(seconds or {})   # name -> [wall, cpu]

    def add(self, name: str, wall: float, cpu: float) -> None:
        found = self.seconds.setdefault(name, [0.0, 0.0])
        found[0] = round(found[0] + wall, 4)
        found[1] = round(found[1] + cpu, 4)

    @contextmanager
    def timed(self, name: str):
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, cpu_seconds() - cpu)

    def total(self) -> tuple[float, float]:
        return (sum(w for w, _ in self.seconds.values()), sum(c for _, c in self.seconds.values()))

    def merged(self, other: "Phases") -> "Phases":
        out = Phases(self.seconds)
        for name, (wall, cpu) in other.seconds.items():
            out.add(name, wall, cpu)
        return out


def table(phases: Phases, title: str = "phase") -> list[str]:
    """The phases as aligned lines, largest wall time first, with each one's share."""
    total_wall = sum(w for w, _ in phases.seconds.values()) or 1.0
    width = max([len(title)] + [len(n) for n in phases.seconds])
    lines = [f"{title:<{width}}  {'wall s':>8}  {'cpu s':>8}  {'share':>6}"]
    for name, (wall, cpu) in sorted(phases.seconds.items(), key=lambda item: -item[1][0]):
        lines.append(f"{name:<{width}}  {wall:8.2f}  {cpu:8.2f}  {wall / total_wall:6.1%}")
    wall, cpu = phases.total()
    lines.append(f"{'total':<{width}}  {wall:8.2f}  {cpu:8.2f}")
    return lines
