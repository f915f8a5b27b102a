"""`feedback`: one page per student, with how close its products came to the machine."""
from __future__ import annotations

import base64
import html
import re

import pytest

from autograder import machine
from autograder.course import REPO_ROOT, Course
from autograder.feedback import feedback_path, write_feedback
from autograder.performance import Performance, explained
from autograder.trusted.profile import PEAK, Profile, reference_name
from tests.test_export import copy_course

SPEC = Course.at(REPO_ROOT).spec
BLOCKED, NUMPY = "matmul_blocked", "matmul_numpy"


def _profile(blocked_ms: float, numpy_ms: float, peak_ms: float = 0.5) -> Performance:
    seconds = {PEAK: {256: peak_ms / 1e3}, BLOCKED: {256: blocked_ms / 1e3},
               reference_name(BLOCKED): {256: 1.4 / 1e3}, NUMPY: {256: numpy_ms / 1e3}}
    return Performance(Profile([256], seconds, {}, []), [])


def test_the_assignment_says_what_the_gap_means():
    close, mid, far = (explained(_profile(ms, 0.5), SPEC) for ms in (0.55, 1.5, 60.0))
    assert close[0].startswith("Your tiles run at 91% of BLAS")
    assert "SIMD, packing, register blocking" in mid[0] and "question 3" in mid[0]
    assert mid[0].startswith("Your tiles run at 33% of BLAS (the reference tiling: 36%)")
    assert "most of the time goes to Python" in far[0]
    assert "one-core peak as the grader measures it (67.1 GFLOP/s at 256x256" in mid[1]
    assert "reaches only 25% of the one-core peak" in explained(_profile(1.5, 2.0), SPEC)[1]
    assert explained(Performance(None, []), SPEC) == []


def test_gflops_and_fractions_come_from_the_profile():
    perf = _profile(1.0, 0.5)
    assert perf.gflops(BLOCKED, 256) == pytest.approx(2 * 256 ** 3 / 1e-3 / 1e9)
    assert perf.fraction(BLOCKED, 256) == pytest.approx(0.5) and perf.fraction(NUMPY, 256) == 1.0
    assert perf.gflops(BLOCKED, 512) is None


@pytest.mark.slow
def test_feedback_shows_the_grader_s_measurements(graded_course, tmp_path):
    course = copy_course(graded_course, tmp_path / "course")
    write_feedback(course, ["1001", "1003"])
    page = feedback_path(course, "1001").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "How close to the machine" in text
    row = re.search(r"your matmul_blocked\s+([0-9.]+)\s+([0-9]+)%", text)
    assert row and float(row[1]) > 0 and 5 <= int(row[2]) <= 150, text
    assert re.search(r"NumPy, one core \(peak\)\s+[0-9.]+\s+100%", text)
    assert "Your tiles run at" in text
    assert machine.summary(machine.describe()) in text
    image = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert image and base64.b64decode(image[1]).startswith(b"\x89PNG")
    for n in (64, 128, 256, 512):
        assert re.search(rf"\b{n}\s+[0-9]+\.[0-9]{{3}}", text), n
    blank = html.unescape(feedback_path(course, "1003").read_text(encoding="utf-8"))
    assert "Not measured: the speed profile needs working functions" in blank
    assert "matmul_blocked: not timed (NotImplementedError" in blank
