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
import datetime
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import ceilings, machine, task
from .assignment import SPEC_FILE
from .course import Course, CourseError
from .files import write_atomic
from .gradebook import open_gradebook
from .notebook import grade_id, is_answer_cell, nbgrader as nbgrader_metadata
from .phases import Phases, cpu_seconds, table
from .records import GradingRecord, Status, read_record, records_dir, write_record
from .release import ensure_gradebook

SUBMISSION_TIMEOUT = 20 * 60  # seconds for one whole submission; per-cell limits are nbgrader's


@dataclass(frozen=True)
class GradingBasis:
    """Fingerprints of what decides a verdict besides the submission itself."""
    tests: str     # the assignment's cells in the gradebook (sources, points) and its due date
    grader: str    # the grader's verdict code, the course's nbgrader_config.py, package versions
    test_cells: dict = field(default_factory=dict)   # assignment_cells: which of them changed


DUE_DATE = "the due date"


def assignment_cells(course: Course) -> dict[str, str]:
    """What the gradebook holds of the assignment, a digest per cell (sources, points) and one for
    the due date: the tests a grade was given under. Empty before the first release."""
    from nbgrader.api import MissingEntry

    found: dict[str, str] = {}
    with open_gradebook(course) as gb:
        try:
            assignment = gb.find_assignment(course.assignment)
        except MissingEntry:
            return {}
        found[DUE_DATE] = str(assignment.duedate)
        for notebook in assignment.notebooks:
            parts: dict[str, list] = {}
            for c in notebook.source_cells:
                parts.setdefault(c.name, []).append(("source", c.cell_type, c.locked, c.source))
            for c in notebook.grade_cells:
                parts.setdefault(c.name, []).append(("grade", c.cell_type, c.max_score))
            for name, value in parts.items():
                key = name if len(assignment.notebooks) == 1 else f"{notebook.name}/{name}"
                found[key] = hashlib.sha256(json.dumps(sorted(value, key=str), default=str)
                                            .encode()).hexdigest()
    return found


def _digest(cells: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest() if cells else ""


def source_drift(course: Course) -> list[str]:
    """Cells in which source/ and the gradebook (the assignment as last released) disagree: the
    text of a cell the student cannot edit, or any cell's points. Grading uses the gradebook's."""
    import nbformat
    from nbgrader.api import MissingEntry

    nb = nbformat.read(course.source_notebook, as_version=4)
    source = {grade_id(c): c for c in nb.cells if grade_id(c)}
    with open_gradebook(course) as gb:
        try:
            notebook = gb.find_notebook(Path(course.notebook).stem, course.assignment)
        except MissingEntry:
            return []
        held = {c.name: c for c in notebook.source_cells}
        points = {c.name: c.max_score for c in notebook.grade_cells}
    differ = set(source) ^ set(held)
    for name in set(source) & set(held):
        cell, meta = source[name], nbgrader_metadata(source[name])
        if float(meta.get("points") or 0) != float(points.get(name) or 0):
            differ.add(name)
        elif not meta.get("solution") and cell.source.strip() != (held[name].source or "").strip():
            differ.add(name)
    return sorted(differ)


# nbgrader settings that cannot change a verdict: where the exchange is, the course's id and
# folders, how feedback is rendered and validate prints, which machines grade (each record names
# its machine). Editing them must not regrade a class.
NEUTRAL_SETTINGS = {"Exchange": None, "ExchangeFactory": None, "GenerateFeedback": None,
                    "Validator": None, "ServerApp": None, "NotebookApp": None, "DaskGrading": None,
                    "CourseDirectory": {"course_id", "root", "db_url", "groupshared"}}


def configured_scheduler(course: Course) -> str | None:
    """c.DaskGrading.scheduler of nbgrader_config.py, if set: where `grade` sends its work."""
    return str(course.config().get("DaskGrading", {}).get("scheduler") or "") or None


def verdict_settings(course: Course) -> str:
    """nbgrader_config.py as loaded, without the settings in NEUTRAL_SETTINGS, as sorted JSON."""
    config = course.config()
    kept = {}
    for section, values in config.items():
        neutral = NEUTRAL_SETTINGS.get(section, set())
        if section.startswith("Exchange") or neutral is None:
            continue
        kept[section] = {k: v for k, v in values.items() if k not in neutral}
    return json.dumps(kept, sort_keys=True, default=repr)


def _grader_fingerprint(course: Course) -> str:
    digest = hashlib.sha256(json.dumps(task.grader_version(), sort_keys=True).encode())
    digest.update(verdict_settings(course).encode())
    spec_file = course.source_dir / SPEC_FILE       # the assignment's own rules and settings
    if spec_file.is_file():
        digest.update(spec_file.read_bytes())
    return digest.hexdigest()


def grading_basis(course: Course) -> GradingBasis:
    cells = assignment_cells(course)
    return GradingBasis(_digest(cells), _grader_fingerprint(course), cells)


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
        before, now = record.test_cells or {}, basis.test_cells
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if not before or not changed:
            return "the tests changed (release)"
        cells = [k for k in changed if k != DUE_DATE]
        if len(cells) > 4:
            cells = cells[:3] + [f"{len(cells) - 3} more"]
        parts = [f"the tests changed (release): {', '.join(cells)}"] if cells else []
        return " and ".join(parts + (["the due date changed"] if DUE_DATE in changed else []))
    if record.grader != basis.grader:
        return "the grader changed"
    return None


@dataclass
class BatchResult:
    graded: list[GradingRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)   # student -> why it was graded
    sandbox_uids: list[int] = field(default_factory=list)    # the uids its jobs leased


def files_fingerprint(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()


def fingerprint(course: Course, student: str) -> str:
    """Hash of everything in the student's submitted folder: a changed submission is regraded."""
    return files_fingerprint(task.submission_inputs(course, student).files)


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


def _autograde_scores(course: Course, student: str) -> tuple[float, float]:
    with open_gradebook(course) as gb:
        submission = gb.find_submission(course.assignment, student)
        score = sum(nb.code_score for nb in submission.notebooks)
        max_score = sum(nb.max_code_score for nb in submission.notebooks)
        return float(score), float(max_score)


def machine_ceilings(course: Course) -> tuple[ceilings.Ceilings, Path, bool]:
    """This machine's ceilings as the course keeps them (measured on first use)."""
    return ceilings.kept(course.root / task.MACHINES)


def _overrides(time_limit: float | None, sandboxed: bool) -> dict:
    """nbgrader config of a batch, on top of nbgrader_config.py (a slot adds its uids, core and
    ceilings file)."""
    config: dict = {"SandboxedExecute": {"sandbox": sandboxed},
                    "TrustedTests": {"sandbox": sandboxed}}
    if time_limit:
        config["Execute"] = {"timeout": int(time_limit)}
        config["SandboxedExecute"]["timeout"] = int(time_limit)
        config["TrustedTests"]["call_timeout"] = float(time_limit)
    return config


def answer_digests(notebook_bytes: bytes | None) -> dict[str, str]:
    """Written answer id -> sha256 of its text as submitted (none if the notebook is unreadable)."""
    import nbformat

    try:
        nb = nbformat.reads(notebook_bytes.decode(), as_version=4)
    except (AttributeError, UnicodeDecodeError, ValueError):
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


def _replace_autograded(course: Course, student: str, files: dict[str, bytes]) -> None:
    """Put the graded folder in place whole: built beside the old one, then swapped in."""
    final = course.autograded_dir(student)
    final.parent.mkdir(parents=True, exist_ok=True)
    new, old = final.with_name(f".{final.name}.new"), final.with_name(f".{final.name}.old")
    for leftover in (new, old):
        shutil.rmtree(leftover, ignore_errors=True)
    if files:
        for name, data in files.items():
            write_atomic(new / name, data, make_folder=True)
    if final.exists():
        final.rename(old)
    if files:
        new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _merge_into_gradebook(course: Course, student: str, recorded: dict) -> None:
    """Write what nbgrader's autograde recorded in the scratch course into the course's
    gradebook: the submission's time, and per notebook its late penalty, automatic scores and
    comments. Hand grades are left alone (`keep_hand_grading` decides about them)."""
    from sqlalchemy.exc import SAWarning

    with open_gradebook(course) as gb, warnings.catch_warnings():
        # nbgrader's add_submission trips SQLAlchemy's autoflush warning; it is harmless there.
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_student(student)
        timestamp = recorded.get("timestamp")
        submission = gb.update_or_create_submission(
            course.assignment, student,
            **({"timestamp": datetime.datetime.fromisoformat(timestamp)} if timestamp else {}))
        for nb in submission.notebooks:
            got = recorded.get("notebooks", {}).get(nb.name)
            if not got:                # nbgrader recorded nothing of it: leave it as it was
                continue
            nb.late_submission_penalty = got.get("late_submission_penalty")
            for grade in nb.grades:
                if grade.name in got.get("grades", {}):
                    grade.auto_score = got["grades"][grade.name]["auto_score"]
                    grade.needs_manual_grade = got["grades"][grade.name]["needs_manual_grade"]
            for comment in nb.comments:
                comment.auto_comment = got.get("comments", {}).get(comment.name)
        gb.db.commit()


def record_outputs(course: Course, inputs: task.SubmissionInputs, outputs: task.GradingOutputs,
                   basis: GradingBasis) -> GradingRecord:
    """Write one submission's grading into the course: graded folder, gradebook, record."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    student = outputs.student
    digest = files_fingerprint(inputs.files)
    previous = read_record(course, student)
    answers = answer_digests(inputs.files.get(course.notebook))
    # Until the new record replaces it, the student counts as not graded: the graded folder and
    # the gradebook change one after the other, so an interruption between them leaves a mix,
    # and the next run must grade again. The old record's answer digests stay, for the hand grades.
    write_record(course, GradingRecord(
        student=student, fingerprint=digest, status=Status.INTERRUPTED,
        reason="grading started and did not finish", finished_at=time.time(),
        answers=previous.answers if previous else {}))
    if outputs.ceilings is not None:
        path = course.root / task.MACHINES / f"{machine.fingerprint(outputs.machine)}.json"
        if not path.exists():
            write_atomic(path, json.dumps(outputs.ceilings, indent=1), make_folder=True)
    _replace_autograded(course, student, outputs.files if outputs.status == Status.GRADED else {})
    record = GradingRecord(student=student, fingerprint=digest, status=outputs.status,
                           reason=outputs.reason, seconds=outputs.seconds,
                           finished_at=time.time(), tests=basis.tests, grader=basis.grader,
                           machine=outputs.machine, answers=answers, worker=outputs.worker,
                           test_cells=basis.test_cells)
    # What nbgrader recorded goes in whatever the outcome: a failed grading is listed with no
    # scores (nbgrader's own autograde does the same); one stopped before nbgrader got that far
    # still gets the student and an empty submission, so every submitted student is in the
    # gradebook and exported as not graded.
    _merge_into_gradebook(course, student, outputs.submission)
    if outputs.status == Status.GRADED:
        record.score, record.max_score = _autograde_scores(course, student)
        record.answers_changed = keep_hand_grading(
            course, student, previous.answers if previous else {}, answers)
    elif previous is not None:
        record.answers = previous.answers   # not graded: the hand grades still stand for those
    phases = Phases(outputs.phases)
    phases.add("grade: recording (graded folder, gradebook, record)",
               time.perf_counter() - wall, cpu_seconds() - cpu)
    record.phases = phases.seconds
    write_record(course, record)
    return record


def summary_line(record: GradingRecord) -> str:
    if record.ok:
        again = (f"; hand-graded answers changed, grade them again: "
                 f"{', '.join(record.answers_changed)}" if record.answers_changed else "")
        return (f"  graded  {record.student:<16} {record.score:5.1f} / {record.max_score:g} "
                f"autograded points  ({record.seconds:.0f} s){again}")
    return f"  {record.status:<7} {record.student:<16} {record.reason}  ({record.seconds:.0f} s)"


class LocalSlots:
    """`--jobs N`: N grading slots in threads of this process, on this machine's cores."""

    def __init__(self, course: Course, jobs: int):
        self.course, self.jobs = course, jobs
        self.description = f"{jobs} at a time"
        self.slots: list[task.Slot] = []

    def __enter__(self) -> "LocalSlots":
        logs = records_dir(self.course) / "logs"
        cores = os.cpu_count() or 1
        self.slots = [task.Slot(f"local job {n}", n % cores, logs / f"worker-{n}.log")
                      for n in range(self.jobs)]
        return self

    @property
    def sandbox_uids(self) -> list[int]:
        return [uid for slot in self.slots for uid in slot.lease.uids]

    def run(self, course: task.CourseFiles, submissions: list[task.SubmissionInputs]
            ) -> Iterator[task.GradingOutputs]:
        """Each submission's outputs, in the order they finish."""
        todo: queue.Queue = queue.Queue()
        for submission in submissions:
            todo.put(submission)
        done: queue.Queue = queue.Queue()

        def work(slot: task.Slot) -> None:
            while True:
                try:
                    submission = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put(slot.grade(course, submission))
                except BaseException as exc:  # a grader fault: report it, don't hang the batch
                    done.put(exc)

        for slot in self.slots:
            threading.Thread(target=work, args=(slot,), daemon=True).start()
        for _ in submissions:
            outputs = done.get()
            if isinstance(outputs, BaseException):
                raise outputs
            yield outputs

    def __exit__(self, *exc) -> None:
        for slot in self.slots:
            slot.close()


def grade_batch(course: Course, students: list[str] | None = None, jobs: int | None = None,
                force: bool = False, timeout: float = SUBMISSION_TIMEOUT,
                time_limit: float | None = None, sandboxed: bool = True,
                progress: bool = True, scheduler: str | None = None,
                local_cluster: bool = False, on_record=None) -> BatchResult:
    """Grade what is not current. Where: `jobs` slots in this process (default), the Dask
    cluster whose scheduler is at `scheduler`, or a `local_cluster` of `jobs` Dask workers.
    `on_record(record)` is called as each submission's grading is written (watch releases its
    feedback then)."""
    from tqdm import tqdm

    if sandboxed:
        from . import sandbox

        ok, reason = sandbox.available()
        if not ok:
            raise CourseError(f"cannot grade safely: {reason}. Student code would run with the "
                              "grader's rights; pass --no-sandbox only if you trust every "
                              "submission")
    ensure_gradebook(course)
    drift = source_drift(course)
    if drift:
        print(f"warning: {course.source_notebook.relative_to(course.root)} differs from the "
              f"gradebook in {', '.join(drift)}: grading uses the tests as last released; run "
              f"`python -m autograder release` first to grade with the edited ones",
              file=sys.stderr, flush=True)
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
    jobs = min(max(1, jobs or os.cpu_count() or 1), len(todo))
    if scheduler or local_cluster:
        from . import cluster

        where = cluster.DaskSlots(scheduler, jobs if local_cluster else None, sandboxed)
    else:
        found, path, measured = machine_ceilings(course)
        print(f"this machine's ceilings ({path.relative_to(course.root)}"
              f"{f', measured in {found.seconds:.1f} s' if measured else ''}): "
              f"{ceilings.summary(found)}", flush=True)
        where = LocalSlots(course, jobs)
    granted = task.extensions(course)
    inputs = {s: task.submission_inputs(course, s, granted.get(s)) for s in todo}
    shared = task.course_files(course, _overrides(time_limit, sandboxed), timeout, basis.tests)
    with where:
        result.sandbox_uids = where.sandbox_uids
        with tqdm(total=len(todo), unit="submission", disable=not progress, file=sys.stderr,
                  desc=f"grading ({where.description})") as bar:
            for outputs in where.run(shared, list(inputs.values())):
                record = record_outputs(course, inputs[outputs.student], outputs, basis)
                result.graded.append(record)
                bar.write(summary_line(record), file=sys.stdout)
                bar.update()
                if on_record is not None:
                    on_record(record)
    result.graded.sort(key=lambda r: r.student)
    print(phase_summary(result.graded), flush=True)
    return result


def class_phases(records: list[GradingRecord]) -> Phases:
    """The batch's phases summed over its submissions; test cells as one phase."""
    total = Phases()
    for record in records:
        for name, (wall, cpu) in record.phases.items():
            total.add("tests: test cells" if name.startswith("test cell ") else name, wall, cpu)
    return total


def phase_summary(records: list[GradingRecord], top: int = 5) -> str:
    """One line: where the batch's time went, its largest phases first."""
    total = class_phases(records)
    wall_all = total.total()[0] or 1.0
    biggest = sorted(total.seconds.items(), key=lambda item: -item[1][0])[:top]
    return (f"time by phase ({len(records)} submission(s), wall seconds summed over slots): " +
            ", ".join(f"{name} {wall:.0f} s ({wall / wall_all:.0%})"
                      for name, (wall, _) in biggest) +
            " (grade --verbose: every phase)")


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
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="grade on the Dask cluster whose scheduler is at ADDRESS (e.g. "
                             "tcp://grader1:8786), one task per submission (default: "
                             "c.DaskGrading.scheduler in nbgrader_config.py; none: this machine)")
    parser.add_argument("--cluster", choices=["local"], default=None,
                        help="'local': start a Dask LocalCluster of --jobs single-threaded "
                             "workers on this machine and grade on it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="at the end, the table of every phase's wall and CPU seconds, "
                             "summed over the batch")


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    if not course.submitted_students():
        print("nothing to grade: submitted/ is empty (run `python -m autograder collect PATH`)")
        return 0
    scheduler = args.scheduler or configured_scheduler(course)
    if scheduler and args.cluster:
        raise CourseError("--scheduler and --cluster local exclude each other: grade on an "
                          "existing cluster, or on a local one")
    result = grade_batch(course, args.students, args.jobs, args.force, args.timeout,
                         args.time_limit, args.sandboxed, progress=not args.quiet,
                         scheduler=scheduler, local_cluster=args.cluster == "local")
    failed = [r for r in result.graded if not r.ok]
    if args.verbose and result.graded:
        print("\n".join(table(class_phases(result.graded))))
    print(f"graded {len(result.graded) - len(failed)}, failed {len(failed)}, "
          f"already graded {len(result.skipped)}")
    return 0
