"""Hand grading in nbgrader's formgrader, end to end, as a grader does it after `make formgrader`.

A copy of the graded cohort is served by a real Jupyter Lab (the venv's, started in the course root
with nbgrader's formgrader server extension). Headless Chromium walks Manage Assignments -> the
assignment's submissions -> student 1001 -> their notebook, checks that a written answer is shown
for grading with its rubric (the mark scheme of the locked prompt cell above it) and the student's
text, types a score into every written answer's score box, and `export --format csv` must then
carry those points.

Formgrader pages and elements relied on (nbgrader 0.9.6, server_extensions/formgrader/):
  /formgrader?token=T                      redirects to /formgrader/manage_assignments
  /formgrader/manage_assignments           #main-table tr: td.name, td.num-submissions a
  /formgrader/manage_submissions/<asg>     #main-table tr: td.student-id, td.status,
                                           td.student-name a
  /formgrader/manage_students/<stu>/<asg>  #main-table tr: td.name a (a notebook), td.code-score
  /formgrader/submissions/<id>/            one div.cell per notebook cell; a graded answer is a
      div.nbgrader_cell panel with .nbgrader-label "Student's answer" and input.score#<grade_id>;
      the page's JS `formgrader.grades` (Backbone) saves a score on the input's change event
      (PUT /formgrader/api/grade/<id>), and takes needs_manual_grade=false from the server's reply.
"""
from __future__ import annotations

import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course, tool_environment
from autograder.export import graded_cells
from tests.browser import chromium_driver

pytestmark = pytest.mark.slow

STUDENT = "1001"                     # answered everything (tests/conftest.py COHORT)
CHECKED = "question_memory_access"   # the written answer whose rubric and text are checked
SERVER_START_TIMEOUT = 60
PAGE_TIMEOUT = 30


# ------------------------------------------------------------------------------------------------
# Jupyter Lab with the formgrader, as `make formgrader` starts it
# ------------------------------------------------------------------------------------------------
@dataclass
class Formgrader:
    course: Course
    base_url: str        # http://127.0.0.1:<port>
    token: str
    log: Path
    process: subprocess.Popen

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(server: Formgrader) -> None:
    """Poll Jupyter's /api/status until it answers 200; fail with its log if it dies or hangs."""
    request = urllib.request.Request(f"{server.base_url}/api/status",
                                     headers={"Authorization": f"token {server.token}"})
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.process.returncode} before serving; "
                        f"its log ({server.log}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)  # polling interval: there is nothing else to wait on before it listens
    pytest.fail(f"jupyter lab did not answer {server.base_url}/api/status within "
                f"{SERVER_START_TIMEOUT} s ({last}); its log ({server.log}):\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group: SIGTERM (Jupyter shuts down cleanly), then SIGKILL."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # anything the server left in its group
    except ProcessLookupError:
        pass
    process.wait(timeout=15)


@pytest.fixture
def formgrader(graded_course, tmp_path):
    """A copy of the graded cohort served by the venv's Jupyter Lab, started in the course root."""
    course = Course.at(shutil.copytree(graded_course.root, tmp_path / "course"))
    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.is_file(), f"{jupyter} is missing: run `make test` (installs the venv)"
    port, token = _free_port(), secrets.token_hex(16)
    env = tool_environment()  # the venv's bin first on PATH: nbgrader runs `alembic` from there
    env.update(JUPYTER_TOKEN=token,
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),     # no personal ~/.jupyter
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"))
    command = [str(jupyter), "lab", "--no-browser", f"--ServerApp.root_dir={course.root}",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "jupyter-server.log"
    with log.open("wb") as log_file:
        # cwd: the formgrader reads nbgrader_config.py from the folder it starts in.
        process = subprocess.Popen(command, cwd=course.root, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Formgrader(course, f"http://127.0.0.1:{port}", token, log, process)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        _stop(process)


# ------------------------------------------------------------------------------------------------
# the browser
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def browser(tmp_path):
    driver = chromium_driver(tmp_path / "chromium-profile", "grade in formgrader")
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def evidence_on_failure(driver, server: Formgrader, folder: Path):
    """On any failure, keep a screenshot, the page source and the console log, and say where."""
    try:
        yield
    except Exception as exc:
        saved = []
        try:
            url = driver.current_url
            if driver.save_screenshot(str(folder / "formgrader-failure.png")):
                saved.append(str(folder / "formgrader-failure.png"))
            (folder / "formgrader-failure.html").write_text(driver.page_source, encoding="utf-8")
            saved.append(str(folder / "formgrader-failure.html"))
            console = "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
            (folder / "formgrader-console.txt").write_text(console, encoding="utf-8")
            saved.append(str(folder / "formgrader-console.txt"))
        except Exception as inner:  # the browser itself may be gone
            url = f"(browser unreachable: {inner})"
        what = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
        raise AssertionError(
            f"{what}\n"
            f"browser at {url}; saved: {', '.join(saved) or 'nothing'}\n"
            f"Jupyter server log {server.log}, last lines:\n{server.log_tail()}") from exc


def wait_for(driver, condition, what: str, timeout: float = PAGE_TIMEOUT):
    """Wait until `condition(driver)` is truthy and return it; fail naming `what`."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiting = WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(condition, message=f"timed out after {timeout} s waiting for {what}")


def table_row(driver, column: str, text: str, also: str | None = None):
    """The #main-table row whose td.<column> reads `text` (and that has a td.<also>), or False."""
    from selenium.webdriver.common.by import By

    for row in driver.find_elements(By.CSS_SELECTOR, "#main-table > tr"):
        cells = row.find_elements(By.CSS_SELECTOR, f"td.{column}")
        if cells and cells[0].text.strip() == text and (
                also is None or row.find_elements(By.CSS_SELECTOR, f"td.{also}")):
            return row
    return False


# The formgrade page is ready when its grades are loaded from the API, and (when MathJax could load:
# not offline) MathJax has typeset and formgrader has scrolled to the first box.
FORMGRADE_READY = """
return typeof formgrader !== 'undefined' && formgrader.grades !== undefined
    && formgrader.grades.loaded === true
    && (typeof MathJax === 'undefined' || MathJax.loaded === true)
    && !$('html, body').is(':animated');
"""
STILL = "return !$('html, body').is(':animated');"
GRADE_STATE = """
var m = formgrader.grades.findWhere({name: arguments[0]});
return m ? {needs_manual_grade: m.get('needs_manual_grade'), manual_score: m.get('manual_score')}
         : null;
"""


def same_points(a, b) -> bool:
    return a is not None and a != "" and abs(float(a) - float(b)) < 1e-9


# ------------------------------------------------------------------------------------------------
# what the grader should see, from the course's own files
# ------------------------------------------------------------------------------------------------
def rendered(markdown_line: str) -> str:
    """A markdown line as its rendered text reads: no list bullet, code ticks or bold marks."""
    text = markdown_line.strip()
    if text[:2] in ("- ", "* "):
        text = text[2:]
    return " ".join(text.replace("`", "").replace("**", "").split())


def _cells_by_id(path: Path) -> tuple[list, dict[str, int]]:
    nb = nbformat.read(path, as_version=4)
    ids = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(nb.cells)}
    return nb.cells, ids


def rubric_line(course: Course, grade_id: str) -> str:
    """The first line of the mark scheme in the (locked) cell above the answer, in the source."""
    cells, ids = _cells_by_id(course.source_notebook)
    prompt = cells[ids[grade_id] - 1].source.splitlines()
    assert "### BEGIN MARK SCHEME" in prompt, (
        f"the cell above {grade_id} in {course.source_notebook} has no mark scheme")
    scheme = prompt[prompt.index("### BEGIN MARK SCHEME") + 1:]
    line = rendered(next(line for line in scheme if line.strip()))
    assert len(line) > 20, f"first mark-scheme line of {grade_id} too short to look for: {line!r}"
    return line


def answer_line(course: Course, student: str, grade_id: str) -> str:
    """The first line the student wrote in an answer cell (not the heading the release gives it)."""
    cells, ids = _cells_by_id(course.submitted_dir(student) / "acceleration.ipynb")
    released, released_ids = _cells_by_id(course.release_notebook)
    given = set(released[released_ids[grade_id]].source.splitlines())
    line = rendered(next(line for line in cells[ids[grade_id]].source.splitlines()
                         if line.strip() and line not in given))
    assert len(line) > 20 and "YOUR ANSWER HERE" not in line, (
        f"{student} did not answer {grade_id}: {line!r}")
    return line


def scores_to_enter(course: Course) -> dict[str, float]:
    """A score for each written answer: a half point in the checked one, whole ones elsewhere."""
    written = [c for c in graded_cells(course) if c.written]
    assert CHECKED in [c.grade_id for c in written], (
        f"{CHECKED} is not a written answer of {course.source_notebook}: update CHECKED")
    deductions = (1.0, 0.0, 2.0)
    scores = {}
    for i, cell in enumerate(written):
        if cell.grade_id == CHECKED:
            scores[cell.grade_id] = cell.points - 1.5 if cell.points >= 2 else cell.points / 2
        else:
            scores[cell.grade_id] = max(0.0, cell.points - deductions[i % len(deductions)])
    return scores


def export_csv(course: Course, out: Path) -> dict[str, dict[str, str]]:
    """Run `python -m autograder --course C export --format csv -o out`; rows by student id."""
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "--course", str(course.root), "export",
         "--format", "csv", "-o", str(out)],
        env=tool_environment(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"export exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    with out.open(encoding="utf-8", newline="") as fh:
        return {row["student_id"]: row for row in csv.DictReader(fh)}


def gradebook_says(course: Course, student: str, grade_ids) -> str:
    """What nbgrader's gradebook holds for these grades: for failure messages."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        lines = []
        for grade_id in grade_ids:
            grade = gb.find_grade(grade_id, "acceleration", course.assignment, student)
            lines.append(f"  {grade_id}: manual_score={grade.manual_score} "
                         f"needs_manual_grade={grade.needs_manual_grade}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the test
# ------------------------------------------------------------------------------------------------
def test_written_answer_graded_in_formgrader_reaches_export(formgrader, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC

    course = formgrader.course
    scores = scores_to_enter(course)
    rubric, answer = rubric_line(course, CHECKED), answer_line(course, STUDENT, CHECKED)

    before = export_csv(course, tmp_path / "before.csv")[STUDENT]
    assert before["written_total"] == "" and before["question"] == "", (
        f"before hand grading, {STUDENT}'s written answers should be pending in the export: "
        f"{before}")

    with evidence_on_failure(browser, formgrader, tmp_path):
        # Manage Assignments -> the number of submissions of the assignment
        browser.get(f"{formgrader.base_url}/formgrader?token={formgrader.token}")
        wait_for(browser, EC.url_contains("/formgrader/manage_assignments"),
                 "/formgrader to redirect to Manage Assignments (not the login page)")
        row = wait_for(browser, lambda d: table_row(d, "name", course.assignment),
                       f"the {course.assignment} row of Manage Assignments")
        row.find_element(By.CSS_SELECTOR, "td.num-submissions a").click()

        # Manage Submissions -> the student
        row = wait_for(browser, lambda d: table_row(d, "student-id", STUDENT),
                       f"student {STUDENT}'s row on Manage Submissions")
        assert row.find_element(By.CSS_SELECTOR, "td.status").text == "needs manual grading", (
            f"{STUDENT}'s status before hand grading: {row.text!r}")
        row.find_element(By.CSS_SELECTOR, "td.student-name a").click()

        # the student's notebooks -> the notebook, to grade it
        wait_for(browser, EC.url_contains(f"/formgrader/manage_students/{STUDENT}/"),
                 f"{STUDENT}'s page of notebooks")
        row = wait_for(browser, lambda d: table_row(d, "name", "acceleration", also="code-score"),
                       f"the acceleration notebook row of {STUDENT}'s submission")
        row.find_element(By.CSS_SELECTOR, "td.name a").click()
        wait_for(browser, EC.url_contains("/formgrader/submissions/"), "the grading page")
        wait_for(browser, lambda d: d.execute_script(FORMGRADE_READY),
                 "the grading page's scores to load (formgrader.grades.loaded)")

        # the answer, its rubric in the locked cell right above it, and its score box
        box = browser.find_element(By.CSS_SELECTOR, f"input.score#{CHECKED}")
        panel = box.find_element(By.XPATH, "./ancestor::div[contains(@class, 'nbgrader_cell')]")
        cell = box.find_element(By.XPATH, "./ancestor::div[contains(concat(' ', @class, ' '), "
                                          "' cell ')][1]")
        above = cell.find_element(By.XPATH, "./preceding-sibling::div[contains(concat(' ', "
                                            "@class, ' '), ' cell ')][1]")
        label = panel.find_element(By.CSS_SELECTOR, ".nbgrader-label")
        assert label.text == "Student's answer", (
            f"{CHECKED} is not shown as an answer: {label.text!r}")
        body = panel.find_element(By.CSS_SELECTOR, ".panel-body")
        assert body.is_displayed() and above.is_displayed(), (
            "the answer, or the cell above it, is hidden")
        shown_answer = " ".join(body.text.split())      # .text: only what is rendered visible
        shown_above = " ".join(above.text.split())
        assert answer in shown_answer, (
            f"{STUDENT}'s answer to {CHECKED} is not shown for grading; expected {answer!r} in "
            f"{shown_answer[:300]!r}")
        assert rubric in shown_above, (
            f"the mark scheme of {CHECKED} is not shown above the answer; expected {rubric!r} in "
            f"{shown_above[:600]!r}")

        state = browser.execute_script(GRADE_STATE, CHECKED)
        assert state and state["needs_manual_grade"] and state["manual_score"] is None, (
            f"{CHECKED} should await hand grading before we score it: {state}")
        assert "needs_manual_grade" in box.get_attribute("class").split()

        # type each written answer's score as a grader does: in the box, then Tab to leave it
        for grade_id, points in scores.items():
            box = browser.find_element(By.CSS_SELECTOR, f"input.score#{grade_id}")
            assert box.get_attribute("value") == "", f"{grade_id} already has a score"
            # focusing a box starts formgrader's 0.5 s scroll to it: click once the page is still
            wait_for(browser, lambda d: d.execute_script(STILL), "the page to stop scrolling")
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
            box.click()
            box.send_keys(f"{points:g}", Keys.TAB)

            def saved(d, grade_id=grade_id, points=points, box=box):
                state = d.execute_script(GRADE_STATE, grade_id)
                return (state and state["needs_manual_grade"] is False
                        and same_points(state["manual_score"], points)
                        and "needs_manual_grade" not in box.get_attribute("class").split())

            wait_for(browser, saved, f"formgrader to save {points:g} for {grade_id} (the server's "
                                     f"reply to PUT /formgrader/api/grade/<id>)")
            assert same_points(box.get_attribute("value"), points), box.get_attribute("value")

    # export reads the gradebook the formgrader wrote to
    row = export_csv(course, tmp_path / "grades.csv")[STUDENT]
    written = sum(scores.values())
    entered = ", ".join(f"{g}={p:g}" for g, p in scores.items())
    where = (f"entered in formgrader: {entered}; exported row: {row}\n"
             f"gradebook:\n{gradebook_says(course, STUDENT, scores)}")
    assert row["written_total"] != "", (
        f"the written answers graded in formgrader did not reach the export "
        f"(written_total still empty: some answer still pending)\n{where}")
    assert same_points(row["written_total"], written), (
        f"written_total is not the sum of the scores entered in formgrader ({written:g})\n{where}")
    assert same_points(row["question"], written), f"the question part column is off\n{where}"
    total = float(row["auto_total"]) + written - float(row["late_penalty"])
    assert same_points(row["total"], total), (
        f"the total does not include the written answers\n{where}")


def test_make_formgrader_refuses_a_port_in_use_before_printing_an_address():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(["make", "--no-print-directory", "formgrader", f"PORT={port}"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"port {port} is in use" in proc.stderr and f"PORT={port + 1}" in proc.stderr
    assert "http://" not in proc.stdout + proc.stderr
