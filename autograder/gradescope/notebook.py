"""The notebook graded on Gradescope: the grading template with the student's code put in.

The grading template (`<source>/grading/<notebook>`) is the release notebook with every test
cell's full source put back (hidden tests included) and no solution. The student's `*_impl` cells
are copied into it by grade id; other cells of the submission are ignored, as `grade` ignores cells
students add. A test cell that ends with its hidden tests is split in two, so students see the
part they have in their notebook as a check of its own before the due date.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import notebook
from ..assignment import Assignment

HIDDEN_PART = ":hidden"                  # grade id suffix of the hidden half of a split cell


class SubmissionError(Exception):
    """The submission cannot be graded at all; the message tells the student why."""


def _is_code_line(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def split_hidden_tests(source: str) -> tuple[str, str] | None:
    """(public part, hidden part) of a test cell that ends with its hidden tests, else None.

    Only a cell that can run as two pieces with the same effect as one is split: a single hidden
    region whose begin marker starts a line (not inside an indented block), with no code after
    its end marker, code before it, and both pieces valid Python on their own.
    """
    begin_marker, end_marker = notebook.HIDDEN_TESTS
    lines = source.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if begin_marker in line]
    ends = [i for i, line in enumerate(lines) if end_marker in line]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        return None
    begin, end = begins[0], ends[0]
    if not lines[begin].startswith(begin_marker) or any(map(_is_code_line, lines[end + 1:])):
        return None
    public, hidden = "".join(lines[:begin]), "".join(lines[begin:])
    if not any(map(_is_code_line, public.splitlines())):
        return None
    try:
        compile(public, "<public>", "exec")
        compile(hidden, "<hidden>", "exec")
    except SyntaxError:
        return None
    return public, hidden


@dataclass
class ScoredCell:
    """A test cell as Gradescope scores it: whole, or as its public part then its hidden tests."""
    grade_id: str
    points: float
    hidden: bool        # the cell has hidden tests
    split: bool         # it runs as its public part, then its hidden part
    title: str = ""


@dataclass
class GradingNotebook:
    nb: dict
    graded: list[ScoredCell]
    notes: list[str] = field(default_factory=list)


def _passed_flag(grade_id: str) -> str:
    return "__public_tests_passed_" + re.sub(r"\W", "_", grade_id) + "__"


def _test_cell(grade_id: str, points: float, source: str) -> dict:
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
        "grade": True, "grade_id": grade_id, "locked": True, "points": points,
        "schema_version": 3, "solution": False, "task": False}})


def student_cells(submission) -> tuple[dict[str, str], list[str]]:
    """The student's `*_impl` code by grade id (the first cell of each id), and notes on them."""
    found: dict[str, str] = {}
    notes = []
    for cell in submission.get("cells", []):
        grade_id = notebook.grade_id(cell)
        if not grade_id.endswith(notebook.IMPLEMENTATION_SUFFIX) or cell.get("cell_type") != "code":
            continue
        if grade_id in found:
            notes.append(f"Your notebook has the cell {grade_id} more than once: the first one "
                         f"was graded.")
            continue
        found[grade_id] = cell.get("source", "")
    return found, notes


def has_hidden_tests(source: str) -> bool:
    return notebook.HIDDEN_TESTS[0] in source


def grading_notebook(template, submission, spec: Assignment) -> GradingNotebook:
    """The template with the submission's `*_impl` cells, test cells split where they can be."""
    answers, notes = student_cells(submission)
    cells, graded = [], []
    for cell in template["cells"]:
        grade_id = notebook.grade_id(cell)
        if notebook.is_implementation_cell(cell):
            cell = copy.deepcopy(cell)
            if grade_id in answers:
                cell["source"] = answers[grade_id]
            else:
                notes.append(f"Your notebook has no code cell {grade_id} (with its grading "
                             f"metadata): the tests that use it score 0. Start again from the "
                             f"released notebook and copy your code into its cells.")
            cells.append(cell)
        elif notebook.is_test_cell(cell):
            points = notebook.points(cell)
            parts = split_hidden_tests(cell["source"]) if has_hidden_tests(cell["source"]) else None
            title = f"{spec.part_title(notebook.part_of(grade_id))} — {grade_id}"
            graded.append(ScoredCell(grade_id, points, has_hidden_tests(cell["source"]),
                                     parts is not None, title))
            if parts is None:
                cells.append(copy.deepcopy(cell))
                continue
            public, hidden = parts
            flag = _passed_flag(grade_id)
            cells.append(_test_cell(grade_id, points,
                                    f"{flag} = False\n{public.rstrip()}\n{flag} = True\n"))
            guard = f"if not {flag}:\n    raise RuntimeError('not run: the tests before failed')\n"
            cells.append(_test_cell(grade_id + HIDDEN_PART, 0, guard + hidden))
        else:
            cells.append(copy.deepcopy(cell))
    nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(template.get("metadata", {})))
    return GradingNotebook(nb, graded, notes)


def written_answers(template, submission) -> tuple[float, list[tuple[str, bool]]]:
    """Points of the hand-graded answers, and (grade id, answered?) of each in the submission."""
    # The template is made from the release: its answer cells read as a student first sees them.
    blank = {notebook.grade_id(c): {notebook.unanswered_text(c), str(c.get("source", "")).strip()}
             for c in template["cells"] if notebook.is_written_answer(c)}
    ids = list(blank)
    points = sum(notebook.points(c) for c in template["cells"] if notebook.grade_id(c) in ids)
    texts = {}
    for cell in (submission or {}).get("cells", []):
        name = notebook.grade_id(cell)
        if name in ids and name not in texts:
            texts[name] = str(cell.get("source", "")).strip()
    return points, [(i, texts.get(i, "") not in {"", notebook.ANSWER_STUB, *blank[i]})
                    for i in ids]


# ------------------------------------------------------------------------------------------------
# The submission
# ------------------------------------------------------------------------------------------------
def _ignored(path: Path, folder: Path) -> bool:
    parts = path.relative_to(folder).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def find_notebook(folder: Path, expected: str) -> Path:
    """The notebook Gradescope put in `folder`: the only .ipynb, or the one named `expected`."""
    notebooks = sorted(p for p in folder.rglob("*.ipynb")
                       if p.is_file() and not _ignored(p, folder))
    if len(notebooks) == 1:
        return notebooks[0]
    named = [p for p in notebooks if p.name == expected]
    if len(named) == 1:
        return named[0]
    if not notebooks:
        found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                       if p.is_file() and not _ignored(p, folder))
        raise SubmissionError(
            f"Your submission has no Jupyter notebook (.ipynb): submit {expected}. "
            + (f"Files received: {', '.join(found[:10])}." if found else "No files were received."))
    raise SubmissionError(
        f"Your submission has several notebooks ({', '.join(p.name for p in notebooks[:10])}): "
        f"submit only {expected}.")


def read_notebook(path: Path):
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no list of cells")
        for cell in nb.cells:
            cell.get("metadata", {}).get("nbgrader", {})
            str(cell["source"])
        return nb
    except Exception as exc:  # noqa: BLE001 - anything unreadable is the submission's fault
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SubmissionError(
            f"{path.name} could not be read as a Jupyter notebook ({detail}). Open it in Jupyter, "
            f"save it, and submit the saved file.") from None
