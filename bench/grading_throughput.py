"""Grading throughput: `python -m autograder grade` against plain sequential `nbgrader autograde`.

All grade the same N reference submissions in fresh copies of the course, one after the other in
this run: `nbgrader autograde` run once for all students with this course's configuration (the
sandboxed kernel and trusted tests), the same with nbgrader's stock preprocessors (its own Execute,
test cells run in the student's kernel), and `python -m autograder grade --jobs N`. Prints the wall
time of each and the ratios (higher is better; on a 2-core machine the ceiling is about 2).
With `--runs N`, each is timed N times, alternating, and the medians are compared (a single run
of 8 submissions swings by 10-20% on a small machine).

Every course copy starts with a gradebook that knows the assignment, and ours with this machine's
ceilings already kept (grading measures them once per machine, about 1 s, and keeps them in
grading/machines/): the figures are those of a course grading its class, not of its first run.

    .venv/bin/python bench/grading_throughput.py [--students 8] [--jobs 2] [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from autograder import ceilings  # noqa: E402
from autograder.course import REPO_ROOT, Course, tool_environment  # noqa: E402
from autograder.release import ensure_gradebook  # noqa: E402
from autograder.submissions import fill  # noqa: E402
from autograder.task import MACHINES  # noqa: E402


def prepared_course(root: Path, students: int) -> Course:
    course = Course.scaffold(root, Course.at(REPO_ROOT))
    nb = fill(course.release_dir / "acceleration.ipynb", course.source_notebook)
    for i in range(students):
        folder = course.submitted_dir(f"s{i:03d}")
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "acceleration.ipynb")
    ensure_gradebook(course)  # both sides start from a gradebook that knows the assignment
    return course


STOCK_CONFIG = """
# nbgrader's stock autograde preprocessors, for the baseline
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput,
    DeduplicateIds, Execute, IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec,
    SaveAutoGrades)
from nbconvert.preprocessors import ClearMetadataPreprocessor
c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec,
                                      OverwriteCells, CheckCellMetadata]
c.Autograde.autograde_preprocessors = [Execute, IgnorePattern, ClearMetadataPreprocessor,
    LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.Execute.timeout = 180
"""


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=tool_environment(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"plain": [], "stock": [], "ours": []}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            plain = prepared_course(Path(tmp) / "plain", args.students)
            stock = prepared_course(Path(tmp) / "stock", args.students)
            with open(stock.root / "nbgrader_config.py", "a") as config:
                config.write(STOCK_CONFIG)
            ours = prepared_course(Path(tmp) / "ours", args.students)
            ceilings.kept(ours.root / MACHINES)
            nbgrader = [sys.executable, "-m", "nbgrader", "autograde", "acceleration"]
            times["plain"].append(timed(nbgrader, plain.root))
            times["stock"].append(timed(nbgrader, stock.root))
            times["ours"].append(timed([sys.executable, "-m", "autograder", "--course",
                                        str(ours.root), "grade", "--quiet", "--jobs",
                                        str(args.jobs)], REPO_ROOT))
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()),
              flush=True)
    n = args.students
    plain_s, stock_s, ours_s = (statistics.median(times[k]) for k in ("plain", "stock", "ours"))

    def spread(key: str) -> str:
        return f", {min(times[key]):.1f}-{max(times[key]):.1f} s" if args.runs > 1 else ""

    what = f"median of {args.runs} runs" if args.runs > 1 else "one run"
    print(f"submissions: {n}; {what}")
    print(f"nbgrader autograde, this course's config: {plain_s:7.1f} s  ({plain_s / n:.1f} s each"
          f"{spread('plain')})")
    print(f"nbgrader autograde, stock preprocessors:  {stock_s:7.1f} s  ({stock_s / n:.1f} s each"
          f"{spread('stock')})")
    print(f"autograder grade --jobs {args.jobs}:               {ours_s:7.1f} s  "
          f"({ours_s / n:.1f} s each{spread('ours')})")
    print(f"throughput ratio vs nbgrader with this config: {plain_s / ours_s:.2f}x")
    print(f"throughput ratio vs stock nbgrader:            {stock_s / ours_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
