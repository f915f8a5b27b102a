"""The cohort report: `python -m autograder report -o DIR` on real graded courses."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from autograder.cli import main
from autograder.course import REPO_ROOT, Course
from autograder.performance import Performance
from autograder.report import PLOT_FILES, build_report, code_similarity, leaderboard, render
from autograder import results
from autograder.results import StudentResult, Timing, load_cohort
from tests.browser import chromium_driver
from tests.conftest import COHORT, submission, submit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Local names of the reference answers, renamed the way a student hiding a copy would.
RENAMES = {"total": "acc", "c": "out", "i": "row", "j": "col", "p": "step", "i0": "r0",
           "i1": "r1", "j0": "c0", "j1": "c1", "p0": "s0", "p1": "s1", "k_b": "k_other",
           "hidden": "activations"}
RENAME_PATTERN = re.compile(r"\b(" + "|".join(RENAMES) + r")\b")


class _Tables(HTMLParser):
    """Text of every cell of every <table id=...>, and the src of every <img>."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(index: Path) -> _Tables:
    parser = _Tables()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def body_rows(table: list[list[str]]) -> list[list[str]]:
    """The rows after the header row."""
    return table[1:]


def renamed_copy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    copy = nbformat.from_dict(notebook)
    for cell in copy.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = RENAME_PATTERN.sub(lambda m: RENAMES[m[1]], cell.source)
    return copy


def place_autograded(course: Course, student: str, nb: nbformat.NotebookNode) -> None:
    folder = course.autograded_dir(student)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "acceleration.ipynb")


def run_report(course: Course, out: Path, capsys, *extra: str) -> Path:
    assert main(["--course", str(course.root), "report", "-o", str(out), *extra]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    index = out / "index.html"
    assert printed[-1] == str(index)
    return index


# ------------------------------------------------------------------------------------------------
# The graded cohort: 1001 answered everything, 1002 three parts, 1003 nothing
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_of_the_graded_cohort(graded_course, tmp_path, capsys):
    index = run_report(graded_course, tmp_path / "report", capsys)

    for name in PLOT_FILES.values():
        assert (index.parent / name).read_bytes().startswith(PNG_MAGIC), name
    page = parse(index)
    assert sorted(page.images) == sorted(PLOT_FILES.values())

    summary = dict((row[0], row[1]) for row in page.tables["summary"])
    assert summary["Submissions"] == "3"
    assert summary["Graded"] == "3"
    assert summary["Grading failed"] == "0"
    # Speed tests can cost 1001 points on a busy machine: compare with the gradebook's scores.
    scores = sorted(r.auto_score for r in load_cohort(graded_course))
    assert summary["Autograded score (mean / median)"] == (
        f"{sum(scores) / 3:.1f} / {scores[1]:.1f} of 80")
    assert "1001" in summary["Awaiting hand grading of written answers"]

    rates = {row[0]: row[1:] for row in body_rows(page.tables["pass-rates"])}
    assert list(rates)[:3] == ["naive_correct", "naive_errors", "blocked_correct"]
    assert rates["naive_correct"] == ["Part 1: naive loops", "2", "3", "67%"]
    assert rates["blocked_correct"][1:] == ["1", "3", "33%"]
    assert rates["numpy_correct"][1:] == ["2", "3", "67%"]
    assert rates["models_workloads"][1:] == ["1", "3", "33%"]

    leaders = body_rows(page.tables["leaderboard"])
    assert [row[:2] for row in leaders] == [["1", "1001"]]
    assert re.fullmatch(r"\d+\.\d\dx", leaders[0][2])

    # 1002 pasted the same reference answers as 1001 for its three parts; 1003 left every stub.
    pairs = {(row[0], row[1]): row[2:4] for row in body_rows(page.tables["similarity"])}
    assert pairs.keys() == {("1001", "1002")}
    assert pairs["1001", "1002"][1] == "100%"
    assert "Only the given stubs, nothing to compare: 1003." in index.read_text()

    html = index.read_text(encoding="utf-8")
    assert "not a verdict" in html
    for first, last, _ in COHORT.values():
        assert not re.search(rf"\b({first}|{last})\b", html), f"{first} {last} is in the report"
        assert f"{first.lower()}@example.edu" not in html


@pytest.mark.slow
def test_graded_students_without_timings(graded_course, tmp_path):
    """1002 and 1003 have no working blocked matmul, so no blocked speed figures and no
    leaderboard (1002's matmul_numpy has timings of its own)."""
    cohort = load_cohort(graded_course, ["1002", "1003"])
    assert all(r.status == "graded" and not any(t.name.startswith("blocked") for t in r.timings)
               for r in cohort)
    index = render(graded_course, cohort, tmp_path / "report")
    page = parse(index)
    html = index.read_text(encoding="utf-8")

    assert "leaderboard" not in page.tables
    assert "No data: no graded submission has a <code>blocked_vs_numpy_256</code> figure" in html
    assert "No data: nobody who passed <code>blocked_correct</code> has a speed figure" in html
    assert not (index.parent / PLOT_FILES["speed"]).exists()
    assert not (index.parent / PLOT_FILES["leaderboard"]).exists()
    # 1002's matmul_naive and matmul_numpy work, so the grader profiled them: the plots of
    # speed there are their fractions of the peak and the roofline.
    assert sorted(page.images) == sorted([PLOT_FILES["scores"], PLOT_FILES["pass_rates"],
                                          PLOT_FILES["peak"], PLOT_FILES["roofline"]])
    fractions = {row[0]: row[1:] for row in body_rows(page.tables["peak-fractions"])}
    assert fractions["matmul_blocked"] == ["0", "no data"]
    assert fractions["matmul_naive"][0] == fractions["matmul_numpy"][0] == "1"
    assert [row[0] for row in body_rows(page.tables["ceilings"])][:2] == [
        "Theoretical peak, one core", "Attainable peak"]
    assert "similarity" not in page.tables
    assert "fewer than two submissions have answer code of their own" in html


@pytest.mark.slow
def test_a_renamed_copy_is_flagged_and_blank_notebooks_are_not(graded_course, tmp_path, capsys):
    root = tmp_path / "course"
    shutil.copytree(graded_course.root, root)
    course = Course.at(root)
    original = nbformat.read(course.submitted_dir("1001") / "acceleration.ipynb", as_version=4)
    submit(course, "1004", renamed_copy(original))

    from autograder.grade import grade_batch

    batch = grade_batch(course, ["1004"], jobs=1, progress=False)
    assert [r.status for r in batch.graded] == ["graded"], batch
    graded_nb = nbformat.read(course.autograded_dir("1004") / "acceleration.ipynb", as_version=4)
    naive = next(c.source for c in graded_nb.cells
                 if c.metadata.get("nbgrader", {}).get("grade_id") == "naive_impl")
    assert "acc +=" in naive and "total" not in naive

    index = run_report(course, tmp_path / "report", capsys)
    pairs = {(row[0], row[1]): row[2:4] for row in body_rows(parse(index).tables["similarity"])}
    assert pairs["1001", "1004"] == ["100%", "100%"]
    assert not any("1003" in pair for pair in pairs), pairs
    assert "Only the given stubs, nothing to compare: 1003." in index.read_text()
    assert (graded_course.submitted_students() == ["1001", "1002", "1003"]
            and not (graded_course.root / "submitted" / "1004").exists())


# ------------------------------------------------------------------------------------------------
# Quick checks on hand-placed notebooks and empty courses
# ------------------------------------------------------------------------------------------------
def test_similarity_ignores_the_given_code(course):
    place_autograded(course, "2001", submission(course))
    place_autograded(course, "2002", renamed_copy(submission(course)))
    place_autograded(course, "2003", submission(course, ()))
    place_autograded(course, "2004", submission(course, ()))
    place_autograded(course, "2005", submission(course, ("naive",)))

    result = code_similarity(course, ["2001", "2002", "2003", "2004", "2005", "2006"], 50)

    assert result.stubs_only == ["2003", "2004"]
    assert result.missing == ["2006"]
    assert result.compared == ["2001", "2002", "2005"]
    by_pair = {(p.first, p.second): p for p in result.pairs}
    assert by_pair["2001", "2002"].first_percent == pytest.approx(100)
    assert by_pair["2001", "2002"].second_percent == pytest.approx(100)
    # 2005 wrote only matmul_naive, the same as 2001's: all of 2005's code is in 2001's.
    assert by_pair["2001", "2005"].second_percent == pytest.approx(100)
    assert by_pair["2001", "2005"].first_percent < 50
    assert not any({"2003", "2004"} & {p.first, p.second} for p in result.pairs)


def test_similarity_threshold_filters_pairs(course):
    place_autograded(course, "2001", submission(course))
    place_autograded(course, "2005", submission(course, ("naive",)))
    assert [(p.first, p.second) for p in code_similarity(course, ["2001", "2005"], 50).pairs] \
        == [("2001", "2005")]
    assert code_similarity(course, ["2001", "2005"], 100.0).pairs[0].percent == pytest.approx(100)
    place_autograded(course, "2006", submission(course, ("footprint",)))
    different = code_similarity(course, ["2005", "2006"], 50)
    assert different.compared == ["2005", "2006"] and different.pairs == []


def test_empty_course(course, tmp_path, capsys):
    index = run_report(course, tmp_path / "out", capsys)
    html = index.read_text(encoding="utf-8")
    page = parse(index)
    assert page.images == []
    assert dict((row[0], row[1]) for row in page.tables["summary"])["Submissions"] == "0"
    assert html.count("No data") >= 4
    assert not any((index.parent / name).exists() for name in PLOT_FILES.values())
    assert not course.gradebook.exists(), "the report must not create a gradebook"


def test_submissions_not_graded_yet(course, tmp_path):
    for student in ("3001", "3002"):
        submit(course, student, submission(course, ("naive",)))
    index = build_report(course, tmp_path / "out")
    page = parse(index)
    summary = dict((row[0], row[1]) for row in page.tables["summary"])
    assert summary["Submissions"] == "2"
    assert summary["Graded"] == "0"
    assert summary["Not graded yet"] == "2"
    assert [row[:2] for row in body_rows(page.tables["grading-problems"])] == [
        ["3001", "not graded"], ["3002", "not graded"]]
    assert page.images == []
    assert "No autograded notebook to read: 3001, 3002." in index.read_text()


def test_stale_plots_are_removed_and_similarity_can_be_left_out(course, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / PLOT_FILES["speed"]
    stale.write_bytes(PNG_MAGIC)
    index = run_report(course, out, capsys, "--no-similarity")
    assert not stale.exists()
    assert "Left out of this copy of the report." in index.read_text()


def test_threshold_must_be_a_percentage(course, capsys):
    with pytest.raises(SystemExit):
        main(["--course", str(course.root), "report", "--similarity-threshold", "150"])
    assert "a percentage from 0 to 100" in capsys.readouterr().err


def test_heavy_libraries_load_only_when_the_report_is_built():
    code = ("import sys, autograder.cli\n"
            "autograder.cli.build_parser()\n"
            "print(sorted(m for m in ('matplotlib', 'copydetect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------
# The page in a real browser
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_renders_in_chromium(graded_course, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    index = run_report(graded_course, tmp_path / "report", capsys)
    driver = chromium_driver(tmp_path / "chromium-profile", "check the report in a browser")
    try:
        driver.set_page_load_timeout(60)
        driver.get(index.as_uri())
        assert driver.title == "Cohort report: acceleration"
        assert driver.find_element(By.TAG_NAME, "h1").text == "Cohort report: acceleration"
        images = driver.execute_script(
            "return Array.from(document.images).map("
            "  img => [img.getAttribute('src'), img.complete, img.naturalWidth]);")
        assert sorted(src for src, _, _ in images) == sorted(PLOT_FILES.values())
        for src, complete, width in images:
            assert complete and width > 0, f"{src} did not load"
        for table in ("summary", "pass-rates", "leaderboard", "similarity"):
            rows = driver.find_elements(By.CSS_SELECTOR, f"table#{table} tr")
            assert rows and rows[0].is_displayed(), f"table {table} is missing"
        leader = driver.find_elements(By.CSS_SELECTOR, "table#leaderboard tbody tr")
        assert [row.get_attribute("data-student") for row in leader] == ["1001"]
        assert driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------------
# The leaderboard within noise, and the machines
# ------------------------------------------------------------------------------------------------
def _timed(student: str, ratio: float, spread: float = 1.0, cpu: str = "CPU A") -> StudentResult:
    """A graded student whose blocked product passed and was timed at `ratio` x NumPy."""
    speeds = [{"function": "matmul_blocked", "reference": "np.matmul",
               "shapes": [[256, 256], [256, 256]], "ratio": ratio, "spread": spread}]
    return StudentResult(student, status="graded",
                         tests=[results.ScoredTest("blocked_correct", 12, 12)],
                         timings=[Timing("blocked_vs_numpy_256", ratio, "at most", 10)],
                         performance=Performance(None, speeds),
                         machine={"cpu": cpu, "cores": 2, "blas": "openblas 0.3",
                                  "blas_threads": 1, "numpy": "2.4.6", "python": "3.11.7"})


def test_ties_within_noise_share_a_rank():
    cohort = [_timed("a", 2.0), _timed("b", 2.1), _timed("c", 3.0), _timed("d", 3.2, 1.5),
              _timed("e", 6.0)]
    rows = leaderboard(cohort, Course.at(REPO_ROOT).spec)
    assert [(r.student, r.rank_text) for r in rows] == [
        ("a", "=1"), ("b", "=1"), ("c", "=3"), ("d", "=3"), ("e", "5")]
    # At least the 25% within which the grader's own rule treats two timings as equal.
    assert rows[0].high / rows[0].low == pytest.approx(1.25)
    assert rows[3].high / rows[3].low == pytest.approx(1.5)


def test_the_report_warns_when_the_cohort_was_graded_on_several_machines(course, tmp_path):
    one = render(course, [_timed("a", 2.0), _timed("b", 3.0)], tmp_path / "one")
    assert 'id="machines-warning"' not in one.read_text()
    assert body_rows(parse(one).tables["machines"])[0][1] == "2: a, b"
    two = render(course, [_timed("a", 2.0), _timed("b", 3.0, cpu="CPU B")], tmp_path / "two")
    html = two.read_text()
    assert 'id="machines-warning"' in html and "graded on 2 different" in html
