"""Feedback on submit: seconds from `nbgrader submit` to feedback a student can fetch.

N students (reference notebooks of this assignment) run `nbgrader submit` at the same moment
into a fresh exchange, with `watch --exchange` running: once on local slots (`--jobs J`), once
on a Dask scheduler with J `dask worker --nthreads 1` processes. A page counts as fetchable once
`watch` has released it (nbgrader's `release_feedback`); at the end every student runs
`nbgrader fetch_feedback` to check the page is there. Prints the median and slowest latency.

    .venv/bin/python bench/watch_latency.py [--students 10] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from autograder.course import REPO_ROOT, Course, tool_environment  # noqa: E402
from autograder.submissions import fill  # noqa: E402
from bench.cluster_overhead import _start_cluster  # noqa: E402

NBGRADER = str(Path(sys.executable).parent / "nbgrader")


def _run(argv, cwd):
    subprocess.run(argv, cwd=cwd, env=tool_environment(), check=True, capture_output=True)


def one_run(tmp: Path, students: int, grading: list[str]) -> list[float]:
    course = Course.scaffold(tmp / "course", Course.at(REPO_ROOT))
    exchange = tmp / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    where = [f"--Exchange.root={exchange}", "--CourseDirectory.course_id=ml-systems"]
    _run([NBGRADER, "release_assignment", course.assignment, *where], course.root)
    text = nbformat.writes(fill(course.release_notebook, course.source_notebook))
    homes = {}
    for n in range(students):
        student = f"s{n:02d}"
        home = homes[student] = tmp / "homes" / student
        home.mkdir(parents=True)
        _run([NBGRADER, "fetch_assignment", course.assignment, *where,
              f"--student={student}"], home)
        (home / course.assignment / course.notebook).write_text(text)
    env = tool_environment()
    env["PYTHONPATH"] = str(REPO_ROOT)
    with open(tmp / "watch.log", "wb") as log:
        watch = subprocess.Popen([sys.executable, "-m", "autograder", "--course", str(course.root),
                                  "watch", "--exchange", "--exchange-root", str(exchange),
                                  "--every", "0", "--poll", "0.5", "--settle", "1", *grading],
                                 env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        time.sleep(5)                               # watch is up and has looked once
        submits = {s: subprocess.Popen([NBGRADER, "submit", course.assignment, *where,
                                        f"--student={s}"], cwd=home, env=tool_environment(),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for s, home in homes.items()}
        submitted = {}
        for student, proc in submits.items():
            proc.wait()
            submitted[student] = time.time()
        state_file = course.root / "grading" / "watch" / "state.json"
        released: dict[str, float] = {}
        deadline = time.time() + 1800
        while len(released) < students and time.time() < deadline:
            try:
                state = json.loads(state_file.read_text())["students"]
            except (FileNotFoundError, ValueError, KeyError):
                state = {}
            for student, value in state.items():
                if value.get("released") and student not in released:
                    released[student] = time.time()
            time.sleep(0.2)
    finally:
        os.killpg(watch.pid, signal.SIGKILL)
        watch.wait()
    for student, home in homes.items():                  # the page is fetchable
        _run([NBGRADER, "fetch_feedback", course.assignment, *where, f"--student={student}"], home)
        assert list((home / course.assignment / "feedback").glob("*/*.html")), student
    return sorted(released[s] - submitted[s] for s in released)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results[f"local slots (--jobs {args.jobs})"] = one_run(
            Path(tmp) / "local", args.students, ["--jobs", str(args.jobs)])
        (Path(tmp) / "cluster").mkdir()
        address, procs = _start_cluster(Path(tmp) / "cluster", args.jobs)
        try:
            results[f"{args.jobs} Dask workers (--scheduler)"] = one_run(
                Path(tmp) / "dask", args.students, ["--scheduler", address])
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    print(f"{args.students} submissions at once; seconds from nbgrader submit to released feedback")
    for name, latencies in results.items():
        print(f"  {name:28s} median {statistics.median(latencies):6.1f} s, slowest "
              f"{max(latencies):6.1f} s ({len(latencies)} of {args.students} released)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
