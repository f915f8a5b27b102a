"""Canvas: the "Download Submissions" zip it gives, and the gradebook CSV it takes back.

The zip: Canvas (lib/content_zipper.rb) names every uploaded file
`{lastfirst}[_LATE]_{user_id}_{attachment_id}_{display name}` in a flat zip, where `lastfirst` is
the student's sortable name lower-cased with everything but letters, digits and `_` removed, and
`LATE` is Canvas's own verdict (it knows per-student due dates); old Canvas wrote
`{last--first}-late_{id}_...`. A file uploaded again under the same name is renamed
`<name>-1.ipynb`, `-2`, ... Student id: the Canvas user id. Downloads with anonymous grading on
name files `anon_{id}_...` and are refused. Canvas records no submission time in the zip.

The gradebook import (`export --format canvas`): a CSV whose first columns name the student and
whose assignment column is headed `<title> (<assignment id>)`, with a "Points Possible" row.
"""
from __future__ import annotations

import re

from .candidates import Candidate

REGEXP = (r"^(?P<name>[^/]*?)(?P<late>_LATE|-late)?"
          r"_(?P<student_id>[0-9]+)_(?P<attachment_id>[0-9]+)_(?P<file_id>[^/]+)$")
ANONYMOUS_REGEXP = r"^(?:LATE_)?anon_"
PATTERN = "lastfirst[_LATE]_<user id>_<file id>_<file name>"

STUDENT_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "Points Possible"
TITLE_AND_ID = re.compile(r"\A(.*)\s\((\d+)\)\Z", re.S)
RESERVED_COLUMNS = ("Student", "LastName", "FirstName", "ID", "SIS User ID", "SIS Login ID",
                    "Section", "Integration ID", "Root Account")
# Canvas drops every imported column whose header contains one of these, as a computed total.
TOTAL_COLUMNS = ("Current Score", "Current Points", "Current Grade", "Final Score", "Final Points",
                 "Final Grade", "Override Score", "Override Grade", "Override Status")


def names_it(name: str) -> bool:
    return bool(re.match(REGEXP, name) or re.match(ANONYMOUS_REGEXP, name))


def unparsed_reason(name: str) -> str:
    if re.match(ANONYMOUS_REGEXP, name):
        return ("anonymous grading is on, so Canvas does not say whose file this is; "
                "download again with anonymous grading off")
    return f"name does not match the Canvas download pattern {PATTERN}"


def candidate(parsed: dict, name: str, data: bytes) -> Candidate:
    student = parsed["student_id"]
    display = " ".join((parsed.get("name") or "").split())
    return Candidate(student, name, data, None, bool(parsed.get("late")), display=display,
                     last_name=display or None, lms_user_id=student)
