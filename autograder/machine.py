"""The machine a submission was graded on: what its timings depend on.

Every grading record carries `describe()`; the cohort report warns when a class was graded on
more than one kind of machine, since speed figures (GFLOP/s, the leaderboard) only compare
within one. Nothing here knows of nbgrader.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform

FIELDS = ("cpu", "cores", "blas", "blas_threads", "numpy", "python")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_library() -> dict:
    """threadpoolctl's record of the BLAS NumPy loaded ({} when it finds none)."""
    import numpy  # noqa: F401 - threadpoolctl lists the libraries loaded: NumPy's BLAS first
    from threadpoolctl import threadpool_info

    return next((info for info in threadpool_info() if info.get("user_api") == "blas"), {})


@functools.lru_cache(maxsize=1)
def describe() -> dict:
    """CPU model, cores, BLAS library and the threads grading gives it, NumPy and Python versions.

    Timing in grading runs BLAS on one thread (the worker's policy); `blas_threads` says so, and
    `blas` names the library NumPy loaded (threadpoolctl), as found in this process.
    """
    import numpy as np

    blas = blas_library()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "blas": " ".join(filter(None, [blas.get("internal_api"), blas.get("version")])) or "none",
        "blas_threads": 1,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def fingerprint(description: dict) -> str:
    """A short id of a machine description: equal for machines that time alike."""
    text = json.dumps({k: description.get(k) for k in FIELDS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def summary(description: dict) -> str:
    return (f"{description.get('cpu', '?')}, {description.get('cores', '?')} cores, "
            f"{description.get('blas', '?')} on {description.get('blas_threads', '?')} thread(s), "
            f"NumPy {description.get('numpy', '?')}")
