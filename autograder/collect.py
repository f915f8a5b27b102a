"""Import a class's submissions into nbgrader's `submitted/<student>/<assignment>/<notebook>`.

This is the first stage of the pipeline (collect -> grade -> feedback -> export -> report). It reads one
of three inputs and leaves, for every student it can place, exactly what `nbgrader autograde` expects:

* a Canvas "Download Submissions" zip. Canvas (lib/content_zipper.rb) names every uploaded file
  `{lastfirst}[_LATE]_{user_id}_{attachment_id}_{display name}` in a flat zip, where `lastfirst` is the
  student's sortable name lower-cased with everything but letters, digits and `_` removed, and `LATE` is
  Canvas's own verdict (it knows per-student due dates); old Canvas wrote `{last--first}-late_{id}_...`.
  A file uploaded again under the same name is renamed `<name>-1.ipynb`, `-2`, ... Student id:
  the Canvas user id. Downloads with anonymous grading on name files `anon_{id}_...` and are refused.
* a Moodle assignment "Download all submissions" zip (mod/assign). Every file of a participant sits in a
  folder `{Full Name}_{participant id}_assignsubmission_file/` (Moodle 4.1+) or
  `{Full Name}_{participant id}_assignsubmission_file_/` (Moodle 3.1-4.0), or, with "download submissions
  in folders" off (and before 3.1), is flat: `{Full Name}_{participant id}_assignsubmission_file_{name}`.
  Moodle replaces `_` in names by spaces, so the first `_` ends the name. Student id: the participant id.
* a plain folder: `DIR/<student>.ipynb`, `DIR/<student>/<any>.ipynb`, or nbgrader's own
  `DIR/<student>/<assignment>/<notebook>` (with its `timestamp.txt`). Student id: the name, in
  ASCII letters, digits and `. _ @ + -` (the one rule of `lms.is_student_id`, which export keeps too).

Neither LMS records when a file was submitted inside its zip: both stamp every entry with the time the
zip was built (rubyzip's and ZipStream's default). So for LMS downloads no `timestamp.txt` is written and
the submission time is reported as unknown; Canvas's LATE mark is kept in the report and in the roster
(`collected/roster.csv`). For folders the time is nbgrader's `timestamp.txt` when there is one, otherwise
the notebook's modification time, written as `timestamp.txt` so nbgrader's late-penalty plugin applies.

File names are parsed by nbgrader's own zip_collect collector (`FileNameCollectorPlugin` with a
`named_regexp`). nbgrader's extractor plugin is not used: it silently drops unsafe entries, unpacks
archives students uploaded (one broken upload would abort the whole class), and keeps no entry metadata;
here every entry is checked and each refusal gets a reason.

Nothing is guessed and nothing is lost: a file that cannot be placed is listed with the reason and not
imported; a student with two different notebooks gets neither; re-importing the same file changes nothing
("unchanged"); a different file replaces the imported one only after the old folder has been moved to
`collected/previous/<student>/<stamp>/` ("replaced"). Each student's display name from the LMS is
recorded in nbgrader's gradebook, the one student record later stages read.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
import zlib
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator

import nbformat

from .course import Course
from .files import write_atomic
from .gradebook import GradebookError, open_gradebook
from .lms import ID_RULE, Lms, is_student_id, sort_key

if TYPE_CHECKING:  # nbgrader is imported where it is used: it takes seconds to load
    from nbgrader.api import Gradebook
    from nbgrader.plugins import FileNameCollectorPlugin

NEW, REPLACED, UNCHANGED = "new", "replaced", "unchanged"
CANVAS, MOODLE, FOLDER = Lms.CANVAS, Lms.MOODLE, Lms.FOLDER
LMS_CHOICES = ("auto", *(lms.value for lms in Lms))

TIMESTAMP_FILE = "timestamp.txt"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"
MAX_NOTEBOOK_BYTES = 100 * 1024 * 1024

CANVAS_REGEXP = (r"^(?P<name>[^/]*?)(?P<late>_LATE|-late)?"
                 r"_(?P<student_id>[0-9]+)_(?P<attachment_id>[0-9]+)_(?P<file_id>[^/]+)$")
CANVAS_ANONYMOUS_REGEXP = r"^(?:LATE_)?anon_"
MOODLE_REGEXP = (r"^(?P<name>[^/_]+)_(?P<student_id>[0-9]+)_assignsubmission_(?P<plugin>[a-z0-9]+)"
                 r"(?:_?/(?:[^/]+/)*|_)(?P<file_id>[^/]+)$")
PATTERNS = {
    CANVAS: "lastfirst[_LATE]_<user id>_<file id>_<file name>",
    MOODLE: "<Full Name>_<participant id>_assignsubmission_file[_]/<file name>",
}
MOODLE_BLIND_NAME = "Participant"

_nbgrader_log = logging.getLogger(__name__ + ".nbgrader")
_nbgrader_log.addHandler(logging.NullHandler())
_nbgrader_log.propagate = False


class CollectError(Exception):
    """An input as a whole, or the gradebook, cannot be used: `path` says which, `reason` why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


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


@dataclass(frozen=True)
class Rejected:
    """A file that was not imported, and why."""

    file: str
    reason: str
    student: str | None = None


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
# reading the inputs
# ------------------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    student: str
    source_file: str
    data: bytes
    timestamp: datetime | None
    late: bool | None
    display: str = ""
    first_name: str | None = None
    last_name: str | None = None
    name_is_exact: bool = False
    lms_user_id: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _collector(lms: str) -> FileNameCollectorPlugin:
    from nbgrader.plugins import FileNameCollectorPlugin

    regexp = CANVAS_REGEXP if lms == CANVAS else MOODLE_REGEXP
    return FileNameCollectorPlugin(named_regexp=regexp, valid_ext=[".ipynb", ".IPYNB"],
                                   log=_nbgrader_log)


def _is_notebook_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() == ".ipynb"


def _not_a_notebook(name: str) -> str:
    ext = PurePosixPath(name).suffix
    return f"not a notebook ({ext or 'no extension'}): only .ipynb files are graded"


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _notebook_problem(data: bytes) -> str | None:
    """Why `data` is not a notebook nbgrader can grade, or None."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "not a valid notebook: not UTF-8 text"
    captured: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4, capture_validation_error=captured)
            nbformat.validate(nb)
    except nbformat.reader.NotJSONError:
        return "not a valid notebook: the file is not JSON (truncated or damaged upload?)"
    except Exception as exc:  # nbformat raises many types for malformed input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"not a valid notebook: {first[:160]}"
    if captured.get("ValidationError") is not None:
        return "not a valid notebook: it does not follow the notebook format"
    return None


def _entry_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def _unsafe(name: str) -> str | None:
    if "\x00" in name:
        why = "NUL byte in name"
    elif name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        why = "absolute path"
    elif "\\" in name:
        why = "backslash in path"
    elif ".." in name.split("/"):
        why = "'..' in path"
    else:
        return None
    return f"unsafe path in the zip ({why}): not extracted"


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and (info.external_attr >> 16) & 0o170000 == 0o120000


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CollectError(path, f"not a readable zip file ({exc}); download it again") from exc
    except OSError as exc:
        raise CollectError(path, f"cannot be read: {exc.strerror or exc}") from exc
    try:
        bad = zf.testzip()
    except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, EOFError, OSError,
            ValueError) as exc:
        zf.close()
        raise CollectError(path, f"the zip is damaged or uses an unsupported feature ({exc}); "
                                 "download it again") from exc
    if bad is not None:
        zf.close()
        raise CollectError(path, f"the zip is damaged: entry {bad!r} fails its checksum; "
                                 "download it again")
    return zf


def _detect_lms(path: Path, names: list[str]) -> str:
    canvas = sum(1 for n in names if re.match(CANVAS_REGEXP, n) or re.match(CANVAS_ANONYMOUS_REGEXP, n))
    moodle = sum(1 for n in names if re.match(MOODLE_REGEXP, n))
    if canvas == moodle == 0:
        sample = ", ".join(repr(n) for n in names[:3]) or "no files"
        raise CollectError(path, "not a Canvas or Moodle submissions download: no file in it is named "
                                 f"like {PATTERNS[CANVAS]} (Canvas) or {PATTERNS[MOODLE]} (Moodle); "
                                 f"found {sample}")
    return MOODLE if moodle >= canvas else CANVAS


def _split_moodle_name(full: str) -> tuple[str | None, str | None]:
    full = " ".join(full.split())
    if not full or full == MOODLE_BLIND_NAME:
        return None, None
    first, _, last = full.rpartition(" ")
    return (first or None), last


def _read_zip(path: Path, lms: str) -> tuple[str, list[_Candidate], list[Rejected]]:
    rejected: list[Rejected] = []
    candidates: list[_Candidate] = []
    with _open_zip(path) as zf:
        entries: list[tuple[str, zipfile.ZipInfo]] = []
        for info in zf.infolist():
            name = _entry_name(info)
            if info.is_dir():
                continue
            problem = _unsafe(name)
            if problem:
                rejected.append(Rejected(name, problem))
            elif any(_hidden(part) for part in name.split("/")):
                continue
            elif _is_symlink(info):
                rejected.append(Rejected(name, "symbolic link in the zip: not extracted"))
            else:
                entries.append((name, info))
        if lms == "auto":
            lms = _detect_lms(path, [n for n, _ in entries])
        label = Lms(lms).label
        plugin = _collector(lms)
        for name, info in entries:
            if not _is_notebook_name(name):
                rejected.append(Rejected(name, _not_a_notebook(name)))
                continue
            parsed = plugin.collect(name)
            if not parsed:
                if lms == CANVAS and re.match(CANVAS_ANONYMOUS_REGEXP, name):
                    reason = ("anonymous grading is on, so Canvas does not say whose file this is; "
                              "download again with anonymous grading off")
                else:
                    reason = f"name does not match the {label} download pattern {PATTERNS[lms]}"
                rejected.append(Rejected(name, reason))
                continue
            student = parsed["student_id"]
            if info.file_size > MAX_NOTEBOOK_BYTES:
                size = f"{info.file_size // 2**20} MB"
                rejected.append(Rejected(name, f"too large for a notebook ({size})", student))
                continue
            display = " ".join((parsed.get("name") or "").split())
            if lms == CANVAS:
                candidate = _Candidate(student, name, zf.read(info), None, bool(parsed.get("late")),
                                       display=display, last_name=display or None,
                                       lms_user_id=student)
            else:
                first, last = _split_moodle_name(display)
                candidate = _Candidate(student, name, zf.read(info), None, None,
                                       display="" if last is None else display, first_name=first,
                                       last_name=last, name_is_exact=last is not None)
            candidates.append(candidate)
    return lms, candidates, rejected


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _read_timestamp_file(path: Path) -> datetime:
    """nbgrader's timestamp.txt as an aware UTC datetime; ValueError when unreadable."""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        raise ValueError("empty")
    try:
        from nbgrader.utils import parse_utc

        return _utc(parse_utc(text))
    except (ValueError, OverflowError, TypeError) as exc:
        raise ValueError(text[:40]) from exc


def _read_folder(root: Path, assignment: str,
                 notebook: str) -> tuple[list[_Candidate], list[Rejected]]:
    candidates: list[_Candidate] = []
    rejected: list[Rejected] = []
    reserved = {assignment, PurePosixPath(notebook).stem}

    def bad_student(student: str, what: str) -> str | None:
        if student in reserved:
            return (f"{what} is named like the assignment, not like a student: point collect at the "
                    "folder that holds one entry per student")
        if not is_student_id(student):
            return f"{what} {student!r} is not usable as a student id ({ID_RULE})"
        return None

    def add(path: Path, student: str) -> None:
        rel = path.relative_to(root).as_posix()
        stamp_file = path.parent / TIMESTAMP_FILE
        if stamp_file.is_file():
            try:
                timestamp = _read_timestamp_file(stamp_file)
            except (ValueError, OSError) as exc:
                rejected.append(Rejected(rel, f"its {TIMESTAMP_FILE} cannot be read ({exc}); fix or "
                                              "remove it", student))
                return
        else:
            timestamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        candidates.append(_Candidate(student, rel, path.read_bytes(), timestamp, None))

    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if _hidden(entry.name):
            continue
        if entry.is_symlink():
            rejected.append(Rejected(entry.name, "symbolic link: not followed"))
        elif entry.is_file():
            if not _is_notebook_name(entry.name):
                rejected.append(Rejected(entry.name, _not_a_notebook(entry.name)))
            elif problem := bad_student(entry.stem, "the file"):
                rejected.append(Rejected(entry.name, problem))
            else:
                add(entry, entry.stem)
        elif entry.is_dir():
            if problem := bad_student(entry.name, "the folder"):
                rejected.append(Rejected(entry.name + "/", problem))
                continue
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
                for fname in sorted(filenames):
                    path = Path(dirpath) / fname
                    rel = path.relative_to(root).as_posix()
                    if _hidden(fname) or fname == TIMESTAMP_FILE:
                        continue
                    if path.is_symlink():
                        rejected.append(Rejected(rel, "symbolic link: not followed", entry.name))
                    elif not _is_notebook_name(fname):
                        rejected.append(Rejected(rel, _not_a_notebook(fname), entry.name))
                    else:
                        add(path, entry.name)
    return candidates, rejected


# ------------------------------------------------------------------------------------------------
# deciding, per student
# ------------------------------------------------------------------------------------------------
def _choose(candidates: list[_Candidate], rejected: list[Rejected]) -> list[_Candidate]:
    """One valid notebook per student; invalid, duplicate and ambiguous ones go to `rejected`."""
    valid: dict[str, list[_Candidate]] = {}
    for cand in candidates:
        problem = _notebook_problem(cand.data)
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
        return _read_timestamp_file(path)
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


def _install(course: Course, cand: _Candidate, staging: Path) -> tuple[str, Path | None]:
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


def _due_date(gb: "Gradebook", assignment: str) -> datetime | None:
    from nbgrader.api import MissingEntry

    try:
        due = gb.find_assignment(assignment).duedate
    except MissingEntry:
        return None
    return None if due is None else _utc(due)


def _record_students(gb: "Gradebook", candidates: list[_Candidate], where: Path) -> None:
    """Create every student seen in the input in nbgrader's gradebook, with the LMS's name for them.

    Moodle's full name is stored split at its last space (first name(s), last name), so that
    "first last" gives it back. Canvas only gives `lastfirst` (lower-cased, punctuation removed), stored
    as the last name and only when the gradebook has no name for that student yet.
    """
    from nbgrader.api import InvalidEntry, MissingEntry
    from sqlalchemy.exc import SQLAlchemyError

    people: dict[str, _Candidate] = {}
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


def _update_roster(course: Course, report: CollectReport, chosen: dict[str, _Candidate]) -> None:
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
        candidates, rejected = _read_folder(path, course.assignment, course.notebook)
    else:
        if lms == FOLDER:
            raise CollectError(path, "is a file, not a folder")
        if _is_notebook_name(path.name):
            raise CollectError(path, "is a single notebook: put it in a folder as <student id>.ipynb "
                                     "and collect the folder")
        lms, candidates, rejected = _read_zip(path, lms)

    report = CollectReport(source=path, lms=lms, rejected=rejected, assignment=course.assignment)
    chosen = _choose(candidates, report.rejected)
    report.rejected.sort(key=lambda r: r.file)
    display = {c.student: c.display for c in candidates}

    with _gradebook(course) as gb:
        report.due = _due_date(gb, course.assignment)
        if report.due is not None:
            # Canvas marks late work but gives no time: one second past the due date is the
            # earliest time it can have been handed in, and makes nbgrader's late policy apply.
            late_stamp = report.due + timedelta(seconds=1)
            chosen = [dataclasses.replace(c, timestamp=late_stamp)
                      if c.late and c.timestamp is None else c for c in chosen]
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
