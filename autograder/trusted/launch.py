"""Where the student-code worker runs: the one worker policy, and the launchers that apply it.

Every place that starts a worker (`grade` through TrustedTests, `calibrate`, the Gradescope run,
the benchmarks, the tests) builds it from `worker_policy`: no network, a private file system view,
an unprivileged user, and one process with one thread, so no work can run outside the CPU clock
that times the worker (a fork, a `multiprocessing` pool or a thread fails at once). Limits on
memory, file size and open files complete it. There is no CPU-time rlimit: it would make the
worker's CPU clock move in whole scheduler ticks; the grader limits each call's CPU time itself.

A launcher is `launch(argv, env, pass_fds) -> subprocess.Popen`, with stdin and stdout as pipes:

- `sandboxed_launcher(policy)`: bubblewrap, as `sandbox.command` builds it;
- `container_launcher(policy)`: the same rlimits and user, without bubblewrap, for containers
  that cannot create namespaces (Gradescope's, sometimes); `policy.uid=None` keeps the grader's
  user (a local try-out as a non-root user);
- `local_launcher`: a plain child process, for tests of the protocol and for trusted code.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .. import sandbox, uids

Launcher = Callable[[list[str], dict, tuple], subprocess.Popen]
PACKAGE_DIR = Path(__file__).resolve().parents[1]        # the `autograder` package
WORKER_PROCESSES = 1
WORKER_MEMORY = 2 * sandbox.GiB
NOBODY = 65534


def worker_policy(uid: int = NOBODY, memory_bytes: int = WORKER_MEMORY) -> sandbox.SandboxPolicy:
    """The sandbox policy of every student-code worker (see the module docstring)."""
    return sandbox.SandboxPolicy(
        memory_bytes=memory_bytes, cpu_seconds=None, max_processes=WORKER_PROCESSES,
        uid=uid, gid=uid, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                               "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"})


def kernel_policy(workdir: str, uid: int = NOBODY,
                  memory_bytes: int = WORKER_MEMORY) -> sandbox.SandboxPolicy:
    """The sandbox policy of the Jupyter kernel that runs a student's notebook for graders to read.

    Like the worker's, with room for the kernel's own threads and processes, a working folder,
    and no CPU-time rlimit either: with one, the kernel's own clock (`time.process_time`) moves
    in whole scheduler ticks and the notebook's timings of short calls come out as 0 or 4 ms.
    Its time is bounded by the notebook's time budget instead (SandboxedExecute.budget).
    """
    return sandbox.SandboxPolicy(
        memory_bytes=memory_bytes, cpu_seconds=None, workdir=workdir, uid=uid, gid=uid,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
             "MPLBACKEND": "module://matplotlib_inline.backend_inline"})


def local_launcher(argv: list[str], env: dict, pass_fds: tuple = ()) -> subprocess.Popen:
    """Run the worker as a plain child process (no sandbox, no limits)."""
    return subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, pass_fds=pass_fds)


def sandboxed_launcher(policy: sandbox.SandboxPolicy, lease_uid: bool = False) -> Launcher:
    """A launcher that starts the worker inside the bubblewrap sandbox `policy` describes.

    Each worker gets a fresh, empty working directory of its own; the grader's package is bound
    read-only so the worker can import its own code, and nothing else of the course is visible.
    With `lease_uid`, each worker runs as a uid leased for its lifetime (`autograder.uids`) instead
    of the policy's: the worker may have one process, counted per uid on the whole host, so two
    workers that shared a uid (two graders, a benchmark beside a test run) would stop each other.
    """
    def launch(argv: list[str], env: dict, pass_fds: tuple = ()) -> subprocess.Popen:
        lease = uids.UidLease(1) if lease_uid else None
        try:
            workdir = tempfile.mkdtemp(prefix="worker-")
            worker_policy_ = dataclasses.replace(
                policy, workdir=workdir, readonly_paths=(*policy.readonly_paths, str(PACKAGE_DIR)),
                env={**policy.env, **{k: v for k, v in env.items() if k not in ("PATH", "HOME")}},
                **({"uid": lease.uids[0], "gid": lease.uids[0]} if lease else {}))
            sandbox.grant_access(workdir, worker_policy_)
            proc = subprocess.Popen(sandbox.command(argv, worker_policy_), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    start_new_session=True, pass_fds=pass_fds)
        except BaseException:
            if lease:
                lease.release()
            raise
        proc.scratch_dir = workdir  # removed by Worker.close
        proc.uid_lease = lease      # released by Worker.close, once the worker is gone
        return proc

    return launch


def container_launcher(policy: sandbox.SandboxPolicy, uid: int | None = NOBODY) -> Launcher:
    """Start the worker as `uid` (None: as the grader) with the policy's rlimits, no bubblewrap.

    The container already isolates the submission from other submissions; this keeps it from the
    grader. The worker gets a fresh working directory and is the out-of-memory killer's first
    choice, so a submission that exhausts the container's memory loses its own worker.
    """
    limits = sandbox.preexec(policy)

    def become_student() -> None:
        with contextlib.suppress(OSError):
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        limits()
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    def launch(argv: list[str], env: dict, pass_fds: tuple = ()) -> subprocess.Popen:
        workdir = tempfile.mkdtemp(prefix="worker-")
        if uid is not None:
            os.chown(workdir, uid, uid)
        env = {**policy.env, **env, "HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": workdir}
        proc = subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=become_student,
                                pass_fds=pass_fds)
        proc.scratch_dir = workdir
        return proc

    return launch


def grading_launcher(uid: int | None = None, memory_bytes: int = WORKER_MEMORY,
                     sandboxed: bool = True) -> Launcher:
    """The worker launcher of `grade`: the sandbox with the worker policy (or none, if asked),
    as `uid`, or (None) as a uid leased for each worker."""
    if not sandboxed:
        return local_launcher
    return sandboxed_launcher(worker_policy(uid or NOBODY, memory_bytes), lease_uid=uid is None)


def can_run(launcher: Launcher) -> bool:
    """Whether a process started by `launcher` can run this Python and import the worker."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(PACKAGE_DIR.parent)}
    proc = None
    try:
        check = "import numpy, threadpoolctl, autograder.trusted.wire"
        proc = launcher([sys.executable, "-c", check], env, ())
        proc.communicate(timeout=120)
        return proc.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        scratch = getattr(proc, "scratch_dir", None)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


MODES = ("auto", "sandbox", "unprivileged", "local")


def choose(mode: str, memory_bytes: int = WORKER_MEMORY, log=print) -> tuple[Launcher, str]:
    """(launcher, description) for `mode`: auto, sandbox, unprivileged or local.

    All of them apply `worker_policy`; they differ in isolation. auto takes the first that works
    of the sandbox, an unprivileged user (the grader must be root, and that user able to run this
    Python) and the grader's own user with the same rlimits.
    """
    if mode not in MODES:
        raise ValueError(f"unknown launcher {mode!r}: one of {', '.join(MODES)}")
    policy = worker_policy(memory_bytes=memory_bytes)
    if mode in ("auto", "sandbox"):
        ok, reason = sandbox.available()
        if ok:
            return sandboxed_launcher(policy), f"bubblewrap sandbox: {reason}"
        if mode == "sandbox":
            raise RuntimeError(f"the sandbox was asked for, but {reason}")
        log(f"no bubblewrap sandbox here ({reason})")
    if mode in ("auto", "unprivileged"):
        problem = "the grader does not run as root"
        if os.geteuid() == 0:
            launcher = container_launcher(policy, NOBODY)
            if can_run(launcher):
                return launcher, f"unprivileged user {NOBODY}, with the worker's rlimits"
            problem = (f"uid {NOBODY} cannot run {sys.executable} with the grader's packages "
                       f"(a folder on the way that only root may read?)")
        if mode == "unprivileged":
            raise RuntimeError(f"an unprivileged worker was asked for, but {problem}")
        log(f"WARNING: no unprivileged worker: {problem}")
    return container_launcher(policy, None), ("the grader's own user, with the worker's rlimits: "
                                              "NOT isolated from the grader")
