"""Where grading one submission spends its time: the phase table of the reference submission.

Grades the reference notebook `--runs` times (one at a time, `grade --force` after the first) in
a fresh copy of the course and prints, per phase, the median wall and CPU seconds over the runs
(CPU: the grading processes' own, plus child processes reaped within the phase; see
autograder/phases.py), then the same for the batch as `grade --verbose` sums it.

    .venv/bin/python bench/grading_phases.py [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from autograder.course import REPO_ROOT, Course  # noqa: E402
from autograder.grade import class_phases, grade_batch  # noqa: E402
from autograder.phases import Phases, table  # noqa: E402
from autograder.submissions import fill  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        course = Course.scaffold(Path(tmp) / "course", Course.at(REPO_ROOT))
        folder = course.submitted_dir("reference")
        folder.mkdir(parents=True)
        nbformat.write(fill(course.release_notebook, course.source_notebook),
                       folder / course.notebook)
        for run in range(args.runs):
            batch = grade_batch(course, ["reference"], jobs=1, force=True, progress=False)
            assert batch.graded[0].ok and batch.graded[0].score == batch.graded[0].max_score
            runs.append(class_phases(batch.graded))
    names = {name for phases in runs for name in phases.seconds}
    median = Phases({name: [statistics.median(p.seconds.get(name, [0, 0])[i] for p in runs)
                            for i in (0, 1)] for name in names})
    print(f"\nthe reference submission, median of {args.runs} gradings, one at a time:")
    print("\n".join(table(median)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
