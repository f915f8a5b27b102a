"""TrustedTests: score the graded test cells in the grader's process, not the student's kernel.

It replaces the outputs of every autograded test cell with the outcome of running that cell in
`autograder.trusted.runner` (student code in a sandboxed worker, asserts and clocks in the grader).
nbgrader's SaveAutoGrades, which runs after it, then scores the cells from those outputs as usual:
an error output means zero for that cell. What grading measured of the submission's speed goes
beside the graded notebook, with the grading machine's ceilings (`ceilings_file`, which `grade`
measures once per machine).
"""
from __future__ import annotations

import json

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Float, Int, Unicode

from pathlib import Path

from .. import assignment, ceilings, performance
from ..phases import SUFFIX, Phases
from ..notebook import grade_id, is_test_cell
from ..trusted import launch, runner


class TrustedTests(NbGraderPreprocessor):
    sandbox = Bool(True, help="run student code in the bubblewrap sandbox").tag(config=True)
    call_timeout = Float(60.0, help="seconds one call of student code may take").tag(config=True)
    memory_bytes = Int(2 * 1024**3, help="address-space limit of the student's worker").tag(config=True)
    sandbox_uid = Int(65534, help="unprivileged uid (and gid) the worker runs as").tag(config=True)
    cpu = Int(-1, help="the core tests and worker share while timing (-1: the lowest allowed)"
              ).tag(config=True)
    ceilings_file = Unicode("", help="the grading machine's ceilings (autograder.ceilings.kept), "
                            "saved with each submission's speed figures").tag(config=True)

    def launcher(self) -> launch.Launcher:
        return launch.grading_launcher(self.sandbox_uid, self.memory_bytes, self.sandbox)

    def spec(self, resources) -> assignment.Assignment:
        """The assignment being graded, as its grading.py (beside its source notebook) says."""
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        name = resources["nbgrader"]["assignment"]
        return assignment.load(Path(coursedir.root) / coursedir.source_directory / name, name)

    def machine_ceilings(self) -> dict | None:
        found = ceilings.read(Path(self.ceilings_file)) if self.ceilings_file else None
        return found.to_json() if found else None

    def preprocess(self, nb, resources):
        phases = resources.setdefault("phases", Phases())
        report = runner.run_tests(nb, self.spec(resources), self.launcher(), self.call_timeout,
                                  cpu=None if self.cpu < 0 else self.cpu,
                                  report=runner.RunReport(ceilings=self.machine_ceilings(),
                                                          phases=phases))
        # Beside the graded notebook (nbgrader writes resources' outputs there): what grading
        # measured of the submission's speed, for feedback and the report.
        name = f"{resources.get('unique_key', 'notebook')}{performance.SUFFIX}"
        resources.setdefault("outputs", {})[name] = json.dumps(report.performance(),
                                                               indent=1).encode()
        # And where this notebook's grading spent its time (the kernel's phases included).
        resources["outputs"][f"{resources.get('unique_key', 'notebook')}{SUFFIX}"] = \
            json.dumps(phases.seconds, indent=1).encode()
        for cell in nb.cells:
            outcome = report.outcomes.get(grade_id(cell))
            if outcome is not None and is_test_cell(cell):
                cell.outputs = [nbformat.from_dict(o) for o in outcome.outputs()]
                cell.execution_count = None
        failed = [g for g, o in report.outcomes.items() if not o.passed]
        self.log.info("trusted tests: %d run, %d failed %s", len(report.outcomes), len(failed),
                      failed)
        return nb, resources
