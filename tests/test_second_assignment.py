"""A second assignment, defined only in tests/fixtures/assignments/scale/, goes through every stage.

It has one function, one test cell with a hidden test and one timing test against a reference, and
a `grading.py` of its own. Nothing in `autograder/` names it: release, collect, grade, feedback,
export, report and the Gradescope build (and run) all take what they need from its files.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course, tool_environment
from autograder.submissions import fill

FIXTURE = Path(__file__).parent / "fixtures" / "assignments" / "scale"
pytestmark = pytest.mark.slow


def cli(course_root: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course_root),
                           *args], cwd=REPO_ROOT, env=tool_environment(), text=True,
                          capture_output=True, timeout=900)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def scale_course(tmp_path_factory) -> Course:
    """A course root holding only the `scale` assignment, released and graded by the CLI."""
    root = tmp_path_factory.mktemp("scale") / "course"
    (root / "source").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(FIXTURE, root / "source" / "scale")
    cli(root, "release")
    course = Course.at(root)
    downloads = root.parent / "download"
    downloads.mkdir()
    release, source = course.release_notebook, course.source_notebook
    nbformat.write(fill(release, source), downloads / "2001.ipynb")
    nbformat.write(fill(release, source, edits={
        "scale_impl": "def scale(v, factor):\n    return v * abs(factor)\n"}), downloads / "2002.ipynb")
    nbformat.write(fill(release, source, edits={
        "scale_impl": "def scale(v, factor):\n"
                      "    return np.array([x * factor for x in v.tolist() for _ in range(40)]"
                      "[::40])\n"}), downloads / "2003.ipynb")
    nbformat.write(fill(release, source, parts=()), downloads / "2004.ipynb")
    cli(root, "collect", str(downloads))
    cli(root, "grade", "--jobs", "2", "--quiet")
    return course


def _scores(course: Course) -> dict[str, dict[str, float]]:
    from autograder.results import load_cohort

    return {r.student: {t.grade_id: t.score for t in r.tests} for r in load_cohort(course)}


def test_the_engine_finds_the_assignment_and_what_its_grading_py_says(scale_course):
    assert scale_course.assignment == "scale" and scale_course.notebook == "scale.ipynb"
    assert scale_course.spec.title == "Scaling a vector"
    assert (scale_course.release_dir / "scale.ipynb").is_file()
    released = (scale_course.release_dir / "scale.ipynb").read_text()
    assert "np.multiply(v, factor)" not in released and "scale(v, -0.5)" not in released


def test_grading_scores_each_student_by_its_tests(scale_course):
    assert _scores(scale_course) == {
        "2001": {"scale_correct": 3.0, "scale_speed": 2.0},      # the reference
        "2002": {"scale_correct": 0.0, "scale_speed": 2.0},      # fails only the hidden test
        "2003": {"scale_correct": 3.0, "scale_speed": 0.0},      # right, 40x the work in Python
        "2004": {"scale_correct": 0.0, "scale_speed": 0.0},      # nothing written
    }


def test_feedback_export_and_report_use_the_assignment_s_words(scale_course, tmp_path):
    cli(scale_course.root, "feedback")
    page = (scale_course.feedback_dir("2002") / "scale.html").read_text()
    assert "Scaling a vector" in page and "scale time ÷ np.multiply time" in page
    assert "scale(v, -0.5) should halve v" in page          # the hidden test's message, not code
    assert "How close to the machine" not in page           # it has no speed profile
    cli(scale_course.root, "export", "--format", "csv", "-o", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert (rows["2001"]["scale"], rows["2001"]["total"], rows["2001"]["max"]) == ("5", "5", "5")
    cli(scale_course.root, "export", "--format", "canvas", "-o", str(tmp_path / "canvas.csv"))
    assert (tmp_path / "canvas.csv").read_text().splitlines()[0].endswith(",Scaling")
    cli(scale_course.root, "report", "-o", str(tmp_path / "report"))
    report = (tmp_path / "report" / "index.html").read_text()
    assert "Scale vs NumPy (lower is faster)" in report
    leaders = re.findall(r'<tr data-student="(\w+)">', report)
    assert leaders == ["2001", "2003"], leaders    # passed scale_correct, and their speed measured


def test_the_gradescope_bundle_grades_it_too(scale_course, tmp_path):
    out = tmp_path / "scale.zip"
    built = cli(scale_course.root, "gradescope", "-o", str(out))
    assert "5 autograded points" in built.stdout
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "autograder" / "source")
    assert {"grading/scale.ipynb", "grading/grading.py", "grading/config.json"} <= names
    home = tmp_path / "autograder"
    (home / "submission").mkdir()
    shutil.copy(scale_course.submitted_dir("2001") / "scale.ipynb", home / "submission")
    env = {**tool_environment(), "AUTOGRADER_ROOT": str(home),
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(home / "source" / "run_autograder")], env=env, text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((home / "results" / "results.json").read_text())
    scored = {t["extra_data"]["grade_id"]: t["score"] for t in results["tests"]
              if "extra_data" in t}
    assert scored == {"scale_correct": 3.0, "scale_speed": 2.0}, results
    assert results["leaderboard"][0]["name"] == "Scale vs NumPy (lower is faster)"
