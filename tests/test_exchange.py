"""nbgrader's exchange, as a JupyterHub course uses it, end to end with the real commands.

Instructor: release_assignment; student: fetch_assignment, submit; instructor: collect, this
project's grade and feedback, release_feedback; student: fetch_feedback, which must bring back
this project's page (no hidden tests). The exchange is a folder of the test's own
(`--Exchange.root`); the student works in a folder of their own with no course config.
"""
from __future__ import annotations

import getpass
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, tool_environment
from autograder.feedback import feedback_path
from tests.conftest import submission

HIDDEN_SOURCE = ("_reference_blocked", "cases = [", "BEGIN HIDDEN TESTS")


def _run(argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=tool_environment(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_release_fetch_submit_collect_grade_and_fetch_feedback(course, tmp_path):
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)       # nbgrader's exchange is world-writable, as on a JupyterHub
    where = [f"--Exchange.root={exchange}"]
    student_home = tmp_path / "home"
    student_home.mkdir()
    as_student = [*where, "--CourseDirectory.course_id=ml-systems"]
    autograder = [sys.executable, "-m", "autograder", "--course", str(course.root)]

    _run(autograder + ["release"], REPO_ROOT)
    _run([nbgrader, "release_assignment", course.assignment, *where], course.root)
    _run([nbgrader, "fetch_assignment", course.assignment, *as_student], student_home)
    fetched = student_home / course.assignment / course.notebook
    assert fetched.is_file()
    nbformat.write(submission(course), fetched)           # the student's work
    _run([nbgrader, "submit", course.assignment, *as_student], student_home)

    _run([nbgrader, "collect", course.assignment, *where], course.root)
    student = getpass.getuser()                             # the exchange knows users by login
    assert (course.submitted_dir(student) / course.notebook).is_file()
    graded = _run(autograder + ["grade", "--quiet"], REPO_ROOT)
    assert f"graded  {student}" in graded and "80.0 / 80" in graded, graded
    _run(autograder + ["feedback"], REPO_ROOT)
    page = feedback_path(course, student).read_text(encoding="utf-8")

    released = _run([nbgrader, "release_feedback", course.assignment, *where], course.root)
    assert "Feedback released" in released, released
    _run([nbgrader, "fetch_feedback", course.assignment, *as_student], student_home)
    pages = list((student_home / course.assignment / "feedback").glob(f"*/{course.assignment}.html"))
    assert len(pages) == 1, pages
    fetched_page = pages[0].read_text(encoding="utf-8")
    assert fetched_page == page
    for text in HIDDEN_SOURCE:
        assert text not in fetched_page, text


@pytest.mark.slow
def test_release_feedback_also_takes_students_collected_from_an_lms(graded_course, tmp_path):
    """Students from a Canvas or Moodle download have no timestamp.txt or submission secret:
    a class-wide release_feedback must still release every page."""
    from tests.test_export import copy_course
    from autograder.feedback import write_feedback

    course = copy_course(graded_course, tmp_path / "course")
    written = write_feedback(course)
    assert written and not any((course.submitted_dir(s) / "submission_secret.txt").exists()
                               for s in ("1001", "1002", "1003"))
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    out = _run([str(Path(sys.executable).parent / "nbgrader"), "release_feedback",
                course.assignment, f"--Exchange.root={exchange}"], course.root)
    assert out.count("Feedback released to") == len(written), out
    assert len(list((exchange / "ml-systems" / "feedback").glob("*.html"))) == len(written)
