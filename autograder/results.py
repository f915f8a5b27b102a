"""Read what grading produced into plain records for feedback, export and report.

Scores come from nbgrader's gradebook (the one record of them). What the gradebook does not keep
comes from files next to it: the message of each failed test (from the autograded notebook: the
error's name and message only, never its traceback or the cell's source, which would show hidden
tests), the timing figures the timing tests print, what grading measured of the submission's
speed (`performance`), and how grading went (`records`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import Course
from .gradebook import open_gradebook
from .notebook import grade_id, nbgrader, part_of
from .outcomes import Timing, failed_in_hidden_tests, failure_message, timings
from .performance import SUFFIX, Performance
from .records import Status, read_record


@dataclass
class ScoredTest:
    """An autograded test cell as the gradebook scored it, with the message of its failure."""
    grade_id: str
    score: float
    max_score: float
    message: str = ""   # why it failed, for the student; empty when it passed
    in_hidden: bool = False   # it failed in the cell's hidden tests

    @property
    def part(self) -> str:
        return part_of(self.grade_id)

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclass
class WrittenAnswer:
    grade_id: str
    score: float | None      # None until a grader has scored it in formgrader
    max_score: float
    comment: str = ""        # what the grader wrote in formgrader
    blank: bool = False      # left as released: nbgrader scored it 0 by itself, no grader did


@dataclass
class StudentResult:
    student: str
    name: str = ""
    email: str = ""
    status: str = Status.NOT_GRADED
    reason: str = ""
    timestamp: str = ""
    seconds_late: float = 0.0
    late_penalty: float = 0.0
    tests: list[ScoredTest] = field(default_factory=list)
    answers: list[WrittenAnswer] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    score: float = 0.0             # nbgrader's total, late penalty applied
    max_score: float = 0.0
    machine: dict = field(default_factory=dict)        # where it was graded (machine.describe)
    performance: Performance | None = None             # what grading measured of its speed
    code_comments: dict[str, str] = field(default_factory=dict)   # code cell id -> a grader's comment

    @property
    def auto_score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def auto_max(self) -> float:
        return sum(t.max_score for t in self.tests)

    @property
    def needs_manual_grading(self) -> bool:
        return any(a.score is None for a in self.answers)

    def parts(self) -> dict[str, tuple[float, float]]:
        """part -> (score, max) over tests and written answers, in notebook order."""
        totals: dict[str, list[float]] = {}
        for item in [*self.tests, *self.answers]:
            entry = totals.setdefault(part_of(item.grade_id), [0.0, 0.0])
            entry[0] += item.score or 0.0
            entry[1] += item.max_score
        return {part: (s, m) for part, (s, m) in totals.items()}

    def pending_parts(self) -> set[str]:
        """Parts with a written answer no grader has scored yet: their totals are not final."""
        return {part_of(a.grade_id) for a in self.answers if a.score is None}

    def timing(self, name: str) -> Timing | None:
        return next((t for t in self.timings if t.name == name), None)


def read_notebook_details(path: Path) -> tuple[dict[str, tuple[str, bool]], list[Timing]]:
    """(failure message, failed in the hidden tests?) by grade id, and the timing lines, of one
    autograded notebook."""
    messages: dict[str, tuple[str, bool]] = {}
    found: list[Timing] = []
    if not path.is_file():
        return messages, found
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or not nbgrader(cell).get("grade"):
            continue
        outputs = cell.get("outputs", [])
        messages[grade_id(cell)] = (failure_message(outputs), failed_in_hidden_tests(outputs))
        found += timings("".join(o.get("text", "") for o in outputs
                                 if o.get("output_type") == "stream"))
    return messages, found


def grade_order(course: Course) -> dict[str, int]:
    """Position of each graded cell in the source notebook, to list tests in the order students see."""
    nb = nbformat.read(course.source_notebook, as_version=4)
    ids = [grade_id(c) for c in nb.cells]
    return {name: i for i, name in enumerate(ids) if name}


def load_student(course: Course, gb, student: str, order: dict[str, int]) -> StudentResult:
    from nbgrader.api import MissingEntry

    result = StudentResult(student=student)
    try:
        row = gb.find_student(student)
        result.name = " ".join(x for x in (row.first_name, row.last_name) if x)
        result.email = row.email or ""
    except MissingEntry:
        pass
    record = read_record(course, student)
    if record is not None:
        result.status, result.reason, result.machine = record.status, record.reason, record.machine
    try:
        submission = gb.find_submission(course.assignment, student)
    except MissingEntry:
        return result
    result.timestamp = (submission.timestamp.isoformat(sep=" ", timespec="seconds")
                        if submission.timestamp else "")
    result.seconds_late = float(submission.total_seconds_late or 0)
    result.late_penalty = float(submission.late_submission_penalty or 0)
    result.score = float(submission.score) - result.late_penalty
    result.max_score = float(submission.max_score)
    for notebook in submission.notebooks:
        messages, found = read_notebook_details(
            course.autograded_dir(student) / f"{notebook.name}.ipynb")
        result.timings.extend(found)
        result.performance = result.performance or Performance.read(
            course.autograded_dir(student) / f"{notebook.name}{SUFFIX}")
        comments = {c.name: (c.manual_comment or "").strip() for c in notebook.comments}
        answered = {g.name for g in notebook.grades}
        result.code_comments.update({name: text for name, text in comments.items()
                                     if text and name not in answered})
        for grade in sorted(notebook.grades, key=lambda g: order.get(g.name, len(order))):
            comment = comments.get(grade.name, "")
            if grade.cell.cell_type == "code":
                message, hidden = messages.get(grade.name, ("", False))
                result.tests.append(ScoredTest(grade.name, float(grade.score or 0),
                                               float(grade.max_score), message, hidden))
            else:
                pending = grade.needs_manual_grade
                result.answers.append(WrittenAnswer(
                    grade.name, None if pending else float(grade.score or 0),
                    float(grade.max_score), comment,
                    blank=grade.manual_score is None and grade.auto_score == 0 and not pending))
    return result


def load_cohort(course: Course, students: list[str] | None = None) -> list[StudentResult]:
    """Every collected student's result (graded or not), sorted by student id."""
    wanted = students or course.submitted_students()
    order = grade_order(course)
    with open_gradebook(course) as gb:
        return [load_student(course, gb, s, order) for s in sorted(wanted)]
