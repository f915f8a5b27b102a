"""`grade`: real nbgrader autograding of whole batches, including broken and interrupted ones."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course, CourseError, tool_environment
from autograder.grade import grade_batch, pending
from autograder.records import read_record
from autograder.results import load_cohort
from tests.conftest import COHORT, submission, submit


def _copy(course: Course, dest) -> Course:
    shutil.copytree(course.root, dest)
    return Course.at(dest)


def _processes_working_in(course: Course) -> list[str]:
    """Command lines of the processes whose working directory is inside the course."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(pid) != os.getpid() and cwd.startswith(str(course.root)):
            found.append(cmdline)
    return found


def _scores(course: Course) -> dict[str, float]:
    return {r.student: r.auto_score for r in load_cohort(course)}


def test_regrading_skips_what_is_graded_and_picks_up_changes(graded_course, tmp_path):
    course = _copy(graded_course, tmp_path / "course")
    again = grade_batch(course, progress=False)
    assert again.graded == [] and again.skipped == sorted(COHORT)

    submit(course, "1003", submission(course, parts=("naive",)))  # a resubmission
    batch = grade_batch(course, progress=False)
    assert [r.student for r in batch.graded] == ["1003"]
    assert _scores(course) == {"1001": 80, "1002": 28, "1003": 15}


def _cli_grade(course: Course, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root),
                           "grade", "--quiet", *args], cwd=REPO_ROOT, env=tool_environment(),
                          text=True, capture_output=True)


@pytest.mark.slow
def test_after_a_release_that_changes_the_tests_everyone_graded_with_them_is_regraded(
        graded_course, tmp_path):
    course = _copy(graded_course, tmp_path / "course")
    assert pending(course) == {}
    # The instructor tightens a hidden test (everyone fails it now) and releases again.
    course.source_notebook.with_suffix(".py").unlink()   # edited as .ipynb only, here
    nb = nbformat.read(course.source_notebook, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                == "naive_correct")
    stricter = "assert False, 'a stricter hidden test'\n### END HIDDEN TESTS"
    cell.source = cell.source.replace("### END HIDDEN TESTS", stricter)
    nbformat.write(nb, course.source_notebook)
    # Not released yet: grade says so, names the cell, and grades with the gradebook's tests.
    early = _cli_grade(course)
    assert early.returncode == 0, early.stderr
    assert ("acceleration.ipynb differs from the gradebook in naive_correct: grading uses the "
            "tests as last released") in early.stderr, early.stderr
    assert "already graded 3" in early.stdout and pending(course) == {}
    released = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root),
                               "release"], cwd=REPO_ROOT, env=tool_environment(), text=True,
                              capture_output=True)
    assert released.returncode == 0, released.stderr
    assert pending(course) == {s: "the tests changed (release): naive_correct" for s in COHORT}

    # A regrade interrupted after one student leaves the others to the next run.
    first = _cli_grade(course, "1001")
    assert first.returncode == 0 and "1 submission(s) (1: asked for)" in first.stdout
    assert pending(course) == {"1002": "the tests changed (release): naive_correct",
                               "1003": "the tests changed (release): naive_correct"}
    rest = _cli_grade(course)
    assert rest.returncode == 0, rest.stderr
    assert "grading 2 submission(s) (2: the tests changed (release): naive_correct)" in rest.stdout
    assert "differs from the gradebook" not in rest.stderr
    assert "already graded 1" in rest.stdout
    # The new verdicts: naive_correct (10 points) now fails for those who had it.
    assert _scores(course) == {"1001": 70, "1002": 18, "1003": 0}
    assert pending(course) == {}
    # A new due date is named as such.
    course.nbgrader("db", "assignment", "add", course.assignment, "--duedate=2030-01-01 12:00 UTC")
    assert pending(course) == {s: "the due date changed" for s in COHORT}


def test_named_students_and_force(graded_course, tmp_path):
    course = _copy(graded_course, tmp_path / "course")
    before = read_record(course, "1002").finished_at
    batch = grade_batch(course, ["1002"], progress=False)
    assert [r.student for r in batch.graded] == ["1002"] and batch.skipped == []
    assert read_record(course, "1002").finished_at > before
    with pytest.raises(CourseError, match="no submission under submitted/ for: 9999"):
        grade_batch(course, ["9999"], progress=False)


def test_cli_exits_zero_whatever_students_scored(graded_course, tmp_path):
    course = _copy(graded_course, tmp_path / "course")
    proc = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root),
                           "grade", "--quiet", "--force", "1003"], cwd=REPO_ROOT,
                          env=tool_environment(), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert "graded  1003" in proc.stdout and "0 / 80" in proc.stdout
    assert "graded 1, failed 0, already graded 0" in proc.stdout


BROKEN = {
    # student id: (how the notebook is made, expected status, expected autograded score)
    "2001": "invalid JSON",
    "2002": "os._exit in matmul_numpy",
    "2003": "syntax error in the blocked cell",
    "2004": "naive_correct test cell deleted",
    "2005": "reference",
}


@pytest.mark.slow
def test_broken_submissions_are_recorded_and_never_stop_the_batch(course):
    (course.submitted_dir("2001")).mkdir(parents=True)
    (course.submitted_dir("2001") / "acceleration.ipynb").write_text('{"cells": [')
    submit(course, "2002", submission(course, edits={
        "numpy_impl": "import os\n\ndef matmul_numpy(a, b):\n    os._exit(3)\n"}))
    submit(course, "2003", submission(course, edits={
        "blocked_impl": "def matmul_blocked(a, b, block_size=64)\n    return a @ b\n"}))
    deleted = submission(course)
    deleted.cells = [c for c in deleted.cells
                     if c.metadata.get("nbgrader", {}).get("grade_id") != "naive_correct"]
    submit(course, "2004", deleted)
    submit(course, "2005", submission(course))

    batch = grade_batch(course, jobs=2, progress=False)
    records = {r.student: r for r in batch.graded}
    assert sorted(records) == sorted(BROKEN)
    assert records["2001"].status == "failed" and "JSON" in records["2001"].reason
    # os._exit in matmul_numpy costs the tests that call it, not the whole notebook.
    assert records["2002"].status == "graded"
    scores = _scores(course)
    # The blocked part (correctness 12 + speed 10) is lost; everything else still counts.
    assert records["2003"].status == "graded" and scores["2003"] == 80 - 22
    # A deleted test cell scores zero, it is not skipped.
    assert records["2004"].status == "graded" and scores["2004"] == 80 - 10
    assert records["2005"].status == "graded" and scores["2005"] == 80
    assert scores["2002"] == 80 - (3 + 2 + 10 + 5 + 15)  # numpy (both), backend (both), models
    crashed = {t.grade_id: t.message for t in load_cohort(course, ["2002"])[0].tests if not t.passed}
    assert "crashed the process running it (exit code 3)" in crashed["numpy_correct"]
    assert scores["2001"] == 0


@pytest.mark.slow
def test_a_hanging_function_costs_only_its_own_tests(course):
    submit(course, "3001", submission(course, edits={
        "naive_impl": "def matmul_naive(a, b):\n    while True:\n        pass\n"}))
    submit(course, "3002", submission(course))       # the same grading without the hang
    batch = grade_batch(course, jobs=1, time_limit=5, progress=False)
    assert [r.status for r in batch.graded] == ["graded", "graded"]
    result = load_cohort(course, ["3001"])[0]
    failed = {t.grade_id: t.message for t in result.tests if not t.passed}
    assert set(failed) == {"naive_correct", "naive_errors"}, failed
    assert "did not finish within 5 s" in failed["naive_correct"]
    assert result.auto_score == 80 - 15
    # One 5 s limit per cell of the student's own notebook that calls it (2), and one for the
    # tests: a function that hung once is not called again (the tests call it dozens of times).
    hung, reference = (read_record(course, s).seconds for s in ("3001", "3002"))
    assert hung < reference + 3 * 5 + 15, (hung, reference)


@pytest.mark.slow
def test_killed_grader_resumes_without_regrading_or_losing_anything(course):
    students = ["4001", "4002", "4003"]
    for student in students:
        submit(course, student, submission(course))
    cmd = [sys.executable, "-m", "autograder", "--course", str(course.root), "grade", "--quiet",
           "--jobs", "1"]
    first = subprocess.Popen(cmd, cwd=REPO_ROOT, env=tool_environment(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    def records():
        return {s: r for s in students if (r := read_record(course, s))}

    while not any(r.ok for r in records().values()):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # the worst case: no chance to clean up
    first.wait()
    done = {s: r.finished_at for s, r in records().items() if r.ok}
    assert len(done) == 1, records()
    # The one in flight, half written by nbgrader, does not count as graded.
    assert {r.status for s, r in records().items() if s not in done} <= {"interrupted"}

    # The nbgrader child dies with its parent, and its kernel follows it.
    deadline = time.monotonic() + 20
    while _processes_working_in(course) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_working_in(course) == []

    second = subprocess.run(cmd, cwd=REPO_ROOT, env=tool_environment(), text=True,
                            capture_output=True)
    assert second.returncode == 0, second.stdout + second.stderr
    regraded = sorted(line.split()[1] for line in second.stdout.splitlines()
                      if line.startswith("  graded "))
    assert regraded == sorted(set(students) - set(done))
    assert "already graded 1" in second.stdout
    (student, finished_at), = done.items()
    assert read_record(course, student).finished_at == finished_at
    assert _scores(course) == {s: 80 for s in students}


def test_grading_refuses_to_run_unsandboxed_unless_told(graded_course, tmp_path):
    """With bubblewrap unusable (hidden in a private mount namespace), grade says so and stops."""
    course = _copy(graded_course, tmp_path / "course")
    hide_bwrap = ["unshare", "--mount", "sh", "-c",
                  'mount --bind /dev/null "$(command -v bwrap)" && exec "$@"', "sh"]
    cmd = [*hide_bwrap, sys.executable, "-m", "autograder", "--course", str(course.root),
           "grade", "--quiet", "--force", "1003"]
    refused = subprocess.run(cmd, cwd=REPO_ROOT, env=tool_environment(), text=True,
                             capture_output=True)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "cannot grade safely" in refused.stderr and "--no-sandbox" in refused.stderr
    allowed = subprocess.run([*cmd, "--no-sandbox"], cwd=REPO_ROOT, env=tool_environment(),
                             text=True, capture_output=True)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "graded  1003" in allowed.stdout


def _written_grades(course: Course, student: str) -> dict[str, tuple[float | None, bool]]:
    from autograder.gradebook import open_gradebook

    with open_gradebook(course) as gb:
        submission_ = gb.find_submission(course.assignment, student)
        return {g.name: (g.manual_score, g.needs_manual_grade)
                for nb in submission_.notebooks for g in nb.grades if g.cell.cell_type != "code"}


@pytest.mark.slow
def test_a_regrade_keeps_the_hand_grading_of_answers_that_did_not_change(course):
    from autograder.gradebook import open_gradebook
    from autograder.grade import summary_line

    submit(course, "2001", submission(course, parts=("question",)))
    grade_batch(course, progress=False)
    with open_gradebook(course) as gb:   # what formgrader does when a TA saves a score
        for nb in gb.find_submission(course.assignment, "2001").notebooks:
            for grade in nb.grades:
                if grade.cell.cell_type != "code":
                    grade.manual_score, grade.needs_manual_grade = 4.0, False
        gb.db.commit()
    written = _written_grades(course, "2001")
    assert len(written) == 4 and set(written.values()) == {(4.0, False)}

    # A regrade for the grader's own reasons (a fixed test, a new due date): nothing to grade again.
    again = grade_batch(course, force=True, progress=False).graded[0]
    assert again.answers_changed == [] and _written_grades(course, "2001") == written
    result = load_cohort(course, ["2001"])[0]
    assert not result.needs_manual_grading and result.max_score == 100

    # A resubmission with one answer rewritten: that one waits for a grader, the others do not.
    path = course.submitted_dir("2001") / course.notebook
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                == "question_cache_hierarchy")
    cell.source += "\n\nOne more thought on tile sizes."
    nbformat.write(nb, path)
    changed = grade_batch(course, progress=False).graded[0]
    assert changed.answers_changed == ["question_cache_hierarchy"]
    assert "grade them again: question_cache_hierarchy" in summary_line(changed)
    now = _written_grades(course, "2001")
    assert now.pop("question_cache_hierarchy") == (4.0, True)
    assert set(now.values()) == {(4.0, False)}


def test_a_student_whose_regrade_was_interrupted_is_graded_again(graded_course, tmp_path):
    """Ctrl-C during `grade --force`: the student in flight had a complete old record; the record
    grade_one writes before nbgrader starts replaces it, so the next run does not skip them."""
    from dataclasses import replace

    from autograder.records import Status, write_record

    course = _copy(graded_course, tmp_path / "course")
    assert pending(course) == {}
    old = read_record(course, "1002")
    write_record(course, replace(old, status=Status.INTERRUPTED,
                                 reason="grading started and did not finish"))
    assert pending(course) == {"1002": "its last grading was interrupted"}
    from autograder import export

    entry = next(e for e in export.load(course).entries if e.result.student == "1002")
    assert entry.ungraded and entry.status_text == "not graded yet"   # no half-made score out


def test_a_mistyped_assignment_name_is_refused_before_anything_is_written(course):
    for argv in (["--assignment", "accel", "collect", str(course.root)],
                 ["grade", "--assignment", "accel"], ["report", "--assignment", "accel"]):
        proc = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root),
                               *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert "no assignment 'accel' in" in proc.stderr and "(there is: acceleration)" in proc.stderr
    assert not (course.root / "submitted").exists()
    assert not (course.root / "collected").exists()


def test_settings_that_cannot_change_a_verdict_do_not_regrade(graded_course, tmp_path):
    course = _copy(graded_course, tmp_path / "course")
    config = course.root / "nbgrader_config.py"
    config.write_text(config.read_text() + '\nc.Exchange.root = "/srv/exchange"\n'
                      'c.CourseDirectory.course_id = "cs-329"\nc.Validator.width = 120\n')
    assert pending(course) == {}
    config.write_text(config.read_text() + "\nc.LimitOutput.max_lines = 100\n")
    assert pending(course) == {s: "the grader changed" for s in COHORT}
