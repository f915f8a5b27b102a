"""Run a notebook's graded test cells in the grader's own process, against the student's code.

The student's code (the notebook's `*_impl` cells, after the assignment's setup cell) is loaded
into a worker process; the test cells run here, with the student's names bound to proxies of that
worker. So the asserts, `np.allclose`, the test helpers and the clock all belong to the grader:
nothing the student's code does to its own process can make a test pass. Cells the student
inserted are never run, and test cells come from the notebook as nbgrader restored them.

The helpers that need to reach into the worker are replaced here by versions that do:
`speed_ratio` times student code by the worker's CPU-time clock, read from outside it, and
`dispatched_ops` records, inside the worker, the dispatches of the object the assignment names.
Then come the assignment's rules (`Assignment.rules`) and its speed profile, if it has one.
"""
from __future__ import annotations

import builtins
import contextlib
import io
import os
import time
from dataclasses import asdict, dataclass, field

from threadpoolctl import threadpool_limits

from ..assignment import Assignment
from ..notebook import HIDDEN_TESTS, grade_id, is_implementation_cell, is_test_cell, part_of
from ..outcomes import HIDDEN_FAILURE
from ..phases import Phases
from . import launch, memory, profile, remote, speed

MAX_STDOUT = 4000


@dataclass
class CellOutcome:
    """What running one test cell gave: its printed text, and its failure if it failed."""
    grade_id: str
    error: tuple[str, str] | None = None     # (name, message) of the failure, None if it passed
    stdout: str = ""
    seconds: float = 0.0
    in_hidden: bool = False                  # the failure was raised in the hidden tests

    @property
    def passed(self) -> bool:
        return self.error is None

    def outputs(self) -> list[dict]:
        """nbformat outputs for the cell: what it printed, then the failure without a traceback."""
        outputs = []
        if self.stdout:
            text = self.stdout if len(self.stdout) <= MAX_STDOUT else \
                self.stdout[:MAX_STDOUT] + "\n... (output cut)\n"
            outputs.append({"output_type": "stream", "name": "stdout", "text": text})
        if self.error:
            name, message = self.error
            outputs.append({"output_type": "error", "ename": name, "evalue": message,
                            "traceback": [f"{name}: {message}"] +
                                         ([HIDDEN_FAILURE] if self.in_hidden else [])})
        return outputs


@dataclass
class RunReport:
    outcomes: dict[str, CellOutcome] = field(default_factory=dict)
    load_errors: dict[str, dict] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)   # part -> broken rule
    worker_starts: int = 0
    speeds: list[speed.SpeedRecord] = field(default_factory=list)
    observations: list[remote.Observation] = field(default_factory=list)
    profile: profile.Profile | None = None
    ceilings: dict | None = None      # the grading machine's (autograder.ceilings), as JSON
    phases: Phases = field(default_factory=Phases)   # where the time went

    def performance(self) -> dict:
        """What grading measured of the submission's speed, as saved beside the graded notebook,
        with the ceilings of the machine it was measured on."""
        return {"speeds": [asdict(s) for s in self.speeds],
                "profile": self.profile.to_json() if self.profile else None,
                "ceilings": self.ceilings}


def _raised_in_hidden_tests(exc: BaseException, filename: str, source: str) -> bool:
    """Whether the cell's line that raised `exc` lies in its hidden-tests region: feedback shown
    before the due date withholds such messages."""
    lines = source.splitlines()
    begin = next((n for n, line in enumerate(lines, 1) if HIDDEN_TESTS[0] in line), None)
    if begin is None:
        return False
    end = next((n for n, line in enumerate(lines, 1) if n > begin and HIDDEN_TESTS[1] in line),
               len(lines) + 1)
    raised, tb = [], exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            raised.append(tb.tb_lineno)
        tb = tb.tb_next
    return bool(raised) and begin < raised[-1] < end


def _describe_failure(exc: BaseException, load_errors: dict[str, dict]) -> tuple[str, str]:
    if isinstance(exc, remote.StudentCodeTimeout):
        return "TimeoutError", str(exc)
    if isinstance(exc, remote.StudentCodeOverBudget):
        return "TimeoutError", str(exc)
    if isinstance(exc, remote.StudentCodeCrashed):
        return "ProcessCrashed", str(exc)
    if isinstance(exc, remote.StudentException):
        return exc.type_name, exc.message
    if isinstance(exc, AssertionError):   # the grader's own checks, whatever their class
        return "AssertionError", str(exc)
    message = str(exc)
    if isinstance(exc, NameError) and load_errors:
        broken = "; ".join(f"cell {cell} raised {e['type']}: {e['message']}"
                           for cell, e in load_errors.items())
        message = f"{message} ({broken})"
    return type(exc).__name__, message


class TrustedHelpers:
    """Versions of the notebook's helpers that measure or observe the student's worker."""

    def __init__(self, worker: remote.Worker, meter: speed.SpeedMeter, dispatcher: str):
        self.worker, self.meter, self.dispatcher = worker, meter, dispatcher

    def speed_ratio(self, fn, reference, *args, rounds=15, min_sample=0.002, at_most=None):
        return self.meter.speed_ratio(fn, reference, *args, rounds=rounds, min_sample=min_sample,
                                      at_most=at_most)

    def dispatched_ops(self, run):
        """Run run() with the assignment's dispatcher recording its dispatches; return them."""
        what = f"{self.dispatcher}.dispatch"
        self.worker.request({"op": "record_dispatch", "action": "start",
                             "object": self.dispatcher}, what=what)
        try:
            run()
        finally:
            ops = self.worker.request({"op": "record_dispatch", "action": "stop",
                                       "object": self.dispatcher}, what=what)["value"]
        return ops


def run_tests(nb, spec: Assignment, launcher: launch.Launcher = launch.local_launcher,
              call_timeout: float = 60.0, only: set[str] | None = None, rules: bool = True,
              report: RunReport | None = None, cpu: int | None = None,
              profiling: bool = True) -> RunReport:
    """Outcome of every graded test cell of `nb` (a notebook dict, as nbgrader restored it).

    `spec` is the assignment (its setup cell, rules, speed profile). `only` restricts the run to
    those grade ids; `rules=False` skips the rules and `profiling=False` the speed profile (for
    measuring timing verdicts alone). Pass a `report` to read the outcomes while they come in
    (from another thread, e.g. a watchdog). The tests and the student's worker both run on one
    core, `cpu` (default: the lowest this thread may use): a ratio of two CPU times taken on two
    different cores of a virtual machine swung from 0.55x to 2x; on one core it holds steady.
    """
    cells = nb["cells"]
    setup = next((c for c in cells if grade_id(c) == spec.setup_cell), None)
    code = ([(spec.setup_cell, setup["source"], False)] if setup else []) + [
        (grade_id(c), c["source"], True) for c in cells if is_implementation_cell(c)]
    report = report if report is not None else RunReport()
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed) if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    memory.steady_allocation()     # as the worker does: both sides of a ratio get memory alike
    # The reference code runs here, timed by this thread's CPU clock: with BLAS threads, that
    # clock also counts this thread spinning while it waits for them (whatever the setup cell,
    # run here too, says about threads).
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            return _run(cells, setup, code, spec, launcher, call_timeout, only,
                        rules and profiling, rules, report, cpu)
    finally:
        os.sched_setaffinity(0, allowed)


def _run(cells, setup, code, spec, launcher, call_timeout, only, profiling, rules, report,
         cpu) -> RunReport:
    timed = report.phases.timed
    with remote.Worker(code, launcher=launcher, call_timeout=call_timeout, cpu=cpu,
                       deferred=spec.deferred_imports) as worker:
        try:
            with timed("tests: worker start and load"):
                loaded = worker.start()
        except remote.StudentCodeError as exc:
            error = _describe_failure(exc, {})
            for cell in filter(is_test_cell, cells):
                report.outcomes[grade_id(cell)] = CellOutcome(grade_id(cell), error)
            return report
        report.load_errors = loaded.errors
        namespace: dict = {"__name__": "__grader__"}
        if setup is not None:
            with contextlib.redirect_stdout(io.StringIO()), timed("tests: setup cell"):
                exec(compile(setup["source"], "<setup>", "exec"), namespace)
        # Only the student's own new names are bound, never over the given helpers or Python's
        # builtins: the worker's list of names is as untrusted as the rest of what it says.
        protected = set(namespace) | set(dir(builtins))
        for name, info in loaded.names.items():
            if name.isidentifier() and name not in protected:
                namespace[name] = info["value"] if info["kind"] == "value" else \
                    worker.proxy_for(name, info["kind"])
        meter = speed.SpeedMeter(worker)
        helpers = TrustedHelpers(worker, meter, spec.dispatch_log)
        namespace.update(speed_ratio=helpers.speed_ratio, dispatched_ops=helpers.dispatched_ops)
        checks = spec.rules() if rules else []
        for rule in checks:   # probes first: a clear breach costs no test time
            with timed("tests: rules"):
                if (message := _quietly(rule.probe, worker, meter)):
                    report.violations[rule.part] = message
        for cell in filter(is_test_cell, cells):
            test = grade_id(cell)
            if only is not None and test not in only:
                continue
            out = io.StringIO()
            started = time.monotonic()
            error = None
            if part_of(test) in report.violations:
                report.outcomes[test] = CellOutcome(
                    test, ("RuleViolation", report.violations[part_of(test)]))
                continue
            in_hidden = False
            with contextlib.redirect_stdout(out), timed(f"test cell {test}"):
                try:
                    exec(compile(cell["source"], f"<{test}>", "exec"), namespace)
                except Exception as exc:  # noqa: BLE001 - every failure is a verdict
                    error = _describe_failure(exc, loaded.errors)
                    in_hidden = _raised_in_hidden_tests(exc, f"<{test}>", cell["source"])
            report.outcomes[test] = CellOutcome(test, error, out.getvalue(),
                                                round(time.monotonic() - started, 3), in_hidden)
        # Then every call the tests made, timed calls included, against the same rules.
        for rule in checks:
            with timed("tests: rules"):
                if rule.part not in report.violations and \
                        (message := _quietly(rule.check, worker, meter)):
                    report.violations[rule.part] = message
        for test, outcome in list(report.outcomes.items()):
            if part_of(test) in report.violations and \
                    (outcome.error or ("",))[0] != "RuleViolation":
                report.outcomes[test] = CellOutcome(
                    test, ("RuleViolation", report.violations[part_of(test)]), outcome.stdout,
                    outcome.seconds)
        if profiling and spec.profile is not None:
            functions = [f.function for f in spec.profile.functions
                         if loaded.names.get(f.function, {}).get("kind") == "function"
                         and f.part not in report.violations]
            with contextlib.redirect_stdout(io.StringIO()), timed("tests: speed profile"):
                report.profile = profile.measure(worker, meter, spec.profile, functions)
        report.worker_starts = worker.starts
        report.speeds = meter.records
        report.observations = worker.observations
        meter.close()
    return report


def _quietly(check, worker, meter) -> str | None:
    """A rule's verdict; what it prints stays out of the tests' outputs."""
    with contextlib.redirect_stdout(io.StringIO()):
        return check(worker, meter)
