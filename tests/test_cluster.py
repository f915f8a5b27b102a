"""Grading on a Dask cluster: a real `dask scheduler` and `dask worker --nthreads 1` processes on
127.0.0.1, started and stopped by these tests (by pid, whatever happens).

The same submissions graded on the cluster and on this machine's own slots get the same scores,
verdicts and export, and feedback pages that differ only in measured figures; a worker killed in
the middle of a batch loses nothing and grades nothing twice; a worker of another grader
version is refused before any task, and a scheduler that is not there is reported at once.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course, tool_environment
from autograder.demo import DEMO_ZIP, DUE_DATE
from autograder.records import read_record
from autograder.results import load_cohort
from autograder.submissions import fill
from tests.processes import Processes, descendant_runs, descendant_working_in

pytestmark = pytest.mark.slow
DASK = str(Path(sys.executable).parent / "dask")
SCALE = Path(__file__).parent / "fixtures" / "assignments" / "scale"
START_SECONDS = 60


def _scheduler(processes: Processes, folder: Path) -> str:
    info = folder / "scheduler.json"
    processes.start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(info)], folder / "scheduler.log")
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return json.loads(info.read_text())["address"]
        time.sleep(0.2)
    raise AssertionError("the scheduler did not start: " + (folder / "scheduler.log").read_text())


def _worker(processes: Processes, address: str, folder: Path, name: str,
            env: dict | None = None) -> subprocess.Popen:
    return processes.start([DASK, "worker", address, "--nthreads", "1", "--no-nanny",
                            "--no-dashboard", "--host", "127.0.0.1", "--name", name],
                           folder / f"{name}.log", env)


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_SECONDS) as client:
        client.wait_for_workers(count, timeout=START_SECONDS)


def _cluster(processes: Processes, folder: Path, workers: int = 2) -> tuple[str, list]:
    folder.mkdir(parents=True, exist_ok=True)
    address = _scheduler(processes, folder)
    started = [_worker(processes, address, folder, f"w{n}") for n in range(workers)]
    _wait_for_workers(address, workers)
    return address, started


def cli(course: Course, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root),
                           *args], cwd=REPO_ROOT, env=tool_environment(), text=True,
                          capture_output=True, timeout=900)
    if check:
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def _demo_class(root: Path) -> Course:
    course = Course.scaffold(root, Course.at(REPO_ROOT))
    course.nbgrader("db", "assignment", "add", course.assignment, f"--duedate={DUE_DATE}")
    cli(course, "collect", str(DEMO_ZIP))
    return course


def _scale_class(root: Path, students=("2001", "2002", "2003", "2004")) -> Course:
    (root / "source").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(SCALE, root / "source" / "scale")
    course = Course.at(root)
    cli(course, "release")
    downloads = root.parent / f"{root.name}-download"
    downloads.mkdir()
    edits = {"2002": {"scale_impl": "def scale(v, factor):\n    return v * abs(factor)\n"},
             "2004": None}
    for student in students:
        nb = fill(course.release_notebook, course.source_notebook,
                  parts=() if student == "2004" else None, edits=edits.get(student))
        nbformat.write(nb, downloads / f"{student}.ipynb")
    cli(course, "collect", str(downloads))
    return course


def _verdicts(course: Course) -> dict:
    return {r.student: (r.status, r.late_penalty, {t.grade_id: (t.score, t.passed) for t in r.tests})
            for r in load_cohort(course)}


_FIGURE = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+|(?:&lt;)?\d+(?:[.,]\d+)*")


def _page_without_figures(course: Course, student: str) -> str:
    page = (course.root / "feedback" / student / course.assignment /
            f"{course.assignment}.html").read_text(encoding="utf-8")
    return _FIGURE.sub("#", page)


def test_a_class_graded_on_dask_workers_matches_grading_on_this_machine(processes, tmp_path):
    address, _ = _cluster(processes, tmp_path / "cluster")
    for make in (_demo_class, _scale_class):
        here, there = make(tmp_path / f"{make.__name__}-here"), make(tmp_path / f"{make.__name__}-dask")
        cli(here, "grade", "--jobs", "2", "--quiet")
        graded = cli(there, "grade", "--scheduler", address, "--quiet").stdout
        assert "grading on 2 Dask worker(s) of the Dask scheduler at " + address in graded, graded

        assert _verdicts(there) == _verdicts(here)
        for course in (here, there):
            cli(course, "feedback")
            cli(course, "export", "--format", "csv", "-o", str(course.root / "grades.csv"))
        assert (there.root / "grades.csv").read_text() == (here.root / "grades.csv").read_text()
        for student in here.submitted_students():
            assert _page_without_figures(there, student) == _page_without_figures(here, student)
            record = read_record(there, student)
            assert record.worker.startswith("tcp://127.0.0.1:"), record   # which worker graded
            assert record.machine == read_record(here, student).machine   # one machine here
        # The grade process alone writes the course: one gradebook, no scratch course left in it.
        assert sorted(p.name for p in there.root.iterdir() if p.suffix == ".db") == ["gradebook.db"]


def test_a_worker_killed_in_the_middle_of_a_batch_loses_nothing(processes, tmp_path):
    address, (first, second) = _cluster(processes, tmp_path / "cluster")
    students = [f"30{n:02d}" for n in range(1, 7)]
    course = _scale_class(tmp_path / "course", students)
    grading = subprocess.Popen([sys.executable, "-m", "autograder", "--course", str(course.root),
                                "grade", "--scheduler", address, "--quiet"], cwd=REPO_ROOT,
                               env=tool_environment(), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    processes.started.append(grading)
    # Kill the first worker while it grades: once its nbgrader process is running a submission.
    deadline = time.monotonic() + 300
    while not descendant_runs(first.pid, "autograder.trusted.worker"):
        assert grading.poll() is None and time.monotonic() < deadline, grading.stdout.read()
        time.sleep(0.1)
    processes.stop(first)
    out, _ = grading.communicate(timeout=600)
    assert grading.returncode == 0, out

    graded_lines = [line.split()[1] for line in out.splitlines() if line.startswith("  graded ")]
    assert sorted(graded_lines) == students, out             # each exactly once, none lost
    assert "graded 6, failed 0" in out, out
    assert {read_record(course, s).status for s in students} == {"graded"}
    assert all(read_record(course, s).worker.startswith("tcp://") for s in students)
    with contextlib.closing(sqlite3.connect(course.gradebook)) as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        rows = db.execute("select count(*) from submitted_assignment").fetchone()[0]
    assert rows == len(students)
    assert {s: v[2]["scale_correct"][0] for s, v in _verdicts(course).items()} == {
        s: 3.0 for s in students}
    again = cli(course, "grade", "--scheduler", address)
    assert "already graded 6" in again.stdout, again.stdout


def test_a_submission_that_kills_every_worker_it_runs_on_is_recorded_and_the_batch_goes_on(
        processes, tmp_path):
    """Here the test kills each worker that grades student 2002; with the scheduler's
    allowed-failures at 1, Dask gives up after two deaths and the other students are graded."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    env = tool_environment()
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "1"
    info = folder / "scheduler.json"
    processes.start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(info)], folder / "scheduler.log", env)
    deadline = time.monotonic() + START_SECONDS
    while not info.exists():
        assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
        time.sleep(0.2)
    address = json.loads(info.read_text())["address"]
    workers = [_worker(processes, address, folder, f"w{n}") for n in range(3)]
    _wait_for_workers(address, 3)
    course = _scale_class(tmp_path / "course", ["2001", "2002", "2003"])
    grading = subprocess.Popen([sys.executable, "-m", "autograder", "--course", str(course.root),
                                "grade", "--scheduler", address, "--quiet"], cwd=REPO_ROOT,
                               env=tool_environment(), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    processes.started.append(grading)
    killed = []
    deadline = time.monotonic() + 300
    while len(killed) < 2 and time.monotonic() < deadline and grading.poll() is None:
        for worker in workers:
            if worker not in killed and descendant_working_in(worker.pid, "/autograded/2002/"):
                processes.stop(worker)
                killed.append(worker)
        time.sleep(0.1)
    assert len(killed) == 2, "the workers grading 2002 were not found"
    out, _ = grading.communicate(timeout=600)
    assert grading.returncode == 0, out
    record = read_record(course, "2002")
    assert record.status == "failed" and "until Dask gave up on it" in record.reason, record
    assert {s: read_record(course, s).status for s in ("2001", "2003")} == {
        "2001": "graded", "2003": "graded"}
    assert "graded 2, failed 1" in out, out


def test_a_worker_of_another_grader_version_is_refused_before_any_task(processes, tmp_path):
    other = tmp_path / "other-checkout"
    shutil.copytree(REPO_ROOT / "autograder", other / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    rules = other / "autograder" / "trusted" / "rules.py"
    rules.write_text(rules.read_text() + "\n# a verdict rule edited on this worker only\n")
    env = tool_environment()
    env["PYTHONPATH"] = str(other)
    folder = tmp_path / "cluster"
    folder.mkdir()
    address = _scheduler(processes, folder)
    _worker(processes, address, folder, "stale", env)
    _wait_for_workers(address, 1)
    course = _scale_class(tmp_path / "course", ["2001"])

    refused = cli(course, "grade", "--scheduler", address, check=False)
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert "refusing to grade on this cluster" in message and "runs grader code" in message, message
    assert "this grader runs grader code" in message and "Traceback" not in message, message
    assert read_record(course, "2001") is None                # no task ran


def test_a_scheduler_that_is_not_there_is_reported_within_seconds(tmp_path):
    with socket.socket() as probe:          # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    course = _scale_class(tmp_path / "course", ["2001"])
    started = time.monotonic()
    proc = cli(course, "grade", "--scheduler", f"tcp://127.0.0.1:{port}", check=False)
    assert time.monotonic() - started < 60
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"no Dask scheduler answered at tcp://127.0.0.1:{port}" in message, message
    assert "Traceback" not in message, message


def test_grading_without_a_cluster_does_not_import_dask():
    code = ("import sys, autograder.cli, autograder.grade, autograder.task; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=tool_environment(),
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]", out
