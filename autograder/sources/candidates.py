"""What every source of submissions turns its input into: candidates, and the files it refused.

A source (a Canvas or Moodle zip, a folder, nbgrader's exchange, a drop folder) reads its input
and returns, per file it found, a `Candidate` (whose notebook it may be, its bytes, its submission
time if the input says) or a `Rejected` with the reason. `collect` then decides per student and
installs; `watch` does the same as submissions arrive. The checks here are the ones every source
shares: what counts as a notebook, what is hidden, nbgrader's timestamp.txt.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import nbformat

TIMESTAMP_FILE = "timestamp.txt"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"
MAX_NOTEBOOK_BYTES = 100 * 1024 * 1024


class CollectError(Exception):
    """An input as a whole, or the gradebook, cannot be used: `path` says which, `reason` why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Rejected:
    """A file that was not imported, and why."""

    file: str
    reason: str
    student: str | None = None


@dataclass
class Candidate:
    """A notebook a source found for `student`, before collect decides per student: its bytes,
    its submission time and Canvas's LATE mark when the input says, and what the LMS calls them."""
    student: str
    source_file: str
    data: bytes
    timestamp: datetime | None
    late: bool | None
    display: str = ""
    first_name: str | None = None
    last_name: str | None = None
    name_is_exact: bool = False
    lms_user_id: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def is_notebook_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() == ".ipynb"


def not_a_notebook(name: str) -> str:
    ext = PurePosixPath(name).suffix
    return f"not a notebook ({ext or 'no extension'}): only .ipynb files are graded"


def hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def notebook_problem(data: bytes) -> str | None:
    """Why `data` is not a notebook nbgrader can grade, or None."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "not a valid notebook: not UTF-8 text"
    captured: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4, capture_validation_error=captured)
            nbformat.validate(nb)
    except nbformat.reader.NotJSONError:
        return "not a valid notebook: the file is not JSON (truncated or damaged upload?)"
    except Exception as exc:  # nbformat raises many types for malformed input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"not a valid notebook: {first[:160]}"
    if captured.get("ValidationError") is not None:
        return "not a valid notebook: it does not follow the notebook format"
    return None


def utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def read_timestamp_file(path: Path) -> datetime:
    """nbgrader's timestamp.txt as an aware UTC datetime; ValueError when unreadable."""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        raise ValueError("empty")
    try:
        from nbgrader.utils import parse_utc

        return utc(parse_utc(text))
    except (ValueError, OverflowError, TypeError) as exc:
        raise ValueError(text[:40]) from exc
