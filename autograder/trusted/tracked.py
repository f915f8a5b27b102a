"""Arrays that log the library matrix products they take part in.

Every array the grader hands to student code is a `TrackedArray` view: in test calls, in the calls
the rules make, and in timed calls alike, so student code cannot tell them apart by their type.
While a `ProductLog` is recording, each product such an array takes part in (`@`, np.matmul,
np.dot, np.einsum, np.vecdot, ...) is counted by operation and operand shapes. The grader's own
reference code gets the same views in timing (with a log nobody reads), so both sides pay the
same small overhead per product.

Code that converts its inputs to plain arrays (np.asarray, .view(np.ndarray)) multiplies out of
sight of the log; the rules then judge it by speed instead (see the assignment's rules).
"""
from __future__ import annotations

import contextlib

import numpy as np

PRODUCT_UFUNCS = {np.matmul: "@ / np.matmul", np.vecdot: "np.vecdot", np.matvec: "np.matvec",
                  np.vecmat: "np.vecmat"}
PRODUCT_FUNCTIONS = {
    np.dot: "np.dot", np.einsum: "np.einsum", np.tensordot: "np.tensordot", np.inner: "np.inner",
    np.vdot: "np.vdot", np.outer: "np.outer", np.kron: "np.kron",
    np.linalg.multi_dot: "np.linalg.multi_dot", np.linalg.matmul: "np.linalg.matmul",
    np.linalg.vecdot: "np.linalg.vecdot", np.linalg.tensordot: "np.linalg.tensordot",
    np.linalg.outer: "np.linalg.outer", np.linalg.matrix_power: "np.linalg.matrix_power",
}
MAX_DISTINCT = 2_000     # distinct (operation, shapes) kept per log; more is reported as such


class ProductLog:
    """Products seen while recording: (operation, left shape, right shape) -> how many times."""

    def __init__(self):
        self.counts: dict[tuple, int] = {}
        self.overflow = False
        self.largest: tuple | None = None   # kept whatever else is dropped: the rules need it

    def add(self, operation: str, operands) -> None:
        shapes = tuple(tuple(int(d) for d in np.shape(x)) for x in operands[:2])
        key = (operation, *shapes)
        if key in self.counts or len(self.counts) < MAX_DISTINCT:
            self.counts[key] = self.counts.get(key, 0) + 1
        else:
            self.overflow = True
        if self.largest is None or _extent(key) > _extent(self.largest):
            self.largest = key

    def entries(self) -> list[list]:
        """[[operation, left shape, right shape, count], ...]: the form the worker sends."""
        counts = dict(self.counts)
        if self.largest is not None and self.largest not in counts:
            counts[self.largest] = 1
        return [[op, *[list(s) for s in shapes], count] for (op, *shapes), count in counts.items()]

    @contextlib.contextmanager
    def recording(self):
        previous, TrackedArray.log = TrackedArray.log, self
        try:
            yield self
        finally:
            TrackedArray.log = previous


def _extent(key: tuple) -> int:
    return max([0, *[d for shape in key[1:] for d in shape]])


def _plain(value):
    return value.view(np.ndarray) if isinstance(value, TrackedArray) else value


class TrackedArray(np.ndarray):
    """A view that logs, into the recording `ProductLog`, every product it takes part in."""

    log: ProductLog | None = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and ufunc in PRODUCT_UFUNCS and TrackedArray.log is not None:
            TrackedArray.log.add(PRODUCT_UFUNCS[ufunc], inputs)
        inputs = tuple(_plain(x) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(x) for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        name = PRODUCT_FUNCTIONS.get(func)
        if name and TrackedArray.log is not None:
            TrackedArray.log.add(name, [a for a in args if isinstance(a, np.ndarray)])
        return super().__array_function__(func, types, args, kwargs)

    def dot(self, other, out=None):
        if TrackedArray.log is not None:
            TrackedArray.log.add("ndarray.dot", [self, other])
        return _plain(self).dot(_plain(other), out)


def track(value):
    """`value` as student code receives it: plain arrays become TrackedArray views."""
    return value.view(TrackedArray) if type(value) is np.ndarray else value
