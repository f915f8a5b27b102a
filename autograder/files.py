"""Writing files so that readers only ever see the old content or the whole new one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(Exception):
    """A file could not be written; nothing was changed. `path` says which, `reason` why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _new_file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


def write_atomic(path: str | Path, data: bytes | str, make_folder: bool = False) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    A crash or a kill leaves the old file (or none), never half of the new one. Text is written
    as UTF-8. The folder must exist unless `make_folder`. Raises OutputError.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if path.is_dir():
        raise OutputError(path, "is a folder; give a file name")
    folder = path.parent
    if make_folder:
        folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise OutputError(path, f"folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(path, f"cannot write in {folder}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(path, f"cannot write: {exc.strerror or exc}") from exc
        raise
    return path
