"""Grading cost: a class of 20 submissions, good, slow and with frozen clocks, graded with --jobs 2.

The class: 14 correct submissions in several honest styles (the reference; np.dot tiles in another
loop order; tiles accumulated through out= buffers; a list-comprehension naive; a table-driven
backend; each of those in pairs, and mixes), 4 slow but correct ones (tiles of pure Python loops,
a few seconds per 256x256 product) and 2 with the same slow tiles and every clock of their process
frozen. Prints the batch's wall time, each student's grading time and score, and checks that
every good submission scored 80/80 and every slow one lost exactly the blocked timing test.

    .venv/bin/python bench/grading_cost.py [--jobs 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from autograder.course import REPO_ROOT, Course  # noqa: E402
from autograder.grade import grade_batch  # noqa: E402
from autograder.results import load_cohort  # noqa: E402
from autograder.submissions import fill  # noqa: E402

SHAPES = ("    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:\n"
          "        raise ValueError(f'incompatible shapes {a.shape} @ {b.shape}')\n")

DOT_TILES = "def matmul_blocked(a, b, block_size=64):\n" + SHAPES + textwrap.indent(textwrap.dedent("""\
        m, n = a.shape[0], b.shape[1]
        out = np.zeros((m, n), dtype=np.float32)
        spans = lambda size: [(s, min(s + block_size, size)) for s in range(0, size, block_size)]
        for p0, p1 in spans(a.shape[1]):
            for i0, i1 in spans(m):
                for j0, j1 in spans(n):
                    out[i0:i1, j0:j1] += np.dot(a[i0:i1, p0:p1], b[p0:p1, j0:j1])
        return out
    """), "    ")

OUT_BUFFERS = "def matmul_blocked(a, b, block_size=64):\n" + SHAPES + textwrap.indent(textwrap.dedent("""\
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
    """), "    ")

LISTS_NAIVE = "def matmul_naive(a, b):\n" + SHAPES + textwrap.indent(textwrap.dedent("""\
        rows, cols = a.tolist(), b.T.tolist()
        return np.array([[sum(x * y for x, y in zip(r, c)) for c in cols] for r in rows],
                        dtype=np.float32).reshape(a.shape[0], b.shape[1])
    """), "    ")

TABLE_BACKEND = textwrap.dedent("""\
    class OptimizedBackend:
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
    """)

PYTHON_TILES = "def matmul_blocked(a, b, block_size=64):\n" + SHAPES + textwrap.indent(textwrap.dedent("""\
        m, k = a.shape
        n = b.shape[1]
        c = np.zeros((m, n), dtype=np.float32)
        for i0 in range(0, m, block_size):
            for j0 in range(0, n, block_size):
                for p0 in range(0, k, block_size):
                    for i in range(i0, min(i0 + block_size, m)):
                        for j in range(j0, min(j0 + block_size, n)):
                            total = 0.0
                            for p in range(p0, min(p0 + block_size, k)):
                                total += a[i, p] * b[p, j]
                            c[i, j] += total
        return c
    """), "    ")

FROZEN_CLOCKS = textwrap.dedent("""\
    import time


    def _frozen(*args, **kwargs):
        return 0.0


    for _name in ("process_time", "perf_counter", "thread_time"):
        setattr(time, _name, _frozen)
    clock = _frozen


    """)

GOOD = {
    "reference": {},
    "dot-tiles": {"blocked_impl": DOT_TILES},
    "out-buffers": {"blocked_impl": OUT_BUFFERS},
    "lists-naive": {"naive_impl": LISTS_NAIVE},
    "table-backend": {"backend_impl": TABLE_BACKEND},
    "lists-dot": {"naive_impl": LISTS_NAIVE, "blocked_impl": DOT_TILES},
    "dot-table": {"blocked_impl": DOT_TILES, "backend_impl": TABLE_BACKEND},
}
SLOW = {"blocked_impl": PYTHON_TILES}
FROZEN = {"blocked_impl": FROZEN_CLOCKS + PYTHON_TILES}


def classroom() -> dict[str, tuple[str, dict]]:
    """student -> (kind, cell edits): 14 good, 4 slow, 2 frozen."""
    students = {}
    for copy in range(2):
        for style, edits in GOOD.items():
            students[f"good-{style}-{copy}"] = ("good", edits)
    students.update({f"slow-{i}": ("slow", SLOW) for i in range(4)})
    students.update({f"frozen-{i}": ("frozen", FROZEN) for i in range(2)})
    return students


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    students = classroom()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        course = Course.scaffold(Path(tmp) / "course", Course.at(REPO_ROOT))
        for student, (_, edits) in students.items():
            nb = fill(course.release_dir / "acceleration.ipynb", course.source_notebook,
                      edits=edits)
            folder = course.submitted_dir(student)
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / "acceleration.ipynb")
        started = time.monotonic()
        batch = grade_batch(course, jobs=args.jobs, progress=False)
        wall = time.monotonic() - started
        results = {r.student: r for r in load_cohort(course)}
    seconds = {r.student: r.seconds for r in batch.graded}
    problems = []
    for student, (kind, _) in students.items():
        lost = {t.grade_id for t in results[student].tests if not t.passed}
        expected = set() if kind == "good" else {"blocked_speed"}
        if lost != expected:
            problems.append(f"{student}: lost {sorted(lost)}, expected {sorted(expected)}")
    print(f"{len(students)} submissions, --jobs {args.jobs}: {wall:.0f} s wall time")
    for kind in ("good", "slow", "frozen"):
        times = [seconds[s] for s, (k, _) in students.items() if k == kind]
        print(f"  {kind:6s} {len(times):2d}: {min(times):5.1f}-{max(times):5.1f} s each "
              f"(median {statistics.median(times):.1f} s)")
    for student in sorted(students):
        print(f"    {student:22s} {seconds[student]:6.1f} s  "
              f"{results[student].auto_score:g}/{results[student].auto_max:g}")
    print("scores as expected" if not problems else "UNEXPECTED SCORES:\n  " +
          "\n  ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
