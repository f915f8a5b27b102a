"""Grading throughput: `python -m autograder grade` against plain sequential `nbgrader autograde`.

Both grade the same N reference submissions in two fresh copies of the course, one after the
other in this run. Prints the wall time of each and their ratio (higher is better; on a 2-core
machine the ceiling is about 2).

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
        ours = prepared_course(Path(tmp) / "ours", args.students)
        plain_s = timed([sys.executable, "-m", "nbgrader", "autograde", "acceleration"], plain.root)
        ours_s = timed([sys.executable, "-m", "autograder", "--course", str(ours.root), "grade",
                        "--quiet", "--jobs", str(args.jobs)], REPO_ROOT)
    print(f"submissions: {args.students}")
    print(f"nbgrader autograde (sequential): {plain_s:7.1f} s  ({plain_s / args.students:.1f} s each)")
    print(f"autograder grade --jobs {args.jobs}:      {ours_s:7.1f} s  ({ours_s / args.students:.1f} s each)")
    print(f"throughput ratio: {plain_s / ours_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
