"""Sandbox uid leases: two graders on one host never share a uid, and a dead grader frees its own."""
import os
import signal
import subprocess
import sys
import time

import pytest

from autograder.uids import FIRST, NoFreeUid, UidLease
from tests.processes import processes_of

HOLDER = """
import sys, time
from pathlib import Path
from autograder.uids import UidLease
lease = UidLease(2, Path(sys.argv[1]))
print(*lease.uids, flush=True)
time.sleep(60)
"""


def _holder(lock_dir):
    """A process that leases two uids and sleeps; returns it and the uids it printed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir)], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    line = proc.stdout.readline()
    assert line, "the holder printed no uids"
    return proc, [int(uid) for uid in line.split()]


def test_leases_in_one_process_and_in_another_never_overlap(tmp_path):
    proc, theirs = _holder(tmp_path)
    try:
        with UidLease(2, tmp_path) as first, UidLease(2, tmp_path) as second:
            mine = first.uids + second.uids
            assert len(set(mine)) == 4 and set(mine).isdisjoint(theirs), (mine, theirs)
    finally:
        proc.kill()
        proc.wait(10)


def test_a_killed_holder_frees_its_uids_at_once(tmp_path):
    proc, theirs = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with UidLease(2, tmp_path) as lease:
        assert lease.uids == theirs


def test_a_released_lease_is_free_again(tmp_path):
    with UidLease(1, tmp_path) as lease:
        held = lease.uids
    with UidLease(1, tmp_path) as again:
        assert again.uids == held


@pytest.mark.skipif(os.geteuid() != 0, reason="running a process as another uid needs root")
def test_a_uid_with_processes_of_its_own_is_not_leased(tmp_path):
    # A leftover sandbox process of a crashed run still counts against its uid's process limit.
    stray = subprocess.Popen(["setpriv", f"--reuid={FIRST}", f"--regid={FIRST}", "--clear-groups",
                              "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while not processes_of(FIRST) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_of(FIRST)
        with UidLease(1, tmp_path) as lease:
            assert lease.uids != [FIRST]
    finally:
        stray.kill()
        stray.wait(10)


def test_an_exhausted_range_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("autograder.uids.LAST", FIRST + 1)
    monkeypatch.setattr("autograder.uids._running_uids", set)   # whatever else runs here
    with UidLease(2, tmp_path):
        with pytest.raises(NoFreeUid, match="other graders on this host hold them"):
            UidLease(2, tmp_path)

