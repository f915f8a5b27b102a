"""How close a submission's products come to the machine: times and GFLOP/s at a few sizes.

After the tests, the grader times some of the student's product functions on square matrices of a
few sizes, in alternation with a reference for each and with NumPy's own product (np.matmul on
one BLAS thread, called the way the grader calls student code: the same call path, so its figure
is what the student's NumPy product can reach here), the same way timing tests measure (`speed`):
fresh inputs, every result checked, student code stopped once it is far slower than the first
entry. A function with sizes of its own (a slow one: the naive loops) is timed alone with its
reference at those sizes, and stopped only once it is far slower than that reference. No score
depends on it; feedback and the cohort report show it, against the machine's ceilings
(`autograder.ceilings`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import remote, speed, verify

LIBRARY = "library"     # NumPy's product through the grader's call path
_LEGACY_LIBRARY = "peak"  # its name in profiles saved before
TOO_SLOW = 200          # a student function this many times slower than the first entry: not timed
ROUNDS = 3              # samples of each entry: the best of three, for figures that decide no points


@dataclass(frozen=True)
class ProfiledFunction:
    """A student function to profile, the part it belongs to, and the reference shown with it
    (None: NumPy's product is its reference); `sizes` of its own, or the spec's, and `rounds`
    of its own (a slow function, whose every sample is one long call, needs fewer)."""
    function: str
    part: str
    reference_label: str = ""
    reference: object = None
    sizes: tuple[int, ...] = ()
    rounds: int = 0                  # 0: ROUNDS


def reference_name(function: str) -> str:
    """How a profile names the reference of a student function."""
    return f"{function} reference"


@dataclass(frozen=True)
class ProfileSpec:
    sizes: tuple[int, ...]
    functions: tuple[ProfiledFunction, ...]
    focus: int = 256                 # the size feedback quotes figures at
    library: object = np.matmul      # 2 n^3 flops per call
    library_label: str = "np.matmul, called the grader's way"

    def lines(self) -> list[tuple[str, str]]:
        """(name in the profile, label) of everything measured, in the order feedback shows it."""
        found = []
        for f in self.functions:
            found.append((f.function, f"your {f.function}"))
            if f.reference is not None:
                found.append((reference_name(f.function), f.reference_label))
        return [*found, (LIBRARY, self.library_label)]

    def students(self) -> list[str]:
        """The names of the student's own functions in the profile."""
        return [f.function for f in self.functions]


@dataclass
class Profile:
    sizes: list[int] = field(default_factory=list)
    seconds: dict[str, dict[int, float]] = field(default_factory=dict)  # name -> size -> s/call
    labels: dict[str, str] = field(default_factory=dict)                # name -> what it is
    notes: list[str] = field(default_factory=list)

    def gflops(self, name: str, size: int) -> float | None:
        seconds = self.seconds.get(name, {}).get(size)
        return None if not seconds else 2.0 * size ** 3 / seconds / 1e9

    def best(self) -> tuple[float, str, int] | None:
        """(GFLOP/s, name, size) of the fastest product measured, or None."""
        found = [(self.gflops(name, n), name, n) for name, by_size in self.seconds.items()
                 for n in by_size]
        found = [f for f in found if f[0]]
        return max(found) if found else None

    def to_json(self) -> dict:
        data = asdict(self)
        data["seconds"] = {name: {str(size): s for size, s in by_size.items()}
                           for name, by_size in self.seconds.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        def renamed(name: str) -> str:
            return LIBRARY if name == _LEGACY_LIBRARY else name

        seconds = {renamed(name): {int(size): float(s) for size, s in by_size.items()}
                   for name, by_size in data.get("seconds", {}).items()}
        labels = {renamed(name): label for name, label in data.get("labels", {}).items()}
        return cls([int(n) for n in data.get("sizes", [])], seconds, labels,
                   list(data.get("notes", [])))


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


def _timed(worker: remote.Worker, meter: speed.SpeedMeter, profile: Profile, names: list[str],
           sizes, lead: tuple[str, object, str], by_name: dict, rng, rounds: int = ROUNDS) -> bool:
    """Time `names` and their references at `sizes`, in alternation with `lead` (name, function,
    what it is), which goes first: a student function TOO_SLOW times slower than it stops being
    timed. False when the whole profile must stop."""
    lead_name, lead_fn, lead_label = lead
    active = list(names)
    for size in sizes:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        measured = None
        while active and measured is None:
            entries = {lead_name: (lead_fn, {})}
            for name in active:
                if by_name[name].reference is not None:
                    entries.setdefault(reference_name(name), (by_name[name].reference, {}))
                    profile.labels[reference_name(name)] = by_name[name].reference_label
                entries[name] = (worker.proxy_for(name, "function"), {})
            try:
                measured = meter.compare(entries, (a, b), rounds=rounds, limit=TOO_SLOW)
            except (speed.TooSlow, speed.WrongWhileTimed) as exc:
                why = (f"over {TOO_SLOW}x the time of {lead_label}"
                       if isinstance(exc, speed.TooSlow) else "a wrong result")
                profile.notes.append(f"{exc.function}: not timed from {size}x{size} on ({why})")
                active = [n for n in active if n != exc.function]
            except Exception as exc:  # noqa: BLE001 - a failing function ends the profile
                profile.notes.append(f"stopped at {size}x{size}: {type(exc).__name__}: "
                                     f"{str(exc)[:200]}")
                return False
            else:
                if measured is None:
                    profile.notes.append(f"stopped at {size}x{size}: the timing budget ran out")
                    return False
        if not active:
            return True
        for name, seconds in measured.items():
            profile.seconds.setdefault(name, {})[size] = seconds
    return True


def measure(worker: remote.Worker, meter: speed.SpeedMeter, spec: ProfileSpec,
            functions: list[str]) -> Profile:
    """Time `functions` (student names, from the spec) and their references at every size.

    Functions at the spec's sizes are timed together with NumPy's product; one with sizes of its
    own alone with its reference (or NumPy's product when it has none), after them."""
    by_name = {f.function: f for f in spec.functions}
    profile = Profile(labels={LIBRARY: spec.library_label})
    rng = np.random.default_rng()
    shared = [n for n in functions if not by_name[n].sizes
              and _works(worker, n, spec.sizes[0], rng, profile)]
    alone = [n for n in functions if by_name[n].sizes
             and _works(worker, n, by_name[n].sizes[0], rng, profile)]
    profile.sizes = sorted({*spec.sizes, *(s for n in alone for s in by_name[n].sizes)})
    library = (LIBRARY, spec.library, spec.library_label)
    if not _timed(worker, meter, profile, shared, spec.sizes, library, by_name, rng):
        return profile
    for name in alone:
        f = by_name[name]
        lead = (reference_name(name), f.reference, f.reference_label) \
            if f.reference is not None else library
        if not _timed(worker, meter, profile, [name], f.sizes, lead, by_name, rng,
                      f.rounds or ROUNDS):
            return profile
    return profile
