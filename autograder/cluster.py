"""Grading slots on a Dask cluster: each submission is one Dask task, `task.grade_here`.

Dask distributed does the scheduling, the transfer and the fault handling: a task whose worker
dies is run again on another worker, and one that has killed `allowed-failures` + 1 workers
comes back as `KilledWorker`, which is recorded as that submission's failure. This module only
checks the workers before sending them work (the same grader version, a working sandbox, one
thread each) and turns what comes back into `task.GradingOutputs` for `grade` to record.

Dask is imported only here, and only when `grade --scheduler` or `--cluster local` asks for it.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

from . import task
from .course import CourseError
from .records import Status

CONNECT_SECONDS = 10         # to reach the scheduler before giving up
WORKER_WAIT_SECONDS = 60     # for a first worker to join a scheduler that has none
ATTEMPTS = 3                 # workers a submission may kill on a local cluster before it fails


class DaskSlots:
    """The workers of a Dask cluster: an existing one (`scheduler`, its address) or a
    `LocalCluster` of `local_workers` single-threaded worker processes on this machine."""

    def __init__(self, scheduler: str | None = None, local_workers: int | None = None,
                 sandboxed: bool = True):
        if not scheduler and not local_workers:
            raise ValueError("a scheduler address or a number of local workers")
        self.scheduler, self.local_workers, self.sandboxed = scheduler, local_workers, sandboxed
        self.cluster = self.client = None
        self.description = ""
        self.sandbox_uids: list[int] = []     # on other machines: not this process's to know

    # -- connecting and checking ------------------------------------------------------------
    def __enter__(self) -> "DaskSlots":
        import dask
        from distributed import Client, LocalCluster

        try:
            if self.local_workers:
                with dask.config.set({"distributed.scheduler.allowed-failures": ATTEMPTS - 1}):
                    self.cluster = LocalCluster(
                        n_workers=self.local_workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
                where = f"a local Dask cluster at {self.cluster.scheduler_address}"
            else:
                self.client = Client(self.scheduler, timeout=CONNECT_SECONDS)
                where = f"the Dask scheduler at {self.scheduler}"
        except (OSError, TimeoutError) as exc:
            self.__exit__()
            raise CourseError(f"no Dask scheduler answered at {self.scheduler} within "
                              f"{CONNECT_SECONDS} s ({type(exc).__name__}: {exc}); start one "
                              f"with `dask scheduler`, or grade without --scheduler") from None
        try:
            workers = self._check_workers()
        except BaseException:
            self.__exit__()
            raise
        self.description = f"{len(workers)} Dask worker(s)"
        print(f"grading on {len(workers)} Dask worker(s) of {where}", flush=True)
        return self

    def _check_workers(self) -> dict[str, dict]:
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except TimeoutError:
            raise CourseError(f"the Dask scheduler at {self.scheduler} has no workers (waited "
                              f"{WORKER_WAIT_SECONDS} s): start `dask worker {self.scheduler} "
                              f"--nthreads 1` on each grading machine") from None
        try:
            facts = self.client.run(task.describe_here)
        except Exception as exc:  # a worker that cannot even import the grader
            raise CourseError(f"a Dask worker cannot run the grader ({type(exc).__name__}: "
                              f"{exc}): install the course repository and requirements.lock "
                              f"on every worker") from None
        threads = {addr: w.get("nthreads", 1)
                   for addr, w in self.client.scheduler_info()["workers"].items()}
        mine = task.grader_version()
        problems = []
        for address, found in sorted(facts.items()):
            if found["version"]["code"] != mine["code"]:
                problems.append(f"worker {address} ({found['host']}) runs "
                                f"{task.version_text(found['version'])}; this grader runs "
                                f"{task.version_text(mine)}")
            if self.sandboxed and not found["sandbox"]:
                problems.append(f"worker {address} ({found['host']}) cannot sandbox student "
                                f"code: {found['sandbox_reason']}")
            if threads.get(address, 1) > 1:
                problems.append(f"worker {address} ({found['host']}) has {threads[address]} "
                                f"threads: timing needs one task per core (start it with "
                                f"--nthreads 1)")
        if problems:
            raise task.SlotRefused("refusing to grade on this cluster:\n  " +
                                   "\n  ".join(problems) +
                                   "\ninstall the same commit of the course repository and "
                                   "requirements.lock on every worker")
        return facts

    # -- grading ----------------------------------------------------------------------------
    def run(self, course: task.CourseFiles, submissions: list[task.SubmissionInputs]
            ) -> Iterator[task.GradingOutputs]:
        """Each submission's outputs, in the order they finish; pending tasks are cancelled if
        the caller stops early (Ctrl-C, an error)."""
        from distributed import KilledWorker, as_completed

        shared = self.client.scatter(course, broadcast=True, hash=False)
        batch = uuid.uuid4().hex[:8]
        futures = {self.client.submit(task.grade_here, shared, submission, pure=False,
                                      key=f"grade-{submission.student}-{batch}"): submission
                   for submission in submissions}
        left = set(futures)
        try:
            for future in as_completed(futures):
                left.discard(future)
                student = futures[future].student
                try:
                    outputs = future.result()
                except KilledWorker:
                    outputs = task.GradingOutputs(
                        student, Status.FAILED,
                        "each worker that tried to grade it died (out of memory, killed, or "
                        "its machine lost) until Dask gave up on it; not graded")
                except (task.SlotRefused, CourseError):
                    raise
                except Exception as exc:
                    if self._scheduler_lost():
                        raise CourseError(
                            f"lost the Dask scheduler ({type(exc).__name__}: {exc}); what was "
                            f"graded is kept: run grade again for the rest") from None
                    raise
                yield outputs
        finally:
            if left and self.client is not None:
                self.client.cancel(list(left), force=True)

    def _scheduler_lost(self) -> bool:
        return self.client is None or self.client.status not in ("running", "connecting")

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close(timeout=10)
            self.client = None
        if self.cluster is not None:
            self.cluster.close(timeout=10)
            self.cluster = None
