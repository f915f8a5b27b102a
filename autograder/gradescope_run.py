"""Grade one submission inside Gradescope's container: what `run_autograder` runs.

    python3 -m autograder.gradescope_run      (root: $AUTOGRADER_ROOT, default /autograder)

It reads the one notebook in `<root>/submission/`, scores it with the same code as `grade`
(`trusted.runner.run_tests`), and writes `<root>/results/results.json` in Gradescope's format. It
always writes that file: for a missing or unreadable notebook, for a submission that crashes or
hangs, when the time budget runs out (a watchdog writes what was graded so far), and when the
grader itself fails.

The notebook graded is the grading template (`<root>/source/grading/acceleration.ipynb`: the setup
cell and the test cells as the instructor wrote them, hidden tests included, and no solutions) with
the student's `*_impl` cells copied in by grade id. Other cells of the submission are ignored, as
`grade` ignores cells students add.

results.json, after Gradescope's autograder specification:

* One scored test per graded cell: `max_score` is the cell's points, `score` all or nothing as in
  nbgrader, `output` the failure message (never the cell's source or a traceback) and the timing
  lines. `visibility` is "after_due_date" for a cell with hidden tests, "visible" for the others.
* For each cell with hidden tests, a visible check without points: the part of the cell students
  have in their notebook. The cell is run as two pieces, that part then the hidden tests (which run
  only when that part passed), so it scores exactly as it does whole.
* A 0-point visible entry: the written answers are graded by hand, and which ones are empty.
* `leaderboard`: matmul_blocked's time over NumPy's at 256x256 (`blocked_vs_numpy_256`), lower
  first, whenever that timing was measured (only for a correct product that follows the rules).
* Plain-text formatting everywhere (student text is never rendered as HTML); the grader's stdout,
  with the details of the run, stays hidden from students.

Student code runs in the bubblewrap sandbox when the container allows it, else as an unprivileged
user (uid 65534) with the sandbox's resource limits and first in line for the out-of-memory killer:
it cannot touch results.json, signal the grader or read the grading template. Only where neither
works (not root, no bubblewrap: a local try-out) does it run as the grader's user, with a warning
in the log; run_autograder then still replaces the results of a grader that was killed.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .gradescope import (CONFIG_FILE, DEFAULT_BUDGET, DEFAULT_TIME_LIMIT, HIDDEN_BEGIN, HIDDEN_END,
                         TEMPLATE_DIR, has_hidden_tests)
from .results import PART_TITLES, TIMING_LINE, _failure_message, part_of
from . import machine
from .performance import BLOCKED, FOCUS, NUMPY, Performance
from .trusted import launch, remote, runner
from .trusted.profile import PEAK

DEFAULT_ROOT = "/autograder"
HIDDEN_PART = ":hidden"                  # grade id suffix of the hidden half of a split cell
ANSWER_STUB = "YOUR ANSWER HERE"

LEADERBOARD_TIMING = "blocked_vs_numpy_256"
LEADERBOARD_NAME = "Blocked vs NumPy (lower is faster)"

WORKER_MEMORY = 512 * 1024 ** 2          # address space of the student's worker
MAX_NOTE = 300


def log(*parts) -> None:
    """A line for the instructor (Gradescope shows the grader's stdout to staff only).

    Written to the process's real stdout: while a test cell runs, run_tests redirects sys.stdout.
    """
    print(*parts, file=sys.__stdout__ or sys.stdout, flush=True)


class SubmissionError(Exception):
    """The submission cannot be graded at all; the message tells the student why."""


# ------------------------------------------------------------------------------------------------
# Hidden-tests regions
# ------------------------------------------------------------------------------------------------
def _is_code_line(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def split_hidden_tests(source: str) -> tuple[str, str] | None:
    """(public part, hidden part) of a test cell that ends with its hidden tests, else None.

    Only a cell that can run as two pieces with the same effect as one is split: a single hidden
    region whose begin marker starts a line (not inside an indented block), with no code after
    its end marker, code before it, and both pieces valid Python on their own.
    """
    lines = source.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if HIDDEN_BEGIN in line]
    ends = [i for i, line in enumerate(lines) if HIDDEN_END in line]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        return None
    begin, end = begins[0], ends[0]
    if not lines[begin].startswith(HIDDEN_BEGIN) or any(map(_is_code_line, lines[end + 1:])):
        return None
    public, hidden = "".join(lines[:begin]), "".join(lines[begin:])
    if not any(map(_is_code_line, public.splitlines())):
        return None
    try:
        compile(public, "<public>", "exec")
        compile(hidden, "<hidden>", "exec")
    except SyntaxError:
        return None
    return public, hidden


# ------------------------------------------------------------------------------------------------
# The notebook to grade
# ------------------------------------------------------------------------------------------------
def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _grade_id(cell) -> str:
    return str(_nbgrader(cell).get("grade_id", ""))


@dataclass
class GradedCell:
    grade_id: str
    points: float
    hidden: bool        # the cell has hidden tests
    split: bool         # it runs as its public part, then its hidden part

    @property
    def title(self) -> str:
        part = part_of(self.grade_id)
        return f"{PART_TITLES.get(part, part)} — {self.grade_id}"


@dataclass
class GradingNotebook:
    nb: dict
    graded: list[GradedCell]
    notes: list[str] = field(default_factory=list)


def _passed_flag(grade_id: str) -> str:
    return "__public_tests_passed_" + re.sub(r"\W", "_", grade_id) + "__"


def _test_cell(grade_id: str, points: float, source: str) -> dict:
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
        "grade": True, "grade_id": grade_id, "locked": True, "points": points,
        "schema_version": 3, "solution": False, "task": False}})


def student_cells(submission) -> tuple[dict[str, str], list[str]]:
    """The student's `*_impl` code by grade id (the first cell of each id), and notes on them."""
    found: dict[str, str] = {}
    notes = []
    for cell in submission.get("cells", []):
        grade_id = _grade_id(cell)
        if not grade_id.endswith("_impl") or cell.get("cell_type") != "code":
            continue
        if grade_id in found:
            notes.append(f"Your notebook has the cell {grade_id} more than once: the first one "
                         f"was graded.")
            continue
        found[grade_id] = cell.get("source", "")
    return found, notes


def grading_notebook(template, submission) -> GradingNotebook:
    """The template with the submission's `*_impl` cells, test cells split where they can be."""
    answers, notes = student_cells(submission)
    cells, graded = [], []
    for cell in template["cells"]:
        grade_id = _grade_id(cell)
        if runner.is_implementation_cell(cell):
            cell = copy.deepcopy(cell)
            if grade_id in answers:
                cell["source"] = answers[grade_id]
            else:
                notes.append(f"Your notebook has no code cell {grade_id} (with its grading "
                             f"metadata): the tests that use it score 0. Start again from the "
                             f"released notebook and copy your code into its cells.")
            cells.append(cell)
        elif runner.is_test_cell(cell):
            points = float(_nbgrader(cell).get("points", 0))
            parts = split_hidden_tests(cell["source"]) if has_hidden_tests(cell["source"]) else None
            graded.append(GradedCell(grade_id, points, has_hidden_tests(cell["source"]),
                                     parts is not None))
            if parts is None:
                cells.append(copy.deepcopy(cell))
                continue
            public, hidden = parts
            flag = _passed_flag(grade_id)
            cells.append(_test_cell(grade_id, points,
                                    f"{flag} = False\n{public.rstrip()}\n{flag} = True\n"))
            guard = f"if not {flag}:\n    raise RuntimeError('not run: the tests before failed')\n"
            cells.append(_test_cell(grade_id + HIDDEN_PART, 0, guard + hidden))
        else:
            cells.append(copy.deepcopy(cell))
    nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(template.get("metadata", {})))
    return GradingNotebook(nb, graded, notes)


def written_answers(template, submission) -> tuple[float, list[tuple[str, bool]]]:
    """Points of the hand-graded answers, and (grade id, answered?) of each in the submission."""
    ids = [_grade_id(c) for c in template["cells"]
           if _nbgrader(c).get("grade") and _nbgrader(c).get("solution")
           and c.get("cell_type") == "markdown"]
    points = sum(float(_nbgrader(c).get("points", 0)) for c in template["cells"]
                 if _grade_id(c) in ids)
    texts = {}
    for cell in (submission or {}).get("cells", []):
        if _grade_id(cell) in ids and _grade_id(cell) not in texts:
            texts[_grade_id(cell)] = str(cell.get("source", "")).strip()
    return points, [(i, texts.get(i, "") not in ("", ANSWER_STUB)) for i in ids]


# ------------------------------------------------------------------------------------------------
# The submission
# ------------------------------------------------------------------------------------------------
def _ignored(path: Path, folder: Path) -> bool:
    parts = path.relative_to(folder).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def find_notebook(folder: Path, expected: str) -> Path:
    """The notebook Gradescope put in `folder`: the only .ipynb, or the one named `expected`."""
    notebooks = sorted(p for p in folder.rglob("*.ipynb")
                       if p.is_file() and not _ignored(p, folder))
    if len(notebooks) == 1:
        return notebooks[0]
    named = [p for p in notebooks if p.name == expected]
    if len(named) == 1:
        return named[0]
    if not notebooks:
        found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                       if p.is_file() and not _ignored(p, folder))
        raise SubmissionError(
            f"Your submission has no Jupyter notebook (.ipynb): submit {expected}. "
            + (f"Files received: {', '.join(found[:10])}." if found else "No files were received."))
    raise SubmissionError(
        f"Your submission has several notebooks ({', '.join(p.name for p in notebooks[:10])}): "
        f"submit only {expected}.")


def read_notebook(path: Path):
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no list of cells")
        for cell in nb.cells:
            cell.get("metadata", {}).get("nbgrader", {})
            str(cell["source"])
        return nb
    except Exception as exc:  # noqa: BLE001 - anything unreadable is the submission's fault
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SubmissionError(
            f"{path.name} could not be read as a Jupyter notebook ({detail}). Open it in Jupyter, "
            f"save it, and submit the saved file.") from None


# ------------------------------------------------------------------------------------------------
# Where student code runs
# ------------------------------------------------------------------------------------------------
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
# results.json
# ------------------------------------------------------------------------------------------------
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False))
            os.replace(tmp, self.path)
            self.written = True
            return True


def _timing_lines(outcomes) -> list[str]:
    return [m.group(0).strip() for o in outcomes if o is not None
            for m in TIMING_LINE.finditer(o.stdout)]


def _message(outcome, missing: str) -> str:
    if outcome is None:
        return missing
    return _failure_message(outcome.outputs()) or "failed"


def _verdict(parts: list, missing: str) -> tuple[bool, str]:
    """(passed, message of the first part that did not pass) over the pieces of one cell."""
    for outcome in parts:
        if outcome is None or not outcome.passed:
            return False, _message(outcome, missing)
    return True, ""


def _output(passed: bool, message: str, timings: list[str]) -> str:
    return "\n".join(["Passed." if passed else f"Failed: {message}", *timings])


def test_entries(cell: GradedCell, outcomes: dict, missing: str) -> list[dict]:
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


def leaderboard(outcomes: dict) -> list[dict]:
    for outcome in outcomes.values():
        for match in TIMING_LINE.finditer(outcome.stdout):
            if match["name"] == LEADERBOARD_TIMING:
                return [{"name": LEADERBOARD_NAME, "value": round(float(match["value"]), 3),
                         "order": "asc"}]
    return []


def performance_entry(perf: Performance | None) -> dict | None:
    """A visible entry without points: how close the student's products came to the machine."""
    if perf is None or perf.profile is None or not perf.profile.seconds:
        return None
    names = [(BLOCKED, "your matmul_blocked"), (f"{BLOCKED} reference", "reference tiling"),
             (NUMPY, "your matmul_numpy"), (PEAK, "NumPy, one core (peak)")]
    lines = [f"Measured by the grader at {FOCUS}x{FOCUS} on this container ("
             f"{machine.summary(machine.describe())}):"]
    for name, label in names:
        gflops = perf.gflops(name)
        if gflops is not None:
            lines.append(f"  {label:24s} {gflops:7.1f} GFLOP/s  "
                         f"{perf.fraction(name):6.0%} of the peak")
    lines += ["", *perf.meaning(), "", "Milliseconds per product:",
              "     n  " + "".join(f"{label:>24s}" for _, label in names)]
    for n in perf.profile.sizes:
        cells = [perf.profile.seconds.get(name, {}).get(n) for name, _ in names]
        lines.append(f"  {n:4d}  " + "".join(f"{s * 1e3:24.3f}" if s else f"{'-':>24s}"
                                            for s in cells))
    return {"name": "How close to the machine (no points)", "score": 0.0, "max_score": 0.0,
            "output": "\n".join(lines), "visibility": "visible"}


def results_json(graded: list[GradedCell], outcomes: dict, summary: list[str], seconds: float,
                 answers: tuple[float, list] | None, missing: str,
                 perf: Performance | None = None) -> dict:
    tests = [entry for cell in graded for entry in test_entries(cell, outcomes, missing)]
    if answers is not None and answers[1]:
        tests.append(answers_entry(*answers))
    profile_entry = performance_entry(perf)
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
    board = leaderboard(outcomes)
    if board:
        results["leaderboard"] = board
    return results


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
        self.notebook_name = "acceleration.ipynb"
        self.budget = DEFAULT_BUDGET
        self.time_limit = DEFAULT_TIME_LIMIT
        self.template = None
        self.graded: list[GradedCell] = []
        self.answers: tuple[float, list] | None = None
        self.report = runner.RunReport()  # filled by run_tests, read by the watchdog

    def configure(self) -> None:
        config_path = self.source / TEMPLATE_DIR / CONFIG_FILE
        if config_path.is_file():
            self.config = json.loads(config_path.read_text())
        self.notebook_name = self.config.get("notebook", self.notebook_name)
        self.budget = _setting(self.config, "budget_seconds", "AUTOGRADER_BUDGET", DEFAULT_BUDGET)
        self.time_limit = _setting(self.config, "time_limit_seconds", "AUTOGRADER_TIME_LIMIT",
                                   DEFAULT_TIME_LIMIT)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def outcomes(self) -> dict:
        return dict(self.report.outcomes)

    def write(self, summary: list[str], missing: str) -> bool:
        perf = Performance(self.report.profile, [asdict(s) for s in self.report.speeds])
        return self.results.write(results_json(self.graded, self.outcomes(), summary,
                                               self.elapsed(), self.answers, missing, perf))

    def load_template(self) -> None:
        self.template = nbformat.read(self.source / TEMPLATE_DIR / self.notebook_name,
                                      as_version=4)
        self.graded = [GradedCell(_grade_id(c), float(_nbgrader(c).get("points", 0)),
                                  has_hidden_tests(c["source"]), False)
                       for c in self.template.cells if runner.is_test_cell(c)]
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
        log(f"autograder package: {Path(__file__).resolve().parent}")
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
        grading = grading_notebook(self.template, submission)
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
            report = runner.run_tests(grading.nb, launcher, self.time_limit,
                                      report=self.report)
        finally:
            timer.cancel()
        for grade_id, outcome in report.outcomes.items():
            verdict = "passed" if outcome.passed else f"FAILED {outcome.error}"
            log(f"  {grade_id:<28} {outcome.seconds:7.2f} s  {verdict}")
        loaded = [f"Your cell {cell} raised {e.get('type')} when it was run: "
                  f"{str(e.get('message'))[:MAX_NOTE]}" for cell, e in report.load_errors.items()
                  if cell != runner.SETUP_CELL]
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
