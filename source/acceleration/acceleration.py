# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Hardware acceleration: from triple loops to a fast-path backend
#
# Every layer of a neural network spends most of its time in one operation: matrix multiplication.
# In this assignment you write it four times, each time closer to the hardware:
#
# 1. **`matmul_naive`**: three nested Python loops. Correct, readable, and painfully slow.
# 2. **`matmul_blocked`**: the same product computed tile by tile, so that each tile stays in the
#    CPU cache while it is reused.
# 3. **`matmul_numpy`**: hand the whole product to NumPy, which calls an optimised BLAS library.
# 4. **`OptimizedBackend`**: one entry point, `matmul(a, b)`, that dispatches to the fast path, the
#    way PyTorch routes `torch.matmul` to a kernel for your hardware.
#
# You then run three real ML workloads (an MLP, a convolution written as a matrix product, and
# transformer attention scores) through your backend, plot the whole speed spectrum, and answer
# four short questions about what you measured.
#
# **How this notebook is graded.** Cells marked *YOUR CODE HERE* are yours. Each part ends with test
# cells: the asserts you can see are the ones you can run now; the grader adds hidden tests of the
# same kind (other shapes, edge cases, timing against reference code). Timing tests compare speeds as
# **ratios measured in the same run**, never absolute seconds, with NumPy limited to one thread, so a
# busy laptop does not fail you. Do not rename the functions or change their signatures, and do not
# start threads or processes in them: the grader runs your code in a single-threaded sandbox.
#
# **Numbers in this notebook** were measured on the grading machine (an AMD EPYC server core,
# x86-64, one BLAS thread). Yours will differ; the ratios should not differ by much.
#
# **Before you submit**: *Kernel > Restart Kernel and Run All Cells*, then read the message under
# every failing test cell: it says what was called, what came back and where to look. The
# *Validate* button and `nbgrader validate` list the failing cells too, but cut every line at 90
# characters; for whole messages run `nbgrader validate acceleration.ipynb --Validator.width=400`
# in the assignment's folder. A written answer still reading *YOUR ANSWER HERE* is listed under
# its question's name with "You did not provide a response"; the four questions are under *ML
# systems thinking*.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import time

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

# One BLAS thread for the whole notebook: every timing compares single-core code with single-core
# code. With several threads, speed ratios swing wildly whenever another program uses a core.
threadpool_limits(limits=1, user_api="blas")

# Timings count the CPU time of this process, not the wall clock: while another program holds
# the core, the wall clock runs on but this process's CPU time does not, so a busy machine does
# not make code look slow.
clock = time.process_time


def random_matrix(rows, cols, seed=0, dtype=np.float32):
    """A reproducible rows x cols matrix of standard-normal values."""
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(dtype)


def _sample(fn, args, calls):
    start = clock()
    for _ in range(calls):
        fn(*args)
    return (clock() - start) / calls


def _calls_per_sample(fn, args, min_sample):
    """How many back-to-back calls make one sample last at least `min_sample` seconds."""
    calls = 1
    while _sample(fn, args, calls) * calls < min_sample:
        calls *= 4
        if calls > 1 << 20:
            raise RuntimeError("a million calls took no measurable time: the clock is not running")
    return calls


def best_time(fn, *args, repeats=5, min_sample=0.002):
    """CPU seconds per call of fn(*args): the fastest of `repeats` samples, after a warm-up call.

    One sample repeats the call until it lasts at least `min_sample` seconds, so even a call of a
    few microseconds is measured far above the clock's resolution. The minimum is the sample least
    disturbed by the rest of the machine.
    """
    fn(*args)
    calls = _calls_per_sample(fn, args, min_sample)
    return min(_sample(fn, args, calls) for _ in range(repeats))


def _called(fn):
    """A function's name as a message should give it: NumPy's as np.matmul, since this notebook
    defines a matmul of its own."""
    name = fn.__name__
    return f"np.{name}" if str(getattr(fn, "__module__", "") or "").startswith("numpy") \
        or isinstance(fn, np.ufunc) else name


def speed_ratio(fn, reference, *args, rounds=15, min_sample=0.002, at_most=None):
    """How many times slower fn(*args) is than reference(*args) (below 1: faster).

    Timing needs a correct result, so the two results are compared first. Then the two are timed
    in alternation, round after round, and the best sample of each is kept: whatever slows the
    machine down during the measurement slows both of them down. `at_most` is the limit a test
    holds the ratio to: once fn is three times past it, measuring stops, as it cannot pass.
    """
    got = np.asarray(fn(*args), dtype=np.float64)
    want = np.asarray(reference(*args), dtype=np.float64)
    assert got.shape == want.shape and np.allclose(
        got, want, rtol=1e-3, atol=1e-2 * max(1.0, np.abs(want).max(initial=0))), (
        f"{_called(fn)} gives another result than {_called(reference)} for these inputs: a "
        f"timing test needs a correct result first (see the correctness tests above)")
    fn_calls = _calls_per_sample(fn, args, min_sample)
    ref_calls = _calls_per_sample(reference, args, min_sample)
    fn_best = ref_best = float("inf")
    for _ in range(rounds):
        fn_best = min(fn_best, _sample(fn, args, fn_calls))
        ref_best = min(ref_best, _sample(reference, args, ref_calls))
        if at_most is not None and fn_best > 3 * at_most * ref_best:
            break
    return fn_best / ref_best


def report_timing(name, ratio, limit, kind="at most"):
    """Print one timing verdict in the line format the grader's reports read."""
    print(f"[timing] {name}: {ratio:.2f}x (limit: {kind} {limit:g}x)")


def _spans(indices):
    """Runs of consecutive indices, as '0..31, 64..99' (the first four runs)."""
    runs, start = [], None
    for i, x in enumerate(indices):
        start = x if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            runs.append(f"{start}..{x}" if x > start else f"{x}")
            start = None
    return ", ".join(runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")


def _where_wrong(bad):
    """Where the wrong entries of a result are: whole rows and columns, a block, or scattered."""
    if bad.all():
        return "every entry"
    if bad.sum() == 1:
        (i, j), = np.argwhere(bad)
        return f"one entry, row {i} column {j},"
    if bad.sum() >= 0.9 * bad.size:
        return f"{int(bad.sum())} of its {bad.size} entries"
    rows, cols = np.flatnonzero(bad.all(axis=1)), np.flatnonzero(bad.all(axis=0))
    lines = np.zeros_like(bad)
    lines[rows, :], lines[:, cols] = True, True
    if (rows.size or cols.size) and np.array_equal(lines, bad):
        return " and ".join([f"rows {_spans(rows)} (all columns)"] * bool(rows.size)
                            + [f"columns {_spans(cols)} (all rows)"] * bool(cols.size))
    rows, cols = np.flatnonzero(bad.any(axis=1)), np.flatnonzero(bad.any(axis=0))
    if bad[np.ix_(rows, cols)].all():
        return f"rows {_spans(rows)} x columns {_spans(cols)}"
    return f"{int(bad.sum())} of {bad.size} entries, in rows {_spans(rows)}"


def _wrong_values_hint(result, a, b, bad, block_size):
    """What the pattern of wrong entries says about the mistake."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = a64 @ b64
    (m, k), n = a.shape, b.shape[1]
    step = block_size or 1          # the naive loop adds one term at a time

    def close(x):
        return np.allclose(result, x, rtol=1e-4, atol=1e-3 * max(1.0, float(np.abs(x).max())))

    last = (k - 1) // step * step   # where the last step along k starts
    if k > step and close(a64[:, last:] @ b64[last:, :]):
        return ("each entry holds only the last of its " + ("tiles along k" if block_size else
                "terms") + ": add each product into the result (+=) instead of assigning it (=)")
    if block_size and k % block_size and close(a64[:, :last] @ b64[:last, :]):
        return (f"the last, partial tile along k (columns {last}..{k - 1} of a) is left out: let "
                f"the k loop reach it and end each tile at min(start + block_size, k)")
    if np.all(result[bad] == 0):
        ragged = bool(block_size) and bool(m % block_size or n % block_size)
        return ("those entries are still 0: part of the result is never computed; check that your "
                "loops reach the last row and column" + (
                    f" (with block_size={block_size} the last tile is smaller: end each tile at "
                    f"min(start + block_size, size))" if ragged else ""))
    if block_size and (m % block_size or n % block_size):
        edge = np.zeros_like(bad)
        edge[m // block_size * block_size:, :] = bool(m % block_size)
        edge[:, n // block_size * block_size:] |= bool(n % block_size)
        if not bad[~edge].any():
            rows, cols = m % block_size or block_size, n % block_size or block_size
            return (f"the wrong entries are all in the last, smaller tiles ({rows} rows, {cols} "
                    f"columns): check where those tiles end (min(start + block_size, size))")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = result[bad] / expected[bad]
    ratio = ratio[np.isfinite(ratio)]
    if bad.all() and ratio.size and np.ptp(ratio) < 1e-3 * abs(ratio.mean()):
        return (f"every entry is {ratio.mean():.3g} times the right value: a product is added "
                f"more than once, or the result does not start from zeros")
    if bad.all():
        return ("check the formula c[i, j] = sum over p of a[i, p] * b[p, j] and that the result "
                "starts from zeros")
    return ("work out one of the wrong entries by hand (the sum over p of a[i, p] * b[p, j]) and "
            "follow the loop that computes it")


def check_matmul(result, a, b, call, dtype=np.float32, atol=1e-3, block_size=None):
    """Assert that `result` is a @ b; the message says what differs and where to look.

    `block_size`: the tile size of a blocked call, so that the hint can speak of tiles."""
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert result is not None, f"{call} returned None: did you forget to `return` the result?"
    assert isinstance(result, np.ndarray), (
        f"{call} returned a {type(result).__name__}, expected a numpy array")
    assert result.shape == expected.shape, (
        f"{call} returned shape {result.shape}, expected {expected.shape}: the product of a "
        f"{a.shape[0]}x{a.shape[1]} and a {b.shape[0]}x{b.shape[1]} matrix has one row per row of a "
        f"and one column per column of b")
    if dtype is not None and result.dtype != dtype:
        kept = np.dtype(dtype) == np.result_type(a.dtype, b.dtype)
        raise AssertionError(
            f"{call} returned dtype {result.dtype}, expected {np.dtype(dtype)}: " + (
                f"the inputs are {np.dtype(dtype)}, and so is their product: multiply them as "
                f"they are, without a conversion to another dtype and back" if kept else
                f"create the result with np.zeros((m, n), dtype=np.{np.dtype(dtype)})"))
    bad = ~np.isclose(result, expected, rtol=1e-4, atol=atol)
    if bad.any():
        worst = float(np.max(np.abs(result - expected)))
        raise AssertionError(
            f"{call}: wrong values in {_where_wrong(bad)} of {expected.shape[0]}x"
            f"{expected.shape[1]} (largest error {worst:.3g}); "
            f"{_wrong_values_hint(result, a, b, bad, block_size)}")


def expect_error(error, fn, *args, call="the call", **kwargs):
    """Assert that fn(*args, **kwargs) raises `error`; return the exception for more checks."""
    try:
        value = fn(*args, **kwargs)
    except error as exc:
        return exc
    except NotImplementedError:
        raise AssertionError(f"{call} raised NotImplementedError: it is not written yet") from None
    except Exception as exc:
        raise AssertionError(
            f"{call} raised {type(exc).__name__}({exc}), expected {error.__name__}") from None
    raise AssertionError(f"{call} returned a {type(value).__name__} instead of raising "
                         f"{error.__name__}")


def expect_shape_error(fn, a, b, call):
    """Assert that fn(a, b) raises ValueError with both shapes in its message."""
    error = expect_error(ValueError, fn, a, b, call=call)
    assert str(a.shape) in str(error) and str(b.shape) in str(error), (
        f"the ValueError of {call} should show both shapes, {a.shape} and {b.shape}, e.g. "
        f"'incompatible shapes {a.shape} @ {b.shape}'; its message was: {error}")


_PRODUCTS = {np.dot: "np.dot", np.vdot: "np.vdot", np.inner: "np.inner", np.outer: "np.outer",
             np.einsum: "np.einsum", np.tensordot: "np.tensordot", np.kron: "np.kron",
             np.linalg.multi_dot: "np.linalg.multi_dot"}


class _Watched(np.ndarray):
    """An array that notes each library product it takes part in: (operation, operand shapes)."""
    seen = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul or ufunc is getattr(np, "vecdot", None):   # vecdot: NumPy 2
            _Watched.seen.append(("@" if ufunc is np.matmul else "np.vecdot",
                                  [np.shape(x) for x in inputs]))
        plain = [x.view(np.ndarray) if isinstance(x, _Watched) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, _Watched) else x
                                  for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in _PRODUCTS:
            _Watched.seen.append((_PRODUCTS[func], [np.shape(x) for x in args
                                                    if isinstance(x, np.ndarray)]))
        return super().__array_function__(func, types, args, kwargs)


def library_products(fn, a, b, **kwargs):
    """Call fn(a, b, **kwargs) and return the library products (`@`, np.dot, ...) it made with
    (slices of) a and b, as (operation, operand shapes); the result is checked as usual."""
    _Watched.seen = []
    result = fn(a.view(_Watched), b.view(_Watched), **kwargs)
    if isinstance(result, _Watched):
        result = result.view(np.ndarray)
    return result, list(_Watched.seen)


def dispatched_ops(run):
    """Call run() and return the ops that the module-level `_backend` dispatched meanwhile."""
    backend = globals()["_backend"]
    ops = []

    def recording(op, *args, **kwargs):
        ops.append(op)
        return type(backend).dispatch(backend, op, *args, **kwargs)

    backend.dispatch = recording
    try:
        run()
    finally:
        del backend.dispatch
    return ops


# threadpoolctl cannot limit every BLAS (it does not see Apple Accelerate, which NumPy uses on
# recent macOS): say what it found rather than assume one thread.
_blas = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()
         if pool["user_api"] == "blas"}
if _blas and set(_blas.values()) == {1}:
    print("Setup done: NumPy", np.__version__, "with one BLAS thread (" + ", ".join(_blas) + ").")
else:
    print("Setup done: NumPy", np.__version__, "but with more than one BLAS thread, or threads "
          "this notebook cannot count", f"(found: {_blas or 'no BLAS threadpoolctl can see'}):",
          "your timings may swing while other programs run. The grader's use one thread.")

# %% [markdown]
# ## Part 1: the naive triple loop
#
# The definition of the product $C = AB$ for an $m \times k$ matrix $A$ and a $k \times n$ matrix
# $B$ is
#
# $$C_{ij} = \sum_{p=0}^{k-1} A_{ip} \, B_{pj}.$$
#
# Written as code, that is one loop over rows `i`, one over columns `j` and one over the shared
# dimension `p`: $m \cdot n \cdot k$ multiply-adds, each one a trip through the Python interpreter
# (a bytecode dispatch, two NumPy scalar look-ups, a boxed float). That is where the time goes, long
# before the memory system matters.
#
# **Implement `matmul_naive(a, b)`:**
# - `a` is `m x k`, `b` is `k x n`; return a new `m x n` array of dtype `float32` (also when the
#   inputs are integers or `float64`).
# - If either input is not 2-D, or the inner dimensions differ, raise `ValueError` with a message
#   that shows both shapes, e.g. `incompatible shapes (2, 3) @ (2, 3)`.
# - Use plain Python loops and scalar arithmetic only: no `@`, `np.dot`, `np.matmul`, `np.einsum`
#   or other library products. That is the point of the exercise, and the grader checks it.

# %% nbgrader={"grade": false, "grade_id": "naive_impl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def matmul_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Multiply a (m x k) by b (k x n) with three nested Python loops; return float32 m x n."""
    ### BEGIN SOLUTION
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul_naive needs 2-D matrices, got shapes {a.shape} @ {b.shape}")
    m, k = a.shape
    k_b, n = b.shape
    if k != k_b:
        raise ValueError(f"incompatible shapes {a.shape} @ {b.shape}: a has {k} columns "
                         f"but b has {k_b} rows")
    c = np.zeros((m, n), dtype=np.float32)
    for i in range(m):
        for j in range(n):
            total = 0.0
            for p in range(k):
                total += a[i, p] * b[p, j]
            c[i, j] = total
    return c
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "naive_correct", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# The product of two small matrices, worked out by hand.
a = np.array([[1, 2], [3, 4]], dtype=np.float32)
b = np.array([[5, 6], [7, 8]], dtype=np.float32)
result = matmul_naive(a, b)
check_matmul(result, a, b, "matmul_naive(2x2, 2x2)")
assert np.array_equal(result, [[19, 22], [43, 50]]), f"expected [[19, 22], [43, 50]], got {result}"

# A non-square product.
a, b = random_matrix(3, 4, seed=1), random_matrix(4, 2, seed=2)
check_matmul(matmul_naive(a, b), a, b, "matmul_naive(3x4, 4x2)")

# Its own loops, one multiply-add at a time: no library product on the inputs or their slices.
a, b = random_matrix(6, 5, seed=3), random_matrix(5, 4, seed=4)
result, products = library_products(matmul_naive, a, b)
check_matmul(result, a, b, "matmul_naive(6x5, 5x4)")
assert not products, (
    f"matmul_naive(6x5, 5x4) made a library product ({products[0][0]} of shapes "
    f"{products[0][1]}): the naive version must multiply with its own Python loops, or its tests "
    f"earn no points")

# Whatever the inputs' dtype, the result is float32.
a, b = random_matrix(2, 3, dtype=np.float64), random_matrix(3, 2, seed=4, dtype=np.float64)
check_matmul(matmul_naive(a, b), a, b, "matmul_naive on float64 inputs (2x3, 3x2)")

### BEGIN HIDDEN TESTS
for (m, k, n) in [(1, 9, 1), (9, 1, 7), (1, 5, 6), (6, 5, 1), (7, 3, 5), (17, 13, 11)]:
    a, b = random_matrix(m, k, seed=m), random_matrix(k, n, seed=n + 100)
    check_matmul(matmul_naive(a, b), a, b, f"matmul_naive({m}x{k}, {k}x{n})")

a = np.arange(12).reshape(3, 4)
b = np.arange(8).reshape(4, 2)
check_matmul(matmul_naive(a, b), a, b, "matmul_naive on int64 inputs")
a, b = random_matrix(5, 4, dtype=np.float64), random_matrix(4, 3, seed=3, dtype=np.float64)
check_matmul(matmul_naive(a, b), a, b, "matmul_naive on float64 inputs")

# The grader fails any call of student code that writes into the arrays it was given.
a, b = random_matrix(4, 4, seed=5), random_matrix(4, 4, seed=6)
check_matmul(matmul_naive(a, b), a, b, "matmul_naive(4x4, 4x4)")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "naive_errors", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
expect_shape_error(matmul_naive, random_matrix(2, 3), random_matrix(2, 3),
                   "matmul_naive(2x3, 2x3)")
error = expect_error(ValueError, matmul_naive, random_matrix(2, 2), np.ones(2, dtype=np.float32),
                     call="matmul_naive(2x2, 1-D vector)")

### BEGIN HIDDEN TESTS
expect_shape_error(matmul_naive, random_matrix(3, 4), random_matrix(5, 2),
                   "matmul_naive(3x4, 5x2)")
error = expect_error(ValueError, matmul_naive, np.ones(3, dtype=np.float32), random_matrix(3, 2),
                     call="matmul_naive(1-D vector, 3x2)")
error = expect_error(ValueError, matmul_naive, random_matrix(2, 2), np.ones((2, 2, 2)),
                     call="matmul_naive(2x2, 2x2x2)")
### END HIDDEN TESTS

# %% [markdown]
# ### See it: how slow is the loop?
#
# Run the cell below. On the grading machine a 64x64 product took about 0.14 s in the loop and
# about 15 µs in NumPy: roughly ten thousand times slower, for exactly the same arithmetic.

# %%
a, b = random_matrix(64, 64), random_matrix(64, 64, seed=1)
loop_s = best_time(matmul_naive, a, b, repeats=2)
numpy_s = best_time(np.matmul, a, b)
print(f"64x64 naive loop: {loop_s * 1e3:8.2f} ms")
print(f"64x64 NumPy     : {numpy_s * 1e3:8.4f} ms  ({loop_s / numpy_s:,.0f}x faster)")

# %% [markdown]
# ## Part 2: cache blocking
#
# A CPU computes far faster than memory can feed it. Between the two sits a hierarchy of caches;
# typical sizes and costs for one core:
#
# | level      | size        | latency (cycles) |
# |------------|-------------|------------------|
# | registers  | a few bytes | 1                |
# | L1 cache   | 32 KiB      | about 4          |
# | L2 cache   | 256 KiB     | 10 to 20         |
# | L3 cache   | several MiB | 40 to 80         |
# | main memory| GiBs        | 200 and more     |
#
# Real machines differ: the grading machine has 48 KiB of L1 data cache and 1 MiB of L2 per core,
# and 32 MiB of L3 shared by its cores. `calculate_cache_footprint` below keeps the table's 32 KiB
# and 256 KiB as its limits (the tests check those), but when you choose a block size, think of
# the machine you run on: three 64x64 float32 tiles take 48 KiB, over the table's L1 but just
# inside the grading machine's. The next cell prints what your machine reports.

# %%
def data_caches():
    """This machine's data caches, {"L1": bytes, ...}, as its operating system reports them."""
    import os
    import platform
    import subprocess

    found = {}
    base = "/sys/devices/system/cpu/cpu0/cache"   # Linux
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            def read(name):
                with open(os.path.join(base, entry, name)) as f:
                    return f.read().strip()
            if read("type") in ("Data", "Unified"):
                size = read("size")
                found[f"L{read('level')}"] = (int(size[:-1]) * units[size[-1]]
                                              if size[-1] in units else int(size))
        except (OSError, ValueError):
            continue
    if not found and platform.system() == "Darwin":
        for level in ("l1d", "l2", "l3"):
            try:
                out = subprocess.run(["sysctl", "-n", f"hw.{level}cachesize"],
                                     capture_output=True, text=True, timeout=5).stdout
                if int(out) > 0:
                    found[level[:2].upper()] = int(out)
            except (OSError, ValueError, subprocess.SubprocessError):
                continue
    return found


caches = data_caches()
print("This machine's data caches:",
      ", ".join(f"{level} {size >> 20} MiB" if size >= 1 << 20 else f"{level} {size >> 10} KiB"
                for level, size in sorted(caches.items()))
      or "not reported by the operating system")

# %% [markdown]
# NumPy stores a matrix row by row ("C order"). The naive loop reads `b[p, j]` with `p` changing
# fastest: each read jumps a whole row ahead in memory, so for large `n` nearly every read of `b`
# touches a different cache line, and by the time the loop comes back to a line it has been evicted.
#
# **Blocking** (tiling) cuts the three matrices into `block_size x block_size` tiles and multiplies
# tile by tile. While three tiles (one of `a`, one of `b`, one of `c`) fit in cache, every value
# loaded is reused `block_size` times before it is evicted. BLAS libraries are built on this idea,
# with several levels of tiles and hand-written vector kernels for the innermost one.
#
# In Python, a blocked loop also cuts the interpreter overhead: the loops now run over tiles, and
# the tile product itself is one `@` on small arrays. On the grading machine (one core) that makes
# the blocked version **thousands of times faster** than the naive loop at 96x96 (the speed test
# below prints your figure), and only **about 3x slower** than NumPy (2.5 to 3x in the grader's
# measurements at 256x256, one BLAS thread each). Most of the first gain is escaping the
# interpreter; the cache effect is the reason the tiles have the size they have.
#
# **Implement `matmul_blocked(a, b, block_size=64)`:**
# - Same contract as `matmul_naive`: float32 `m x n` result, `ValueError` showing both shapes for
#   incompatible or non-2-D inputs.
# - Loop over tiles; multiply each pair of tiles with `@` and add the product into the tile of
#   the result. **Never multiply anything larger than `block_size` in any dimension**: the
#   grader checks the shapes of the operands you multiply.
# - Sizes need not be multiples of `block_size`: the last tile in each direction is smaller. A
#   `block_size` larger than the matrix means one tile.
#
# **Implement `calculate_cache_footprint(block_size)`**: the memory three float32 tiles of
# `block_size x block_size` occupy. Return a dict with exactly these keys:
# `block_size`, `bytes_per_block` (one tile), `total_bytes` (three tiles),
# `fits_in_l1` (`total_bytes <= L1_BYTES`) and `fits_in_l2` (`total_bytes <= L2_BYTES`).

# %% nbgrader={"grade": false, "grade_id": "blocked_impl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def matmul_blocked(a: np.ndarray, b: np.ndarray, block_size: int = 64) -> np.ndarray:
    """Multiply a (m x k) by b (k x n) tile by tile; return float32 m x n."""
    ### BEGIN SOLUTION
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul_blocked needs 2-D matrices, got shapes {a.shape} @ {b.shape}")
    m, k = a.shape
    k_b, n = b.shape
    if k != k_b:
        raise ValueError(f"incompatible shapes {a.shape} @ {b.shape}: a has {k} columns "
                         f"but b has {k_b} rows")
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    c = np.zeros((m, n), dtype=np.float32)
    for i0 in range(0, m, block_size):
        i1 = min(i0 + block_size, m)
        for j0 in range(0, n, block_size):
            j1 = min(j0 + block_size, n)
            for p0 in range(0, k, block_size):
                p1 = min(p0 + block_size, k)
                c[i0:i1, j0:j1] += a[i0:i1, p0:p1] @ b[p0:p1, j0:j1]
    return c
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "footprint_impl", "locked": false, "schema_version": 3, "solution": true, "task": false}
BYTES_PER_FLOAT32 = 4
TILES_IN_FLIGHT = 3           # one tile each of a, b and c
L1_BYTES = 32 * 1024          # 32 KiB
L2_BYTES = 256 * 1024         # 256 KiB


def calculate_cache_footprint(block_size: int) -> dict:
    """Bytes used by three float32 block_size x block_size tiles, and which caches hold them."""
    ### BEGIN SOLUTION
    bytes_per_block = block_size * block_size * BYTES_PER_FLOAT32
    total_bytes = TILES_IN_FLIGHT * bytes_per_block
    return {
        "block_size": block_size,
        "bytes_per_block": bytes_per_block,
        "total_bytes": total_bytes,
        "fits_in_l1": total_bytes <= L1_BYTES,
        "fits_in_l2": total_bytes <= L2_BYTES,
    }
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "blocked_correct", "locked": true, "points": 12, "schema_version": 3, "solution": false, "task": false}
a, b = random_matrix(128, 128, seed=1), random_matrix(128, 128, seed=2)
check_matmul(matmul_blocked(a, b, block_size=32), a, b, "matmul_blocked(128x128, 128x128, 32)",
             block_size=32)

# 100 is not a multiple of 64: the last tile in each direction has 36 rows or columns.
a, b = random_matrix(100, 100, seed=3), random_matrix(100, 100, seed=4)
check_matmul(matmul_blocked(a, b), a, b, "matmul_blocked(100x100, 100x100) with the default 64",
             block_size=64)

# Tiles no larger than the block size, in every dimension, at a size that leaves ragged edges.
a, b = random_matrix(40, 50, seed=5), random_matrix(50, 30, seed=6)
result, products = library_products(matmul_blocked, a, b, block_size=16)
check_matmul(result, a, b, "matmul_blocked(40x50, 50x30, 16)", block_size=16)
larger = [(op, shapes) for op, shapes in products if max(max(s, default=0) for s in shapes) > 16]
assert not larger, (
    f"matmul_blocked(40x50, 50x30, block_size=16) multiplied operands larger than the block size "
    f"({larger[0][0]} of shapes {larger[0][1]}): multiply tiles of at most 16x16, or the blocked "
    f"tests earn no points")

# The same contract as matmul_naive: float32 results, a ValueError that shows both shapes.
a, b = np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4)
check_matmul(matmul_blocked(a, b, block_size=2), a, b, "matmul_blocked on int64 inputs (2x3, 3x4)",
             block_size=2)
expect_shape_error(matmul_blocked, random_matrix(3, 5), random_matrix(4, 2),
                   "matmul_blocked(3x5, 4x2)")
error = expect_error(ValueError, matmul_blocked, random_matrix(3, 3), np.ones((3, 3, 3)),
                     call="matmul_blocked(3x3, 3x3x3)")

### BEGIN HIDDEN TESTS
cases = [
    ((130, 70, 45), 32),   # ragged in all three dimensions
    ((5, 7, 3), 1),        # every tile is a single number
    ((20, 30, 10), 512),   # one tile larger than the whole matrix
    ((1, 50, 40), 16),     # a single row
    ((40, 50, 1), 16),     # a single column
    ((64, 64, 64), 64),    # exactly one tile
    ((65, 63, 66), 64),    # one past, one short of a tile
]
for (m, k, n), bs in cases:
    a, b = random_matrix(m, k, seed=m + 7), random_matrix(k, n, seed=n + 11)
    check_matmul(matmul_blocked(a, b, block_size=bs), a, b,
                 f"matmul_blocked({m}x{k}, {k}x{n}, block_size={bs})", block_size=bs)

a, b = np.arange(15).reshape(5, 3), np.arange(12).reshape(3, 4)
check_matmul(matmul_blocked(a, b, block_size=2), a, b, "matmul_blocked on int64 inputs",
             block_size=2)
a, b = random_matrix(33, 17, dtype=np.float64), random_matrix(17, 9, dtype=np.float64)
check_matmul(matmul_blocked(a, b, block_size=8), a, b, "matmul_blocked on float64 inputs",
             block_size=8)

expect_shape_error(matmul_blocked, random_matrix(4, 6), random_matrix(5, 4),
                   "matmul_blocked(4x6, 5x4)")
error = expect_error(ValueError, matmul_blocked, np.ones(4, dtype=np.float32), random_matrix(4, 4),
                     call="matmul_blocked(1-D vector, 4x4)")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "footprint_values", "locked": true, "points": 8, "schema_version": 3, "solution": false, "task": false}
footprint = calculate_cache_footprint(64)
expected_keys = {"block_size", "bytes_per_block", "total_bytes", "fits_in_l1", "fits_in_l2"}
assert isinstance(footprint, dict) and set(footprint) == expected_keys, (
    f"calculate_cache_footprint should return a dict with keys {sorted(expected_keys)}, "
    f"got {footprint!r}")
assert footprint["bytes_per_block"] == 64 * 64 * 4, (
    f"one 64x64 float32 tile is 64 * 64 * 4 = 16384 bytes, got {footprint['bytes_per_block']}")
assert footprint["total_bytes"] == 3 * 16384, (
    f"three tiles of 16384 bytes are 49152 bytes, got {footprint['total_bytes']}")
assert footprint["fits_in_l1"] is False and footprint["fits_in_l2"] is True, (
    "48 KiB is more than a 32 KiB L1 cache but fits in a 256 KiB L2: expected fits_in_l1=False "
    f"and fits_in_l2=True, got {footprint['fits_in_l1']!r} and {footprint['fits_in_l2']!r}")

### BEGIN HIDDEN TESTS
# Each pair sits on either side of a cache limit: 52 and 53 around L1, 147 and 148 around L2.
for bs, per_block, l1, l2 in [(1, 4, True, True), (32, 4096, True, True),
                              (52, 10816, True, True), (53, 11236, False, True),
                              (147, 86436, False, True), (148, 87616, False, False),
                              (256, 262144, False, False)]:
    fp = calculate_cache_footprint(bs)
    got = (fp.get("block_size"), fp.get("bytes_per_block"), fp.get("total_bytes"),
           fp.get("fits_in_l1"), fp.get("fits_in_l2"))
    want = (bs, per_block, 3 * per_block, l1, l2)
    assert got == want, (
        f"calculate_cache_footprint({bs}) gave (block_size, bytes_per_block, total_bytes, "
        f"fits_in_l1, fits_in_l2) = {got}, expected {want}; the limits are inclusive "
        f"(total_bytes <= limit)")
    assert all(isinstance(fp[key], bool) for key in ("fits_in_l1", "fits_in_l2")), (
        f"fits_in_l1 and fits_in_l2 should be True or False, got {fp['fits_in_l1']!r} and "
        f"{fp['fits_in_l2']!r}")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "blocked_speed", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# A reference tiled product takes about 3x as long as NumPy at this size (2.5 to 3x measured
# on the grading machine); 10x is the limit.
a, b = random_matrix(256, 256, seed=1), random_matrix(256, 256, seed=2)
ratio = speed_ratio(matmul_blocked, np.matmul, a, b, at_most=10)
report_timing("blocked_vs_numpy_256", ratio, 10)
assert ratio <= 10, (
    f"matmul_blocked is {ratio:.1f}x slower than NumPy at 256x256 (limit 10x): multiply whole "
    f"tiles with @ rather than looping over single elements, and avoid copying tiles")

### BEGIN HIDDEN TESTS
def _reference_naive(a, b):
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.float32)
    for i in range(m):
        for j in range(n):
            total = 0.0
            for p in range(k):
                total += a[i, p] * b[p, j]
            c[i, j] = total
    return c


def _reference_blocked(a, b, block_size=64):
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.float32)
    for i0 in range(0, m, block_size):
        for j0 in range(0, n, block_size):
            for p0 in range(0, k, block_size):
                c[i0:i0 + block_size, j0:j0 + block_size] += (
                    a[i0:i0 + block_size, p0:p0 + block_size]
                    @ b[p0:p0 + block_size, j0:j0 + block_size])
    return c


# Against the naive loop: a tiled product was 2,000-6,000x faster at 64x64; 100x is the floor,
# far below any tiled version that multiplies tiles with @ (tiles of pure Python loops fail it).
a, b = random_matrix(64, 64, seed=3), random_matrix(64, 64, seed=4)
speedup = 1 / speed_ratio(matmul_blocked, _reference_naive, a, b, rounds=2, at_most=1 / 100)
report_timing("blocked_speedup_over_naive_64", speedup, 100, kind="at least")
assert speedup >= 100, (
    f"matmul_blocked is only {speedup:.0f}x faster than a plain triple loop at 64x64 (needed: "
    f"100x): the work inside each tile should be one @, not Python loops")

# Against reference tiling at the default block size. The reference measures 1.0-1.1x against
# itself, also with both cores busy (CPU time); a version doing 3x the work must fail, so the limit
# sits at 2.5x, which leaves room for honest variations (loop order, np.dot on tiles, tile copies).
a, b = random_matrix(256, 256, seed=5), random_matrix(256, 256, seed=6)
ratio = speed_ratio(matmul_blocked, _reference_blocked, a, b, at_most=2.5)
report_timing("blocked_vs_reference_256", ratio, 2.5)
assert ratio <= 2.5, (
    f"matmul_blocked is {ratio:.1f}x slower than a reference tiled product at 256x256 (limit "
    f"2.5x): look for per-element work, tile copies or repeated work inside your loops")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3: NumPy, the production path
#
# `a @ b` hands the product to a BLAS library (OpenBLAS here). It tiles for every cache level,
# packs tiles into the order its kernels read them, and runs hand-written assembly kernels that use
# the CPU's vector (SIMD) instructions and fused multiply-adds, keeping a small block of `c` in
# registers. Given more than one thread, it also splits the work across cores; we limited it to
# one, so what you measure is single-core code against single-core code.
#
# **Implement `matmul_numpy(a, b)`**: return the product computed by NumPy. Keep NumPy's result
# dtype (a float32 product stays float32) and let NumPy raise its own `ValueError` on bad shapes.
#
# This is the fast path the rest of the assignment builds on, so it is graded for speed too: the
# grader times `matmul_numpy` against `np.matmul` itself and allows at most 1.5x. Anything around
# the product costs: on the grading machine a Python loop over tiles took 1.9 to 2.5x as long, and
# a conversion to float64 and back (the float64 product is half as fast as the float32 one, plus
# three copies) 2.4 to 4x.

# %% nbgrader={"grade": false, "grade_id": "numpy_impl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def matmul_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Multiply a by b with NumPy's BLAS-backed matrix product."""
    ### BEGIN SOLUTION
    return a @ b
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "numpy_correct", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
a, b = random_matrix(50, 40, seed=1), random_matrix(40, 30, seed=2)
check_matmul(matmul_numpy(a, b), a, b, "matmul_numpy(50x40, 40x30)")

# NumPy's product keeps its inputs' dtype, and raises ValueError for shapes that do not fit.
a, b = random_matrix(4, 3, dtype=np.float64), random_matrix(3, 2, seed=3, dtype=np.float64)
check_matmul(matmul_numpy(a, b), a, b, "matmul_numpy on float64 inputs (4x3, 3x2)",
             dtype=np.float64)
error = expect_error(ValueError, matmul_numpy, random_matrix(2, 3), random_matrix(2, 3),
                     call="matmul_numpy(2x3, 2x3)")

### BEGIN HIDDEN TESTS
for (m, k, n) in [(1, 64, 1), (64, 1, 64), (1, 3, 200), (300, 200, 100)]:
    a, b = random_matrix(m, k, seed=m), random_matrix(k, n, seed=n)
    check_matmul(matmul_numpy(a, b), a, b, f"matmul_numpy({m}x{k}, {k}x{n})")
a, b = random_matrix(6, 5, dtype=np.float64), random_matrix(5, 4, dtype=np.float64)
check_matmul(matmul_numpy(a, b), a, b, "matmul_numpy on float64 inputs", dtype=np.float64)
error = expect_error(ValueError, matmul_numpy, random_matrix(3, 4), random_matrix(5, 2),
                     call="matmul_numpy(3x4, 5x2)")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "numpy_speed", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# matmul_numpy is NumPy's own product, so it should take no longer than np.matmul: the reference
# measured 0.7-0.8x against it in grading (the grader's np.matmul pays a little more per call
# than your code does); Python-looped 64x64 tiles 1.9-2.5x, a detour through float64 2.4-4x.
# 1.5x splits them.
a, b = random_matrix(256, 256, seed=7), random_matrix(256, 256, seed=8)
ratio = speed_ratio(matmul_numpy, np.matmul, a, b, at_most=1.5)
report_timing("numpy_vs_np_matmul_256", ratio, 1.5)
assert ratio <= 1.5, (
    f"matmul_numpy takes {ratio:.2f}x as long as np.matmul at 256x256 (limit 1.5x): return a @ b "
    f"as it is, without loops over tiles, copies or a conversion to another dtype and back")

### BEGIN HIDDEN TESTS
a, b = random_matrix(512, 384, seed=9), random_matrix(384, 448, seed=10)
ratio = speed_ratio(matmul_numpy, np.matmul, a, b, at_most=1.5)
report_timing("numpy_vs_np_matmul_512", ratio, 1.5)
assert ratio <= 1.5, (
    f"matmul_numpy takes {ratio:.2f}x as long as np.matmul at 512x384 @ 384x448 (limit 1.5x): "
    f"return a @ b as it is, without loops over tiles, copies or a conversion to another dtype "
    f"and back")
### END HIDDEN TESTS

# %% [markdown]
# ### Plot the spectrum
#
# Time the three implementations over a range of sizes and draw them on one log-log plot: size on
# the x-axis, seconds per product on the y-axis. Use `best_time` from the setup cell. Time the naive
# loop only up to 64: it grows as $n^3$, so each doubling of `n` costs 8x, and 512x512 would take
# 512 times its 64x64 time (about 30 s on the grading machine). Write `measure_spectrum` in the
# cell below: it fills `timings`, draws the plot and prints the table. It is not graded.
#
# On log-log axes a cost of $n^3$ is a straight line of slope 3. Look at where the lines sit and
# whether they are parallel.

# %% nbgrader={"grade": false, "grade_id": "spectrum_plot", "locked": false, "schema_version": 3, "solution": true, "task": false}
naive_sizes = [8, 16, 32, 48, 64]
fast_sizes = [8, 16, 32, 64, 128, 256, 512]
timings = {"naive": [], "blocked": [], "numpy": []}  # seconds per product, one per size


def measure_spectrum():
    """Fill `timings` (seconds per product, one per size), draw the plot, print the table."""
    ### BEGIN SOLUTION
    for n in naive_sizes:
        a, b = random_matrix(n, n), random_matrix(n, n, seed=1)
        timings["naive"].append(best_time(matmul_naive, a, b, repeats=2))
    for n in fast_sizes:
        a, b = random_matrix(n, n), random_matrix(n, n, seed=1)
        timings["blocked"].append(best_time(matmul_blocked, a, b, repeats=3))
        timings["numpy"].append(best_time(matmul_numpy, a, b, repeats=3))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(naive_sizes, timings["naive"], "o-", label="naive loops")
    ax.loglog(fast_sizes, timings["blocked"], "s-", label="blocked (64x64 tiles)")
    ax.loglog(fast_sizes, timings["numpy"], "^-", label="NumPy / BLAS")
    ax.set_xlabel("matrix size n (n x n @ n x n)")
    ax.set_ylabel("seconds per product")
    ax.set_title("The speed spectrum of matrix multiplication (one core)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    plt.show()

    print("   n   naive (ms)  blocked (ms)  NumPy (ms)")
    for n in sorted(set(naive_sizes) | set(fast_sizes)):
        row = [f"{timings[name][sizes.index(n)] * 1e3:12.4f}" if n in sizes else " " * 12
               for name, sizes in (("naive", naive_sizes), ("blocked", fast_sizes),
                                   ("numpy", fast_sizes))]
        print(f"{n:4d}" + "".join(row))
    ### END SOLUTION


# Not graded: left for later, it does not stop "Run All" before the Part 4 and 5 cells.
try:
    measure_spectrum()
except NotImplementedError:
    print("The spectrum is not measured yet: fill in measure_spectrum above (not graded).")

# %% [markdown]
# ## Part 4: a backend that dispatches to the fast path
#
# Frameworks give users one function and pick the implementation behind it: `torch.matmul` looks
# at the device and dtype and calls cuBLAS, oneDNN or a CPU kernel. Here the backend has one
# operation and one fast path, but the shape of the code is the same.
#
# **Implement:**
# - `OptimizedBackend.dispatch(op, *args, **kwargs)`: for `op == "matmul"` call
#   `self.matmul(*args, **kwargs)` and return its result; for any other op raise
#   `NotImplementedError` with a message that names the op.
# - `OptimizedBackend.matmul(a, b)`: the fastest implementation you have (`matmul_numpy`).
# - `matmul(a, b)`: the function users call. It must call `_backend.dispatch("matmul", a, b)`,
#   once per product, and return its result: the tests count what the module-level `_backend`
#   dispatches (the setup cell's `dispatched_ops`), so a `matmul` that calls `_backend.matmul` or
#   `matmul_numpy` directly computes the right numbers but loses the dispatch points, and every
#   workload of Part 5 with them.
#
# The backend should cost next to nothing, and its fast path should be NumPy's: the grader times
# `matmul` against your `matmul_numpy` and against NumPy's own `np.matmul`, and allows at most
# 1.5x for each.

# %% nbgrader={"grade": false, "grade_id": "backend_impl", "locked": false, "schema_version": 3, "solution": true, "task": false}
class OptimizedBackend:
    """Routes each operation to the fastest implementation available."""

    def dispatch(self, op: str, *args, **kwargs):
        """Run operation `op` with the given arguments; unknown ops raise NotImplementedError."""
        ### BEGIN SOLUTION
        if op == "matmul":
            return self.matmul(*args, **kwargs)
        raise NotImplementedError(f"OptimizedBackend has no operation {op!r} (it has: 'matmul')")
        ### END SOLUTION

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The fast matrix product."""
        ### BEGIN SOLUTION
        return matmul_numpy(a, b)
        ### END SOLUTION


_backend = OptimizedBackend()


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product through the module's backend."""
    ### BEGIN SOLUTION
    return _backend.dispatch("matmul", a, b)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "backend_dispatch", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
a, b = random_matrix(40, 30, seed=1), random_matrix(30, 20, seed=2)
check_matmul(OptimizedBackend().dispatch("matmul", a, b), a, b,
             'OptimizedBackend().dispatch("matmul", a, b)')
check_matmul(matmul(a, b), a, b, "matmul(a, b)")
check_matmul(OptimizedBackend().dispatch("matmul", b.T, a.T), b.T, a.T,
             'OptimizedBackend().dispatch("matmul", b.T, a.T)')
check_matmul(OptimizedBackend().dispatch("matmul", a, b=b), a, b,
             'OptimizedBackend().dispatch("matmul", a, b=b) (b as a keyword argument)')
ops = dispatched_ops(lambda: matmul(a, b))
assert ops == ["matmul"], (
    f"matmul(a, b) should call _backend.dispatch('matmul', a, b) exactly once; the module "
    f"backend dispatched {ops}" + (": call _backend.dispatch rather than _backend.matmul or "
                                   "matmul_numpy" if not ops else ""))
error = expect_error(NotImplementedError, OptimizedBackend().dispatch, "conv2d", a, b,
                     call='OptimizedBackend().dispatch("conv2d", a, b)')
assert "conv2d" in str(error), (
    f"the NotImplementedError for an unknown op should name it ('conv2d'); its message was: {error}")
error = expect_error(NotImplementedError, OptimizedBackend().dispatch, "Matmul", a, b,
                     call='OptimizedBackend().dispatch("Matmul", a, b) (ops are compared exactly)')

### BEGIN HIDDEN TESTS
check_matmul(OptimizedBackend().dispatch("matmul", a=a, b=b), a, b,
             'OptimizedBackend().dispatch("matmul", a=a, b=b) (keyword arguments)')
check_matmul(OptimizedBackend().matmul(a, b), a, b, "OptimizedBackend().matmul(a, b)")
for op in ("relu", "MATMUL", ""):
    expect_error(NotImplementedError, OptimizedBackend().dispatch, op, a, b,
                 call=f"OptimizedBackend().dispatch({op!r}, a, b)")
assert isinstance(_backend, OptimizedBackend), (
    "_backend should be an OptimizedBackend instance")
a, b = random_matrix(7, 3, seed=13), random_matrix(3, 5, seed=14)
ops = dispatched_ops(lambda: check_matmul(matmul(a, b), a, b, "matmul(7x3, 3x5)"))
assert ops == ["matmul"], (
    f"matmul(7x3, 3x5) should call _backend.dispatch('matmul', a, b) exactly once; the module "
    f"backend dispatched {ops}")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "backend_speed", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Two questions: what does the backend add to matmul_numpy, and does matmul reach NumPy's speed?
# A dispatch costs well under a microsecond; at 128x128 the product takes about 45 µs. The
# reference backend measured 0.85-1.2x against matmul_numpy with both cores busy (CPU time); one
# that does the work 3 times measured 1.8-2.1x: 1.5x splits them.
a, b = random_matrix(128, 128, seed=1), random_matrix(128, 128, seed=2)
check_matmul(matmul(a, b), a, b, "matmul(128x128, 128x128)")
ratio = speed_ratio(matmul, matmul_numpy, a, b, at_most=1.5)
report_timing("backend_overhead_128", ratio, 1.5)
assert ratio <= 1.5, (
    f"matmul through the backend takes {ratio:.2f}x as long as matmul_numpy at 128x128 (limit "
    f"1.5x): the backend should call matmul_numpy directly, without copies or the blocked path")

# Against np.matmul itself, as numpy_speed times matmul_numpy: a backend whose fast path is
# Python-looped tiles or a detour through float64 measured 2 to 3.4x.
a, b = random_matrix(256, 256, seed=5), random_matrix(256, 256, seed=6)
ratio = speed_ratio(matmul, np.matmul, a, b, at_most=1.5)
report_timing("backend_vs_np_matmul_256", ratio, 1.5)
assert ratio <= 1.5, (
    f"matmul through the backend takes {ratio:.2f}x as long as np.matmul at 256x256 (limit 1.5x): "
    f"its fast path should be NumPy's product as it is (matmul_numpy), without loops over tiles, "
    f"copies or dtype conversions")

### BEGIN HIDDEN TESTS
a, b = random_matrix(256, 256, seed=3), random_matrix(256, 256, seed=4)
ratio = speed_ratio(matmul, matmul_numpy, a, b, at_most=1.5)
report_timing("backend_overhead_256", ratio, 1.5)
assert ratio <= 1.5, (
    f"matmul through the backend takes {ratio:.2f}x as long as matmul_numpy at 256x256 (limit "
    f"1.5x): keep dispatch cheap (no copies, conversions or the blocked path)")

a, b = random_matrix(512, 384, seed=11), random_matrix(384, 448, seed=12)
ratio = speed_ratio(matmul, np.matmul, a, b, at_most=1.5)
report_timing("backend_vs_np_matmul_512", ratio, 1.5)
assert ratio <= 1.5, (
    f"matmul through the backend takes {ratio:.2f}x as long as np.matmul at 512x384 @ 384x448 "
    f"(limit 1.5x): its fast path should be NumPy's product as it is (matmul_numpy), without "
    f"loops over tiles, copies or dtype conversions")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 5: real ML workloads through the backend
#
# Matrix products are most of the arithmetic in the three model families you have met:
#
# - **MLP**: a batch of 32 inputs of width 256 through a hidden layer of 128 units (ReLU) to 64
#   outputs: `relu(x @ w1) @ w2`, shapes `32x256 @ 256x128`, then `32x128 @ 128x64`.
# - **Convolution as a matrix product (im2col)**: a 3x3 convolution over a 32x32 RGB image with 64
#   filters. Each of the 1024 output positions gets its 3x3x3 = 27 input values unrolled into one
#   row, and the convolution becomes `1024x27 @ 27x64`.
# - **Attention scores**: for a sequence of 128 tokens with model width 256, every query is compared
#   with every key: `Q @ K.T` (`128x256 @ 256x128`), scaled by $1/\sqrt{d}$ with $d$ the width of
#   the queries and keys (here $1/\sqrt{256}$; compute it from the inputs).
#
# **Implement** the three functions below with your `matmul` (not `@` or `np.dot`), so that every
# product goes through the backend: the tests count the products `_backend` dispatches, 2 for the
# MLP and 1 each for the others. Only the products: ReLU, the transpose and the scale stay NumPy.

# %% nbgrader={"grade": false, "grade_id": "models_impl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mlp_forward(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """Two-layer MLP: relu(x @ w1) @ w2, both products through matmul()."""
    ### BEGIN SOLUTION
    hidden = np.maximum(matmul(x, w1), 0)
    return matmul(hidden, w2)
    ### END SOLUTION


def conv_im2col(patches: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """A convolution in im2col form: one row of patches per output position, times the filters."""
    ### BEGIN SOLUTION
    return matmul(patches, filters)
    ### END SOLUTION


def attention_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Scaled dot-product scores: q @ k.T / sqrt(width), through matmul()."""
    ### BEGIN SOLUTION
    return matmul(q, k.T) / np.sqrt(q.shape[1])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "models_workloads", "locked": true, "points": 15, "schema_version": 3, "solution": false, "task": false}
x, w1, w2 = random_matrix(32, 256, seed=1), random_matrix(256, 128, seed=2), random_matrix(128, 64, seed=3)
out = mlp_forward(x, w1, w2)
expected = np.maximum(x @ w1, 0) @ w2
assert getattr(out, "shape", None) == (32, 64), (
    f"mlp_forward should return 32x64 (batch x outputs), got {getattr(out, 'shape', out)}")
assert np.allclose(out, expected, rtol=1e-4, atol=1e-2), (
    "mlp_forward values differ from relu(x @ w1) @ w2: apply ReLU (np.maximum(h, 0)) between "
    "the two products, not after the second")

patches, filters = random_matrix(1024, 27, seed=4), random_matrix(27, 64, seed=5)
out = conv_im2col(patches, filters)
assert getattr(out, "shape", None) == (1024, 64), (
    f"conv_im2col should return 1024x64 (positions x filters), got {getattr(out, 'shape', out)}")
assert np.allclose(out, patches @ filters, rtol=1e-4, atol=1e-3), (
    "conv_im2col values differ from patches @ filters")

q, k = random_matrix(128, 256, seed=6), random_matrix(128, 256, seed=7)
out = attention_scores(q, k)
assert getattr(out, "shape", None) == (128, 128), (
    f"attention_scores should return 128x128 (queries x keys), got {getattr(out, 'shape', out)}: "
    f"multiply q by the transpose of k")
assert np.allclose(out, q @ k.T / 16, rtol=1e-4, atol=1e-3), (
    "attention_scores values differ from q @ k.T / sqrt(256): check the transpose and the scale")
small_q, small_k = random_matrix(3, 100, seed=15), random_matrix(4, 100, seed=16)
assert np.allclose(attention_scores(small_q, small_k), small_q @ small_k.T / 10, rtol=1e-4,
                   atol=1e-3), (
    "attention_scores is wrong for 3 queries, 4 keys and width 100: scale by 1/sqrt(width) of the "
    "inputs (here 10), not by a fixed number")

# Every product through the backend, counted at these sizes here and at others below.
backend_works = dispatched_ops(lambda: matmul(q, k.T)) == ["matmul"]
for name, call, expected_ops in [
    ("mlp_forward", lambda: mlp_forward(x, w1, w2), 2),
    ("conv_im2col", lambda: conv_im2col(patches, filters), 1),
    ("attention_scores", lambda: attention_scores(q, k), 1),
]:
    ops = dispatched_ops(call)
    assert ops.count("matmul") == expected_ops, (
        f"{name} should make {expected_ops} product(s) through matmul() and the backend; the "
        f"backend dispatched {len(ops)}: " + (
            "use matmul(...) for each product instead of @ or np.dot" if backend_works else
            "your matmul() does not call _backend.dispatch('matmul', ...), so no product reaches "
            "the backend: fix matmul in Part 4 first"))

### BEGIN HIDDEN TESTS

# Other sizes of the same workloads, every product still through the backend.
x, w1, w2 = random_matrix(3, 10, seed=8), random_matrix(10, 4, seed=9), random_matrix(4, 2, seed=10)
patches, filters = random_matrix(50, 12, seed=13), random_matrix(12, 6, seed=14)
for name, call, expected_ops in [
    ("mlp_forward", lambda: mlp_forward(x, w1, w2), 2),
    ("conv_im2col", lambda: conv_im2col(patches, filters), 1),
]:
    ops = dispatched_ops(call)
    assert ops.count("matmul") == expected_ops, (
        f"{name} at other sizes should still make {expected_ops} product(s) through matmul(); "
        f"the backend dispatched {len(ops)}: use matmul(...) for every product, whatever the size")
assert np.allclose(conv_im2col(patches, filters), patches @ filters, rtol=1e-4, atol=1e-3), (
    "conv_im2col is wrong for 50 positions, 12 values per patch and 6 filters")
assert np.allclose(mlp_forward(x, w1, w2), np.maximum(x @ w1, 0) @ w2, rtol=1e-4, atol=1e-3), (
    "mlp_forward is wrong for a 3x10 batch with 4 hidden units and 2 outputs")
q, k = random_matrix(5, 64, seed=11), random_matrix(7, 64, seed=12)
assert np.allclose(attention_scores(q, k), q @ k.T / 8, rtol=1e-4, atol=1e-3), (
    "attention_scores is wrong for 5 queries, 7 keys and width 64: scale by 1/sqrt(width)")
### END HIDDEN TESTS

# %% [markdown]
# ### See it: the workloads through each path

# %%
workloads = {
    "MLP 32x256 -> 128 -> 64": lambda mm: mm(np.maximum(mm(x, w1), 0), w2),
    "im2col conv 1024x27 @ 27x64": lambda mm: mm(patches, filters),
    "attention 128x256 @ 256x128": lambda mm: mm(q, k.T),
}
x, w1, w2 = random_matrix(32, 256, seed=1), random_matrix(256, 128, seed=2), random_matrix(128, 64, seed=3)
patches, filters = random_matrix(1024, 27, seed=4), random_matrix(27, 64, seed=5)
q, k = random_matrix(128, 256, seed=6), random_matrix(128, 256, seed=7)
for label, run in workloads.items():
    blocked_s = best_time(run, matmul_blocked, repeats=3)
    backend_s = best_time(run, matmul, repeats=3)
    print(f"{label:30s} blocked {blocked_s * 1e3:7.3f} ms   backend {backend_s * 1e3:7.3f} ms")

# %% [markdown]
# ## ML systems thinking
#
# Answer each question in the cell below it, in a few sentences with numbers. Use your own
# measurements from this notebook where they help. Each answer is graded by hand.

# %% [markdown] nbgrader={"grade": false, "grade_id": "question_memory_access_prompt", "locked": true, "schema_version": 3, "solution": false, "task": false}
# **Question 1: memory access of the naive loop (5 points).** In `matmul_naive` the innermost loop
# reads `b[p, j]` with `p` changing fastest. Sketch how those reads move through memory for a
# row-major 1000x1000 float32 matrix with 64-byte cache lines, estimate how many cache lines the
# reads of `b` touch during the whole product, and explain how the cost grows with the matrix size.
#
# ### BEGIN MARK SCHEME
# - 2 pts: consecutive reads of `b[p, j]` are one row apart: a stride of n * 4 = 4000 bytes, so
#   every read lands on a new 64-byte line (16 floats per line, 15 of them wasted).
# - 2 pts: about one line per multiply-add once `b` (4 MB) no longer fits in cache: n^3 = 10^9 line
#   loads for n = 1000, against n^2 / 16 = 62,500 lines if `b` were read in order.
# - 1 pt: the cost grows as n^3 (polynomial, not exponential); the misses per operation jump once
#   a column of `b`'s lines no longer stays in cache. Accept a correct argument in other words.
# ### END MARK SCHEME

# %% [markdown] nbgrader={"grade": true, "grade_id": "question_memory_access", "locked": false, "points": 5, "schema_version": 3, "solution": true, "task": false}
# *Your answer to Question 1 (memory access of the naive loop):*
#
# ### BEGIN SOLUTION
# Reading `b[p, j]` with `p` fastest walks down a column: each step skips a row of 1000 floats, i.e.
# 4000 bytes, so each read is on a different 64-byte line and uses 4 of its 64 bytes. `b` is 4 MB,
# larger than L1/L2, so lines are evicted before the loop comes back for the next column: about one
# line fetch per multiply-add, 10^9 in total, where reading `b` in order would need 62,500. The work
# and the misses both grow as n^3; beyond the size where `b`'s working set leaves the cache, the
# time per operation also rises, so large matrices are slower per flop, not exponentially slower.
# ### END SOLUTION

# %% [markdown] nbgrader={"grade": false, "grade_id": "question_cache_hierarchy_prompt", "locked": true, "schema_version": 3, "solution": false, "task": false}
# **Question 2: choosing the tile (5 points).** For 64x64 float32 tiles compute (a) the memory three
# tiles occupy, (b) which of a 32 KiB L1 and a 256 KiB L2 cache holds them, and (c) how many times
# each loaded value is reused within one tile product. (d) What changes with 256x256 tiles?
# Check your numbers with `calculate_cache_footprint`.
#
# ### BEGIN MARK SCHEME
# - 1 pt (a): 64 * 64 * 4 = 16 KiB per tile, 48 KiB for three.
# - 1 pt (b): does not fit in L1 (48 > 32 KiB), fits in L2 (48 <= 256 KiB).
# - 1 pt (c): each value of a tile of a or b takes part in 64 multiply-adds (one per row or column
#   of the other tile): 64 reuses per load, against about 1 in the naive loop.
# - 2 pts (d): 256 KiB per tile, 768 KiB for three: more than L2, so tiles spill to L3 or memory and
#   reuse no longer comes from the fast cache; a 32x32 tile (12 KiB) fits in L1. Full marks need
#   the trade-off: bigger tiles mean fewer Python-level loop steps here, smaller tiles fit closer caches.
# ### END MARK SCHEME

# %% [markdown] nbgrader={"grade": true, "grade_id": "question_cache_hierarchy", "locked": false, "points": 5, "schema_version": 3, "solution": true, "task": false}
# *Your answer to Question 2 (choosing the tile):*
#
# ### BEGIN SOLUTION
# (a) One tile is 64 * 64 * 4 = 16,384 bytes; three are 49,152 bytes (48 KiB). (b) That is more than
# 32 KiB, so not L1, but well within 256 KiB of L2. (c) In one tile product every value of the `a`
# tile meets 64 values of the `b` tile, and vice versa: 64 uses per load. (d) 256x256 tiles take
# 256 KiB each, 768 KiB for three: they spill out of L2 into L3, so the reuse is served by a slower
# level. A 32x32 tile (12 KiB for three) fits in L1, but in Python it means 8 times as many tile steps.
# ### END SOLUTION

# %% [markdown] nbgrader={"grade": false, "grade_id": "question_production_library_prompt", "locked": true, "schema_version": 3, "solution": false, "task": false}
# **Question 3: why use the library (5 points).** Your blocked product was a few times slower than
# NumPy (measure it: the plot shows the gap). Name three things BLAS does that your blocked version
# does not, and estimate what it would cost you to match them yourself. When is writing your own
# kernel worth it for an ML engineer?
#
# ### BEGIN MARK SCHEME
# - 3 pts: any three, each correctly explained: SIMD vector instructions / fused multiply-add;
#   register blocking (a micro-kernel holding a block of c in registers); packing tiles into
#   contiguous buffers in kernel order; several cache levels of tiling tuned per CPU; multi-threading;
#   no Python overhead per tile; assembly written per micro-architecture.
# - 1 pt: the cost side: person-months to years of expert work per CPU family, plus testing and
#   maintenance, for a result the library already gives (our measured gap: 2.5-3x at one thread).
# - 1 pt: worth it only when no library covers the case: a fused or unusual operation, a new
#   hardware target, a shape the library handles badly, measured first with a profiler.
# ### END MARK SCHEME

# %% [markdown] nbgrader={"grade": true, "grade_id": "question_production_library", "locked": false, "points": 5, "schema_version": 3, "solution": true, "task": false}
# *Your answer to Question 3 (why use the library):*
#
# ### BEGIN SOLUTION
# My blocked version was about 3x slower than NumPy at 256 and above. OpenBLAS (1) runs hand-written
# SIMD kernels with fused multiply-adds, several products per instruction; (2) packs each tile into a
# contiguous buffer in the order its kernel reads it and keeps a block of `c` in registers; (3) tiles
# for L1, L2 and L3 with sizes tuned per CPU, and can use all cores. Matching that is years of expert
# work per CPU family plus upkeep, for a gain the library already gives. Writing a kernel pays only
# for an operation no library covers well (a fused op, a new accelerator), after profiling shows it matters.
# ### END SOLUTION

# %% [markdown] nbgrader={"grade": false, "grade_id": "question_workload_strategy_prompt", "locked": true, "schema_version": 3, "solution": false, "task": false}
# **Question 4: accelerating whole models (5 points).** For the MLP, the im2col convolution and the
# attention scores you ran: (a) which matrix products dominate, (b) which gain most from a fast
# backend, and (c) whether each is limited by arithmetic or by memory traffic. (d) How does knowing
# the whole spectrum, from loops to BLAS, change what you would optimise first?
#
# ### BEGIN MARK SCHEME
# - 1 pt (a): MLP: 32x256 @ 256x128 (about 1.0 M multiply-adds) then 32x128 @ 128x64 (0.26 M);
#   conv: 1024x27 @ 27x64 (1.8 M); attention: 128x256 @ 256x128 (4.2 M).
# - 1 pt (b): the largest and squarest products (attention, the first MLP layer) gain most; the
#   conv product has a thin inner dimension (27), so less reuse per load.
# - 2 pts (c): compares multiply-adds with bytes moved (arithmetic intensity): small batch MLP and
#   the k=27 conv move much data per flop (closer to memory-bound); attention scores and large
#   batches are compute-bound. Accept a reasoned estimate.
# - 1 pt (d): measure first; use the library for the dense products, spend effort on data movement,
#   layout and fusing the surrounding element-wise work rather than re-writing matmul.
# ### END MARK SCHEME

# %% [markdown] nbgrader={"grade": true, "grade_id": "question_workload_strategy", "locked": false, "points": 5, "schema_version": 3, "solution": true, "task": false}
# *Your answer to Question 4 (accelerating whole models):*
#
# ### BEGIN SOLUTION
# (a) MLP: the first layer 32x256 @ 256x128 (1.05 M multiply-adds) dominates the second (0.26 M);
# conv: the single 1024x27 @ 27x64 product (1.8 M); attention: 128x256 @ 256x128 (4.2 M). (b) The
# attention product and the first MLP layer gain most: large on every side, so BLAS reuses each load
# many times. (c) With k = 27 the conv reads a lot of data per multiply-add and leans towards memory
# limits, as does a 32-row MLP batch; attention is compute-bound. (d) Measure, hand dense products
# to the library, then work on data movement and fusing the cheap element-wise steps around them.
# ### END SOLUTION

# %% [markdown]
# ## What you built
#
# | implementation      | 256x256 on one core (grading machine) | what it teaches                      |
# |---------------------|---------------------------------------|--------------------------------------|
# | `matmul_naive`      | about 3.5 s (64x its 64x64 time)      | the algorithm, and interpreter cost  |
# | `matmul_blocked`    | about 0.6 ms                          | tiling and reuse in cache            |
# | `matmul_numpy`      | about 0.3 ms                          | what a tuned library adds            |
# | `matmul` (backend)  | the same as NumPy                     | one API, the fast path behind it     |
#
# The largest step, by far, is leaving the Python interpreter; the step from your tiles to BLAS is
# the one hardware specialists spend careers on.
