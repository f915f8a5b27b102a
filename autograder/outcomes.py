"""The words grading output is made of: timing lines, failure messages, points.

Test cells print timing verdicts as `[timing] NAME: VALUE x (limit: at most|at least LIMIT x)`
(the notebook's `report_timing`); a failed test leaves an error output. Feedback, the report,
export and the Gradescope run all read those the same way, through this module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

TIMING_LINE = re.compile(
    r"^\[timing\] (?P<name>[\w.-]+): (?P<value>[0-9.]+)x \(limit: (?P<kind>at most|at least) "
    r"(?P<limit>[0-9.]+)x\)\s*$", re.M)
MAX_MESSAGE = 600


@dataclass
class Timing:
    name: str
    value: float
    kind: str                # "at most" | "at least"
    limit: float

    @property
    def passed(self) -> bool:
        return self.value <= self.limit if self.kind == "at most" else self.value >= self.limit


def timings(text: str) -> list[Timing]:
    """Every timing verdict printed in `text`."""
    return [Timing(m["name"], float(m["value"]), m["kind"], float(m["limit"]))
            for m in TIMING_LINE.finditer(text)]


HIDDEN_FAILURE = "(this failure is in the cell's hidden tests)"   # a traceback line the runner adds


def failed_in_hidden_tests(outputs) -> bool:
    """Whether a failed test cell failed in its hidden tests (the runner marks its traceback)."""
    return any(output.get("output_type") == "error" and HIDDEN_FAILURE in output.get("traceback", [])
               for output in outputs)


def failure_message(outputs) -> str:
    """What a failed test cell says, from its outputs: the error's name and message, never its
    traceback (which would show the source of hidden tests). "" when it did not fail."""
    for output in outputs:
        if output.get("output_type") == "error":
            name, value = output.get("ename", "Error"), str(output.get("evalue", "")).strip()
            if name == "NotImplementedError" and not value:
                message = "NotImplementedError: a function this test uses is not written yet"
            elif not value:
                message = f"{name} (the test stopped without a message)"
            else:
                message = f"{name}: {value}"
            return message[:MAX_MESSAGE]
    return ""


def format_points(value: float | None) -> str:
    """`72.5`, `80`, `0.3`: at most four decimals, no trailing zeros; empty for None."""
    if value is None:
        return ""
    text = f"{round(float(value), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
