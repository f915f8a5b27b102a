"""Write one HTML feedback page per student from the gradebook.

The page shows the score per part, every test with the message of its failure, the timing figures
against their limits, how close the student's products came to the machine (GFLOP/s and the
fraction of the one-core peak, with a plot of the grader's measurements at a few sizes and the
assignment's sentence on what the gap means), and the state of the written answers. It is built
from the results records, not from the graded notebook, so the source of hidden tests never
reaches students (nbgrader's own feedback renders the whole notebook, hidden tests included).

Pages go to nbgrader's feedback folder, `feedback/<student>/<assignment>/<assignment>.html`, where
`nbgrader release_feedback` and the LMS upload steps in the README pick them up.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import io
from pathlib import Path

from . import machine
from .assignment import Assignment
from .course import Course
from .outcomes import format_points
from .performance import Performance, explained
from .results import StudentResult, load_cohort
from .trusted.profile import PEAK

STYLES = ("o-", "o--", "s-", "s--", "^-", "^--")   # a student's line, then its reference's


def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("autograder", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("feedback.html.j2")


def speed_plot(perf: Performance | None, spec: Assignment) -> str | None:
    """The profile as a small log-log plot, a data: URI (the page stands alone), or None."""
    profile = perf.profile if perf else None
    if not profile or not profile.seconds or spec.profile is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    for i, (name, label) in enumerate(spec.profile.lines()):
        points = sorted(profile.seconds.get(name, {}).items())
        if points:
            style = "s--" if name == PEAK else STYLES[i % len(STYLES)]
            ax.loglog([n for n, _ in points], [s * 1e3 for _, s in points], style,
                      color=f"C{i // 2}", label=label)
    ax.set_xlabel("n: an n x n product")
    ax.set_ylabel("milliseconds per product")
    ax.set_xticks(profile.sizes, [str(n) for n in profile.sizes])
    ax.grid(True, which="both", color="#e4e4e4")
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def render(result: StudentResult, spec: Assignment) -> str:
    late = str(datetime.timedelta(seconds=round(result.seconds_late)))
    perf = result.performance
    return _template().render(
        r=result, fmt=format_points, late=late, spec=spec, perf=perf,
        plot=speed_plot(perf, spec), focus=spec.profile.focus if spec.profile else None,
        lines=spec.profile.lines() if spec.profile else [],
        meaning=explained(perf, spec),
        machine=machine.summary(result.machine) if result.machine else "")


def feedback_path(course: Course, student: str) -> Path:
    return course.feedback_dir(student) / f"{course.assignment}.html"


def write_feedback(course: Course, students: list[str] | None = None) -> list[Path]:
    """Write the page of every graded student (or those named); return the paths written."""
    written = []
    for result in load_cohort(course, students):
        if result.status == "not graded":
            continue
        path = feedback_path(course, result.student)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(result, course.spec), encoding="utf-8")
        written.append(path)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("students", nargs="*", metavar="STUDENT",
                        help="only these students (default: everyone graded)")


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    paths = write_feedback(course, args.students or None)
    for path in paths:
        print(path.relative_to(course.root))
    print(f"wrote {len(paths)} feedback page(s) under feedback/")
    return 0
