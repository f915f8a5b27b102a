"""Grade one submission inside Gradescope's container: what `run_autograder` runs.

    python3 -m autograder.gradescope.run      (root: $AUTOGRADER_ROOT, default /autograder)

It reads the one notebook in `<root>/submission/`, scores it with the same code as `grade`
(`trusted.runner.run_tests`, the assignment's own `grading.py` from the bundle), and writes
`<root>/results/results.json` (`results`). It always writes that file: for a missing or unreadable
notebook, for a submission that crashes or hangs, when the time budget runs out (a watchdog writes
what was graded so far), and when the grader itself fails. The container's ceilings (`ceilings`:
theoretical and attainable peak, memory bandwidth, caches) are measured in it after the tests, a
second or two: each submission gets a container of its own, and the speed figures are fractions of
its peak.

Student code runs with the one worker policy (`trusted.launch`): in the bubblewrap sandbox when
the container allows it, else as an unprivileged user (uid 65534) with the same limits (one
process, no thread) and first in line for the out-of-memory killer: it cannot touch results.json,
signal the grader or read the grading template. Only where neither works (not root, no
bubblewrap: a local try-out) does it run as the grader's user, with a warning in the log;
run_autograder then still replaces the results of a grader that was killed.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import nbformat

from .. import assignment, ceilings
from ..performance import Performance, read_ceilings
from ..trusted import launch, remote, runner
from .notebook import (ScoredCell, SubmissionError, find_notebook, grading_notebook,
                       read_notebook, written_answers)
from .results import ResultsFile, results_json

DEFAULT_ROOT = "/autograder"
TEMPLATE_DIR = "grading"                 # in the bundle: the template, config.json, grading.py
CONFIG_FILE = "config.json"
DEFAULT_BUDGET = 540.0       # seconds for one submission; Gradescope stops a run at 10 minutes
DEFAULT_TIME_LIMIT = 60.0    # seconds one call of student code may take, as in `grade`
WORKER_MEMORY = 512 * 1024 ** 2          # address space of the student's worker
MAX_NOTE = 300


def log(*parts) -> None:
    """A line for the instructor (Gradescope shows the grader's stdout to staff only).

    Written to the process's real stdout: while a test cell runs, run_tests redirects sys.stdout.
    """
    print(*parts, file=sys.__stdout__ or sys.stdout, flush=True)


def cpu_clock_works() -> bool:
    """Whether another process's CPU-time clock, which timing tests read, can be read here."""
    try:
        clock = remote.process_cpu_clock(os.getpid())
        before = time.clock_gettime(clock)
    except OSError:
        return False
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    return time.clock_gettime(clock) > before


def _kill_children() -> None:
    """Stop the worker (and what it started): each child leads its own process group."""
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    children = [int(pid) for pid in f.read().split()]
            except (OSError, ValueError):
                continue
            for pid in children:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------
# One grading run
# ------------------------------------------------------------------------------------------------
def _setting(config: dict, key: str, variable: str, default: float) -> float:
    value = os.environ.get(variable) or config.get(key) or default
    return float(value)


class Grading:
    def __init__(self, root: Path, started: float):
        self.root = root
        self.started = started
        self.source = root / "source"
        self.results = ResultsFile(root / "results" / "results.json")
        self.config: dict = {}
        self.spec = assignment.Assignment("notebook")
        self.notebook_name = ""
        self.budget = DEFAULT_BUDGET
        self.time_limit = DEFAULT_TIME_LIMIT
        self.template = None
        self.graded: list[ScoredCell] = []
        self.answers: tuple[float, list] | None = None
        self.report = runner.RunReport()  # filled by run_tests, read by the watchdog

    def configure(self) -> None:
        config_path = self.source / TEMPLATE_DIR / CONFIG_FILE
        if config_path.is_file():
            self.config = json.loads(config_path.read_text())
        self.spec = assignment.load(self.source / TEMPLATE_DIR,
                                    self.config.get("assignment", "notebook"))
        self.notebook_name = self.config.get("notebook", self.spec.notebook_file)
        self.budget = _setting(self.config, "budget_seconds", "AUTOGRADER_BUDGET", DEFAULT_BUDGET)
        self.time_limit = _setting(self.config, "time_limit_seconds", "AUTOGRADER_TIME_LIMIT",
                                   DEFAULT_TIME_LIMIT)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def outcomes(self) -> dict:
        return dict(self.report.outcomes)

    def write(self, summary: list[str], missing: str) -> bool:
        perf = Performance(self.report.profile, [asdict(s) for s in self.report.speeds],
                           read_ceilings(self.report.ceilings))
        return self.results.write(results_json(self.spec, self.graded, self.outcomes(), summary,
                                               self.elapsed(), self.answers, missing, perf))

    def load_template(self) -> None:
        self.template = nbformat.read(self.source / TEMPLATE_DIR / self.notebook_name,
                                      as_version=4)
        self.graded = grading_notebook(self.template, {"cells": []}, self.spec).graded
        for cell in self.graded:   # until the submission is read, cells count whole
            cell.split = False
        self.answers = written_answers(self.template, None)

    def expire(self) -> None:
        """The watchdog: the budget is spent. Report what was graded, stop everything."""
        minutes = self.budget / 60
        done = self.write(
            [f"Grading stopped after {self.budget:.0f} s ({minutes:.1f} min), the time allowed "
             f"for one submission. The tests that had finished by then count; the others score "
             f"0. A function that is very slow, or never returns, is the usual cause: the first "
             f"test marked 'not graded' is where grading was when it stopped."],
            f"not graded: grading stopped after {self.budget:.0f} s, before this test finished")
        log(f"watchdog: budget of {self.budget:.0f} s spent; results written: {done}")
        _kill_children()
        os._exit(0)

    def run(self) -> None:
        self.configure()
        log(f"autograder package: {Path(__file__).resolve().parents[1]}")
        log(f"python {platform.python_version()}, {os.cpu_count()} cpu(s), "
              f"budget {self.budget:.0f} s, {self.time_limit:g} s per call")
        if self.config:
            log("bundle:", json.dumps({k: v for k, v in self.config.items()
                                         if k not in ("notebook",)}))
        self.load_template()
        notebook = find_notebook(self.root / "submission", self.notebook_name)
        log(f"submission: {notebook.relative_to(self.root)}")
        submission = read_notebook(notebook)
        self.answers = written_answers(self.template, submission)
        grading = grading_notebook(self.template, submission, self.spec)
        self.graded = grading.graded
        launcher, how = launch.choose(os.environ.get("AUTOGRADER_LAUNCHER", "auto"),
                                      WORKER_MEMORY, log)
        log(f"student code runs as: {how}")
        if not cpu_clock_works():
            log("WARNING: a process's CPU-time clock cannot be read from outside it here "
                "(clock_getcpuclockid): timing tests cannot measure correctly")
        timer = threading.Timer(max(0.0, self.budget - self.elapsed()), self.expire)
        timer.daemon = True
        timer.start()
        try:
            report = runner.run_tests(grading.nb, self.spec, launcher, self.time_limit,
                                      report=self.report)
            self.measure_ceilings()      # after the scores: the budget goes to those first
        finally:
            timer.cancel()
        for grade_id, outcome in report.outcomes.items():
            verdict = "passed" if outcome.passed else f"FAILED {outcome.error}"
            log(f"  {grade_id:<28} {outcome.seconds:7.2f} s  {verdict}")
        loaded = [f"Your cell {cell} raised {e.get('type')} when it was run: "
                  f"{str(e.get('message'))[:MAX_NOTE]}" for cell, e in report.load_errors.items()
                  if cell != self.spec.setup_cell]
        summary = [f"Graded {notebook.name}: {len(self.graded)} tests, "
                   f"{sum(c.points for c in self.graded):g} points."]
        if any(c.split for c in self.graded):
            summary.append("Each test with hidden tests has a visible check without points: the "
                           "test cell you have in your notebook, run by the grader.")
        if any(c.hidden for c in self.graded):
            summary.append("The scored tests that include hidden tests, and so your total, are "
                           "shown after the due date.")
        summary += [*loaded, *grading.notes]
        written = self.write(summary, "not graded: the grader stopped before this test")
        log(f"results written in {self.elapsed():.1f} s: {written}")

    def measure_ceilings(self) -> None:
        """The container's ceilings, for the speed figures; grading goes on without them."""
        if self.spec.profile is None:
            return
        try:
            found = ceilings.measure()
        except Exception as exc:  # noqa: BLE001 - figures without ceilings still read right
            log(f"ceilings not measured: {type(exc).__name__}: {exc}")
            return
        self.report.ceilings = found.to_json()
        log(f"ceilings, measured in {found.seconds:.1f} s: {ceilings.summary(found)}")

    def fail(self, reason: str) -> None:
        scores = ("The tests that finished count, the others score 0." if self.outcomes()
                  else "Every test scores 0.")
        self.write([f"Your submission could not be graded: {reason} {scores}"],
                   f"not graded: {reason}")


def main() -> int:
    started = time.monotonic()
    root = Path(os.environ.get("AUTOGRADER_ROOT", DEFAULT_ROOT))
    grading = Grading(root, started)
    try:
        grading.run()
    except SubmissionError as exc:
        log(f"submission error: {exc}")
        grading.fail(str(exc))
    except BaseException:  # noqa: BLE001 - whatever happens, Gradescope gets a results.json
        traceback.print_exc(file=sys.__stdout__ or sys.stdout)
        grading.fail("the autograder itself failed (the course staff can see why in the "
                     "autograder output; please tell them).")
    (sys.__stdout__ or sys.stdout).flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
