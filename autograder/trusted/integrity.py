"""Rules of the assignment that right answers alone do not show, judged on every call made.

Every call of student code in grading is observed (`remote.Observation`): the shapes it got, the
library matrix products its tracked arrays took part in, and its CPU time. A rule looks at all of
them, the test calls and the timed calls included, so a function cannot behave one way for the
calls a rule makes and another way for the calls the tests make. Each rule also makes a few probe
calls of its own before the tests, so that a clear breach is known (and costs no test time) early.

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

A broken rule costs every test of its part, with a message that says what was seen and why. A
function that is missing, unwritten or wrong is left to the tests themselves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import profile, remote, speed

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


def _matrix(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _triple_loop(a, b):
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


def _shapes(observation: remote.Observation) -> tuple[int, int, int] | None:
    """(m, k, n) of a call on an m x k and a k x n matrix, else None."""
    if len(observation.args) < 2:
        return None
    left, right = observation.args[0], observation.args[1]
    if not all(isinstance(x, dict) and len(x.get("shape", ())) == 2 for x in (left, right)):
        return None
    (m, k), (k2, n) = left["shape"], right["shape"]
    return (m, k, n) if k == k2 else None


def _product_text(product: list) -> str:
    op, left, right = product[0], product[1], product[2] if len(product) > 3 else []
    return f"{op} on shapes {tuple(left)} and {tuple(right)}"


def _call_text(name: str, shapes, extra: str = "") -> str:
    m, k, n = shapes
    return f"{name}({m}x{k}, {k}x{n}{extra})"


@dataclass
class Rule:
    """One rule: probe calls before the tests, a verdict over every observed call after."""
    part: str
    function: str
    checked: set = field(default_factory=set)      # configurations already timed

    def relevant(self, observations) -> list[remote.Observation]:
        return [o for o in observations if o.name == self.function and o.outcome == "returned"]

    def probe(self, worker: remote.Worker, meter: speed.SpeedMeter) -> str | None:
        raise NotImplementedError

    def check(self, worker: remote.Worker, meter: speed.SpeedMeter) -> str | None:
        raise NotImplementedError


class NaiveUsesOwnLoops(Rule):
    def __init__(self):
        super().__init__("naive", "matmul_naive")

    def probe(self, worker, meter):
        naive = worker.proxy_for(self.function, "function")
        rng = np.random.default_rng()
        try:
            naive(_matrix((12, 10), rng), _matrix((10, 8), rng))
        except Exception:  # noqa: BLE001 - failures are the tests' business, not a rule's
            return None
        return self.check(worker, meter)

    def check(self, worker, meter):
        observed = self.relevant(worker.observations)
        for observation in observed:
            if observation.products:
                return (f"{self._call(observation)} made a library matrix product "
                        f"({_product_text(observation.products[0])}): the naive version must "
                        f"multiply with its own Python loops, so its tests earn no points")
        configs = {NAIVE_PROBE} | {s for o in observed if (s := _shapes(o))
                                   and math.prod(s) >= NAIVE_MIN_WORK}
        for shapes in sorted(configs - self.checked, key=math.prod)[:MAX_TIMED_CHECKS]:
            self.checked.add(shapes)
            if (message := self._time(worker, meter, shapes)):
                return message
        return None

    def _call(self, observation) -> str:
        shapes = _shapes(observation)
        return _call_text(self.function, shapes) if shapes else f"{self.function}(...)"

    def _time(self, worker, meter, shapes) -> str | None:
        m, k, n = shapes
        rng = np.random.default_rng()
        a, b = _matrix((m, k), rng), _matrix((k, n), rng)
        naive = worker.proxy_for(self.function, "function")
        try:
            ratio = meter.speed_ratio(naive, _triple_loop, a, b, rounds=3, record=False)
        except Exception:  # noqa: BLE001
            return None
        if ratio * NAIVE_SPEED_LIMIT < 1:
            return (f"{_call_text(self.function, shapes)} is {1 / ratio:,.0f}x faster than a plain "
                    f"triple loop (the limit is {NAIVE_SPEED_LIMIT}x): only a library matrix "
                    f"product is that fast, and the naive version must use its own loops, so its "
                    f"tests earn no points")
        return None


class BlockedReallyTiles(Rule):
    def __init__(self):
        super().__init__("blocked", "matmul_blocked")

    def probe(self, worker, meter):
        blocked = worker.proxy_for(self.function, "function")
        rng = np.random.default_rng()
        m, k, n = (int(x) for x in rng.integers(DEFAULT_BLOCK + 1, 2 * DEFAULT_BLOCK + 33, 3))
        for (m, k, n), kwargs in [((100, 90, 70), {"block_size": 16}), ((m, k, n), {})]:
            try:
                blocked(_matrix((m, k), rng), _matrix((k, n), rng), **kwargs)
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
        text = _call_text(self.function, shapes, f", block_size={block}" if given else "")
        return text if given else f"{text} at the default block_size={block}"

    def check(self, worker, meter):
        observed = self.relevant(worker.observations)
        hidden = {}
        for observation in observed:
            shapes = _shapes(observation)
            block, _ = self.block_size(observation)
            if shapes is None or block is None:
                continue
            for product in observation.products:
                extent = max([0, *product[1], *(product[2] if len(product) > 3 else [])])
                if extent > block:
                    return (f"{self._call(observation, shapes)} multiplied operands larger than "
                            f"the block size ({_product_text(product)}): it must multiply tile "
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
        rng = np.random.default_rng()
        a, b = _matrix((m, k), rng), _matrix((k, n), rng)
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


def rules() -> list[Rule]:
    """Fresh rules for one submission (they remember what they have timed)."""
    return [NaiveUsesOwnLoops(), BlockedReallyTiles()]


def _reference_tiles(a, b, block_size=DEFAULT_BLOCK):
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


# What feedback shows of each submission's speed: its blocked and NumPy products against a
# reference tiling and the machine's one-core peak, from 64x64 to 512x512.
PROFILE = profile.ProfileSpec(sizes=(64, 128, 256, 512), functions=(
    profile.ProfiledFunction("matmul_blocked", "blocked", "reference tiling (64x64 tiles, @)",
                             _reference_tiles),
    profile.ProfiledFunction("matmul_numpy", "numpy")))
