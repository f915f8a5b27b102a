"""Run the whole pipeline on the bundled demo submissions, in a throw-away course root.

The demo course (default `build/demo`) gets a copy of this repository's config and source, then:
release -> collect (the Canvas zip in demo/) -> grade -> feedback -> export -> report, each through
the same command an instructor types. Nothing is written to the repository's own course root.
The demo class is the assignment's (`Assignment.demo`); `--rebuild-zip` remakes its download
from the release (`make release` does, after rebuilding release/).
"""
from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from pathlib import Path

import nbformat

from .course import REPO_ROOT, Course, CourseError
from .submissions import fill

DEMO_ZIP = REPO_ROOT / "demo" / "canvas-submissions.zip"
MARKER = ".autograder-demo"
ZIP_TIME = (2026, 11, 20, 14, 3, 0)
DUE_DATE = "2026-11-20 12:00:00 UTC"


def build_zip(course: Course) -> bytes:
    """The demo download, made from the release and the reference answers (deterministic bytes).

    Canvas names each file <sortable name>[_LATE]_<user id>_<attachment id>_<uploaded name>.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for number, student in enumerate(course.spec.demo):
            nb = fill(course.release_notebook, course.source_notebook, student.parts)
            late = "LATE_" if student.late else ""
            entry = zipfile.ZipInfo(f"{student.sortable_name}_{late}{student.user_id}_"
                                    f"{7001 + number}_{course.notebook}", ZIP_TIME)
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
    from .outcomes import format_points
    from .results import load_cohort

    profile = course.spec.profile
    first = next((f.function for f in profile.functions if not f.sizes), None) \
        if profile else None
    cohort = load_cohort(course)
    print("\nScores (written answers still to be graded in formgrader)" + (
        f", and the speed of {first} at {profile.focus}x{profile.focus} as the grader measured "
        f"it, as a fraction of the machine's attainable peak:" if first else ":"))
    print(f"  {'student':<8} {'autograded':>10} {'late penalty':>13} {'total':>6}   "
          + (f"{'GFLOP/s':>9} {'of attainable':>13}" if first else ""))
    for r in cohort:
        gflops = r.performance.gflops(first, profile.focus) if first and r.performance else None
        speed = "" if not first else (
            f"{gflops:9.1f} {r.performance.fraction(first, profile.focus):13.0%}" if gflops
            else f"{'-':>9} {'-':>13}")
        print(f"  {r.student:<8} {format_points(r.auto_score):>7}/{format_points(r.auto_max):<2} "
              f"{format_points(r.late_penalty):>13} {format_points(r.score):>6}   {speed}")
    found = next((r.performance.machine for r in cohort
                  if r.performance and r.performance.machine), None)
    if found:
        from .ceilings import summary

        print(f"\nThe grading machine: {summary(found)}")
    feedback = course.feedback_dir("<student>") / f"{course.assignment}.html"
    print(f"\nDemo course: {course.root}")
    print(f"  grades:   {course.root / 'grades.csv'} (Canvas import: grades-canvas.csv)")
    print(f"  feedback: {feedback}")
    print(f"  report:   {course.root / 'reports' / 'index.html'}")
    print(f"  hand grading: make formgrader COURSE={course.root}")
    return 0
