"""The bundled demo: its Canvas zip is current, and `python -m autograder demo` runs end to end."""
from __future__ import annotations

import csv

import pytest

from autograder import demo
from autograder.cli import main
from autograder.course import REPO_ROOT, Course


def test_bundled_zip_matches_the_release():
    assert demo.DEMO_ZIP.read_bytes() == demo.build_zip(Course.at(REPO_ROOT)), (
        "demo/canvas-submissions.zip is stale: run `python -m autograder demo --rebuild-zip`")


def test_demo_refuses_to_replace_a_folder_it_did_not_make(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--dir", str(tmp_path)]) == 2
    assert "is not a demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", "--dir", str(folder), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert f"report:   {folder / 'reports' / 'index.html'}" in out
    with open(folder / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    autograded = {student: row["auto_total"] for student, row in rows.items()}
    assert autograded == {"1001": "80", "1002": "28", "1003": "0", "1004": "80"}
    # 1004's download is marked LATE; the demo's late policy (nbgrader's "zero") applies to it.
    assert (rows["1004"]["late_penalty"], rows["1004"]["total"]) == ("80", "0")
    assert rows["1001"]["late_penalty"] in ("", "0")
    for student in autograded:
        assert (folder / "feedback" / student / "acceleration" / "acceleration.html").is_file()
    assert (folder / "grades-canvas.csv").is_file()
    # Running it again replaces its own folder.
    assert main(["demo", "--dir", str(folder), "--jobs", "2"]) == 0
