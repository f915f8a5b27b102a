"""Write one HTML feedback page per student from the gradebook.

The page shows the score per part, every test with the message of its failure, the timing figures
against their limits, and the state of the written answers. It is built from the results records,
not from the graded notebook, so the source of hidden tests never reaches students (nbgrader's own
feedback renders the whole notebook, hidden tests included).

Pages go to nbgrader's feedback folder, `feedback/<student>/acceleration/acceleration.html`, where
`nbgrader release_feedback` and the LMS upload steps in the README pick them up.
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from .course import Course
from .results import PART_TITLES, StudentResult, format_points, load_cohort

ASSIGNMENT_TITLE = "Hardware acceleration: from triple loops to a fast-path backend"
TIMING_TITLES = {
    "blocked_vs_numpy_256": "matmul_blocked time ÷ NumPy time, 256×256",
    "blocked_speedup_over_naive_64": "triple-loop time ÷ matmul_blocked time, 64×64",
    "blocked_vs_reference_256": "matmul_blocked time ÷ reference tiled time, 256×256",
    "backend_overhead_128": "matmul time ÷ matmul_numpy time, 128×128",
    "backend_overhead_256": "matmul time ÷ matmul_numpy time, 256×256",
}


def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("autograder", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("feedback.html.j2")


def render(result: StudentResult) -> str:
    late = str(datetime.timedelta(seconds=round(result.seconds_late)))
    return _template().render(r=result, fmt=format_points, late=late, part_titles=PART_TITLES,
                              timing_titles=TIMING_TITLES, assignment_title=ASSIGNMENT_TITLE)


def feedback_path(course: Course, student: str) -> Path:
    return course.feedback_dir(student) / f"{course.assignment}.html"


def write_feedback(course: Course, students: list[str] | None = None) -> list[Path]:
    """Write the page of every graded student (or those named); return the paths written."""
    written = []
    for result in load_cohort(course, students):
        if result.status == "not graded":
            continue
        path = feedback_path(course, result.student)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(result), encoding="utf-8")
        written.append(path)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("students", nargs="*", metavar="STUDENT",
                        help="only these students (default: everyone graded)")


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    paths = write_feedback(course, args.students or None)
    for path in paths:
        print(path.relative_to(course.root))
    print(f"wrote {len(paths)} feedback page(s) under feedback/")
    return 0
