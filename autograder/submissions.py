"""Make student-style submissions from the release: the reference answers pasted into some parts.

The demo and the tests need submissions that look like what students hand in: the released
notebook with some "YOUR CODE HERE" cells filled in. The answers are the source notebook's
solution regions, so they stay in step with the assignment.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

PARTS = ("naive", "blocked", "footprint", "numpy", "backend", "models", "spectrum", "question")


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _is_solution(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def _without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


def reference_answers(source_notebook: Path) -> dict[str, str]:
    """grade_id -> the reference text of each student-editable cell."""
    nb = nbformat.read(source_notebook, as_version=4)
    return {_grade_id(c): _without_markers(c.source) for c in nb.cells if _is_solution(c)}


def fill(release_notebook: Path, source_notebook: Path, parts=PARTS,
         edits: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The release notebook with the reference answer in every solution cell of `parts`.

    A part is the prefix of a grade id (`naive` fills `naive_impl`). `edits` maps a grade id to the
    exact text to put in that cell instead, for hand-made variants (slow, wrong, cheating).
    """
    answers = reference_answers(source_notebook)
    nb = nbformat.read(release_notebook, as_version=4)
    for cell in nb.cells:
        grade_id = _grade_id(cell)
        if edits and grade_id in edits:
            cell.source = edits[grade_id]
        elif _is_solution(cell) and grade_id.split("_")[0] in parts:
            cell.source = answers[grade_id]
    return nb
