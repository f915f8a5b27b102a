"""A long-lived nbgrader autograde process: reads student ids, grades each one, reports back.

`grade` keeps one of these per job. Loading nbgrader and its configuration takes a second or two;
paying that once per worker instead of once per submission is most of what parallel grading gains
on a small machine. Protocol, one JSON object per line: the grader writes {"student": ID}; the
worker answers {"student": ID, "ok": bool, "log": text} once nbgrader is done with it.

    python -m autograder.autograde_worker COURSE_ROOT [CELL_TIMEOUT_SECONDS]
"""
from __future__ import annotations

import json
import os
import sys


def _api(course_root: str, cell_timeout: float | None):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=course_root).load_config()
    if cell_timeout:
        config.Execute.timeout = int(cell_timeout)
    return NbGraderAPI(config=config)


def main(argv: list[str]) -> int:
    course_root = argv[0]
    cell_timeout = float(argv[1]) if len(argv) > 1 and argv[1] else None
    os.chdir(course_root)
    api = _api(course_root, cell_timeout)
    assignment = os.environ.get("ACCELERATION_ASSIGNMENT", "acceleration")
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # anything nbgrader prints must not corrupt the reply stream
    print(json.dumps({"ready": True}), file=replies)
    for line in sys.stdin:
        student = json.loads(line)["student"]
        result = api.autograde(assignment, student, force=True, create=True)
        log = (result.get("log") or "") + "\n" + (result.get("error") or "")
        print(json.dumps({"student": student, "ok": bool(result.get("success")), "log": log}),
              file=replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
