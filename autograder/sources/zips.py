"""Reading an LMS's download zip safely: every entry checked, each refusal with its reason.

nbgrader's extractor plugin is not used: it silently drops unsafe entries, unpacks archives
students uploaded (one broken upload would abort the whole class), and keeps no entry metadata.
File names are parsed by nbgrader's own zip_collect collector (`FileNameCollectorPlugin` with the
LMS's `named_regexp`); what a name means is the LMS module's (`canvas`, `moodle`).
"""
from __future__ import annotations

import logging
import re
import zipfile
import zlib
from pathlib import Path
from types import ModuleType

from ..lms import Lms
from . import canvas, moodle
from .candidates import (MAX_NOTEBOOK_BYTES, Candidate, CollectError, Rejected, hidden,
                         is_notebook_name, not_a_notebook)

FORMATS: dict[str, ModuleType] = {Lms.CANVAS: canvas, Lms.MOODLE: moodle}

_nbgrader_log = logging.getLogger(__name__ + ".nbgrader")
_nbgrader_log.addHandler(logging.NullHandler())
_nbgrader_log.propagate = False


def _collector(lms: str):
    from nbgrader.plugins import FileNameCollectorPlugin

    return FileNameCollectorPlugin(named_regexp=FORMATS[lms].REGEXP,
                                   valid_ext=[".ipynb", ".IPYNB"], log=_nbgrader_log)


def _entry_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def _unsafe(name: str) -> str | None:
    if "\x00" in name:
        why = "NUL byte in name"
    elif name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        why = "absolute path"
    elif "\\" in name:
        why = "backslash in path"
    elif ".." in name.split("/"):
        why = "'..' in path"
    else:
        return None
    return f"unsafe path in the zip ({why}): not extracted"


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and (info.external_attr >> 16) & 0o170000 == 0o120000


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CollectError(path, f"not a readable zip file ({exc}); download it again") from exc
    except OSError as exc:
        raise CollectError(path, f"cannot be read: {exc.strerror or exc}") from exc
    try:
        bad = zf.testzip()
    except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, EOFError, OSError,
            ValueError) as exc:
        zf.close()
        raise CollectError(path, f"the zip is damaged or uses an unsupported feature ({exc}); "
                                 "download it again") from exc
    if bad is not None:
        zf.close()
        raise CollectError(path, f"the zip is damaged: entry {bad!r} fails its checksum; "
                                 "download it again")
    return zf


def _detect_lms(path: Path, names: list[str]) -> str:
    counts = {lms: sum(1 for n in names if module.names_it(n)) for lms, module in FORMATS.items()}
    if not any(counts.values()):
        sample = ", ".join(repr(n) for n in names[:3]) or "no files"
        raise CollectError(path, "not a Canvas or Moodle submissions download: no file in it is named "
                                 f"like {canvas.PATTERN} (Canvas) or {moodle.PATTERN} (Moodle); "
                                 f"found {sample}")
    return Lms.MOODLE if counts[Lms.MOODLE] >= counts[Lms.CANVAS] else Lms.CANVAS


def read_zip(path: Path, lms: str) -> tuple[str, list[Candidate], list[Rejected]]:
    """(the LMS, its candidates, what was refused) of a download zip; `lms` may be "auto"."""
    rejected: list[Rejected] = []
    candidates: list[Candidate] = []
    with _open_zip(path) as zf:
        entries: list[tuple[str, zipfile.ZipInfo]] = []
        for info in zf.infolist():
            name = _entry_name(info)
            if info.is_dir():
                continue
            problem = _unsafe(name)
            if problem:
                rejected.append(Rejected(name, problem))
            elif any(hidden(part) for part in name.split("/")):
                continue
            elif _is_symlink(info):
                rejected.append(Rejected(name, "symbolic link in the zip: not extracted"))
            else:
                entries.append((name, info))
        if lms == "auto":
            lms = _detect_lms(path, [n for n, _ in entries])
        module = FORMATS[lms]
        plugin = _collector(lms)
        for name, info in entries:
            if not is_notebook_name(name):
                rejected.append(Rejected(name, not_a_notebook(name)))
                continue
            parsed = plugin.collect(name)
            if not parsed:
                rejected.append(Rejected(name, module.unparsed_reason(name)))
                continue
            student = parsed["student_id"]
            if info.file_size > MAX_NOTEBOOK_BYTES:
                size = f"{info.file_size // 2**20} MB"
                rejected.append(Rejected(name, f"too large for a notebook ({size})", student))
                continue
            candidates.append(module.candidate(parsed, name, zf.read(info)))
    return lms, candidates, rejected
