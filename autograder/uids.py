"""Host-wide leases of the unprivileged uids sandboxes run as.

RLIMIT_NPROC counts a uid's processes on the whole host, and a sandbox's cleanup kills what runs as
its uid: two grading runs on one machine (two courses, a `grade` beside a `watch`, a test suite
beside a benchmark) must never share a uid. A lease is an exclusive `flock` on a file named after
the uid in a folder every grader on the host uses; the kernel drops the lock when the holder's
process ends, however it ends, so a crashed grader never strands a uid.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

FIRST, LAST = 61000, 61999       # uids no account uses on a Debian-like host (see uids_in_use)
LOCK_DIR = Path(os.environ.get("AUTOGRADER_UID_LOCKS", "/run/lock/autograder-uids"))
# Where a grader that may not write /run/lock (not root: it then grades with --no-sandbox) leases.
FALLBACK_DIR = Path(tempfile.gettempdir()) / f"autograder-uids-{os.geteuid()}"


class NoFreeUid(RuntimeError):
    """Every uid of the range is leased by another grader on this host, or has processes."""


def _running_uids() -> set[int]:
    """Real uids of the processes running now (a uid with processes of its own is not free)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    found.add(int(line.split()[1]))
                    break
    return found


class UidLease:
    """`count` consecutive uids held for this process until `release()` (or its exit)."""

    def __init__(self, count: int = 1, lock_dir: Path = LOCK_DIR):
        try:
            lock_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            probe = self._try_lock(lock_dir / f"{FIRST}.lock")
        except PermissionError:
            if lock_dir != LOCK_DIR:
                raise
            lock_dir = FALLBACK_DIR
            lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        else:
            if probe is not None:
                os.close(probe)
        busy = _running_uids()
        for first in range(FIRST, LAST - count + 2, count):
            held = []
            for uid in range(first, first + count):
                fd = self._try_lock(lock_dir / f"{uid}.lock")
                if fd is None or uid in busy:
                    if fd is not None:
                        os.close(fd)
                    break
                held.append(fd)
            if len(held) == count:
                self.uids, self._fds = list(range(first, first + count)), held
                return
            for fd in held:
                os.close(fd)
        raise NoFreeUid(f"no {count} free uid(s) in {FIRST}-{LAST}: other graders on this host "
                        f"hold them (locks in {lock_dir})")

    @staticmethod
    def _try_lock(path: Path) -> int | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __enter__(self) -> UidLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
