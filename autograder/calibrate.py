"""Check the timing thresholds on this machine: the reference must pass, slow variants must fail.

Runs the assignment's timing tests (the test cells its `Assignment.calibration` names) through the
same trusted runner as grading, many times: with the reference answers, and with variants that do
the reference's work several times over. Prints, per timing limit, the spread of the measured ratios
and the margin to the limit, and a verdict: the thresholds are safe here when the reference never
fails and every slow variant (3x the work, or a slower style the assignment names) always does.
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field

from .course import Course
from .notebook import grade_id, is_test_cell
from .outcomes import Timing, timings
from .submissions import fill, reference_answers
from .timing import stats


def slow_variant(function: str, factor: int) -> str:
    """Code that makes `function` (a name, or Class.method) take `factor` times as long per call.

    The extra calls get copies of the array arguments: timed calls get fresh inputs, and repeating
    a call on arrays it has just read would cost less than a call (warm caches), measuring about
    2.4x for "3x the work" on the same arrays.
    """
    once = "_" + function.replace(".", "_") + "_once"
    return (f"\n\n{once} = {function}\n\n\n"
            f"def _slowed(*args, **kwargs):\n"
            f"    for _ in range({factor - 1}):\n"
            f"        {once}(*[x.copy() if hasattr(x, 'copy') else x for x in args], **kwargs)\n"
            f"    return {once}(*args, **kwargs)\n\n\n"
            f"{function} = _slowed\n")


def variants(course: Course, factor: int = 3) -> dict[str, tuple[dict[str, str], str]]:
    """name -> (cell edits, the test cell that must fail): the reference, and slow variants."""
    answers = reference_answers(course.source_notebook)
    found = {"reference": ({}, "")}
    for variant in course.spec.calibration:
        if variant.code:
            edits = {variant.cell: answers[variant.cell] + "\n\n" + variant.code}
            found[variant.label or f"{variant.function} ({variant.cell})"] = (edits, variant.test)
        else:
            edits = {variant.cell: answers[variant.cell] + slow_variant(variant.function, factor)}
            found[f"{variant.function} x{factor}"] = (edits, variant.test)
    return found


def timing_cells(course: Course) -> set[str]:
    """The test cells whose timings calibration measures."""
    return {variant.test for variant in course.spec.calibration}


def graded_notebook(course: Course, edits: dict[str, str]):
    """A submission with the reference answers (and `edits`), test cells as nbgrader restores them."""
    import nbformat

    nb = fill(course.release_notebook, course.source_notebook, edits=edits)
    source = {grade_id(c): c.source
              for c in nbformat.read(course.source_notebook, as_version=4).cells}
    for cell in nb.cells:
        if is_test_cell(cell):
            cell.source = source[grade_id(cell)]
    return nb


@dataclass
class VariantRun:
    name: str
    must_fail: str                          # grade id that must fail ("" for the reference)
    trials: int = 0
    failures: dict[str, int] = field(default_factory=dict)   # grade id -> trials it failed
    first_failure: dict[str, str] = field(default_factory=dict)   # grade id -> what it said
    timings: dict[str, list[Timing]] = field(default_factory=dict)

    @property
    def verdict_ok(self) -> bool:
        if not self.must_fail:
            return not any(self.failures.values())
        return self.failures.get(self.must_fail, 0) == self.trials


def grading_launcher():
    """Student code where grading puts it: in the sandbox, when this machine has one."""
    from . import sandbox
    from .trusted import launch

    return launch.grading_launcher(sandboxed=sandbox.available()[0])


def run_variant(course: Course, name: str, nb, must_fail: str, trials: int, launcher=None,
                progress=None, only: set[str] | None = None,
                run: VariantRun | None = None) -> VariantRun:
    """Run the timing cells (`only` of them, if given) `trials` times; add to `run` if given."""
    from .trusted import runner

    run = run or VariantRun(name, must_fail)
    launcher = launcher or grading_launcher()
    for _ in range(trials):
        report = runner.run_tests(nb, course.spec, launcher, only=only or timing_cells(course),
                                  rules=False)
        run.trials += 1
        for test, outcome in report.outcomes.items():
            run.failures[test] = run.failures.get(test, 0) + (not outcome.passed)
            if not outcome.passed and test not in run.first_failure:
                run.first_failure[test] = ": ".join(outcome.error)
            for timing in timings(outcome.stdout):
                run.timings.setdefault(timing.name, []).append(timing)
        if progress:
            progress()
    return run


def describe(runs: list[VariantRun]) -> str:
    lines = []
    for run in runs:
        failed = ", ".join(f"{g} {n}/{run.trials}" for g, n in sorted(run.failures.items()) if n)
        lines.append(f"{run.name}: {run.trials} trials; failed: {failed or 'none'}")
        # Why a test failed that should not have: a timing, or something else (a crash)?
        for test, message in sorted(run.first_failure.items()):
            if test != run.must_fail:
                lines.append(f"  {test} first failed with {message[:300]}")
        for name, values in sorted(run.timings.items()):
            nums = [t.value for t in values]
            limit, kind = values[0].limit, values[0].kind
            worst = max(nums) if kind == "at most" else min(nums)
            margin = stats.margin(worst, limit, kind)
            lines.append(f"  {name:32s} min {min(nums):9.2f}  median {statistics.median(nums):9.2f}"
                         f"  max {max(nums):9.2f}  limit {kind} {limit:g}  "
                         f"worst-case margin {margin:.2f}x")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=10,
                        help="runs of the timing tests per variant (default: %(default)s)")
    parser.add_argument("--factor", type=int, default=3,
                        help="how many times too slow the slow variants are (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    course: Course = args.course
    plan = variants(course, args.factor)
    runs = []
    with tqdm(total=len(plan) * args.trials, unit="trial", desc="calibrating") as bar:
        for name, (edits, must_fail) in plan.items():
            runs.append(run_variant(course, name, graded_notebook(course, edits), must_fail,
                                    args.trials, progress=bar.update))
    print(describe(runs))
    safe = all(r.verdict_ok for r in runs)
    print("verdict: thresholds are safe on this machine" if safe else
          "verdict: NOT safe here: the reference failed, or a slow variant passed (see above)")
    return 0 if safe else 1

