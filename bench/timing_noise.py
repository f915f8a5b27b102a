"""Timing verdicts under load: false fails of the reference, detection of slow variants.

Runs the notebook's timing tests through the trusted runner (student code in the sandboxed worker,
as in grading) while two busy-loop processes hold both cores: the reference answers for --trials
runs, and variants doing 3x the reference's work for --variant-trials runs each. Prints the
false-fail rate, the detection rate, and the spread of every measured ratio.

    .venv/bin/python bench/timing_noise.py [--trials 200] [--variant-trials 50] [--no-load]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder import calibrate, sandbox  # noqa: E402
from autograder.course import REPO_ROOT, Course  # noqa: E402
from autograder.trusted import launch  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--variant-trials", type=int, default=50)
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--no-load", action="store_true", help="without the busy-loop processes")
    parser.add_argument("--tests", default="",
                        help="comma-separated timing test cells to run (default: all that "
                             "calibration names), e.g. numpy_speed,backend_speed")
    args = parser.parse_args()

    course = Course.at(REPO_ROOT)
    ok, reason = sandbox.available()
    launcher = launch.grading_launcher(sandboxed=ok)
    print(f"worker: {'sandboxed' if ok else 'not sandboxed (' + reason + ')'}")
    hogs = [] if args.no_load else [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    started = time.monotonic()
    runs = []
    only = set(filter(None, args.tests.split(","))) or calibrate.timing_cells(course)
    plan = {name: (edits, must_fail) for name, (edits, must_fail)
            in calibrate.variants(course, args.factor).items() if not must_fail or must_fail in only}
    # The slow variants first (they stop early), then the reference, which reports as it goes:
    # a long run that is cut short still says what it found.
    order = sorted(plan, key=lambda name: not plan[name][1])
    try:
        for name in order:
            edits, must_fail = plan[name]
            trials = args.trials if not must_fail else args.variant_trials
            nb = calibrate.graded_notebook(course, edits)
            run = calibrate.VariantRun(name, must_fail)
            for done in range(0, trials, 20):
                calibrate.run_variant(course, name, nb, must_fail, min(20, trials - done),
                                      launcher, only=only, run=run)
                failed = max(run.failures.values(), default=0)
                print(f"  {name}: {run.trials}/{trials} trials, {failed} failed the most failed "
                      f"test ({time.monotonic() - started:.0f} s)", flush=True)
            runs.append(run)
    finally:
        for hog in hogs:
            hog.kill()
    print(f"\nload: {'none' if args.no_load else '2 busy-loop processes on 2 cores'}; "
          f"{time.monotonic() - started:.0f} s in all\n")
    print(calibrate.describe(runs))
    reference = next(run for run in runs if not run.must_fail)
    false_fails = sum(1 for n in reference.failures.values() if n)
    failed_trials = max(reference.failures.values(), default=0)
    print(f"\nfalse-fail rate (reference): {failed_trials}/{reference.trials} trials "
          f"({100 * failed_trials / reference.trials:.1f}%), in {false_fails} test(s)")
    for run in runs:
        if not run.must_fail:
            continue
        caught = run.failures.get(run.must_fail, 0)
        print(f"detection rate ({run.name}, {run.must_fail}): {caught}/{run.trials} "
              f"({100 * caught / run.trials:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
