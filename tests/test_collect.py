"""The collect stage on real-format Canvas and Moodle downloads and on folders, in throw-away courses."""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sqlite3
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nbgrader.utils import parse_utc

from autograder.collect import (CollectError, CollectReport, add_arguments, collect, read_roster, run)
from autograder.course import Course

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lms"
CANVAS_ZIP = FIXTURES / "canvas_submissions.zip"
MOODLE_ZIP = FIXTURES / "moodle_submissions.zip"
CORRUPT_ZIP = FIXTURES / "corrupt.zip"


def _load_builder():
    spec = importlib.util.spec_from_file_location("lms_build_fixtures", FIXTURES / "build_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_builder()


@pytest.fixture(scope="session")
def empty_gradebook(tmp_path_factory) -> Path:
    """A gradebook made by collect (from an empty folder), copied into each test's course.

    nbgrader creates a gradebook by running its `alembic` executable, which takes seconds, so it is
    done once. It is done with this interpreter's bin folder off PATH, as when `.venv/bin/python -m
    autograder` runs without the venv activated: collect must find `alembic` all the same.
    """
    base = tmp_path_factory.mktemp("template")
    (base / "nothing").mkdir()
    template = Course.scaffold(base / "course")
    saved = os.environ["PATH"]
    os.environ["PATH"] = os.pathsep.join(["/usr/bin", "/bin"])
    try:
        report = collect(template, base / "nothing")
        assert os.environ["PATH"] == os.pathsep.join(["/usr/bin", "/bin"])
    finally:
        os.environ["PATH"] = saved
    assert report.imported == [] and report.rejected == []
    return template.gradebook


@pytest.fixture
def fresh_course(tmp_path) -> Course:
    return Course.scaffold(tmp_path / "course")


@pytest.fixture
def course(fresh_course, empty_gradebook) -> Course:
    shutil.copyfile(empty_gradebook, fresh_course.gradebook)
    return fresh_course


def entry_bytes(zip_path: Path, name: str) -> bytes:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read(name)


def submitted(course: Course, student: str) -> Path:
    return course.submitted_dir(student) / course.notebook


def reasons(report: CollectReport) -> dict[str, str]:
    return {r.file: r.reason for r in report.rejected}


def canvas_copies(zip_path: Path, notebook: bytes, names: list[str]) -> Path:
    """A Canvas download in which every entry is the same notebook."""
    return build.canvas_zip(zip_path, [(name, notebook) for name in names])


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------
# the fixtures themselves
# ------------------------------------------------------------------------------------------------
def test_fixtures_are_what_the_builder_makes(tmp_path):
    build.main(tmp_path)
    for name in ("canvas_submissions.zip", "moodle_submissions.zip"):
        with zipfile.ZipFile(FIXTURES / name) as kept, zipfile.ZipFile(tmp_path / name) as fresh:
            assert [(i.filename, i.date_time) for i in kept.infolist()] == \
                   [(i.filename, i.date_time) for i in fresh.infolist()]
            assert all(kept.read(i) == fresh.read(i.filename) for i in kept.infolist())
    assert CANVAS_ZIP.read_bytes().startswith(CORRUPT_ZIP.read_bytes())
    assert max(p.stat().st_size for p in FIXTURES.glob("*.zip")) < 8192


# ------------------------------------------------------------------------------------------------
# Canvas
# ------------------------------------------------------------------------------------------------
def test_canvas_download(course):
    report = collect(course, CANVAS_ZIP)

    assert report.lms == "canvas"
    got = [(i.student, i.name, i.source_file, i.late, i.timestamp, i.status) for i in report.imported]
    assert got == [
        ("10231", "nguyenana", "nguyenana_10231_7740011_acceleration.ipynb", False, None, "new"),
        ("10232", "okaforchidi", "okaforchidi_LATE_10232_7740093_acceleration.ipynb", True, None, "new"),
        ("10233", "silvamariajose", "silvamariajose_10233_7740120_acceleration-1.ipynb", False, None,
         "new"),
    ]
    for item in report.imported:
        assert submitted(course, item.student).read_bytes() == entry_bytes(CANVAS_ZIP, item.source_file)
        # Canvas stamps every zip entry with the download time: no submission time to keep.
        assert not (course.submitted_dir(item.student) / "timestamp.txt").exists()
    assert course.submitted_students() == ["10231", "10232", "10233"]

    why = reasons(report)
    assert set(why) == {
        "silvamariajose_10233_7740121_notes.pdf",
        "brownsam_10234_7740150_acceleration.ipynb",
        "leejin_10235_7740170_acceleration.ipynb",
        "leejin_10235_7740171_acceleration_final.ipynb",
        "acceleration.ipynb",
    }
    assert why["silvamariajose_10233_7740121_notes.pdf"].startswith("not a notebook (.pdf)")
    assert why["brownsam_10234_7740150_acceleration.ipynb"].startswith("not a valid notebook")
    for name in ("leejin_10235_7740170_acceleration.ipynb",
                 "leejin_10235_7740171_acceleration_final.ipynb"):
        assert "2 different notebooks for student 10235" in why[name]
        assert "leejin_10235_7740170_acceleration.ipynb" in why[name]
        assert "leejin_10235_7740171_acceleration_final.ipynb" in why[name]
    assert why["acceleration.ipynb"].startswith("name does not match the Canvas download pattern")
    students = {r.file: r.student for r in report.rejected}
    assert students["brownsam_10234_7740150_acceleration.ipynb"] == "10234"

    roster = read_roster(course)
    assert {s: (e.late, e.submitted_at, e.lms) for s, e in roster.items()} == {
        "10231": ("no", "", "canvas"), "10232": ("yes", "", "canvas"), "10233": ("no", "", "canvas")}

    table = report.format_table()
    assert "3 imported (3 new, 0 replaced, 0 unchanged), 5 rejected" in table
    assert "LATE" in table and "leejin_10235_7740171_acceleration_final.ipynb" in table


def test_canvas_late_marks_meet_the_due_date(course):
    """With a due date in the gradebook, work Canvas marks LATE gets a time nbgrader counts as late."""
    from nbgrader.api import Gradebook

    due = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_assignment(course.assignment, duedate=due.replace(tzinfo=None))
    report = collect(course, CANVAS_ZIP)
    assert {i.student: i.timestamp for i in report.imported} == {
        "10231": None, "10232": due + timedelta(seconds=1), "10233": None}
    stamp = (course.submitted_dir("10232") / "timestamp.txt").read_text().strip()
    assert stamp == "2026-11-20 12:00:01.000000 UTC"
    assert not (course.submitted_dir("10231") / "timestamp.txt").exists()
    assert "stamped one second after the due date" in report.format_table()
    from nbgrader.utils import parse_utc  # how nbgrader reads timestamp.txt

    assert parse_utc(stamp) == (due + timedelta(seconds=1)).replace(tzinfo=None)


def test_a_folder_s_late_work_is_marked_late_as_nbgrader_will_count_it(course, tmp_path):
    from nbgrader.api import Gradebook

    due = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_assignment(course.assignment, duedate=due.replace(tzinfo=None))
    src = tmp_path / "folder"
    for student, when in (("early", "2026-11-20 11:59:00"), ("late", "2026-11-20 12:30:00")):
        (src / student / "acceleration").mkdir(parents=True)
        (src / student / "acceleration" / "acceleration.ipynb").write_bytes(
            build.notebook(f"# {student}"))
        (src / student / "acceleration" / "timestamp.txt").write_text(f"{when}.000000 UTC")
    report = collect(course, src)
    assert {i.student: i.late for i in report.imported} == {"early": False, "late": True}
    rows = {line.split()[0]: line for line in report.format_table().splitlines()
            if line.startswith(("early", "late"))}
    assert "on time" in rows["early"] and "LATE" in rows["late"]


def test_canvas_anonymous_and_identical_copies(course, tmp_path):
    zip_path = canvas_copies(tmp_path / "dl" / "anon.zip", build.notebook("speedup = 2.5"), [
        "anon_x8k2p_7740190_acceleration.ipynb",
        "nguyenana_10231_7740011_acceleration.ipynb",
        "nguyenana_10231_7740012_acceleration-1.ipynb",
    ])
    report = collect(course, zip_path)
    assert [(i.student, i.source_file) for i in report.imported] == [
        ("10231", "nguyenana_10231_7740011_acceleration.ipynb")]
    why = reasons(report)
    assert "anonymous grading is on" in why["anon_x8k2p_7740190_acceleration.ipynb"]
    assert why["nguyenana_10231_7740012_acceleration-1.ipynb"] == \
        "identical copy of nguyenana_10231_7740011_acceleration.ipynb; imported once"


# ------------------------------------------------------------------------------------------------
# Moodle
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["folders", "folders_", "flat"])
def test_moodle_download(course, tmp_path, layout):
    zip_path = MOODLE_ZIP if layout == "folders" else build.moodle_zip(tmp_path / "dl" / "m.zip", layout)
    report = collect(course, zip_path)

    assert report.lms == "moodle"
    assert [(i.student, i.name, i.late, i.timestamp, i.status) for i in report.imported] == [
        ("2871041", "Ana Nguyen", None, None, "new"),
        ("2871042", "Chidi Okafor", None, None, "new"),
        ("2871043", "María José Silva", None, None, "new"),
    ]
    for item in report.imported:
        assert submitted(course, item.student).read_bytes() == entry_bytes(zip_path, item.source_file)
        assert not (course.submitted_dir(item.student) / "timestamp.txt").exists()

    sep = {"folders": "/", "folders_": "_/", "flat": "_"}[layout]
    why = reasons(report)
    assert set(why) == {
        f"María José Silva_2871043_assignsubmission_file{sep}acceleration.py",
        f"Chidi Okafor_2871042_assignsubmission_onlinetext{sep}onlinetext.html",
        f"Sam Brown_2871044_assignsubmission_file{sep}acceleration.ipynb",
        f"Jin Lee_2871045_assignsubmission_file{sep}acceleration.ipynb",
        f"Jin Lee_2871045_assignsubmission_file{sep}acceleration (1).ipynb",
    }
    assert why[f"María José Silva_2871043_assignsubmission_file{sep}acceleration.py"].startswith(
        "not a notebook (.py)")
    assert why[f"Chidi Okafor_2871042_assignsubmission_onlinetext{sep}onlinetext.html"].startswith(
        "not a notebook (.html)")
    assert why[f"Sam Brown_2871044_assignsubmission_file{sep}acceleration.ipynb"].startswith(
        "not a valid notebook")
    two = why[f"Jin Lee_2871045_assignsubmission_file{sep}acceleration.ipynb"]
    assert "2 different notebooks for student 2871045" in two and "acceleration (1).ipynb" in two


# ------------------------------------------------------------------------------------------------
# folders
# ------------------------------------------------------------------------------------------------
def _stamp(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def test_folder_of_submissions(course, tmp_path):
    src = tmp_path / "handed_in"
    src.mkdir()
    alice = src / "alice.ipynb"
    alice.write_bytes(build.notebook("speedup = 1.5"))
    _stamp(alice, datetime(2026, 11, 20, 14, 3, tzinfo=timezone.utc))
    (src / "bob" / ".ipynb_checkpoints").mkdir(parents=True)
    (src / "bob" / "acceleration.ipynb").write_bytes(build.notebook("speedup = 2.5"))
    bob_time = datetime(2026, 11, 21, 1, 0, 30, 250000, tzinfo=timezone.utc)
    _stamp(src / "bob" / "acceleration.ipynb", bob_time)
    (src / "bob" / ".ipynb_checkpoints" / "acceleration-checkpoint.ipynb").write_bytes(
        build.notebook("old"))
    (src / "bob" / "results.csv").write_text("n,seconds\n")
    carol = src / "carol" / "acceleration"
    carol.mkdir(parents=True)
    (carol / "acceleration.ipynb").write_bytes(build.notebook("speedup = 3.5"))
    (carol / "timestamp.txt").write_text("2026-11-19 08:00:00.000000 UTC")
    (src / "dave").mkdir()
    (src / "dave" / "acceleration.ipynb").write_bytes(build.notebook("speedup = 4.5"))
    (src / "dave" / "timestamp.txt").write_text("last tuesday")
    (src / "acceleration.ipynb").write_bytes(build.notebook("speedup = 0"))
    (src / "eve smith").mkdir()
    (src / "eve smith" / "acceleration.ipynb").write_bytes(build.notebook("speedup = 5.5"))
    (src / ".DS_Store").write_bytes(b"\0")

    report = collect(course, src)

    assert report.lms == "folder"
    assert [(i.student, i.source_file, i.timestamp, i.late, i.status) for i in report.imported] == [
        ("alice", "alice.ipynb", datetime(2026, 11, 20, 14, 3, tzinfo=timezone.utc), None, "new"),
        ("bob", "bob/acceleration.ipynb", bob_time, None, "new"),
        ("carol", "carol/acceleration/acceleration.ipynb",
         datetime(2026, 11, 19, 8, tzinfo=timezone.utc), None, "new"),
    ]
    stamps = {s: (course.submitted_dir(s) / "timestamp.txt").read_text().strip()
              for s in ("alice", "bob", "carol")}
    assert stamps == {"alice": "2026-11-20 14:03:00.000000 UTC", "bob": "2026-11-21 01:00:30.250000 UTC",
                      "carol": "2026-11-19 08:00:00.000000 UTC"}
    assert parse_utc(stamps["bob"]) == datetime(2026, 11, 21, 1, 0, 30, 250000)
    assert submitted(course, "carol").read_bytes() == (carol / "acceleration.ipynb").read_bytes()

    why = reasons(report)
    assert set(why) == {"bob/results.csv", "dave/acceleration.ipynb", "acceleration.ipynb", "eve smith/"}
    assert why["bob/results.csv"].startswith("not a notebook (.csv)")
    assert "timestamp.txt cannot be read" in why["dave/acceleration.ipynb"]
    assert "named like the assignment" in why["acceleration.ipynb"]
    assert "not usable as a student id" in why["eve smith/"]


def test_folder_in_nbgrader_layout_round_trips(course, tmp_path, empty_gradebook):
    """A course's own submitted/ folder, copied, imports as is (timestamps included)."""
    collect(course, MOODLE_ZIP)
    for student in ("2871041", "2871042"):
        (course.submitted_dir(student) / "timestamp.txt").write_text("2026-11-18 10:00:00.000000 UTC\n")
    other = Course.scaffold(tmp_path / "other")
    shutil.copyfile(empty_gradebook, other.gradebook)
    copy = tmp_path / "copy"
    os.rename(course.root / "submitted", copy)
    report = collect(other, copy)
    assert [(i.student, i.timestamp) for i in report.imported][:2] == [
        ("2871041", datetime(2026, 11, 18, 10, tzinfo=timezone.utc)),
        ("2871042", datetime(2026, 11, 18, 10, tzinfo=timezone.utc))]
    assert tree(other.root / "submitted")["2871041/acceleration/acceleration.ipynb"] == \
        entry_bytes(MOODLE_ZIP, "Ana Nguyen_2871041_assignsubmission_file/acceleration.ipynb")


# ------------------------------------------------------------------------------------------------
# inputs that cannot be used, and unsafe entries
# ------------------------------------------------------------------------------------------------
def test_unsafe_zip_entries_are_never_extracted(course, tmp_path):
    zip_path = canvas_copies(tmp_path / "dl" / "evil.zip", build.notebook("speedup = 7.0"), [
        "../nguyenana_10231_7740011_acceleration.ipynb",
        "/tmp/collect_evil_10231_7740012_acceleration.ipynb",
        "sub/../../okaforchidi_10232_7740013_acceleration.ipynb",
        "..\\..\\leejin_10235_7740014_acceleration.ipynb",
        "silvamariajose_10233_7740015_acceleration.ipynb",
    ])
    report = collect(course, zip_path)
    assert [i.student for i in report.imported] == ["10233"]
    why = reasons(report)
    assert len(why) == 4 and all(r.startswith("unsafe path in the zip") for r in why.values())
    assert "absolute path" in why["/tmp/collect_evil_10231_7740012_acceleration.ipynb"]
    outside = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
               if p.is_file() and course.root not in p.parents}
    assert outside == {"dl/evil.zip"}
    assert not Path("/tmp/collect_evil_10231_7740012_acceleration.ipynb").exists()


def test_corrupt_zip_is_rejected_whole(fresh_course):
    course = fresh_course
    with pytest.raises(CollectError) as caught:
        collect(course, CORRUPT_ZIP)
    assert caught.value.path == CORRUPT_ZIP
    assert "not a readable zip file" in caught.value.reason
    assert not (course.root / "submitted").exists() and not course.gradebook.exists()


def test_zip_with_a_bad_checksum_is_rejected_whole(course, tmp_path):
    payload = build.notebook("speedup = 8.0")
    path = tmp_path / "crc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("nguyenana_10231_7740011_acceleration.ipynb", payload)
    data = bytearray(path.read_bytes())
    data[data.index(b"speedup = 8.0")] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(CollectError, match="fails its checksum"):
        collect(course, path)
    assert not (course.root / "submitted").exists()


@pytest.mark.parametrize("case", ["missing", "not_a_zip", "not_an_lms_download", "single_notebook"])
def test_unusable_inputs(course, tmp_path, case):
    path = tmp_path / (f"{case}.ipynb" if case == "single_notebook" else f"{case}.zip")
    if case == "not_a_zip":
        path.write_bytes(build.PDF)
    elif case == "single_notebook":
        path.write_bytes(build.notebook("x = 1"))
    elif case == "not_an_lms_download":
        build.write_zip(path, [("homework/acceleration.ipynb", build.notebook("x = 1"))])
    with pytest.raises(CollectError) as caught:
        collect(course, path)
    expected = {"missing": "no such file", "not_a_zip": "not a readable zip file",
                "not_an_lms_download": "not a Canvas or Moodle submissions download",
                "single_notebook": "is a single notebook"}[case]
    assert expected in str(caught.value)
    assert not (course.root / "submitted").exists()


# ------------------------------------------------------------------------------------------------
# running again
# ------------------------------------------------------------------------------------------------
def test_running_again_changes_nothing(course):
    first = collect(course, CANVAS_ZIP)
    collect(course, MOODLE_ZIP)
    before = {p: p.stat().st_mtime_ns for p in (course.root / "submitted").rglob("*")}
    roster = (course.root / "collected" / "roster.csv").read_bytes()

    again = collect(course, CANVAS_ZIP)

    assert [(i.student, i.status) for i in again.imported] == \
        [(i.student, "unchanged") for i in first.imported]
    assert again.rejected == first.rejected
    assert {p: p.stat().st_mtime_ns for p in (course.root / "submitted").rglob("*")} == before
    assert (course.root / "collected" / "roster.csv").read_bytes() == roster
    assert not (course.root / "collected" / "previous").exists()
    assert "0 new, 0 replaced, 3 unchanged" in again.format_table()


def test_a_new_submission_replaces_and_keeps_the_previous_one(course, tmp_path):
    collect(course, CANVAS_ZIP)
    old = submitted(course, "10231").read_bytes()
    newer = build.notebook("speedup = 9.9")
    entries = [(n, d) for n, d in build.CANVAS_ENTRIES if not n.startswith("nguyenana_")]
    entries.append(("nguyenana_10231_7740300_acceleration-1.ipynb", newer))
    report = collect(course, build.canvas_zip(tmp_path / "dl" / "later.zip", entries))

    status = {i.student: i.status for i in report.imported}
    assert status == {"10231": "replaced", "10232": "unchanged", "10233": "unchanged"}
    assert submitted(course, "10231").read_bytes() == newer
    item = next(i for i in report.imported if i.student == "10231")
    assert item.previous is not None
    assert item.previous.parent == course.root / "collected" / "previous" / "10231"
    assert (item.previous / "acceleration.ipynb").read_bytes() == old
    assert read_roster(course)["10231"].file == "nguyenana_10231_7740300_acceleration-1.ipynb"
    assert "Replaced: 10231" in report.format_table()

    again = collect(course, tmp_path / "dl" / "later.zip")
    assert {i.status for i in again.imported} == {"unchanged"}
    assert len(list((course.root / "collected" / "previous" / "10231").iterdir())) == 1


# ------------------------------------------------------------------------------------------------
# the gradebook, and nbgrader afterwards
# ------------------------------------------------------------------------------------------------
def test_the_gradebook_collect_creates_is_nbgraders(empty_gradebook):
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    with sqlite3.connect(empty_gradebook) as db:
        versions = db.execute("select version_num from alembic_version").fetchall()
    assert versions == [(ScriptDirectory(ALEMBIC_DIR).get_current_head(),)]


def test_names_go_to_nbgrader_gradebook_and_nbgrader_still_works(course):
    from nbgrader.api import Gradebook

    collect(course, CANVAS_ZIP)
    collect(course, MOODLE_ZIP)

    with Gradebook(course.db_url) as gb:
        people = {s.id: (s.first_name, s.last_name, s.lms_user_id) for s in gb.students}
        gb.update_or_create_student("10231", first_name="Ana", last_name="Nguyen")
    assert people == {
        "10231": (None, "nguyenana", "10231"), "10232": (None, "okaforchidi", "10232"),
        "10233": (None, "silvamariajose", "10233"), "10234": (None, "brownsam", "10234"),
        "10235": (None, "leejin", "10235"),
        "2871041": ("Ana", "Nguyen", None), "2871042": ("Chidi", "Okafor", None),
        "2871043": ("María José", "Silva", None), "2871044": ("Sam", "Brown", None),
        "2871045": ("Jin", "Lee", None),
    }
    collect(course, CANVAS_ZIP)
    with Gradebook(course.db_url) as gb:
        ana = gb.find_student("10231")
        assert (ana.first_name, ana.last_name) == ("Ana", "Nguyen")

    with Gradebook(course.db_url) as gb:
        gb.update_or_create_assignment(course.assignment, duedate="2026-11-20 23:59:00 UTC")
    listed = course.nbgrader("db", "assignment", "list")
    assert "acceleration (due: 2026-11-20 23:59:00)" in listed


# ------------------------------------------------------------------------------------------------
# the CLI entry point
# ------------------------------------------------------------------------------------------------
def _run(course: Course, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="collect")
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    args.course = course
    return run(args)


def test_run_prints_the_table_and_sets_the_exit_code(course, tmp_path, capsys):
    assert _run(course, str(CANVAS_ZIP)) == 0
    out = capsys.readouterr().out
    assert "canvas_submissions.zip (Canvas): 3 imported" in out and "Not imported:" in out

    assert _run(course, str(CANVAS_ZIP)) == 0
    assert "3 unchanged" in capsys.readouterr().out

    assert _run(course, str(CORRUPT_ZIP)) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "collect:" in captured.err and "corrupt.zip" in captured.err

    nothing = build.canvas_zip(tmp_path / "dl" / "nothing.zip",
                               [("brownsam_10234_7740150_notes.pdf", build.PDF)])
    assert _run(course, str(nothing)) == 1
    assert "0 imported" in capsys.readouterr().out

    assert _run(course, "--lms", "moodle", str(CANVAS_ZIP)) == 1
    assert "name does not match the Moodle download pattern" in capsys.readouterr().out
