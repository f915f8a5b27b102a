"""Import a class's submissions into nbgrader's `submitted/<student>/<assignment>/<notebook>`.

This is the first stage of the pipeline (collect -> grade -> feedback -> export -> report). It reads one
of three inputs and leaves, for every student it can place, exactly what `nbgrader autograde` expects:

* a Canvas "Download Submissions" zip (`sources.canvas`),
* a Moodle assignment "Download all submissions" zip (`sources.moodle`),
* a plain folder, one notebook or folder per student (`sources.folder`).

Each source turns its input into the same candidates (`sources.candidates`); this stage decides
per student, installs, records the students in the gradebook and keeps the roster. Neither LMS
records when a file was submitted inside its zip: both stamp every entry with the time the zip
was built (rubyzip's and ZipStream's default). So for LMS downloads no `timestamp.txt` is written
and the submission time is reported as unknown, and lateness is not detected for Moodle at all;
Canvas's LATE mark is kept in the report and in the roster (`collected/roster.csv`). For folders
the time is nbgrader's `timestamp.txt` when there is one, otherwise the notebook's modification
time, written as `timestamp.txt` so nbgrader's late-penalty plugin applies.

Nothing is guessed and nothing is lost: a file that cannot be placed is listed with the reason and not
imported; a student with two different notebooks gets neither; re-importing the same file changes nothing
("unchanged"); a different file replaces the imported one only after the old folder has been moved to
`collected/previous/<student>/<stamp>/` ("replaced"). Each student's display name from the LMS is
recorded in nbgrader's gradebook, the one student record later stages read.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .course import Course
from .files import write_atomic
from .gradebook import GradebookError, open_gradebook
from .lms import Lms, sort_key
from .sources import canvas, folder, moodle, zips
from .sources.candidates import (TIMESTAMP_FILE, TIMESTAMP_FORMAT, Candidate, CollectError,
                                 Rejected, is_notebook_name, notebook_problem,
                                 read_timestamp_file, utc)

if TYPE_CHECKING:  # nbgrader is imported where it is used: it takes seconds to load
    from nbgrader.api import Gradebook

NEW, REPLACED, UNCHANGED = "new", "replaced", "unchanged"
CANVAS, MOODLE, FOLDER = Lms.CANVAS, Lms.MOODLE, Lms.FOLDER
LMS_CHOICES = ("auto", *(lms.value for lms in Lms))

@dataclass(frozen=True)
class Imported:
    """One student's notebook, now at `submitted/<student>/<assignment>/<notebook>`.

    `name` is the LMS's name for the student ("" for folders); `timestamp` the submission time (UTC),
    None when the input does not say; `late` Canvas's LATE mark, None when the input does not say;
    `status` is "new", "replaced" or "unchanged"; `previous` where the replaced copy was moved.
    """

    student: str
    name: str
    source_file: str
    timestamp: datetime | None
    late: bool | None
    status: str
    previous: Path | None = None


@dataclass
class CollectReport:
    """What one `collect` did: `lms` is "canvas", "moodle" or "folder"."""

    source: Path
    lms: str
    imported: list[Imported] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    due: datetime | None = None     # the assignment's due date in the gradebook, if set
    assignment: str = "<assignment>"

    def students(self, status: str | None = None) -> list[str]:
        return [i.student for i in self.imported if status is None or i.status == status]

    def summary(self) -> str:
        counts = {s: len(self.students(s)) for s in (NEW, REPLACED, UNCHANGED)}
        return (f"{self.source.name} ({Lms(self.lms).label}): {len(self.imported)} imported "
                f"({counts[NEW]} new, {counts[REPLACED]} replaced, {counts[UNCHANGED]} unchanged), "
                f"{len(self.rejected)} rejected")

    def format_table(self) -> str:
        lines = [self.summary()]
        if self.imported:
            rows = [(i.student, i.name or "-", i.status, _format_time(i.timestamp), _format_late(i.late),
                     i.source_file) for i in self.imported]
            lines += ["", *_table(("student", "name", "status", "submitted", "late", "file"), rows)]
        if self.rejected:
            rows = [(r.file, r.reason) for r in self.rejected]
            lines += ["", "Not imported:", *_table(("file", "reason"), rows)]
        if self.lms in (CANVAS, MOODLE) and self.imported:
            note = (f"{Lms(self.lms).label} downloads carry no submission times (the zip is stamped "
                    "when it is built), so work on time gets no timestamp.txt.")
            if self.lms == CANVAS and self.due is not None:
                note += (" Work Canvas marks LATE is stamped one second after the due date "
                         f"({_format_time(self.due)}), so nbgrader's late policy applies to it.")
            elif self.lms == CANVAS:
                note += (" The assignment has no due date in the gradebook, so Canvas's LATE marks "
                         f"are only kept in {_COLLECTED}/roster.csv: set one (nbgrader db assignment "
                         f"add {self.assignment} --duedate=...) and collect again to apply them.")
            lines += ["", note]
        replaced = self.students(REPLACED)
        if replaced:
            lines += ["", f"Replaced: {', '.join(replaced)}; the copies they replaced are in "
                          f"{_PREVIOUS}/<student>/<stamp>/."]
        return "\n".join(lines)


@dataclass(frozen=True)
class RosterEntry:
    """One line of `collected/roster.csv`: where each imported student's notebook came from."""

    student: str
    name: str
    lms: str
    download: str
    file: str
    submitted_at: str
    late: str
    sha256: str
    collected_at: str


ROSTER_FIELDS = tuple(RosterEntry.__dataclass_fields__)
_COLLECTED = "collected"
_PREVIOUS = f"{_COLLECTED}/previous"


def roster_path(course: Course) -> Path:
    return course.root / _COLLECTED / "roster.csv"


def read_roster(course: Course) -> dict[str, RosterEntry]:
    """The roster written by `collect`: student id -> entry (empty when nothing was collected yet)."""
    path = roster_path(course)
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["student"]: RosterEntry(**{k: row.get(k) or "" for k in ROSTER_FIELDS})
                for row in csv.DictReader(fh)}


# ------------------------------------------------------------------------------------------------
# deciding, per student
# ------------------------------------------------------------------------------------------------
def _choose(candidates: list[Candidate], rejected: list[Rejected]) -> list[Candidate]:
    """One valid notebook per student; invalid, duplicate and ambiguous ones go to `rejected`."""
    valid: dict[str, list[Candidate]] = {}
    for cand in candidates:
        problem = notebook_problem(cand.data)
        if problem:
            rejected.append(Rejected(cand.source_file, problem, cand.student))
        else:
            valid.setdefault(cand.student, []).append(cand)
    chosen = []
    for student in sorted(valid, key=sort_key):
        cands = sorted(valid[student], key=lambda c: c.source_file)
        distinct = {c.sha256 for c in cands}
        if len(distinct) > 1:
            files = ", ".join(c.source_file for c in cands)
            for cand in cands:
                rejected.append(Rejected(cand.source_file,
                                         f"{len(distinct)} different notebooks for student {student} "
                                         f"({files}): not guessing which to grade; remove the wrong one "
                                         "and collect again", student))
            continue
        keep = max(cands, key=lambda c: (c.timestamp is not None, c.timestamp or datetime.min.replace(
            tzinfo=timezone.utc)))
        for cand in cands:
            if cand is not keep:
                reason = f"identical copy of {keep.source_file}; imported once"
                rejected.append(Rejected(cand.source_file, reason, student))
        chosen.append(keep)
    return chosen


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def _format_time(ts: datetime | None) -> str:
    return "-" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_late(late: bool | None) -> str:
    return "-" if late is None else ("LATE" if late else "on time")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()

    return [line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)]


def _existing_timestamp(folder: Path) -> datetime | None | str:
    path = folder / TIMESTAMP_FILE
    if not path.is_file():
        return None
    try:
        return read_timestamp_file(path)
    except (ValueError, OSError):
        return "unreadable"


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _install(course: Course, cand: Candidate, staging: Path) -> tuple[str, Path | None]:
    """Put one notebook (and its timestamp) in place; return its status and where the old copy went."""
    target = course.submitted_dir(cand.student)
    if not _inside(target.parent, course.root / "submitted"):
        raise CollectError(target, "would be written outside the course's submitted/ folder")
    notebook = target / course.notebook
    if notebook.is_file() and notebook.read_bytes() == cand.data \
            and _existing_timestamp(target) == cand.timestamp:
        return UNCHANGED, None

    fresh = Path(tempfile.mkdtemp(prefix=f"{cand.student}-", dir=staging))
    (fresh / course.notebook).write_bytes(cand.data)
    if cand.timestamp is not None:
        stamp = cand.timestamp.strftime(TIMESTAMP_FORMAT)
        (fresh / TIMESTAMP_FILE).write_text(stamp + "\n", encoding="utf-8")

    status, previous = NEW, None
    if target.exists() or target.is_symlink():
        had_notebook = notebook.is_file()
        base = course.root / _PREVIOUS / cand.student
        base.mkdir(parents=True, exist_ok=True)
        previous = base / _stamp()
        n = 1
        while previous.exists():
            previous = base / f"{_stamp()}-{n}"
            n += 1
        os.replace(target, previous)
        status = REPLACED if had_notebook else NEW
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(fresh, target)
    return status, previous


@contextmanager
def _gradebook(course: Course) -> Iterator["Gradebook"]:
    """The course's gradebook; a problem opening it is this input's CollectError."""
    try:
        with open_gradebook(course) as gb:
            yield gb
    except GradebookError as exc:
        raise CollectError(course.gradebook, str(exc)) from exc


def due_date(gb: "Gradebook", assignment: str) -> datetime | None:
    """The assignment's due date in the gradebook, as aware UTC (None when it has none)."""
    from nbgrader.api import MissingEntry

    try:
        due = gb.find_assignment(assignment).duedate
    except MissingEntry:
        return None
    return None if due is None else utc(due)


def _record_students(gb: "Gradebook", candidates: list[Candidate], where: Path) -> None:
    """Create every student seen in the input in nbgrader's gradebook, with the LMS's name for them.

    Moodle's full name is stored split at its last space (first name(s), last name), so that
    "first last" gives it back. Canvas only gives `lastfirst` (lower-cased, punctuation removed), stored
    as the last name and only when the gradebook has no name for that student yet.
    """
    from nbgrader.api import InvalidEntry, MissingEntry
    from sqlalchemy.exc import SQLAlchemyError

    people: dict[str, Candidate] = {}
    for cand in candidates:
        people.setdefault(cand.student, cand)
    for student in sorted(people, key=sort_key):
        cand = people[student]
        fields: dict[str, str | None] = {}
        if cand.lms_user_id:
            fields["lms_user_id"] = cand.lms_user_id
        if cand.last_name:
            overwrite = cand.name_is_exact
            if not overwrite:
                try:
                    existing = gb.find_student(student)
                    overwrite = not (existing.first_name or existing.last_name)
                except MissingEntry:
                    overwrite = True
            if overwrite:
                fields["first_name"] = cand.first_name
                fields["last_name"] = cand.last_name
        try:
            gb.update_or_create_student(student, **fields)
        except (InvalidEntry, SQLAlchemyError) as exc:
            raise CollectError(where, f"the notebooks are in submitted/, but student {student} could "
                                      f"not be recorded in the gradebook: {exc}") from exc


def _update_roster(course: Course, report: CollectReport, chosen: dict[str, Candidate]) -> None:
    roster = read_roster(course)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    changed = False
    for item in report.imported:
        cand = chosen[item.student]
        entry = RosterEntry(
            student=item.student, name=item.name, lms=report.lms, download=report.source.name,
            file=item.source_file,
            submitted_at="" if item.timestamp is None else item.timestamp.strftime(TIMESTAMP_FORMAT),
            late="" if item.late is None else ("yes" if item.late else "no"),
            sha256=cand.sha256, collected_at=now)
        old = roster.get(item.student)
        if item.status == UNCHANGED and old is not None:
            entry = RosterEntry(**{**entry.__dict__, "collected_at": old.collected_at})
        if old != entry:
            roster[item.student] = entry
            changed = True
    if not changed:
        return
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=ROSTER_FIELDS)
    writer.writeheader()
    for student in sorted(roster, key=sort_key):
        writer.writerow(roster[student].__dict__)
    write_atomic(roster_path(course), text.getvalue(), make_folder=True)


# ------------------------------------------------------------------------------------------------
# the stage
# ------------------------------------------------------------------------------------------------
def collect(course: Course, path: str | Path, lms: str = "auto") -> CollectReport:
    """Import the submissions in `path` (a Canvas or Moodle download zip, or a folder) into `course`.

    `lms` is "auto" (decided from the input), "canvas", "moodle" or "folder". Raises CollectError when
    the input as a whole cannot be used (missing, not a zip, damaged, not an LMS download).
    """
    if lms not in LMS_CHOICES:
        raise ValueError(f"lms must be one of {', '.join(LMS_CHOICES)}, not {lms!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise CollectError(path, "no such file or folder")
    if path.is_dir():
        if lms not in ("auto", FOLDER):
            raise CollectError(path, f"is a folder, not a {Lms(lms).label} download zip")
        lms = FOLDER
        if _inside(path, course.root / "submitted") or _inside(course.root / "submitted", path):
            raise CollectError(path, "is (or holds) the course's own submitted/ folder; "
                                     "collect from a copy")
        candidates, rejected = folder.read_folder(path, course.assignment, course.notebook)
    else:
        if lms == FOLDER:
            raise CollectError(path, "is a file, not a folder")
        if is_notebook_name(path.name):
            raise CollectError(path, "is a single notebook: put it in a folder as <student id>.ipynb "
                                     "and collect the folder")
        lms, candidates, rejected = zips.read_zip(path, lms)

    return intake(course, path, lms, candidates, rejected)


def intake(course: Course, source: Path, lms: str, candidates: list[Candidate],
           rejected: list[Rejected]) -> CollectReport:
    """Decide per student among what a source found, install into submitted/, record the students
    in the gradebook and the roster: the part of collecting every source shares."""
    report = CollectReport(source=source, lms=lms, rejected=rejected, assignment=course.assignment)
    chosen = _choose(candidates, report.rejected)
    report.rejected.sort(key=lambda r: r.file)
    display = {c.student: c.display for c in candidates}

    with _gradebook(course) as gb:
        report.due = due_date(gb, course.assignment)
        if report.due is not None:
            # Canvas marks late work but gives no time: one second past the due date is the
            # earliest time it can have been handed in, and makes nbgrader's late policy apply.
            late_stamp = report.due + timedelta(seconds=1)
            chosen = [dataclasses.replace(c, timestamp=late_stamp)
                      if c.late and c.timestamp is None else c for c in chosen]
            # A folder gives times, not marks: late is what nbgrader's late policy will say.
            chosen = [dataclasses.replace(c, late=c.timestamp > report.due)
                      if c.late is None and c.timestamp is not None else c for c in chosen]
        (course.root / _COLLECTED).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=course.root / _COLLECTED))
        try:
            for cand in chosen:
                status, previous = _install(course, cand, staging)
                report.imported.append(Imported(cand.student, display.get(cand.student, ""),
                                                cand.source_file, cand.timestamp, cand.late, status,
                                                previous))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _record_students(gb, candidates, course.gradebook)
    _update_roster(course, report, {c.student: c for c in chosen})
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register `collect PATH [--lms ...]` on the CLI's sub-command parser."""
    parser.description = ("Import submissions from a Canvas 'Download Submissions' zip, a Moodle "
                          "'Download all submissions' zip, or a folder (one <student>/ or "
                          "<student>.ipynb per student) into nbgrader's submitted/ folder.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"""what PATH may be:
  Canvas  Assignment > Download Submissions: a flat zip of
          {canvas.PATTERN}
          (LATE is Canvas's own mark; anonymous grading must be off). No times in the zip:
          work marked LATE is stamped one second past the gradebook's due date.
  Moodle  Assignment > View all submissions > Download all submissions: a zip of
          {moodle.PATTERN}
          (in folders or flat). No times and no late mark in the zip: lateness is not
          detected for Moodle downloads.
  folder  <student>.ipynb, <student>/<any>.ipynb or <student>/<assignment>/<notebook>
          (nbgrader's layout); the time is its timestamp.txt, else the file's mtime.
Re-running is safe: unchanged files stay, changed ones replace the old copy, which is kept in
{_PREVIOUS}/."""
    parser.add_argument("path", type=Path, help="the downloaded zip, or a folder of submissions")
    parser.add_argument("--lms", choices=LMS_CHOICES, default="auto",
                        help="what PATH is (default: decided from its contents)")


def run(args: argparse.Namespace) -> int:
    """The CLI sub-command: print the table; 0 when anything was imported (or is unchanged), else 1."""
    try:
        report = collect(args.course, args.path, lms=getattr(args, "lms", "auto"))
    except CollectError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 1
    print(report.format_table())
    return 0 if report.imported else 1
