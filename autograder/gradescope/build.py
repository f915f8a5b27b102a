"""Build the Gradescope autograder: one zip that grades the assignment on Gradescope's fleet.

Gradescope builds a container image from the zip of a programming assignment: it unpacks it into
/autograder/source and runs setup.sh there once. For each submission it puts the student's files in
/autograder/submission, runs run_autograder and reads /autograder/results/results.json.

The zip holds, at its root: setup.sh (installs a Python recent enough for the pinned packages if
the image lacks one, and the pinned requirements.txt into a venv next to it); run_autograder (runs
`python3 -m autograder.gradescope.run`, which grades with the same code as `grade`);
requirements.txt (the packages grading needs, at requirements.lock's versions); the modules of
this package that grading in the container needs (`RUNTIME`: nothing of nbgrader); and grading/,
with the grading template (the release notebook with the test cells' full sources, hidden tests
included, put back from source/), the assignment's grading.py, and config.json (time budget,
per-call limit, and what the bundle was built from). The two scripts are templates of this
package (`templates/`).

No solution and no rubric: the template is made from the student release, and the build refuses
to write a zip in which any line of a solution region appears.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import nbformat

from .. import notebook
from ..assignment import SPEC_FILE
from ..course import REPO_ROOT, Course, CourseError
from ..files import write_atomic
from .run import CONFIG_FILE, DEFAULT_BUDGET, DEFAULT_TIME_LIMIT, TEMPLATE_DIR

PACKAGE_DIR = Path(__file__).resolve().parents[1]       # the `autograder` package
# What grading in the container imports: the runtime, the trusted runner and what they use.
RUNTIME = ("__init__.py", "assignment.py", "ceilings.py", "files.py", "machine.py", "notebook.py",
           "outcomes.py", "performance.py", "phases.py", "sandbox.py", "timing", "trusted", "uids.py",
           "gradescope/__init__.py", "gradescope/notebook.py", "gradescope/results.py",
           "gradescope/run.py")
# What the runtime imports from PyPI; the assignment adds what its notebook's given code imports.
ENGINE_PACKAGES = ("numpy", "threadpoolctl", "nbformat", "archspec")
PYTHON_VERSIONS = ((3, 10), (3, 11), (3, 12), (3, 13), (3, 14))
MIN_SECRET_LINE = 16         # shorter solution lines ("return c") are too common to mean a leak
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def script(name: str, **values: str) -> bytes:
    """A script of templates/, with its @NAME@ placeholders filled in."""
    text = resources.files(__package__).joinpath("templates", name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text.encode()


@dataclass
class Bundle:
    files: dict[str, tuple[bytes, int]]      # zip path -> (content, unix mode)
    points: float
    hidden_cells: list[str]
    requirements: list[str]


def grading_template(course: Course) -> nbformat.NotebookNode:
    """The release notebook with every test cell's full source (hidden tests included) put back.

    Raises CourseError when release/ is not what source/ makes (rebuild it first): a test cell
    that differs once its hidden tests are removed, a cell missing on either side, other points.
    """
    release_path = course.release_notebook
    if not release_path.is_file():
        raise CourseError(f"no release at {release_path}: run `python -m autograder release`")
    source = nbformat.read(course.source_notebook, as_version=4)
    template = nbformat.read(release_path, as_version=4)
    originals = {notebook.grade_id(c): c for c in source.cells if notebook.grade_id(c)}
    problems, seen = [], set()
    for cell in template.cells:
        grade_id = notebook.grade_id(cell)
        if not grade_id:
            continue
        seen.add(grade_id)
        original = originals.get(grade_id)
        if original is None:
            problems.append(f"{grade_id} is in release/ but not in source/")
        elif notebook.is_test_cell(original):
            released = notebook.strip_region(original.source, notebook.HIDDEN_TESTS)
            if released.strip() != cell.source.strip():
                problems.append(f"test cell {grade_id} differs")
            elif notebook.points(original) != notebook.points(cell):
                problems.append(f"test cell {grade_id} has other points")
            cell.source = original.source
        elif grade_id == course.spec.setup_cell and original.source != cell.source:
            problems.append("the setup cell differs")
    problems += [f"{grade_id} is in source/ but not in release/"
                 for grade_id, cell in originals.items()
                 if grade_id not in seen and notebook.nbgrader(cell).get("grade")]
    if problems:
        raise CourseError("release/ is out of date with source/ (" + "; ".join(problems[:5]) +
                          "): run `python -m autograder release` first")
    template.metadata.pop("jupytext", None)
    for cell in template.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return template


def solution_lines(source: nbformat.NotebookNode) -> set[str]:
    """Lines only the instructor's solutions hold: solution regions, and whole answer cells.

    A line that also occurs outside every solution (in a test, say) is no secret; very short ones
    are left out as they occur anywhere.
    """
    regions = notebook.region_lines(source, notebook.SOLUTION, MIN_SECRET_LINE)
    public = {notebook.distinctive(line) for cell in source.cells
              for line in cell.source.splitlines() if not notebook.is_answer_cell(cell)}
    answers = {notebook.distinctive(line) for cell in source.cells
               if notebook.is_answer_cell(cell) and notebook.SOLUTION[0] not in cell.source
               for line in cell.source.splitlines()}
    return regions | {line for line in answers - public if len(line) >= MIN_SECRET_LINE}


def _strings(value) -> list[str]:
    """Every string in a JSON document (a notebook's sources and outputs, say)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def file_lines(name: str, data: bytes) -> set[str]:
    """The lines of a file as a reader sees them: JSON files by their decoded strings."""
    text = data.decode("utf-8", errors="replace")
    if name.endswith((".ipynb", ".json")):
        text = "\n".join(_strings(json.loads(text)))
    return {notebook.distinctive(line) for line in text.splitlines()}


def leaked_lines(files: dict[str, tuple[bytes, int]], secrets: set[str]) -> dict[str, list[str]]:
    """zip path -> the solution lines found in that file."""
    found = {}
    for name, (data, _) in files.items():
        hits = sorted(secrets & file_lines(name, data))
        if hits:
            found[name] = hits
    return found


def _lock_pins(lock: Path) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def pinned_requirements(lock: Path, packages=ENGINE_PACKAGES) -> list[str]:
    """`name==version` for `packages` and everything they depend on, at requirements.lock's pins.

    The dependencies are read from the installed distributions (this venv is built from the lock).
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _lock_pins(lock)
    todo, found = [canonicalize_name(p) for p in packages], {}
    while todo:
        name = todo.pop()
        if name in found:
            continue
        if name not in pins:
            raise CourseError(f"{name} is needed in the Gradescope container but not pinned in "
                              f"{lock.name}")
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            raise CourseError(f"{name} is not installed: run `make` to set up the venv") from None
        found[name] = pins[name]
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return [f"{name}=={version}" for name, version in sorted(found.items())]


def minimum_python(requirements: list[str]) -> tuple[int, int]:
    """The oldest Python (major, minor) that every pinned package supports."""
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    specs = [SpecifierSet(metadata.distribution(r.split("==")[0]).metadata.get("Requires-Python")
                          or "") for r in requirements]
    for version in PYTHON_VERSIONS:
        if all(spec.contains(".".join(map(str, version)) + ".0") for spec in specs):
            return version
    raise CourseError("no Python version satisfies every pinned package")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runtime_files() -> dict[str, tuple[bytes, int]]:
    """zip path -> (content, mode) of the package modules grading in the container needs."""
    found = {}
    for entry in RUNTIME:
        top = PACKAGE_DIR / entry
        for path in sorted(top.rglob("*.py")) if top.is_dir() else [top]:
            if "__pycache__" not in path.parts:
                name = f"autograder/{path.relative_to(PACKAGE_DIR).as_posix()}"
                found[name] = (path.read_bytes(), 0o644)
    return found


def build(course: Course, budget: float = DEFAULT_BUDGET,
          time_limit: float = DEFAULT_TIME_LIMIT) -> Bundle:
    """Everything that goes into the zip, checked: no solution line anywhere."""
    spec = course.spec
    template = grading_template(course)
    packages = tuple(dict.fromkeys((*ENGINE_PACKAGES, *spec.packages)))
    requirements = pinned_requirements(REPO_ROOT / "requirements.lock", packages)
    major, minor = minimum_python(requirements)
    graded = [c for c in template.cells if notebook.is_test_cell(c)]
    config = {
        "assignment": course.assignment,
        "notebook": course.notebook,
        "points": sum(notebook.points(c) for c in graded),
        "budget_seconds": budget,
        "time_limit_seconds": time_limit,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_sha256": _sha256(course.source_notebook),
        "release_sha256": _sha256(course.release_notebook),
    }
    files: dict[str, tuple[bytes, int]] = {
        "setup.sh": (script("setup.sh", PYTHON=f"{major}.{minor}", MAJOR=str(major),
                            MINOR=str(minor), IMPORTS=", ".join(packages)), 0o755),
        "run_autograder": (script("run_autograder"), 0o755),
        "requirements.txt": (("\n".join(requirements) + "\n").encode(), 0o644),
        f"{TEMPLATE_DIR}/{course.notebook}": (nbformat.writes(template).encode(), 0o600),
        f"{TEMPLATE_DIR}/{CONFIG_FILE}": (json.dumps(config, indent=2).encode(), 0o600),
        **runtime_files(),
    }
    spec_file = course.source_dir / SPEC_FILE
    if spec_file.is_file():
        files[f"{TEMPLATE_DIR}/{SPEC_FILE}"] = (spec_file.read_bytes(), 0o600)
    leaks = leaked_lines(files, solution_lines(nbformat.read(course.source_notebook, as_version=4)))
    if leaks:
        name, lines = next(iter(leaks.items()))
        raise CourseError(f"refusing to build: {name} holds solution lines, e.g. {lines[0]!r}")
    hidden = [notebook.grade_id(c) for c in graded if notebook.HIDDEN_TESTS[0] in c.source]
    return Bundle(files, config["points"], hidden, requirements)


def write_zip(bundle: Bundle, output: Path) -> Path:
    """Write the zip (files at its root, fixed timestamps, unix modes kept) as a whole."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (data, mode) in sorted(bundle.files.items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return write_atomic(output.resolve(), buffer.getvalue(), make_folder=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE.zip", default=None,
                        help="where to write the zip (default: build/gradescope-<assignment>.zip "
                             "in the course root)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, metavar="SECONDS",
                        help="seconds one submission may take before the watchdog writes the "
                             "results it has; keep it under Gradescope's timeout (default: "
                             "%(default)g, for Gradescope's default 10 minutes)")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                        help="seconds one call of student code from a test may run "
                             "(default: %(default)g, as in grading)")


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    from ..release import check_pairing

    check_pairing(course)
    bundle = build(course, args.budget, args.time_limit)
    output = Path(args.output) if args.output else \
        course.root / "build" / f"gradescope-{course.assignment}.zip"
    path = write_zip(bundle, output)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {len(bundle.files)} files): "
          f"{bundle.points:g} autograded points; hidden tests in {len(bundle.hidden_cells)} of the "
          f"test cells, shown after the due date; {len(bundle.requirements)} pinned packages")
    print("Upload it as the autograder of a Gradescope programming assignment (README: Grading "
          "on Gradescope).")
    return 0
