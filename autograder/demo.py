"""Run the whole pipeline on the bundled demo submissions, in a throw-away course root.

The demo course (default `build/demo`) gets a copy of this repository's config and source, then:
release -> collect (the Canvas zip in demo/) -> grade -> feedback -> export -> report, each through
the same command an instructor types. Nothing is written to the repository's own course root.
"""
from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from pathlib import Path

import nbformat

from .course import REPO_ROOT, Course, CourseError
from .submissions import PARTS, fill

DEMO_ZIP = REPO_ROOT / "demo" / "canvas-submissions.zip"
MARKER = ".acceleration-demo"
ZIP_TIME = (2026, 11, 20, 14, 3, 0)
DUE_DATE = "2026-11-20 12:00:00 UTC"
# Canvas names each file <sortable name>[_LATE]_<user id>_<attachment id>_<uploaded name>.
DEMO_STUDENTS = [
    ("lovelaceada", "1001", "", PARTS),                                # complete
    ("hoppergrace", "1002", "", ("naive", "numpy", "footprint")),      # partial
    ("turingalan", "1003", "", ()),                                    # blank
    ("johnsonkatherine", "1004", "LATE_", PARTS),                      # complete, handed in late
]


def build_zip(course: Course) -> bytes:
    """The demo download, made from the release and the reference answers (deterministic bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for number, (name, user_id, late, parts) in enumerate(DEMO_STUDENTS):
            nb = fill(course.release_dir / "acceleration.ipynb", course.source_notebook, parts)
            entry = zipfile.ZipInfo(f"{name}_{late}{user_id}_{7001 + number}_acceleration.ipynb",
                                    ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, nbformat.writes(nb) + "\n")
    return buffer.getvalue()


def _fresh_course(folder: Path) -> Course:
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise CourseError(f"{folder} exists and is not a demo folder; pick another --dir")
        shutil.rmtree(folder)
    course = Course.scaffold(folder, Course.at(REPO_ROOT))
    (folder / MARKER).write_text("made by `python -m autograder demo`; safe to delete\n")
    shutil.rmtree(course.release_dir)  # the demo builds its own release
    return course


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=str(REPO_ROOT / "build" / "demo"),
                        help="demo course root, replaced on each run (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=None, help="passed to grade")
    parser.add_argument("--rebuild-zip", action="store_true",
                        help=f"only rewrite {DEMO_ZIP.relative_to(REPO_ROOT)} from release/ and source/")


def run(args: argparse.Namespace) -> int:
    from .cli import main

    if args.rebuild_zip:
        DEMO_ZIP.parent.mkdir(exist_ok=True)
        DEMO_ZIP.write_bytes(build_zip(Course.at(REPO_ROOT)))
        print(f"wrote {DEMO_ZIP.relative_to(REPO_ROOT)}")
        return 0
    course = _fresh_course(Path(args.dir).resolve())
    root = ["--course", str(course.root)]
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    steps = [
        ("release", ["release"]),
        ("collect", ["collect", str(DEMO_ZIP)]),
        ("grade", ["grade", *jobs]),
        ("feedback", ["feedback"]),
        ("export", ["export", "--format", "canvas", "-o", str(course.root / "grades-canvas.csv")]),
        ("export", ["export", "--format", "csv", "-o", str(course.root / "grades.csv")]),
        ("report", ["report", "-o", str(course.root / "reports")]),
    ]
    for title, argv in steps:
        if title == "collect":  # a due date, so that the LATE mark of student 1004 counts
            print(f"\n== due date: nbgrader db assignment add {course.assignment} "
                  f"--duedate='{DUE_DATE}'", flush=True)
            course.nbgrader("db", "assignment", "add", course.assignment, f"--duedate={DUE_DATE}")
        print(f"\n== {title}: python -m autograder {' '.join(argv)}", flush=True)
        code = main(root + argv)
        if code not in (0,):
            print(f"demo stopped: `{title}` exited with {code}")
            return code
    from .performance import BLOCKED, FOCUS
    from .results import format_points, load_cohort

    print("\nScores (written answers still to be graded in formgrader), and the speed of "
          f"matmul_blocked at {FOCUS}x{FOCUS} as the grader measured it:")
    print(f"  {'student':<8} {'autograded':>10} {'late penalty':>13} {'total':>6}   "
          f"{'blocked GFLOP/s':>15} {'of the peak':>11}")
    for r in load_cohort(course):
        gflops = r.performance.gflops(BLOCKED) if r.performance else None
        speed = (f"{gflops:15.1f} {r.performance.fraction(BLOCKED):11.0%}" if gflops
                 else f"{'-':>15} {'-':>11}")
        print(f"  {r.student:<8} {format_points(r.auto_score):>7}/{format_points(r.auto_max):<2} "
              f"{format_points(r.late_penalty):>13} {format_points(r.score):>6}   {speed}")
    print(f"\nDemo course: {course.root}")
    print(f"  grades:   {course.root / 'grades.csv'} (Canvas import: grades-canvas.csv)")
    print(f"  feedback: {course.root / 'feedback'}/<student>/acceleration/acceleration.html")
    print(f"  report:   {course.root / 'reports' / 'index.html'}")
    print(f"  hand grading: make formgrader COURSE={course.root}")
    return 0
