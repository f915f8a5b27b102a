"""How the acceleration assignment is graded beyond its test cells: the engine reads this file.

Titles of the parts and timing tests, the leaderboard, the speed profile feedback shows (and what
its figures mean for a student), the demo class, the slow variants `calibrate` tries, and two
rules that right answers alone do not show, judged over every call of student code in grading:

- `matmul_naive` must multiply with its own loops: no observed call may make a library product.
  Code that converts its inputs to plain arrays (np.asarray) multiplies out of sight of the log,
  so it is also timed against a plain triple loop (on 40x40 matrices, and on any larger shape the
  tests used): Python loops, in any style, are at most about 10x faster than that loop (list
  comprehensions, measured), any library product thousands of times. The limit is 50x.
- `matmul_blocked` must never multiply operands larger than its `block_size` (64 when not given),
  in any observed call. The log lives in the worker, where student code could empty or forge
  it; so a call that logged no product while running at library speed, and the configuration
  the timing tests used in any case, must also slow down from one whole tile to tiles of its
  block size, as tiling does: honest tilings of 4 or more tiles measured 1.9-26x slower than one
  tile (with `@`, np.dot, out= buffers; README: tiling rule), an untiled product 0.95-1.02x.
  The limit is 1.4x. "Library speed" is within 20x of np.matmul on the same shapes, timed the
  same way; below 100,000 multiply-adds the cost of a call itself blurs that (a 1x50x40
  product took 21 us through the call path, Python loops 0.4 ms: 19x), so such calls are left to
  the log. Python loops take 14 ns or more per multiply-add (measured), 1.4 ms at that size.
"""
from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np

from autograder.assignment import Assignment, DemoStudent, Leaderboard, SlowVariant
from autograder.notebook import definitions
from autograder.trusted import profile
from autograder.trusted.rules import (Rule, call_text, largest_dimension, matrix_shapes,
                                      product_text)

NAIVE_SPEED_LIMIT = 50        # times faster than a plain triple loop
NAIVE_PROBE = (40, 40, 40)
NAIVE_MIN_WORK = 5_000        # multiply-adds: smaller shapes are too quick to time apart
DEFAULT_BLOCK = 64            # matmul_blocked's block_size when a call does not give one
LIBRARY_SPEED = 20            # "library speed": within this factor of np.matmul
TILE_SLOWDOWN = 1.4           # t(tiles of block_size) / t(one tile): at least this when tiling
MIN_TILES = 4                 # fewer tiles than this: too little difference to time
MIN_WORK = 100_000            # multiply-adds: below this, the cost of a call hides the product's
CALL_OVERHEAD = 0.002         # seconds a single observed request may add to a call's own time
MAX_TIMED_CHECKS = 3          # configurations timed per rule, at most


def _operands(m: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh random float32 operands of an (m, k) @ (k, n) product."""
    rng = np.random.default_rng()
    return (rng.standard_normal((m, k), dtype=np.float32),
            rng.standard_normal((k, n), dtype=np.float32))


# The reference code of the hidden timing tests, taken from the notebook beside this file (the
# source notebook here, the grading template in the Gradescope bundle): one copy of each.
_REFERENCES = definitions(nbformat.read(Path(__file__).with_name("acceleration.ipynb"), 4),
                          "blocked_speed", ("_reference_naive", "_reference_blocked"),
                          {"np": np})
_triple_loop = _REFERENCES["_reference_naive"]
_reference_tiles = _REFERENCES["_reference_blocked"]


class NaiveUsesOwnLoops(Rule):
    def __init__(self):
        super().__init__("naive", "matmul_naive")

    def probe(self, worker, meter):
        naive = worker.proxy_for(self.function, "function")
        try:
            naive(*_operands(12, 10, 8))
        except Exception:  # noqa: BLE001 - failures are the tests' business, not a rule's
            return None
        return self.check(worker, meter)

    def check(self, worker, meter):
        observed = self.relevant(worker.observations)
        for observation in observed:
            if observation.products:
                return (f"{self._call(observation)} made a library matrix product "
                        f"({product_text(observation.products[0])}): the naive version must "
                        f"multiply with its own Python loops, so its tests earn no points")
        configs = {NAIVE_PROBE} | {s for o in observed if (s := matrix_shapes(o))
                                   and math.prod(s) >= NAIVE_MIN_WORK}
        for shapes in sorted(configs - self.checked, key=math.prod)[:MAX_TIMED_CHECKS]:
            self.checked.add(shapes)
            if (message := self._time(worker, meter, shapes)):
                return message
        return None

    def _call(self, observation) -> str:
        shapes = matrix_shapes(observation)
        return call_text(self.function, shapes) if shapes else f"{self.function}(...)"

    def _time(self, worker, meter, shapes) -> str | None:
        a, b = _operands(*shapes)
        naive = worker.proxy_for(self.function, "function")
        try:
            # Timed the other way round, the triple loop against the student's code, so that the
            # limit is an upper one: the timing stops as soon as the verdict is certain.
            speedup = meter.speed_ratio(_triple_loop, naive, a, b, rounds=3,
                                        at_most=NAIVE_SPEED_LIMIT, record=False)
        except Exception:  # noqa: BLE001
            return None
        if speedup > NAIVE_SPEED_LIMIT:
            return (f"{call_text(self.function, shapes)} is {speedup:,.0f}x faster than a plain "
                    f"triple loop (the limit is {NAIVE_SPEED_LIMIT}x): only a library matrix "
                    f"product is that fast, and the naive version must use its own loops, so its "
                    f"tests earn no points")
        return None


class BlockedReallyTiles(Rule):
    def __init__(self):
        super().__init__("blocked", "matmul_blocked")

    def probe(self, worker, meter):
        blocked = worker.proxy_for(self.function, "function")
        # larger than the default block in every dimension, by a random amount
        default = tuple(int(x) for x in np.random.default_rng().integers(
            DEFAULT_BLOCK + 1, 2 * DEFAULT_BLOCK + 33, 3))
        for shapes, kwargs in [((100, 90, 70), {"block_size": 16}), (default, {})]:
            try:
                blocked(*_operands(*shapes), **kwargs)
            except Exception:  # noqa: BLE001 - failures are the tests' business
                continue
        return self.check(worker, meter)

    @staticmethod
    def block_size(observation) -> tuple[int | None, bool]:
        """(block size of the call, whether the call gave it)."""
        given = observation.arg(2, "block_size", None)
        if given is None:
            return DEFAULT_BLOCK, False
        return (given, True) if type(given) is int and given >= 1 else (None, True)

    def _call(self, observation, shapes) -> str:
        block, given = self.block_size(observation)
        text = call_text(self.function, shapes, f", block_size={block}" if given else "")
        return text if given else f"{text} at the default block_size={block}"

    def check(self, worker, meter):
        observed = self.relevant(worker.observations)
        hidden = {}
        for observation in observed:
            shapes = matrix_shapes(observation)
            block, _ = self.block_size(observation)
            if shapes is None or block is None:
                continue
            for product in observation.products:
                if largest_dimension(product) > block:
                    return (f"{self._call(observation, shapes)} multiplied operands larger than "
                            f"the block size ({product_text(product)}): it must multiply tile "
                            f"by tile at every block size, so its tests earn no points")
            # Timed calls are where hiding a product pays, and a log can be forged inside the
            # worker: so those are timed in any case, other calls when they logged nothing.
            tiles = math.prod(-(-d // block) for d in shapes)
            if (observation.timed or not observation.products) and tiles >= MIN_TILES \
                    and math.prod(shapes) >= MIN_WORK:
                key = (*shapes, block)
                first = hidden.setdefault(key, observation)
                hidden[key] = observation if observation.timed and not first.timed else first
        order = sorted(hidden.items(), key=lambda kv: (not kv[1].timed, -math.prod(kv[0][:3])))
        timed = 0
        for key, observation in order:
            if key in self.checked or timed >= MAX_TIMED_CHECKS:
                continue
            self.checked.add(key)
            message = self._time(worker, meter, observation, key)
            timed += message != ""
            if message:
                return message
        return None

    def _time(self, worker, meter, observation, key) -> str | None:
        """Time one configuration whose products were hidden: "" when it was not worth timing."""
        m, k, n, block = key
        a, b = _operands(m, k, n)
        library = meter.seconds_per_call(np.matmul, (a, b))
        per_call = observation.cpu_seconds / max(observation.calls, 1)
        if per_call > LIBRARY_SPEED * library + CALL_OVERHEAD:
            return ""     # far from library speed: nothing can hide there
        blocked = worker.proxy_for(self.function, "function")
        whole = max(m, k, n)
        try:
            measured = meter.compare({"library": (np.matmul, {}),
                                      "tiles": (blocked, {"block_size": block}),
                                      "whole": (blocked, {"block_size": whole})},
                                     (a, b), rounds=5, limit=LIBRARY_SPEED * 3)
        except Exception:  # noqa: BLE001 - too slow, or failing: nothing hides at library speed
            return ""
        if measured is None:
            return ""
        library_ratio = measured["tiles"] / measured["library"]
        slowdown = measured["tiles"] / measured["whole"]
        if library_ratio <= LIBRARY_SPEED and slowdown < TILE_SLOWDOWN:
            tiles = math.prod(-(-d // block) for d in (m, k, n))
            return (f"{self._call(observation, (m, k, n))} runs at library speed "
                    f"({library_ratio:.1f}x np.matmul) and takes about as long as with one "
                    f"{whole}x{whole} tile "
                    f"({slowdown:.2f}x; cutting it into {tiles} tiles takes at least "
                    f"{TILE_SLOWDOWN:g}x as long): it does not tile at block_size={block}, so its "
                    f"tests earn no points")
        return None


# Slower styles of matmul_numpy a student might write, all with right results: `calibrate` and
# the noise benchmark check that numpy_speed fails each of them.
TILED_NUMPY = '''
def matmul_numpy(a, b):
    """Python loops over 64x64 tiles, each tile product with @."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"incompatible shapes {a.shape} @ {b.shape}")
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.result_type(a, b))
    for i in range(0, m, 64):
        for j in range(0, n, 64):
            for p in range(0, k, 64):
                c[i:i + 64, j:j + 64] += a[i:i + 64, p:p + 64] @ b[p:p + 64, j:j + 64]
    return c
'''

TILED_BACKEND = TILED_NUMPY.replace("def matmul_numpy(a, b):", "def _tiled_product(a, b):") + '''

OptimizedBackend.matmul = lambda self, a, b: _tiled_product(a, b)
'''

FLOAT64_NUMPY = '''
def matmul_numpy(a, b):
    """The product in float64, returned in the inputs' dtype."""
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.result_type(a, b))
'''


# What feedback shows of each submission's speed: its naive loops against a plain triple loop
# at 16x16 to 64x64 (at 512x512 they take some 19 s), its blocked and NumPy products against a
# reference tiling and NumPy's own product called the same way, from 64x64 to 512x512.
PROFILE = profile.ProfileSpec(sizes=(64, 128, 256, 512), focus=256, functions=(
    # A 64x64 call of Python loops takes about 0.1 s, and each sample is one such call: one
    # sample, after the warm-up call, does for a figure that decides no points.
    profile.ProfiledFunction("matmul_naive", "naive", "plain triple loop", _triple_loop,
                             sizes=(16, 32, 64), rounds=1),
    profile.ProfiledFunction("matmul_blocked", "blocked", "reference tiling",
                             _reference_tiles),
    profile.ProfiledFunction("matmul_numpy", "numpy")))


def explain(perf) -> list[str]:
    """What the speed figures mean, in a sentence or two for the student.

    Fractions are of the attainable peak (the fastest np.matmul of the grading machine, in a bare
    loop); NumPy's own product called the way the grader calls student code shows what that call
    path costs, so it is what the student's products are compared with.
    """
    size, lines = PROFILE.focus, []
    library = perf.gflops(profile.LIBRARY, size)
    library_share = perf.fraction(profile.LIBRARY, size)
    naive_size = perf.quoted_size("matmul_naive", size)
    naive = perf.gflops("matmul_naive", naive_size) if naive_size else None
    if naive and perf.attainable:
        lines.append(f"Your triple loop does {naive:.3g} GFLOP/s at {naive_size}x{naive_size}, "
                     f"1/{perf.attainable / naive:,.0f} of the attainable peak: every "
                     f"multiply-add is a round trip through the Python interpreter. On the "
                     f"roofline it sits far below every roof, held back by neither memory nor "
                     f"the core; Parts 2 and 3 close that gap.")
    blocked = perf.gflops("matmul_blocked", size)
    if blocked and library:
        share = blocked / library
        reference = perf.gflops(profile.reference_name("matmul_blocked"), size)
        ref = f"; the reference tiling: {reference / library:.0%}" if reference else ""
        said = (f"Your tiles run at {share:.0%} of the speed of NumPy's own product called the "
                f"same way at {size}x{size} ({perf.fraction('matmul_blocked', size):.0%} of the "
                f"attainable peak{ref})")
        if share >= 0.8:
            lines.append(f"{said}: at this size the library's own tricks buy little more; the "
                         f"plot shows how the gap grows with the size.")
        elif share >= 0.15:
            lines.append(f"{said}: the remaining gap is what BLAS does inside a tile (SIMD, "
                         f"packing, register blocking) and Python's cost per tile; see "
                         f"question 3.")
        else:
            lines.append(f"{said}: most of the time goes to Python, not to multiplying; whole "
                         f"tiles multiplied with @, without per-element loops or copies, close "
                         f"most of that gap (Part 2).")
    numpy = perf.fraction("matmul_numpy", size)
    if numpy is not None and library_share:
        if numpy >= 0.7 * library_share:
            lines.append(f"matmul_numpy runs at {numpy:.0%} of the attainable peak at "
                         f"{size}x{size}; NumPy's own product called the same way reaches "
                         f"{library_share:.0%}: the difference from 100% is the grader's call "
                         f"path, not your code.")
        else:
            lines.append(f"matmul_numpy reaches {numpy:.0%} of the attainable peak where "
                         f"NumPy's own product called the same way reaches {library_share:.0%}: "
                         f"look for copies or dtype conversions around a @ b.")
    return lines


ASSIGNMENT = Assignment(
    name="acceleration",
    title="Hardware acceleration: from triple loops to a fast-path backend",
    short_title="Hardware acceleration",
    parts={
        "naive": "Part 1: naive loops",
        "blocked": "Part 2: blocked matmul",
        "footprint": "Part 2: cache footprint",
        "numpy": "Part 3: NumPy",
        "backend": "Part 4: backend",
        "models": "Part 5: ML workloads",
        "spectrum": "Part 3: the speed spectrum",
        "question": "Written answers",
    },
    timing_titles={
        "blocked_vs_numpy_256": "matmul_blocked time ÷ NumPy time, 256×256",
        "blocked_speedup_over_naive_64": "triple-loop time ÷ matmul_blocked time, 64×64",
        "blocked_vs_reference_256": "matmul_blocked time ÷ reference tiled time, 256×256",
        "numpy_vs_np_matmul_256": "matmul_numpy time ÷ np.matmul time, 256×256",
        "numpy_vs_np_matmul_512": "matmul_numpy time ÷ np.matmul time, 512×384 @ 384×448",
        "backend_overhead_128": "matmul time ÷ matmul_numpy time, 128×128",
        "backend_overhead_256": "matmul time ÷ matmul_numpy time, 256×256",
        "backend_vs_np_matmul_256": "matmul time ÷ np.matmul time, 256×256",
        "backend_vs_np_matmul_512": "matmul time ÷ np.matmul time, 512×384 @ 384×448",
    },
    leaderboard=Leaderboard(
        timing="blocked_vs_numpy_256", title="Blocked vs NumPy (lower is faster)",
        axis="times slower than NumPy at 256x256", requires="blocked_correct",
        measured=("matmul_blocked", "np.matmul"),
        also="blocked_speedup_over_naive_64",
        also_title="times faster than the naive loop (64x64)"),
    rules=lambda: [NaiveUsesOwnLoops(), BlockedReallyTiles()],
    profile=PROFILE,
    explain=explain,
    dispatch_log="_backend",
    calibration=(SlowVariant("blocked_speed", "blocked_impl", "matmul_blocked"),
                 SlowVariant("backend_speed", "backend_impl", "OptimizedBackend.matmul"),
                 SlowVariant("numpy_speed", "numpy_impl", "matmul_numpy"),
                 SlowVariant("numpy_speed", "numpy_impl", "matmul_numpy", TILED_NUMPY,
                             "matmul_numpy as Python-looped 64x64 tiles"),
                 SlowVariant("numpy_speed", "numpy_impl", "matmul_numpy", FLOAT64_NUMPY,
                             "matmul_numpy through float64 and back"),
                 SlowVariant("backend_speed", "backend_impl", "OptimizedBackend.matmul",
                             TILED_BACKEND, "a backend whose fast path is Python-looped tiles")),
    demo=(DemoStudent("lovelaceada", "1001", ("naive", "blocked", "footprint", "numpy",
                                              "backend", "models", "spectrum", "question")),
          DemoStudent("hoppergrace", "1002", ("naive", "numpy", "footprint")),
          DemoStudent("turingalan", "1003", ()),
          DemoStudent("johnsonkatherine", "1004", ("naive", "blocked", "footprint", "numpy",
                                                   "backend", "models", "spectrum", "question"),
                      late=True)),
    packages=("numpy", "threadpoolctl", "matplotlib"),
    deferred_imports=("matplotlib.pyplot",),   # for the plots, which no test draws
)
