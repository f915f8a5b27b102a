"""Write the cohort report: one static HTML page with plots, for the teaching team.

The page (`index.html`, with its PNG plots next to it) opens from disk with no server and no network.
It shows the grading summary and the machines it ran on, the score distribution, the pass rate of
every test, the spread of the assignment's leaderboard figure, how close its profiled functions came
to the machine (fractions of its attainable peak, beside its theoretical peak, and a cohort
roofline), the leaderboard and a similarity table of the answer code.
Students appear by id only, never by name, so the page can be shown to the class; the similarity
table names pairs of ids and is meant for the teaching team (`--no-similarity` leaves it out).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import machine
from .assignment import Assignment
from .ceilings import Ceilings
from .course import Course, CourseError
from .feedback import ROOFLINE_CAPTION, percent, roofline_figure
from .notebook import grade_id, is_answer_cell, part_of
from .results import StudentResult, load_cohort
from .trusted.profile import LIBRARY

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"


DEFAULT_SIMILARITY = 50.0   # percent of one submission's own code found in the other
NOISE_CHARS = 25            # copydetect's k: the shortest match (in filtered code) that counts

PLOT_FILES = {
    "scores": "scores.png",
    "pass_rates": "pass_rates.png",
    "speed": "speed_ratio.png",
    "peak": "peak_fraction.png",
    "roofline": "roofline.png",
    "leaderboard": "leaderboard.png",
}
SMALLEST_FRACTION = 1e-5    # the peak-fraction plot's left edge: 0.001% of the attainable peak


# ---------------------------------------------------------------------------------------------
# The figures in the tables
# ---------------------------------------------------------------------------------------------
@dataclass
class Summary:
    submissions: int = 0
    graded: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (student, status, reason)
    auto_max: float = 0.0
    auto_mean: float | None = None
    auto_median: float | None = None
    total_max: float = 0.0
    total_count: int = 0            # graded students whose written answers are all scored too
    total_mean: float | None = None
    total_median: float | None = None
    awaiting: list[str] = field(default_factory=list)


@dataclass
class TestRate:
    grade_id: str
    passed: int
    total: int
    part_title: str = ""

    @property
    def part(self) -> str:
        return part_of(self.grade_id)

    @property
    def percent(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 0.0


@dataclass
class LeaderRow:
    rank: int
    student: str
    ratio: float
    limit: float
    within_limit: bool
    also: float | None       # the leaderboard's other timing, when it was measured
    low: float | None = None       # the range the ratio could take within measurement noise
    high: float | None = None
    tied: bool = False             # its range overlaps the first of its rank's

    @property
    def rank_text(self) -> str:
        return f"={self.rank}" if self.tied else str(self.rank)


@dataclass
class MachineGroup:
    summary: str
    students: list[str]


@dataclass
class SimilarPair:
    first: str
    second: str
    first_percent: float     # share of `first`'s own code that is also in `second`
    second_percent: float
    matched: int             # length of the matching code, in characters of normalised code

    @property
    def percent(self) -> float:
        return max(self.first_percent, self.second_percent)


@dataclass
class Similarity:
    threshold: float
    compared: list[str] = field(default_factory=list)      # students with code of their own
    stubs_only: list[str] = field(default_factory=list)    # nothing beyond the given stubs
    missing: list[str] = field(default_factory=list)       # no autograded notebook to read
    pairs: list[SimilarPair] = field(default_factory=list)


def _mean_median(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.median(values)


def _written_score(result: StudentResult) -> float:
    return sum(a.score or 0.0 for a in result.answers)


def _written_max(result: StudentResult) -> float:
    return sum(a.max_score for a in result.answers)


def _written_done(result: StudentResult) -> bool:
    return bool(result.answers) and not result.needs_manual_grading


def summarize(cohort: list[StudentResult]) -> Summary:
    graded = [r for r in cohort if r.status == "graded"]
    summary = Summary(submissions=len(cohort), graded=len(graded))
    for result in cohort:
        summary.by_status[result.status] = summary.by_status.get(result.status, 0) + 1
        if result.status != "graded":
            summary.problems.append((result.student, result.status,
                                     result.reason or "not graded yet"))
    summary.auto_max = max((r.auto_max for r in graded), default=0.0)
    summary.auto_mean, summary.auto_median = _mean_median([r.auto_score for r in graded])
    complete = [r for r in graded if not r.needs_manual_grading]
    summary.total_count = len(complete)
    summary.total_max = max((r.max_score for r in complete), default=0.0)
    summary.total_mean, summary.total_median = _mean_median([r.score for r in complete])
    summary.awaiting = [r.student for r in graded if r.needs_manual_grading]
    return summary


def pass_rates(cohort: list[StudentResult], order: dict[str, int],
               spec: Assignment) -> list[TestRate]:
    """Share of graded students passing each test, in the order the notebook shows them."""
    graded = [r for r in cohort if r.status == "graded"]
    rates: dict[str, TestRate] = {}
    for result in graded:
        for test in result.tests:
            rate = rates.setdefault(test.grade_id, TestRate(
                test.grade_id, 0, 0, spec.part_title(part_of(test.grade_id))))
            rate.total += 1
            rate.passed += int(test.passed)
    return sorted(rates.values(), key=lambda r: (order.get(r.grade_id, len(order)), r.grade_id))


def speed_ratios(cohort: list[StudentResult], spec: Assignment) -> list[tuple[str, float, float]]:
    """(student, figure, limit) of every graded student the leaderboard's timing measured."""
    found = []
    board = spec.leaderboard
    for result in cohort:
        timing = result.timing(board.timing) if board and result.status == "graded" else None
        if timing is not None:
            found.append((result.student, timing.value, timing.limit))
    return found


def leaderboard(cohort: list[StudentResult], spec: Assignment) -> list[LeaderRow]:
    """Students who passed the leaderboard's required test, lowest figure (fastest) first.

    Each figure has the range it could take within measurement noise (`Performance.ratio_range`);
    a student whose range overlaps that of the first student of a rank shares that rank, so
    ties within noise show as ties ("=2").
    """
    board = spec.leaderboard
    if board is None:
        return []
    entries = []
    for result in cohort:
        if result.status != "graded":
            continue
        required = next((t for t in result.tests if t.grade_id == board.requires), None)
        timing = result.timing(board.timing)
        if required is None or not required.passed or timing is None:
            continue
        also = result.timing(board.also) if board.also else None
        spread = result.performance.ratio_range(*board.measured) if result.performance else None
        low, high = (spread[1], spread[2]) if spread else (timing.value, timing.value)
        entries.append(LeaderRow(0, result.student, timing.value, timing.limit, timing.passed,
                                 also.value if also else None, low, high))
    entries.sort(key=lambda row: (row.ratio, row.student))
    leader = None
    for position, row in enumerate(entries, start=1):
        if leader is not None and row.low <= leader.high:
            row.rank, row.tied, leader.tied = leader.rank, True, True
        else:
            row.rank, leader = position, row
    return entries


def machines(cohort: list[StudentResult]) -> list[MachineGroup]:
    """The machines the cohort was graded on, most students first."""
    groups: dict[str, MachineGroup] = {}
    for result in cohort:
        if result.machine:
            key = machine.fingerprint(result.machine)
            groups.setdefault(key, MachineGroup(machine.summary(result.machine), []))
            groups[key].students.append(result.student)
    return sorted(groups.values(), key=lambda g: (-len(g.students), g.summary))


def peak_fractions(cohort: list[StudentResult], spec: Assignment
                   ) -> dict[str, list[tuple[str, float]]]:
    """function -> (student, its fraction of the attainable peak), at the profile's focus size
    (or the largest size a function was timed at), and the same for NumPy's own product called
    the grader's way (LIBRARY)."""
    if spec.profile is None:
        return {}
    found: dict[str, list[tuple[str, float]]] = {name: [] for name in spec.profile.students()}
    found[LIBRARY] = []
    for result in cohort:
        if result.status != "graded" or result.performance is None:
            continue
        for name in found:
            size = result.performance.quoted_size(name, spec.profile.focus)
            fraction = result.performance.fraction(name, size) if size else None
            if fraction is not None:
                found[name].append((result.student, fraction))
    return found


def cohort_machine(cohort: list[StudentResult]) -> tuple[Ceilings | None, list[StudentResult]]:
    """The ceilings of the machine most of the cohort's speed figures were measured on, raised to
    every figure measured there, and the graded students measured there."""
    groups: dict[str, list[StudentResult]] = {}
    for result in cohort:
        perf = result.performance
        if result.status == "graded" and perf is not None and perf.ceilings is not None \
                and perf.profile is not None and perf.profile.seconds:
            groups.setdefault(perf.ceilings.fingerprint, []).append(result)
    if not groups:
        return None, []
    students = max(groups.values(), key=len)
    found = students[0].performance.ceilings
    for result in students:
        raised = result.performance.machine
        if raised.attainable_gflops > found.attainable_gflops:
            found = found.raised_to(raised.attainable_gflops,
                                    f"{raised.attainable_source}, student {result.student}")
    return found, students


# ---------------------------------------------------------------------------------------------
# Similarity of the answer code
# ---------------------------------------------------------------------------------------------
def answer_code(notebook) -> str:
    """The student-editable code cells of a notebook, joined into one Python file."""
    parts = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and is_answer_cell(cell):
            parts.append(f"# cell {grade_id(cell)}\n{cell.source.rstrip()}\n")
    return "\n\n".join(parts)


def _stub_code(course: Course) -> str:
    """The given code of the answer cells, as the release hands it out (nbgrader's stubs)."""
    import nbformat

    released = course.release_notebook
    if not released.is_file():
        raise CourseError(f"no release at {released}: run `python -m autograder release` first")
    return answer_code(nbformat.read(released, as_version=4))


def _copydetect():
    """copydetect imports pyplot when it loads: choose the file-only backend first."""
    import matplotlib

    matplotlib.use("Agg")
    import copydetect

    return copydetect


def code_similarity(course: Course, students: list[str],
                    threshold: float = DEFAULT_SIMILARITY) -> Similarity:
    """Compare the answer code of every pair of students with copydetect.

    The given code (signatures, docstrings, `# YOUR CODE HERE`, `raise NotImplementedError()`) is
    copydetect boilerplate: matches inside it do not count, so untouched notebooks share nothing.
    A pair is listed when either side has at least `threshold` percent of its own code in the other.
    """
    import nbformat

    similarity = Similarity(threshold=threshold)
    with tempfile.TemporaryDirectory(prefix="report-similarity-") as tmp:
        answers_dir, stubs_dir = Path(tmp, "answers"), Path(tmp, "stubs")
        answers_dir.mkdir()
        stubs_dir.mkdir()
        (stubs_dir / "stubs.py").write_text(_stub_code(course), encoding="utf-8")
        files: dict[str, str] = {}
        for student in sorted(students):
            path = course.autograded_dir(student) / course.notebook
            if not path.is_file():
                similarity.missing.append(student)
                continue
            target = answers_dir / f"{student}.py"
            target.write_text(answer_code(nbformat.read(path, as_version=4)), encoding="utf-8")
            files[str(target)] = student
        if not files:
            return similarity

        copydetect = _copydetect()
        detector = copydetect.CopyDetector(
            test_dirs=[str(answers_dir)], boilerplate_dirs=[str(stubs_dir)], extensions=["py"],
            noise_t=NOISE_CHARS, guarantee_t=NOISE_CHARS, display_t=threshold / 100.0,
            autoopen=False, silent=True, out_file=str(Path(tmp, "copydetect.html")))
        detector.run()
        own = {}
        for name, student in files.items():
            data = detector.file_data.get(name)
            if data is None or not data.hashes:
                similarity.stubs_only.append(student)
            else:
                own[student] = data
        similarity.compared = sorted(own)
        path_of = {student: name for name, student in files.items()}
        row = {name: i for i, name in enumerate(detector.test_files)}
        column = {name: j for j, name in enumerate(detector.ref_files)}
        for pos, first in enumerate(similarity.compared):
            for second in similarity.compared[pos + 1:]:
                i, j = row[path_of[first]], column[path_of[second]]
                first_share, second_share = (float(x) for x in detector.similarity_matrix[i, j])
                if first_share <= 0 and second_share <= 0:
                    continue
                pair = SimilarPair(first, second, 100.0 * first_share, 100.0 * second_share,
                                   round(first_share * own[first].token_coverage))
                if pair.percent >= threshold:
                    similarity.pairs.append(pair)
    similarity.pairs.sort(key=lambda p: (-p.percent, p.first, p.second))
    return similarity


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg backend, written as PNG files)
# ---------------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> str:
    fig.savefig(path, format="png")
    return path.name


def _score_bins(top: float):
    """Bin edges from 0 to `top` points, a round number of points wide, at most 20 bins."""
    import numpy as np

    top = max(top, 1.0)
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) + (top,) if top / s <= 20)
    edges = np.arange(0.0, top, step)
    return np.append(edges, top)


def _students(count: int) -> str:
    return f"{count} student" if count == 1 else f"{count} students"


def plot_scores(cohort: list[StudentResult], path: Path) -> str | None:
    graded = [r for r in cohort if r.status == "graded"]
    if not graded:
        return None
    fig = _figure(10, 3.8)
    auto_ax, written_ax = fig.subplots(1, 2)
    auto_max = max(r.auto_max for r in graded)
    auto_ax.hist([r.auto_score for r in graded], bins=_score_bins(auto_max),
                 color="#3a6ea5", edgecolor="white")
    auto_ax.set_title(f"Autograded score ({_students(len(graded))})")
    auto_ax.set_xlabel(f"points (of {auto_max:g})")
    auto_ax.set_ylabel("students")
    auto_ax.set_xlim(0, max(auto_max, 1))
    auto_ax.yaxis.get_major_locator().set_params(integer=True)

    done = [r for r in graded if _written_done(r)]
    if done:
        written_max = max(_written_max(r) for r in done)
        written_ax.hist([_written_score(r) for r in done], bins=_score_bins(written_max),
                        color="#c07a2f", edgecolor="white")
        written_ax.set_xlim(0, max(written_max, 1))
        written_ax.set_xlabel(f"points (of {written_max:g})")
        written_ax.set_ylabel("students")
        written_ax.yaxis.get_major_locator().set_params(integer=True)
    else:
        written_ax.text(0.5, 0.5, "no written answers hand-graded yet", ha="center",
                        va="center", transform=written_ax.transAxes, color="#666666")
        written_ax.set_xticks([])
        written_ax.set_yticks([])
    blank = sum(a.blank for r in done for a in r.answers)
    written_ax.set_title(f"Written answers, where graded ({_students(len(done))}"
                         + (f"; {blank} answer(s) left blank, scored 0 by nbgrader, not a grader"
                            if blank else "") + ")", fontsize="medium")
    return _save(fig, path)


def plot_pass_rates(rates: list[TestRate], path: Path) -> str | None:
    if not rates:
        return None
    from matplotlib.patches import Patch

    parts = list(dict.fromkeys(r.part for r in rates))
    colours = {part: f"C{i % 10}" for i, part in enumerate(parts)}
    fig = _figure(9, 1.2 + 0.42 * len(rates))
    ax = fig.subplots()
    positions = range(len(rates))
    ax.barh(list(positions), [r.percent for r in rates],
            color=[colours[r.part] for r in rates], height=0.7)
    ax.set_yticks(list(positions), [r.grade_id for r in rates])
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel("students passing (%)")
    ax.set_title("Pass rate per test, in notebook order")
    for pos, rate in zip(positions, rates):
        ax.text(rate.percent + 1, pos, f"{rate.passed}/{rate.total}", va="center", fontsize=9)
    titles = {r.part: r.part_title for r in rates}
    ax.legend(handles=[Patch(color=colours[p], label=titles[p]) for p in parts],
              loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


def plot_speed(ratios: list[tuple[str, float, float]], path: Path, spec: Assignment) -> str | None:
    if not ratios:
        return None
    board = spec.leaderboard
    import numpy as np

    values = [value for _, value, _ in ratios]
    limit = max(limit for _, _, limit in ratios)
    top = max(max(values), limit) * 1.15
    fig = _figure(8, 3.8)
    ax = fig.subplots()
    ax.hist(values, bins=np.linspace(0, top, 24), color="#3a6ea5", edgecolor="white",
            label="students")
    ax.axvline(limit, color="#b22222", linestyle="--", linewidth=2,
               label=f"limit: at most {limit:g}x")
    ax.set_xlim(0, top)
    ax.set_xlabel(f"{board.axis} (lower is faster)")
    ax.set_ylabel("students")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{board.timing} ({_students(len(values))} measured)")
    ax.legend()
    return _save(fig, path)


def plot_peak_fractions(fractions: dict[str, list[tuple[str, float]]], path: Path,
                        spec: Assignment) -> str | None:
    if not any(fractions.values()):
        return None
    import numpy as np
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig = _figure(8, 3.6)
    ax = fig.subplots()
    bins = np.geomspace(SMALLEST_FRACTION, 1.0, 31)
    for i, (name, values) in enumerate(fractions.items()):
        if values:
            label = spec.profile.library_label if name == LIBRARY else name
            ax.hist([min(1.0, max(SMALLEST_FRACTION, f)) for _, f in values], bins=bins,
                    color="#555555" if name == LIBRARY else f"C{i}", alpha=0.75,
                    edgecolor="white", label=f"{label} ({_students(len(values))})")
    ax.set_xscale("log")
    ax.set_xlim(SMALLEST_FRACTION, 1.0)
    decades = [10.0 ** k for k in range(-5, 1)]
    ax.xaxis.set_major_locator(FixedLocator(decades))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g}%"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"fraction of the machine's attainable peak, at {spec.profile.focus}x"
                  f"{spec.profile.focus} or the largest size timed (log scale)")
    ax.set_ylabel("students")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("How close each product came to the machine")
    ax.legend(fontsize=8, loc="upper center")
    return _save(fig, path)


def plot_roofline(machine_found: Ceilings | None, students: list[StudentResult], path: Path,
                  spec: Assignment) -> str | None:
    """Every student's products at the size feedback quotes, under the machine's roofs."""
    if machine_found is None or spec.profile is None:
        return None
    series = []
    for name in spec.profile.students():
        points = []
        for result in students:
            size = result.performance.quoted_size(name, spec.profile.focus)
            gflops = result.performance.gflops(name, size) if size else None
            if gflops:
                points.append((size, gflops))
        series.append((f"{name} ({_students(len(points))})", points))
    fig = roofline_figure(machine_found, series, "The cohort's products under the machine's "
                          "roofs", connect=False)
    return _save(fig, path) if fig is not None else None


def plot_leaderboard(rows: list[LeaderRow], path: Path, spec: Assignment) -> str | None:
    if not rows:
        return None
    fig = _figure(8, 1.3 + 0.38 * len(rows))
    ax = fig.subplots()
    positions = list(range(len(rows)))
    ax.barh(positions, [r.ratio for r in rows], height=0.7,
            color=["#2e8b57" if r.within_limit else "#b22222" for r in rows],
            xerr=[[r.ratio - r.low for r in rows], [r.high - r.ratio for r in rows]],
            error_kw={"ecolor": "#333333", "capsize": 3})
    ax.set_yticks(positions, [f"#{r.rank_text}  {r.student}" for r in rows])
    ax.invert_yaxis()
    limit = max(r.limit for r in rows)
    ax.axvline(limit, color="#b22222", linestyle="--", linewidth=1.5,
               label=f"limit: at most {limit:g}x")
    ax.set_xlim(0, max(max(r.high for r in rows), limit) * 1.15)
    ax.set_xlabel(f"{spec.leaderboard.axis} (shorter bar = faster)")
    ax.set_title(f"{spec.leaderboard.title}: students who passed {spec.leaderboard.requires}")
    ax.legend(loc="lower right")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------
def _load_results(course: Course) -> list[StudentResult]:
    """The cohort; without a gradebook every submission is simply not graded yet."""
    students = course.submitted_students()
    if not students:
        return []
    if not course.gradebook.is_file():
        return [StudentResult(student=s) for s in students]
    return load_cohort(course, students)


def _grade_order(course: Course) -> dict[str, int]:
    from .results import grade_order

    try:
        return grade_order(course)
    except FileNotFoundError:
        return {}


def render(course: Course, cohort: list[StudentResult], out_dir: Path,
           threshold: float = DEFAULT_SIMILARITY, similarity: bool = True) -> Path:
    """Write index.html and its plots for `cohort` into out_dir; return the page's path.

    With `similarity` false the page leaves out the similarity table (a copy for the class).
    """
    import jinja2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in PLOT_FILES.values():
        (out_dir / name).unlink(missing_ok=True)

    spec = course.spec
    summary = summarize(cohort)
    rates = pass_rates(cohort, _grade_order(course), spec)
    ratios = sorted(speed_ratios(cohort, spec), key=lambda r: (r[1], r[0]))
    rows = leaderboard(cohort, spec)
    fractions = peak_fractions(cohort, spec)
    roofs, measured_there = cohort_machine(cohort)
    similar = code_similarity(course, [r.student for r in cohort], threshold) if similarity else None
    plots = {
        "scores": plot_scores(cohort, out_dir / PLOT_FILES["scores"]),
        "pass_rates": plot_pass_rates(rates, out_dir / PLOT_FILES["pass_rates"]),
        "speed": plot_speed(ratios, out_dir / PLOT_FILES["speed"], spec),
        "peak": plot_peak_fractions(fractions, out_dir / PLOT_FILES["peak"], spec),
        "roofline": plot_roofline(roofs, measured_there, out_dir / PLOT_FILES["roofline"], spec),
        "leaderboard": plot_leaderboard(rows, out_dir / PLOT_FILES["leaderboard"], spec),
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    html = env.get_template(TEMPLATE).render(
        assignment=course.assignment, summary=summary, rates=rates, ratios=ratios,
        speed_limit=max((limit for _, _, limit in ratios), default=None),
        speed_median=statistics.median([v for _, v, _ in ratios]) if ratios else None,
        board=spec.leaderboard, leaderboard=rows, spec=spec,
        similarity=similar, plots=plots, noise_chars=NOISE_CHARS, machines=machines(cohort),
        fractions=fractions, focus=spec.profile.focus if spec.profile else None,
        fraction_median={name: statistics.median([f for _, f in values])
                         for name, values in fractions.items() if values},
        percent=percent, library=LIBRARY, ceilings=roofs, measured_there=len(measured_there),
        roofline_caption=ROOFLINE_CAPTION)
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


def build_report(course: Course, out_dir: Path, threshold: float = DEFAULT_SIMILARITY,
                 similarity: bool = True) -> Path:
    """The report of every collected submission of `course`, written into out_dir."""
    return render(course, _load_results(course), out_dir, threshold, similarity)


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"a percentage from 0 to 100, got {value:g}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="DIR", default=None,
                        help="folder for index.html and its plots (default: reports/ in the "
                             "course root)")
    parser.add_argument("--similarity-threshold", metavar="PERCENT", type=_percent,
                        default=DEFAULT_SIMILARITY,
                        help="list a pair of submissions when at least this share of one's own "
                             "answer code is also in the other (default: %(default)g)")
    parser.add_argument("--no-similarity", action="store_true",
                        help="leave out the similarity table, for a copy shown to the class")


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    out_dir = Path(args.output).resolve() if args.output else course.root / "reports"
    if out_dir.exists() and not out_dir.is_dir():
        raise CourseError(f"{out_dir} is a file; pass a folder to -o")
    index = build_report(course, out_dir, args.similarity_threshold, not args.no_similarity)
    print(index)
    return 0
