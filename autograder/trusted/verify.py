"""Checking a claimed matrix product in O(n^2): Freivalds' test with random vectors.

`C` is accepted as `A @ B` when `C R` and `A (B R)` agree for a matrix `R` of random vectors drawn
after `C` was made, up to the rounding any honest float32 product may show. That bound holds for
every summation order (tiles included): |fl(A B) - A B| <= gamma_k |A| |B| with
gamma_k = k u / (1 - k u) and u = 2^-24, plus the rounding of C itself, u |C|. Four times that is
the tolerance, so an honest result never fails.

How sure it is: for a row whose error vector e has norm |e|, each Gaussian vector lets it pass with
probability at most tol/|e| (|e . r| must fall inside the tolerance); with VECTORS = 8 independent
vectors, a row off by more than 5.6 times its tolerance passes with probability below 1e-6. For
256x256 inputs uniform in [-1, 1) (what timed calls get) the tolerance is about 0.8, against row
norms of about 85: a result copied from another call, computed on other inputs or faked from a
few entries is far outside it.
"""
from __future__ import annotations

import numpy as np

VECTORS = 8
UNIT_ROUNDOFF = 2.0 ** -24       # float32
SAFETY = 4.0


def is_product_call(args) -> bool:
    """Whether the first two arguments are matrices that can be multiplied."""
    return (len(args) >= 2 and all(isinstance(x, np.ndarray) and x.ndim == 2 for x in args[:2])
            and args[0].shape[1] == args[1].shape[0]
            and all(x.dtype.kind in "biuf" for x in args[:2]))


class Scratch:
    """Float64 copies of the matrices being checked, kept from one check to the next.

    A check needs three n x n float64 matrices and their absolute values; allocated afresh each
    time, their pages are returned to the system and faulted in again on every check (at 256x256:
    2.1 ms a check that takes 0.24 ms in buffers kept here, against 0.33 ms for the product)."""

    def __init__(self):
        self._buffers: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def float64(self, name: str, x: np.ndarray) -> np.ndarray:
        buffer = self._buffers.get((name, x.shape))
        if buffer is None:
            buffer = self._buffers[(name, x.shape)] = np.empty(x.shape, dtype=np.float64)
        np.copyto(buffer, x, casting="unsafe")
        return buffer


def freivalds(a: np.ndarray, b: np.ndarray, c, rng: np.random.Generator,
              vectors: int = VECTORS, scratch: Scratch | None = None) -> bool:
    """Whether `c` is `a @ b` up to float32 rounding (see the module docstring). Checks that
    share a `scratch` reuse its buffers."""
    if not isinstance(c, np.ndarray) or c.shape != (a.shape[0], b.shape[1]) \
            or c.dtype.kind not in "biuf":
        return False
    scratch = scratch or Scratch()
    a, b, c = scratch.float64("a", a), scratch.float64("b", b), scratch.float64("c", c)
    if not np.all(np.isfinite(c)):
        return False
    r = rng.standard_normal((b.shape[1], vectors))
    error = np.abs(c @ r - a @ (b @ r))
    k = a.shape[1]
    gamma = k * UNIT_ROUNDOFF / (1 - k * UNIT_ROUNDOFF)
    abs_r = np.abs(r)
    for x in (a, b, c):
        np.abs(x, out=x)
    bound = gamma * (a @ (b @ abs_r)) + UNIT_ROUNDOFF * (c @ abs_r)
    return bool(np.all(error <= SAFETY * bound + 1e-12))
