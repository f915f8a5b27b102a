"""The grading machine's ceilings: the speeds no product on it can beat, and its caches.

- The **theoretical peak** of one core in float32: the widest vector unit (from the CPU's
  features, read with archspec), FMA, the FMA units per core and the clock:
  `flops per cycle x GHz`. A clock read under a hypervisor, or any clock but cpufreq's maximum,
  is an estimate; when NumPy's own best speed needs a faster clock than the one read, the clock
  is raised to that, so no ceiling here is ever below a speed measured on the same machine.
- The **BLAS kernel's ceiling**: the same for the vector width of the kernel NumPy's BLAS runs
  (threadpoolctl's `architecture`), which may be narrower than the CPU's.
- The **attainable peak**: the best float32 np.matmul this machine reaches on one BLAS thread, in
  a bare loop with a preallocated result, at sizes 64 to 1024 (the best is not always the
  largest).
- The **memory bandwidth** of one core: a STREAM-like triad in NumPy on arrays far larger than
  the last-level cache, counting the bytes its passes move.
- The **caches** (L1d, L2, L3), as the operating system describes them.

Measuring takes a second or two; `kept(folder)` measures once per machine and keeps the result
in `<folder>/<machine fingerprint>.json`. Nothing here knows of nbgrader or of grading.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import machine
from .files import write_atomic
from .timing import measure as sampling
from .timing import stats

VERSION = 1                                 # of the kept file: another version is measured anew
ATTAINABLE_SIZES = (64, 128, 256, 512, 1024)
SAMPLES = 5                                 # best of this many samples per size
MIN_SAMPLE = 0.01                           # seconds: a sample repeats calls until this long
FLOAT32_BITS = 32
TRIAD_PER_LLC = 2                           # each triad array is this many times the LLC
TRIAD_MIN_BYTES, TRIAD_MAX_BYTES = 32 * 2 ** 20, 64 * 2 ** 20
TRIAD_SAMPLES = 3
TRIAD_ARRAYS_MOVED = 6   # per triad: a = s*c reads c and writes a (read for ownership first),
#                          then a += b reads a and b and writes a

CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
THREAD_SIBLINGS = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
SVE_LENGTH = Path("/proc/sys/abi/sve_default_vector_length")

# Cores whose FMA units differ from the usual two, each as wide as the widest vector ISA: by
# microarchitecture (archspec's names), (FMA units per core, datapath bits or 0 for the ISA's).
UNITS = {
    "zen": (2, 128, "Zen 1 runs each 256-bit operation as two halves on 128-bit units"),
    "zen4": (2, 256, "Zen 4 runs each AVX-512 operation as two halves on 256-bit units"),
    "bulldozer": (1, 128, "the two cores of a module share two 128-bit FMA units"),
    "piledriver": (1, 128, "the two cores of a module share two 128-bit FMA units"),
    "steamroller": (1, 128, "the two cores of a module share two 128-bit FMA units"),
    "excavator": (1, 128, "the two cores of a module share two 128-bit FMA units"),
    "a64fx": (2, 512, "two 512-bit SVE units"),
    "neoverse_v1": (2, 256, "two 256-bit SVE units"),
    "neoverse_v2": (4, 128, "four 128-bit units"),
    "neoverse_v3ae": (4, 128, "four 128-bit units"),
    "m1": (4, 128, "four 128-bit NEON units"),
    "m2": (4, 128, "four 128-bit NEON units"),
    "m3": (4, 128, "four 128-bit NEON units"),
    "m4": (4, 128, "four 128-bit NEON units"),
}
DEFAULT_UNITS = 2

# threadpoolctl's `architecture` of a BLAS (OpenBLAS's core type, BLIS's configuration), lower
# case -> (vector bits its float32 kernel uses, whether it uses FMA).
BLAS_KERNELS = {
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids", "skx", "knl", "zen4", "zen5",
                     "a64fx"), (512, True)),
    **dict.fromkeys(("haswell", "zen", "zen2", "zen3", "neoversev1"), (256, True)),
    "sandybridge": (256, False),
    **dict.fromkeys(("nehalem", "core2", "penryn", "dunnington", "prescott", "atom",
                     "barcelona", "opteron", "opteron_sse3"), (128, False)),
    **dict.fromkeys(("bulldozer", "piledriver", "steamroller", "excavator", "armv8",
                     "cortexa53", "cortexa57", "cortexa72", "cortexa76", "neoversen1",
                     "neoversen2", "neoversev2", "thunderx2t99", "thunderx3t110", "ampere1",
                     "power8", "power9", "power10"), (128, True)),
}

# CPU families whose microarchitecture archspec cannot tell when a hypervisor hides features.
def _amd_by_family(family: int, model: int) -> str | None:
    if family == 23:
        return "zen2" if model >= 0x30 else "zen"
    if family == 25:
        return "zen4" if (0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F
                          or 0xA0 <= model <= 0xAF) else "zen3"
    if family == 26:
        return "zen5"
    return None


# ---------------------------------------------------------------------------------------------
# The processor
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Processor:
    architecture: str                 # x86_64, aarch64, ...
    model_name: str
    vendor: str
    features: frozenset
    archspec: str                     # archspec's microarchitecture for the features
    microarchitecture: str            # the one used: archspec's, or the CPU family's
    microarchitecture_source: str
    family: int | None = None
    model: int | None = None
    cpu_mhz: float | None = None
    hypervisor: bool = False


def _first_block(text: str) -> dict[str, str]:
    """Key -> value of the first processor of a /proc/cpuinfo text (and its global lines)."""
    data: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator != ":":
            if data and not line.strip():
                break
            continue
        data.setdefault(key.strip(), value.strip())
    return data


def _int(text: str | None) -> int | None:
    try:
        return int(text, 0) if text else None
    except ValueError:
        return None


def _best_target(info, architecture: str) -> str:
    """archspec's best microarchitecture for a partial one, as `archspec.cpu.host()` ranks them."""
    from archspec.cpu import TARGETS, detect

    check = detect.COMPATIBILITY_CHECKS.get(architecture)
    candidates = [t for t in TARGETS.values() if check is not None and check(info, t)]
    if not candidates:
        return architecture

    def rank(target):
        return len(target.ancestors), len(target.features)

    generic = [t for t in candidates if t.vendor == "generic"]
    best_generic = max(generic, key=rank) if generic else None
    if info.cpu_part and any(t.cpu_part == info.cpu_part for t in candidates):
        candidates = [t for t in candidates if t.cpu_part == info.cpu_part]
    specific = [t for t in candidates if best_generic is None or t > best_generic]
    return max(specific, key=rank).name if specific else best_generic.name


def read_cpuinfo(text: str, architecture: str = "x86_64") -> Processor:
    """The processor a /proc/cpuinfo text describes (its first processor), named by archspec."""
    from archspec.cpu import TARGETS
    from archspec.cpu.detect import partial_uarch
    from archspec.cpu.schema import TARGETS_JSON

    data = _first_block(text)
    if architecture == "aarch64":
        code = data.get("CPU implementer", "")
        vendor = TARGETS_JSON["conversions"]["arm_vendors"].get(code, code or "generic")
        features = frozenset(data.get("Features", "").split())
        info = partial_uarch(vendor=vendor, features=set(features),
                             cpu_part=data.get("CPU part", ""))
    else:
        vendor = data.get("vendor_id", "generic")
        features = frozenset(data.get("flags", "").split())
        info = partial_uarch(vendor=vendor, features=set(features))
    found = _best_target(info, architecture)
    name, source = found, "archspec, from the CPU's features"
    family, model = _int(data.get("cpu family")), _int(data.get("model"))
    by_family = _amd_by_family(family, model or 0) if vendor == "AuthenticAMD" and family else None
    if by_family in TARGETS and found in TARGETS and TARGETS[by_family] > TARGETS[found]:
        name = by_family
        source = (f"the CPU family ({family}); archspec finds {found} in the features "
                  f"{'the hypervisor shows' if 'hypervisor' in features else 'shown'}")
    mhz = data.get("cpu MHz")
    try:
        cpu_mhz = float(mhz) if mhz else None
    except ValueError:
        cpu_mhz = None
    return Processor(architecture, data.get("model name") or data.get("Model") or "", vendor,
                     features, found, name, source, family, model, cpu_mhz,
                     "hypervisor" in features)


def host_processor() -> Processor:
    """This machine's processor: /proc/cpuinfo where there is one, else archspec's detection."""
    architecture = platform.machine().lower()
    architecture = {"amd64": "x86_64", "arm64": "aarch64"}.get(architecture, architecture)
    try:
        return read_cpuinfo(Path("/proc/cpuinfo").read_text(), architecture)
    except OSError:
        pass
    import archspec.cpu
    from archspec.cpu import detect

    target = archspec.cpu.host()
    info = detect.detected_info()
    return Processor(target.family.name, archspec.cpu.brand_string() or platform.processor(),
                     info.vendor, frozenset(info.features), target.name, target.name,
                     "archspec")


# ---------------------------------------------------------------------------------------------
# Flops per cycle, and the clock
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Core:
    vector_isa: str
    vector_bits: int          # the widest vector ISA
    datapath_bits: int        # what the units really do per operation (<= vector_bits)
    fma: bool
    fma_units: int            # vector FMA units per core (0 without FMA)
    flops_per_cycle: float    # float32
    note: str = ""


def _sve_bits(processor: Processor) -> int:
    units = UNITS.get(processor.microarchitecture)
    if units and units[1]:
        return units[1]
    try:
        return 8 * int(SVE_LENGTH.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 128


def core(processor: Processor, sve_bits: int | None = None) -> Core:
    """Vector width, FMA and FMA units of one core, and its float32 flops per cycle."""
    f = processor.features
    if processor.architecture == "aarch64":
        fma = True
        if "sve" in f:
            isa, bits = "SVE", sve_bits or _sve_bits(processor)
        else:
            isa, bits = "NEON", 128
    elif processor.architecture in ("x86_64", "i686", "x86"):
        fma = "fma" in f or "fma4" in f
        if "avx512f" in f:
            isa, bits = "AVX-512", 512
        elif "avx2" in f:
            isa, bits = "AVX2", 256
        elif "avx" in f:
            isa, bits = "AVX", 256
        elif "sse" in f or "sse2" in f:
            isa, bits = "SSE", 128
        else:
            isa, bits = "scalar", FLOAT32_BITS
    else:
        isa, bits, fma = "vector unit (assumed 128-bit)", 128, True
    units, datapath, note = UNITS.get(processor.microarchitecture, (DEFAULT_UNITS, 0, ""))
    datapath = min(bits, datapath or bits)
    lanes = datapath // FLOAT32_BITS
    if fma:
        return Core(isa, bits, datapath, True, units, lanes * 2 * units, note)
    return Core(isa, bits, datapath, False, 0, lanes * 2,
                note or "no FMA: one vector add and one vector multiply per cycle")


def kernel_flops_per_cycle(c: Core, kernel_bits: int | None, kernel_fma: bool = True) -> float:
    """Float32 flops per cycle of a BLAS kernel `kernel_bits` wide on core `c`."""
    if not kernel_bits:
        return c.flops_per_cycle
    lanes = min(kernel_bits, c.datapath_bits) // FLOAT32_BITS
    if c.fma and kernel_fma:
        return lanes * 2 * c.fma_units
    return lanes * 2


def clock(max_khz: int | None, model_name: str, cpu_mhz: float | None,
          hypervisor: bool) -> tuple[float | None, str, bool]:
    """(GHz, where it came from, whether it is an estimate)."""
    under = " under a hypervisor" if hypervisor else ""
    if max_khz:
        return max_khz / 1e6, f"cpufreq's maximum (cpuinfo_max_freq){under}", hypervisor
    found = re.search(r"@\s*([0-9.]+)\s*GHz", model_name or "")
    if found:
        return (float(found[1]), f"the model name's nominal clock{under}; a boost may be higher",
                True)
    if cpu_mhz:
        return cpu_mhz / 1e3, f"/proc/cpuinfo's cpu MHz{under}", True
    return None, "not reported by the operating system", True


def _cpufreq_max() -> int | None:
    try:
        return int(CPUFREQ_MAX.read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Caches
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cache:
    level: int
    kind: str            # Data, Instruction, Unified
    size: int            # bytes
    shared_by: int = 1   # logical CPUs sharing it

    @property
    def name(self) -> str:
        return f"L{self.level}" + {"Data": "d", "Instruction": "i"}.get(self.kind, "")


def _size(text: str) -> int:
    found = re.fullmatch(r"\s*([0-9]+)\s*([KMG]?)B?\s*", text)
    if not found:
        raise ValueError(text)
    return int(found[1]) * {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}[found[2]]


def _cpu_count(cpu_list: str) -> int:
    count = 0
    for part in filter(None, cpu_list.strip().split(",")):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def caches(folder: Path = CACHE_DIR) -> list[Cache]:
    """The caches of cpu0, from sysfs (Linux) or sysconf; empty when neither says."""
    found = []
    for index in sorted(folder.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _size((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text() \
                if (index / "shared_cpu_list").is_file() else "0"
            found.append(Cache(level, kind, size, max(1, _cpu_count(shared))))
        except (OSError, ValueError):
            continue
    if found:
        return found
    for level, kind, name in ((1, "Data", "SC_LEVEL1_DCACHE_SIZE"),
                              (2, "Unified", "SC_LEVEL2_CACHE_SIZE"),
                              (3, "Unified", "SC_LEVEL3_CACHE_SIZE")):
        if name in os.sysconf_names:
            try:
                size = os.sysconf(name)
            except (OSError, ValueError):
                continue
            if size and size > 0:
                found.append(Cache(level, kind, size, 0))
    return found


def _threads_per_core() -> int:
    try:
        return max(1, _cpu_count(THREAD_SIBLINGS.read_text()))
    except (OSError, ValueError):
        return 1


def _bytes_text(size: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if size >= scale and size % (scale // 4) == 0:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _on_one_core():
    """Run the calling thread on one core while measuring, as grading's timing does."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        yield
        return
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def attainable(sizes=ATTAINABLE_SIZES, samples: int = SAMPLES) -> dict[int, float]:
    """Best float32 np.matmul GFLOP/s per size: one BLAS thread, a bare loop, out= given."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng()
    found = {}
    with threadpool_limits(1, "blas"):
        for n in sizes:
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            sampler = sampling.local_sampler(np.matmul, (a, b),
                                            {"out": np.empty((n, n), dtype=np.float32)},
                                            clock=time.thread_time)
            best = stats.best(sampling.interleaved({"matmul": sampler}, rounds=samples,
                                                  min_sample=MIN_SAMPLE).samples["matmul"])
            if best > 0:
                found[n] = 2.0 * n ** 3 / best / 1e9
    return found


def triad(array_bytes: int, samples: int = TRIAD_SAMPLES) -> float:
    """GB/s of a = b + s*c in NumPy (float64 arrays of `array_bytes` each), best of `samples`:
    TRIAD_ARRAYS_MOVED array sizes counted per triad."""
    import numpy as np

    n = max(1, array_bytes // 8)
    a = np.zeros(n)
    b = np.full(n, 1.5)
    c = np.full(n, 2.5)
    def once():
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)

    sampler = sampling.local_sampler(once, clock=time.thread_time)
    sampler(1)   # first touch of every page of a
    best = min(sampler(1) for _ in range(samples))
    return TRIAD_ARRAYS_MOVED * n * 8 / best / 1e9 if best > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# The ceilings of one machine
# ---------------------------------------------------------------------------------------------
@dataclass
class Ceilings:
    fingerprint: str = ""
    machine: dict = field(default_factory=dict)          # machine.describe()
    cpu: str = ""
    vendor: str = ""
    microarchitecture: str = ""
    microarchitecture_source: str = ""
    archspec: str = ""
    hypervisor: bool = False
    vector_isa: str = ""
    vector_bits: int = 0
    datapath_bits: int = 0
    fma: bool = False
    fma_units: int = 0
    flops_per_cycle: float = 0.0
    units_note: str = ""
    clock_ghz: float | None = None       # the clock the theoretical peak uses
    clock_source: str = ""
    clock_estimate: bool = True
    os_clock_ghz: float | None = None    # the clock the operating system gave
    os_clock_source: str = ""
    blas: str = ""
    blas_kernel: str = ""                # threadpoolctl's architecture ("Haswell")
    blas_vector_bits: int | None = None
    blas_flops_per_cycle: float = 0.0
    attainable_gflops: float = 0.0
    attainable_size: int = 0
    attainable_by_size: dict = field(default_factory=dict)   # n -> GFLOP/s
    attainable_source: str = "np.matmul in a bare loop"
    bandwidth_gbs: float = 0.0
    triad_bytes: int = 0                 # bytes of each triad array
    caches: list = field(default_factory=list)                # Cache as dicts
    threads_per_core: int = 1
    measured_at: float = 0.0
    seconds: float = 0.0
    version: int = VERSION

    # what follows from the fields --------------------------------------------------------------
    @property
    def theoretical_gflops(self) -> float | None:
        return self.flops_per_cycle * self.clock_ghz if self.clock_ghz else None

    @property
    def blas_gflops(self) -> float | None:
        return self.blas_flops_per_cycle * self.clock_ghz if self.clock_ghz else None

    def cache_list(self) -> list[Cache]:
        return [Cache(**c) for c in self.caches]

    def raised_to(self, gflops: float, what: str) -> "Ceilings":
        """These ceilings with the attainable peak at least `gflops` (measured as `what`), and
        the clock at least what that speed needs on the BLAS kernel: no ceiling below it."""
        found = self
        if gflops > found.attainable_gflops:
            found = replace(found, attainable_gflops=gflops, attainable_source=what)
        per_cycle = found.blas_flops_per_cycle or found.flops_per_cycle
        if per_cycle and found.attainable_gflops:
            needed = math.ceil(found.attainable_gflops / per_cycle * 100) / 100
            if found.clock_ghz is None or needed > found.clock_ghz:
                read = (f"the operating system gives {found.os_clock_ghz:.2f} GHz "
                        f"({found.os_clock_source})" if found.os_clock_ghz
                        else "the operating system gives no clock")
                found = replace(found, clock_ghz=needed, clock_estimate=True, clock_source=(
                    f"at least what the attainable peak needs: {found.attainable_gflops:.1f} "
                    f"GFLOP/s at {per_cycle:g} FLOP/cycle; {read}"))
        return found

    # words -------------------------------------------------------------------------------------
    def theoretical_text(self) -> str:
        """What the theoretical peak is, in one line."""
        if self.fma:
            how = (f"{self.vector_isa}: {self.datapath_bits // FLOAT32_BITS} float32 lanes x "
                   f"2 FLOP per FMA x {self.fma_units} FMA units")
        else:
            how = f"{self.vector_isa}: {self.datapath_bits // FLOAT32_BITS} float32 lanes, no FMA"
        if self.datapath_bits < self.vector_bits and self.units_note:
            how += f"; {self.units_note}"
        if not self.clock_ghz:
            return f"{self.flops_per_cycle:g} FLOP/cycle ({how}); the clock is unknown"
        estimate = "an estimate" if self.clock_estimate else "the clock"
        return (f"{self.flops_per_cycle:g} FLOP/cycle ({how}) x {self.clock_ghz:.2f} GHz "
                f"({estimate}: {self.clock_source}): the most one core can do, never reached "
                f"in practice")

    def attainable_text(self) -> str:
        best = f"at {self.attainable_size}x{self.attainable_size}, " if self.attainable_size else ""
        sizes = sorted(int(n) for n in self.attainable_by_size)
        tried = f"{sizes[0]} to {sizes[-1]}" if sizes else "-"
        if self.attainable_source != "np.matmul in a bare loop":
            bare = max(self.attainable_by_size.values(), default=0.0)
            return (f"the fastest product measured on this machine ({self.attainable_source}); "
                    f"np.matmul in a bare loop reached {bare:.1f} GFLOP/s when the machine's "
                    f"ceilings were measured, and a peak is never below a measured speed")
        return (f"the best float32 np.matmul this machine reaches on one BLAS thread, in a bare "
                f"loop with the result preallocated ({best}sizes {tried} tried): every fraction "
                f"is of this")

    def blas_text(self) -> str:
        """A sentence on the BLAS kernel when it is narrower than the CPU's vectors, else ""."""
        if not self.blas_vector_bits or self.blas_vector_bits >= self.datapath_bits \
                or not self.blas_gflops or not self.theoretical_gflops:
            return ""
        ratio = self.flops_per_cycle / self.blas_flops_per_cycle
        cut = {2: "halves", 4: "quarters"}.get(round(ratio), "cuts") if \
            abs(ratio - round(ratio)) < 1e-9 else "cuts"
        return (f"NumPy's BLAS here ({self.blas}) runs its {self.blas_kernel} kernel: "
                f"{self.blas_vector_bits}-bit vectors where the CPU has {self.vector_bits}-bit "
                f"({self.vector_isa}). That {cut} the ceiling the library can reach: "
                f"{self.blas_gflops:.1f} of the {self.theoretical_gflops:.1f} GFLOP/s, and no "
                f"product built on it can go faster.")

    def bandwidth_text(self) -> str:
        if not self.bandwidth_gbs:
            return "not measured"
        llc = max(self.cache_list(), key=lambda c: c.level, default=None)
        times = f", {self.triad_bytes / llc.size:g}x the {llc.name}" if llc and llc.size else ""
        return (f"a STREAM-like triad a = b + s*c in NumPy on one core, float64 arrays of "
                f"{_bytes_text(self.triad_bytes)} each{times}; counted: {TRIAD_ARRAYS_MOVED} "
                f"array sizes per triad (a = s*c reads c and writes a, whose lines are read "
                f"first, then a += b reads a and b and writes a)")

    def caches_text(self) -> str:
        """L1d, L2, L3 of one core, and what shares them ("" when the OS does not say)."""
        parts = []
        for cache in sorted(self.cache_list(), key=lambda c: (c.level, c.kind)):
            if cache.kind == "Instruction":
                continue
            if cache.shared_by == 0:
                whose = ""
            elif cache.shared_by <= self.threads_per_core:
                whose = " per core"
            else:
                cores = cache.shared_by // max(1, self.threads_per_core)
                whose = f" shared by {cores} cores"
            parts.append(f"{cache.name} {_bytes_text(cache.size)}{whose}")
        return ", ".join(parts)

    # files -------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        data = asdict(self)
        data["attainable_by_size"] = {str(n): g for n, g in self.attainable_by_size.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Ceilings":
        """Raises ValueError for another version or a malformed record."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"not ceilings of version {VERSION}")
        known = {f.name for f in fields(cls)}
        found = cls(**{k: v for k, v in data.items() if k in known})
        found.attainable_by_size = {int(n): float(g)
                                    for n, g in (found.attainable_by_size or {}).items()}
        return found


def from_parts(processor: Processor, clock_found: tuple[float | None, str, bool],
               blas: dict | None = None) -> Ceilings:
    """The ceilings that follow from the processor, its clock and the BLAS, before measuring."""
    c = core(processor)
    blas = blas or {}
    kernel = str(blas.get("architecture") or "")
    bits, kernel_fma = BLAS_KERNELS.get(kernel.lower(), (None, True))
    ghz, source, estimate = clock_found
    return Ceilings(
        cpu=processor.model_name, vendor=processor.vendor,
        microarchitecture=processor.microarchitecture,
        microarchitecture_source=processor.microarchitecture_source,
        archspec=processor.archspec, hypervisor=processor.hypervisor,
        vector_isa=c.vector_isa, vector_bits=c.vector_bits, datapath_bits=c.datapath_bits,
        fma=c.fma, fma_units=c.fma_units, flops_per_cycle=c.flops_per_cycle, units_note=c.note,
        clock_ghz=ghz, clock_source=source, clock_estimate=estimate, os_clock_ghz=ghz,
        os_clock_source=source,
        blas=" ".join(filter(None, [blas.get("internal_api"), blas.get("version")])) or "none",
        blas_kernel=kernel, blas_vector_bits=bits,
        blas_flops_per_cycle=kernel_flops_per_cycle(c, bits, kernel_fma))


def measure() -> Ceilings:
    """This machine's ceilings, measured now (a second or two)."""
    started = time.monotonic()
    processor = host_processor()
    found = from_parts(processor, clock(_cpufreq_max(), processor.model_name, processor.cpu_mhz,
                                        processor.hypervisor), machine.blas_library())
    found.caches = [asdict(c) for c in caches()]
    found.threads_per_core = _threads_per_core()
    description = machine.describe()
    found.machine, found.fingerprint = dict(description), machine.fingerprint(description)
    llc = max((c.size for c in caches()), default=0)
    found.triad_bytes = min(TRIAD_MAX_BYTES, max(TRIAD_MIN_BYTES, TRIAD_PER_LLC * llc))
    with _on_one_core():
        by_size = attainable()
        found.bandwidth_gbs = triad(found.triad_bytes)
    found.attainable_by_size = by_size
    if by_size:
        found.attainable_size = max(by_size, key=by_size.get)
        found.attainable_gflops = by_size[found.attainable_size]
    found = found.raised_to(found.attainable_gflops, found.attainable_source)
    found.measured_at = time.time()
    found.seconds = round(time.monotonic() - started, 2)
    return found


def summary(found: Ceilings) -> str:
    """The ceilings in one line, for logs."""
    theoretical = found.theoretical_gflops
    parts = [f"theoretical peak {theoretical:.1f} GFLOP/s" if theoretical
             else "theoretical peak unknown (no clock)",
             f"attainable peak {found.attainable_gflops:.1f} GFLOP/s",
             f"memory {found.bandwidth_gbs:.1f} GB/s"]
    if found.caches_text():
        parts.append(found.caches_text())
    return ", ".join(parts) + (" (the clock is an estimate)" if found.clock_estimate else "")


def kept_path(folder: Path) -> Path:
    return Path(folder) / f"{machine.fingerprint(machine.describe())}.json"


def kept(folder: Path) -> tuple[Ceilings, Path, bool]:
    """(ceilings, their file, whether they were measured now): this machine's ceilings as kept in
    `folder/<machine fingerprint>.json`, measured and written there when there are none yet."""
    path = kept_path(folder)
    if (found := read(path)) is not None:
        return found, path, False
    found = measure()
    write_atomic(path, json.dumps(found.to_json(), indent=1), make_folder=True)
    return found, path, True


def read(path: Path) -> Ceilings | None:
    try:
        return Ceilings.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None
