"""A plain folder: `DIR/<student>.ipynb`, `DIR/<student>/<any>.ipynb`, or nbgrader's own
`DIR/<student>/<assignment>/<notebook>` (with its `timestamp.txt`).

Student id: the name, in ASCII letters, digits and `. _ @ + -` (the one rule of
`lms.is_student_id`, which export keeps too). The time is nbgrader's `timestamp.txt` when there
is one, otherwise the notebook's modification time.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from ..lms import ID_RULE, is_student_id
from .candidates import (TIMESTAMP_FILE, Candidate, Rejected, hidden, is_notebook_name,
                         not_a_notebook, read_timestamp_file)


def read_folder(root: Path, assignment: str,
                 notebook: str) -> tuple[list[Candidate], list[Rejected]]:
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    reserved = {assignment, PurePosixPath(notebook).stem}

    def bad_student(student: str, what: str) -> str | None:
        if student in reserved:
            return (f"{what} is named like the assignment, not like a student: point collect at the "
                    "folder that holds one entry per student")
        if not is_student_id(student):
            return f"{what} {student!r} is not usable as a student id ({ID_RULE})"
        return None

    def add(path: Path, student: str) -> None:
        rel = path.relative_to(root).as_posix()
        stamp_file = path.parent / TIMESTAMP_FILE
        if stamp_file.is_file():
            try:
                timestamp = read_timestamp_file(stamp_file)
            except (ValueError, OSError) as exc:
                rejected.append(Rejected(rel, f"its {TIMESTAMP_FILE} cannot be read ({exc}); fix or "
                                              "remove it", student))
                return
        else:
            timestamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        candidates.append(Candidate(student, rel, path.read_bytes(), timestamp, None))

    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if hidden(entry.name):
            continue
        if entry.is_symlink():
            rejected.append(Rejected(entry.name, "symbolic link: not followed"))
        elif entry.is_file():
            if not is_notebook_name(entry.name):
                rejected.append(Rejected(entry.name, not_a_notebook(entry.name)))
            elif problem := bad_student(entry.stem, "the file"):
                rejected.append(Rejected(entry.name, problem))
            else:
                add(entry, entry.stem)
        elif entry.is_dir():
            if problem := bad_student(entry.name, "the folder"):
                rejected.append(Rejected(entry.name + "/", problem))
                continue
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = sorted(d for d in dirnames if not hidden(d))
                for fname in sorted(filenames):
                    path = Path(dirpath) / fname
                    rel = path.relative_to(root).as_posix()
                    if hidden(fname) or fname == TIMESTAMP_FILE:
                        continue
                    if path.is_symlink():
                        rejected.append(Rejected(rel, "symbolic link: not followed", entry.name))
                    elif not is_notebook_name(fname):
                        rejected.append(Rejected(rel, not_a_notebook(fname), entry.name))
                    else:
                        add(path, entry.name)
    return candidates, rejected
