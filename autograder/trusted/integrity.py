"""Rules of the assignment that right answers alone do not show, checked on the student's worker.

- `matmul_naive` must multiply with its own loops. The worker hands it arrays that log every
  library matrix product they take part in (`@`, np.dot, np.matmul, einsum, tensordot, inner, ...).
  A naive that first converts its inputs with np.asarray escapes that log, so its speed is checked
  too: against a plain triple loop, a Python-loop naive runs at most about 10x faster (list-based
  loops, measured), while any library product is thousands of times faster. The limit is 50x.
- `matmul_blocked` must never multiply operands larger than `block_size` in any dimension: every
  logged product is checked. When none is logged (pure-loop tiles, or inputs converted with
  np.asarray), a version that runs at library speed must still slow down when its tiles shrink:
  real 8x8 tiling of 128x128 matrices makes 4,096 tile products and took over 50x as long as one
  128x128 tile; ignoring `block_size` takes the same time either way. The limit is 3x.

A broken rule costs every test of that part, with a message that says which rule and why. A
function that is missing, unwritten or wrong is left to the tests themselves.
"""
from __future__ import annotations

import numpy as np

from . import remote

NAIVE_SPEED_LIMIT = 50        # times faster than a plain triple loop
TILE_SLOWDOWN_MINIMUM = 3     # t(8x8 tiles) / t(128x128 tile), for library-speed versions
LIBRARY_SPEED = 20            # "library speed": within this factor of np.matmul


def _matrix(rows: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


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


def _logged_products(worker: remote.Worker, name: str, args, kwargs=None):
    """(value, products) of one call with logging arrays, or None if the call itself fails."""
    header, arrays = worker.encode_args(args, kwargs or {})
    header.update(op="products", target={"name": name})
    try:
        reply = worker.request(header, arrays, what=f"{name}(...)")
    except Exception:  # noqa: BLE001 - failures are the tests' business, not a rule's
        return None
    value = reply["value"]
    if not isinstance(value, np.ndarray) or value.shape != (args[0].shape[0], args[1].shape[1]):
        return None
    if not np.allclose(value, args[0].astype(np.float64) @ args[1], rtol=1e-3, atol=1e-2):
        return None
    return value, reply["products"]


def naive_uses_own_loops(worker: remote.Worker, helpers) -> str | None:
    a, b = _matrix(12, 10, 1), _matrix(10, 8, 2)
    logged = _logged_products(worker, "matmul_naive", (a, b))
    if logged is None:
        return None
    _, products = logged
    if products:
        op, left, right = products[0]
        return (f"matmul_naive calls a library matrix product ({op} on shapes {tuple(left)} and "
                f"{tuple(right)}): the naive version must multiply with its own Python loops, so "
                f"its tests earn no points")
    a, b = _matrix(40, 40, 3), _matrix(40, 40, 4)
    try:
        ratio = helpers.speed_ratio(worker.proxy_for("matmul_naive", "function"), _triple_loop,
                                    a, b, rounds=3)
    except Exception:  # noqa: BLE001
        return None
    if ratio * NAIVE_SPEED_LIMIT < 1:
        return (f"matmul_naive is {1 / ratio:,.0f}x faster than a plain triple loop on 40x40 "
                f"matrices (the limit is {NAIVE_SPEED_LIMIT}x): only a library matrix product is "
                f"that fast, and the naive version must use its own loops, so its tests earn no "
                f"points")
    return None


def blocked_really_tiles(worker: remote.Worker, helpers) -> str | None:
    a, b, block = _matrix(100, 90, 5), _matrix(90, 70, 6), 16
    logged = _logged_products(worker, "matmul_blocked", (a, b), {"block_size": block})
    if logged is None:
        return None
    _, products = logged
    for op, left, right in products:
        if max([*left, *right, 0]) > block:
            return (f"matmul_blocked(100x90, 90x70, block_size={block}) multiplied operands of "
                    f"shapes {tuple(left)} and {tuple(right)} ({op}), larger than the block size: "
                    f"it must multiply tile by tile, so its tests earn no points")
    if products:
        return None
    blocked = worker.proxy_for("matmul_blocked", "function")
    a, b = _matrix(128, 128, 7), _matrix(128, 128, 8)
    try:
        whole = helpers.cpu_seconds_per_call(blocked, (a, b), {"block_size": 128})
        tiny = helpers.cpu_seconds_per_call(blocked, (a, b), {"block_size": 8})
        library = helpers.cpu_seconds_per_call(np.matmul, (a, b), {})
    except Exception:  # noqa: BLE001
        return None
    if whole <= LIBRARY_SPEED * library and tiny < TILE_SLOWDOWN_MINIMUM * whole:
        return (f"matmul_blocked runs at library speed and takes about as long with 8x8 tiles as "
                f"with one 128x128 tile ({tiny / whole:.1f}x; real tiling is over 50x slower with "
                f"8x8 tiles): it does not multiply tile by tile, so its tests earn no points")
    return None


RULES = {"naive": naive_uses_own_loops, "blocked": blocked_really_tiles}
