"""nbgrader's exchange: what students' `nbgrader submit` put in `<root>/<course id>/inbound/`.

Collecting is nbgrader's own (`nbgrader collect --update --before-duedate`: a newer submission
replaces the collected one, and after the due date the last one before it stays, nbgrader's
rule). This module only notices when there is something to collect: an inbound entry of the
assignment that is new or changed, and has stopped changing for `settle` seconds (so a submit
still being copied waits), and hands feedback back with `nbgrader release_feedback`.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..course import Course

DEFAULT_ROOT = "/usr/local/share/nbgrader/exchange"    # nbgrader's Exchange.root default


class Exchange:
    def __init__(self, course: Course, root: str | Path | None = None, settle: float = 2.0):
        self.course, self.settle = course, settle
        config = course.config()
        self.root = Path(root or config.get("Exchange", {}).get("root") or DEFAULT_ROOT)
        self.course_id = str(config.get("CourseDirectory", {}).get("course_id") or "")
        self.inbound = self.root / self.course_id / "inbound"
        self._seen: dict[str, tuple[tuple, float]] = {}    # entry -> (signature, since)
        self._collected: dict[str, tuple] = {}              # entry -> signature collected

    @property
    def options(self) -> list[str]:
        return [f"--Exchange.root={self.root}", f"--CourseDirectory.course_id={self.course_id}"]

    def _entries(self) -> dict[str, tuple]:
        """Inbound entries of this assignment (`student+assignment+time+random`) -> signature."""
        found = {}
        if not self.inbound.is_dir():
            return found
        for entry in self.inbound.iterdir():
            parts = entry.name.split("+")
            if len(parts) < 3 or parts[1] != self.course.assignment or not entry.is_dir():
                continue
            files = sorted(p for p in entry.rglob("*") if p.is_file())
            found[entry.name] = tuple((str(p.relative_to(entry)), p.stat().st_size,
                                       p.stat().st_mtime_ns) for p in files)
        return found

    def waiting(self) -> list[str]:
        """Entries new or changed since collected, that have settled."""
        now, ready = time.monotonic(), []
        for name, signature in self._entries().items():
            if self._collected.get(name) == signature:
                continue
            seen = self._seen.get(name)
            if seen is None or seen[0] != signature:
                self._seen[name] = (signature, now)
            elif now - seen[1] >= self.settle:
                ready.append(name)
        return sorted(ready)

    def collect(self) -> list[str]:
        """Run nbgrader's collect if something settled in the inbound folder; the entries taken."""
        ready = self.waiting()
        if ready:
            self.course.nbgrader("collect", self.course.assignment, "--update",
                                 "--before-duedate", *self.options, timeout=600)
            for name in ready:
                self._collected[name] = self._seen[name][0]
        return ready

    def release_feedback(self, student: str) -> None:
        self.course.nbgrader("release_feedback", self.course.assignment, f"--student={student}",
                             *self.options, timeout=600)
