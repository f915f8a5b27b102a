"""Moodle: the assignment's "Download all submissions" zip, and the grading worksheet it takes back.

The zip (mod/assign): every file of a participant sits in a folder
`{Full Name}_{participant id}_assignsubmission_file/` (Moodle 4.1+) or
`{Full Name}_{participant id}_assignsubmission_file_/` (Moodle 3.1-4.0), or, with "download
submissions in folders" off (and before 3.1), is flat:
`{Full Name}_{participant id}_assignsubmission_file_{name}`. Moodle replaces `_` in names by
spaces, so the first `_` ends the name. Student id: the participant id. With blind marking the
name is "Participant". Moodle records no submission time in the zip.

The grading worksheet (`export --format moodle`): one row per "Participant <id>", with Moodle's
own column names.
"""
from __future__ import annotations

import re

from .candidates import Candidate

REGEXP = (r"^(?P<name>[^/_]+)_(?P<student_id>[0-9]+)_assignsubmission_(?P<plugin>[a-z0-9]+)"
          r"(?:_?/(?:[^/]+/)*|_)(?P<file_id>[^/]+)$")
PATTERN = "<Full Name>_<participant id>_assignsubmission_file[_]/<file name>"
BLIND_NAME = "Participant"

PARTICIPANT = "Participant "       # the worksheet's Identifier: "Participant <id>"
COLUMNS = ("Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
           "Grade can be changed", "Last modified (submission)", "Last modified (grade)")


def names_it(name: str) -> bool:
    return bool(re.match(REGEXP, name))


def unparsed_reason(name: str) -> str:
    return f"name does not match the Moodle download pattern {PATTERN}"


def split_name(full: str) -> tuple[str | None, str | None]:
    full = " ".join(full.split())
    if not full or full == BLIND_NAME:
        return None, None
    first, _, last = full.rpartition(" ")
    return (first or None), last


def candidate(parsed: dict, name: str, data: bytes) -> Candidate:
    display = " ".join((parsed.get("name") or "").split())
    first, last = split_name(display)
    return Candidate(parsed["student_id"], name, data, None, None,
                     display="" if last is None else display, first_name=first, last_name=last,
                     name_is_exact=last is not None)
