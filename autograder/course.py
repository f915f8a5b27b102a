"""Where a course's files live, and how nbgrader is invoked on them.

A course root is a folder holding `nbgrader_config.py`, `source/` and the nbgrader working folders
(`submitted/`, `autograded/`, `feedback/`, `gradebook.db`). The repository root is one; tests and the
demo make throw-away ones with `Course.scaffold`. A `Course` is one assignment of a course root:
the only one in `source/` unless named; `course.spec` is what its `grading.py` says about it.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import assignment as assignments

REPO_ROOT = Path(__file__).resolve().parent.parent


class CourseError(Exception):
    """A course folder is missing something a command needs; the message says what to do."""


class NbgraderError(CourseError):
    """An nbgrader command failed; carries the command and its output."""

    def __init__(self, args: list[str], returncode: int, output: str):
        self.args_run = args
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(f"`nbgrader {' '.join(args)}` exited with {returncode}:\n{tail}")


def tool_environment() -> dict[str, str]:
    """The environment for nbgrader processes: this interpreter's bin folder first on PATH.

    nbgrader runs the `alembic` executable whenever it opens a gradebook; run as a bare
    `.venv/bin/python` that folder is not on PATH, and grading fails with "No assignment ... exists".
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def assignments_in(root: Path) -> list[str]:
    """The assignments of a course root: the folders of source/ that hold a notebook."""
    base = Path(root) / "source"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


@dataclass(frozen=True)
class Course:
    root: Path
    assignment: str

    @classmethod
    def at(cls, root: str | Path | None = None, assignment: str | None = None) -> "Course":
        """The course root `root` (default: this repository), and its assignment `assignment`
        (default: the only one in its source/)."""
        root = Path(root or REPO_ROOT).resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise CourseError(f"{root} is not a course root: it has no nbgrader_config.py "
                              "(pass --course DIR, or run from the repository root)")
        if assignment is None:
            found = assignments_in(root)
            if len(found) != 1:
                raise CourseError(
                    f"{root}/source holds {len(found)} assignments ({', '.join(found) or 'none'}): "
                    f"name one with --assignment NAME" if found else
                    f"{root}/source holds no assignment (a folder with the source notebook)")
            assignment = found[0]
        elif not (root / "source" / assignment).is_dir():
            found = assignments_in(root)
            raise CourseError(f"no assignment {assignment!r} in {root}/source/ (there "
                              f"{'is' if len(found) == 1 else 'are'}: "
                              f"{', '.join(found) or 'none'})")
        return cls(root, assignment)

    @functools.cached_property
    def spec(self) -> assignments.Assignment:
        """What the assignment's grading.py says about it (defaults when it has none)."""
        return assignments.load(self.source_dir, self.assignment)

    @property
    def notebook(self) -> str:
        """The file name of the assignment's notebook."""
        return self.spec.notebook_file

    # nbgrader's folder layout ------------------------------------------------------------------
    @property
    def source_dir(self) -> Path:
        return self.root / "source" / self.assignment

    @property
    def source_notebook(self) -> Path:
        return self.source_dir / self.notebook

    @property
    def release_notebook(self) -> Path:
        return self.release_dir / self.notebook

    @property
    def release_dir(self) -> Path:
        return self.root / "release" / self.assignment

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.gradebook}"

    def config(self):
        """nbgrader_config.py as traitlets loads it (a Config: section -> settings)."""
        from traitlets.config import PyFileConfigLoader

        return PyFileConfigLoader("nbgrader_config.py", path=str(self.root)).load_config()

    def submitted_dir(self, student: str) -> Path:
        return self.root / "submitted" / student / self.assignment

    def autograded_dir(self, student: str) -> Path:
        return self.root / "autograded" / student / self.assignment

    def feedback_dir(self, student: str) -> Path:
        return self.root / "feedback" / student / self.assignment

    def submitted_students(self) -> list[str]:
        base = self.root / "submitted"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / self.assignment).is_dir())

    # running nbgrader ---------------------------------------------------------------------------
    def nbgrader(self, *args: str, timeout: float | None = None) -> str:
        """Run an nbgrader sub-command in this course root; return its output or raise NbgraderError."""
        cmd = [sys.executable, "-m", "nbgrader", *args]
        proc = subprocess.run(cmd, cwd=self.root, env=tool_environment(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        if proc.returncode != 0:
            raise NbgraderError(list(args), proc.returncode, proc.stdout)
        return proc.stdout

    # throw-away course roots --------------------------------------------------------------------
    @classmethod
    def scaffold(cls, dest: str | Path, template: "Course | None" = None) -> "Course":
        """Make a new course root at `dest` with the template's config, source and release."""
        template = template or cls.at(REPO_ROOT)
        dest = Path(dest).resolve()
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(template.root / "nbgrader_config.py", dest / "nbgrader_config.py")
        for sub in ("source", "release"):
            src = template.root / sub / template.assignment
            if src.is_dir():
                target = dest / sub / template.assignment
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(src, target, ignore=shutil.ignore_patterns(
                    ".ipynb_checkpoints", "__pycache__"))
        return cls(dest, template.assignment)
