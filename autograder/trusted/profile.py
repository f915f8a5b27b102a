"""How close a submission's products come to the machine: times and GFLOP/s at a few sizes.

After the tests, the grader times some of the student's product functions on square matrices of a
few sizes, in alternation with a reference for each and with the machine's one-core peak (the
grader's own NumPy product on one BLAS thread), the same way timing tests measure (`speed`): fresh
inputs, every result checked, student code stopped once it is far slower than the peak. No score
depends on it; feedback and the cohort report show it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import remote, speed, verify

PEAK = "peak"
TOO_SLOW = 200          # a student function this many times slower than the peak is not timed
ROUNDS = 5


@dataclass(frozen=True)
class ProfiledFunction:
    """A student function to profile, the part it belongs to, and the reference shown with it
    (None: the peak is its reference)."""
    function: str
    part: str
    reference_label: str = ""
    reference: object = None


def reference_name(function: str) -> str:
    """How a profile names the reference of a student function."""
    return f"{function} reference"


@dataclass(frozen=True)
class ProfileSpec:
    sizes: tuple[int, ...]
    functions: tuple[ProfiledFunction, ...]
    focus: int = 256                 # the size feedback quotes figures at
    peak: object = np.matmul         # the machine's one-core peak: 2 n^3 flops per call
    peak_label: str = "NumPy, one core (peak)"

    def lines(self) -> list[tuple[str, str]]:
        """(name in the profile, label) of everything measured, in the order feedback shows it."""
        found = []
        for f in self.functions:
            found.append((f.function, f"your {f.function}"))
            if f.reference is not None:
                found.append((reference_name(f.function), f.reference_label))
        return [*found, (PEAK, self.peak_label)]


@dataclass
class Profile:
    sizes: list[int] = field(default_factory=list)
    seconds: dict[str, dict[int, float]] = field(default_factory=dict)  # name -> size -> s/call
    labels: dict[str, str] = field(default_factory=dict)                # name -> what it is
    notes: list[str] = field(default_factory=list)

    def gflops(self, name: str, size: int) -> float | None:
        seconds = self.seconds.get(name, {}).get(size)
        return None if not seconds else 2.0 * size ** 3 / seconds / 1e9

    def fraction_of_peak(self, name: str, size: int) -> float | None:
        mine, peak = self.gflops(name, size), self.gflops(PEAK, size)
        return None if mine is None or not peak else mine / peak

    def to_json(self) -> dict:
        data = asdict(self)
        data["seconds"] = {name: {str(size): s for size, s in by_size.items()}
                           for name, by_size in self.seconds.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        seconds = {name: {int(size): float(s) for size, s in by_size.items()}
                   for name, by_size in data.get("seconds", {}).items()}
        return cls([int(n) for n in data.get("sizes", [])], seconds,
                   dict(data.get("labels", {})), list(data.get("notes", [])))


def _works(worker: remote.Worker, name: str, size: int, rng, profile: Profile) -> bool:
    """Whether `name` gives a correct product on one call: only then is it timed."""
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    try:
        value = worker.proxy_for(name, "function")(a, b)
    except Exception as exc:  # noqa: BLE001 - not written, failing: nothing to profile
        profile.notes.append(f"{name}: not timed ({type(exc).__name__} on a {size}x{size} call)")
        return False
    if not verify.freivalds(a, b, value, rng):
        profile.notes.append(f"{name}: not timed (a wrong {size}x{size} product)")
        return False
    return True


def measure(worker: remote.Worker, meter: speed.SpeedMeter, spec: ProfileSpec,
            functions: list[str]) -> Profile:
    """Time `functions` (student names, from the spec) and their references at every size."""
    by_name = {f.function: f for f in spec.functions}
    profile = Profile(list(spec.sizes), labels={PEAK: spec.peak_label})
    rng = np.random.default_rng()
    active = [name for name in functions if _works(worker, name, spec.sizes[0], rng, profile)]
    for size in spec.sizes:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        measured = None
        while active and measured is None:
            entries = {PEAK: (spec.peak, {})}
            for name in active:
                if by_name[name].reference is not None:
                    entries[reference_name(name)] = (by_name[name].reference, {})
                    profile.labels[reference_name(name)] = by_name[name].reference_label
                entries[name] = (worker.proxy_for(name, "function"), {})
            try:
                measured = meter.compare(entries, (a, b), rounds=ROUNDS, limit=TOO_SLOW)
            except (speed.TooSlow, speed.WrongWhileTimed) as exc:
                why = (f"over {TOO_SLOW}x the peak's time" if isinstance(exc, speed.TooSlow)
                       else "a wrong result")
                profile.notes.append(f"{exc.function}: not timed from {size}x{size} on ({why})")
                active = [n for n in active if n != exc.function]
            except Exception as exc:  # noqa: BLE001 - a failing function ends the profile
                profile.notes.append(f"stopped at {size}x{size}: {type(exc).__name__}: "
                                     f"{str(exc)[:200]}")
                return profile
            else:
                if measured is None:
                    profile.notes.append(f"stopped at {size}x{size}: the timing budget ran out")
                    return profile
        if not active:
            break
        for name, seconds in measured.items():
            profile.seconds.setdefault(name, {})[size] = seconds
    return profile
