"""Reading nbgrader's cell metadata: the one place that knows where nbgrader keeps it.

Conventions of the engine, besides nbgrader's own: a grade id starts with the part it belongs to
(`blocked_speed` is part `blocked`), and the code cells a student writes are the solution cells
whose grade id ends in `_impl`; everything the tests need besides them is in the setup cell.
"""
from __future__ import annotations

from dataclasses import dataclass

SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_TESTS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
MARK_SCHEME = ("### BEGIN MARK SCHEME", "### END MARK SCHEME")
ANSWER_STUB = "YOUR ANSWER HERE"       # nbgrader's ClearSolutions.text_stub, which the course keeps
IMPLEMENTATION_SUFFIX = "_impl"


def nbgrader(cell) -> dict:
    """A cell's nbgrader metadata ({} for a plain cell); works on dicts and NotebookNodes."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell) -> str:
    return str(nbgrader(cell).get("grade_id", ""))


def points(cell) -> float:
    return float(nbgrader(cell).get("points") or 0)


def part_of(grade_id: str) -> str:
    """Grade ids start with the part they check: `blocked_speed` belongs to `blocked`."""
    return grade_id.split("_", 1)[0]


def is_test_cell(cell) -> bool:
    """An autograded test: a graded code cell that is not an answer."""
    meta = nbgrader(cell)
    return cell["cell_type"] == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_implementation_cell(cell) -> bool:
    """A code cell the student writes and the tests call into."""
    meta = nbgrader(cell)
    return (cell["cell_type"] == "code" and bool(meta.get("solution"))
            and grade_id(cell).endswith(IMPLEMENTATION_SUFFIX))


def is_answer_cell(cell) -> bool:
    """Any cell the student writes (code or a written answer)."""
    return bool(nbgrader(cell).get("solution"))


def is_written_answer(cell) -> bool:
    """A hand-graded written answer: a graded markdown cell the student writes."""
    meta = nbgrader(cell)
    return cell["cell_type"] == "markdown" and bool(meta.get("grade")) and bool(meta.get("solution"))


def unanswered_text(cell) -> str:
    """What the release shows in a written-answer cell: its solution region replaced by the stub
    (the whole cell, if it has no region).

    nbgrader's ClearSolutions does this at release; the Gradescope container has no nbgrader, and
    needs it to tell an answered question from one left as released.
    """
    source = str(cell.get("source", ""))
    if SOLUTION[0] not in source:
        return ANSWER_STUB
    lines, inside = [], False
    for line in source.splitlines():
        if SOLUTION[0] in line:
            inside = True
            lines.append(ANSWER_STUB)
        elif SOLUTION[1] in line:
            inside = False
        elif not inside:
            lines.append(line)
    return "\n".join(lines).strip()


@dataclass(frozen=True)
class GradedCell:
    """A cell that carries points: an autograded test or a written answer."""
    grade_id: str
    points: float
    written: bool

    @property
    def part(self) -> str:
        return part_of(self.grade_id)


def graded_cells(nb) -> list[GradedCell]:
    """The notebook's graded cells in notebook order: the assignment's parts and maximum."""
    return [GradedCell(grade_id(c), points(c), c["cell_type"] == "markdown")
            for c in nb["cells"] if nbgrader(c).get("grade") and grade_id(c)]


def distinctive(line: str) -> str:
    """A line as leak checks compare it: no indentation, comment marks or list bullets."""
    return line.strip().lstrip("#- ").strip()


def region_lines(nb, markers: tuple[str, str], min_length: int = 16) -> set[str]:
    """Lines found only between the markers of the notebook (a solution, hidden tests, a mark
    scheme), long enough not to occur anywhere by chance: what must not leak."""
    begin, end = markers
    inside, outside, within = [], [], False
    for cell in nb["cells"]:
        for line in cell["source"].splitlines():
            if begin in line:
                within = True
            elif end in line:
                within = False
            else:
                (inside if within else outside).append(distinctive(line))
    return {line for line in set(inside) - set(outside) if len(line) >= min_length}


def strip_region(source: str, markers: tuple[str, str]) -> str:
    """The cell's source with every region between the markers removed, markers included."""
    begin, end = markers
    kept, inside = [], False
    for line in source.splitlines(keepends=True):
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def definitions(nb, cell_id: str, names: tuple[str, ...], namespace: dict | None = None) -> dict:
    """The functions `names` as a test cell of the notebook defines them (hidden tests included).

    Only their `def` statements are run, in `namespace` (for the modules they use): an
    assignment's grading code can use the reference code its tests hold, so there is one copy.
    """
    import ast

    cell = next((c for c in nb["cells"] if grade_id(c) == cell_id), None)
    if cell is None:
        raise KeyError(f"no cell {cell_id!r} in the notebook")
    tree = ast.parse(cell["source"])
    wanted = [node for node in tree.body
              if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = set(names) - {node.name for node in wanted}
    if missing:
        raise KeyError(f"cell {cell_id!r} defines no {', '.join(sorted(missing))}")
    scope = dict(namespace or {})
    exec(compile(ast.Module(wanted, type_ignores=[]), f"<{cell_id}>", "exec"), scope)
    return {name: scope[name] for name in names}
