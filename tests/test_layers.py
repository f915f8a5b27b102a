"""The engine's shape: layers that only point down, and no side effects on import or construction.

`lint-imports` checks the contracts in pyproject.toml ([tool.importlinter]): each stage imports
only earlier stages and the engine below them; the leaf modules import no stage; the Gradescope
runtime imports nothing of nbgrader; timing and the sandbox know nothing of the rest.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from autograder.course import REPO_ROOT, Course

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_every_import_contract_is_kept():
    proc = _lint(REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_stage_that_imports_a_later_one_breaks_the_contract(tmp_path):
    shutil.copytree(REPO_ROOT / "autograder", tmp_path / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    grade = tmp_path / "autograder" / "grade.py"
    text = grade.read_text()
    assert "\nfrom . import " in text
    grade.write_text(text.replace("\nfrom . import ", "\nfrom . import report\nfrom . import ", 1))
    outcomes = tmp_path / "autograder" / "outcomes.py"     # which the Gradescope runtime uses
    outcomes.write_text(outcomes.read_text() + "\n\ndef _late():\n    import nbgrader  # noqa\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "autograder.grade -> autograder.report" in proc.stdout, proc.stdout
    assert "The Gradescope runtime imports nothing of nbgrader" in proc.stdout
    assert "2 broken" in proc.stdout


def test_building_a_course_changes_nothing_of_the_process():
    path = os.environ.get("PATH")
    course = Course.at(REPO_ROOT)
    assert course.spec.name == "acceleration"
    assert os.environ.get("PATH") == path


def test_importing_the_worker_leaves_the_standard_streams_alone():
    proc = subprocess.run([sys.executable, "-c",
                           "import autograder.trusted.worker\nprint('still here')"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "still here\n", proc.stderr
