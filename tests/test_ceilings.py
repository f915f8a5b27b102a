"""The grading machine's ceilings: read from the processor, measured on this machine, kept per
machine, and every fraction of the peak that grading shows held to at most 100%."""
from __future__ import annotations

import html
import json
import platform
import re
from pathlib import Path

import pytest

from autograder import ceilings, machine
from autograder.feedback import feedback_path, speed_figure, write_feedback
from autograder.gradescope.results import performance_entry
from autograder.performance import SUFFIX, Performance
from autograder.report import build_report
from autograder.results import load_cohort
from autograder.trusted.profile import LIBRARY
from tests.test_export import copy_course

CPUINFO = Path(__file__).parent / "fixtures" / "cpuinfo"

# fixture -> (architecture, archspec's name, the microarchitecture used, vector ISA, its bits,
#             datapath bits, FMA, FMA units, float32 FLOP per cycle, clock GHz)
CPUS = {
    "epyc-zen5-kvm.txt": ("x86_64", "x86_64_v4", "zen5", "AVX-512", 512, 512, True, 2, 64,
                          2.59612),
    "xeon-gold-6148.txt": ("x86_64", "skylake_avx512", "skylake_avx512", "AVX-512", 512, 512,
                           True, 2, 64, 2.40),
    "core-i7-2600.txt": ("x86_64", "sandybridge", "sandybridge", "AVX", 256, 256, False, 0, 16,
                         3.40),
    "ryzen-7-1700.txt": ("x86_64", "zen", "zen", "AVX2", 256, 128, True, 2, 16, 1.55),
    "graviton2-neoverse-n1.txt": ("aarch64", "neoverse_n1", "neoverse_n1", "NEON", 128, 128,
                                  True, 2, 16, None),
}


@pytest.mark.parametrize("name", sorted(CPUS))
def test_the_core_is_read_from_cpuinfo(name):
    arch, found, used, isa, bits, datapath, fma, units, per_cycle, ghz = CPUS[name]
    processor = ceilings.read_cpuinfo((CPUINFO / name).read_text(), arch)
    assert (processor.archspec, processor.microarchitecture) == (found, used)
    core = ceilings.core(processor)
    assert (core.vector_isa, core.vector_bits, core.datapath_bits, core.fma, core.fma_units,
            core.flops_per_cycle) == (isa, bits, datapath, fma, units, per_cycle)
    clock, source, estimate = ceilings.clock(None, processor.model_name, processor.cpu_mhz,
                                             processor.hypervisor)
    assert clock == (pytest.approx(ghz) if ghz else None) and estimate
    assert ("hypervisor" in source) == processor.hypervisor == ("kvm" in name)


def test_the_zen5_under_kvm_and_its_haswell_blas_kernel():
    processor = ceilings.read_cpuinfo((CPUINFO / "epyc-zen5-kvm.txt").read_text())
    assert processor.vendor == "AuthenticAMD" and processor.family == 26
    assert "CPU family (26)" in processor.microarchitecture_source
    found = ceilings.from_parts(processor, ceilings.clock(None, processor.model_name,
                                                          processor.cpu_mhz, True),
                                {"internal_api": "openblas", "version": "0.3.31",
                                 "architecture": "Haswell"})
    assert found.theoretical_gflops == pytest.approx(64 * 2.59612)       # about 166 GFLOP/s
    assert found.blas_vector_bits == 256 and found.blas_gflops == pytest.approx(32 * 2.59612)
    assert "estimate" in found.theoretical_text() and "hypervisor" in found.theoretical_text()
    # NumPy at 104 GFLOP/s on a 256-bit kernel needs 3.25 GHz: the clock read was too low, so
    # it is raised, and with it every ceiling above the attainable peak.
    raised = found.raised_to(104.0, "np.matmul in a bare loop")
    assert raised.clock_ghz == pytest.approx(3.25) and raised.clock_estimate
    assert "2.60 GHz" in raised.clock_source
    assert raised.theoretical_gflops >= raised.blas_gflops >= raised.attainable_gflops == 104.0
    assert ("runs its Haswell kernel: 256-bit vectors where the CPU has 512-bit (AVX-512). That "
            "halves the ceiling the library can reach: 104.0 of the 208.0 GFLOP/s"
            ) in raised.blas_text()
    same = raised.raised_to(50.0, "slower")
    assert same == raised


def test_host_processor_agrees_with_archspec():
    import archspec.cpu

    if platform.system() != "Linux":
        pytest.skip("reads /proc/cpuinfo")
    assert ceilings.host_processor().archspec == archspec.cpu.host().name


@pytest.fixture(scope="module")
def measured() -> ceilings.Ceilings:
    return ceilings.measure()


def test_this_machine_s_ceilings_are_in_order(measured):
    assert measured.fingerprint == machine.fingerprint(machine.describe())
    assert sorted(measured.attainable_by_size) == list(ceilings.ATTAINABLE_SIZES)
    assert measured.attainable_gflops == max(measured.attainable_by_size.values()) > 1
    assert measured.theoretical_gflops >= measured.blas_gflops >= measured.attainable_gflops
    assert measured.flops_per_cycle >= measured.blas_flops_per_cycle > 0
    assert measured.seconds < 15
    # One core streams somewhere between a slow laptop's and a large server's bandwidth.
    assert 1 < measured.bandwidth_gbs < 1000
    llc = max(measured.cache_list(), key=lambda c: c.level, default=None)
    if platform.system() == "Linux":
        assert llc is not None and measured.triad_bytes >= min(ceilings.TRIAD_MAX_BYTES,
                                                               ceilings.TRIAD_PER_LLC * llc.size)
        assert measured.caches_text().startswith("L1d ")
    assert ceilings.Ceilings.from_json(json.loads(json.dumps(measured.to_json()))) == measured


def test_the_kept_file_is_reused_not_measured_again(tmp_path):
    first, path, measured_now = ceilings.kept(tmp_path / "machines")
    assert measured_now and path == tmp_path / "machines" / f"{first.fingerprint}.json"
    again, same_path, measured_again = ceilings.kept(tmp_path / "machines")
    assert (same_path, measured_again) == (path, False) and again == first
    # What the file says is what is used: it is read, not measured again.
    data = json.loads(path.read_text())
    data["attainable_gflops"] = 12345.0
    path.write_text(json.dumps(data))
    assert ceilings.kept(tmp_path / "machines")[0].attainable_gflops == 12345.0
    # A file of another version is measured anew and replaced.
    data["version"] = ceilings.VERSION + 1
    path.write_text(json.dumps(data))
    fresh, _, remeasured = ceilings.kept(tmp_path / "machines")
    assert remeasured and fresh.attainable_gflops < 12345.0
    assert json.loads(path.read_text())["version"] == ceilings.VERSION


def test_the_triad_moves_what_it_says():
    assert ceilings.TRIAD_ARRAYS_MOVED == 6
    small, large = ceilings.triad(4 * 2 ** 20), ceilings.triad(ceilings.TRIAD_MIN_BYTES)
    assert small > 0 and large > 0


# ------------------------------------------------------------------------------------------------
# A graded cohort: no fraction of the peak above 100%, anywhere it is shown
# ------------------------------------------------------------------------------------------------
PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.mark.slow
def test_no_fraction_of_the_peak_above_100_percent(graded_course, tmp_path):
    course = copy_course(graded_course, tmp_path / "course")
    kept = list((course.root / "grading" / "machines").glob("*.json"))
    assert len(kept) == 1, kept              # measured once for the machine, not per submission
    machine_found = ceilings.read(kept[0])
    cohort = load_cohort(course)
    for result in cohort:
        perf = result.performance
        assert perf is not None and perf.ceilings == machine_found, result.student
    shown = 0
    write_feedback(course)
    for result in cohort:
        page = feedback_path(course, result.student).read_text(encoding="utf-8")
        section = _text(page).split("How close to the machine", 1)[1].split("Written answers")[0]
        values = [float(v) for v in PERCENT.findall(section)]
        assert all(v <= 100 for v in values), (result.student, section)
        shown += len(values)
    index = build_report(course, tmp_path / "report")
    report = _text(index.read_text(encoding="utf-8"))
    section = report.split("How close to the machine", 1)[1].split("Leaderboard")[0]
    values = [float(v) for v in PERCENT.findall(section)]
    assert values and all(v <= 100 for v in values), section
    for result in cohort:
        entry = performance_entry(result.performance, course.spec)
        if entry is not None:
            values = [float(v) for v in PERCENT.findall(entry["output"])]
            assert values and all(v <= 100 for v in values), entry["output"]
            assert "theoretical peak" in entry["output"] and "attainable peak" in entry["output"]
            shown += len(values)
    assert shown > 10
    # The theoretical peak stands above the attainable one, which stands above every product.
    full = next(r for r in cohort if r.student == "1001").performance
    best = full.profile.best()[0]
    assert full.machine.theoretical_gflops >= full.attainable >= best
    assert full.fraction(LIBRARY, 256) <= 1
    # The speed plot labels exactly the sizes measured.
    fig = speed_figure(full, course.spec)
    fig.canvas.draw()
    (ax,) = fig.axes
    measured_sizes = sorted({n for by_size in full.profile.seconds.values() for n in by_size})
    assert measured_sizes == [16, 32, 64, 128, 256, 512]
    assert list(ax.get_xticks()) == measured_sizes
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(n) for n in measured_sizes]
    assert list(ax.xaxis.get_minorticklocs()) == []
    saved = json.loads((course.autograded_dir("1001") / f"acceleration{SUFFIX}").read_text())
    assert Performance.read(course.autograded_dir("1001") / f"acceleration{SUFFIX}").ceilings \
        == ceilings.Ceilings.from_json(saved["ceilings"])
