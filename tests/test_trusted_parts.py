"""The trusted runner's parts, one by one: tracked arrays, the wire and its arena, Freivalds' check,
when a timing stops, the worker's call path and deferred imports, and the one worker policy (no
second process, no thread)."""
from __future__ import annotations

import functools
import io
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from autograder import sandbox
from autograder.timing import stats
from autograder.trusted import launch, remote, speed, tracked, verify, wire, worker

RNG = np.random.default_rng(7)


def _matrix(rows, cols):
    return RNG.standard_normal((rows, cols), dtype=np.float32)


# tracked arrays -----------------------------------------------------------------------------------

def test_tracked_arrays_log_every_kind_of_product_with_its_shapes():
    a, b = tracked.track(_matrix(4, 3)), tracked.track(_matrix(3, 5))
    log = tracked.ProductLog()
    with log.recording():
        a @ b
        np.dot(a, b)
        np.einsum("ik,kj->ij", a, b)
        a.dot(b)
        np.vecdot(a[0], b[:, 0])
        np.asarray(a) @ np.asarray(b)          # converted: out of sight, as documented
    ops = {entry[0]: entry[1:] for entry in log.entries()}
    assert ops["@ / np.matmul"] == [[4, 3], [3, 5], 1]
    assert {"np.dot", "np.einsum", "ndarray.dot", "np.vecdot"} <= set(ops)
    assert sum(entry[-1] for entry in log.entries()) == 5


def test_the_largest_product_is_kept_when_the_log_overflows():
    log = tracked.ProductLog()
    with log.recording():
        for rows in range(1, 51):
            for cols in range(1, 51):      # 2,500 distinct small products
                tracked.track(np.ones((rows, 1))) @ np.ones((1, cols))
        tracked.track(_matrix(256, 256)) @ _matrix(256, 256)
    assert log.overflow
    assert ["@ / np.matmul", [256, 256], [256, 256], 1] in log.entries()


# Freivalds ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("scratch", [None, "shared"])
def test_freivalds_accepts_honest_products_in_any_order_and_rejects_forgeries(scratch):
    # With a shared Scratch, every check reuses the buffers of the one before it.
    check = functools.partial(verify.freivalds, scratch=verify.Scratch() if scratch else None)
    a, b = _matrix(256, 256), _matrix(256, 256)
    exact = a.astype(np.float64) @ b
    tiled = np.zeros((256, 256), np.float32)
    for p in range(0, 256, 64):       # another summation order, in float32
        tiled += a[:, p:p + 64] @ b[p:p + 64]
    for honest in (a @ b, tiled, exact.astype(np.float32), exact):
        assert check(a, b, honest, RNG)
    row_and_sum = np.zeros_like(exact)   # what the old check looked at: row 0 and the total
    row_and_sum[0] = exact[0]
    row_and_sum[-1, -1] = exact.sum() - row_and_sum.sum()
    one_entry = exact.copy()
    one_entry[100, 7] += 12               # one entry off by less than a typical value (~16)
    other_inputs = (_matrix(256, 256) @ b).astype(np.float64)
    for forged in (row_and_sum, one_entry, other_inputs, exact.T, exact[:, :-1], None):
        assert not check(a, b, forged, RNG)


# when a timing stops ------------------------------------------------------------------------------

def _tiles_of_16(a, b):
    c = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for i in range(0, a.shape[0], 16):
        for j in range(0, b.shape[1], 16):
            for p in range(0, a.shape[1], 16):
                c[i:i + 16, j:j + 16] += a[i:i + 16, p:p + 16] @ b[p:p + 16, j:j + 16]
    return c


@pytest.fixture
def one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):   # as `runner.run_tests` times
        yield


def test_a_pass_far_inside_its_limit_takes_one_measurement(one_blas_thread):
    meter = speed.SpeedMeter(worker=None)   # both sides are local code: no worker is asked
    try:
        ratio = meter.speed_ratio(np.matmul, _tiles_of_16, _matrix(128, 128), _matrix(128, 128),
                                  at_most=1.0)
    finally:
        meter.close()
    record, = meter.records
    # NumPy against 512 Python-looped tile products: some 30x faster, far inside a limit of 1x.
    assert ratio * stats.SETTLED <= 1.0 and record.stopped == speed.FAR_WITHIN
    assert record.samples == stats.WITHIN_SAMPLES and record.spread == 1.0   # one measurement


def test_a_pass_well_within_its_limit_is_measured_twice_and_a_fail_once(one_blas_thread):
    meter = speed.SpeedMeter(worker=None)
    a, b = _matrix(128, 128), _matrix(128, 128)
    try:
        # the same product on both sides: a ratio near 1, inside 2.5 but not 3 times inside it
        meter.speed_ratio(np.matmul, np.dot, a, b, at_most=2.5)
        # tiles against NumPy, limit 1x: more than 3 times past it from the third sample on
        meter.speed_ratio(_tiles_of_16, np.matmul, a, b, at_most=1.0)
    finally:
        meter.close()
    within, past = meter.records
    assert within.stopped == speed.WELL_WITHIN and within.samples == stats.WITHIN_SAMPLES
    assert within.spread != 1.0                 # a second measurement was taken
    assert past.stopped == speed.SETTLED and past.samples == stats.SETTLE_SAMPLES
    assert past.ratio > stats.SETTLED


# the wire and its arena ---------------------------------------------------------------------------

@pytest.mark.parametrize("use_arena", [True, False])
def test_messages_round_trip_with_and_without_the_arena(use_arena):
    sender = wire.Arena.create(1 << 20) if use_arena else None
    receiver = wire.Arena.attach(os.dup(sender.fd), sender.size) if use_arena else None
    arrays = [_matrix(3, 4), np.arange(6, dtype=np.int64).reshape(2, 3), np.zeros((0, 5)),
              np.array(True), np.arange(3, dtype=np.complex64)]
    stream = io.BytesIO()
    wire.write_message(stream, {"op": "x"}, arrays, sender)
    header, got = wire.read_message(io.BytesIO(stream.getvalue()), receiver)
    assert header == {"op": "x"}
    for sent, received in zip(arrays, got):
        assert received.dtype == sent.dtype and np.array_equal(received, sent)
    assert all(a.flags.writeable for a in got if a.size)


def _forged(header: dict) -> io.BytesIO:
    """A one-part message whose header (array descriptions included) is written as given."""
    body = json.dumps(header).encode()
    return io.BytesIO(struct.pack("<Q", 1) + struct.pack("<Q", len(body)) + body)


def test_array_descriptions_are_checked_before_any_array_is_made():
    sender = wire.Arena.create(1 << 20)
    receiver = wire.Arena.attach(os.dup(sender.fd), sender.size)
    # The worker may only point into the half it writes, inside the arena.
    for offset in (0, sender.half - 8, sender.size, -64):
        with pytest.raises(wire.WireError):
            wire.read_message(_forged({wire.ARRAYS: [[offset, "<f4", [2, 2]]]}), sender)
    assert wire.read_message(_forged({wire.ARRAYS: [[sender.half, "<f4", [2, 2]]]}),
                             sender)[1][0].shape == (2, 2)
    # Only plain numeric dtypes; shapes of non-negative ints.
    for dtype, shape in (("|O", [1]), ("V8", [1]), ("<U3", [1]), ("[('a', '<f4')]", [1]),
                         ("<f4", [-1]), ("<f4", "3"), ("<f4", [1.5])):
        with pytest.raises(wire.WireError):
            wire.read_message(_forged({wire.ARRAYS: [[sender.half, dtype, shape]]}), sender)
    with pytest.raises(wire.WireError, match="arena this side does not have"):
        wire.read_message(_forged({wire.ARRAYS: [[0, "<f4", [1]]]}), None)
    assert receiver.outgoing == 1


# the worker's call path ---------------------------------------------------------------------------

def test_one_call_path_for_tests_and_timing_with_products_logged():
    session = worker.Session(wire, tracked)
    exec("import numpy as np\n\ndef f(a, b, block_size=2):\n    return a[:, :2] @ b[:2] + 0\n",
         session.namespace)
    arrays: list = []
    a, b = _matrix(3, 4), _matrix(4, 5)
    calls = [{"args": wire.encode([a, b], arrays), "kwargs": wire.encode({}, arrays)}] * 3
    reply, out = worker.answer(session, {"op": "call", "target": {"name": "f"}, "calls": calls},
                               arrays)
    assert reply["ok"] and len(reply["values"]) == 3
    assert reply["products"] == [["@ / np.matmul", [3, 2], [2, 5], 3]]
    assert np.allclose(out[0], a[:, :2] @ b[:2])
    bad, _ = worker.answer(session, {"op": "unknown"}, [])
    assert not bad["ok"] and "unknown request" in wire.decode(bad["error"], [])["message"]


def test_a_call_that_writes_into_its_inputs_is_reported():
    code = [("impl", "def scale(a):\n    a *= 2\n    return a\n\ndef same(a):\n    return a + 0\n",
             True)]
    with remote.Worker(code, launcher=launch.local_launcher) as w:
        w.start()
        a = _matrix(3, 3)
        before = a.copy()
        with pytest.raises(remote.InputsChanged, match="changed an array it was given"):
            w.proxy_for("scale", "function")(a)
        assert np.array_equal(a, before)                      # the grader's copy is untouched
        assert np.array_equal(w.proxy_for("same", "function")(a), a)
        assert [o.name for o in w.observations] == ["scale", "same"]
        assert all(o.cpu_seconds > 0 for o in w.observations)


def test_a_call_over_its_cpu_limit_is_stopped_and_the_worker_restarts():
    code = [("impl", "def spin(n):\n    while True:\n        n += 1\n\ndef one():\n    return 1\n",
             True)]
    with remote.Worker(code, launcher=launch.local_launcher, call_timeout=30) as w:
        w.start()
        with pytest.raises(remote.StudentCodeOverBudget, match="more than 0.3 s of CPU"):
            w.call({"name": "spin"}, [((1,), {})], "spin(1)", cpu_limit=0.3)
        assert w.observations[-1].outcome == "StudentCodeOverBudget"
        assert w.proxy_for("one", "function")() == 1 and w.starts == 2


def test_deferred_modules_are_imported_at_their_first_use_and_missing_ones_still_fail():
    setup = ("import sys\nimport matplotlib.pyplot as plt\nfrom matplotlib import pyplot\n"
             "import no_such_module\n")
    impl = ("def state():\n    return (type(sys.modules['matplotlib.pyplot']).__name__,\n"
            "            'matplotlib.figure' in sys.modules)\n\n"
            "def draw():\n    return type(plt.figure()).__name__, pyplot is plt\n")
    with remote.Worker([("setup", setup, False), ("impl", impl, True)],
                       launcher=launch.local_launcher,
                       deferred=("matplotlib.pyplot", "no_such_module")) as w:
        loaded = w.start()
        assert loaded.errors["setup"]["type"] == "ModuleNotFoundError"
        state, draw = (w.proxy_for(name, "function") for name in ("state", "draw"))
        assert state() == ("_StandIn", False)     # imported by name only, so far
        assert draw() == ("Figure", True)
        assert state() == ("module", True)        # the real module, from its first use on


# one worker policy: one process, one thread, wherever it runs -------------------------------------

SPAWN = """
import os, subprocess, threading
outcomes = []
for name, attempt in [("fork", os.fork), ("thread", lambda: threading.Thread(target=int).start()),
                      ("spawn", lambda: subprocess.run(["true"]))]:
    try:
        pid = attempt()
        if pid == 0:
            os._exit(0)
        outcomes.append(name + " worked")
    except OSError as exc:
        outcomes.append(name + " refused: " + type(exc).__name__)
    except RuntimeError as exc:
        outcomes.append(name + " refused: RuntimeError")
print("; ".join(outcomes))
"""


def _run_under(launcher) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(launch.PACKAGE_DIR.parent)}
    proc = launcher([sys.executable, "-c", SPAWN], env, ())
    out, _ = proc.communicate(timeout=60)
    return out.decode()


def test_the_worker_policy_allows_one_process_and_no_thread():
    policy = launch.worker_policy()
    assert policy.max_processes == 1 and policy.cpu_seconds is None
    assert sandbox.available()[0], "bubblewrap must work here (make system-packages)"
    out = _run_under(launch.sandboxed_launcher(policy, lease_uid=True))
    assert out.count("refused") == 3, out


# clocks: precise in both sandboxes ------------------------------------------------------------------

BUSY = """
import time


def busy(seconds=0.0015):
    start = now = time.process_time()
    while now - start < seconds:
        now = time.process_time()
    return now - start
"""


def test_the_kernels_own_clock_is_finer_than_a_scheduler_tick(tmp_path):
    """With a CPU-time rlimit, a process's own clock moves in whole ticks (4 ms here): a notebook
    timing a 2 ms sample read 0 or 4 ms. Neither sandbox sets that rlimit."""
    program = BUSY + "print(max(busy() for _ in range(50)))\n"
    workdir = tmp_path / "work"
    workdir.mkdir()
    for policy in (launch.kernel_policy(str(workdir)), launch.worker_policy()):
        sandbox.grant_access(str(workdir), policy)
        proc = subprocess.run(sandbox.command([sys.executable, "-c", program], policy),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout) < 0.002, (policy, proc.stdout)
    ticking = sandbox.SandboxPolicy(cpu_seconds=600, max_processes=4)
    proc = subprocess.run(sandbox.command([sys.executable, "-c", program], ticking),
                          capture_output=True, text=True, timeout=60)
    assert float(proc.stdout) > 0.002, "the rlimit no longer makes the clock tick: update this test"


def test_the_workers_clock_read_from_outside_times_a_short_call_exactly():
    with remote.Worker([("impl", BUSY, True)], launcher=launch.grading_launcher()) as w:
        w.start()
        for _ in range(20):
            w.proxy_for("busy", "function")()
        spent = [o.cpu_seconds for o in w.observations]
    # 1.5 ms of work by the worker's own clock, plus the request itself: never a whole tick.
    assert all(0.0015 <= s < 0.0025 for s in spent), spent
