"""nbgrader's gradebook of a course: the one way the engine opens it."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .course import Course, CourseError, tool_environment

if TYPE_CHECKING:  # nbgrader is imported where it is used: it takes seconds to load
    from nbgrader.api import Gradebook

_OPENING = threading.Lock()


class GradebookError(CourseError):
    """The gradebook cannot be opened or created; the message says why."""


@contextmanager
def open_gradebook(course: Course) -> Iterator["Gradebook"]:
    """nbgrader's Gradebook of `course`, closed afterwards.

    Creating or upgrading a gradebook runs nbgrader's `alembic` executable, which is looked up on
    PATH: while the gradebook is being opened, this interpreter's bin folder is put first on this
    process's PATH (and taken off again), so a bare `.venv/bin/python` works.
    """
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SQLAlchemyError

    tools = tool_environment()["PATH"]
    if not course.gradebook.exists() and shutil.which("alembic", path=tools) is None:
        raise GradebookError(f"cannot create nbgrader's gradebook {course.gradebook}: the "
                             f"`alembic` executable (installed with nbgrader) is not on PATH")
    with _OPENING:
        saved = os.environ.get("PATH")
        os.environ["PATH"] = tools
        try:
            gb = Gradebook(course.db_url)
        except (SQLAlchemyError, subprocess.CalledProcessError, OSError) as exc:
            raise GradebookError(f"cannot open nbgrader's gradebook {course.gradebook}: "
                                 f"{exc}") from exc
        finally:
            if saved is None:
                os.environ.pop("PATH", None)
            else:
                os.environ["PATH"] = saved
    try:
        yield gb
    finally:
        gb.close()
