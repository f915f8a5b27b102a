"""Answer cells in other styles, for submissions the tests and benchmarks make: one copy of each.

Honest answers in unusual styles (they must earn full marks), answers that are correct but slow,
and the clock-freezing prelude of a cheat. Where a variant is a small change to the reference
answer, it is made from the reference (`answers`: grade id -> the source notebook's answer text,
`submissions.reference_answers`), so it follows the assignment when the assignment changes.
"""
from __future__ import annotations

import textwrap


def code(text: str) -> str:
    """A cell's source from an indented block: dedented, one trailing newline."""
    return textwrap.dedent(text).strip("\n") + "\n"


CHECK_SHAPES = code('''
    def _check_shapes(a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"incompatible shapes {a.shape} @ {b.shape}")
''')

# Honest, in other styles -------------------------------------------------------------------------

LISTS_NAIVE = CHECK_SHAPES + "\n\n" + code('''
    def matmul_naive(a, b):
        """Python lists and a generator: loops, only in another form."""
        _check_shapes(a, b)
        rows, cols = a.tolist(), b.T.tolist()
        return np.array([[sum(x * y for x, y in zip(r, c)) for c in cols] for r in rows],
                        dtype=np.float32).reshape(a.shape[0], b.shape[1])
''')

DOT_TILES = CHECK_SHAPES + "\n\n" + code('''
    def matmul_blocked(a, b, block_size=64):
        """np.dot on tiles, the shared dimension outermost."""
        _check_shapes(a, b)
        if block_size < 1:
            raise ValueError("block_size must be positive")
        m, n = a.shape[0], b.shape[1]
        out = np.zeros((m, n), dtype=np.float32)
        spans = lambda size: [(s, min(s + block_size, size)) for s in range(0, size, block_size)]
        for p0, p1 in spans(a.shape[1]):
            for i0, i1 in spans(m):
                for j0, j1 in spans(n):
                    out[i0:i1, j0:j1] += np.dot(a[i0:i1, p0:p1], b[p0:p1, j0:j1])
        return out
''')

OUT_BUFFERS = CHECK_SHAPES + "\n\n" + code('''
    def matmul_blocked(a, b, block_size=64):
        """Tile products written into one buffer (out=), then added."""
        _check_shapes(a, b)
        m, k = a.shape
        n = b.shape[1]
        c = np.zeros((m, n), dtype=np.float32)
        buffer = np.empty((block_size, block_size), dtype=np.float32)
        for i0 in range(0, m, block_size):
            i1 = min(i0 + block_size, m)
            for j0 in range(0, n, block_size):
                j1 = min(j0 + block_size, n)
                tile = buffer[:i1 - i0, :j1 - j0]
                for p0 in range(0, k, block_size):
                    p1 = min(p0 + block_size, k)
                    np.matmul(a[i0:i1, p0:p1], b[p0:p1, j0:j1], out=tile)
                    c[i0:i1, j0:j1] += tile
        return c
''')

TABLE_BACKEND = code('''
    class OptimizedBackend:
        """Dispatch through a table of operations."""

        def __init__(self):
            self._ops = {"matmul": self.matmul}

        def dispatch(self, op, *args, **kwargs):
            if op not in self._ops:
                raise NotImplementedError(f"no operation {op!r}")
            return self._ops[op](*args, **kwargs)

        def matmul(self, a, b):
            return matmul_numpy(a, b)


    _backend = OptimizedBackend()


    def matmul(a, b):
        return _backend.dispatch("matmul", a, b)
''')

# Correct but slow ---------------------------------------------------------------------------------

TILE_PRODUCT = "c[i0:i1, j0:j1] += a[i0:i1, p0:p1] @ b[p0:p1, j0:j1]"


def python_tiles(answers: dict[str, str]) -> str:
    """The reference tiling, each tile multiplied by the reference's triple loop: correct, about
    200 ns per multiply-add in Python (3-4 s for a 256x256 product)."""
    blocked = answers["blocked_impl"]
    assert TILE_PRODUCT in blocked, "the reference blocked answer changed: update tests/variants.py"
    return (answers["naive_impl"] + "\n\n" +
            blocked.replace(TILE_PRODUCT, TILE_PRODUCT.replace(
                "a[i0:i1, p0:p1] @ b[p0:p1, j0:j1]",
                "matmul_naive(a[i0:i1, p0:p1], b[p0:p1, j0:j1])")))


# Appended to a blocked answer: the same product done ten times over per call, with correct
# results. Ten, not six: the reference tiling read 1.6-2.5x NumPy's time (2.5-3x since both
# timing processes keep a warm heap), so six times over once came in under the blocked part's
# 10x limit; ten times over is 25x or more.
TEN_TIMES = code('''
    _tiled_product = matmul_blocked


    def _ten_times(a, b, block_size=64):
        for _ in range(9):
            _tiled_product(a, b, block_size)
        return _tiled_product(a, b, block_size)
''')

# A cheat's prelude: every clock of its own process frozen at 0 (the grader's are not).
FROZEN_CLOCKS = code('''
    import time


    def _frozen(*args, **kwargs):
        return 0.0


    for _name in ("process_time", "perf_counter", "thread_time"):
        setattr(time, _name, _frozen)
    clock = _frozen
''')
