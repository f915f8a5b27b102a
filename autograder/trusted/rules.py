"""Rules beyond right answers: the base an assignment's rules build on, and what they look at.

Every call of student code in grading is observed (`remote.Observation`): the shapes it got, the
library matrix products its tracked arrays took part in, and its CPU time. A rule judges all of
them, the test calls and the timed calls included, so a function cannot behave one way for the
calls a rule makes and another for the calls the tests make. A rule also makes a few probe calls of
its own before the tests, so that a clear breach is known early and costs no test time.

The rules themselves belong to an assignment (its `grading.py`); the runner applies whatever
`Assignment.rules()` returns. A broken rule costs every test of its part, with its message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import remote, speed


def matrix_shapes(observation: remote.Observation) -> tuple[int, int, int] | None:
    """(m, k, n) of a call whose first two arguments are an m x k and a k x n matrix."""
    if len(observation.args) < 2:
        return None
    left, right = observation.args[0], observation.args[1]
    if not all(isinstance(x, dict) and len(x.get("shape", ())) == 2 for x in (left, right)):
        return None
    (m, k), (k2, n) = left["shape"], right["shape"]
    return (m, k, n) if k == k2 else None


def product_text(product: list) -> str:
    """`@ / np.matmul on shapes (3, 4) and (4, 5)` for a logged product."""
    op, left, right = product[0], product[1], product[2] if len(product) > 3 else []
    return f"{op} on shapes {tuple(left)} and {tuple(right)}"


def largest_dimension(product: list) -> int:
    return max([0, *product[1], *(product[2] if len(product) > 3 else [])])


def call_text(name: str, shapes: tuple[int, int, int], extra: str = "") -> str:
    m, k, n = shapes
    return f"{name}({m}x{k}, {k}x{n}{extra})"


@dataclass
class Rule:
    """One rule of one part: probe calls before the tests, a verdict over every call after.

    Subclasses implement `probe` (make calls, then usually return `self.check(...)`) and `check`
    (a message when broken, else None). `checked` remembers what a rule has already timed, so a
    second `check` does not time it again.
    """
    part: str
    function: str
    checked: set = field(default_factory=set)

    def relevant(self, observations) -> list[remote.Observation]:
        """The observed calls of this rule's function that returned."""
        return [o for o in observations if o.name == self.function and o.outcome == "returned"]

    def probe(self, worker: remote.Worker, meter: speed.SpeedMeter) -> str | None:
        return self.check(worker, meter)

    def check(self, worker: remote.Worker, meter: speed.SpeedMeter) -> str | None:
        raise NotImplementedError
