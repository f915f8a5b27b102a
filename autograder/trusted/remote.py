"""The grader's side of the student-code worker: one client class, proxies, and typed errors.

`Worker` starts `autograder.trusted.worker` (through a launcher, e.g. the sandbox), loads the code
cells into it, and turns requests into Python calls. Proxies make the student's names usable in the
grader's own test code: `RemoteFunction` for functions, `RemoteClass` for classes, `RemoteObject`
for instances; arrays, numbers, strings, lists, tuples and dicts come back by value.

Every request has a time limit. A call that passes it, or that kills the worker, raises
`StudentCodeTimeout` or `StudentCodeCrashed` in the test that made it; the worker is then started
afresh for the next test, and a function that hung once is not called again.
"""
from __future__ import annotations

import builtins
import contextlib
import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import wire

PACKAGE_PARENT = Path(__file__).resolve().parents[2]
Launcher = Callable[[list[str], dict], subprocess.Popen]


class StudentCodeError(Exception):
    """The student's code could not be run to an answer."""


class StudentCodeTimeout(StudentCodeError):
    def __init__(self, what: str, seconds: float):
        self.what, self.seconds = what, seconds
        super().__init__(f"{what} did not finish within {seconds:g} s; it was stopped "
                         f"(an endless loop?)")


class StudentCodeCrashed(StudentCodeError):
    def __init__(self, what: str, detail: str):
        self.what, self.detail = what, detail
        super().__init__(f"{what} crashed the process running it ({detail})")


class StudentException(StudentCodeError):
    """The student's code raised an exception that is not one of Python's built-in ones."""

    def __init__(self, type_name: str, message: str):
        self.type_name, self.message = type_name, message
        super().__init__(f"{type_name}: {message}" if message else type_name)


def _mirror(error: dict) -> Exception:
    """The student's exception as an exception of the same built-in type, or StudentException."""
    kind = getattr(builtins, error["type"], None) if error.get("builtin") else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(error["message"])
        except Exception:  # noqa: BLE001 - types whose constructor wants other arguments
            pass
    return StudentException(error["type"], error["message"])


def local_launcher(argv: list[str], env: dict) -> subprocess.Popen:
    """Run the worker as a plain child process (no sandbox)."""
    return subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)


_libc = ctypes.CDLL(None, use_errno=True)
WORKER_MODULE = "autograder.trusted.worker"


def process_cpu_clock(pid: int) -> int:
    """The kernel's CPU-time clock of a whole process, for reading from outside it.

    It counts every thread of the process, ended ones included, and is exact for a process that
    is running at the moment it is read: a clock the process itself cannot stop or change.
    """
    clock = ctypes.c_int()
    err = _libc.clock_getcpuclockid(pid, ctypes.byref(clock))
    if err:
        raise OSError(err, f"no CPU-time clock for process {pid}: {os.strerror(err)}")
    return clock.value


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before children."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop(0)
        for task in os.listdir(f"/proc/{current}/task") if os.path.isdir(f"/proc/{current}") else []:
            with contextlib.suppress(OSError, ValueError):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    children = [int(child) for child in f.read().split()]
                found += children
                stack += children
    return found


@dataclass
class LoadReport:
    errors: dict[str, dict] = field(default_factory=dict)   # grade id -> exception of that cell
    names: dict[str, dict] = field(default_factory=dict)    # name -> kind, cell (and value)


class Worker:
    """A worker process holding one submission's code; restarted on demand after a failure."""

    def __init__(self, cells: list[tuple[str, str, bool]], launcher: Launcher = local_launcher,
                 call_timeout: float = 60.0, env: dict | None = None, cpu: int | None = None):
        self.cells = cells              # (grade id, source, written by the student?)
        self.launcher = launcher
        self.call_timeout = call_timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()
        self.load_report = LoadReport()
        self.broken: dict[str, StudentCodeError] = {}   # what hung or crashed, by target name
        self.starts = 0
        self.cpu = cpu                  # the one core the worker runs on, if set
        self._cpu_clock: int | None = None

    # process management ---------------------------------------------------------------------
    def _environment(self) -> dict:
        env = dict(self.env) if self.env is not None else {
            k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME")}
        env["PYTHONPATH"] = str(PACKAGE_PARENT)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self) -> LoadReport:
        self.close()
        self.starts += 1
        argv = [sys.executable, "-m", WORKER_MODULE]
        self.proc = self.launcher(argv, self._environment())
        self.replies = queue.Queue()
        stdout, replies = self.proc.stdout, self.replies

        def pump():
            try:
                while True:
                    replies.put(wire.read_message(stdout))
            except (EOFError, wire.WireError, OSError, ValueError) as exc:
                replies.put(exc)

        threading.Thread(target=pump, daemon=True).start()
        reply = self._request({"op": "load", "cells": [list(c) for c in self.cells]},
                              what="loading the notebook's code", timeout=max(30.0, self.call_timeout))
        self.load_report = LoadReport(reply["errors"], reply["names"])
        if self.cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self._worker_pid(), {self.cpu})
        return self.load_report

    def ensure_started(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        scratch = getattr(self.proc, "scratch_dir", None)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        self.proc = None
        self._cpu_clock = None

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cpu_seconds(self) -> float:
        """CPU time used so far by the process that runs the student's code, read from outside."""
        self.ensure_started()
        if self._cpu_clock is None:
            self._cpu_clock = process_cpu_clock(self._worker_pid())
        return time.clock_gettime(self._cpu_clock)

    def _worker_pid(self) -> int:
        """The worker's own pid: the launcher's process, or the deepest one below it running the
        worker module (a sandbox's own processes carry the same command line in theirs)."""
        found = None
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if os.path.basename(argv[0]).startswith(b"python") and \
                        WORKER_MODULE.encode() in argv:
                    found = pid
        if found is None:
            raise StudentCodeCrashed("the worker", "its process could not be found")
        return found

    # requests -------------------------------------------------------------------------------
    def _request(self, header: dict, arrays: list | None = None, what: str = "the call",
                 timeout: float | None = None) -> dict:
        timeout = self.call_timeout if timeout is None else timeout
        try:
            wire.write_message(self.proc.stdin, header, arrays or [])
            reply = self.replies.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise StudentCodeTimeout(what, timeout) from None
        except (BrokenPipeError, OSError):
            reply = EOFError()
        if isinstance(reply, Exception):
            detail = self._exit_detail() if isinstance(reply, EOFError) else f"bad answer: {reply}"
            self.close()
            raise StudentCodeCrashed(what, detail)
        head, out_arrays = reply
        if not head.get("ok"):
            raise _mirror(wire.decode(head["error"], out_arrays))
        return {k: wire.decode(v, out_arrays, self._proxy) for k, v in head.items() if k != "ok"}

    def _exit_detail(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def request(self, header: dict, arrays: list | None = None, what: str = "the call",
                timeout: float | None = None) -> dict:
        """Send one request for code named in `header['target']`; errors raise as documented."""
        target = header.get("target", {}).get("name")
        if target in self.broken:
            raise self.broken[target]
        self.ensure_started()
        try:
            return self._request(header, arrays, what, timeout)
        except (StudentCodeTimeout, StudentCodeCrashed) as exc:
            if target:
                self.broken[target] = exc
            raise

    def encode_args(self, args, kwargs) -> tuple[dict, list]:
        arrays: list = []
        return {"args": wire.encode(list(args), arrays, _proxy_ref),
                "kwargs": wire.encode(dict(kwargs), arrays, _proxy_ref)}, arrays

    def _proxy(self, ref: wire.Ref):
        target = {"ref": ref.id}
        if ref.type_name == "type":
            return RemoteClass(self, target, ref.type_name)
        if ref.is_callable and ref.type_name in ("function", "method", "builtin_function_or_method"):
            return RemoteFunction(self, target, ref.type_name)
        return RemoteObject(self, target, ref.type_name)

    def proxy_for(self, name: str, kind: str):
        target = {"name": name}
        return {"function": RemoteFunction, "class": RemoteClass}.get(kind, RemoteObject)(
            self, target, name)


def _proxy_ref(value):
    """Objects of the student's that a test passes back as an argument travel as references."""
    if isinstance(value, RemoteValue) and "ref" in value._target and not value._target.get("attrs"):
        return wire.Ref(value._target["ref"], value._label, False)
    raise wire.WireError(f"cannot pass a {type(value).__name__} to the student's code")


class RemoteValue:
    """Something that lives in the worker; attribute access and calls go there."""

    def __init__(self, worker: Worker, target: dict, label: str):
        object.__setattr__(self, "_worker", worker)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_label", label)

    def _describe(self, attrs=()) -> str:
        name = self._target.get("name", self._label)
        return ".".join([name, *attrs])

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        target = dict(self._target, attrs=[*self._target.get("attrs", []), attr])
        return RemoteAttribute(self._worker, target, f"{self._describe()}.{attr}")

    def __call__(self, *args, **kwargs):
        header, arrays = self._worker.encode_args(args, kwargs)
        header.update(op="call", target=self._target)
        return self._worker.request(header, arrays, what=f"{self._describe()}(...)")["value"]

    def __repr__(self) -> str:
        return f"<student's {self._describe()}>"


class RemoteFunction(RemoteValue):
    pass


class RemoteObject(RemoteValue):
    pass


class RemoteAttribute(RemoteValue):
    """`obj.attr`: called, it is a method call; used as a value, it is fetched."""

    def _describe(self, attrs=()) -> str:
        return self._label

    def value(self):
        return self._worker.request({"op": "getattr", "target": self._target},
                                    what=self._label)["value"]


class RemoteClass(RemoteValue):
    def __instancecheck__(self, instance) -> bool:
        if not isinstance(instance, RemoteValue) or instance._worker is not self._worker:
            return False
        return bool(self._worker.request(
            {"op": "isinstance", "target": instance._target, "cls": self._target},
            what=f"isinstance(..., {self._describe()})")["value"])


def sandboxed_launcher(policy) -> Launcher:
    """A launcher that starts the worker inside the bubblewrap sandbox `policy` describes.

    Each worker gets a fresh, empty working directory of its own; the grader's package is bound
    read-only so the worker can import its own code, and nothing else of the course is visible.
    """
    import dataclasses
    import tempfile

    from .. import sandbox

    def launch(argv: list[str], env: dict) -> subprocess.Popen:
        workdir = tempfile.mkdtemp(prefix="worker-")
        worker_policy = dataclasses.replace(
            policy, workdir=workdir,
            readonly_paths=(*policy.readonly_paths, str(PACKAGE_PARENT / "autograder")),
            env={**policy.env, **{k: v for k, v in env.items() if k not in ("PATH", "HOME")}})
        sandbox.grant_access(workdir, worker_policy)
        proc = subprocess.Popen(sandbox.command(argv, worker_policy), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        proc.scratch_dir = workdir  # removed by Worker.close
        return proc

    return launch
