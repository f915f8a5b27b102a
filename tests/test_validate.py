"""What a student sees when they check before submitting: `nbgrader validate`, as the notebook's
"Before you submit" text tells them to run it, on the released notebook.
"""
from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from autograder import notebook
from autograder.course import REPO_ROOT, Course, tool_environment
from autograder.submissions import fill, reference_answers

COURSE = Course.at(REPO_ROOT)
QUESTIONS = ["Question 1 (memory access of the naive loop)", "Question 2 (choosing the tile)",
             "Question 3 (why use the library)", "Question 4 (accelerating whole models)"]


def test_the_release_shows_each_unanswered_question_as_the_grader_reads_it():
    """The Gradescope container tells answered from blank without nbgrader: its idea of a blank
    answer must be what nbgrader's release really shows."""
    source = nbformat.read(COURSE.source_notebook, as_version=4)
    release = nbformat.read(COURSE.release_notebook, as_version=4)
    released = {notebook.grade_id(c): c.source for c in release.cells if notebook.is_written_answer(c)}
    written = [c for c in source.cells if notebook.is_written_answer(c)]
    assert len(written) == len(QUESTIONS) == len(released)
    for cell, question in zip(written, QUESTIONS):
        assert notebook.unanswered_text(cell) == released[notebook.grade_id(cell)].strip()
        assert question in released[notebook.grade_id(cell)]


@pytest.mark.slow
def test_validate_names_each_unanswered_question_and_shows_whole_messages(tmp_path):
    answers = reference_answers(COURSE.source_notebook)
    edits = {  # two mistakes: float64 results from the naive loop, no shape check in the blocked one
        "naive_impl": answers["naive_impl"].replace(
            "c = np.zeros((m, n), dtype=np.float32)", "c = np.zeros((m, n), dtype=np.float64)"),
        "blocked_impl": answers["blocked_impl"].replace("    if k != k_b:\n        raise",
                                                        "    if False:\n        raise"),
    }
    assert all(edits[name] != answers[name] for name in edits)
    nb = fill(COURSE.release_notebook, COURSE.source_notebook,
              parts={"naive", "blocked", "footprint", "numpy", "backend", "models"}, edits=edits)
    path = tmp_path / "acceleration.ipynb"
    nbformat.write(nb, path)

    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "validate", path.name, "--Validator.width=400"],
        cwd=tmp_path, env=tool_environment(), capture_output=True, text=True, timeout=600)
    out = result.stdout
    assert "VALIDATION FAILED ON" in out, out[-3000:]

    for question in QUESTIONS:   # each blank answer is listed under its question's name
        at = out.index(f"Your answer to {question}")
        assert "You did not provide a response" in out[at:at + 400], out[at:at + 400]
    # Both mistakes are reported whole, not cut at nbgrader's default 90 characters.
    assert "float32" in out and "matmul_naive" in out
    assert any(len(line) > 120 and "Error" in line for line in out.splitlines()), out[-3000:]
    assert "matmul_blocked" in out and "ValueError" in out
