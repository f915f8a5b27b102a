"""Grading cost: a class of 20 submissions, good, slow and with frozen clocks, graded with --jobs 2.

The class: 14 correct submissions in several honest styles (the reference; np.dot tiles in another
loop order; tiles accumulated through out= buffers; a list-comprehension naive; a table-driven
backend; each of those in pairs, and mixes), 4 slow but correct ones (the reference tiling with
each tile multiplied by the reference's triple loop: a few seconds per 256x256 product) and 2 with
the same slow tiles and every clock of their process frozen. Prints the batch's wall time, each
student's grading time and score, and checks that every good submission scored 80/80 and every
slow one lost exactly the blocked timing test.

    .venv/bin/python bench/grading_cost.py [--jobs 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from autograder.course import REPO_ROOT, Course  # noqa: E402
from autograder.grade import grade_batch  # noqa: E402
from autograder.results import load_cohort  # noqa: E402
from autograder.submissions import fill, reference_answers  # noqa: E402
from tests.variants import (DOT_TILES, FROZEN_CLOCKS, LISTS_NAIVE, OUT_BUFFERS,  # noqa: E402
                            TABLE_BACKEND, python_tiles)

GOOD = {
    "reference": {},
    "dot-tiles": {"blocked_impl": DOT_TILES},
    "out-buffers": {"blocked_impl": OUT_BUFFERS},
    "lists-naive": {"naive_impl": LISTS_NAIVE},
    "table-backend": {"backend_impl": TABLE_BACKEND},
    "lists-dot": {"naive_impl": LISTS_NAIVE, "blocked_impl": DOT_TILES},
    "dot-table": {"blocked_impl": DOT_TILES, "backend_impl": TABLE_BACKEND},
}


def classroom(answers: dict[str, str]) -> dict[str, tuple[str, dict]]:
    """student -> (kind, cell edits): 14 good, 4 slow, 2 frozen."""
    slow = {"blocked_impl": python_tiles(answers)}
    frozen = {"blocked_impl": FROZEN_CLOCKS + "\n\n" + python_tiles(answers)}
    students = {}
    for copy in range(2):
        for style, edits in GOOD.items():
            students[f"good-{style}-{copy}"] = ("good", edits)
    students.update({f"slow-{i}": ("slow", slow) for i in range(4)})
    students.update({f"frozen-{i}": ("frozen", frozen) for i in range(2)})
    return students


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        course = Course.scaffold(Path(tmp) / "course", Course.at(REPO_ROOT))
        students = classroom(reference_answers(course.source_notebook))
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
