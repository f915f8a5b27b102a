"""Where a course's files live, and how nbgrader is invoked on them.

A course root is a folder holding `nbgrader_config.py`, `source/` and the nbgrader working folders
(`submitted/`, `autograded/`, `feedback/`, `gradebook.db`). The repository root is one; tests and the
demo make throw-away ones with `Course.scaffold`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ASSIGNMENT = "acceleration"
NOTEBOOK = "acceleration.ipynb"
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


def _with_tools_on_path(env: dict[str, str]) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def tool_environment() -> dict[str, str]:
    """The environment for nbgrader processes: this interpreter's bin folder first on PATH.

    nbgrader runs the `alembic` executable whenever it opens a gradebook; run as a bare
    `.venv/bin/python` that folder is not on PATH, and grading fails with "No assignment ... exists".
    """
    return _with_tools_on_path(dict(os.environ))


@dataclass(frozen=True)
class Course:
    root: Path
    assignment: str = ASSIGNMENT

    def __post_init__(self):
        # nbgrader's Gradebook, opened in this process too, also runs `alembic` from PATH.
        _with_tools_on_path(os.environ)

    @classmethod
    def at(cls, root: str | Path | None = None) -> "Course":
        root = Path(root or REPO_ROOT).resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise CourseError(f"{root} is not a course root: it has no nbgrader_config.py "
                              "(pass --course DIR, or run from the repository root)")
        return cls(root)

    # nbgrader's folder layout ------------------------------------------------------------------
    @property
    def source_dir(self) -> Path:
        return self.root / "source" / self.assignment

    @property
    def source_notebook(self) -> Path:
        return self.source_dir / NOTEBOOK

    @property
    def release_dir(self) -> Path:
        return self.root / "release" / self.assignment

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.gradebook}"

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
