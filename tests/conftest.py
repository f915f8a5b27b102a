"""Shared fixtures: throw-away course roots, and one graded cohort reused by the read-only stages."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course
from autograder.submissions import ALL, fill

# student id -> (first name, last name, parts answered). Ids look like LMS user ids.
COHORT = {
    "1001": ("Ada", "Lovelace", ALL),
    "1002": ("Grace", "Hopper", ("naive", "numpy", "footprint")),
    "1003": ("Alan", "Turing", ()),
}


def submit(course: Course, student: str, nb: nbformat.NotebookNode) -> Path:
    """Place a notebook as nbgrader's submitted/<student>/<assignment>/ file."""
    folder = course.submitted_dir(student)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / course.notebook
    nbformat.write(nb, path)
    return path


def submission(course: Course, parts=ALL, edits=None) -> nbformat.NotebookNode:
    return fill(course.release_notebook, course.source_notebook, parts, edits)


@pytest.fixture
def course(tmp_path) -> Course:
    """A fresh course root with the repository's config, source and release."""
    return Course.scaffold(tmp_path / "course", Course.at(REPO_ROOT))


@pytest.fixture(scope="session")
def graded_course(tmp_path_factory) -> Course:
    """The COHORT graded once with the real pipeline; tests must not modify it."""
    from autograder.grade import grade_batch
    from autograder.gradebook import open_gradebook

    course = Course.scaffold(tmp_path_factory.mktemp("graded") / "course", Course.at(REPO_ROOT))
    for student, (_, _, parts) in COHORT.items():
        submit(course, student, submission(course, parts))
    batch = grade_batch(course, jobs=2, progress=False)
    assert [r.status for r in batch.graded] == ["graded"] * len(COHORT), batch
    with open_gradebook(course) as gb:
        for student, (first, last, _) in COHORT.items():
            gb.update_or_create_student(student, first_name=first, last_name=last,
                                        email=f"{first.lower()}@example.edu")
    return course


@pytest.fixture
def processes():
    """Start processes through this; every one is killed (with its children) when the test ends."""
    from tests.processes import Processes

    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()
