"""The export stage: Canvas, Moodle and plain CSV files from a cohort graded by the real pipeline."""
from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from autograder import export as ex
from autograder.cli import main
from autograder.course import Course
from autograder.gradebook import open_gradebook
from autograder.outcomes import format_points
from autograder.results import load_cohort

PARTS = ["naive", "blocked", "footprint", "numpy", "backend", "models", "question"]
PLAIN_HEADER = ["student_id", "name", "status", *PARTS,
                "auto_total", "written_total", "late_penalty", "total", "max"]
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_HEADER = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
                 "Grade can be changed", "Last modified (submission)", "Last modified (grade)"]
NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
# The cohort's autograded points, known from what each answered (tests/conftest.py): 1001 all of
# it, 1002 naive (15), footprint (8) and numpy (5), 1003 nothing. Fixed here, not read back from
# the gradebook the export reads: the reference passes its timing tests on a busy machine too
# (README: timing tests).
KNOWN = {"1001": 80.0, "1002": 28.0, "1003": 0.0}


def known_total(course: Course, student: str) -> float:
    return KNOWN[student]


def number(value: float) -> str:
    return format_points(value)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def run_export(course: Course, *args: str) -> int:
    return main(["--course", str(course.root), "export", *args])


def copy_course(course: Course, dest: Path) -> Course:
    """A private copy of the graded course, for tests that change the gradebook or the records."""
    shutil.copytree(course.root, dest)
    return Course.at(dest)


def set_late_penalty(course: Course, student: str, penalty: float, hours_late: float) -> None:
    with open_gradebook(course) as gb:
        due = datetime(2025, 3, 1, 12, 0)
        gb.update_or_create_assignment(course.assignment, duedate=due)
        submission = gb.find_submission(course.assignment, student)
        submission.timestamp = due + timedelta(hours=hours_late)
        notebook = gb.find_submission_notebook("acceleration", course.assignment, student)
        notebook.late_submission_penalty = penalty
        gb.db.commit()


def rename(course: Course, student: str, first: str, last: str) -> None:
    with open_gradebook(course) as gb:
        gb.update_or_create_student(student, first_name=first, last_name=last)


# ------------------------------------------------------------------------------------------------
# the graded cohort as loaded
# ------------------------------------------------------------------------------------------------
def test_cohort_scores_are_the_known_ones(graded_course):
    results = {r.student: r for r in load_cohort(graded_course)}
    assert sorted(results) == ["1001", "1002", "1003"]
    assert results["1001"].auto_max == 80
    assert results["1001"].auto_score == known_total(graded_course, "1001")
    assert results["1001"].needs_manual_grading
    assert results["1002"].score == 28
    assert results["1003"].score == 0
    assert {r.max_score for r in results.values()} == {100}


# ------------------------------------------------------------------------------------------------
# plain CSV
# ------------------------------------------------------------------------------------------------
def test_plain_csv_has_every_part_and_the_totals(graded_course, tmp_path, capsys):
    out = tmp_path / "grades.csv"
    assert run_export(graded_course, "--format", "csv", "-o", str(out)) == 0
    rows = read_csv(out)
    assert rows[0] == PLAIN_HEADER
    by_id = {row[0]: dict(zip(PLAIN_HEADER, row)) for row in rows[1:]}
    assert [row[0] for row in rows[1:]] == ["1001", "1002", "1003"]

    ada = by_id["1001"]
    assert (ada["name"], ada["status"]) == ("Ada Lovelace", "graded")
    assert [ada[p] for p in PARTS] == ["15", "22", "8", "5", "15", "15", ""]
    ada_total = number(known_total(graded_course, "1001"))
    assert (ada["auto_total"], ada["written_total"], ada["late_penalty"], ada["total"],
            ada["max"]) == (ada_total, "", "0", ada_total, "100")

    grace = by_id["1002"]
    assert grace["name"] == "Grace Hopper"
    assert (grace["naive"], grace["footprint"], grace["numpy"]) == ("15", "8", "5")
    assert (grace["blocked"], grace["backend"], grace["models"]) == ("0", "0", "0")
    assert (grace["auto_total"], grace["total"], grace["max"]) == ("28", "28", "100")

    alan = by_id["1003"]
    assert alan["name"] == "Alan Turing"
    assert (alan["auto_total"], alan["total"], alan["max"]) == ("0", "0", "100")

    results = {r.student: r for r in load_cohort(graded_course)}
    for student, row in by_id.items():
        result = results[student]
        assert float(row["total"]) == result.score
        assert float(row["auto_total"]) == result.auto_score
        for part, (score, _) in result.parts().items():
            if row[part]:
                assert float(row[part]) == score
        if not result.needs_manual_grading:
            assert float(row["written_total"]) == sum(a.score for a in result.answers)
            assert row["question"] == row["written_total"]


def test_ungraded_written_answers_are_exported_with_a_warning(graded_course, tmp_path, capsys):
    out = tmp_path / "grades.csv"
    assert run_export(graded_course, "--format", "csv", "-o", str(out)) == 0
    captured = capsys.readouterr()
    warning = next(line for line in captured.err.splitlines() if "hand-graded" in line)
    assert warning.startswith("warning: ")
    assert "1001" in warning and "1002" not in warning and "1003" not in warning
    assert str(out) in captured.out


def test_require_complete_refuses_and_writes_nothing(graded_course, tmp_path, capsys):
    out = tmp_path / "grades.csv"
    out.write_text("previous export\n", encoding="utf-8")
    code = run_export(graded_course, "--format", "canvas", "-o", str(out), "--require-complete")
    assert code == 1
    err = capsys.readouterr().err
    assert "not complete" in err and "1001" in err and "1002" not in err
    assert out.read_text(encoding="utf-8") == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv"]
    with pytest.raises(ex.IncompleteGradingError) as info:
        ex.export(graded_course, "csv", tmp_path / "other.csv", require_complete=True)
    assert info.value.pending == ["1001"] and info.value.ungraded == []
    assert not (tmp_path / "other.csv").exists()


# ------------------------------------------------------------------------------------------------
# Canvas
# ------------------------------------------------------------------------------------------------
def test_canvas_gradebook_import_csv(graded_course, tmp_path, capsys):
    out = tmp_path / "canvas.csv"
    code = run_export(graded_course, "--format", "canvas", "-o", str(out),
                      "--canvas-assignment", "Hardware acceleration (12345)")
    assert code == 0
    assert read_csv(out) == [
        [*CANVAS_HEADER, "Hardware acceleration (12345)"],
        ["Points Possible", "", "", "", "", "100"],
        ["Lovelace, Ada", "1001", "", "", "", number(known_total(graded_course, "1001"))],
        ["Hopper, Grace", "1002", "", "", "", "28"],
        ["Turing, Alan", "1003", "", "", "", "0"],
    ]
    assert "no assignment id" not in capsys.readouterr().err


def test_canvas_column_without_an_id_is_written_with_a_warning(graded_course, tmp_path, capsys):
    out = tmp_path / "canvas.csv"
    assert run_export(graded_course, "--format", "canvas", "-o", str(out)) == 0
    assert read_csv(out)[0] == [*CANVAS_HEADER, graded_course.spec.column_title]
    err = capsys.readouterr().err
    assert "no assignment id in parentheses" in err and "create a new assignment" in err


@pytest.mark.parametrize("header", ["", "Section", "Final Score (12)", "Lab\n1 (12)"])
def test_canvas_headers_canvas_would_not_read_are_refused(graded_course, tmp_path, capsys, header):
    out = tmp_path / "canvas.csv"
    code = run_export(graded_course, "--format", "canvas", "-o", str(out),
                      "--canvas-assignment", header)
    assert code == 1
    assert "--canvas-assignment" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# Moodle
# ------------------------------------------------------------------------------------------------
def test_moodle_grading_worksheet(graded_course, tmp_path):
    out = tmp_path / "moodle.csv"
    report = ex.export(graded_course, "moodle", out, now=NOW)
    assert (report.path, report.students, report.exported) == (out, 3, 3)
    rows = read_csv(out)
    assert rows[0] == MOODLE_HEADER
    body = [dict(zip(MOODLE_HEADER, row)) for row in rows[1:]]
    ada = number(known_total(graded_course, "1001"))
    assert [(r["Identifier"], r["Full name"], r["Email address"], r["Grade"], r["Maximum Grade"],
             r["Grade can be changed"], r["Last modified (grade)"]) for r in body] == [
        ("Participant 1001", "Ada Lovelace", "ada@example.edu", ada, "100", "Yes",
         "2025-03-14T15:09:26+00:00"),
        ("Participant 1002", "Grace Hopper", "grace@example.edu", "28", "100", "Yes",
         "2025-03-14T15:09:26+00:00"),
        ("Participant 1003", "Alan Turing", "alan@example.edu", "0", "100", "Yes",
         "2025-03-14T15:09:26+00:00"),
    ]
    assert body[0]["Status"] == "graded, written answers awaiting hand grading"
    assert body[1]["Status"] == "graded"
    for row in body:
        if row["Last modified (submission)"]:
            datetime.fromisoformat(row["Last modified (submission)"])
    assert any("1001" in note for note in report.warnings)


def test_moodle_through_the_cli_stamps_the_export_time(graded_course, tmp_path):
    out = tmp_path / "moodle.csv"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert run_export(graded_course, "--format", "moodle", "-o", str(out)) == 0
    after = datetime.now(timezone.utc)
    stamps = {row[-1] for row in read_csv(out)[1:]}
    assert len(stamps) == 1
    assert before <= datetime.fromisoformat(stamps.pop()) <= after


# ------------------------------------------------------------------------------------------------
# stdout, files, numbers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_dash_writes_the_same_file_to_stdout(graded_course, tmp_path, capsys, fmt):
    out = tmp_path / "grades.csv"
    extra = ["--canvas-assignment", "Hardware acceleration (12345)"] if fmt == "canvas" else []
    assert run_export(graded_course, "--format", fmt, "-o", "-", *extra) == 0
    captured = capsys.readouterr()
    assert run_export(graded_course, "--format", fmt, "-o", str(out), *extra) == 0
    file_rows = read_csv(out)
    stdout_rows = parse(captured.out)
    if fmt == "moodle":
        file_rows = [row[:-1] for row in file_rows]
        stdout_rows = [row[:-1] for row in stdout_rows]
    assert stdout_rows == file_rows
    assert "written to stdout" in captured.err and "warning:" in captured.err


def test_output_problems_are_reported_and_leave_nothing(graded_course, tmp_path, capsys):
    assert run_export(graded_course, "--format", "csv", "-o", str(tmp_path / "no" / "g.csv")) == 1
    assert "does not exist" in capsys.readouterr().err
    assert run_export(graded_course, "--format", "csv", "-o", str(tmp_path)) == 1
    assert "is a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_whole(graded_course, tmp_path):
    out = tmp_path / "grades.csv"
    out.write_text("x" * 100_000, encoding="utf-8")
    out.chmod(0o640)
    assert run_export(graded_course, "--format", "csv", "-o", str(out)) == 0
    assert read_csv(out)[0] == PLAIN_HEADER and len(read_csv(out)) == 4
    assert out.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]


@pytest.mark.parametrize("value, text", [
    (72.5, "72.5"), (80.0, "80"), (0.1 + 0.2, "0.3"), (1 / 3, "0.3333"), (-0.0, "0"),
    (0.0, "0"), (100, "100"), (None, ""), (12.50004, "12.5"),
])
def test_numbers_have_no_float_noise(value, text):
    assert format_points(value) == text


# ------------------------------------------------------------------------------------------------
# changed copies of the graded course
# ------------------------------------------------------------------------------------------------
def test_late_penalty_and_utf8_names(graded_course, tmp_path):
    course = copy_course(graded_course, tmp_path / "course")
    set_late_penalty(course, "1002", 10, hours_late=5)
    rename(course, "1003", "Zoë", "Ångström-Łukasz")

    plain = tmp_path / "grades.csv"
    ex.export(course, "csv", plain)
    rows = {row[0]: dict(zip(PLAIN_HEADER, row)) for row in read_csv(plain)[1:]}
    assert (rows["1002"]["auto_total"], rows["1002"]["late_penalty"], rows["1002"]["total"]) == (
        "28", "10", "18")
    assert rows["1003"]["name"] == "Zoë Ångström-Łukasz"
    assert (rows["1001"]["late_penalty"], rows["1001"]["total"]) == (
        "0", number(known_total(course, "1001")))

    canvas = tmp_path / "canvas.csv"
    ex.export(course, "canvas", canvas, canvas_assignment="Lab (7)")
    assert read_csv(canvas)[3:] == [["Hopper, Grace", "1002", "", "", "", "18"],
                                    ["Ångström-Łukasz, Zoë", "1003", "", "", "", "0"]]
    assert "Zoë".encode() in canvas.read_bytes()
    assert not canvas.read_bytes().startswith(b"\xef\xbb\xbf")

    moodle = tmp_path / "moodle.csv"
    ex.export(course, "moodle", moodle, now=NOW)
    grace = dict(zip(MOODLE_HEADER, read_csv(moodle)[2]))
    assert (grace["Grade"], grace["Last modified (submission)"]) == ("18", "2025-03-01T17:00:00+00:00")

    result = next(r for r in load_cohort(course) if r.student == "1002")
    assert (result.late_penalty, result.score, result.seconds_late) == (10, 18, 5 * 3600)
    assert next(r for r in load_cohort(graded_course) if r.student == "1002").late_penalty == 0


def test_a_penalty_above_the_score_gives_zero_not_a_negative_total(graded_course, tmp_path):
    course = copy_course(graded_course, tmp_path / "course")
    set_late_penalty(course, "1002", 40, hours_late=1)
    out = tmp_path / "grades.csv"
    ex.export(course, "csv", out)
    grace = dict(zip(PLAIN_HEADER, read_csv(out)[2]))
    assert (grace["late_penalty"], grace["total"]) == ("40", "0")


def test_failed_ungraded_and_changed_students_are_listed(graded_course, tmp_path, capsys):
    course = copy_course(graded_course, tmp_path / "course")
    record = course.root / "grading" / "1003.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "status": "failed", "reason": "kernel died"}))
    notebook = course.submitted_dir("1002") / "acceleration.ipynb"
    notebook.write_text(notebook.read_text() + "\n")
    newcomer = course.submitted_dir("1004")
    shutil.copytree(course.submitted_dir("1003"), newcomer)

    out = tmp_path / "grades.csv"
    assert run_export(course, "--format", "csv", "-o", str(out)) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any("did not finish" in w and "1003 (failed)" in w for w in warnings)
    assert any("not graded yet" in w and "1004" in w for w in warnings)
    assert any("grade not current" in w and "1002 (the submission changed)" in w
               for w in warnings)

    rows = {row[0]: dict(zip(PLAIN_HEADER, row)) for row in read_csv(out)[1:]}
    assert (rows["1003"]["status"], rows["1003"]["total"]) == ("failed", "0")
    assert rows["1004"]["status"] == "not graded"
    assert all(rows["1004"][c] == "" for c in (*PARTS, "auto_total", "written_total", "total"))
    assert rows["1004"]["max"] == "100"

    canvas = tmp_path / "canvas.csv"
    assert run_export(course, "--format", "canvas", "-o", str(canvas),
                      "--canvas-assignment", "Lab (7)") == 0
    assert read_csv(canvas)[-1] == ["", "1004", "", "", "", ""]

    assert run_export(course, "--format", "csv", "-o", str(out), "--require-complete") == 1
    err = capsys.readouterr().err
    assert "1004" in err and "1001" in err


def test_students_without_an_lms_id_are_left_out_named_or_mapped_through_lms_ids(
        graded_course, tmp_path, capsys):
    """A hub username is no Canvas or Moodle id: that student is left out of the LMS file (and
    named), the others are exported; lms_ids.csv gives the LMS id of such students."""
    course = copy_course(graded_course, tmp_path / "course")
    shutil.copytree(course.submitted_dir("1003"), course.submitted_dir("alice"))
    for fmt in ("canvas", "moodle"):
        out = tmp_path / f"{fmt}.csv"
        assert run_export(course, "--format", fmt, "-o", str(out)) == 0
        err = capsys.readouterr().err
        assert "left out of the" in err and "alice" in err and "lms_ids.csv" in err, err
        assert "alice" not in out.read_text() and "1001" in out.read_text()
    out = tmp_path / "plain.csv"
    assert run_export(course, "--format", "csv", "-o", str(out)) == 0
    assert [row[0] for row in read_csv(out)[1:]] == ["1001", "1002", "1003", "alice"]

    (course.root / "lms_ids.csv").write_text("student,lms_id\nalice,5005\n", encoding="utf-8")
    canvas = tmp_path / "mapped.csv"
    assert run_export(course, "--format", "canvas", "-o", str(canvas)) == 0
    assert "left out" not in capsys.readouterr().err
    assert [row[1] for row in read_csv(canvas)[2:]] == ["1001", "1002", "1003", "5005"]

    # Nobody with an LMS id: nothing to import, the file is refused.
    only = copy_course(graded_course, tmp_path / "only")
    for student in ("1001", "1002", "1003"):
        shutil.move(str(only.submitted_dir(student).parent), str(only.root / "submitted" / f"u{student}"))
    with pytest.raises(ex.StudentIdError) as info:
        ex.export(only, "moodle", tmp_path / "m.csv")
    assert info.value.format == "moodle" and not (tmp_path / "m.csv").exists()


def test_an_empty_course_gives_a_header_only_file(course, tmp_path, capsys):
    out = tmp_path / "grades.csv"
    assert run_export(course, "--format", "csv", "-o", str(out)) == 0
    assert read_csv(out) == [PLAIN_HEADER]
    assert "no students" in capsys.readouterr().err


def test_students_collected_from_the_other_lms_are_refused(graded_course, tmp_path, capsys):
    from autograder.collect import ROSTER_FIELDS, roster_path

    course = copy_course(graded_course, tmp_path / "course")
    path = roster_path(course)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=ROSTER_FIELDS)
        writer.writeheader()
        for student, lms in (("1001", "moodle"), ("1002", "moodle"), ("1003", "folder")):
            writer.writerow({**dict.fromkeys(ROSTER_FIELDS, ""), "student": student, "lms": lms})
    out = tmp_path / "canvas.csv"
    assert run_export(course, "--format", "canvas", "-o", str(out)) == 1
    assert "1001 (from moodle), 1002 (from moodle)" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ex.WrongLmsError) as info:
        ex.export(course, "canvas", out)
    assert info.value.students == {"1001": "moodle", "1002": "moodle"}
    assert run_export(course, "--format", "moodle", "-o", str(tmp_path / "moodle.csv")) == 0


def test_a_partly_hand_graded_student_is_exported_without_the_written_part(graded_course,
                                                                           tmp_path):
    """Two of four answers scored: the total leaves all written answers out (they count once
    all are scored), as written_total and the question part do."""
    from autograder.gradebook import open_gradebook

    course = copy_course(graded_course, tmp_path / "course")
    with open_gradebook(course) as gb:
        notebook = gb.find_submission_notebook("acceleration", "acceleration", "1001")
        for grade in [g for g in notebook.grades if g.name.startswith("question_")][:2]:
            grade.manual_score = 2
            grade.needs_manual_grade = False
        gb.db.commit()
    out = tmp_path / "grades.csv"
    assert run_export(course, "--format", "csv", "-o", str(out)) == 0
    rows = read_csv(out)
    ada = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == "1001")))
    assert ada["written_total"] == "" and ada["question"] == ""
    assert ada["total"] == ada["auto_total"] == number(known_total(graded_course, "1001"))
