"""Build the student release from the source notebook.

The instructor edits `source/<assignment>/<notebook>.py` (or the .ipynb; jupytext keeps them
paired). `release` checks that the pair agrees, runs nbgrader's generate_assignment, which also
records the assignment's cells in the gradebook, and removes the jupytext pairing from the student
copy. (The bundled demo download is made from the release: `make release` rebuilds it too.)
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nbformat

from .course import Course, CourseError
from .gradebook import open_gradebook


class PairingError(CourseError):
    """The jupytext pair (.py and .ipynb) of the source notebook says different things."""


def _comparable(nb: nbformat.NotebookNode) -> list[tuple]:
    return [(c.cell_type, c.source.strip(), c.metadata.get("nbgrader")) for c in nb.cells]


def check_pairing(course: Course) -> None:
    """Raise PairingError unless source .py and .ipynb hold the same cells."""
    import jupytext

    py_path = course.source_notebook.with_suffix(".py")
    if not course.source_notebook.is_file():
        raise CourseError(f"no source notebook at {course.source_notebook}")
    if not py_path.is_file():
        return
    from_py = jupytext.read(py_path)
    from_ipynb = nbformat.read(course.source_notebook, as_version=4)
    a, b = _comparable(from_py), _comparable(from_ipynb)
    if a != b:
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        raise PairingError(
            f"{py_path.name} and {course.source_notebook.name} differ (first at cell {first + 1}; "
            f"{len(a)} vs {len(b)} cells). Run `jupytext --sync {py_path}` (the newer file wins) "
            f"or `python -m autograder release --sync`.")


def sync_pair(course: Course) -> None:
    from jupytext.cli import jupytext as jupytext_cli

    jupytext_cli(["--sync", "--quiet", str(course.source_notebook.with_suffix(".py"))])


def _strip_pairing(notebook: Path) -> None:
    """Students should not get a jupytext pairing: their Jupyter would start writing .py files."""
    nb = nbformat.read(notebook, as_version=4)
    if nb.metadata.pop("jupytext", None) is not None:
        nbformat.write(nb, notebook)


def generate(course: Course, release_root: Path | None = None, gradebook: Path | None = None) -> Path:
    """Run generate_assignment; write into `release_root` (default: the course's release/).

    The gradebook (`gradebook`, default the course's) learns the assignment's cells, which
    autograding needs: a check passes a scratch one, so that it changes no test `grade` uses.
    """
    args = ["generate_assignment", course.assignment, "--force"]
    if release_root is not None:
        args.append(f"--CourseDirectory.release_directory={release_root}")
    if gradebook is not None:
        args.append(f"--CourseDirectory.db_url=sqlite:///{gradebook}")
    course.nbgrader(*args)
    out = (release_root or course.root / "release") / course.assignment
    for notebook in out.glob("*.ipynb"):
        _strip_pairing(notebook)
    return out


def ensure_gradebook(course: Course) -> None:
    """Make sure the gradebook knows the assignment (a fresh clone has no gradebook.db).

    generate_assignment is what records the cells; it writes into a scratch folder so that the
    committed release/ is left exactly as it is.
    """
    from nbgrader.api import MissingEntry

    with open_gradebook(course) as gb:
        try:
            assignment = gb.find_assignment(course.assignment)
            if assignment.notebooks:
                return
        except MissingEntry:
            pass
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        generate(course, Path(scratch))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sync", action="store_true",
                        help="first bring the notebook's .py and .ipynb in line (jupytext --sync)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing (neither release/ nor the gradebook): exit 1 if "
                             "release/ differs from a fresh build")


def run(args: argparse.Namespace) -> int:
    course: Course = args.course
    if args.sync:
        sync_pair(course)
    check_pairing(course)
    if args.check:
        # Everything in a scratch folder, the gradebook too: a check must not deploy the tests.
        with tempfile.TemporaryDirectory(prefix="release-") as scratch:
            fresh = generate(course, Path(scratch) / "release", Path(scratch) / "gradebook.db")
            stale = differing_files(fresh, course.release_dir)
        if stale:
            print("release/ is out of date: " + ", ".join(stale) +
                  "\nrun `python -m autograder release` and commit release/")
            return 1
        print("release/ is up to date")
        return 0
    out = generate(course)
    print(f"wrote {out.relative_to(course.root)}/ "
          f"({', '.join(sorted(p.name for p in out.iterdir()))})")
    return 0


def differing_files(a: Path, b: Path) -> list[str]:
    """Relative paths that are missing from one tree or differ in content."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()} if b.is_dir() else set()
    return sorted(str(p) for p in files_a ^ files_b) + sorted(
        str(p) for p in files_a & files_b if (a / p).read_bytes() != (b / p).read_bytes())
