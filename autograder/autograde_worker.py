"""A long-lived nbgrader autograde process: grades one submission per request, reports back.

Each grading slot (`autograder.task.Slot`) keeps one of these. Loading nbgrader and its
configuration takes a second or two; paying that once per slot instead of once per submission is
most of what parallel grading gains on a small machine. Every request names a scratch course
root holding one submission (`task` builds it), so the process never writes the course itself.

Protocol, one JSON object per line. The slot writes {"student": ID, "root": DIR, "assignment": A,
"extension": SECONDS or null}; the process answers {"student": ID, "ok": bool, "log": text,
"submission": what the scratch gradebook recorded, "seconds": [wall, cpu] of the autograde} once
nbgrader is done with it.

    python -m autograder.autograde_worker [CONFIG_JSON]

CONFIG_JSON holds config overrides, e.g. {"TrustedTests": {"sandbox": false}}.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time

from autograder.phases import cpu_seconds


def _api(course_root: str, overrides: dict):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=course_root).load_config()
    config.merge(Config(overrides))
    return NbGraderAPI(config=config)


def _grant_extension(db_url: str, assignment: str, student: str, seconds: float) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student,
                                       extension=datetime.timedelta(seconds=seconds))


def recorded_submission(db_url: str, assignment: str, student: str) -> dict:
    """What nbgrader's autograde wrote into the gradebook for one submission, as plain JSON:
    the submission's times, and per notebook its late penalty, scores and automatic comments."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return {}
        return {
            "timestamp": submission.timestamp.isoformat() if submission.timestamp else None,
            "notebooks": {nb.name: {
                "late_submission_penalty": nb.late_submission_penalty,
                "grades": {g.name: {"auto_score": g.auto_score,
                                    "needs_manual_grade": g.needs_manual_grade}
                           for g in nb.grades},
                "comments": {c.name: c.auto_comment for c in nb.comments},
            } for nb in submission.notebooks},
        }


def main(argv: list[str]) -> int:
    overrides = json.loads(argv[0]) if argv else {}
    # Replies get a private copy of fd 1; fd 1 itself then goes to the log, so that nothing
    # nbgrader or a kernel it starts prints can corrupt the reply stream.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import nbgrader.apps  # noqa: F401  (the slow import, done before saying ready)
    print(json.dumps({"ready": True}), file=replies)
    for line in sys.stdin:
        request = json.loads(line)
        student, root, assignment = request["student"], request["root"], request["assignment"]
        os.chdir(root)
        api = _api(root, overrides)
        db_url = api.coursedir.db_url
        if request.get("extension"):
            _grant_extension(db_url, assignment, student, request["extension"])
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = api.autograde(assignment, student, force=True, create=True)
        spent = [time.perf_counter() - wall, cpu_seconds() - cpu]
        log = (result.get("log") or "") + "\n" + (result.get("error") or "")
        ok = bool(result.get("success"))
        # A failed autograde has still recorded the submission (with no scores): kept, so that
        # the course's gradebook lists the student, as nbgrader's own autograde leaves it.
        print(json.dumps({"student": student, "ok": ok, "log": log, "seconds": spent,
                          "submission": recorded_submission(db_url, assignment, student)}),
              file=replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
