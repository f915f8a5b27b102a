"""Make student-style submissions from the release: the reference answers pasted into some parts.

The demo, calibrate, the tests and the benchmarks need submissions that look like what students
hand in: the released notebook with some "YOUR CODE HERE" cells filled in. The answers are the
source notebook's solution regions, so they stay in step with the assignment.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

from .notebook import SOLUTION, grade_id, is_answer_cell, part_of

ALL = None     # fill every part


def _without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not any(m in line for m in SOLUTION))


def reference_answers(source_notebook: Path) -> dict[str, str]:
    """grade_id -> the reference text of each student-editable cell."""
    nb = nbformat.read(source_notebook, as_version=4)
    return {grade_id(c): _without_markers(c.source) for c in nb.cells if is_answer_cell(c)}


def fill(release_notebook: Path, source_notebook: Path, parts=ALL,
         edits: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The release notebook with the reference answer in every answer cell of `parts` (all by
    default).

    A part is the prefix of a grade id (`naive` fills `naive_impl`). `edits` maps a grade id to the
    exact text to put in that cell instead, for hand-made variants (slow, wrong, cheating).
    """
    answers = reference_answers(source_notebook)
    nb = nbformat.read(release_notebook, as_version=4)
    for cell in nb.cells:
        name = grade_id(cell)
        if edits and name in edits:
            cell.source = edits[name]
        elif is_answer_cell(cell) and (parts is ALL or part_of(name) in parts):
            cell.source = answers[name]
    return nb
