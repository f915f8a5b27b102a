"""The grading machine's ceilings: read from the processor, measured on this machine, kept per
machine."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from autograder import ceilings, machine

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
