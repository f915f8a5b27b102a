"""`python -m autograder`: one sub-command per pipeline stage."""
from __future__ import annotations

import argparse
import importlib
import sys

from .course import Course, CourseError

# (command, module, one-line help), in pipeline order.
COMMANDS = [
    ("release", "release", "build release/ (the student notebook) from source/ with nbgrader"),
    ("collect", "collect", "import an LMS download (Canvas/Moodle zip or a folder) into submitted/"),
    ("grade", "grade", "autograde the collected submissions, several at a time"),
    ("feedback", "feedback", "write per-student HTML feedback from the gradebook"),
    ("export", "export", "write the grades as a Canvas, Moodle or plain CSV file"),
    ("report", "report", "write the cohort report (HTML with plots)"),
    ("watch", "watch", "grade submissions as they arrive (nbgrader exchange, drop folder), hand back feedback"),
    ("gradescope", "gradescope.build", "build the Gradescope autograder zip"),
    ("calibrate", "calibrate", "check the timing thresholds on this machine (reference vs slow variants)"),
    ("demo", "demo", "run the whole pipeline on the bundled demo submissions"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description="Release, collect, grade, give feedback on, export and report the "
                    "assignments of an nbgrader course. The course root is the folder holding "
                    "nbgrader_config.py (default: this repository).")
    # --course and --assignment go before or after the command: `grade --assignment X` too.
    # After it, they are left unset unless given, so that they do not undo the ones before it.
    where = argparse.ArgumentParser(add_help=False)
    for p, default in ((parser, None), (where, argparse.SUPPRESS)):
        p.add_argument("--course", metavar="DIR", default=default,
                       help="course root to work in (default: the repository root)")
        p.add_argument("--assignment", metavar="NAME", default=default,
                       help="the assignment to work on (default: the only one in source/)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(f"{__package__}.{module_name}")
        cmd = sub.add_parser(name, help=help_text, parents=[where],
                             description=(module.__doc__ or help_text).strip())
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command != "demo":
            args.course = Course.at(args.course, args.assignment)
        return int(args.run(args) or 0)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
