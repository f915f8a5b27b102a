"""A drop folder: a folder that fills up over time (an LMS sync, a shared folder), laid out as a
plain folder (`folder`): `<student>.ipynb` or `<student>/<any>.ipynb`.

A notebook is taken once it has stopped changing for `settle` seconds and reads as a notebook, so
one still being copied waits; a file that stays broken is reported as waiting, with the reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .candidates import Candidate, Rejected, notebook_problem
from .folder import read_folder


@dataclass
class Scan:
    ready: list[Candidate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)   # file -> why it is not taken yet


class DropFolder:
    def __init__(self, path: Path, assignment: str, notebook: str, settle: float = 2.0):
        self.path, self.assignment, self.notebook, self.settle = Path(path), assignment, notebook, settle
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}   # file -> (size, mtime), since

    def scan(self) -> Scan:
        found = Scan()
        if not self.path.is_dir():
            found.waiting[str(self.path)] = "the drop folder does not exist (yet)"
            return found
        candidates, found.rejected = read_folder(self.path, self.assignment, self.notebook)
        now = time.monotonic()
        for cand in candidates:
            try:
                stat = (self.path / cand.source_file).stat()
            except OSError:
                continue                          # gone since it was listed
            key = (stat.st_size, stat.st_mtime_ns)
            seen = self._seen.get(cand.source_file)
            if seen is None or seen[0] != key:
                self._seen[cand.source_file] = (key, now)
                found.waiting[cand.source_file] = "still changing"
            elif now - seen[1] < self.settle:
                found.waiting[cand.source_file] = "still changing"
            elif problem := notebook_problem(cand.data):
                found.waiting[cand.source_file] = f"{problem} (a copy still in progress?)"
            else:
                found.ready.append(cand)
        return found
