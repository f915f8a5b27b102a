"""The adversarial corpus, graded once in one batch next to a well-behaved reference student.

For every hostile submission: the exact autograded score of each test cell, nothing secret in its
autograded notebook's outputs or its feedback page, and what its sandboxes let it see. For the
batch as a whole: every submission got a record, no sandboxed process outlived it, the reference
student kept full marks and its gradebook row, and nothing was written or connected to outside
the sandboxes. See README.md in this folder for the cases.
"""
from __future__ import annotations

import ast
import contextlib
import html
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course
from autograder.feedback import feedback_path, write_feedback
from autograder.grade import BatchResult, grade_batch, summary_line
from autograder.gradebook import open_gradebook
from autograder.notebook import distinctive, region_lines
from autograder.release import ensure_gradebook
from autograder.results import StudentResult, load_cohort
from tests.adversarial import cases
from tests.adversarial.cases import AUTOGRADED_MAX, CASES, KERNEL_MARK, POINTS, REFERENCE, Context
from tests.conftest import submission, submit
from tests.processes import processes_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

JOBS = 2
TIME_LIMIT = 10
STUDENTS = sorted([case.student for case in CASES] + [REFERENCE])
REGIONS = {
    "hidden test": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
    "mark scheme": ("### BEGIN MARK SCHEME", "### END MARK SCHEME"),
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
}
# Variables the sandboxes define for themselves, whatever the grader's values are.
SANDBOX_VARIABLES = {
    "PATH", "HOME", "LANG", "LC_ALL", "PWD", "OLDPWD", "TERM", "PYTHONPATH", "MPLBACKEND",
    "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR",
    "PAGER", "GIT_PAGER", "KMP_DUPLICATE_LIB_OK", "PYDEVD_USE_FRAME_EVAL",
}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ERROR_NAME = re.compile(r"^[A-Za-z]*(Error|Exception)$")
# A bare call such as `matmul_naive(a, b)`: tracebacks print every frame that way.
FRAME_HEADER = re.compile(r"^\w+\([\w, ]*\)$")


@dataclass
class Canaries:
    """Values only the grader holds; none may show up in what a student gets back."""
    environment: dict[str, str]     # planted in the grader's environment for the batch
    email: str                      # the reference student's email, only in the gradebook
    notebook: str                   # a line only in the reference student's submission


@dataclass
class Corpus:
    course: Course
    context: Context
    canaries: Canaries
    batch: BatchResult
    wall_seconds: float
    grader_environment: dict[str, str]
    results: dict[str, StudentResult] = field(default_factory=dict)
    leftover_processes: list[str] = field(default_factory=list)
    host_connections: int = 0


def _sandbox_processes(batch: BatchResult) -> list[str]:
    """Processes still running as one of the batch's sandbox uids."""
    assert len(batch.sandbox_uids) == 2 * JOBS, batch.sandbox_uids
    return processes_of(*batch.sandbox_uids)


def _accepted_connections(listener: socket.socket) -> int:
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def _announce(request, lines: list[str]) -> None:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, request) -> Corpus:
    course = Course.scaffold(tmp_path_factory.mktemp("adversarial") / "course", Course.at(REPO_ROOT))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    context = Context(course, listener.getsockname()[1], "marker" + secrets.token_hex(8))
    canaries = Canaries(
        environment={"ACCELERATION_GRADER_TOKEN": "token-" + secrets.token_hex(16),
                     "GRADER_DB_PASSWORD": "password-" + secrets.token_hex(16)},
        email=f"canary-{secrets.token_hex(8)}@example.edu",
        notebook=f"reference canary {secrets.token_hex(12)}")

    for case in CASES:
        submit(course, case.student, case.build(context))
    reference = submission(course)
    naive = next(c for c in reference.cells
                 if c.metadata.get("nbgrader", {}).get("grade_id") == "naive_impl")
    naive.source = f"# {canaries.notebook}\n" + naive.source
    submit(course, REFERENCE, reference)
    ensure_gradebook(course)
    with open_gradebook(course) as gb:
        gb.update_or_create_student(REFERENCE, first_name="Ada", last_name="Reference",
                                    email=canaries.email)

    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in canaries.environment.items():
                env.setenv(name, value)
            grader_environment = dict(os.environ)
            started = time.monotonic()
            batch = grade_batch(course, jobs=JOBS, time_limit=TIME_LIMIT, progress=False)
            wall = time.monotonic() - started
        write_feedback(course)
        deadline = time.monotonic() + 15
        while _sandbox_processes(batch) and time.monotonic() < deadline:
            time.sleep(0.2)
        leftovers = _sandbox_processes(batch)
        connections = _accepted_connections(listener)
    finally:
        listener.close()

    result = Corpus(course, context, canaries, batch, wall, grader_environment,
                    {r.student: r for r in load_cohort(course)}, leftovers, connections)
    _announce(request, [f"adversarial corpus: {len(STUDENTS)} submissions graded with "
                        f"jobs={JOBS}, time_limit={TIME_LIMIT} s in {wall:.0f} s wall time"]
              + [summary_line(record) for record in batch.graded])
    return result


# What a student gets back --------------------------------------------------------------------

def _outputs_text(path: Path) -> str:
    """Everything the outputs of an autograded notebook show: streams, errors, rich data."""
    if not path.is_file():
        return ""
    parts = []
    for cell in nbformat.read(path, as_version=4).cells:
        # A print can reach the notebook as several stream outputs split mid-line: join a
        # cell's streams as a terminal would show them.
        parts.append("".join(o.get("text", "") for o in cell.get("outputs", [])
                             if o.get("output_type") == "stream"))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                parts += [output.get("ename", ""), str(output.get("evalue", "")),
                          *output.get("traceback", [])]
            for value in output.get("data", {}).values():
                parts.append(value if isinstance(value, str) else json.dumps(value))
    return ANSI.sub("", "\n".join(parts))


def _readings(text: str) -> list[str]:
    """The text as shown, and with the escapes of a printed repr() undone."""
    unescaped = (text.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t")
                 .replace("\\'", "'").replace('\\"', '"').replace("\0", "\\"))
    return [text, unescaped]


def _region_lines(nb, begin: str, end: str) -> set[str]:
    """Lines found only inside one kind of region of the source, long enough to be telling."""
    return {line for line in region_lines(nb, (begin, end)) if not FRAME_HEADER.match(line)}


def _grader_values(corpus: Corpus) -> dict[str, str]:
    """The grader's environment values worth keeping secret: not paths, not short, not shared."""
    values = {}
    for name, value in corpus.grader_environment.items():
        if name in SANDBOX_VARIABLES or len(value) < 8 or value.startswith(("/", "~", ".")):
            continue
        if all(part.startswith("/") for part in value.split(os.pathsep)):
            continue
        values[f"the grader's ${name}"] = value
    return values


def _secrets_for(corpus: Corpus, student: str) -> dict[str, str]:
    """description -> secret text, for one student (its own submission's lines are not secret)."""
    source = nbformat.read(corpus.course.source_notebook, as_version=4)
    submitted = nbformat.read(corpus.course.submitted_dir(student) / "acceleration.ipynb",
                              as_version=4)
    own = {distinctive(line) for cell in submitted.cells for line in cell.source.splitlines()}
    found: dict[str, str] = {}
    for kind, (begin, end) in REGIONS.items():
        for line in sorted(_region_lines(source, begin, end) - own):
            found[f"{kind} line {line!r}"] = line
    found.update(_grader_values(corpus))
    found.update({f"planted ${name}": value
                  for name, value in corpus.canaries.environment.items()})
    found["gradebook contents (SQLite header)"] = "SQLite format 3"
    if student != REFERENCE:
        found["the reference student's email, from the gradebook"] = corpus.canaries.email
        found["the reference student's notebook"] = corpus.canaries.notebook
    return found


def _leaks(corpus: Corpus, student: str) -> list[str]:
    course = corpus.course
    shown = {
        "autograded notebook outputs": _outputs_text(
            course.autograded_dir(student) / "acceleration.ipynb"),
        "feedback page": html.unescape(feedback_path(course, student).read_text(encoding="utf-8")),
    }
    leaks = []
    for where, text in shown.items():
        readings = _readings(text)
        for what, secret in _secrets_for(corpus, student).items():
            if any(secret in reading for reading in readings):
                leaks.append(f"{what} in the {where}")
    return leaks


def _kernel_lines(corpus: Corpus, student: str) -> list[str]:
    text = _outputs_text(corpus.course.autograded_dir(student) / "acceleration.ipynb")
    return [line[len(KERNEL_MARK) + 1:] for line in text.splitlines()
            if line.startswith(KERNEL_MARK + " ")]


def _kernel_view(corpus: Corpus, student: str) -> dict[str, str]:
    """path -> what the kernel reported for it (`KERNEL-SAW <path> => <what>` lines)."""
    view = {}
    for line in _kernel_lines(corpus, student):
        path, sep, what = line.partition(" => ")
        if sep:
            view[path] = what
    return view


def _worker_loot(corpus: Corpus, student: str):
    """What the worker put in the `loot` key of its footprint (shown by footprint_values' failure)."""
    nb = nbformat.read(corpus.course.autograded_dir(student) / "acceleration.ipynb", as_version=4)
    cell = next(c for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "footprint_values")
    evalue = next(o["evalue"] for o in cell.outputs if o.get("output_type") == "error")
    return ast.literal_eval(evalue.split(", got ", 1)[1])["loot"]


def _shielded(path: str, corpus: Corpus) -> bool:
    """Whether a path names something of the course or the repository that must stay invisible."""
    if not os.path.isabs(path):
        return path.endswith((".ipynb", ".db", ".json", ".py"))
    hidden = [corpus.course.root, REPO_ROOT / "source", REPO_ROOT / "gradebook.db"]
    return any(Path(path) == top or top in Path(path).parents for top in hidden)


# Every case ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=lambda case: case.student)
def test_scores_are_exactly_the_expected_ones(corpus, case):
    result = corpus.results[case.student]
    assert result.status == case.status, f"{case.student} ({case.attack}): {result.reason}"
    scores = {test.grade_id: test.score for test in result.tests}
    assert scores == case.expected, (
        f"{case.student} ({case.attack}): got {sum(scores.values()):g}, expected "
        f"{case.expected_total:g}; differing tests: "
        + ", ".join(f"{g} {scores.get(g)} (expected {case.expected[g]:g})"
                    for g in POINTS if scores.get(g) != case.expected[g]))
    assert result.auto_max == AUTOGRADED_MAX


@pytest.mark.parametrize("case", [c for c in CASES if c.messages], ids=lambda case: case.student)
def test_failure_messages_say_what_happened(corpus, case):
    messages = {test.grade_id: test.message for test in corpus.results[case.student].tests}
    for grade_id, text in case.messages.items():
        assert text in messages[grade_id], (grade_id, messages[grade_id])


@pytest.mark.parametrize("student", STUDENTS)
def test_nothing_secret_reaches_the_student(corpus, student):
    assert feedback_path(corpus.course, student).is_file()
    assert _leaks(corpus, student) == []


# What the sandboxes showed ---------------------------------------------------------------------

@pytest.mark.parametrize("student", ["reads_course_files", "reads_other_students"])
def test_course_files_are_invisible_to_the_kernel_and_the_worker(corpus, student):
    kernel = _kernel_view(corpus, student)
    worker = _worker_loot(corpus, student)
    for view in (kernel, worker):
        assert not _shielded(view["cwd"], corpus) and view["cwd"] != str(corpus.course.root)
        opened = {path: what for path, what in view.items()
                  if _shielded(path, corpus) and not ERROR_NAME.match(what)}
        assert opened == {}


def test_environment_snooping_finds_only_the_sandbox(corpus):
    kernel = _kernel_view(corpus, "snoops_environment")
    worker = _worker_loot(corpus, "snoops_environment")
    environ_line = next(line for line in _kernel_lines(corpus, "snoops_environment")
                        if line.startswith("environ "))
    kernel_environ = ast.literal_eval(environ_line[len("environ "):])
    planted = set(corpus.canaries.environment)
    assert planted.isdisjoint(kernel_environ) and planted.isdisjoint(worker["environ"])
    assert kernel["/proc/1/environ"] == worker["files"]["/proc/1/environ"] == "PermissionError"
    assert all(ERROR_NAME.match(what) for what in worker["parents"].values())


def test_network_calls_fail_at_once_and_reach_nothing(corpus):
    lines = [line for line in _kernel_lines(corpus, "calls_the_network") if line.startswith("net ")]
    assert len(lines) == 3, lines
    for line in lines:
        _, target, outcome, _, seconds, _ = line.split()
        assert outcome != "connected" and float(seconds) < 0.5, line
    assert corpus.host_connections == 0


def test_signals_reach_no_process_outside_the_sandbox(corpus):
    reports = _kernel_lines(corpus, "kills_other_processes")
    assert len(reports) == 1
    assert "sent" not in reports[0], reports[0]


def test_writes_never_leave_the_sandbox(corpus):
    marker = corpus.context.marker
    written = [str(p) for p in corpus.context.write_targets()
               if p.is_file() and marker.encode() in p.read_bytes()]
    created = [p for p in corpus.context.created_files() if p.exists()]
    for path in created:
        path.unlink()
    assert written == [] and [str(p) for p in created] == []
    outcomes = {**_worker_loot(corpus, "writes_gradebook"),
                **ast.literal_eval(_kernel_lines(corpus, "writes_gradebook")[0])}
    targets = {what: what.split(" ", 1)[1] for what in outcomes}
    outside = {what: outcomes[what] for what, path in targets.items() if os.path.isabs(path)
               and (_shielded(path, corpus) or Path(path).is_relative_to(REPO_ROOT))}
    assert outside and all(ERROR_NAME.match(outcome) for outcome in outside.values()), outside


# The batch as a whole --------------------------------------------------------------------------

def test_the_batch_graded_everyone_and_the_grader_survived(corpus):
    assert sorted(r.student for r in corpus.batch.graded) == STUDENTS
    assert corpus.batch.skipped == []
    assert sorted(corpus.results) == STUDENTS
    assert corpus.leftover_processes == []
    assert subprocess.run(["true"]).returncode == 0


def test_the_reference_student_keeps_full_marks_and_its_gradebook_row(corpus):
    result = corpus.results[REFERENCE]
    assert result.status == "graded"
    assert {t.grade_id: t.score for t in result.tests} == {g: float(p) for g, p in POINTS.items()}
    assert result.auto_score == AUTOGRADED_MAX
    assert [(a.score, a.max_score) for a in result.answers] == [(None, 5.0)] * 4
    with open_gradebook(corpus.course) as gb:
        row = gb.find_student(REFERENCE)
        assert (row.first_name, row.last_name, row.email) == \
            ("Ada", "Reference", corpus.canaries.email)
        grades = gb.find_submission(corpus.course.assignment, REFERENCE).notebooks[0].grades
        code = {g.name: (g.auto_score, g.manual_score, g.extra_credit)
                for g in grades if g.cell.cell_type == "code"}
    assert code == {g: (float(p), None, None) for g, p in POINTS.items()}


def test_the_gradebook_holds_the_submitted_students_and_nothing_else(corpus):
    with open_gradebook(corpus.course) as gb:
        assert sorted(s.id for s in gb.students) == STUDENTS
        assignment = gb.find_assignment(corpus.course.assignment)
        assert assignment.max_code_score == AUTOGRADED_MAX
    db = sqlite3.connect(f"file:{corpus.course.gradebook}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM grade WHERE manual_score IS NOT NULL").fetchone() \
            == (0,)
    finally:
        db.close()


def test_the_corpus_matches_the_assignment(corpus):
    source = nbformat.read(corpus.course.source_notebook, as_version=4)
    points = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
              for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")
              and not c.metadata["nbgrader"].get("solution")}
    assert points == POINTS
    assert set(cases.BY_STUDENT) == set(STUDENTS) - {REFERENCE}
