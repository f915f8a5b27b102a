"""A long-lived nbgrader autograde process: reads student ids, grades each one, reports back.

`grade` keeps one of these per job. Loading nbgrader and its configuration takes a second or two;
paying that once per worker instead of once per submission is most of what parallel grading gains
on a small machine. Protocol, one JSON object per line: the grader writes {"student": ID}; the
worker answers {"student": ID, "ok": bool, "log": text} once nbgrader is done with it.

    python -m autograder.autograde_worker COURSE_ROOT ASSIGNMENT [CONFIG_JSON]

CONFIG_JSON holds config overrides, e.g. {"TrustedTests": {"sandbox": false}}.
"""
from __future__ import annotations

import json
import os
import sys


def _api(course_root: str, overrides: dict):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=course_root).load_config()
    config.merge(Config(overrides))
    return NbGraderAPI(config=config)


def main(argv: list[str]) -> int:
    course_root, assignment = argv[0], argv[1]
    overrides = json.loads(argv[2]) if len(argv) > 2 else {}
    os.chdir(course_root)
    api = _api(course_root, overrides)
    # Replies get a private copy of fd 1; fd 1 itself then goes to the log, so that nothing
    # nbgrader or a kernel it starts prints can corrupt the reply stream.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
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
