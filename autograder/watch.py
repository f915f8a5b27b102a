"""Grade submissions as they arrive, and hand feedback back within a minute: `watch`.

A long-running loop over the course's sources (nbgrader's exchange, a drop folder): what has
settled there is collected into submitted/ (nbgrader's `collect --update --before-duedate` for the
exchange, this project's `collect` for a drop folder), graded through `grade` (local slots or a
Dask cluster), and its feedback page written and released (`nbgrader release_feedback` for the
exchange, so `nbgrader fetch_feedback` finds it; the feedback folder otherwise).

Before the due date a page shows every test's pass or fail, the visible tests' messages and the
timing figures, but not what a hidden test says (`--before-due full` shows it all); after the due
date pages are complete, and the ones handed out withheld are written again and released. One
graded attempt per student per `--every` minutes: a newer submission that arrives meanwhile
replaces the waiting one, and the page says when the next one will be graded. Which attempt
counts is nbgrader's rule: the gradebook holds the last one collected.

Everything it needs to go on is on disk: what is not current is graded again after a restart
(`grade`'s records), and its own state (`grading/watch/state.json`: attempts per student, when
each was graded, which pages were released) is written atomically after each step, with every
attempt's record kept under `grading/watch/attempts/<student>/`. `grading/watch/status.json` says
how things stand (queue, last graded, attempts per student), rewritten on every pass.
"""
from __future__ import annotations

import argparse
import json
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .collect import CollectError, due_date, intake
from .course import Course, CourseError, NbgraderError
from .feedback import feedback_path, write_feedback
from .files import write_atomic
from .grade import SUBMISSION_TIMEOUT, configured_scheduler, grade_batch, pending
from .gradebook import open_gradebook
from .lms import Lms
from .records import read_record, records_dir
from .sources.dropfolder import DropFolder
from .sources.exchange import Exchange

FULL, WITHHOLD_HIDDEN = "full", "withhold-hidden"
FOLDER = "watch"


@dataclass
class Attempt:
    fingerprint: str
    graded_at: float
    status: str
    score: float
    max_score: float


@dataclass
class StudentState:
    attempts: list[Attempt] = field(default_factory=list)
    last_graded_at: float = 0.0
    released: str = ""            # fingerprint whose page was handed out
    released_full: bool = False   # that page showed the hidden tests' messages


class WatchState:
    """What `watch` keeps between passes and restarts, in grading/watch/state.json."""

    def __init__(self, course: Course):
        self.path = records_dir(course) / FOLDER / "state.json"
        self.students: dict[str, StudentState] = {}
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return
        for student, value in data.get("students", {}).items():
            attempts = [Attempt(**a) for a in value.pop("attempts", [])]
            self.students[student] = StudentState(attempts=attempts, **value)

    def of(self, student: str) -> StudentState:
        return self.students.setdefault(student, StudentState())

    def save(self) -> None:
        write_atomic(self.path, json.dumps(
            {"students": {s: asdict(v) for s, v in sorted(self.students.items())}}, indent=1),
            make_folder=True)


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _say(text: str) -> None:
    print(f"{datetime.now(timezone.utc):%H:%M:%S} {text}", flush=True)


class Watcher:
    def __init__(self, course: Course, exchange: Exchange | None, drop: DropFolder | None,
                 every: float, before_due: str, jobs: int | None, scheduler: str | None,
                 local_cluster: bool, time_limit: float | None, timeout: float):
        self.course, self.exchange, self.drop = course, exchange, drop
        self.every, self.before_due = every, before_due
        self.grading = dict(jobs=jobs, scheduler=scheduler, local_cluster=local_cluster,
                            time_limit=time_limit, timeout=timeout)
        self.state = WatchState(course)
        self.folder = records_dir(course) / FOLDER
        self._told_waiting: dict[str, float] = {}
        self._waiting: dict[str, str] = {}       # drop-folder files not taken yet, and why

    # -- one pass ---------------------------------------------------------------------------
    def due(self) -> datetime | None:
        with open_gradebook(self.course) as gb:
            return due_date(gb, self.course.assignment)

    def _collect(self) -> None:
        if self.exchange is not None:
            try:
                for entry in self.exchange.collect():
                    _say(f"arrived  {entry.split('+')[0]} (nbgrader exchange)")
            except NbgraderError as exc:
                _say(f"nbgrader collect failed, will try again: {exc}")
        if self.drop is not None:
            scan = self.drop.scan()
            self._waiting = scan.waiting
            if scan.ready:
                try:
                    report = intake(self.course, self.drop.path, Lms.FOLDER, scan.ready,
                                    scan.rejected)
                except CollectError as exc:
                    _say(f"the drop folder could not be collected, will try again: {exc}")
                    return
                for item in report.imported:
                    if item.status != "unchanged":
                        _say(f"arrived  {item.student} (drop folder, {item.source_file})")

    def _queue(self, now: float) -> tuple[list[str], dict[str, float]]:
        """(students to grade now, students waiting for their rate limit -> when)."""
        ready, later = [], {}
        for student in pending(self.course):
            next_at = self.state.of(student).last_graded_at + self.every
            if next_at <= now:
                ready.append(student)
            else:
                later[student] = next_at
                if self._told_waiting.get(student) != next_at:
                    _say(f"queued   {student}: one graded attempt per {self.every / 60:g} min, "
                         f"next at {_clock(next_at)}")
                    self._told_waiting[student] = next_at
        return ready, later

    def _grade(self, students: list[str]) -> None:
        """Grade them; each page is written and released as soon as its grading is."""
        def graded(record) -> None:
            self._reconcile([record.student])
            self._release(time.time(), self.due(), [record.student])

        grade_batch(self.course, students, progress=False, on_record=graded, **self.grading)

    def _reconcile(self, students: list[str] | None = None) -> None:
        """Count as an attempt every grading record not counted yet (of everyone, or of those
        named): as each is graded, and after a restart (a batch killed part-way leaves records
        that no attempt lists)."""
        changed = False
        for student in students or self.course.submitted_students():
            record = read_record(self.course, student)
            if record is None or record.status == "interrupted":
                continue
            state = self.state.of(student)
            if state.attempts and state.attempts[-1].graded_at >= record.finished_at:
                continue
            state.attempts.append(Attempt(record.fingerprint, record.finished_at, record.status,
                                          record.score, record.max_score))
            state.last_graded_at = record.finished_at
            kept = self.folder / "attempts" / student / f"{len(state.attempts)}.json"
            write_atomic(kept, json.dumps(asdict(record), indent=1), make_folder=True)
            changed = True
        if changed:
            self.state.save()

    def _release(self, now: float, due: datetime | None, students: list[str] | None = None
                 ) -> None:
        """Write and hand out the page of every student (or of those named) whose page is not
        the current one."""
        full = self.before_due == FULL or (due is not None and now >= due.timestamp())
        todo = []
        for student in students or self.course.submitted_students():
            record = read_record(self.course, student)
            if record is None or record.status == "interrupted":
                continue
            state = self.state.of(student)
            if state.released != record.fingerprint or (full and not state.released_full):
                todo.append(student)
        if not todo:
            return
        notes = {s: f"Graded {_clock(self.state.of(s).last_graded_at)}, attempt "
                    f"{len(self.state.of(s).attempts)}. One submission is graded per "
                    f"{self.every / 60:g} minutes: a new one will be graded from "
                    f"{_clock(self.state.of(s).last_graded_at + self.every)}"
                    + ("" if full else "; what the hidden tests say is shown after the due "
                                       "date") + "." for s in todo}
        write_feedback(self.course, todo, withhold_hidden=not full, notes=notes)
        for student in todo:
            if not feedback_path(self.course, student).is_file():
                continue
            if self.exchange is not None:
                try:
                    self.exchange.release_feedback(student)
                except NbgraderError as exc:
                    _say(f"release_feedback failed for {student}, will try again: {exc}")
                    continue
            state = self.state.of(student)
            state.released, state.released_full = read_record(self.course, student).fingerprint, full
            _say(f"released {student}" + ("" if full else " (hidden tests' messages withheld)"))
        self.state.save()

    def _status(self, later: dict[str, float], waiting: dict[str, str]) -> None:
        last = max(((s, v.attempts[-1]) for s, v in self.state.students.items() if v.attempts),
                   key=lambda item: item[1].graded_at, default=None)
        write_atomic(self.folder / "status.json", json.dumps({
            "updated_at": _clock(time.time()),
            "queue": sorted(pending(self.course)),
            "waiting_for_rate_limit": {s: _clock(t) for s, t in sorted(later.items())},
            "files_not_taken_yet": waiting,
            "last_graded": None if last is None else {
                "student": last[0], "at": _clock(last[1].graded_at), "status": last[1].status,
                "score": last[1].score, "max_score": last[1].max_score},
            "attempts": {s: len(v.attempts) for s, v in sorted(self.state.students.items())},
        }, indent=1), make_folder=True)

    def step(self) -> None:
        self._collect()
        self._reconcile()
        ready, later = self._queue(time.time())
        if ready:
            self._grade(ready)
        self._release(time.time(), self.due())
        self._status(later, self._waiting)

    def run(self, poll: float, once: bool = False) -> None:
        where = [f"nbgrader exchange {self.exchange.inbound}"] if self.exchange else []
        where += [f"drop folder {self.drop.path}"] if self.drop else []
        _say(f"watching {' and '.join(where)} for {self.course.assignment}; one graded attempt "
             f"per student per {self.every / 60:g} min; before the due date: {self.before_due}")
        while True:
            self.step()
            if once:
                return
            time.sleep(poll)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Grade submissions as they arrive (nbgrader's exchange, a drop folder) "
                          "and hand their feedback back; runs until stopped (Ctrl-C, SIGTERM).")
    parser.add_argument("--exchange", action="store_true",
                        help="watch nbgrader's exchange (what students' `nbgrader submit` sends)")
    parser.add_argument("--exchange-root", metavar="DIR", default=None,
                        help="the exchange's folder (default: c.Exchange.root of "
                             "nbgrader_config.py, else nbgrader's /usr/local/share/nbgrader/exchange)")
    parser.add_argument("--drop", metavar="DIR", type=Path, default=None,
                        help="watch a drop folder: <student>.ipynb or <student>/<any>.ipynb")
    parser.add_argument("--every", type=float, default=10, metavar="MINUTES",
                        help="at most one graded attempt per student per MINUTES (default: "
                             "%(default)s); a newer submission replaces a waiting one")
    parser.add_argument("--before-due", choices=[WITHHOLD_HIDDEN, FULL], default=WITHHOLD_HIDDEN,
                        help="what a page shows before the due date (default: %(default)s: pass "
                             "or fail of every test, visible tests' messages, timing figures)")
    parser.add_argument("--poll", type=float, default=5, metavar="SECONDS",
                        help="seconds between looks at the sources (default: %(default)s)")
    parser.add_argument("--settle", type=float, default=2, metavar="SECONDS",
                        help="a submission is taken once unchanged this long (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=None, help="as for grade")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS", help="as for grade")
    parser.add_argument("--cluster", choices=["local"], default=None, help="as for grade")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="as for grade")
    parser.add_argument("--once", action="store_true",
                        help="one pass (collect, grade, release), then exit: for cron")


def _stop(signum, frame):
    """SIGTERM (systemd, a hub service) stops watch like Ctrl-C: what is graded stays graded."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    if not args.exchange and args.drop is None:
        raise CourseError("watch what? give --exchange, --drop DIR, or both")
    exchange = Exchange(course, args.exchange_root, args.settle) if args.exchange else None
    drop = DropFolder(args.drop, course.assignment, course.notebook, args.settle) \
        if args.drop is not None else None
    watcher = Watcher(course, exchange, drop, args.every * 60, args.before_due, args.jobs,
                      args.scheduler or configured_scheduler(course), args.cluster == "local",
                      args.time_limit, SUBMISSION_TIMEOUT)
    signal.signal(signal.SIGTERM, _stop)
    try:
        watcher.run(args.poll, args.once)
    except KeyboardInterrupt:
        _say("stopped; what arrives meanwhile is graded when watch starts again")
    return 0
