"""Timing student code against a reference, the way the trusted `speed_ratio` helper does it.

Both sides are timed under the same conditions, in alternation (`timing.measure.interleaved`):

- every call gets **fresh inputs**: new arrays of the test's shapes and dtypes with new random
  values, made by the grader before the clock starts. Nothing can be remembered from one call to
  the next, and a timed call looks like any other call to the code receiving it;
- student code runs in the worker and is timed by the worker's CPU clock, read by the grader from
  before the inputs reach the worker to after the results have left it; the grader's reference
  code is timed by this thread's CPU clock, with the same tracked arrays and one copy of each
  result, as the worker makes;
- **every result of a timed call is checked** after its sample, with Freivalds' test for matrix
  products (`verify`): a fast wrong answer in any call costs the timing points;
- a measurement **stops early** once the student's code is `stats.SETTLED` times past the
  test's limit in `stats.SETTLE_SAMPLES` samples (one cold or disturbed sample is no verdict),
  and that ends the timing; or once it is `stats.WELL_WITHIN` times inside the limit in
  `stats.WITHIN_SAMPLES` samples of each side, and then the next measurement must say so too,
  unless this one is `stats.SETTLED` times inside it (`stats.far_within`). A
  request of student code is stopped once it has used that much more CPU than the limit allows
  (never before MIN_CPU_LIMIT); each `speed_ratio` has a CPU BUDGET in all.

`SpeedMeter.records` keeps every measurement (seconds per call of both sides), for feedback.
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..timing import measure, stats
from . import remote, tracked, verify, wire, worker

MIN_SAMPLE = 0.002          # seconds: a sample repeats calls until it lasts this long
MIN_CPU_LIMIT = 0.25        # seconds: no request is stopped for being slow before this
FIRST_CALL_ALLOWANCE = 10   # the first call of a function (warm-up) may take this much longer
BUDGET = 20.0               # CPU seconds for one speed_ratio, every measurement included
SETTLED = "settled"         # why a measurement stopped early: far past the limit
WELL_WITHIN = "well within"  # ... or well within it
FAR_WITHIN = "far within"   # why the timing stopped after one measurement: far inside the limit


class WrongWhileTimed(AssertionError):
    """Student code (`function`) returned a wrong result in a timed call."""

    def __init__(self, function: str, message: str):
        self.function = function
        super().__init__(message)


@dataclass
class SpeedRecord:
    """One finished speed_ratio: who was compared with whom, on what, and the figures."""
    function: str
    reference: str
    shapes: list
    seconds: float               # best seconds per call of the function
    reference_seconds: float     # and of the reference
    ratio: float
    samples: int                 # samples per side in the measurement kept
    spread: float                # highest over lowest of the ratios of the measurements taken
    stopped: str = ""            # SETTLED, WELL_WITHIN, FAR_WITHIN, "budget", "over limit" or ""


def _label(fn) -> str:
    """How records name a timed function: the student's by their name, NumPy's as np.<name>."""
    if isinstance(fn, remote.RemoteValue):
        return fn._describe()
    name = getattr(fn, "__name__", type(fn).__name__)
    if isinstance(fn, np.ufunc) or str(getattr(fn, "__module__", "")).startswith("numpy"):
        return f"np.{name}"
    return name


class FreshInputs:
    """New arguments like the test's for every call: arrays of the same shapes and dtypes with new
    random values; everything else as given."""

    def __init__(self, args, kwargs, rng: np.random.Generator):
        self.args, self.kwargs, self.rng = list(args), dict(kwargs or {}), rng
        self.product = verify.is_product_call(self.args)
        self.scratch = verify.Scratch()

    def _like(self, value):
        if not isinstance(value, np.ndarray):
            return value
        kind, shape = value.dtype.kind, value.shape
        if kind == "f":
            # Uniform in [-1, 1): 5x cheaper to draw than normal values (118 against 666 us for
            # a 256x256 float32 matrix, more than the product itself), and just as new.
            native = value.dtype in (np.float32, np.float64)
            fresh = self.rng.random(shape, dtype=value.dtype.type if native else np.float64)
            fresh *= 2
            fresh -= 1
            return fresh if native else fresh.astype(value.dtype)
        if kind in "iu":
            return self.rng.integers(0 if kind == "u" else -9, 10, shape).astype(value.dtype)
        if kind == "b":
            return self.rng.random(shape) < 0.5
        return value.copy()

    def fresh(self, kwargs: dict | None = None) -> tuple[list, dict]:
        return [self._like(x) for x in self.args], {**self.kwargs, **(kwargs or {})}

    def check(self, label: str, sets, values) -> None:
        """Raise WrongWhileTimed unless every value is the product of its call's inputs."""
        if not self.product:
            return
        for (args, _), value in zip(sets, values):
            if not verify.freivalds(args[0], args[1], value, self.rng, scratch=self.scratch):
                raise WrongWhileTimed(label,
                    f"{label} returned a wrong result in a timed call (every timed call gets new "
                    f"inputs, and its result is checked): no timing points")


class TooSlow(Exception):
    """A timed request of `calls` calls of `function` was stopped after using `cpu_limit` seconds
    of CPU."""

    def __init__(self, function: str, calls: int, cpu_limit: float):
        self.function, self.calls, self.cpu_limit = function, calls, cpu_limit
        super().__init__(f"{function}: {calls} call(s) used more than {cpu_limit:.3g} s of CPU")


class LocalCaller:
    """Runs the grader's reference code through the worker's own call path, in this process.

    The request is encoded into an arena before the clock starts, as for the worker; then the
    worker's code (`worker.answer`) decodes it, calls with tracked arrays, and encodes the results
    into the arena, timed by this thread's CPU clock. Only the pipe and the process switch are
    left out, so both sides of a ratio pay the same for getting their inputs and results across.
    """

    NAME = "__reference__"

    def __init__(self):
        self.requests = wire.Arena.create()
        self.replies = wire.Arena.attach(os.dup(self.requests.fd), self.requests.size)
        self.session = worker.Session(wire, tracked)

    def close(self) -> None:
        for arena in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                arena.close()

    def call(self, fn, sets) -> float:
        """CPU seconds of calling fn once per (args, kwargs) in `sets`, the worker's way."""
        self.session.namespace[self.NAME] = fn
        arrays: list = []
        header = {"op": "call", "target": {"name": self.NAME}, "calls": [
            {"args": wire.encode(list(a), arrays), "kwargs": wire.encode(dict(k), arrays)}
            for a, k in sets]}
        request = io.BytesIO()
        wire.write_message(request, header, arrays, self.requests)
        start = time.thread_time()
        received, shared = wire.read_message(io.BytesIO(request.getvalue()), self.replies)
        reply, out = worker.answer(self.session, received, shared)
        wire.write_message(io.BytesIO(), reply, out, self.replies)
        spent = time.thread_time() - start
        if not reply.get("ok"):
            error = reply["error"]
            raise RuntimeError(f"the reference raised {error['type']}: {error['message']}")
        return spent


class SpeedMeter:
    """The grader's timing of student code; `speed_ratio` is the test helper."""

    def __init__(self, worker: remote.Worker, rng: np.random.Generator | None = None):
        self.worker = worker
        self.rng = rng or np.random.default_rng()
        self.records: list[SpeedRecord] = []
        self._local_caller: LocalCaller | None = None

    @property
    def local(self) -> "LocalCaller":
        if self._local_caller is None:
            self._local_caller = LocalCaller()
        return self._local_caller

    def close(self) -> None:
        if self._local_caller is not None:
            self._local_caller.close()
            self._local_caller = None

    # samplers -------------------------------------------------------------------------------
    def _local(self, fn, inputs: FreshInputs, kwargs: dict | None) -> measure.Sampler:
        def sample(calls: int) -> float:
            return self.local.call(fn, [inputs.fresh(kwargs) for _ in range(calls)])

        return sample

    def _remote(self, fn: remote.RemoteValue, inputs: FreshInputs, kwargs: dict | None,
                cpu_limit=lambda calls: None) -> measure.Sampler:
        label = _label(fn)

        def sample(calls: int) -> float:
            sets = [inputs.fresh(kwargs) for _ in range(calls)]
            limit = cpu_limit(calls)
            try:
                result = self.worker.call(fn._target, sets, f"{label}(...)", timed=True,
                                          cpu_limit=limit, check_inputs=False)
            except remote.StudentCodeOverBudget:
                raise TooSlow(label, calls, limit) from None
            inputs.check(label, sets, result.values)
            return result.observation.cpu_seconds

        return sample

    def sampler(self, fn, inputs: FreshInputs, kwargs: dict | None = None,
                cpu_limit=lambda calls: None) -> measure.Sampler:
        if isinstance(fn, remote.RemoteValue):
            return self._remote(fn, inputs, kwargs, cpu_limit)
        return self._local(fn, inputs, kwargs)

    def timed_call(self, fn, args, kwargs=None, cpu_limit: float | None = None):
        """(CPU seconds, value) of one call on the given arguments."""
        kwargs = kwargs or {}
        if isinstance(fn, remote.RemoteValue):
            result = self.worker.call(fn._target, [(args, kwargs)], f"{_label(fn)}(...)",
                                      cpu_limit=cpu_limit)
            return result.observation.cpu_seconds, result.values[0]
        start = time.thread_time()
        value = fn(*args, **kwargs)
        return time.thread_time() - start, value

    # the helper -----------------------------------------------------------------------------
    def seconds_per_call(self, fn, args, kwargs=None, rounds=5) -> float:
        """Best CPU seconds per call of trusted local code, on fresh inputs like `args`."""
        inputs = FreshInputs(args, kwargs, self.rng)
        result = measure.interleaved({"fn": self._local(fn, inputs, None)}, rounds=rounds)
        return stats.best(result.samples["fn"])

    def compare(self, entries: dict, args, rounds=5, limit: float | None = None):
        """Best seconds per call of each entry (name -> (fn, kwargs)), timed in alternation on
        fresh inputs like `args`; None if the budget ran out first. Student code is stopped
        (TooSlow) once a request uses `limit` times the first entry's time per call."""
        inputs = FreshInputs(args, {}, self.rng)
        first_best: list[float] = []

        def cpu_limit(calls: int) -> float | None:
            if limit is None or not first_best:
                return None
            return max(MIN_CPU_LIMIT, limit * min(first_best) * calls)

        samplers = {}
        for name, (fn, kwargs) in entries.items():
            samplers[name] = self.sampler(fn, inputs, kwargs, cpu_limit)
        first_name = next(iter(samplers))
        first = samplers[first_name]

        def first_sample(calls: int) -> float:
            seconds = first(calls)
            first_best.append(seconds / calls)
            return seconds

        samplers[first_name] = first_sample
        result = measure.interleaved(samplers, rounds=rounds, budget=BUDGET)
        if not all(result.samples.values()):
            return None
        return {name: stats.best(samples) for name, samples in result.samples.items()}

    def speed_ratio(self, fn, reference, *args, rounds=15, min_sample=MIN_SAMPLE, at_most=None,
                    record=True):
        """Like the notebook's: CPU-time ratio fn / reference, interleaved; correctness first.

        `at_most` is the test's limit: measuring stops once fn is clearly past it, and then the
        figure returned is the one measured so far (or, for a call stopped midway, the least
        the ratio can be, with a note printed). `record=False` keeps it out of `records`.
        """
        label, ref_label = _label(fn), _label(reference)
        want_seconds, want = self.timed_call(reference, args)
        first_limit = None if at_most is None else max(
            MIN_CPU_LIMIT, FIRST_CALL_ALLOWANCE * stats.SETTLED * at_most * want_seconds)
        try:
            _, got = self.timed_call(fn, args, cpu_limit=first_limit)
        except remote.StudentCodeOverBudget:
            return self._stopped(label, ref_label, args, first_limit, want_seconds, 1, record)
        self._check_first(label, ref_label, got, want)
        inputs = FreshInputs(args, {}, self.rng)
        reference_best: list[float] = []

        def fn_limit(calls: int) -> float | None:
            if at_most is None or not reference_best:
                return None
            return max(MIN_CPU_LIMIT, stats.SETTLED * at_most * min(reference_best) * calls)

        reference_sampler = self.sampler(reference, inputs)

        def reference_sample(calls: int) -> float:   # the reference goes first: fn's limit
            seconds = reference_sampler(calls)        # follows from its speed
            reference_best.append(seconds / calls)
            return seconds

        samplers = {"reference": reference_sample,
                    "fn": self.sampler(fn, inputs, cpu_limit=fn_limit)}

        def settled(samples) -> str:
            if at_most is None:
                return ""
            if stats.far_past(samples["fn"], samples["reference"], at_most):
                return SETTLED
            if stats.well_within(samples["fn"], samples["reference"], at_most):
                return WELL_WITHIN
            return ""

        ratios, spent, kept = [], 0.0, None
        # Two measurements; when they disagree, a third, and the median: one disturbed
        # measurement cannot decide a verdict on its own. Either may stop early, far past the
        # limit (that ends the timing: more samples only lower fn's time from there, and honest
        # code never came near) or well within it (that does not: the next one must agree).
        # One far inside the limit (stats.far_within) ends it too.
        for attempt in range(3):
            if attempt == 2 and max(ratios) <= stats.AGREEMENT * min(ratios):
                break
            try:
                # Both sides were just called on these shapes (above): no warm-up call; and a
                # measurement after the first takes the calls per sample the first found.
                result = measure.interleaved(samplers, rounds=rounds, min_sample=min_sample,
                                             stop=settled, budget=BUDGET - spent, warm_up=False,
                                             calls=kept.calls if kept else None)
            except TooSlow as exc:
                return self._stopped(label, ref_label, args, exc.cpu_limit, min(reference_best),
                                     exc.calls, record)
            spent += result.spent
            ratios.append(stats.ratio(result.samples["fn"], result.samples["reference"]))
            kept, stopped = result, result.stopped
            if stopped in (SETTLED, "budget"):
                break
            if at_most is not None and stats.far_within(ratios[-1], at_most):
                stopped = FAR_WITHIN
                break
        ratio = statistics.median(ratios)
        if stopped == "budget":
            print(f"(timing stopped at its CPU budget of {BUDGET:g} s, after "
                  f"{len(kept.samples['fn'])} samples)")
        if record:
            self.records.append(SpeedRecord(
                label, ref_label, [list(np.shape(a)) for a in args if isinstance(a, np.ndarray)],
                stats.best(kept.samples["fn"]), stats.best(kept.samples["reference"]), ratio,
                len(kept.samples["fn"]), max(ratios) / min(ratios), stopped))
        return ratio

    @staticmethod
    def _check_first(label: str, ref_label: str, got, want) -> None:
        got_f = np.asarray(got, dtype=np.float64) if isinstance(got, np.ndarray) else None
        want_f = np.asarray(want, dtype=np.float64)
        scale = 1e-2 * max(1.0, float(np.abs(want_f).max(initial=0)))
        if got_f is None or got_f.shape != want_f.shape or not np.allclose(
                got_f, want_f, rtol=1e-3, atol=scale):
            raise AssertionError(f"{label} gives another result than {ref_label} for these "
                                 f"inputs: a timing test needs a correct result first (see the "
                                 f"correctness tests), so no timing points")

    def _stopped(self, label, ref_label, args, cpu_limit, reference_seconds, calls,
                 record) -> float:
        at_least = cpu_limit / max(reference_seconds * calls, 1e-12)
        print(f"(timing stopped: {label} used more than {cpu_limit:.2f} s of CPU for "
              f"{calls} call(s) where {ref_label} takes {reference_seconds * 1e3:.3g} ms per call, "
              f"so it is at least {at_least:,.0f}x slower; the figure below is that bound)")
        if record:
            self.records.append(SpeedRecord(
                label, ref_label, [list(np.shape(a)) for a in args if isinstance(a, np.ndarray)],
                cpu_limit / calls, reference_seconds, at_least, 0, 1.0, "over limit"))
        return at_least
