"""What the engine knows of one assignment, read from the assignment's own `grading.py`.

An assignment is a folder `source/<name>/` holding its notebook (nbgrader's source version, paired
with a jupytext `.py`) and `grading.py`, which defines `ASSIGNMENT = Assignment(...)`: the titles of
its parts and timing tests, its leaderboard, the rules its submissions must keep beyond right
answers, the speed profile feedback shows, and the like. Everything specific to an assignment lives
there; the engine (`autograder/`) names none. A folder without `grading.py` is graded with the
defaults below (parts titled by their grade-id prefix, no rules, no leaderboard).

This module is data only: it imports no stage, and nothing of nbgrader.
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_FILE = "grading.py"


@dataclass(frozen=True)
class Leaderboard:
    """A timing test's figure, ranked lowest first among students who passed `requires`."""
    timing: str                 # the timing line ([timing] NAME: ...) whose figure ranks
    title: str                  # how Gradescope and the report name it
    axis: str                   # what the figure is, in words ("times slower than NumPy at ...")
    requires: str               # the test a student must pass to be ranked
    measured: tuple[str, str]   # (function, reference) of that measurement in the speed records
    also: str = ""              # another timing shown beside it in the report
    also_title: str = ""


@dataclass(frozen=True)
class SlowVariant:
    """For `calibrate`: make `function` (in implementation cell `cell`) slower; `test` must fail.

    Without `code` the variant repeats the reference's work (`calibrate --factor` times); with
    it, `code` is appended to the reference answer of `cell` (it redefines `function` in a slower
    style a student might write) and `label` names the variant.
    """
    test: str
    cell: str
    function: str
    code: str = ""
    label: str = ""


@dataclass(frozen=True)
class DemoStudent:
    """One submission of the bundled demo download: who, and which parts it answered."""
    sortable_name: str
    user_id: str
    parts: tuple[str, ...]
    late: bool = False


@dataclass(frozen=True)
class Assignment:
    name: str
    title: str = ""
    notebook: str = ""                          # default: <name>.ipynb
    short_title: str = ""                       # e.g. the default Canvas grade column
    setup_cell: str = "setup"                   # the given code that test cells rely on
    parts: dict[str, str] = field(default_factory=dict)        # grade-id prefix -> title
    timing_titles: dict[str, str] = field(default_factory=dict)
    leaderboard: Leaderboard | None = None
    rules: Callable[[], list] = list            # fresh rules (trusted.rules.Rule) per submission
    profile: Any = None                         # trusted.profile.ProfileSpec, or None
    explain: Callable[[Any], list[str]] | None = None   # Performance -> sentences for students
    dispatch_log: str = ""                      # object whose `dispatch` `dispatched_ops` records
    calibration: tuple[SlowVariant, ...] = ()
    demo: tuple[DemoStudent, ...] = ()
    packages: tuple[str, ...] = ()              # what the notebook's given code imports
    # ... of which the tests never use these: the student's worker imports them at first use
    deferred_imports: tuple[str, ...] = ()

    @property
    def notebook_file(self) -> str:
        return self.notebook or f"{self.name}.ipynb"

    @property
    def display_title(self) -> str:
        return self.title or self.name

    @property
    def column_title(self) -> str:
        return self.short_title or self.display_title

    def part_title(self, part: str) -> str:
        return self.parts.get(part, part)


_loaded: dict[Path, Assignment] = {}


def load(folder: Path, name: str | None = None) -> Assignment:
    """The assignment defined in `folder/grading.py` (cached), or the defaults for `name`."""
    folder = Path(folder).resolve()
    path = folder / SPEC_FILE
    if not path.is_file():
        return Assignment(name or folder.name)
    if path not in _loaded:
        module_name = f"_autograder_assignment_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module     # dataclasses and pickling look modules up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        assignment = getattr(module, "ASSIGNMENT", None)
        if not isinstance(assignment, Assignment):
            raise TypeError(f"{path} must define ASSIGNMENT = autograder.assignment.Assignment(...)")
        _loaded[path] = assignment
    return _loaded[path]
