"""Trusted scoring: cheats, slow and wrong answers, tampering, and honest answers in odd styles.

Each case is a real submission notebook whose test cells run through the trusted runner, with the
student's code in the sandboxed worker exactly as in grading (nbgrader around it is tested in
test_grade.py and tests/adversarial/).
"""
from __future__ import annotations

import pytest

from autograder import calibrate, sandbox
from autograder.course import REPO_ROOT, Course
from autograder.submissions import reference_answers
from autograder.trusted import launch, runner
from tests import variants

COURSE = Course.at(REPO_ROOT)
ANSWERS = reference_answers(COURSE.source_notebook)
CHECK_SHAPES = ("    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:\n"
                "        raise ValueError(f'incompatible shapes {a.shape} @ {b.shape}')\n")


def naive(body: str) -> dict:
    return {"naive_impl": "def matmul_naive(a, b):\n" + CHECK_SHAPES + body}


def blocked(body: str) -> dict:
    return {"blocked_impl": "def matmul_blocked(a, b, block_size=64):\n" + CHECK_SHAPES + body}


def run(edits: dict | None = None, **kwargs) -> runner.RunReport:
    ok, reason = sandbox.available()
    assert ok, f"{reason} (run make system-packages)"
    nb = calibrate.graded_notebook(COURSE, edits or {})
    return runner.run_tests(nb, COURSE.spec, launch.grading_launcher(), call_timeout=20,
                            **kwargs)


def failed(report: runner.RunReport) -> dict[str, str]:
    return {g: f"{o.error[0]}: {o.error[1]}" for g, o in report.outcomes.items() if not o.passed}


def test_reference_passes_everything():
    report = run()
    assert failed(report) == {} and report.violations == {}
    assert len(report.outcomes) == 10


# Cheats --------------------------------------------------------------------------------------

NAIVE_PARTS = {"naive_correct", "naive_errors"}
BLOCKED_PARTS = {"blocked_correct", "blocked_speed"}


@pytest.mark.parametrize("edits, lost, says", [
    (naive("    return (a @ b).astype(np.float32)\n"), NAIVE_PARTS,
     "@ / np.matmul on shapes (12, 10) and (10, 8)"),
    (naive("    return np.dot(a, b).astype(np.float32)\n"), NAIVE_PARTS, "np.dot"),
    (naive("    return np.einsum('ik,kj->ij', a, b).astype(np.float32)\n"), NAIVE_PARTS,
     "np.einsum"),
    (naive("    return np.asarray(a, np.float32).dot(np.asarray(b, np.float32))\n"), NAIVE_PARTS,
     "faster than a plain triple loop"),
    (blocked("    return (a @ b).astype(np.float32)\n"), BLOCKED_PARTS,
     "shapes (100, 90) and (90, 70)"),
    (blocked("    return np.matmul(np.asarray(a), np.asarray(b)).astype(np.float32)\n"),
     BLOCKED_PARTS, "runs at library speed"),
], ids=["naive-@", "naive-dot", "naive-einsum", "naive-asarray", "blocked-@", "blocked-asarray"])
def test_a_version_that_calls_a_library_product_loses_its_points(edits, lost, says):
    report = run(edits)
    assert set(failed(report)) == lost
    assert all(m.startswith("RuleViolation: ") for m in failed(report).values())
    assert says in failed(report)[min(lost)]   # naive_correct, blocked_correct: the first test


# Slow but correct, wrong but fast ---------------------------------------------------------------

@pytest.mark.slow
def test_slow_but_correct_loses_only_the_speed_points():
    for name, (edits, must_fail) in calibrate.variants(COURSE, factor=3).items():
        if must_fail:
            # a slow matmul_numpy is a slow fast path: the backend's np.matmul timing fails too
            also = {"backend_speed"} if must_fail == "numpy_speed" else set()
            assert set(failed(run(edits))) == {must_fail} | also, name


def test_wrong_but_fast_earns_nothing_for_speed():
    report = run(blocked("    return np.zeros((a.shape[0], b.shape[1]), np.float32)\n"))
    assert {"blocked_correct", "blocked_speed"} <= set(failed(report))
    assert "a timing test needs a correct result first" in failed(report)["blocked_speed"]


# Tampering ------------------------------------------------------------------------------------

TAMPER = """
import time
import numpy
time.process_time = time.perf_counter = time.thread_time = lambda: 0.0
numpy.allclose = numpy.array_equal = lambda *args, **kwargs: True
numpy.isclose = lambda a, b, *args, **kwargs: numpy.ones(numpy.shape(a), dtype=bool)


def check_matmul(*args, **kwargs):
    return None


def speed_ratio(*args, **kwargs):
    return 1.0

"""


def test_patching_the_clock_numpy_or_the_helpers_changes_nothing():
    wrong_and_slow = ANSWERS["blocked_impl"] + calibrate.slow_variant("matmul_blocked", 4) + (
        "\n_slow_blocked = matmul_blocked\n\n"
        "def matmul_blocked(a, b, block_size=64):\n"
        "    return _slow_blocked(a, b, block_size) + 1.0\n")
    report = run({"blocked_impl": TAMPER + wrong_and_slow})
    assert set(failed(report)) == {"blocked_correct", "blocked_speed"}
    assert "wrong values" in failed(report)["blocked_correct"]


def test_a_slow_blocked_with_a_frozen_clock_is_still_too_slow():
    slow = ANSWERS["blocked_impl"] + calibrate.slow_variant("matmul_blocked", 4)
    report = run({"blocked_impl": TAMPER + slow})
    assert set(failed(report)) == {"blocked_speed"}
    assert "x slower than" in failed(report)["blocked_speed"]


def test_names_the_student_defines_cannot_shadow_builtins_or_helpers():
    shadows = ("def isinstance(*args, **kwargs):\n    return True\n\n\n"
               "def all(*args, **kwargs):\n    return True\n\n\n"
               "def print(*args, **kwargs):\n    return None\n\n\n"
               "random_matrix = None\n\n\n")
    wrong = ANSWERS["footprint_impl"].replace("TILES_IN_FLIGHT * bytes_per_block",
                                              "2 * bytes_per_block")
    report = run({"footprint_impl": shadows + wrong})
    assert set(failed(report)) == {"footprint_values"}
    assert "three tiles of 16384 bytes are 49152 bytes" in failed(report)["footprint_values"]
    # The helpers still print with the grader's own print().
    assert "[timing] blocked_vs_numpy_256" in report.outcomes["blocked_speed"].stdout


def test_cells_the_student_inserts_are_never_run():
    import nbformat

    nb = calibrate.graded_notebook(COURSE, {})
    fake = nbformat.v4.new_code_cell("print('[timing] blocked_vs_numpy_256: 0.01x')\n"
                                     "matmul_blocked = None")
    nb.cells.insert(len(nb.cells) // 2, fake)
    report = runner.run_tests(nb, COURSE.spec, launch.grading_launcher())
    assert failed(report) == {}
    assert "0.01x" not in report.outcomes["blocked_speed"].stdout


# Honest answers in other styles ------------------------------------------------------------------

@pytest.mark.parametrize("edits", [
    {"naive_impl": variants.LISTS_NAIVE, "blocked_impl": variants.DOT_TILES,
     "backend_impl": variants.TABLE_BACKEND},
    {"blocked_impl": variants.OUT_BUFFERS},
], ids=["lists-dot-table", "out-buffers"])
def test_honest_answers_in_unusual_styles_pass(edits):
    report = run(edits)
    assert failed(report) == {} and report.violations == {}


# Crashes and hangs cost only the tests that call them ------------------------------------------------

def test_a_hang_and_a_crash_cost_only_their_callers():
    report = run({"numpy_impl": "def matmul_numpy(a, b):\n    import os\n    os._exit(1)\n",
                  "footprint_impl": ANSWERS["footprint_impl"].replace(
                      "    bytes_per_block =", "    while True:\n        pass\n    bytes_per_block =")})
    assert set(failed(report)) == {"footprint_values", "numpy_correct", "numpy_speed",
                                   "backend_dispatch", "backend_speed", "models_workloads"}
    assert "did not finish within 20 s" in failed(report)["footprint_values"]
    assert "crashed the process running it (exit code 1)" in failed(report)["numpy_correct"]
