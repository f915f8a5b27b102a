"""`gradescope`: the autograder zip, and run_autograder run on it as Gradescope runs it.

The end-to-end tests lay the zip out as Gradescope does (source/, run_autograder, submission/,
results/ under one root), run `bash run_autograder` with AUTOGRADER_ROOT pointing there and this
venv's python first on PATH (setup.sh, which would pip install, is only checked), and read
results.json.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import notebook
from autograder.gradescope import build as gradescope
from autograder.gradescope import notebook as gs_notebook
from autograder.gradescope import run as gradescope_run
from autograder.course import REPO_ROOT, Course, CourseError
from autograder.submissions import reference_answers
from autograder.trusted import launch, runner
from tests import unprivileged
from tests.adversarial import cases as hostile
from tests.conftest import submission

TOP_LEVEL = {"setup.sh", "run_autograder", "requirements.txt", "autograder", "grading"}
TEMPLATE = "grading/acceleration.ipynb"
POINTS = {"naive_correct": 10, "naive_errors": 5, "blocked_correct": 12, "footprint_values": 8,
          "blocked_speed": 10, "numpy_correct": 3, "numpy_speed": 2, "backend_dispatch": 10,
          "backend_speed": 5, "models_workloads": 15}


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def _normal(line: str) -> str:
    return line.strip().lstrip("#- ").strip()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The zip, built by the command line as an instructor builds it."""
    out = tmp_path_factory.mktemp("bundle") / "acceleration-autograder.zip"
    proc = subprocess.run([sys.executable, "-m", "autograder", "gradescope", "-o", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "80 autograded points" in proc.stdout
    return out


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()
                if not info.is_dir()}


def _lay_out(bundle: Path, root: Path) -> Path:
    """Gradescope's tree under `root`/autograder: source/ unzipped (modes kept), run_autograder."""
    home = root / "autograder"
    source = home / "source"
    source.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, source))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode)
    shutil.copy2(source / "run_autograder", home / "run_autograder")
    (home / "submission").mkdir()
    return home


def _environment(**extra) -> dict:
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "python3").exists(), f"no python3 next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOGRADER_", "PYTHON"))}
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    env.update(extra)
    return env


def run_autograder(home: Path, notebook=None, name="acceleration.ipynb", **env):
    """Put `notebook` (a NotebookNode, raw bytes, or None) in submission/, run run_autograder.

    Returns (results.json as a dict, the grader's stdout).
    """
    shutil.rmtree(home / "submission")
    (home / "submission").mkdir()
    shutil.rmtree(home / "results", ignore_errors=True)
    if isinstance(notebook, bytes):
        (home / "submission" / name).write_bytes(notebook)
    elif notebook is not None:
        nbformat.write(notebook, home / "submission" / name)
    proc = subprocess.run(["bash", str(home / "run_autograder")], cwd=home, capture_output=True,
                          text=True, timeout=600,
                          env=_environment(AUTOGRADER_ROOT=str(home), **env))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((home / "results" / "results.json").read_text())
    return results, proc.stdout + proc.stderr


def scored(results: dict) -> dict[str, dict]:
    """grade id -> the scored test of that cell."""
    return {t["extra_data"]["grade_id"]: t for t in results["tests"] if "extra_data" in t}


def checks(results: dict) -> dict[str, dict]:
    """Names of the visible checks without points -> the check."""
    return {t["name"]: t for t in results["tests"] if "max_score" not in t}


def total(results: dict) -> float:
    return sum(t.get("score", 0) for t in results["tests"])


def assert_gradescope_format(results: dict) -> None:
    """The fields and values Gradescope's autograder specification allows, as used here."""
    visibilities = {"hidden", "after_due_date", "after_published", "visible"}
    formats = {"text", "html", "simple_format", "md", "ansi"}
    assert set(results) <= {"score", "execution_time", "output", "output_format",
                            "test_output_format", "test_name_format", "visibility",
                            "stdout_visibility", "extra_data", "tests", "leaderboard"}
    assert "tests" in results or "score" in results
    assert isinstance(results.get("execution_time", 0), int)
    assert results.get("stdout_visibility", "hidden") in visibilities
    for key in ("output_format", "test_output_format", "test_name_format"):
        assert results.get(key, "text") in formats
    for test in results.get("tests", []):
        assert set(test) <= {"score", "max_score", "status", "name", "name_format", "number",
                             "output", "output_format", "tags", "visibility", "extra_data"}
        assert test.get("visibility", "visible") in visibilities
        assert test.get("status", "passed") in {"passed", "failed"}
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        if "score" in test:
            assert 0 <= test["score"] <= test["max_score"]
    for entry in results.get("leaderboard", []):
        assert set(entry) <= {"name", "value", "order"} and entry.get("order", "desc") in {"asc",
                                                                                          "desc"}


# ------------------------------------------------------------------------------------------------
# The zip
# ------------------------------------------------------------------------------------------------
def test_zip_has_gradescope_files_at_its_root_and_no_tests(bundle):
    with zipfile.ZipFile(bundle) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    assert {name.split("/")[0] for name in infos} == TOP_LEVEL
    for script in ("setup.sh", "run_autograder"):
        assert (infos[script].external_attr >> 16) & 0o777 == 0o755
        assert infos[script].filename == script  # at the root, not in a folder
    assert stat.S_IMODE(infos[TEMPLATE].external_attr >> 16) == 0o600
    package = {name for name in infos if name.startswith("autograder/")}
    assert {"autograder/__init__.py", "autograder/gradescope/run.py",
            "autograder/trusted/runner.py", "autograder/trusted/worker.py"} <= package
    assert all(name.endswith(".py") and "__pycache__" not in name for name in package)
    assert not any(name.startswith("tests/") or "/test_" in name for name in infos)


def test_the_zip_holds_every_module_the_runtime_imports_and_no_stage():
    import grimp

    graph = grimp.build_graph("autograder")
    needed = graph.find_upstream_modules("autograder.gradescope.run") | {
        "autograder.gradescope.run", "autograder.trusted.worker"}   # the worker runs as a module
    shipped = {name[:-len(".py")].replace("/", ".").removesuffix(".__init__")
               for name in gradescope.runtime_files()}
    assert needed <= shipped, sorted(needed - shipped)
    assert not {"autograder.grade", "autograder.results", "autograder.feedback",
                "autograder.gradebook", "autograder.preprocessors.trusted_tests"} & shipped


def test_scripts_are_valid_bash(bundle, tmp_path):
    members = _members(bundle)
    for script in ("setup.sh", "run_autograder"):
        (tmp_path / script).write_bytes(members[script])
        proc = subprocess.run(["bash", "-n", str(tmp_path / script)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
        assert members[script].startswith(b"#!/usr/bin/env bash\n")
    setup = members["setup.sh"].decode()
    assert '-r "$here/requirements.txt"' in setup and "venv" in setup
    assert "python3.11" in setup  # numpy 2.4 and matplotlib 3.11 need Python >= 3.11
    assert "python3 -m autograder.gradescope.run" in members["run_autograder"].decode()


def test_requirements_are_pinned_as_in_the_lock(bundle):
    lock = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = version
    pins = _members(bundle)["requirements.txt"].decode().split()
    assert pins and all(pin.count("==") == 1 for pin in pins)
    for pin in pins:
        name, version = pin.split("==")
        assert lock.get(name.lower().replace("_", "-")) == version, pin
    names = {pin.split("==")[0] for pin in pins}
    assert {"numpy", "threadpoolctl", "nbformat", "matplotlib"} <= names
    assert "nbgrader" not in names and "jupyter" not in names


def test_template_is_the_release_with_the_hidden_tests_put_back(bundle):
    template = nbformat.reads(_members(bundle)[TEMPLATE].decode(), as_version=4)
    course = Course.at(REPO_ROOT)
    source = {_grade_id(c): c for c in nbformat.read(course.source_notebook, 4).cells}
    release = {_grade_id(c): c for c in nbformat.read(course.release_dir / "acceleration.ipynb",
                                                      4).cells}
    tests = {_grade_id(c): c for c in template.cells if notebook.is_test_cell(c)}
    assert {g: c.metadata.nbgrader.points for g, c in tests.items()} == POINTS
    for grade_id, cell in tests.items():
        assert cell.source == source[grade_id].source
        assert "### BEGIN HIDDEN TESTS" in cell.source
    for cell in template.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            assert cell.source == release[_grade_id(cell)].source, _grade_id(cell)
    text = "\n".join(c.source for c in template.cells)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN MARK SCHEME" not in text
    assert "jupytext" not in template.metadata


def _solution_lines() -> set[str]:
    """Lines only in solution regions (or whole answer cells) of the source notebook."""
    inside, outside = [], []
    for cell in nbformat.read(Course.at(REPO_ROOT).source_notebook, 4).cells:
        lines = cell.source.splitlines()
        if cell.metadata.get("nbgrader", {}).get("solution") and not any(
                "### BEGIN SOLUTION" in line for line in lines):
            inside += lines
            continue
        within = False
        for line in lines:
            if "### BEGIN SOLUTION" in line:
                within = True
            elif "### END SOLUTION" in line:
                within = False
            else:
                (inside if within else outside).append(line)
    public = {_normal(line) for line in outside}
    return {_normal(line) for line in inside if len(_normal(line)) >= 16} - public


def _readable_lines(name: str, data: bytes) -> set[str]:
    text = data.decode("utf-8", errors="replace")
    if name.endswith((".ipynb", ".json")):
        def strings(value):
            if isinstance(value, str):
                yield value
            elif isinstance(value, (list, dict)):
                for item in (value.values() if isinstance(value, dict) else value):
                    yield from strings(item)
        text = "\n".join(strings(json.loads(text)))
    return {_normal(line) for line in text.splitlines()}


def test_no_line_of_any_solution_is_in_the_zip(bundle):
    secret = _solution_lines()
    assert len(secret) >= 20, "expected solution regions and model answers in the source"
    for name, data in _members(bundle).items():
        leaked = sorted(secret & _readable_lines(name, data))
        assert leaked == [], f"{name} holds solution lines: {leaked[:3]}"


def test_a_stale_release_is_refused(course):
    nb = nbformat.read(course.source_notebook, 4)
    cell = next(c for c in nb.cells if _grade_id(c) == "naive_correct")
    cell.source = cell.source.replace("A non-square product.", "A non-square product (3x4).")
    nbformat.write(nb, course.source_notebook)
    with pytest.raises(CourseError, match="release/ is out of date.*naive_correct"):
        gradescope.build(course)


def test_a_solution_in_the_release_is_refused(course):
    path = course.release_dir / "acceleration.ipynb"
    nb = nbformat.read(path, 4)
    cell = next(c for c in nb.cells if _grade_id(c) == "blocked_impl")
    cell.source = reference_answers(course.source_notebook)["blocked_impl"]
    nbformat.write(nb, path)
    with pytest.raises(CourseError, match="solution lines"):
        gradescope.build(course)


# ------------------------------------------------------------------------------------------------
# Pieces of gradescope_run that need no worker
# ------------------------------------------------------------------------------------------------
def test_test_cells_split_at_their_hidden_tests():
    cell = "a = 1\nassert a\n\n### BEGIN HIDDEN TESTS\nassert a == 1\n### END HIDDEN TESTS\n"
    assert gs_notebook.split_hidden_tests(cell) == (
        "a = 1\nassert a\n\n", "### BEGIN HIDDEN TESTS\nassert a == 1\n### END HIDDEN TESTS\n")
    assert notebook.strip_region(cell, notebook.HIDDEN_TESTS) == "a = 1\nassert a\n\n"
    unsplittable = [
        "for i in range(2):\n    ### BEGIN HIDDEN TESTS\n    assert i < 2\n"
        "    ### END HIDDEN TESTS\n",
        "a = 1\n### BEGIN HIDDEN TESTS\nassert a\n### END HIDDEN TESTS\nassert a == 1\n",
        "### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS\n",
        "a = 1\n### BEGIN HIDDEN TESTS\nb = 1\n### END HIDDEN TESTS\n"
        "### BEGIN HIDDEN TESTS\nc = 1\n### END HIDDEN TESTS\n",
        "x = (1,\n### BEGIN HIDDEN TESTS\n2)\n### END HIDDEN TESTS\n",
    ]
    for source in unsplittable:
        assert gs_notebook.split_hidden_tests(source) is None, source
    # Every graded cell of the assignment splits, and its public part is what students have.
    course = Course.at(REPO_ROOT)
    release = {_grade_id(c): c.source for c in nbformat.read(course.release_dir /
                                                               "acceleration.ipynb", 4).cells}
    for cell in nbformat.read(course.source_notebook, 4).cells:
        if notebook.is_test_cell(cell):
            public, _ = gs_notebook.split_hidden_tests(cell.source)
            assert public.strip() == release[_grade_id(cell)].strip()


# The tests that run processes as uid 65534 (Gradescope's fallback user) live in this one file:
# the test processes take whole files, so these never run at the same time, and each one's
# one-process limit for that uid holds.
def test_without_bubblewrap_the_unprivileged_worker_cannot_fork_either():
    """The Gradescope fallback where bubblewrap cannot run: uid 65534 with the same rlimits."""
    program = ("from autograder.trusted import launch\n"
               "from tests.test_trusted_parts import _run_under\n"
               "launcher, how = launch.choose('unprivileged', log=lambda *a: None)\n"
               "print(how)\n"
               "print(_run_under(launcher))\n")
    env = {**os.environ, "PYTHONPATH": str(launch.PACKAGE_DIR.parent)}
    # The program imports this module and the package from the repository, uid 65534 the
    # package; the repository may sit in a folder closed to others (a clone in a home folder).
    readable = [launch.PACKAGE_DIR, Path(__file__).resolve().parent]
    proc = subprocess.run(unprivileged.command([sys.executable, "-c", program], readable), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    how, out = proc.stdout.splitlines()[:2]
    assert "unprivileged user 65534" in how
    assert out.count("refused") == 3, out


def test_the_container_worker_runs_unprivileged_with_the_worker_policy():
    policy = launch.worker_policy(memory_bytes=gradescope_run.WORKER_MEMORY)
    start = launch.container_launcher(policy, launch.NOBODY)
    report = ("import os, resource\n"
              "print(os.getuid(), os.getgid(), *os.getgroups())\n"
              "print(open('/proc/self/oom_score_adj').read().strip())\n"
              "print(resource.getrlimit(resource.RLIMIT_AS)[0])\n"
              "print(resource.getrlimit(resource.RLIMIT_NPROC)[0])\n"
              "print(os.getcwd())\n")
    # The system's python3: this venv's interpreter may sit where uid 65534 cannot go.
    proc = start(["/usr/bin/python3", "-c", report], {"PATH": "/usr/bin:/bin"}, ())
    out, _ = proc.communicate(timeout=30)
    ids, oom, memory, processes, workdir = out.decode().split("\n")[:5]
    assert (ids, oom, processes) == ("65534 65534", "1000", "1")   # no supplementary groups
    assert int(memory) == gradescope_run.WORKER_MEMORY
    assert Path(workdir).stat().st_uid == 65534
    shutil.rmtree(workdir)


def test_unreadable_submissions_get_zeros_and_a_reason(bundle, tmp_path, monkeypatch):
    home = _lay_out(bundle, tmp_path)
    monkeypatch.setenv("AUTOGRADER_ROOT", str(home))
    cases = {
        "invalid JSON": ({"acceleration.ipynb": b'{"cells": ['}, "could not be read as a Jupyter"),
        "not a notebook": ({"acceleration.ipynb": b"[1, 2]"}, "could not be read as a Jupyter"),
        "no notebook": ({"acceleration.py": b"print(1)\n"}, "no Jupyter notebook (.ipynb)"),
        "two notebooks": ({"a.ipynb": b"{}", "b.ipynb": b"{}"}, "several notebooks"),
        "nothing": ({}, "No files were received"),
    }
    for case, (files, reason) in cases.items():
        shutil.rmtree(home / "submission")
        (home / "submission").mkdir()
        for name, data in files.items():
            (home / "submission" / name).write_bytes(data)
        assert gradescope_run.main() == 0
        results = json.loads((home / "results" / "results.json").read_text())
        assert_gradescope_format(results)
        assert reason in results["output"], (case, results["output"])
        assert set(scored(results)) == set(POINTS) and total(results) == 0, case
        assert all(reason in t["output"] for t in scored(results).values()), case


def test_a_grader_failure_still_writes_results(bundle, tmp_path, monkeypatch, course):
    home = _lay_out(bundle, tmp_path)
    nbformat.write(submission(course), home / "submission" / "acceleration.ipynb")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setenv("AUTOGRADER_ROOT", str(home))
    monkeypatch.setenv("AUTOGRADER_LAUNCHER", "local")
    monkeypatch.setattr(runner, "run_tests", broken)
    assert gradescope_run.main() == 0
    results = json.loads((home / "results" / "results.json").read_text())
    assert_gradescope_format(results)
    assert "the autograder itself failed" in results["output"]
    assert "disk on fire" not in json.dumps(results)  # the traceback is for the staff only
    assert total(results) == 0 and len(scored(results)) == len(POINTS)


def test_run_autograder_writes_results_when_python_cannot_start(bundle, tmp_path):
    home = _lay_out(bundle, tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text("#!/bin/sh\nexit 3\n")
    (fake / "python3").chmod(0o755)
    proc = subprocess.run(["bash", str(home / "run_autograder")], capture_output=True, text=True,
                          env={"PATH": f"{fake}:/usr/bin:/bin", "AUTOGRADER_ROOT": str(home)})
    assert proc.returncode == 0 and "exited with status 3" in proc.stderr
    results = json.loads((home / "results" / "results.json").read_text())
    assert_gradescope_format(results)
    assert results["score"] == 0 and "could not run" in results["output"]


# ------------------------------------------------------------------------------------------------
# End to end, as Gradescope runs it
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gradescope_home(bundle, tmp_path_factory) -> Path:
    return _lay_out(bundle, tmp_path_factory.mktemp("gradescope"))


@pytest.fixture(scope="module")
def scratch_course(tmp_path_factory) -> Course:
    return Course.scaffold(tmp_path_factory.mktemp("course") / "course", Course.at(REPO_ROOT))


@pytest.mark.slow
def test_reference_scores_full_marks(gradescope_home, scratch_course):
    results, stdout = run_autograder(gradescope_home, submission(scratch_course))
    assert_gradescope_format(results)
    assert f"autograder package: {(gradescope_home / 'source' / 'autograder').resolve()}" in stdout
    tests = scored(results)
    assert {g: (t["score"], t["max_score"]) for g, t in tests.items()} == {
        g: (p, p) for g, p in POINTS.items()}
    assert all(t["visibility"] == "after_due_date" for t in tests.values())  # all hide tests
    assert all(t["output"].startswith("Passed.") for t in tests.values())
    visible = checks(results)
    assert len(visible) == len(POINTS)
    assert all(c["visibility"] == "visible" and c["status"] == "passed" for c in visible.values())
    assert "blocked_vs_numpy_256" in tests["blocked_speed"]["output"]
    (board,) = results["leaderboard"]
    assert board["name"] == "Blocked vs NumPy (lower is faster)" and board["order"] == "asc"
    assert 0 < board["value"] <= 10
    written = next(t for t in results["tests"] if t["name"].startswith("Written answers"))
    assert written["max_score"] == 0 and written["visibility"] == "visible"
    assert "graded by hand" in written["output"] and "empty" not in written["output"]
    profile = next(t for t in results["tests"] if t["name"].startswith("How close to the machine"))
    assert profile["max_score"] == 0 and profile["visibility"] == "visible"
    assert re.search(r"your matmul_blocked \(256x256\) +[0-9.]+ GFLOP/s +[0-9]+% of the "
                     r"attainable peak", profile["output"])
    assert re.search(r"theoretical peak +[0-9.]+ GFLOP/s", profile["output"])
    assert all(float(p) <= 100 for p in re.findall(r"([0-9.]+)%", profile["output"]))
    assert results["extra_data"]["ceilings"]["attainable_gflops"] > 0
    assert "Your tiles run at" in profile["output"]
    assert results["extra_data"]["machine"]["blas_threads"] == 1
    # The instructor's own notebook (solutions in place) is a reference too: extra cells ignored.
    instructor = nbformat.read(scratch_course.source_notebook, 4)
    results, _ = run_autograder(gradescope_home, instructor)
    assert total(results) == sum(POINTS.values())


@pytest.mark.slow
def test_blank_scores_zero_and_says_why(gradescope_home, scratch_course):
    results, _ = run_autograder(gradescope_home, submission(scratch_course, parts=()),
                                name="my work (1).ipynb")
    assert_gradescope_format(results)
    assert "Graded my work (1).ipynb" in results["output"]
    assert total(results) == 0 and "leaderboard" not in results
    for test in [*scored(results).values(), *checks(results).values()]:
        assert test["output"].startswith("Failed: "), test
        assert "not written yet" in test["output"], test
    written = next(t for t in results["tests"] if t["name"].startswith("Written answers"))
    assert written["output"].count("empty") == 4


FOOTPRINT_ALWAYS_64 = """
BYTES_PER_FLOAT32 = 4
TILES_IN_FLIGHT = 3
L1_BYTES = 32 * 1024
L2_BYTES = 256 * 1024


def calculate_cache_footprint(block_size):
    total = TILES_IN_FLIGHT * block_size * block_size * BYTES_PER_FLOAT32
    return {"block_size": 64, "bytes_per_block": total // 3, "total_bytes": total,
            "fits_in_l1": total <= L1_BYTES, "fits_in_l2": total <= L2_BYTES}
"""


def split_cases(answers: dict[str, str]) -> dict[str, str]:
    """Public checks pass, hidden tests fail: naive_errors misses 1-D inputs (the reference without
    its ndim check: an IndexError, not a ValueError), the footprint always says block size 64
    (the one size the notebook checks). The visible check passes, the scored test gets 0 (shown
    after the due date), exactly as run_tests scores the whole cell."""
    naive = answers["naive_impl"]
    for old, new in [("a.ndim != 2 or b.ndim != 2", "False"),
                     ("m, k = a.shape\n", "m, k = a.shape[0], a.shape[1]\n")]:
        assert old in naive, "the reference naive answer changed: update split_cases"
        naive = naive.replace(old, new)
    return {"naive_impl": naive, "footprint_impl": FOOTPRINT_ALWAYS_64}


@pytest.mark.slow
def test_split_cells_score_as_the_whole_cell(gradescope_home, scratch_course):
    nb = submission(scratch_course,
                    edits=split_cases(reference_answers(scratch_course.source_notebook)))
    results, _ = run_autograder(gradescope_home, nb)
    assert_gradescope_format(results)
    tests, visible = scored(results), checks(results)
    for grade_id in ("naive_errors", "footprint_values"):
        check = next(c for name, c in visible.items() if grade_id in name)
        assert check["status"] == "passed", check
        assert tests[grade_id]["score"] == 0 and tests[grade_id]["output"].startswith("Failed:")
    # The same verdicts from run_tests on the unsplit cells (template + the student's code).
    template = nbformat.reads((gradescope_home / "source" / TEMPLATE).read_text(), 4)
    whole = copy.deepcopy(template)
    answers = {_grade_id(c): c.source for c in nb.cells}
    for cell in whole.cells:
        if notebook.is_implementation_cell(cell):
            cell.source = answers[_grade_id(cell)]
    report = runner.run_tests(whole, scratch_course.spec)
    assert {g: o.passed for g, o in report.outcomes.items()} == {
        g: t["score"] == t["max_score"] for g, t in tests.items()}
    assert total(results) == sum(POINTS.values()) - POINTS["naive_errors"] - POINTS[
        "footprint_values"]


CHEATING = {
    # A library product in the naive loop: the rule costs both naive tests.
    "naive_impl": "def matmul_naive(a, b):\n    return (a @ b).astype(np.float32)\n",
    # A wrong product, with the student's numpy made to call everything close and equal: the
    # asserts run in the grader, against the grader's numpy.
    "numpy_impl": """
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, **kwargs: np.ones(np.broadcast(a, b).shape, dtype=bool)
np.array_equal = lambda *args, **kwargs: True


def matmul_numpy(a, b):
    return np.zeros((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
""",
}
CHEATED = {"naive_correct", "naive_errors", "numpy_correct", "numpy_speed", "backend_dispatch",
           "backend_speed", "models_workloads"}


@pytest.mark.slow
def test_cheating_earns_nothing_for_the_cheated_parts(gradescope_home, scratch_course):
    results, _ = run_autograder(gradescope_home, submission(scratch_course, edits=CHEATING))
    assert_gradescope_format(results)
    tests = scored(results)
    assert {g for g, t in tests.items() if t["score"] == 0} == CHEATED
    assert total(results) == sum(p for g, p in POINTS.items() if g not in CHEATED)
    assert "RuleViolation" in tests["naive_correct"]["output"]
    assert "library matrix product" in tests["naive_errors"]["output"]
    assert "wrong values" in tests["numpy_correct"]["output"]


ATTACK = """

import json, os, signal

for _attack in (lambda: open("RESULTS", "w").write(json.dumps({"score": 1000})),
                lambda: os.kill(os.getppid(), signal.SIGKILL)):
    try:
        _attack()
    except Exception:
        pass
"""


@pytest.mark.slow
def test_student_code_cannot_forge_results_or_stop_the_grader(gradescope_home, scratch_course):
    answers = reference_answers(scratch_course.source_notebook)
    attack = ATTACK.replace("RESULTS", str(gradescope_home / "results" / "results.json"))
    nb = submission(scratch_course, edits={"naive_impl": answers["naive_impl"] + attack})
    results, stdout = run_autograder(gradescope_home, nb)  # the sandbox here, as auto picks it
    assert "student code runs as: bubblewrap sandbox" in stdout
    assert total(results) == sum(POINTS.values())
    # With no isolation at all the attack kills the grader; run_autograder still replaces the
    # forged file with a zero result that tells the student to contact the staff.
    results, stdout = run_autograder(gradescope_home, nb, AUTOGRADER_LAUNCHER="local")
    assert "NOT isolated from the grader" in stdout
    assert results["score"] == 0 and "could not run" in results["output"]


@pytest.mark.slow
def test_the_watchdog_reports_what_was_graded_when_time_runs_out(gradescope_home, scratch_course):
    models = reference_answers(scratch_course.source_notebook)["models_impl"].replace(
        '    """Two-layer MLP: relu(x @ w1) @ w2, both products through matmul()."""\n',
        '    """Two-layer MLP: relu(x @ w1) @ w2, both products through matmul()."""\n'
        '    while True:\n        pass\n', 1)
    assert "while True" in models
    budget = 50   # every test before the models' takes about 35 s on a busy 2-core machine
    started = time.monotonic()
    results, stdout = run_autograder(gradescope_home,
                                     submission(scratch_course, edits={"models_impl": models}),
                                     AUTOGRADER_BUDGET=str(budget), AUTOGRADER_TIME_LIMIT="300")
    assert time.monotonic() - started < budget + 20
    assert_gradescope_format(results)
    assert f"watchdog: budget of {budget} s spent" in stdout
    assert f"Grading stopped after {budget} s" in results["output"]
    tests = scored(results)
    assert tests["models_workloads"]["score"] == 0
    assert "not graded: grading stopped" in tests["models_workloads"]["output"]
    assert total(results) == sum(POINTS.values()) - POINTS["models_workloads"]
    assert results["leaderboard"][0]["value"] > 0


# The three cheats that once got full blocked marks (tests/adversarial: same submissions) --------
THREE_KINDS = {
    # case: (tests that must score 0, text the first of them must show)
    "tiles_only_small_blocks": ({"blocked_correct", "blocked_speed"},
                                "multiplied operands larger than the block size"),
    "forges_repeated_timed_calls": ({"blocked_speed"}, "slower than NumPy"),
    "works_in_another_process": ({"blocked_correct", "blocked_speed"},
                                 "Resource temporarily unavailable"),
}


def _hostile(course: Course, name: str):
    return hostile.BY_STUDENT[name].build(hostile.Context(course, 9, "unused"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(THREE_KINDS))
def test_the_three_kinds_of_cheat_lose_the_blocked_points(gradescope_home, scratch_course, name):
    lost, says = THREE_KINDS[name]
    results, _ = run_autograder(gradescope_home, _hostile(scratch_course, name))
    assert_gradescope_format(results)
    tests = scored(results)
    assert {g for g, t in tests.items() if t["score"] == 0} == lost
    assert says in tests[sorted(lost)[0]]["output"]


@pytest.mark.slow
def test_without_bubblewrap_a_worker_still_cannot_start_a_process(bundle, tmp_path, scratch_course):
    """Where the container cannot run bubblewrap, the worker runs as uid 65534 with the same
    policy: its fork fails as in the sandbox. The tree is laid out where that user can read it."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="gradescope-"))
    try:
        root.chmod(0o755)
        home = _lay_out(bundle, root)
        nbformat.write(_hostile(scratch_course, "works_in_another_process"),
                       home / "submission" / "acceleration.ipynb")
        env = _environment(AUTOGRADER_ROOT=str(home), AUTOGRADER_LAUNCHER="unprivileged")
        proc = subprocess.run(unprivileged.command(["bash", str(home / "run_autograder")]),
                              cwd=home, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "student code runs as: unprivileged user 65534" in proc.stdout
        tests = scored(json.loads((home / "results" / "results.json").read_text()))
        assert {g for g, t in tests.items() if t["score"] == 0} == {"blocked_correct",
                                                                     "blocked_speed"}
        assert "Resource temporarily unavailable" in tests["blocked_correct"]["output"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_the_runtime_grades_with_nbgrader_unimportable(bundle, tmp_path, scratch_course):
    """Gradescope's container has no nbgrader: run what run_autograder runs, with every import of
    nbgrader failing, from the zip's own copy of the package."""
    home = _lay_out(bundle, tmp_path)
    nbformat.write(submission(scratch_course), home / "submission" / "acceleration.ipynb")
    program = ("import runpy, sys\n"
               "sys.modules['nbgrader'] = None   # `import nbgrader` now raises ImportError\n"
               "runpy.run_module('autograder.gradescope.run', run_name='__main__')\n")
    env = _environment(AUTOGRADER_ROOT=str(home), PYTHONPATH=str(home / "source"))
    proc = subprocess.run([sys.executable, "-c", program], cwd=home / "source", env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"autograder package: {(home / 'source' / 'autograder').resolve()}" in proc.stdout
    results = json.loads((home / "results" / "results.json").read_text())
    assert total(results) == sum(POINTS.values()), results["output"]
