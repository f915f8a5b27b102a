"""`feedback`: one page per student, with how close its products came to the machine."""
from __future__ import annotations

import base64
import sys
import html
import re
from dataclasses import replace
from pathlib import Path

import pytest

from autograder import ceilings, machine
from autograder.course import REPO_ROOT, Course
from autograder.feedback import (feedback_path, roofline_figure, speed_figure, student_roofline,
                                 write_feedback)
from autograder.performance import Performance, explained
from autograder.trusted.profile import LIBRARY, Profile, reference_name
from tests.test_export import copy_course

SPEC = Course.at(REPO_ROOT).spec
BLOCKED, NUMPY, NAIVE = "matmul_blocked", "matmul_numpy", "matmul_naive"
CPUINFO = Path(__file__).parent / "fixtures" / "cpuinfo"


def zen5(attainable: float) -> ceilings.Ceilings:
    """The ceilings of the EPYC (Zen 5, under KVM) of tests/fixtures/cpuinfo, with an attainable
    peak of `attainable` GFLOP/s on OpenBLAS's Haswell kernel."""
    processor = ceilings.read_cpuinfo((CPUINFO / "epyc-zen5-kvm.txt").read_text())
    found = ceilings.from_parts(processor, ceilings.clock(None, processor.model_name,
                                                          processor.cpu_mhz, True),
                                {"internal_api": "openblas", "version": "0.3.31",
                                 "architecture": "Haswell"})
    found = replace(found, attainable_size=256, attainable_by_size={256: attainable},
                    bandwidth_gbs=40.0, triad_bytes=64 * 2 ** 20,
                    caches=[{"level": 1, "kind": "Data", "size": 48 * 1024, "shared_by": 1}])
    return found.raised_to(attainable, "np.matmul in a bare loop")


def _profile(blocked_ms: float, numpy_ms: float, library_ms: float = 0.5,
             attainable: float | None = 100.0) -> Performance:
    seconds = {LIBRARY: {256: library_ms / 1e3}, BLOCKED: {256: blocked_ms / 1e3},
               reference_name(BLOCKED): {256: 1.4 / 1e3}, NUMPY: {256: numpy_ms / 1e3},
               NAIVE: {16: 0.4 / 1e3, 64: 26.0 / 1e3}}
    return Performance(Profile([16, 64, 256], seconds, {LIBRARY: "np.matmul"}, []), [],
                       zen5(attainable) if attainable else None)


def test_the_assignment_says_what_the_gap_means():
    close, mid, far = (explained(_profile(ms, 0.5), SPEC) for ms in (0.55, 1.5, 60.0))
    naive, blocked, numpy = mid
    assert naive.startswith("Your triple loop does 0.0202 GFLOP/s at 64x64, 1/4,959 of the "
                            "attainable peak")
    assert close[1].startswith("Your tiles run at 91% of the speed of NumPy's own product called "
                               "the same way at 256x256 (61% of the attainable peak")
    assert blocked.startswith("Your tiles run at 33% of the speed of NumPy's own product called "
                              "the same way at 256x256 (22% of the attainable peak; the "
                              "reference tiling: 36%)")
    assert "SIMD, packing, register blocking" in blocked and "question 3" in blocked
    assert "most of the time goes to Python" in far[1]
    # NumPy's product through the grader's call path reaches 67 of the attainable 100 GFLOP/s.
    assert numpy == ("matmul_numpy runs at 67% of the attainable peak at 256x256; NumPy's own "
                     "product called the same way reaches 67%: the difference from 100% is the "
                     "grader's call path, not your code.")
    slow = explained(_profile(1.5, 2.0), SPEC)[2]
    assert slow.startswith("matmul_numpy reaches 17% of the attainable peak where NumPy's own "
                           "product called the same way reaches 67%: look for copies")
    assert explained(Performance(None, []), SPEC) == []


def test_fractions_are_of_the_attainable_peak_and_never_above_it():
    perf = _profile(1.0, 0.5)
    assert perf.gflops(BLOCKED, 256) == pytest.approx(2 * 256 ** 3 / 1e-3 / 1e9)
    assert perf.attainable == pytest.approx(100.0)
    assert perf.fraction(BLOCKED, 256) == pytest.approx(0.3355, abs=1e-3)
    assert perf.gflops(BLOCKED, 512) is None
    # Ceilings measured at a busy moment (50 GFLOP/s) are raised to the fastest figure of the
    # record, and the clock with them: the theoretical peak stays above the attainable one.
    busy = _profile(1.0, 0.5, attainable=50.0)
    assert busy.attainable == pytest.approx(busy.gflops(LIBRARY, 256))
    assert busy.fraction(LIBRARY, 256) == pytest.approx(1.0)
    assert busy.machine.theoretical_gflops >= busy.machine.blas_gflops >= busy.attainable
    # Without the machine's ceilings the fastest figure of the record is the attainable peak.
    bare = _profile(1.0, 0.4, attainable=None)
    assert bare.fraction(NUMPY, 256) == pytest.approx(1.0)
    assert max(bare.fraction(n, 256) for n in (BLOCKED, NUMPY, LIBRARY)) <= 1.0


def test_the_speed_plot_labels_exactly_the_sizes_measured():
    fig = speed_figure(_profile(1.0, 0.5), SPEC)
    fig.canvas.draw()
    (ax,) = fig.axes
    assert list(ax.get_xticks()) == [16, 64, 256]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64", "256"]
    assert list(ax.xaxis.get_minorticklocs()) == []
    assert "x10" not in " ".join(t.get_text() for t in ax.get_yticklabels())


def test_the_roofline_has_the_machine_s_roofs_and_the_student_s_points():
    perf = _profile(1.0, 0.5)
    fig = student_roofline(perf, SPEC)
    fig.canvas.draw()
    ax = fig.axes[0]
    texts = " ".join(t.get_text() for t in ax.texts)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    machine_found = perf.machine
    assert f"theoretical peak {machine_found.theoretical_gflops:.0f}" in legend
    assert (f"attainable peak {machine_found.attainable_gflops:.0f} (best np.matmul; 256-bit "
            f"BLAS kernel's ceiling)") in legend
    assert "memory roof: 40 GB/s x intensity" in legend
    assert f"theoretical {machine_found.theoretical_gflops:.0f}" in texts
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "arithmetic intensity" in ax.get_xlabel()
    points = {line.get_label(): line.get_xydata().ravel().tolist() for line in ax.lines
              if line.get_label().startswith("your")}
    assert points["your matmul_naive"] == pytest.approx(
        [16 / 6, perf.gflops(NAIVE, 16), 64 / 6, perf.gflops(NAIVE, 64)])
    assert points["your matmul_blocked"] == pytest.approx([256 / 6, perf.gflops(BLOCKED, 256)])
    top = next(a for a in ax.child_axes if a.get_xlabel().startswith("n:"))
    assert [t.get_text() for t in top.get_xticklabels()] == ["16", "64", "256"]
    assert list(ax.xaxis.get_minorticklocs()) == [] or \
        all(t.get_text() == "" for t in ax.xaxis.get_minorticklabels())
    assert roofline_figure(None, [("x", [(64, 1.0)])], "no ceilings") is None


@pytest.mark.slow
def test_feedback_shows_the_grader_s_measurements(graded_course, tmp_path):
    course = copy_course(graded_course, tmp_path / "course")
    write_feedback(course, ["1001", "1003"])
    page = feedback_path(course, "1001").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "How close to the machine" in text
    theoretical = re.search(r"Theoretical peak, one core\s+([0-9.]+)\s+([0-9]+) FLOP/cycle", text)
    attainable = re.search(r"Attainable peak\s+([0-9.]+)\s+100%", text)
    assert theoretical and attainable, text
    assert float(theoretical[1]) >= float(attainable[1]) > 0
    row = re.search(r"your matmul_blocked\s+([0-9.]+)\s+([0-9.]+)%", text)
    assert row and 0 < float(row[1]) <= float(attainable[1]) and 1 <= float(row[2]) <= 100, text
    assert re.search(r"np\.matmul, called the grader's way\s+[0-9.]+\s+[0-9]+%\s+NumPy's own "
                     r"product called the way the grader calls your code", text)
    assert re.search(r"your matmul_naive\s+[0-9.]+\s+[0-9.<]+%\s+at 64×64", text)
    assert "Your tiles run at" in text and "Your triple loop does" in text
    assert machine.summary(machine.describe()) in text
    assert re.search(r"Memory bandwidth of one core:\s+[0-9.]+\s+GB/s", text)
    assert "The grading machine's caches: L1d" in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "n/6 FLOP per byte" in text
    for n in (16, 32, 64, 128, 256, 512):
        assert re.search(rf"\b{n}\s+(?:–\s+)*[0-9]+\.[0-9]{{3}}", text), n
    # The written answers wait for a grader: their part says so instead of a score of 0.
    assert re.search(r"Written answers\s+awaiting grader / 20", text), text
    assert '<div class="scroll"><table class="times">' in page
    blank = html.unescape(feedback_path(course, "1003").read_text(encoding="utf-8"))
    assert "Not measured: the speed profile needs working functions" in blank
    assert "matmul_blocked: not timed (NotImplementedError" in blank


HIDDEN_SOURCE = ("_reference_blocked", "cases = [", "BEGIN HIDDEN TESTS", "numpy_vs_np_matmul_512")


@pytest.mark.slow
def test_nbgrader_s_own_feedback_is_the_safe_page(graded_course, tmp_path):
    """formgrader's Generate Feedback button calls NbGraderAPI.generate_feedback, as does
    `nbgrader generate_feedback`: both must write this project's page, never the graded notebook
    with its hidden tests, and Release Feedback then hands out that page."""
    import subprocess

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config, PyFileConfigLoader

    course = copy_course(graded_course, tmp_path / "course")
    write_feedback(course, ["1001"])
    ours = feedback_path(course, "1001").read_text(encoding="utf-8")
    config = Config(PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config())
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    feedback_path(course, "1001").unlink()
    reply = api.generate_feedback(course.assignment, "1001", force=True)   # the button's call
    assert reply["success"], reply
    assert feedback_path(course, "1001").read_text(encoding="utf-8") == ours

    proc = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "generate_feedback",
                           course.assignment, "--student", "1002", "--force"], cwd=course.root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = feedback_path(course, "1002").read_text(encoding="utf-8")
    assert "How close to the machine" in page or "Timing" in page
    for text in HIDDEN_SOURCE:
        assert text not in page and text not in ours, text


def test_a_grader_s_comments_reach_the_page_and_blank_answers_say_so(graded_course, tmp_path):
    """What a TA types in formgrader's comment boxes is on the student's page; answers left as
    released (nbgrader scores those 0 by itself) are marked as left blank, not as graded."""
    from autograder.gradebook import open_gradebook

    course = copy_course(graded_course, tmp_path / "course")
    with open_gradebook(course) as gb:
        notebook = gb.find_submission_notebook("acceleration", "acceleration", "1001")
        comments = {c.name: c for c in notebook.comments}
        comments["question_memory_access"].manual_comment = "Good estimate; show the stride."
        comments["blocked_impl"].manual_comment = "Try 32x32 tiles too."
        gb.db.commit()
    write_feedback(course)
    page = html.unescape(feedback_path(course, "1001").read_text(encoding="utf-8"))
    assert "Grader's comment: Good estimate; show the stride." in page
    assert "Comments on your code" in page and "blocked_impl</code>): Try 32x32 tiles too." in page
    assert "(left blank)" not in page
    blank = feedback_path(course, "1003").read_text(encoding="utf-8")
    assert blank.count("(left blank)") == 4
