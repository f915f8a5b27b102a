"""Autograde collected submissions with nbgrader, several at a time.

`--jobs N` long-lived nbgrader processes (`autograder.autograde_worker`) take submissions from one
queue. A submission that crashes its kernel or is malformed fails alone; one that runs past the
time limit gets its worker killed and replaced. nbgrader's gradebook holds the scores; this stage
keeps, per student, a small record of how grading went (`grading/<student>.json`: status, reason,
duration), written only once nbgrader has finished, with fingerprints of what decided it: the
submission, the assignment's tests as the gradebook holds them (cells, points, due date), and the
grader (its verdict code, the course configuration, the packages it runs on). A submission is
graded again when any of the three changed, and `grade` says which: so after a fix to a hidden
test and `release`, the next `grade` regrades everyone graded with the old tests, and a batch that
is killed part-way leaves the rest to the next run. Nothing current is graded again.

The grading machine's ceilings (theoretical and attainable peak, memory bandwidth, caches:
`ceilings`) are measured once per machine, before any submission, and kept in
`grading/machines/<machine fingerprint>.json`; every submission's speed figures are saved with
them (delete the file to measure them again).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import ceilings, machine, uids
from .assignment import SPEC_FILE
from .course import REPO_ROOT, Course, CourseError, tool_environment
from .gradebook import open_gradebook
from .notebook import grade_id, is_answer_cell, nbgrader as nbgrader_metadata
from .records import GradingRecord, Status, read_record, records_dir, write_record
from .release import ensure_gradebook

SUBMISSION_TIMEOUT = 20 * 60  # seconds for one whole submission; per-cell limits are nbgrader's
MACHINES = "machines"         # under grading/: the ceilings of each machine that graded
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class GradingBasis:
    """Fingerprints of what decides a verdict besides the submission itself."""
    tests: str     # the assignment's cells in the gradebook (sources, points) and its due date
    grader: str    # the grader's verdict code, the course's nbgrader_config.py, package versions


# The parts of this package that decide verdicts; the stages that only read results do not.
VERDICT_CODE = ("trusted", "timing", "preprocessors", "sandbox.py", "autograde_worker.py")
VERDICT_PACKAGES = ("nbgrader", "nbclient", "numpy", "ipykernel")


def _assignment_fingerprint(course: Course) -> str:
    from nbgrader.api import MissingEntry

    digest = hashlib.sha256()
    with open_gradebook(course) as gb:
        try:
            assignment = gb.find_assignment(course.assignment)
        except MissingEntry:
            return ""
        digest.update(str(assignment.duedate).encode())
        for notebook in sorted(assignment.notebooks, key=lambda nb: nb.name):
            cells = [("source", c.name, c.cell_type, c.locked, c.source)
                     for c in notebook.source_cells]
            cells += [("grade", c.name, c.cell_type, c.max_score) for c in notebook.grade_cells]
            digest.update(json.dumps([notebook.name, sorted(cells, key=str)],
                                     default=str).encode())
    return digest.hexdigest()


# nbgrader settings that cannot change a verdict: where the exchange is, the course's id and
# folders, how feedback is rendered and validate prints. Editing them must not regrade a class.
NEUTRAL_SETTINGS = {"Exchange": None, "ExchangeFactory": None, "GenerateFeedback": None,
                    "Validator": None, "ServerApp": None, "NotebookApp": None,
                    "CourseDirectory": {"course_id", "root", "db_url", "groupshared"}}


def verdict_settings(course: Course) -> str:
    """nbgrader_config.py as loaded, without the settings in NEUTRAL_SETTINGS, as sorted JSON."""
    from traitlets.config import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config()
    kept = {}
    for section, values in config.items():
        neutral = NEUTRAL_SETTINGS.get(section, set())
        if section.startswith("Exchange") or neutral is None:
            continue
        kept[section] = {k: v for k, v in values.items() if k not in neutral}
    return json.dumps(kept, sort_keys=True, default=repr)


def _grader_fingerprint(course: Course) -> str:
    from importlib import metadata

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for entry in VERDICT_CODE:
        paths = sorted((package / entry).rglob("*.py")) if (package / entry).is_dir() \
            else [package / entry]
        for path in paths:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    digest.update(verdict_settings(course).encode())
    spec_file = course.source_dir / SPEC_FILE       # the assignment's own rules and settings
    if spec_file.is_file():
        digest.update(spec_file.read_bytes())
    for name in VERDICT_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(f"{name}=={metadata.version(name)}".encode())
    return digest.hexdigest()


def grading_basis(course: Course) -> GradingBasis:
    return GradingBasis(_assignment_fingerprint(course), _grader_fingerprint(course))


def why_not_current(record: GradingRecord | None, submission: str,
                    basis: GradingBasis) -> str | None:
    """Why a student's grade no longer stands (None: it does)."""
    if record is None:
        return "not graded yet"
    if record.status == Status.INTERRUPTED:
        return "its last grading was interrupted"
    if record.fingerprint != submission:
        return "the submission changed"
    if record.tests != basis.tests:
        return "the tests changed (release)"
    if record.grader != basis.grader:
        return "the grader changed"
    return None


@dataclass
class BatchResult:
    graded: list[GradingRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)   # student -> why it was graded
    sandbox_uids: list[int] = field(default_factory=list)    # the uids its jobs leased


def fingerprint(course: Course, student: str) -> str:
    """Hash of everything in the student's submitted folder: a changed submission is regraded."""
    digest = hashlib.sha256()
    folder = course.submitted_dir(student)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def pending(course: Course, students: list[str] | None = None, force: bool = False,
            basis: GradingBasis | None = None) -> dict[str, str]:
    """Students to grade, with why: those named (or all submitted) whose grade is not current."""
    submitted = course.submitted_students()
    if students:
        unknown = sorted(set(students) - set(submitted))
        if unknown:
            raise CourseError(f"no submission under submitted/ for: {', '.join(unknown)}")
        chosen = list(dict.fromkeys(students))
    else:
        chosen = submitted
    if force or students:
        return {s: "asked for" for s in chosen}
    basis = basis or grading_basis(course)
    todo = {}
    for student in chosen:
        reason = why_not_current(read_record(course, student), fingerprint(course, student), basis)
        if reason:
            todo[student] = reason
    return todo


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the grader dies, so no orphan keeps writing results."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()


def _autograde_scores(course: Course, student: str) -> tuple[float, float]:
    with open_gradebook(course) as gb:
        submission = gb.find_submission(course.assignment, student)
        score = sum(nb.code_score for nb in submission.notebooks)
        max_score = sum(nb.max_code_score for nb in submission.notebooks)
        return float(score), float(max_score)


_EXCEPTION_LINE = re.compile(r"\b(?:[\w]+\.)*(?P<name>\w*(?:Error|Exception))\b:?\s*(?P<text>.*)")
_NBGRADER_BOILERPLATE = ("There was an error processing", "Please see the", "Traceback",
                         "NbGraderException")


def _failure_reason(output: str) -> str:
    """The most telling line of a failed nbgrader run: its last exception, in a few words."""
    reason = ""
    for line in output.splitlines():
        line = line.strip()
        if not line or any(text in line for text in _NBGRADER_BOILERPLATE):
            continue
        match = _EXCEPTION_LINE.search(line.split("] ", 1)[-1])
        if match and match["name"] not in ("ERROR",):
            reason = f"{match['name']}: {match['text']}".rstrip(": ")
    if reason.startswith("DeadKernelError"):
        reason = "the kernel died: the notebook's code exited or crashed the Python process"
    return (reason or "nbgrader failed without an error message")[:300]


class AutogradeWorker:
    """One `autograde_worker` process, started on first use and again after a timeout or crash."""

    def __init__(self, course: Course, overrides: dict, log_path: Path):
        self.course, self.overrides, self.log_path = course, overrides, log_path
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "autograder.autograde_worker", str(self.course.root),
               self.course.assignment, json.dumps(self.overrides)]
        env = tool_environment()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.course.root, env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, preexec_fn=_die_with_parent)
        replies = self.replies = queue.Queue()
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [replies.put(line) for line in stdout] + [replies.put(None)],
                         daemon=True).start()
        if self._reply(120) is None:
            raise CourseError(f"the autograde worker did not start; see {self.log_path}")

    def _reply(self, timeout: float) -> dict | None:
        line = self.replies.get(timeout=timeout)
        return None if line is None else json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def autograde(self, student: str, timeout: float) -> tuple[Status, str]:
        """(status, reason) of autograding one student; the worker is replaced if it fails."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps({"student": student}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self._reply(timeout)
        except queue.Empty:
            self.stop()
            return Status.TIMEOUT, f"grading took longer than {timeout:.0f} s and was stopped"
        if reply is None:  # the worker itself died: nbgrader, not the student's kernel
            self.stop()
            return Status.FAILED, "the grading process died; see " + str(self.log_path)
        if reply["ok"]:
            return Status.GRADED, ""
        return Status.FAILED, _failure_reason(reply["log"])


def machine_ceilings(course: Course) -> tuple[ceilings.Ceilings, Path, bool]:
    """This machine's ceilings as the course keeps them (measured on first use)."""
    return ceilings.kept(records_dir(course) / MACHINES)


def _overrides(time_limit: float | None, sandboxed: bool, job: int, kernel_uid: int,
               worker_uid: int, ceilings_file: Path | None = None) -> dict:
    """nbgrader config for one autograde worker: its kernel and its student-code worker run as
    uids of their own (process limits are per uid)."""
    config: dict = {
        "SandboxedExecute": {"sandbox": sandboxed, "sandbox_uid": kernel_uid},
        "TrustedTests": {"sandbox": sandboxed, "sandbox_uid": worker_uid,
                         "cpu": job % (os.cpu_count() or 1),
                         "ceilings_file": str(ceilings_file or "")},
    }
    if time_limit:
        config["Execute"] = {"timeout": int(time_limit)}
        config["SandboxedExecute"]["timeout"] = int(time_limit)
        config["TrustedTests"]["call_timeout"] = float(time_limit)
    return config


def answer_digests(course: Course, student: str) -> dict[str, str]:
    """Written answer id -> sha256 of its text as submitted (none if the notebook is unreadable)."""
    import nbformat

    try:
        nb = nbformat.read(course.submitted_dir(student) / course.notebook, as_version=4)
    except (OSError, ValueError):
        return {}
    return {grade_id(c): hashlib.sha256(c.source.encode()).hexdigest()
            for c in nb.cells if c.cell_type == "markdown" and is_answer_cell(c)
            and nbgrader_metadata(c).get("grade")}


def keep_hand_grading(course: Course, student: str, before: dict[str, str],
                      now: dict[str, str]) -> list[str]:
    """After autograding: keep the hand grades of written answers whose text did not change.

    nbgrader's SaveAutoGrades marks every written answer as needing grading again on each
    autograde, so a regrade (a fixed test, a new due date) would undo the TAs' work. An answer a
    grader scored whose text is the one they scored stays graded; the ids of scored answers whose
    text changed are returned, and stay marked for grading.
    """
    changed = []
    with open_gradebook(course) as gb:
        submission = gb.find_submission(course.assignment, student)
        for nb in submission.notebooks:
            for grade in nb.grades:
                if grade.cell.cell_type == "code" or grade.manual_score is None:
                    continue
                if before.get(grade.name) and before.get(grade.name) == now.get(grade.name):
                    grade.needs_manual_grade = False
                else:
                    changed.append(grade.name)
        gb.db.commit()
    return sorted(changed)


def grade_one(course: Course, student: str, worker: AutogradeWorker, basis: GradingBasis,
              timeout: float = SUBMISSION_TIMEOUT) -> GradingRecord:
    """Autograde one submission; never raises for the student's faults."""
    started = time.monotonic()
    digest = fingerprint(course, student)
    previous = read_record(course, student)
    answers = answer_digests(course, student)
    # Until the new record replaces it, the student counts as not graded: nbgrader writes the
    # graded notebook and the gradebook in place, so an interruption leaves a mix of old and new,
    # and the next run must grade again. The old record's answer digests stay, for the hand grades.
    write_record(course, GradingRecord(
        student=student, fingerprint=digest, status=Status.INTERRUPTED,
        reason="grading started and did not finish", finished_at=time.time(),
        answers=previous.answers if previous else {}))
    status, reason = worker.autograde(student, timeout)
    record = GradingRecord(student=student, fingerprint=digest, status=status, reason=reason,
                           seconds=round(time.monotonic() - started, 2), finished_at=time.time(),
                           tests=basis.tests, grader=basis.grader, machine=machine.describe(),
                           answers=answers)
    if status == Status.GRADED:
        record.score, record.max_score = _autograde_scores(course, student)
        record.answers_changed = keep_hand_grading(
            course, student, previous.answers if previous else {}, answers)
    elif previous is not None:
        record.answers = previous.answers   # not graded: the hand grades still stand for those
    write_record(course, record)
    return record


def summary_line(record: GradingRecord) -> str:
    if record.ok:
        again = (f"; hand-graded answers changed, grade them again: "
                 f"{', '.join(record.answers_changed)}" if record.answers_changed else "")
        return (f"  graded  {record.student:<16} {record.score:5.1f} / {record.max_score:g} "
                f"autograded points  ({record.seconds:.0f} s){again}")
    return f"  {record.status:<7} {record.student:<16} {record.reason}  ({record.seconds:.0f} s)"


def grade_batch(course: Course, students: list[str] | None = None, jobs: int | None = None,
                force: bool = False, timeout: float = SUBMISSION_TIMEOUT,
                time_limit: float | None = None, sandboxed: bool = True,
                progress: bool = True) -> BatchResult:
    from tqdm import tqdm

    if sandboxed:
        from . import sandbox

        ok, reason = sandbox.available()
        if not ok:
            raise CourseError(f"cannot grade safely: {reason}. Student code would run with the "
                              "grader's rights; pass --no-sandbox only if you trust every "
                              "submission")
    ensure_gradebook(course)
    basis = grading_basis(course)
    reasons = pending(course, students, force, basis)
    todo = list(reasons)
    considered = students or course.submitted_students()
    result = BatchResult(skipped=[s for s in considered if s not in reasons], reasons=reasons)
    if not todo:
        return result
    counts = Counter(reasons.values())
    print(f"grading {len(todo)} submission(s) (" +
          "; ".join(f"{n}: {why}" for why, n in counts.most_common()) + ")", flush=True)
    machine_found, machine_file, measured = machine_ceilings(course)
    print(f"this machine's ceilings ({machine_file.relative_to(course.root)}"
          f"{f', measured in {machine_found.seconds:.1f} s' if measured else ''}): "
          f"{ceilings.summary(machine_found)}", flush=True)
    jobs = min(max(1, jobs or os.cpu_count() or 1), len(todo))
    todo_queue: queue.Queue = queue.Queue()
    for student in todo:
        todo_queue.put(student)
    done: queue.Queue = queue.Queue()

    leases = [uids.UidLease(2) for _ in range(jobs)]
    result.sandbox_uids = [uid for lease in leases for uid in lease.uids]

    def work(number: int) -> None:
        kernel_uid, worker_uid = leases[number].uids
        worker = AutogradeWorker(course, _overrides(time_limit, sandboxed, number, kernel_uid,
                                                    worker_uid, machine_file),
                                 records_dir(course) / "logs" / f"worker-{number}.log")
        try:
            while True:
                try:
                    student = todo_queue.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put(grade_one(course, student, worker, basis, timeout))
                except BaseException as exc:  # a grader fault: report it, don't hang the batch
                    done.put(exc)
        finally:
            worker.stop()
            leases[number].release()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(jobs)]
    for thread in threads:
        thread.start()
    with tqdm(total=len(todo), unit="submission", disable=not progress, file=sys.stderr,
              desc=f"grading ({jobs} at a time)") as bar:
        for _ in todo:
            record = done.get()
            if isinstance(record, BaseException):
                raise record
            result.graded.append(record)
            bar.write(summary_line(record), file=sys.stdout)
            bar.update()
    result.graded.sort(key=lambda r: r.student)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("students", nargs="*", metavar="STUDENT",
                        help="grade only these students (default: every submission not graded yet)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count(),
                        help="submissions graded at the same time (default: %(default)s, the cores)")
    parser.add_argument("--force", action="store_true",
                        help="grade again submissions that are already graded")
    parser.add_argument("--timeout", type=float, default=SUBMISSION_TIMEOUT,
                        help="seconds one submission may take in all (default: %(default)s)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="seconds one notebook cell, or one call of student code from a test, "
                             "may run before it is stopped (default: nbgrader_config.py's)")
    parser.add_argument("--no-sandbox", dest="sandboxed", action="store_false",
                        help="run student code without the bubblewrap sandbox (only for "
                             "submissions you trust, or where bubblewrap cannot run)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    if not course.submitted_students():
        print("nothing to grade: submitted/ is empty (run `python -m autograder collect PATH`)")
        return 0
    result = grade_batch(course, args.students, args.jobs, args.force, args.timeout,
                         args.time_limit, args.sandboxed, progress=not args.quiet)
    failed = [r for r in result.graded if not r.ok]
    print(f"graded {len(result.graded) - len(failed)}, failed {len(failed)}, "
          f"already graded {len(result.skipped)}")
    return 0
