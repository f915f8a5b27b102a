"""Processes in tests: those running on this machine, read from /proc (no ps needed), and the
ones a test starts, which it stops by pid whatever happens."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from autograder.course import REPO_ROOT, tool_environment


def running_uids() -> dict[str, str]:
    """pid -> real uid of every process that can still be read."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:      # the process ended while we looked
            continue
        uid = next((line.split()[1] for line in lines if line.startswith("Uid:")), None)
        if uid is not None:
            found[status.parent.name] = uid
    return found


def processes_of(*uids: int) -> list[str]:
    """pids of the processes running as any of `uids`."""
    wanted = {str(uid) for uid in uids}
    return [pid for pid, uid in running_uids().items() if uid in wanted]


class Processes:
    """Every process a test starts, each in a session of its own, killed with its children."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        if env is None:     # this checkout's grader, whatever else the venv has installed
            env = tool_environment()
            env["PYTHONPATH"] = str(REPO_ROOT)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                                    env=env, start_new_session=True)
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.started:
            self.stop(proc)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, however deep (a process that changed its session counts)."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = []
    for child, parent in parents.items():
        ancestor = parent
        while ancestor and ancestor != pid:
            ancestor = parents.get(ancestor, 0)
        if ancestor == pid:
            found.append(child)
    return found


def descendant_runs(pid: int, module: str) -> bool:
    """Whether a descendant of `pid` runs `python -m module` (the kernel's trusted worker)."""
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            if module in (Path("/proc") / str(child) / "cmdline").read_bytes().decode(
                    errors="replace"):
                return True
    return False


def descendant_working_in(pid: int, fragment: str) -> bool:
    """Whether a descendant of `pid` has a working directory whose path contains `fragment`."""
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            if fragment in os.readlink(f"/proc/{child}/cwd"):
                return True
    return False
