"""How the grading of each submission went: `grading/<student>.json`, written by `grade`.

Scores live in nbgrader's gradebook; a record keeps what the gradebook does not: the status and
its reason, how long grading took, fingerprints of what decided the verdicts, and the machine.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from .course import Course
from .files import write_atomic

FOLDER = "grading"


class Status(str, Enum):
    """Where a submission's grading stands."""
    GRADED = "graded"
    FAILED = "failed"            # nbgrader could not grade the notebook (a reason says why)
    TIMEOUT = "timeout"          # the whole submission took longer than allowed
    NOT_GRADED = "not graded"
    INTERRUPTED = "interrupted"  # grading started and did not finish (Ctrl-C, a killed grader)

    def __str__(self) -> str:
        return self.value


@dataclass
class GradingRecord:
    student: str
    fingerprint: str         # of the submitted files
    status: str              # a Status value
    reason: str = ""
    seconds: float = 0.0
    finished_at: float = 0.0
    score: float = 0.0       # autograded points, copied from the gradebook for the summary line
    max_score: float = 0.0
    tests: str = ""          # grade.GradingBasis.tests when it was graded
    grader: str = ""         # grade.GradingBasis.grader when it was graded
    machine: dict = field(default_factory=dict)   # machine.describe() of where it was graded
    answers: dict = field(default_factory=dict)   # written answer id -> sha256 of its text
    answers_changed: list = field(default_factory=list)   # hand-graded ones whose text changed
    worker: str = ""         # the grading slot that graded it (a local job, a Dask worker)
    test_cells: dict = field(default_factory=dict)   # grade.assignment_cells when it was graded
    phases: dict = field(default_factory=dict)   # phase -> [wall, cpu] seconds (autograder.phases)

    @property
    def ok(self) -> bool:
        return self.status == Status.GRADED


def records_dir(course: Course) -> Path:
    return course.root / FOLDER


def record_path(course: Course, student: str) -> Path:
    return records_dir(course) / f"{student}.json"


def read_record(course: Course, student: str) -> GradingRecord | None:
    try:
        data = json.loads(record_path(course, student).read_text())
        return GradingRecord(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def write_record(course: Course, record: GradingRecord) -> None:
    """Replace the student's record as a whole: it is either the old one or the new one."""
    write_atomic(record_path(course, record.student), json.dumps(asdict(record), indent=2),
                 make_folder=True)
