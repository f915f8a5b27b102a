"""results.json, after Gradescope's autograder specification.

* One scored test per graded cell: `max_score` is the cell's points, `score` all or nothing as in
  nbgrader, `output` the failure message (never the cell's source or a traceback) and the timing
  lines. `visibility` is "after_due_date" for a cell with hidden tests, "visible" for the others.
* For each cell with hidden tests, a visible check without points: the part of the cell students
  have in their notebook, run first (the hidden tests run only when it passed), so the cell
  scores exactly as it does whole.
* A 0-point visible entry: the written answers are graded by hand, and which ones are empty.
* A 0-point visible entry with the speed profile, when the assignment has one: GFLOP/s and
  fractions of the container's attainable peak, beside its theoretical peak, memory bandwidth
  and caches.
* `leaderboard`: the assignment's leaderboard figure, lower first, whenever its timing test
  measured it; `extra_data`: the machine that graded, and its ceilings.
* Plain-text formatting everywhere (student text is never rendered as HTML); the grader's stdout,
  with the details of the run, stays hidden from students.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from .. import machine
from ..files import write_atomic
from ..assignment import Assignment
from ..outcomes import TIMING_LINE, failure_message
from ..performance import Performance, explained
from ..notebook import ANSWER_STUB
from .notebook import HIDDEN_PART, ScoredCell


class ResultsFile:
    """results.json, written once (atomically) by the first to get there: run or watchdog."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.written = False

    def write(self, results: dict) -> bool:
        with self.lock:
            if self.written:
                return False
            write_atomic(self.path, json.dumps(results, indent=2, ensure_ascii=False),
                         make_folder=True)
            self.written = True
            return True


def _timing_lines(outcomes) -> list[str]:
    return [m.group(0).strip() for o in outcomes if o is not None
            for m in TIMING_LINE.finditer(o.stdout)]


def _message(outcome, missing: str) -> str:
    if outcome is None:
        return missing
    return failure_message(outcome.outputs()) or "failed"


def _verdict(parts: list, missing: str) -> tuple[bool, str]:
    """(passed, message of the first part that did not pass) over the pieces of one cell."""
    for outcome in parts:
        if outcome is None or not outcome.passed:
            return False, _message(outcome, missing)
    return True, ""


def _output(passed: bool, message: str, timings: list[str]) -> str:
    return "\n".join(["Passed." if passed else f"Failed: {message}", *timings])


def test_entries(cell: ScoredCell, outcomes: dict, missing: str) -> list[dict]:
    """The Gradescope tests of one graded cell: the visible check (if split), then the score."""
    if cell.split:
        public, hidden = outcomes.get(cell.grade_id), outcomes.get(cell.grade_id + HIDDEN_PART)
        parts = [public, hidden]
    else:
        public, parts = None, [outcomes.get(cell.grade_id)]
    passed, message = _verdict(parts, missing)
    entries = []
    if cell.split:
        public_passed, public_message = _verdict([public], missing)
        entries.append({
            "name": f"{cell.title}: the checks in your notebook",
            "status": "passed" if public_passed else "failed",
            "output": _output(public_passed, public_message, _timing_lines([public])),
            "visibility": "visible",
        })
    entries.append({
        "name": cell.title + (" (with hidden tests)" if cell.hidden else ""),
        "score": cell.points if passed else 0.0,
        "max_score": cell.points,
        "output": _output(passed, message, _timing_lines(parts)),
        "visibility": "after_due_date" if cell.hidden else "visible",
        "extra_data": {"grade_id": cell.grade_id,
                       "execution_time": round(sum(o.seconds for o in parts if o is not None), 3)},
    })
    return entries


def answers_entry(points: float, answers: list[tuple[str, bool]]) -> dict:
    lines = [f"The written answers ({points:g} points) are graded by hand by the course staff, "
             f"not by this autograder."]
    lines += [f"{grade_id}: {'answered' if done else 'empty (still ' + repr(ANSWER_STUB) + ')'}"
              for grade_id, done in answers]
    return {"name": "Written answers: graded by hand", "score": 0.0, "max_score": 0.0,
            "output": "\n".join(lines), "visibility": "visible"}


def leaderboard(outcomes: dict, spec: Assignment) -> list[dict]:
    """The assignment's leaderboard figure, when its timing test measured it."""
    board = spec.leaderboard
    for outcome in outcomes.values() if board else []:
        for match in TIMING_LINE.finditer(outcome.stdout):
            if match["name"] == board.timing:
                return [{"name": board.title, "value": round(float(match["value"]), 3),
                         "order": "asc"}]
    return []


def _percent(fraction: float) -> str:
    value = 100 * fraction
    return f"{value:.0f}%" if value >= 10 else f"{value:.2g}%" if value >= 0.01 else "<0.01%"


def performance_entry(perf: Performance | None, spec: Assignment) -> dict | None:
    """A visible entry without points: how close the student's code came to the machine."""
    profile = spec.profile
    if perf is None or perf.profile is None or not perf.profile.seconds or profile is None:
        return None
    focus, names = profile.focus, profile.lines()
    ceilings = perf.machine
    quoted = {name: perf.quoted_size(name, focus) for name, _ in names}
    width = max([len("theoretical peak"), *(len(f"{label} ({n}x{n})") for name, label in names
                                            if (n := quoted[name]))]) + 1
    columns = [max(10, len(label) + 2) for _, label in names]
    lines = [f"Measured by the grader on this container ({machine.summary(machine.describe())}), "
             f"inputs handed over and the result back as in every call it makes (a bare loop "
             f"reads more GFLOP/s). Each fraction is of the attainable peak, so none is above "
             f"100%:"]
    if ceilings and ceilings.theoretical_gflops:
        lines.append(f"  {'theoretical peak':{width}s} {ceilings.theoretical_gflops:9.1f} GFLOP/s  "
                     f"{ceilings.theoretical_text()}")
    if perf.attainable:
        what = ceilings.attainable_text() if ceilings else "the fastest product measured here"
        lines.append(f"  {'attainable peak':{width}s} {perf.attainable:9.1f} GFLOP/s  {'100%':>6s}  "
                     f"{what}")
    for name, label in names:
        n = quoted[name]
        gflops = perf.gflops(name, n) if n else None
        if gflops is not None:
            lines.append(f"  {label + f' ({n}x{n})':{width}s} {gflops:9.3g} GFLOP/s  "
                         f"{_percent(perf.fraction(name, n)):>6s} of the attainable peak")
    if ceilings:
        if ceilings.blas_text():
            lines.append(ceilings.blas_text())
        lines.append(f"Memory bandwidth: {ceilings.bandwidth_gbs:.1f} GB/s, "
                     f"{ceilings.bandwidth_text()}.")
        if ceilings.caches_text():
            lines.append(f"Caches: {ceilings.caches_text()}.")
    lines += ["", *explained(perf, spec), "", "Milliseconds per product:",
              "     n" + "".join(f"{label:>{w}s}" for (_, label), w in zip(names, columns))]
    for n in perf.profile.sizes:
        cells = [perf.profile.seconds.get(name, {}).get(n) for name, _ in names]
        lines.append(f"  {n:4d}" + "".join(f"{s * 1e3:{w}.3f}" if s else f"{'-':>{w}s}"
                                          for s, w in zip(cells, columns)))
    return {"name": "How close to the machine (no points)", "score": 0.0, "max_score": 0.0,
            "output": "\n".join(lines), "visibility": "visible"}


def results_json(spec: Assignment, graded: list[ScoredCell], outcomes: dict, summary: list[str],
                 seconds: float, answers: tuple[float, list] | None, missing: str,
                 perf: Performance | None = None) -> dict:
    tests = [entry for cell in graded for entry in test_entries(cell, outcomes, missing)]
    if answers is not None and answers[1]:
        tests.append(answers_entry(*answers))
    profile_entry = performance_entry(perf, spec)
    if profile_entry and tests:
        tests.append(profile_entry)
    results = {
        "output": "\n".join(summary),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "stdout_visibility": "hidden",
        "execution_time": int(round(seconds)),
        "tests": tests,
    }
    if not tests:
        results["score"] = 0.0
    results["extra_data"] = {"machine": machine.describe()}
    if perf is not None and perf.ceilings is not None:
        results["extra_data"]["ceilings"] = perf.ceilings.to_json()
    board = leaderboard(outcomes, spec)
    if board:
        results["leaderboard"] = board
    return results
