"""The processes running on this machine, by real uid, read from /proc (no ps needed)."""
from __future__ import annotations

from pathlib import Path


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
