"""`watch`: submissions graded as they arrive, with real nbgrader exchange commands, a real drop
folder and `watch` as a subprocess (stopped by pid whatever happens). The tiny `scale`
assignment keeps each grading short; its student 2002 fails only the hidden test.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course, tool_environment
from autograder.feedback import WITHHELD
from autograder.records import read_record
from autograder.submissions import fill
from tests.processes import descendant_runs

pytestmark = pytest.mark.slow
SCALE = Path(__file__).parent / "fixtures" / "assignments" / "scale"
HIDDEN_MESSAGE = "scale(v, -0.5) should halve v and flip its sign"
HIDDEN_ONLY = {"scale_impl": "def scale(v, factor):\n    return v * abs(factor)\n"}
WAIT = 240       # seconds any one thing may take before the test gives up


def _course(root: Path) -> Course:
    (root / "source").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(SCALE, root / "source" / "scale")
    course = Course.at(root)
    _run([sys.executable, "-m", "autograder", "--course", str(root), "release"], REPO_ROOT)
    return course


def _run(argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=tool_environment(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _watch(processes, course: Course, *args: str):
    log = course.root / f"watch-{len(processes.started)}.log"
    proc = processes.start([sys.executable, "-m", "autograder", "--course", str(course.root),
                            "watch", "--poll", "0.5", "--settle", "1", *args], log)
    return proc, log


def _until(what: str, check, proc=None, log: Path | None = None, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc is not None:
            assert proc.poll() is None, f"watch exited: {log.read_text() if log else ''}"
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s; watch said:\n"
                         f"{log.read_text() if log else ''}")


def _status(course: Course) -> dict:
    try:
        return json.loads((course.root / "grading" / "watch" / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _notebook(course: Course, edits=None, parts=None) -> str:
    return nbformat.writes(fill(course.release_notebook, course.source_notebook, parts=parts,
                                edits=edits))


def test_exchange_submit_to_fetched_feedback_withholds_hidden_messages_until_the_due_date(
        processes, tmp_path):
    course = _course(tmp_path / "course")
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    where = [f"--Exchange.root={exchange}", "--CourseDirectory.course_id=ml-systems"]
    home = tmp_path / "home"
    home.mkdir()
    course.nbgrader("db", "assignment", "add", "scale", "--duedate=2099-01-01 12:00 UTC")
    _run([nbgrader, "release_assignment", "scale", *where], course.root)
    _run([nbgrader, "fetch_assignment", "scale", *where], home)
    (home / "scale" / "scale.ipynb").write_text(_notebook(course, HIDDEN_ONLY))
    proc, log = _watch(processes, course, "--exchange", "--exchange-root", str(exchange),
                       "--every", "0.05")
    submitted = time.monotonic()
    _run([nbgrader, "submit", "scale", *where], home)

    def fetched() -> str | None:      # fetch_feedback fails until a page is released
        subprocess.run([nbgrader, "fetch_feedback", "scale", *where], cwd=home,
                       env=tool_environment(), capture_output=True, timeout=120)
        pages = list((home / "scale" / "feedback").glob("*/scale.html"))
        return pages[0].read_text(encoding="utf-8") if pages else None

    page = _until("the feedback page, fetched with fetch_feedback", fetched, proc, log)
    print(f"nbgrader submit -> fetchable feedback: {time.monotonic() - submitted:.1f} s")
    assert "✘" in page and WITHHELD in page and HIDDEN_MESSAGE not in page
    assert "a new one will be graded from" in page

    # The due date passes (here: moved into the past): the page is written again, whole.
    course.nbgrader("db", "assignment", "add", "scale", "--duedate=2020-01-01 12:00 UTC")
    shutil.rmtree(home / "scale" / "feedback")

    def whole() -> str | None:
        text = fetched()
        return text if text and HIDDEN_MESSAGE in text else None

    page = _until("the whole page, after the due date", whole, proc, log)
    assert WITHHELD not in page
    text = log.read_text()
    assert "arrived  " in text and "released " in text and "hidden tests' messages withheld" in text


def test_a_drop_folder_takes_whole_notebooks_only_and_grades_one_attempt_per_period(
        processes, tmp_path):
    course = _course(tmp_path / "course")
    drop = tmp_path / "drop"
    drop.mkdir()
    proc, log = _watch(processes, course, "--drop", str(drop), "--every", "0.5")

    # A notebook still being copied: half of it, left there. It is not taken.
    whole = _notebook(course)
    (drop / "3001.ipynb").write_text(whole[: len(whole) // 2])
    waiting = _until("the half-copied notebook reported as waiting, and why", lambda: (
        "not a valid notebook" in (why := _status(course).get("files_not_taken_yet", {})
                                   .get("3001.ipynb", "")) and why), proc, log)
    assert "a copy still in progress?" in waiting
    time.sleep(3)
    assert read_record(course, "3001") is None
    (drop / "3001.ipynb").write_text(whole)
    first = _until("the first attempt graded",
                   lambda: (r := read_record(course, "3001")) and r.ok and r, proc, log)
    assert first.status == "graded" and first.score == 5

    # Two new versions in quick succession: the period of 30 s holds, then only the later one
    # is graded.
    (drop / "3001.ipynb").write_text(_notebook(course, HIDDEN_ONLY))
    time.sleep(1.5)
    latest = _notebook(course, parts=())
    (drop / "3001.ipynb").write_text(latest)
    _until("the rate limit reported",
           lambda: "3001" in _status(course).get("waiting_for_rate_limit", {}), proc, log)
    assert read_record(course, "3001").fingerprint == first.fingerprint
    second = _until("the second attempt graded",
                    lambda: (r := read_record(course, "3001")) and r.ok
                    and r.finished_at != first.finished_at and r, proc, log)
    assert second.score == 0                                   # the later (blank) notebook
    assert second.finished_at - first.finished_at >= 30
    assert _status(course)["attempts"] == {"3001": 2}
    attempts = sorted((course.root / "grading" / "watch" / "attempts" / "3001").glob("*.json"))
    assert [json.loads(p.read_text())["score"] for p in attempts] == [5.0, 0.0]
    page = (course.root / "feedback" / "3001" / "scale" / "scale.html").read_text()
    assert "attempt 2" in page and "a new one will be graded from" in page


def test_watch_killed_while_grading_grades_everything_once_after_a_restart(processes, tmp_path):
    course = _course(tmp_path / "course")
    drop = tmp_path / "drop"
    drop.mkdir()
    students = ["4001", "4002", "4003"]
    for student in students:
        (drop / f"{student}.ipynb").write_text(_notebook(course))
    proc, log = _watch(processes, course, "--drop", str(drop), "--jobs", "1", "--every", "0")
    _until("a submission being graded",
           lambda: descendant_runs(proc.pid, "autograder.trusted.worker"), proc, log)
    processes.stop(proc)                               # SIGKILL: no chance to clean up
    before = {s: r.finished_at for s in students if (r := read_record(course, s)) and r.ok}
    assert len(before) < len(students)

    proc, log = _watch(processes, course, "--drop", str(drop), "--jobs", "1", "--every", "0")
    _until("every submission graded",
           lambda: all((r := read_record(course, s)) and r.ok for s in students), proc, log)
    _until("every page released", lambda: all(
        (course.root / "feedback" / s / "scale" / "scale.html").is_file() for s in students),
        proc, log)
    for student, finished_at in before.items():     # graded before the kill: not again
        assert read_record(course, student).finished_at == finished_at
    attempts = {s: len(list((course.root / "grading" / "watch" / "attempts" / s).glob("*.json")))
                for s in students}
    assert attempts == {s: 1 for s in students}
