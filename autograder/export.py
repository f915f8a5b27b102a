"""Write the grades as one file an LMS imports as is: Canvas, Moodle, or a plain CSV.

This is the fourth stage of the pipeline (collect -> grade -> feedback -> export -> report). It reads
the results (`results.load_cohort`: nbgrader's gradebook plus the grading records) and each student's
first and last name from the gradebook, and writes one file. It changes nothing in the course.

Formats
-------
* `canvas`: Canvas's gradebook import CSV (Grades > Import). The header is `Student, ID, SIS User ID,
  SIS Login ID, Section`, then one column per assignment. Canvas (app/models/gradebook_importer.rb)
  wants "Student" and "ID" as the first two headers and "Section" as the last student column; it finds
  each student by `ID`, the Canvas user id (what `collect` took as student id from a Canvas download),
  and only then by SIS ids or name, so SIS User ID, SIS Login ID and Section are left empty. Student is
  "Last, First" as in Canvas's own export. The assignment column is `<title> (<Canvas assignment id>)`:
  Canvas parses a trailing `(digits)` as the assignment id and updates that assignment; without it,
  it looks for an assignment with exactly that title and, if there is none, creates a new one. A
  "Points Possible" row under the header gives such a new assignment its maximum (Canvas's own export
  has the same row; Canvas uses it only when it creates the assignment). An empty cell means "no change".
  Import: Grades > Import (older Canvas: Actions > Import), choose the file, Upload Data, check the
  changes Canvas lists, Save Changes.

* `moodle`: the Moodle assignment's offline grading worksheet (mod/assign/feedback/offline). Moodle
  reads three columns and ignores the others: `Identifier` (`Participant <id>`, the participant id
  that `collect` took from the "Download all submissions" zip, where Moodle names each folder
  `<Full Name>_<participant id>_assignsubmission_file`), `Grade`, and `Last modified (grade)`. The
  file carries the worksheet's other columns (`Full name`, `Email address`, `Status`, `Maximum Grade`,
  `Grade can be changed`, `Last modified (submission)`) for the reader. There is no `Feedback comments`
  column on purpose: Moodle would overwrite existing comments with whatever that column holds.
  `Last modified (grade)` is the time of the export (ISO 8601 with offset, which PHP's strtotime
  reads): Moodle skips a row whose grade was changed in Moodle after that time, so grades typed in
  Moodle after the export are kept. Moodle also skips empty grades, unchanged grades, locked grades,
  and grades above the assignment's maximum grade, so set the Moodle assignment's "Maximum grade" to
  the nbgrader maximum (the `Maximum Grade` column). Moodle matches the header names in the
  language of the person uploading: upload with the interface in English.
  Import: in the assignment's settings, Feedback types, tick "Offline grading worksheet" (Moodle turns
  it off while a rubric or other advanced grading method is active); then on View all submissions,
  the grading action "Upload grading worksheet": choose the file (encoding UTF-8, separator comma), check
  the preview of grade updates, Confirm.

* `csv`: a plain CSV for people and scripts: `student_id, name, status`, one column per graded part
  of the notebook (in notebook order; a part is the prefix of its cells' grade ids), then
  `auto_total` (autograded tests), `written_total` (hand-graded written answers), `late_penalty`,
  `total` and `max`.

What is exported
----------------
The total is nbgrader's: the sum of every grade, minus the late penalty, never below zero (as
`nbgrader export` computes it). Numbers are written without float noise (`72.5`, `80`, at most four
decimals). Students are listed with stderr warnings, never silently:

* written answers not hand-graded yet (formgrader): the score so far is exported (their written part
  counts 0), and the plain CSV leaves `written_total` and that part empty; `--require-complete`
  refuses to write anything instead (exit 1);
* grading failed or timed out: the gradebook's score (0 when nbgrader recorded nothing) is exported;
* not graded yet: nothing is exported for them (an empty grade leaves the LMS grade as it is);
  `--require-complete` refuses this too;
* submission changed since it was graded: the old score is exported; grade again to update it.

Canvas and Moodle find students by id, so a wrong id would put a grade on someone else: those two
formats refuse ids that are not numbers, and students that `collect` imported from the other LMS's
download (collected/roster.csv), and write nothing.

The file is written to a temporary file next to it and renamed, so it is either the old file or the
whole new one; `-o -` writes to stdout. Files are UTF-8 (no byte-order mark), comma separated.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from . import files
from .collect import read_roster
from .sources import canvas, moodle
from .course import Course
from .gradebook import open_gradebook
from .grade import GradingBasis, fingerprint, grading_basis, why_not_current
from .lms import Lms, is_numeric_id, sort_key
from .notebook import GradedCell, graded_cells as notebook_cells, part_of
from .outcomes import format_points
from .records import Status, read_record
from .results import StudentResult, load_cohort

CANVAS, MOODLE, PLAIN = Lms.CANVAS.value, Lms.MOODLE.value, "csv"
FORMATS = (CANVAS, MOODLE, PLAIN)
STDOUT = "-"
LMS_IDS = "lms_ids.csv"        # in the course root: student,lms_id
# Each LMS's gradebook format is kept beside its download format (autograder/sources/).
CANVAS_STUDENT_COLUMNS, CANVAS_POINTS_POSSIBLE = canvas.STUDENT_COLUMNS, canvas.POINTS_POSSIBLE
CANVAS_TITLE_AND_ID, CANVAS_RESERVED = canvas.TITLE_AND_ID, canvas.RESERVED_COLUMNS
CANVAS_NOT_ASSIGNMENTS = canvas.TOTAL_COLUMNS
MOODLE_PARTICIPANT, MOODLE_COLUMNS = moodle.PARTICIPANT, moodle.COLUMNS

PLAIN_ID_COLUMNS = ("student_id", "name", "status")
PLAIN_TOTAL_COLUMNS = ("auto_total", "written_total", "late_penalty", "total", "max")

FAILED_STATUSES = (Status.FAILED, Status.TIMEOUT)


class ExportError(Exception):
    """Nothing was written; the message says why and what to do."""


class IncompleteGradingError(ExportError):
    """`--require-complete` and some students are not completely graded."""

    def __init__(self, pending: list[str], ungraded: list[str]):
        self.pending = list(pending)
        self.ungraded = list(ungraded)
        parts = []
        if self.pending:
            parts.append(f"written answers not hand-graded yet for {', '.join(self.pending)} "
                         "(grade them in formgrader)")
        if self.ungraded:
            parts.append(f"not graded yet: {', '.join(self.ungraded)} "
                         "(run `python -m autograder grade`)")
        super().__init__("grading is not complete, nothing written: " + "; ".join(parts))


class StudentIdError(ExportError):
    """Some student ids are not the ids the target LMS matches students by."""

    def __init__(self, fmt: str, students: list[str], expected: str):
        self.format = fmt
        self.students = list(students)
        super().__init__(f"{fmt} export needs {expected} as student ids, and these are not: "
                         f"{', '.join(self.students)} (collect from a {fmt.capitalize()} download, "
                         "or use --format csv)")


class WrongLmsError(ExportError):
    """Some students were collected from the other LMS, so their ids mean nothing to this one."""

    def __init__(self, fmt: str, students: dict[str, str]):
        self.format = fmt
        self.students = dict(students)
        listed = ", ".join(f"{s} (from {lms})" for s, lms in self.students.items())
        super().__init__(f"{fmt} export: these students were collected from another LMS, and their "
                         f"ids are that LMS's ids: {listed} (export them with that LMS's format)")


class CanvasHeaderError(ExportError):
    """The Canvas assignment column header would not be read as an assignment."""

    def __init__(self, header: str, reason: str):
        self.header = header
        self.reason = reason
        super().__init__(f"--canvas-assignment {header!r}: {reason}")


class OutputError(ExportError):
    """The output file cannot be written."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# ------------------------------------------------------------------------------------------------
# what is exported
# ------------------------------------------------------------------------------------------------
def graded_cells(course: Course) -> list[GradedCell]:
    """The source notebook's graded cells, in notebook order: the assignment's parts and maximum."""
    return notebook_cells(nbformat.read(course.source_notebook, as_version=4))


@dataclass
class Entry:
    """One student's line of the export, before it is formatted for an LMS."""

    result: StudentResult
    first_name: str = ""
    last_name: str = ""
    stale: str = ""           # why the grade is not current ("" when it is)

    @property
    def student(self) -> str:
        return self.result.student

    @property
    def in_gradebook(self) -> bool:
        """nbgrader has a graded submission (with a maximum) for this student."""
        return self.result.max_score > 0

    @property
    def failed(self) -> bool:
        return self.result.status in FAILED_STATUSES

    @property
    def ungraded(self) -> bool:
        """Not graded at all yet, or its grading was interrupted: there is no score to export."""
        return (not self.in_gradebook and not self.failed) or \
            self.result.status == Status.INTERRUPTED

    @property
    def pending(self) -> bool:
        """Some written answer still waits for a grader."""
        return self.result.needs_manual_grading

    @property
    def total(self) -> float | None:
        """nbgrader's total (late penalty applied, at least 0), or None when there is none.
        While some written answer waits for a grader, the written answers count 0, the ones
        already scored too: a total is either without them or with all of them."""
        if self.ungraded:
            return None
        scored_so_far = sum(a.score or 0.0 for a in self.result.answers) if self.pending else 0.0
        return max(0.0, self.result.score - scored_so_far)

    @property
    def auto_total(self) -> float | None:
        return self.result.auto_score if self.in_gradebook else None

    @property
    def written_total(self) -> float | None:
        if not self.in_gradebook or self.pending:
            return None
        return sum(a.score or 0.0 for a in self.result.answers)

    def part_score(self, part: str) -> float | None:
        """Points in one part; None without a submission or while an answer of it is ungraded."""
        if not self.in_gradebook:
            return None
        items = [i for i in (*self.result.tests, *self.result.answers) if part_of(i.grade_id) == part]
        if not items or any(i.score is None for i in items):
            return None
        return sum(i.score for i in items)

    @property
    def full_name(self) -> str:
        return " ".join(x for x in (self.first_name, self.last_name) if x) or self.result.name

    @property
    def sortable_name(self) -> str:
        """"Last, First" as Canvas shows and exports names."""
        if self.first_name and self.last_name:
            return f"{self.last_name}, {self.first_name}"
        return self.last_name or self.first_name or self.result.name

    @property
    def status_text(self) -> str:
        if self.ungraded:
            return "not graded yet"
        if self.failed:
            reason = f": {self.result.reason}" if self.result.reason else ""
            return f"grading {'timed out' if self.result.status == Status.TIMEOUT else 'failed'}{reason}"
        if self.pending:
            return "graded, written answers awaiting hand grading"
        return "graded"


@dataclass
class Cohort:
    course: Course
    entries: list[Entry]
    cells: list[GradedCell]
    lms_ids: dict[str, str] = field(default_factory=dict)   # student -> LMS id (lms_ids.csv)
    left_out: list[str] = field(default_factory=list)       # students without an LMS id

    def lms_id(self, student: str) -> str:
        return self.lms_ids.get(student, student)

    @property
    def parts(self) -> list[str]:
        return list(dict.fromkeys(c.part for c in self.cells))

    @property
    def max_score(self) -> float:
        """The assignment's maximum: nbgrader's when it has graded anyone, else the notebook's."""
        graded = [e.result.max_score for e in self.entries if e.in_gradebook]
        return graded[0] if graded else sum(c.points for c in self.cells)

    def students(self, which: str) -> list[str]:
        return [e.student for e in self.entries if getattr(e, which)]

    def warnings(self) -> list[str]:
        notes = []
        pending = self.students("pending")
        if pending:
            notes.append(f"written answers not hand-graded yet for {len(pending)} student(s): "
                         f"{', '.join(pending)}; exported their score so far (grade the answers in "
                         "formgrader and export again, or use --require-complete)")
        failed = [e for e in self.entries if e.failed]
        if failed:
            listed = ", ".join(f"{e.student} ({e.result.status})" for e in failed)
            notes.append(f"grading did not finish for {len(failed)} student(s): {listed}; exported "
                         "their gradebook score (0 when there is none); see `python -m autograder "
                         "grade` and their feedback")
        ungraded = self.students("ungraded")
        if ungraded:
            notes.append(f"not graded yet, exported no grade for {len(ungraded)} student(s): "
                         f"{', '.join(ungraded)} (run `python -m autograder grade`)")
        stale = [f"{e.student} ({e.stale})" for e in self.entries if e.stale]
        if stale:
            notes.append(f"grade not current for {len(stale)} student(s): "
                         f"{', '.join(stale)}; exported the old score (run `python -m autograder "
                         "grade` again)")
        return notes


def _names(course: Course, students: list[str]) -> dict[str, tuple[str, str]]:
    from nbgrader.api import MissingEntry

    names: dict[str, tuple[str, str]] = {}
    with open_gradebook(course) as gb:
        for student in students:
            try:
                row = gb.find_student(student)
            except MissingEntry:
                continue
            names[student] = ((row.first_name or "").strip(), (row.last_name or "").strip())
    return names


def _staleness(course: Course, student: str, basis: GradingBasis) -> str:
    """Why a graded student's grade no longer stands, or "" (also for the never graded)."""
    record = read_record(course, student)
    if record is None or not course.submitted_dir(student).is_dir():
        return ""
    return why_not_current(record, fingerprint(course, student), basis) or ""


def load(course: Course) -> Cohort:
    """Every collected student's exportable line, in student id order."""
    if not course.submitted_students():
        return Cohort(course, [], graded_cells(course))
    results = sorted(load_cohort(course), key=lambda r: sort_key(r.student))
    names = _names(course, [r.student for r in results])
    basis = grading_basis(course)
    entries = []
    for result in results:
        first, last = names.get(result.student, ("", ""))
        entries.append(Entry(result, first, last, _staleness(course, result.student, basis)))
    return Cohort(course, entries, graded_cells(course))


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------
def check_canvas_header(header: str) -> str | None:
    """Raise when Canvas would not read `header` as an assignment; return a note when it has no id."""
    if not header.strip():
        raise CanvasHeaderError(header, "is empty")
    if header in CANVAS_RESERVED:
        raise CanvasHeaderError(header, "is one of Canvas's student column names")
    clash = next((name for name in CANVAS_NOT_ASSIGNMENTS if name in header), None)
    if clash:
        raise CanvasHeaderError(header, f"contains {clash!r}, and Canvas drops every column whose "
                                        "header contains it as a computed total")
    if "\n" in header or "\r" in header:
        raise CanvasHeaderError(header, "contains a line break")
    if not CANVAS_TITLE_AND_ID.match(header):
        return (f"the Canvas column {header!r} has no assignment id in parentheses: Canvas will update "
                "the assignment with exactly this title, or create a new assignment if there is none "
                "(pass --canvas-assignment 'Title (ID)' with the id from the assignment's URL)")
    return None


def read_lms_ids(course: Course) -> dict[str, str]:
    """`lms_ids.csv` in the course root (columns student, lms_id): the LMS id of students known
    by another name, e.g. JupyterHub usernames collected through nbgrader's exchange."""
    path = course.root / LMS_IDS
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["student"].strip(): row["lms_id"].strip() for row in csv.DictReader(fh)
                if (row.get("student") or "").strip() and (row.get("lms_id") or "").strip()}


def _check_ids(cohort: Cohort, fmt: str, expected: str) -> None:
    """The LMS finds students by these ids: students without one it can have given out (after
    lms_ids.csv) are left out of the file and named; none at all refuses the file."""
    bad = [e.student for e in cohort.entries if not is_numeric_id(cohort.lms_id(e.student))]
    if bad and len(bad) == len(cohort.entries):
        raise StudentIdError(fmt, bad, expected)
    cohort.left_out = bad
    cohort.entries = [e for e in cohort.entries if e.student not in bad]
    roster = read_roster(cohort.course)
    other = {e.student: roster[e.student].lms for e in cohort.entries
             if e.student in roster and roster[e.student].lms in (CANVAS, MOODLE)
             and roster[e.student].lms != fmt}
    if other:
        raise WrongLmsError(fmt, other)


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue()


def render_canvas(cohort: Cohort, assignment: str) -> str:
    _check_ids(cohort, CANVAS, "Canvas user ids (numbers)")
    rows = [[*CANVAS_STUDENT_COLUMNS, assignment],
            [CANVAS_POINTS_POSSIBLE, "", "", "", "", format_points(cohort.max_score)]]
    for e in cohort.entries:
        rows.append([e.sortable_name, cohort.lms_id(e.student), "", "", "",
                     format_points(e.total)])
    return _csv_text(rows)


def _moodle_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")


def _submission_time(timestamp: str) -> str:
    if not timestamp:
        return ""
    try:
        when = datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return _moodle_time(when)


def render_moodle(cohort: Cohort, now: datetime) -> str:
    _check_ids(cohort, MOODLE, "Moodle participant ids (numbers)")
    modified = _moodle_time(now)
    maximum = format_points(cohort.max_score)
    rows = [list(MOODLE_COLUMNS)]
    for e in cohort.entries:
        rows.append([f"{MOODLE_PARTICIPANT}{cohort.lms_id(e.student)}", e.full_name,
                     e.result.email, e.status_text,
                     format_points(e.total), maximum, "Yes", _submission_time(e.result.timestamp),
                     modified])
    return _csv_text(rows)


def render_plain(cohort: Cohort) -> str:
    parts = cohort.parts
    rows = [[*PLAIN_ID_COLUMNS, *parts, *PLAIN_TOTAL_COLUMNS]]
    for e in cohort.entries:
        penalty = e.result.late_penalty if e.in_gradebook else None
        rows.append([e.student, e.full_name, e.result.status,
                     *(format_points(e.part_score(p)) for p in parts),
                     format_points(e.auto_total), format_points(e.written_total),
                     format_points(penalty), format_points(e.total),
                     format_points(cohort.max_score)])
    return _csv_text(rows)


def render(cohort: Cohort, fmt: str, canvas_assignment: str | None = None,
           now: datetime | None = None) -> str:
    if fmt == CANVAS:
        return render_canvas(cohort, cohort.course.spec.column_title if canvas_assignment is None
                             else canvas_assignment)
    if fmt == MOODLE:
        return render_moodle(cohort, now or datetime.now(timezone.utc))
    if fmt == PLAIN:
        return render_plain(cohort)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write the file as a whole (`files.write_atomic`); a failure is this export's OutputError."""
    try:
        return files.write_atomic(path, data)
    except files.OutputError as exc:
        raise OutputError(exc.path, exc.reason) from exc


def _write_stdout(text: str) -> None:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
    else:
        buffer.write(text.encode("utf-8"))
        buffer.flush()


# ------------------------------------------------------------------------------------------------
# the stage
# ------------------------------------------------------------------------------------------------
@dataclass
class ExportReport:
    format: str
    path: Path | None              # None: written to stdout
    students: int
    exported: int                  # students with a grade in the file
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        where = "stdout" if self.path is None else str(self.path)
        return (f"export ({self.format}): {self.exported} of {self.students} student(s) with a grade, "
                f"written to {where}")


def export(course: Course, fmt: str, output: str | Path, *,
           canvas_assignment: str | None = None, require_complete: bool = False,
           now: datetime | None = None) -> ExportReport:
    """Write the cohort's grades in `fmt` to `output` (a path, or "-" for stdout).

    Raises ExportError (and writes nothing) when the grades cannot be exported as asked.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    notes: list[str] = []
    if canvas_assignment is None:
        canvas_assignment = course.spec.column_title
    if fmt == CANVAS:
        note = check_canvas_header(canvas_assignment)
        if note:
            notes.append(note)
    cohort = load(course)
    if require_complete and (cohort.students("pending") or cohort.students("ungraded")):
        raise IncompleteGradingError(cohort.students("pending"), cohort.students("ungraded"))
    cohort.lms_ids = read_lms_ids(course)
    text = render(cohort, fmt, canvas_assignment, now)
    if cohort.left_out:
        notes.append(f"left out of the {Lms(fmt).label} file, their ids not being "
                     f"{Lms(fmt).label} ids: {', '.join(cohort.left_out)} (hub usernames? give "
                     f"their LMS ids in {LMS_IDS}, columns student,lms_id)")
    if not cohort.entries:
        notes.append("no students: submitted/ is empty (run `python -m autograder collect PATH`); "
                     "the file has only its header")
    notes.extend(cohort.warnings())
    if str(output) == STDOUT:
        _write_stdout(text)
        path = None
    else:
        path = write_atomic(output, text.encode("utf-8"))
    exported = sum(1 for e in cohort.entries if e.total is not None)
    return ExportReport(fmt, path, len(cohort.entries), exported, notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register `export --format canvas|moodle|csv -o FILE` on the CLI's sub-command parser."""
    parser.description = textwrap.fill(
        "Write the grades (nbgrader's totals, late penalty applied) as a file to import into Canvas "
        "(gradebook import CSV) or Moodle (assignment grading worksheet), or as a plain CSV with the "
        "points of each part. Students whose written answers are not hand-graded yet, whose grading "
        "failed, or who are not graded yet are listed on stderr.", width=100)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Canvas: Grades > Import, choose the file, Upload Data, check, Save Changes.\n"
        "Moodle: enable the 'Offline grading worksheet' feedback type, then View all submissions >\n"
        "  'Upload grading worksheet' (interface in English; the Moodle maximum grade must be at least\n"
        "  the nbgrader maximum, or Moodle skips higher grades).\n"
        "Exit status: 0 written (warnings or not), 1 nothing written.")
    parser.add_argument("--format", "-f", required=True, choices=FORMATS,
                        help="canvas: Canvas gradebook import CSV; moodle: Moodle assignment "
                             "grading worksheet CSV; csv: plain CSV with every part")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="file to write (replaced as a whole), or - for stdout")
    parser.add_argument("--canvas-assignment", metavar="'TITLE (ID)'", default=None,
                        help="header of the Canvas grade column (default: the assignment's short "
                             "title, from its grading.py). Canvas matches on the assignment id in "
                             "parentheses at the end, e.g. 'Hardware acceleration (12345)' with "
                             "the id from the assignment's URL; without an id it matches the exact "
                             "title, otherwise creates a new assignment column")
    parser.add_argument("--require-complete", action="store_true",
                        help="write nothing (exit 1) while any written answer awaits hand grading "
                             "or any student is not graded yet (default: export the score so far "
                             "and warn)")


def run(args: argparse.Namespace) -> int:
    """Run the stage for the CLI: 0 when the file was written, 1 when nothing was."""
    try:
        report = export(args.course, args.format, args.output,
                        canvas_assignment=args.canvas_assignment,
                        require_complete=args.require_complete)
    except ExportError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    for note in report.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print(report.summary(), file=sys.stderr if report.path is None else sys.stdout)
    return 0
