"""Build the Gradescope autograder: one zip that grades the assignment on Gradescope's fleet.

Gradescope builds a container image from the zip of a programming assignment: it unpacks it into
/autograder/source and runs setup.sh there once. For each submission it puts the student's files in
/autograder/submission, runs run_autograder and reads /autograder/results/results.json.

The zip holds, at its root: setup.sh (installs a Python of at least 3.11 if the image lacks one, and
the pinned requirements.txt into a venv next to it); run_autograder (runs `python3 -m
autograder.gradescope_run`, which grades with the same code as `grade`); requirements.txt (the
packages grading needs, at requirements.lock's versions); the source files of this package; and
grading/, with the grading template (the release notebook with the test cells' full sources,
hidden tests included, put back from source/) and config.json (time budget, per-call limit, and
what the bundle was built from).

No solution and no rubric: the template is made from the student release, and the build refuses
to write a zip in which any line of a solution region appears.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from .course import NOTEBOOK, REPO_ROOT, Course, CourseError
from .release import distinctive, region_lines

TEMPLATE_DIR = "grading"
CONFIG_FILE = "config.json"
DEFAULT_BUDGET = 540.0       # seconds for one submission; Gradescope stops a run at 10 minutes
DEFAULT_TIME_LIMIT = 60.0    # seconds one call of student code may take, as in `grade`
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
PACKAGE_DIR = Path(__file__).resolve().parent
# What grading imports in the container: the runner and worker, the setup cell, reading notebooks.
CONTAINER_PACKAGES = ("numpy", "threadpoolctl", "nbformat", "matplotlib")
PYTHON_VERSIONS = ((3, 10), (3, 11), (3, 12), (3, 13), (3, 14))
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
MIN_SECRET_LINE = 16         # shorter solution lines ("return c") are too common to mean a leak
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (the zip is unpacked in
# /autograder/source). It makes a venv next to this file with a Python of at least {python} and
# the pinned packages of requirements.txt; run_autograder runs the grader with that venv.
set -euo pipefail
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive

recent_enough() {{
    "$1" -c 'import sys; sys.exit(sys.version_info[:2] < ({major}, {minor}))' 2>/dev/null
}}

python=""
for candidate in python3 python3.14 python3.13 python3.12 python3.{minor}; do
    if command -v "$candidate" >/dev/null && recent_enough "$candidate"; then
        python="$(command -v "$candidate")"
        break
    fi
done

apt-get update -qq
if [ -z "$python" ]; then
    apt-get install -y -qq "python{python}" "python{python}-venv"
    python="$(command -v "python{python}")"
else
    # Debian and Ubuntu ship venv's pip in a package of its own.
    minor="$("$python" -c 'import sys; print(sys.version_info[1])')"
    apt-get install -y -qq "python3.$minor-venv" || true
fi
# Optional: where the container allows namespaces, student code then runs in the sandbox.
apt-get install -y -qq bubblewrap || true

"$python" -m venv "$here/venv"
"$here/venv/bin/python" -m pip install --quiet --no-cache-dir -r "$here/requirements.txt"
"$here/venv/bin/python" -c "import matplotlib, nbformat, numpy, threadpoolctl"

# Student code may run as an unprivileged user: it may read the grader's code and Python, never
# the grading template with the hidden tests.
chmod -R a+rX "$here/autograder" "$here/venv"
chmod -R go-rwx "$here/grading"
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, in /autograder: the student's files are in
# submission/, and results/results.json must exist when it ends. AUTOGRADER_ROOT moves the root
# (the tests lay out Gradescope's tree in a temporary folder).
set -uo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
source_dir="$root/source"
results="$root/results/results.json"
mkdir -p "$root/results"
rm -f "$results"
chmod -R go-rwx "$source_dir/grading" 2>/dev/null || true
if [ -x "$source_dir/venv/bin/python3" ]; then
    PATH="$source_dir/venv/bin:$PATH"
fi
export AUTOGRADER_ROOT="$root" PYTHONPATH="$source_dir" PYTHONDONTWRITEBYTECODE=1 \\
    MPLBACKEND=Agg OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if cd "$source_dir"; then
    python3 -m autograder.gradescope_run
    status=$?
else
    status=127
fi
if [ "$status" -ne 0 ] || [ ! -s "$results" ]; then
    # gradescope_run writes results.json whatever the submission does: getting here means the
    # grader could not start, or was killed. Gradescope still needs valid JSON.
    cat > "$results" <<'JSON'
{
  "score": 0.0,
  "output": "The autograder could not run: please tell the course staff.",
  "output_format": "text",
  "stdout_visibility": "hidden"
}
JSON
    echo "run_autograder: gradescope_run exited with status $status" >&2
fi
exit 0
"""


@dataclass
class Bundle:
    files: dict[str, tuple[bytes, int]]      # zip path -> (content, unix mode)
    points: float
    hidden_cells: list[str]
    requirements: list[str]


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def has_hidden_tests(source: str) -> bool:
    return HIDDEN_BEGIN in source


def strip_hidden_tests(source: str) -> str:
    """The cell as nbgrader releases it: every hidden-tests region removed, markers included."""
    kept, inside = [], False
    for line in source.splitlines(keepends=True):
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def _grade_id(cell) -> str:
    return str(_nbgrader(cell).get("grade_id", ""))


def grading_template(course: Course) -> nbformat.NotebookNode:
    """The release notebook with every test cell's full source (hidden tests included) put back.

    Raises CourseError when release/ is not what source/ makes (rebuild it first): a test cell
    that differs once its hidden tests are removed, a cell missing on either side, other points.
    """
    from .trusted import runner

    release_path = course.release_dir / NOTEBOOK
    if not release_path.is_file():
        raise CourseError(f"no release at {release_path}: run `python -m autograder release`")
    source = nbformat.read(course.source_notebook, as_version=4)
    template = nbformat.read(release_path, as_version=4)
    originals = {_grade_id(c): c for c in source.cells if _grade_id(c)}
    problems, seen = [], set()
    for cell in template.cells:
        grade_id = _grade_id(cell)
        if not grade_id:
            continue
        seen.add(grade_id)
        original = originals.get(grade_id)
        if original is None:
            problems.append(f"{grade_id} is in release/ but not in source/")
        elif runner.is_test_cell(original):
            if strip_hidden_tests(original.source).strip() != cell.source.strip():
                problems.append(f"test cell {grade_id} differs")
            elif _nbgrader(original).get("points") != _nbgrader(cell).get("points"):
                problems.append(f"test cell {grade_id} has other points")
            cell.source = original.source
        elif grade_id == runner.SETUP_CELL and original.source != cell.source:
            problems.append("the setup cell differs")
    problems += [f"{grade_id} is in source/ but not in release/"
                 for grade_id, cell in originals.items()
                 if grade_id not in seen and _nbgrader(cell).get("grade")]
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
    regions = region_lines(source, SOLUTION_BEGIN, SOLUTION_END, MIN_SECRET_LINE)
    public = {distinctive(line) for cell in source.cells for line in cell.source.splitlines()
              if not _nbgrader(cell).get("solution")}
    answers = {distinctive(line) for cell in source.cells if _nbgrader(cell).get("solution")
               and SOLUTION_BEGIN not in cell.source for line in cell.source.splitlines()}
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
    return {distinctive(line) for line in text.splitlines()}


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


def pinned_requirements(lock: Path, packages=CONTAINER_PACKAGES) -> list[str]:
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


def build(course: Course, budget: float = DEFAULT_BUDGET,
          time_limit: float = DEFAULT_TIME_LIMIT) -> Bundle:
    """Everything that goes into the zip, checked: no solution line anywhere."""
    from .trusted import runner

    template = grading_template(course)
    requirements = pinned_requirements(REPO_ROOT / "requirements.lock")
    major, minor = minimum_python(requirements)
    graded = [c for c in template.cells if runner.is_test_cell(c)]
    config = {
        "assignment": course.assignment,
        "notebook": NOTEBOOK,
        "points": sum(float(_nbgrader(c).get("points", 0)) for c in graded),
        "budget_seconds": budget,
        "time_limit_seconds": time_limit,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_sha256": _sha256(course.source_notebook),
        "release_sha256": _sha256(course.release_dir / NOTEBOOK),
    }
    files: dict[str, tuple[bytes, int]] = {
        "setup.sh": (SETUP_SH.format(python=f"{major}.{minor}", major=major,
                                     minor=minor).encode(), 0o755),
        "run_autograder": (RUN_AUTOGRADER.encode(), 0o755),
        "requirements.txt": (("\n".join(requirements) + "\n").encode(), 0o644),
        f"{TEMPLATE_DIR}/{NOTEBOOK}": (nbformat.writes(template).encode(), 0o600),
        f"{TEMPLATE_DIR}/{CONFIG_FILE}": (json.dumps(config, indent=2).encode(), 0o600),
    }
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files[f"autograder/{path.relative_to(PACKAGE_DIR).as_posix()}"] = (path.read_bytes(),
                                                                               0o644)
    leaks = leaked_lines(files, solution_lines(nbformat.read(course.source_notebook, as_version=4)))
    if leaks:
        name, lines = next(iter(leaks.items()))
        raise CourseError(f"refusing to build: {name} holds solution lines, e.g. {lines[0]!r}")
    return Bundle(files, config["points"],
                  [_grade_id(c) for c in graded if has_hidden_tests(c.source)],
                  requirements)


def write_zip(bundle: Bundle, output: Path) -> Path:
    """Write the zip (files at its root, fixed timestamps, unix modes kept) atomically."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (data, mode) in sorted(bundle.files.items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    os.replace(tmp, output)
    return output


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
    from .release import check_pairing

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
