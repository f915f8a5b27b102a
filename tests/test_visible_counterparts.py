"""Every graded requirement has a visible counterpart.

For each requirement a hidden test or a grading rule holds a submission to, a submission that breaks
exactly that requirement (the reference answers with one small edit) must fail at least one of the
visible tests a student can run: then a notebook that passes its visible tests loses hidden points
only for other inputs, never for a rule nobody told them about. Where a hidden test checks the
requirement, the edit must fail it too (else the pair proves nothing); a grading rule runs only in
the grader, so for those the visible failure is what is checked here.

Each case runs in one plain kernel: the setup cell, every answer cell (one edited), then the test
cell of that requirement twice, as released (visible part) and as in the source (hidden part too).
"""
from __future__ import annotations

from dataclasses import dataclass

import nbformat
import pytest

from autograder import notebook
from autograder.course import REPO_ROOT, Course
from autograder.notebook import grade_id
from autograder.submissions import reference_answers

COURSE = Course.at(REPO_ROOT)
SPECTRUM = "spectrum_plot"      # slow and not graded: left out of every run


@dataclass(frozen=True)
class Broken:
    """The reference with `old` replaced by `new` in answer cell `cell`; `test` is the test cell
    of the requirement it breaks; `rule`: a grading rule (not a hidden test) checks it."""
    name: str
    requirement: str
    cell: str
    old: str
    new: str
    test: str
    rule: bool = False


NAIVE_CHECKS = '''    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul_naive needs 2-D matrices, got shapes {a.shape} @ {b.shape}")
    m, k = a.shape
    k_b, n = b.shape
    if k != k_b:'''

CASES = [
    Broken("naive_keeps_float64", "float32 results for float64 inputs", "naive_impl",
           "c = np.zeros((m, n), dtype=np.float32)", "c = np.zeros((m, n), dtype=np.result_type(a, b))",
           "naive_correct"),
    Broken("naive_checks_only_inner_dims", "ValueError for non-2-D inputs", "naive_impl",
           NAIVE_CHECKS, '''    m, k, k_b, n = a.shape[0], a.shape[1], b.shape[0], b.shape[1]
    if k != k_b:''', "naive_errors"),
    Broken("naive_with_at", "the naive loops are the student's own (rule)", "naive_impl",
           "    c = np.zeros((m, n), dtype=np.float32)\n",
           "    return (a @ b).astype(np.float32)\n", "naive_correct", rule=True),
    Broken("blocked_without_shape_check", "ValueError showing both shapes", "blocked_impl",
           "    if k != k_b:\n        raise", "    if False:\n        raise", "blocked_correct"),
    Broken("blocked_keeps_input_dtype", "float32 results for other dtypes", "blocked_impl",
           "dtype=np.float32", "dtype=np.result_type(a, b)", "blocked_correct"),
    Broken("blocked_one_product", "tiles no larger than block_size (rule)", "blocked_impl",
           "    c = np.zeros((m, n), dtype=np.float32)\n",
           "    return (a @ b).astype(np.float32)\n", "blocked_correct", rule=True),
    Broken("numpy_through_float32", "matmul_numpy keeps its inputs' dtype", "numpy_impl",
           "return a @ b", "return (a.astype(np.float32) @ b.astype(np.float32))", "numpy_correct"),
    Broken("matmul_skips_dispatch", "matmul goes through _backend.dispatch", "backend_impl",
           'return _backend.dispatch("matmul", a, b)', "return _backend.matmul(a, b)",
           "backend_dispatch"),
    Broken("dispatch_positional_only", "dispatch passes keyword arguments on", "backend_impl",
           "return self.matmul(*args, **kwargs)", "return self.matmul(args[0], args[1])",
           "backend_dispatch"),
    Broken("dispatch_ignores_case", "ops are compared exactly", "backend_impl",
           'if op == "matmul":', 'if op.lower() == "matmul":', "backend_dispatch"),
    Broken("mlp_with_at", "every workload product through matmul()", "models_impl",
           "return matmul(hidden, w2)", "return hidden @ w2", "models_workloads"),
    Broken("attention_fixed_scale", "attention scaled by 1/sqrt(width of the inputs)",
           "models_impl", "/ np.sqrt(q.shape[1])", "/ 16", "models_workloads"),
]


def _test_cells() -> tuple[dict[str, str], dict[str, str]]:
    """grade id -> test cell source, as released (visible) and in the source (with hidden)."""
    def cells(path):
        return {grade_id(c): c.source for c in nbformat.read(path, as_version=4).cells
                if notebook.is_test_cell(c)}

    full = {name: "\n".join(line for line in source.splitlines() if "HIDDEN TESTS" not in line)
            for name, source in cells(COURSE.source_notebook).items()}
    return cells(COURSE.release_dir / "acceleration.ipynb"), full


def _run(answers: dict[str, str], test: str) -> tuple[str, str]:
    """(visible, full) error text of test cell `test` after the given answers ('' = passed)."""
    from nbclient import NotebookClient

    source = nbformat.read(COURSE.source_notebook, as_version=4)
    visible, full = _test_cells()
    setup = next(c.source for c in source.cells if grade_id(c) == "setup")
    code = [setup] + [text for name, text in answers.items()
                      if name != SPECTRUM and name.endswith("_impl")] + [visible[test], full[test]]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in code])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    for cell in nb.cells[:-2]:
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert errors == [], f"a setup or answer cell failed: {errors[0]['evalue']}\n{cell.source}"

    def error(cell) -> str:
        return "".join(f"{o['ename']}: {o['evalue']}" for o in cell.outputs
                       if o.get("output_type") == "error")

    return error(nb.cells[-2]), error(nb.cells[-1])


def test_every_case_edits_the_reference_where_it_says():
    answers = reference_answers(COURSE.source_notebook)
    for case in CASES:
        assert answers[case.cell].count(case.old) == 1, (case.name, case.old)
    assert {c.test for c in CASES} >= {"naive_correct", "naive_errors", "blocked_correct",
                                       "numpy_correct", "backend_dispatch", "models_workloads"}


@pytest.mark.slow
@pytest.mark.parametrize("test", sorted({c.test for c in CASES}))
def test_the_reference_passes_visible_and_hidden(test):
    assert _run(reference_answers(COURSE.source_notebook), test) == ("", "")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_breaking_a_graded_requirement_fails_a_visible_test(case):
    answers = reference_answers(COURSE.source_notebook)
    answers[case.cell] = answers[case.cell].replace(case.old, case.new)
    visible, full = _run(answers, case.test)
    if not case.rule:
        assert full, f"{case.name} does not break what {case.test}'s hidden tests check"
    assert visible, (f"{case.name} breaks '{case.requirement}' but passes every visible test of "
                     f"{case.test}")
    print(f"{case.name}: {case.requirement} -> visible {case.test}: {visible[:300]}")
