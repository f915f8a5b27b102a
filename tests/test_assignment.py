"""The assignment itself: source notebook, its jupytext pair, and the committed student release."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import notebook, release
from autograder.course import REPO_ROOT, Course
from autograder.results import load_cohort
from tests.conftest import COHORT

AUTOGRADED_PARTS = {"naive", "blocked", "footprint", "numpy", "backend", "models"}
REGIONS = {
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
    "hidden tests": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
    "mark scheme": ("### BEGIN MARK SCHEME", "### END MARK SCHEME"),
}


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _source_nb():
    return nbformat.read(Course.at(REPO_ROOT).source_notebook, as_version=4)


def _release_nb():
    return nbformat.read(Course.at(REPO_ROOT).release_dir / "acceleration.ipynb", as_version=4)


def test_jupytext_pair_agrees():
    course = Course.at(REPO_ROOT)
    # check_pairing accepts an .ipynb without its .py (courses that do not pair): here both exist.
    assert course.source_notebook.is_file() and course.source_notebook.with_suffix(".py").is_file()
    release.check_pairing(course)


def test_pairing_check_catches_an_edit_to_one_side(course):
    py = course.source_notebook.with_suffix(".py")
    py.write_text(py.read_text().replace("c = np.zeros((m, n), dtype=np.float32)",
                                         "c = np.ones((m, n), dtype=np.float32)", 1))
    with pytest.raises(release.PairingError, match="jupytext --sync"):
        release.check_pairing(course)


def test_source_outputs_are_cleared():
    for cell in _source_nb().cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_grade_ids_name_the_part_they_check():
    graded = [_nbgrader(c) for c in _source_nb().cells if _nbgrader(c).get("grade")]
    auto = [m["grade_id"] for m in graded if not m.get("solution")]
    manual = [m["grade_id"] for m in graded if m.get("solution")]
    assert {g.split("_")[0] for g in auto} == AUTOGRADED_PARTS, auto
    assert len(manual) == 4 and all(g.startswith("question_") for g in manual), manual
    points = {m["grade_id"]: m["points"] for m in graded}
    from tests.adversarial.cases import POINTS

    # The corpus's expected scores, the README and the demo all speak of these points: a points
    # edit in the notebook has to go there too, and this says where.
    assert {g: points[g] for g in auto} == POINTS, (
        f"the notebook's test points {dict((g, points[g]) for g in auto)} differ from "
        f"tests/adversarial/cases.py POINTS {POINTS}: update POINTS, the corpus's expected "
        f"scores and the README's totals with them")
    assert sum(points[g] for g in manual) == 20, (
        f"the written answers are worth {sum(points[g] for g in manual)} points; the README and "
        f"the demo say 20")


def test_committed_release_equals_a_fresh_build(course):
    fresh = release.generate(course, course.root / "fresh-release")
    assert release.differing_files(fresh, Course.at(REPO_ROOT).release_dir) == [], (
        "release/ is stale: run `python -m autograder release` and commit it")


@pytest.mark.parametrize("region", REGIONS)
def test_release_leaks_nothing(region):
    begin, end = REGIONS[region]
    secret = notebook.region_lines(_source_nb(), (begin, end))
    assert len(secret) >= 4, f"expected {region} regions in the source notebook"
    text = "\n".join(c.source for c in _release_nb().cells)
    assert begin not in text and end not in text
    leaked = sorted(secret & {notebook.distinctive(line) for line in text.splitlines()})
    assert leaked == [], f"{region} lines reached the release: {leaked[:5]}"


def test_every_stub_raises_not_implemented():
    """Run the release's given code, then call every function a student must write."""
    namespace: dict = {}
    for cell in _release_nb().cells:
        grade_id = _nbgrader(cell).get("grade_id", "")
        is_given_or_stub = grade_id == "setup" or (_nbgrader(cell).get("solution") and
                                                   cell.cell_type == "code")
        if is_given_or_stub and grade_id != "spectrum_plot":
            exec(compile(cell.source, grade_id, "exec"), namespace)
    a = b = np.ones((2, 2), dtype=np.float32)
    backend = namespace["OptimizedBackend"]()
    calls = {
        "matmul_naive": lambda: namespace["matmul_naive"](a, b),
        "matmul_blocked": lambda: namespace["matmul_blocked"](a, b),
        "calculate_cache_footprint": lambda: namespace["calculate_cache_footprint"](64),
        "matmul_numpy": lambda: namespace["matmul_numpy"](a, b),
        "OptimizedBackend.dispatch": lambda: backend.dispatch("matmul", a, b),
        "OptimizedBackend.matmul": lambda: backend.matmul(a, b),
        "matmul": lambda: namespace["matmul"](a, b),
        "mlp_forward": lambda: namespace["mlp_forward"](a, a, b),
        "conv_im2col": lambda: namespace["conv_im2col"](a, b),
        "attention_scores": lambda: namespace["attention_scores"](a, b),
    }
    for name, call in calls.items():
        with pytest.raises(NotImplementedError):
            call()
        assert name.split(".")[0] in namespace


def test_the_ungraded_spectrum_left_blank_does_not_stop_run_all():
    """Run All on the release as a student has it: the blank spectrum cell says it is not done
    instead of raising, so the cells of Parts 4 and 5 after it still run."""
    from nbclient import NotebookClient

    nb = _release_nb()
    cell = next(c for c in nb.cells if _nbgrader(c).get("grade_id") == "spectrum_plot")
    assert re.search(r"^    raise NotImplementedError\(\)$", cell.source, re.M), cell.source
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    outputs = cell.outputs
    assert [o for o in outputs if o.get("output_type") == "error"] == []
    assert "The spectrum is not measured yet" in "".join(o.get("text", "") for o in outputs)


def test_reference_full_marks_blank_zero(graded_course):
    """Real nbgrader autograding of the reference, a partial and a blank submission."""
    results = {r.student: r for r in load_cohort(graded_course)}
    assert set(results) == set(COHORT)
    full, partial, blank = results["1001"], results["1002"], results["1003"]
    assert [t.grade_id for t in full.tests if not t.passed] == []
    assert (full.auto_score, full.auto_max) == (80, 80)
    assert full.needs_manual_grading  # written answers were filled in: they wait for a grader
    assert partial.auto_score == 10 + 5 + 8 + 5  # naive, footprint and numpy
    assert blank.auto_score == 0 and blank.status == "graded"
    assert all(t.message for t in blank.tests), "every failed test explains itself"
    assert {t.name for t in full.timings} >= {"blocked_vs_numpy_256", "backend_overhead_128"}


def test_graders_see_the_rubric_students_do_not(graded_course):
    graded = (graded_course.autograded_dir("1001") / "acceleration.ipynb").read_text()
    assert graded.count("### BEGIN MARK SCHEME") == 4
    assert "BEGIN MARK SCHEME" not in (Course.at(REPO_ROOT).release_dir /
                                       "acceleration.ipynb").read_text()


# ------------------------------------------------------------------------------------------------
# What graders read: the student's own measurements, as the sandboxed kernel made them
# ------------------------------------------------------------------------------------------------
SPECTRUM_HEADER = "   n   naive (ms)  blocked (ms)  NumPy (ms)"
PRINTED_TIME = re.compile(r"([0-9][0-9,]*\.?[0-9]*)\s*ms\b")


def _spectrum(nb) -> dict[tuple[str, int], float]:
    """(implementation, n) -> milliseconds, from the table the reference spectrum cell prints."""
    cell = next(c for c in nb.cells if _nbgrader(c).get("grade_id") == "spectrum_plot")
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    lines = text.splitlines()
    table = lines[lines.index(SPECTRUM_HEADER) + 1:]
    figures = {}
    for line in table:
        n, cells = int(line[:4]), line[4:]
        for i, name in enumerate(("naive", "blocked", "numpy")):
            value = cells[12 * i:12 * (i + 1)].strip()
            if value:
                figures[name, n] = float(value)
    return figures


def _unsandboxed_run(submitted: Path):
    """The same notebook, run by a plain kernel on this machine, test cells left out."""
    from nbclient import NotebookClient

    nb = nbformat.read(submitted, as_version=4)
    nb.cells = [c for c in nb.cells if not notebook.is_test_cell(c)]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


@pytest.mark.slow
def test_the_graded_notebook_shows_what_the_student_measured(graded_course):
    graded = nbformat.read(graded_course.autograded_dir("1001") / "acceleration.ipynb", 4)
    errors = [(_nbgrader(c).get("grade_id", ""), o.get("ename"), o.get("evalue"))
              for c in graded.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == [], "the reference fails no test, so no cell may show an error"

    printed = "".join(o.get("text", "") for c in graded.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    times = [float(t.replace(",", "")) for t in PRINTED_TIME.findall(printed)]
    assert len(times) == 2 + 3 * 2 and min(times) > 0, printed   # the loop, the workloads
    assert "x faster)" in printed and "ZeroDivisionError" not in printed

    sandboxed = _spectrum(graded)
    assert min(sandboxed.values()) > 0, sandboxed
    # The best of two plain runs, figure by figure: noise only adds time, and a single plain run
    # once read 0.25 ms for a 0.12 ms product (naive, 8x8: two samples of 2 ms).
    submitted = graded_course.submitted_dir("1001") / "acceleration.ipynb"
    runs = [_spectrum(_unsandboxed_run(submitted)) for _ in range(2)]
    plain = {key: min(run[key] for run in runs) for key in runs[0]}
    assert sandboxed.keys() == plain.keys() and len(sandboxed) == 5 + 7 + 7
    # Within 2x, or within 20 us: a NumPy product at 64x64 takes a few microseconds, and one
    # plain run read 6.7 us where the sandbox read 3.3 us (a preempted sample, not a distortion).
    far = {key: (sandboxed[key], plain[key]) for key in plain
           if not 0.5 <= sandboxed[key] / plain[key] <= 2
           and abs(sandboxed[key] - plain[key]) > 0.02}
    assert far == {}, f"spectrum figures (ms) more than 2x from an unsandboxed run: {far}"


def test_release_check_writes_neither_the_release_nor_the_gradebook(course):
    """A check must not deploy: the gradebook's copy of the tests is what `grade` grades with."""
    import subprocess
    import sys

    from autograder.gradebook import open_gradebook

    release.ensure_gradebook(course)

    def stored() -> str:
        with open_gradebook(course) as gb:
            return gb.find_source_cell("blocked_correct", "acceleration", course.assignment).source

    before, released = stored(), (course.release_dir / "acceleration.ipynb").read_bytes()
    edit = ("((5, 7, 3), 1),        # every tile", "((5, 7, 4), 1),        # every tile")
    for path in (course.source_notebook, course.source_notebook.with_suffix(".py")):
        text = path.read_text()
        assert edit[0] in text
        path.write_text(text.replace(*edit))
    proc = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root),
                           "release", "--check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "up to date" in proc.stdout, proc.stdout + proc.stderr
    assert stored() == before and "((5, 7, 3), 1)" in before
    assert (course.release_dir / "acceleration.ipynb").read_bytes() == released
