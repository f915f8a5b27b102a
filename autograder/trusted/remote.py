"""The grader's side of the student-code worker: one client class, proxies, and typed errors.

`Worker` starts `autograder.trusted.worker` (through a launcher, see `launch`), loads the code cells
into it, and turns requests into Python calls. Proxies make the student's names usable in the
grader's own test code: `RemoteFunction` for functions, `RemoteClass` for classes, `RemoteObject`
for instances; arrays, numbers, strings, lists, tuples and dicts come back by value.

Every call of student code goes through `Worker.call`, a batch of one or more calls of one
target, and is recorded as an `Observation`: what was called on which shapes, the library products
the calls made, and the worker's CPU time for the request. The worker's clock is read before the
arguments exist in its memory and after its results have been copied out of it, so nothing the
worker does for a request can happen outside that time.

Every request has a time limit, and a call may have a CPU limit. A call that passes one, or that
kills the worker, raises `StudentCodeTimeout`, `StudentCodeOverBudget` or `StudentCodeCrashed` in
the test that made it; the worker is then started afresh for the next test, and a function that
hung once is not called again.
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

import numpy as np

from . import wire
from .launch import Launcher, local_launcher
from .worker import ARENA_FD, ARENA_SIZE

PACKAGE_PARENT = Path(__file__).resolve().parents[2]
WORKER_MODULE = "autograder.trusted.worker"
POLL_SECONDS = 0.02      # how often a call's CPU limit is checked while it runs


class StudentCodeError(Exception):
    """The student's code could not be run to an answer."""


class StudentCodeTimeout(StudentCodeError):
    def __init__(self, what: str, seconds: float):
        self.what, self.seconds = what, seconds
        super().__init__(f"{what} did not finish within {seconds:g} s; it was stopped "
                         f"(an endless loop?)")


class StudentCodeOverBudget(StudentCodeError):
    """A call used more CPU time than its caller allowed; it was stopped."""

    def __init__(self, what: str, cpu_seconds: float):
        self.what, self.cpu_seconds = what, cpu_seconds
        super().__init__(f"{what} used more than {cpu_seconds:.3g} s of CPU time and was stopped")


class StudentCodeCrashed(StudentCodeError):
    def __init__(self, what: str, detail: str):
        self.what, self.detail = what, detail
        super().__init__(f"{what} crashed the process running it ({detail})")


class StudentException(StudentCodeError):
    """The student's code raised an exception that is not one of Python's built-in ones."""

    def __init__(self, type_name: str, message: str):
        self.type_name, self.message = type_name, message
        super().__init__(f"{type_name}: {message}" if message else type_name)


class InputsChanged(AssertionError):
    """A call of student code changed an array it was given."""


def _mirror(error: dict) -> Exception:
    """The student's exception as an exception of the same built-in type, or StudentException."""
    kind = getattr(builtins, error["type"], None) if error.get("builtin") else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(error["message"])
        except Exception:  # noqa: BLE001 - types whose constructor wants other arguments
            pass
    return StudentException(error["type"], error["message"])


_libc = ctypes.CDLL(None, use_errno=True)


def process_cpu_clock(pid: int) -> int:
    """The kernel's CPU-time clock of a whole process, for reading from outside it.

    It counts every thread of the process, ended ones included. Read while the process waits
    (between requests) it is exact; read while it runs, it may lag by up to a scheduler tick.
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


def describe_value(value) -> object:
    """A small JSON-able description of an argument: arrays by shape and dtype, scalars as is."""
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": value.dtype.str}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, str) else value[:80]
    return {"type": type(value).__name__}


@dataclass
class Observation:
    """One request of calls of student code, as the rules of an assignment see it."""
    name: str                  # the name the test used: "matmul_blocked", "_backend.dispatch"
    args: list                 # describe_value of each positional argument (of the first call)
    kwargs: dict               # and of each keyword argument
    calls: int                 # calls in the request (a timing sample makes many)
    cpu_seconds: float         # the worker's CPU time for the whole request
    products: list             # [[operation, left shape, right shape, count], ...]
    products_overflow: bool = False
    timed: bool = False
    outcome: str = "returned"  # or the error's type name

    def arg(self, position: int, keyword: str, default=None):
        """An argument by position or keyword, as described (`default` when not given)."""
        if position < len(self.args):
            return self.args[position]
        return self.kwargs.get(keyword, default)


@dataclass
class LoadReport:
    errors: dict[str, dict] = field(default_factory=dict)   # grade id -> exception of that cell
    names: dict[str, dict] = field(default_factory=dict)    # name -> kind, cell (and value)


@dataclass
class CallResult:
    values: list
    observation: Observation


class Worker:
    """A worker process holding one submission's code; restarted on demand after a failure."""

    def __init__(self, cells: list[tuple[str, str, bool]], launcher: Launcher = local_launcher,
                 call_timeout: float = 60.0, env: dict | None = None, cpu: int | None = None,
                 deferred: tuple[str, ...] = ()):
        self.cells = cells              # (grade id, source, written by the student?)
        self.deferred = deferred        # modules imported at their first use (worker.defer_import)
        self.launcher = launcher
        self.call_timeout = call_timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.arena: wire.Arena | None = None
        self.replies: queue.Queue = queue.Queue()
        self.load_report = LoadReport()
        self.broken: dict[str, StudentCodeError] = {}   # what hung or crashed, by target name
        self.observations: list[Observation] = []
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
        env[ARENA_FD], env[ARENA_SIZE] = str(self.arena.fd), str(self.arena.size)
        return env

    def start(self) -> LoadReport:
        self.close()
        self.starts += 1
        self.arena = wire.Arena.create()
        argv = [sys.executable, "-m", WORKER_MODULE]
        self.proc = self.launcher(argv, self._environment(), (self.arena.fd,))
        self.replies = queue.Queue()
        stdout, replies, arena = self.proc.stdout, self.replies, self.arena

        def pump():
            try:
                while True:
                    replies.put(wire.read_message(stdout, arena))
            except (EOFError, wire.WireError, OSError, ValueError) as exc:
                replies.put(exc)

        threading.Thread(target=pump, daemon=True).start()
        reply = self._request({"op": "load", "cells": [list(c) for c in self.cells],
                               "deferred": list(self.deferred)},
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
        lease = getattr(self.proc, "uid_lease", None)
        if lease is not None:
            lease.release()
        self.proc = None
        self._cpu_clock = None
        if self.arena is not None:
            with contextlib.suppress(OSError):
                self.arena.close()
            self.arena = None

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
    def _await(self, what: str, timeout: float, cpu_limit: float | None, cpu_start: float | None):
        """The next reply; stops the worker past the wall-clock `timeout` or the `cpu_limit`."""
        deadline = time.monotonic() + timeout
        while True:
            wait = deadline - time.monotonic()
            if cpu_limit is not None:
                wait = min(wait, POLL_SECONDS)
            try:
                return self.replies.get(timeout=max(0.0, wait))
            except queue.Empty:
                pass
            if time.monotonic() >= deadline:
                self.close()
                raise StudentCodeTimeout(what, timeout) from None
            try:
                used = time.clock_gettime(self._cpu_clock) - cpu_start
            except (OSError, TypeError):
                continue  # the worker is gone: its end of the channel says how
            if used > cpu_limit:
                self.close()
                raise StudentCodeOverBudget(what, cpu_limit)

    def _request(self, header: dict, arrays: list | None = None, what: str = "the call",
                 timeout: float | None = None, cpu_limit: float | None = None,
                 cpu_start: float | None = None) -> dict:
        """Send one request; the reply's fields, decoded (its arrays copied out of the arena)."""
        timeout = self.call_timeout if timeout is None else timeout
        try:
            wire.write_message(self.proc.stdin, header, arrays or [], self.arena)
            reply = self._await(what, timeout, cpu_limit, cpu_start)
        except (BrokenPipeError, OSError):
            reply = EOFError()
        if isinstance(reply, Exception):
            detail = self._exit_detail() if isinstance(reply, EOFError) else f"bad answer: {reply}"
            self.close()
            raise StudentCodeCrashed(what, detail)
        head, shared = reply
        out_arrays = [np.array(a) for a in shared]   # off the arena before anything else runs
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
        """Send one request about code named in `header['target']`; errors raise as documented."""
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

    def call(self, target: dict, calls: list[tuple[tuple, dict]], what: str, *,
             cpu_limit: float | None = None, timed: bool = False,
             check_inputs: bool = True) -> CallResult:
        """Call `target` once per (args, kwargs) in `calls`, in one request; the values returned.

        The request is timed by the worker's CPU clock (`observation.cpu_seconds`), from before
        the arguments reach the worker to after the results are out of it. With `cpu_limit`,
        the worker is stopped once the request has used that much CPU time. With `check_inputs`,
        a call that changed one of the arrays it was given raises InputsChanged.
        """
        name = target.get("name")
        if name in self.broken:
            raise self.broken[name]
        self.ensure_started()
        arrays: list = []
        header = {"op": "call", "target": target, "calls": [
            {"args": wire.encode(list(args), arrays, _proxy_ref),
             "kwargs": wire.encode(dict(kwargs), arrays, _proxy_ref)} for args, kwargs in calls]}
        sent = [np.array(a) for a in arrays] if check_inputs else None
        label = _label(target)
        first_args, first_kwargs = calls[0]
        observation = Observation(label, [describe_value(a) for a in first_args],
                                  {k: describe_value(v) for k, v in first_kwargs.items()},
                                  len(calls), 0.0, [], timed=timed)
        self.observations.append(observation)
        start = self.cpu_seconds()
        try:
            reply = self._request(header, arrays, what, cpu_limit=cpu_limit, cpu_start=start)
        except (StudentCodeTimeout, StudentCodeCrashed) as exc:
            observation.outcome = type(exc).__name__
            if name:
                self.broken[name] = exc
            raise
        except Exception as exc:
            observation.outcome = type(exc).__name__
            raise
        finally:
            with contextlib.suppress(OSError, StudentCodeError):
                if self.proc is not None:
                    observation.cpu_seconds = time.clock_gettime(self._cpu_clock) - start
        observation.products = reply["products"]
        observation.products_overflow = bool(reply.get("overflow"))
        if sent is not None:
            self._check_inputs(label, arrays, sent)
        return CallResult(reply["values"], observation)

    def _check_inputs(self, label: str, arrays: list, sent: list) -> None:
        """Raise InputsChanged if the worker's copy of an argument differs from what was sent."""
        offsets = getattr(self.arena, "last_offsets", None)
        if not offsets or len(offsets) != len(sent):
            return
        for offset, original in zip(offsets, sent):
            now = self.arena.outgoing_view(offset, original.dtype, original.shape)
            if not np.array_equal(now, original, equal_nan=original.dtype.kind in "fc"):
                shape = "x".join(map(str, original.shape))
                raise InputsChanged(f"{label} changed an array it was given (a {shape} argument): "
                                    f"build a new result instead of writing into the inputs")

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


def _label(target: dict) -> str:
    return ".".join([str(target.get("name", "object")), *target.get("attrs", [])])


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
        result = self._worker.call(self._target, [(args, kwargs)], f"{self._describe()}(...)")
        return result.values[0]

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
