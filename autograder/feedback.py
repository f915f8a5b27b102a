"""Write one HTML feedback page per student from the gradebook.

The page shows the score per part, every test with the message of its failure, the timing figures
against their limits, how close the student's products came to the machine (GFLOP/s and the
fraction of the machine's attainable peak, beside its theoretical peak; a plot of the grader's
measurements at a few sizes; a roofline; the assignment's sentence on what the gap means; the
machine's caches), and the state of the written answers. It is built
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
import uuid
from pathlib import Path

from nbconvert.exporters import Exporter
from traitlets import default

from . import machine
from .assignment import Assignment
from .ceilings import Ceilings
from .course import Course
from .files import write_atomic
from .outcomes import format_points
from .performance import Performance, arithmetic_intensity, explained
from .results import StudentResult, load_cohort
from .trusted.profile import LIBRARY

STYLES = ("o-", "o--", "s-", "s--", "^-", "^--")   # a student's line, then its reference's
MARKERS = ("o", "s", "^", "D", "v")
LIBRARY_COLOR = "#555555"
ROOFLINE_CAPTION = (
    "Each point is a product at one size n, placed at its arithmetic intensity: an n×n float32 "
    "product does 2n³ flops and must move at least its three matrices, 3·n²·4 bytes, once "
    "(its compulsory traffic), so n/6 FLOP per byte. Under the slanted roof a product would be "
    "held back by memory bandwidth, under the flat ones by the core. A point far below every "
    "roof is held back by neither: by work that is not multiplying (Python's cost per element "
    "or per tile, the call path).")


def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("autograder", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("feedback.html.j2")


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def data_uri(fig) -> str | None:
    """A figure as a PNG data: URI (the page stands alone), or None."""
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def exact_ticks(axis, values) -> None:
    """Label exactly `values` on a (log) axis: no other ticks, no minor labels."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    values = sorted(values)
    axis.set_major_locator(FixedLocator(values))
    axis.set_major_formatter(FixedFormatter([f"{v:g}" for v in values]))
    axis.set_minor_locator(NullLocator())


def plain_log_ticks(axis) -> None:
    """Decades labelled as plain numbers (0.1, 1, 10), minor ticks without labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def speed_figure(perf: Performance | None, spec: Assignment):
    """The profile as a small log-log plot (a matplotlib Figure), or None."""
    profile = perf.profile if perf else None
    if not profile or not profile.seconds or spec.profile is None:
        return None
    fig = _figure(8.2, 3.6)
    ax = fig.subplots()
    sizes: set[int] = set()
    students = spec.profile.students()
    for i, (name, label) in enumerate(spec.profile.lines()):
        points = sorted(profile.seconds.get(name, {}).items())
        if not points:
            continue
        sizes.update(n for n, _ in points)
        if name == LIBRARY:
            style, color = "s--", LIBRARY_COLOR
        else:
            group = next((j for j, f in enumerate(students) if name.startswith(f)), i)
            style, color = STYLES[i % len(STYLES)], f"C{group}"
        ax.loglog([n for n, _ in points], [s * 1e3 for _, s in points], style, color=color,
                  label=label)
    ax.set_xlabel("n: an n x n product")
    ax.set_ylabel("milliseconds per product")
    exact_ticks(ax.xaxis, sizes)
    plain_log_ticks(ax.yaxis)
    ax.grid(True, which="major", color="#e4e4e4")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def speed_plot(perf: Performance | None, spec: Assignment) -> str | None:
    """The profile plot as a data: URI, or None."""
    return data_uri(speed_figure(perf, spec))


def roofline_figure(machine: Ceilings | None, series: list[tuple[str, list[tuple[int, float]]]],
                    title: str, connect: bool = True):
    """A roofline (log-log: arithmetic intensity, GFLOP/s) with the machine's roofs and each
    series' (label, [(n, GFLOP/s)]) points at n/6 FLOP/byte; None without ceilings or points."""
    import math

    points = [(n, g) for _, found in series for n, g in found if g]
    if machine is None or not points or not machine.attainable_gflops:
        return None
    fig = _figure(8.2, 4.4)
    ax = fig.subplots()
    attainable, theoretical = machine.attainable_gflops, machine.theoretical_gflops
    bandwidth, kernel = machine.bandwidth_gbs, machine.blas_gflops
    top = max(theoretical or 0, attainable)
    xs = [arithmetic_intensity(n) for n, _ in points]
    ridge = top / bandwidth if bandwidth else min(xs)
    low, high = min(min(xs), ridge) / 4, max(max(xs), ridge) * 3
    grid = [low * (high / low) ** (i / 200) for i in range(201)]

    def roof(level: float) -> list[float]:
        return [min(level, bandwidth * x) if bandwidth else level for x in grid]

    right = high / 1.15
    if theoretical:
        ax.loglog(grid, roof(theoretical), "-", color="#222222", linewidth=1.6,
                  label=f"theoretical peak {theoretical:.0f}")
        ax.text(right, theoretical * 1.1, f"theoretical {theoretical:.0f}", ha="right",
                va="bottom", fontsize=8)
    what = "best np.matmul" if machine.attainable_source == "np.matmul in a bare loop" \
        else "fastest measured"
    if kernel and theoretical and kernel < theoretical * 0.99:
        if kernel < attainable * 1.15:     # one line: the library runs at its kernel's ceiling
            what += f"; {machine.blas_vector_bits}-bit BLAS kernel's ceiling"
        else:
            ax.loglog(grid, roof(kernel), ":", color="#7a5b00", linewidth=1.3,
                      label=f"BLAS kernel ({machine.blas_vector_bits}-bit) {kernel:.0f}")
            ax.text(right, kernel * 1.1, f"BLAS kernel {kernel:.0f}", ha="right", va="bottom",
                    fontsize=8, color="#7a5b00")
    ax.loglog(grid, roof(attainable), "--", color="#17692b", linewidth=1.6,
              label=f"attainable peak {attainable:.0f} ({what})")
    ax.text(right, attainable / 1.1, f"attainable {attainable:.0f}", ha="right", va="top",
            fontsize=8, color="#17692b")
    if bandwidth:
        slope = [x for x in grid if bandwidth * x <= top]
        ax.loglog(slope, [bandwidth * x for x in slope], "-", color="#3a6ea5", linewidth=2.2,
                  alpha=0.8, label=f"memory roof: {bandwidth:.0f} GB/s x intensity")
    for i, (label, found) in enumerate(series):
        found = sorted((n, g) for n, g in found if g)
        if found:
            ax.loglog([arithmetic_intensity(n) for n, _ in found], [g for _, g in found],
                      f"{MARKERS[i % len(MARKERS)]}{'-' if connect else ''}", color=f"C{i}",
                      label=label, markersize=6, alpha=0.9 if connect else 0.7, linewidth=1)
    ax.set_xlim(low, high)
    ax.set_ylim(min(g for _, g in points) / 4, top * 2.2)
    ax.set_xlabel("arithmetic intensity: FLOP per byte of compulsory traffic (n/6)")
    ax.set_ylabel("GFLOP/s, one core (roofs in GFLOP/s)")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    sizes = sorted({n for n, _ in points})
    top_axis = ax.secondary_xaxis("top", functions=(lambda x: x * 6.0, lambda n: n / 6.0))
    exact_ticks(top_axis.xaxis, sizes)
    top_axis.set_xlabel("n: the n x n products measured", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", color="#ececec")
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
    return fig


def student_roofline(perf: Performance | None, spec: Assignment):
    """The student's own products on the roofline of the machine that graded them."""
    if perf is None or perf.profile is None or spec.profile is None:
        return None
    series = [(f"your {name}", [(n, perf.gflops(name, n))
                                for n in sorted(perf.profile.seconds.get(name, {}))])
              for name in spec.profile.students()]
    return roofline_figure(perf.machine, series, "Your products under the machine's roofs")


def percent(fraction: float | None) -> str:
    """A fraction as a percentage with the digits it needs ("38%", "2.5%", "0.03%")."""
    if fraction is None:
        return "–"
    value = 100 * fraction
    if value >= 10:
        return f"{value:.0f}%"
    if value >= 1:
        return f"{value:.1f}%"
    return f"{value:.2f}%" if value >= 0.01 else "<0.01%"


WITHHELD = ("failed in the hidden tests; what they say is shown after the due date (test your "
            "function on other inputs, edge cases included)")


def render(result: StudentResult, spec: Assignment, withhold_hidden: bool = False,
           note: str = "") -> str:
    """The student's page. `withhold_hidden`: before the due date, a test that failed in its
    hidden part shows that it failed, not what the hidden test says; `note`: a line on top."""
    late = str(datetime.timedelta(seconds=round(result.seconds_late)))
    perf = result.performance
    return _template().render(
        r=result, fmt=format_points, late=late, spec=spec, perf=perf, percent=percent,
        withhold_hidden=withhold_hidden, withheld=WITHHELD, note=note,
        pending=result.pending_parts(),
        library=LIBRARY,
        plot=speed_plot(perf, spec), roofline=data_uri(student_roofline(perf, spec)),
        roofline_caption=ROOFLINE_CAPTION, focus=spec.profile.focus if spec.profile else None,
        lines=spec.profile.lines() if spec.profile else [],
        ceilings=perf.machine if perf else None, meaning=explained(perf, spec),
        machine=machine.summary(result.machine) if result.machine else "")


def feedback_path(course: Course, student: str) -> Path:
    return course.feedback_dir(student) / f"{course.assignment}.html"


def write_feedback(course: Course, students: list[str] | None = None,
                   withhold_hidden: bool = False, notes: dict[str, str] | None = None
                   ) -> list[Path]:
    """Write the page of every graded student (or those named); return the paths written."""
    written = []
    for result in load_cohort(course, students):
        if result.status == "not graded":
            continue
        path = feedback_path(course, result.student)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, render(result, course.spec, withhold_hidden,
                                  (notes or {}).get(result.student, "")))
        _write_release_files(course, result.student, path.parent)
        written.append(path)
    return written


def _write_release_files(course: Course, student: str, folder: Path) -> None:
    """What `nbgrader release_feedback` reads beside each page: timestamp.txt and
    submission_secret.txt, as nbgrader's own generate_feedback copies them from the submission.

    A submission that came through the exchange has both, and the secret is what lets the
    student's `nbgrader fetch_feedback` find the page. One collected from an LMS has neither; it
    gets the grading time and a secret of its own, so that a class-wide release_feedback does not
    stop at the first such student (nobody fetches those pages through the exchange).
    """
    for name in ("timestamp.txt", "submission_secret.txt"):
        source = next((d / name for d in (course.autograded_dir(student),
                                          course.submitted_dir(student)) if (d / name).is_file()),
                      None)
        if source is not None:
            (folder / name).write_bytes(source.read_bytes())
        elif not (folder / name).is_file():
            (folder / name).write_text(
                datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
                if name == "timestamp.txt" else uuid.uuid4().hex)


class FeedbackExporter(Exporter):
    """nbgrader's own feedback (`nbgrader generate_feedback`, formgrader's Generate Feedback
    button) made as this project's page.

    nbgrader renders the autograded notebook, hidden tests and all, and formgrader's Release
    Feedback hands that page to the student. Configured as GenerateFeedback's exporter
    (nbgrader_config.py), this exporter ignores the notebook and returns the page `feedback`
    writes for that student, so every way nbgrader offers to make feedback makes the safe one.
    """
    output_mimetype = "text/html"

    @default("file_extension")
    def _file_extension_default(self):
        return ".html"

    def from_notebook_node(self, nb, resources=None, **kw):
        _, resources = super().from_notebook_node(nb, resources, **kw)  # nbgrader's preprocessors
        info = resources["nbgrader"]
        root = self.config.CourseDirectory.get("root") or "."
        course = Course.at(Path(root).resolve(), info["assignment"])
        result = next(iter(load_cohort(course, [info["student"]])), None)
        if result is None or result.status == "not graded":
            raise ValueError(f"{info['student']} has no grading record for {info['assignment']}: "
                             f"grade them first (python -m autograder grade)")
        return render(result, course.spec), resources


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
