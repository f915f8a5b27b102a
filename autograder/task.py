"""Grading one submission as a function: its inputs in, its outputs out, in a scratch course.

`grade` is the only writer of a course's gradebook, `autograded/` and `grading/`. For each
submission it builds `SubmissionInputs` (the student's files), ships them with the batch's
`CourseFiles` (the configuration, source/, the gradebook's assignment without any student, the
grader's version), and records the `GradingOutputs` it gets back. What runs in between is
`Slot.grade`: it writes a scratch course root, has a long-lived nbgrader process autograde the one
submission there (sandboxed kernel, trusted tests: the course's own nbgrader configuration), and
returns the graded folder and what nbgrader scored, as plain data. A slot is a local job of
`grade --jobs N` or a thread of a Dask worker (`autograder.cluster`); both call the same code.

Nothing here reads or writes the course itself, so a slot may sit on another machine. Inputs and
outputs are bytes and JSON-able values: they cross a network as they are.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import ceilings, machine, uids
from .phases import SUFFIX, Phases
from .course import REPO_ROOT, Course, CourseError, tool_environment
from .files import write_atomic
from .records import Status

SCRATCH_GRADEBOOK = "gradebook.db"     # where the scratch course's nbgrader_config.py finds it
MACHINES = "grading/machines"          # the ceilings of each machine that graded, per fingerprint
# The parts of this package that decide verdicts; the stages that only read results do not.
VERDICT_CODE = ("trusted", "timing", "preprocessors", "sandbox.py", "autograde_worker.py",
                "task.py")
VERDICT_PACKAGES = ("nbgrader", "nbclient", "numpy", "ipykernel")
_PR_SET_PDEATHSIG = 1


def grader_version() -> dict:
    """This installation's verdict code and the versions of the packages that decide verdicts:
    a grading slot whose version differs from the grading process's is refused."""
    from importlib import metadata

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for entry in VERDICT_CODE:
        paths = sorted((package / entry).rglob("*.py")) if (package / entry).is_dir() \
            else [package / entry]
        for path in paths:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    packages = {}
    for name in VERDICT_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
            digest.update(f"{name}=={packages[name]}".encode())
    return {"code": digest.hexdigest(), "packages": packages}


def version_text(version: dict) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in sorted(version.get("packages", {}).items()))
    return f"grader code {version.get('code', '?')[:12]} ({packages})"


class SlotRefused(CourseError):
    """A grading slot cannot grade this batch (another grader version, no sandbox)."""


# ------------------------------------------------------------------------------------------------
# What goes in and what comes out
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CourseFiles:
    """What every submission of a batch is graded against, the same for all: shipped once."""
    assignment: str
    files: dict[str, bytes]   # course-relative path -> contents
    grader: dict              # grader_version() of the grading process
    overrides: dict           # nbgrader config for the batch (time limit, sandbox)
    timeout: float            # seconds one whole submission may take


@dataclass(frozen=True)
class SubmissionInputs:
    student: str
    files: dict[str, bytes]          # relative to submitted/<student>/<assignment>/
    extension: float | None = None   # seconds of extension nbgrader's gradebook grants


@dataclass
class GradingOutputs:
    student: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    files: dict[str, bytes] = field(default_factory=dict)   # autograded/<student>/<assignment>/
    submission: dict = field(default_factory=dict)  # autograde_worker.recorded_submission
    machine: dict = field(default_factory=dict)     # machine.describe() of where it was graded
    ceilings: dict | None = None                    # that machine's ceilings (Ceilings.to_json)
    worker: str = ""                                # which slot graded it
    phases: dict = field(default_factory=dict)      # phases.Phases.seconds: where the time went


def _blank_gradebook(course: Course) -> bytes:
    """The course's gradebook with the assignment as released and no student in it: what a
    scratch course needs for nbgrader to autograde, and nothing of other students."""
    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory(prefix="gradebook-") as scratch:
        copy = Path(scratch) / SCRATCH_GRADEBOOK
        with contextlib.closing(sqlite3.connect(course.gradebook)) as src, \
                contextlib.closing(sqlite3.connect(copy)) as dest:
            src.backup(dest)             # a consistent copy, even while formgrader writes
        with Gradebook(f"sqlite:///{copy}") as gb:
            for student in list(gb.students):
                gb.remove_student(student.id)
        with contextlib.closing(sqlite3.connect(copy)) as db:
            db.execute("VACUUM")         # no deleted rows left in free pages
        return copy.read_bytes()


def _files_under(folder: Path, ignore=()) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(p.match(pattern) for pattern in ignore)}


def _kept_blank_gradebook(course: Course, tests: str) -> bytes:
    """The blank gradebook, made once per version of the assignment's tests (`tests`: their
    fingerprint, grade.GradingBasis.tests) and kept under grading/cache/: it holds nothing else."""
    if not tests:
        return _blank_gradebook(course)
    path = course.root / "grading" / "cache" / f"blank-gradebook-{tests[:16]}.db"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        data = _blank_gradebook(course)
        write_atomic(path, data, make_folder=True)
        return data


def course_files(course: Course, overrides: dict, timeout: float, tests: str = "") -> CourseFiles:
    """The batch's shared inputs, read from the course once."""
    files = {"nbgrader_config.py": (course.root / "nbgrader_config.py").read_bytes(),
             SCRATCH_GRADEBOOK: _kept_blank_gradebook(course, tests)}
    source = course.source_dir.relative_to(course.root)
    for name, data in _files_under(course.source_dir, ("*.pyc",)).items():
        files[str(source / name)] = data
    machines = course.root / MACHINES
    if machines.is_dir():
        for name, data in _files_under(machines).items():
            files[f"{MACHINES}/{name}"] = data
    return CourseFiles(course.assignment, files, grader_version(), overrides, timeout)


def extensions(course: Course) -> dict[str, float]:
    """Student -> seconds of extension the course's gradebook grants them (those it grants)."""
    from nbgrader.api import MissingEntry

    from .gradebook import open_gradebook

    with open_gradebook(course) as gb:
        try:
            assignment = gb.find_assignment(course.assignment)
        except MissingEntry:
            return {}
        return {s.student.id: s.extension.total_seconds() for s in assignment.submissions
                if s.extension}


def submission_inputs(course: Course, student: str, extension: float | None = None
                      ) -> SubmissionInputs:
    return SubmissionInputs(student, _files_under(course.submitted_dir(student)), extension)


# ------------------------------------------------------------------------------------------------
# The nbgrader process a slot keeps
# ------------------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the child: get SIGKILL when the slot's process dies, so no orphan keeps grading."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()


_EXCEPTION_LINE = re.compile(r"\b(?:[\w]+\.)*(?P<name>\w*(?:Error|Exception))\b:?\s*(?P<text>.*)")
_NBGRADER_BOILERPLATE = ("There was an error processing", "Please see the", "Traceback",
                         "NbGraderException")


def failure_reason(output: str) -> str:
    """The most telling line of a failed nbgrader run: its last exception, in a few words."""
    reason = ""
    for line in output.splitlines():
        line = line.strip()
        if not line or any(text in line for text in _NBGRADER_BOILERPLATE):
            continue
        match = _EXCEPTION_LINE.search(line.split("] ", 1)[-1])
        if match and match["name"] not in ("ERROR",):
            reason = f"{match['name']}: {match['text']}".rstrip(": ")
    if reason.startswith("DeadKernelError"):
        reason = "the kernel died: the notebook's code exited or crashed the Python process"
    return (reason or "nbgrader failed without an error message")[:300]


class AutogradeWorker:
    """One `autograde_worker` process, started on first use and again after a timeout or crash."""

    def __init__(self, overrides: dict, log_path: Path):
        self.overrides, self.log_path = overrides, log_path
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()
        self.spent: list[float] | None = None     # [wall, cpu] of the last autograde

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "autograder.autograde_worker", json.dumps(self.overrides)]
        env = tool_environment()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.log_path.parent, env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, preexec_fn=_die_with_parent)
        replies = self.replies = queue.Queue()
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [replies.put(line) for line in stdout] + [replies.put(None)],
                         daemon=True).start()
        if self._reply(120) is None:
            raise CourseError(f"the autograde worker did not start; see {self.log_path}")

    def _reply(self, timeout: float) -> dict | None:
        line = self.replies.get(timeout=timeout)
        return None if line is None else json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def ensure_started(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._start()

    def autograde(self, root: Path, assignment: str, student: str, extension: float | None,
                  timeout: float) -> tuple[Status, str, dict]:
        """(status, reason, recorded submission) of autograding one student in a scratch root;
        the process is replaced if it fails. `self.spent`: [wall, cpu] of nbgrader's autograde."""
        self.spent = None
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps({"student": student, "root": str(root),
                                          "assignment": assignment,
                                          "extension": extension}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self._reply(timeout)
        except queue.Empty:
            self.stop()
            return Status.TIMEOUT, f"grading took longer than {timeout:.0f} s and was stopped", {}
        if reply is None:  # the process itself died: nbgrader, not the student's kernel
            self.stop()
            return Status.FAILED, "the grading process died; see " + str(self.log_path), {}
        self.spent = reply.get("seconds")
        if reply["ok"]:
            return Status.GRADED, "", reply.get("submission") or {}
        return Status.FAILED, failure_reason(reply["log"]), reply.get("submission") or {}


# ------------------------------------------------------------------------------------------------
# A slot: where submissions are graded one at a time
# ------------------------------------------------------------------------------------------------
class Slot:
    """A uid lease, a core, a long-lived nbgrader process and scratch space, for grading one
    submission at a time. `grade --jobs N` has N; a Dask worker has one per thread."""

    def __init__(self, name: str, cpu: int, log_path: Path | None = None,
                 lease: uids.UidLease | None = None):
        self.name, self.cpu = name, cpu
        self.lease = lease or uids.UidLease(2)
        self.home = Path(tempfile.mkdtemp(prefix="grading-slot-"))
        self.log_path = log_path or self.home / "autograde.log"
        self.ceilings_file = self.home / "ceilings.json"
        self.worker: AutogradeWorker | None = None
        self.version = grader_version()

    def _worker_for(self, overrides: dict) -> AutogradeWorker:
        kernel_uid, worker_uid = self.lease.uids
        config = json.loads(json.dumps(overrides))
        config.setdefault("SandboxedExecute", {})["sandbox_uid"] = kernel_uid
        trusted = config.setdefault("TrustedTests", {})
        trusted.update(sandbox_uid=worker_uid, cpu=self.cpu, ceilings_file=str(self.ceilings_file))
        if self.worker is None or self.worker.overrides != config:
            if self.worker is not None:
                self.worker.stop()
            self.worker = AutogradeWorker(config, self.log_path)
        return self.worker

    def _machine_ceilings(self, known: dict[str, bytes]) -> dict:
        """This machine's ceilings: kept by the course (shipped in), kept by this slot, or
        measured now (once per slot)."""
        if (found := ceilings.read(self.ceilings_file)) is None:
            name = f"{MACHINES}/{ceilings.kept_path(Path('.')).name}"
            if name in known:
                self.ceilings_file.write_bytes(known[name])
            found = ceilings.read(self.ceilings_file)
            if found is None:
                found = ceilings.measure()
                self.ceilings_file.write_text(json.dumps(found.to_json(), indent=1))
        return found.to_json()

    def grade(self, course: CourseFiles, submission: SubmissionInputs) -> GradingOutputs:
        if course.grader["code"] != self.version["code"]:
            raise SlotRefused(f"{self.name} runs {version_text(self.version)}, but the batch was "
                              f"started with {version_text(course.grader)}: install the same "
                              f"commit of the course repository and requirements.lock on every "
                              f"grading machine")
        started = time.monotonic()
        phases = Phases()
        with phases.timed("slot: machine ceilings"):
            found = self._machine_ceilings(course.files)
        root = Path(tempfile.mkdtemp(prefix="course-", dir=self.home))
        try:
            with phases.timed("slot: scratch course in and out"):
                for name, data in course.files.items():
                    _write(root / name, data)
                folder = Path("submitted") / submission.student / course.assignment
                for name, data in submission.files.items():
                    _write(root / folder / name, data)
            worker = self._worker_for(course.overrides)
            with phases.timed("nbgrader: process start"):
                worker.ensure_started()
            status, reason, recorded = worker.autograde(
                root, course.assignment, submission.student, submission.extension, course.timeout)
            with phases.timed("slot: scratch course in and out"):
                graded = root / "autograded" / submission.student / course.assignment
                files = _files_under(graded) if status == Status.GRADED and graded.is_dir() else {}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        inside = Phases(json.loads(files.get(f"{_notebook_name(files)}{SUFFIX}") or b"{}"))
        if worker.spent:   # nbgrader's own work: its autograde minus what the preprocessors timed
            wall, cpu = inside.total()
            inside.add("nbgrader: its own steps (copying, sanitizing, saving, scoring)",
                       max(0.0, worker.spent[0] - wall), max(0.0, worker.spent[1] - cpu))
        return GradingOutputs(submission.student, status, reason,
                              round(time.monotonic() - started, 2), files, recorded,
                              machine.describe(), found, self.name,
                              phases.merged(inside).seconds)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.lease.release()
        shutil.rmtree(self.home, ignore_errors=True)


def _notebook_name(files: dict[str, bytes]) -> str:
    """The graded notebook's name without .ipynb (the phases file is named after it)."""
    return next((Path(n).stem for n in files if n.endswith(".ipynb") and "/" not in n), "")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ------------------------------------------------------------------------------------------------
# On a Dask worker
# ------------------------------------------------------------------------------------------------
_SLOTS = threading.local()


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return f"{get_worker().address} on {socket.gethostname()}"
    except (ImportError, ValueError):
        return f"pid {os.getpid()} on {socket.gethostname()}"


def this_threads_slot() -> Slot:
    """The calling thread's slot, made on first use; it lives as long as the thread's process,
    and its nbgrader process and uids go with it (PDEATHSIG, flock)."""
    slot = getattr(_SLOTS, "slot", None)
    if slot is None:
        lease = uids.UidLease(2)
        # Slots of one machine are told apart by their leases: that also spreads them over cores.
        cpu = (lease.uids[0] - uids.FIRST) // 2 % (os.cpu_count() or 1)
        slot = _SLOTS.slot = Slot(_worker_name(), cpu, lease=lease)
    return slot


def grade_here(course: CourseFiles, submission: SubmissionInputs) -> GradingOutputs:
    """The task a Dask worker runs for one submission."""
    return this_threads_slot().grade(course, submission)


def describe_here() -> dict:
    """What `grade` checks of each worker before sending it work."""
    from . import sandbox

    ok, reason = sandbox.available()
    return {"version": grader_version(), "sandbox": ok, "sandbox_reason": reason,
            "host": socket.gethostname(), "machine": machine.describe()}
