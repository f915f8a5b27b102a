"""One way of getting memory for both sides of a timing: the grader's and the worker's process.

A timed call allocates its result (and the student's code its temporaries). glibc's malloc
serves a block of 128 KiB or more with a fresh mapping, whose pages fault in on first touch,
and moves that threshold with what the process freed before, and returns freed memory to the
system once enough of it is free: whether a 256x256 result costs page faults then depends on
each process's history. Measured on a busy machine, NumPy's product read 1.4x itself that way,
the reference's process having a warm heap and the worker's not. With both processes keeping
blocks of up to MMAP_THRESHOLD in their heap and never trimming it, neither pays page faults
after the first calls, whatever ran before.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1       # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's largest: bigger blocks are mapped whatever is asked
TRIM_THRESHOLD = 1 << 30


def steady_allocation() -> bool:
    """Fix this process's malloc thresholds (see the module docstring); False where the C
    library is not glibc, which has other rules and no such switches."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
