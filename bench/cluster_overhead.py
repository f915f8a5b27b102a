"""Grading on Dask against grading on local slots, and what a Dask task costs beyond its grading.

1. The same N reference submissions, in fresh copies of the course, graded by `grade --jobs J`
   (local slots), by `grade --scheduler` on a `dask scheduler` with J `dask worker --nthreads 1`
   processes already running (the cluster case), and by `grade --cluster local --jobs J` (which
   also starts and stops its LocalCluster). Prints each wall time and the ratio to local slots.
2. The overhead of one task: N tasks with the real payloads (the batch's course files, one
   submission's files in, one graded folder out) whose work is nothing, through the same two
   workers: scheduling and transfer per task, in ms; and the coordinator's write of one result
   (graded folder, gradebook merge, record) timed on its own.
3. From those figures, on paper: submissions per minute for 10 and 100 workers.

    .venv/bin/python bench/cluster_overhead.py [--students 8] [--jobs 2] [--tasks 200]
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

from autograder import task  # noqa: E402
from autograder.course import REPO_ROOT, Course, tool_environment  # noqa: E402
from autograder.grade import _overrides, grading_basis, record_outputs  # noqa: E402
from autograder.records import read_record  # noqa: E402
from bench.grading_throughput import prepared_course  # noqa: E402


def _grade(course: Course, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root), "grade",
                    "--quiet", *args], cwd=REPO_ROOT, env=tool_environment(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _start_cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    dask = str(Path(sys.executable).parent / "dask")
    info = folder / "scheduler.json"
    env = tool_environment()
    env["PYTHONPATH"] = str(REPO_ROOT)         # this checkout's grader on every worker
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    deadline = time.monotonic() + 60
    while not info.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    for n in range(workers):
        procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-nanny",
                                       "--no-dashboard", "--host", "127.0.0.1"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, procs


def _echo(course: task.CourseFiles, outputs: task.GradingOutputs) -> task.GradingOutputs:
    """A task with the real payloads and no work: what Dask itself costs per submission."""
    return outputs


def task_overhead(address: str, course: Course, tasks: int) -> tuple[float, float]:
    """(ms per task of scheduling and transfer, ms per result written by the coordinator)."""
    from distributed import Client, wait

    shared = task.course_files(course, _overrides(None, True), 1200)
    student = course.submitted_students()[0]
    inputs = task.submission_inputs(course, student)
    graded = course.autograded_dir(student)
    outputs = task.GradingOutputs(student, "graded", files={
        str(p.relative_to(graded)): p.read_bytes() for p in graded.rglob("*") if p.is_file()},
        submission={}, machine=read_record(course, student).machine, worker="bench")
    with Client(address, timeout=60) as client:
        scattered = client.scatter(shared, broadcast=True, hash=False)
        wait([client.submit(_echo, scattered, outputs, pure=False) for _ in range(20)])  # warm
        start = time.perf_counter()
        futures = [client.submit(_echo, scattered, outputs, pure=False) for _ in range(tasks)]
        for future in futures:
            future.result()
        per_task = (time.perf_counter() - start) / tasks * 1000
    basis = grading_basis(course)
    writes = []
    recorded = _recorded(course, student)
    for _ in range(10):
        outputs.submission = recorded
        start = time.perf_counter()
        record_outputs(course, inputs, outputs, basis)
        writes.append((time.perf_counter() - start) * 1000)
    return per_task, statistics.median(writes)


def _recorded(course: Course, student: str) -> dict:
    from autograder.autograde_worker import recorded_submission

    return recorded_submission(course.db_url, course.assignment, student)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    n, jobs = args.students, args.jobs
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        local = prepared_course(tmp / "local", n)
        on_dask = prepared_course(tmp / "dask", n)
        on_local_cluster = prepared_course(tmp / "local-cluster", n)
        (tmp / "cluster").mkdir()
        address, procs = _start_cluster(tmp / "cluster", jobs)
        try:
            local_s = _grade(local, "--jobs", str(jobs))
            dask_s = _grade(on_dask, "--scheduler", address)
            local_cluster_s = _grade(on_local_cluster, "--cluster", "local", "--jobs", str(jobs))
            seconds = [read_record(on_dask, s).seconds for s in on_dask.submitted_students()]
            per_task_ms, write_ms = task_overhead(address, on_dask, args.tasks)
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    each = statistics.mean(seconds)
    print(f"submissions: {n} reference, {jobs} at a time")
    print(f"grade --jobs {jobs} (local slots):                {local_s:6.1f} s")
    print(f"grade --scheduler (2 running dask workers):    {dask_s:6.1f} s  "
          f"({dask_s / local_s:.2f}x local slots)")
    print(f"grade --cluster local --jobs {jobs} (starts it):   {local_cluster_s:6.1f} s  "
          f"({local_cluster_s / local_s:.2f}x local slots)")
    print(f"one submission on a worker: {each:.1f} s (mean of the task's own seconds)")
    print(f"Dask scheduling and transfer per task: {per_task_ms:.1f} ms "
          f"({args.tasks} no-work tasks with the real payloads, {jobs} workers)")
    print(f"coordinator's write of one result (graded folder, gradebook, record): "
          f"{write_ms:.0f} ms")
    # Workers grade in parallel; the coordinator writes results one after the other.
    cap = 60_000 / write_ms
    for workers in (10, 100):
        rate = workers * 60 / (each + per_task_ms / 1000)
        print(f"on paper, {workers:3d} workers: {min(rate, cap):6.0f} submissions/min "
              f"(workers alone {rate:.0f}/min; the coordinator's writes cap it at {cap:.0f}/min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
