"""The learning management systems the pipeline reads from and writes to, and student ids.

One definition for `collect` (which reads an LMS's download) and `export` (which writes the file
the LMS imports): the LMS names, and what a student id may be.
"""
from __future__ import annotations

import re
from enum import Enum


class Lms(str, Enum):
    CANVAS = "canvas"
    MOODLE = "moodle"
    FOLDER = "folder"        # not an LMS: a folder with one notebook per student

    @property
    def label(self) -> str:
        return {"canvas": "Canvas", "moodle": "Moodle", "folder": "folder"}[self.value]

    def __str__(self) -> str:
        return self.value


# ASCII only: ids become folder names, CSV cells and LMS lookups, where look-alike digits and
# letters from other scripts would go wrong.
STUDENT_ID = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]*\Z")
NUMERIC_ID = re.compile(r"[0-9]+\Z")
ID_RULE = "ASCII letters, digits, . _ @ + - only"


def is_student_id(text: str) -> bool:
    return bool(STUDENT_ID.match(text))


def is_numeric_id(text: str) -> bool:
    """An id an LMS gave out: Canvas user ids and Moodle participant ids are ASCII digits."""
    return bool(NUMERIC_ID.match(text))


def sort_key(student: str) -> tuple:
    """Numeric ids in numeric order first, then the others in text order."""
    return (0, int(student), "") if is_numeric_id(student) else (1, 0, student)
