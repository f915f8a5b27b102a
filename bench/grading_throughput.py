"""Grading throughput: `python -m autograder grade` against plain sequential `nbgrader autograde`.

All grade the same N reference submissions in fresh copies of the course, one after the other in
this run: `nbgrader autograde` run once for all students with this course's configuration (the
sandboxed kernel and trusted tests), the same with nbgrader's stock preprocessors (its own Execute,
test cells run in the student's kernel), and `python -m autograder grade --jobs N`. Prints the wall
time of each and the ratios (higher is better; on a 2-core machine the ceiling is about 2).

    .venv/bin/python bench/grading_throughput.py [--students 8] [--jobs 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from autograder.course import REPO_ROOT, Course, tool_environment  # noqa: E402
from autograder.release import ensure_gradebook  # noqa: E402
from autograder.submissions import fill  # noqa: E402


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        plain = prepared_course(Path(tmp) / "plain", args.students)
        stock = prepared_course(Path(tmp) / "stock", args.students)
        with open(stock.root / "nbgrader_config.py", "a") as config:
            config.write(STOCK_CONFIG)
        ours = prepared_course(Path(tmp) / "ours", args.students)
        plain_s = timed([sys.executable, "-m", "nbgrader", "autograde", "acceleration"], plain.root)
        stock_s = timed([sys.executable, "-m", "nbgrader", "autograde", "acceleration"], stock.root)
        ours_s = timed([sys.executable, "-m", "autograder", "--course", str(ours.root), "grade",
                        "--quiet", "--jobs", str(args.jobs)], REPO_ROOT)
    n = args.students
    print(f"submissions: {n}")
    print(f"nbgrader autograde, this course's config: {plain_s:7.1f} s  ({plain_s / n:.1f} s each)")
    print(f"nbgrader autograde, stock preprocessors:  {stock_s:7.1f} s  ({stock_s / n:.1f} s each)")
    print(f"autograder grade --jobs {args.jobs}:               {ours_s:7.1f} s  ({ours_s / n:.1f} s each)")
    print(f"throughput ratio vs nbgrader with this config: {plain_s / ours_s:.2f}x")
    print(f"throughput ratio vs stock nbgrader:            {stock_s / ours_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
