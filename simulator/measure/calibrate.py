"""Measure this machine and write a hardware profile for it (``python -m simulator calibrate``).

What is read, and what is measured (each figure lands in the profile with a ``sources`` or
``fitted`` entry saying how it was obtained, when, on how many threads, with which libraries):

* cache geometry: ways, line, sharing per level from sysfs
  (``/sys/devices/system/cpu/cpu0/cache/index*/``), clock, cores and vector flags from lscpu /
  ``/proc/cpuinfo``. No sysfs *size* is trusted unmeasured: a private level's size is confirmed
  by a pointer chase over half of it and over twice it (the latency must step up in between),
  and the last level's size is read off the working-set curve (a VM's sysfs may claim the
  host's whole LLC, or more);
* the last level's *effective* size: torch GEMV bandwidth against the working-set size (the same
  matrix repeated, the sweep extended beyond twice what sysfs claims), split into an in-cache and
  a DRAM plateau, and the LLC size and replacement policy fitted to the fall-off between them as
  the cache model sees it: :func:`fit_llc`;
* sustained DRAM bandwidth: the GEMV bandwidth at the DRAM plateau, and a STREAM-like read and
  triad kernel (peak); then fp32 GEMVs over the same bytes far beyond the last level in short and
  long rows, whose difference is a cost per row (a row is a stream the prefetchers meet cold,
  ``gemv.row_start``) and whose rest is the sustained bandwidth (:func:`row_streams`);
* latency per level and of DRAM: a dependent pointer chase over a random cyclic permutation of
  cache lines (numba, so no interpreter sits between the loads); memory-level parallelism by
  Little's law (lines in flight = bandwidth x latency / line), twice: a one-thread sequential
  read (what the prefetchers keep in flight for a stream) and interleaved independent chases
  (the demand misses a core keeps in flight for gathers);
* kernel issue costs with torch on the given threads (the kernel cost model's parameters,
  :mod:`simulator.engine.kernelcost`): GEMM's library efficiency (FLOP/s over the FMA peak), and
  the CSR SpMV / SpMM costs per non-zero and per row, solved by least squares from in-cache
  matrices with the same non-zeros spread over different numbers of rows, with the backend
  ``bench`` would pick (at two batches for SpMM, which also fixes the columns one step covers);
* the direct convolution (``F.conv2d``, oneDNN) on three 3 x 3 shapes at two batches: its own
  rate (the median slope), and whether it computes whole blocks of ``vector_lanes`` channels;
* the same GEMMs in bf16 and with torch's int8 dynamic quantization: the variants ``bench``
  times (``dense@bf16``, ``dense@int8``) run at the type's ``peak_flops``, which the profile gets as
  the fp32 peak scaled by the measured rate ratio (:func:`type_peaks`); the BSR kernel's costs are
  derived from the GEMM and CSR fits (:func:`bsr_block`, not fitted);
* the per-call overhead (a tiny GEMV), which dominates layers below about 1 MB.

Every throughput figure is a run's median call (:func:`_typical_time`, as ``bench`` keeps a
layer's median call), and every measurement is repeated in rounds until its best round is reproduced within
:data:`SETTLE_TOLERANCE` (or :data:`MAX_ROUNDS` pass; the profile and the command say so), and
the measurements must pass physical plausibility checks (:data:`CHECKS`) before a profile is
built: a machine busy with other work gives figures no hardware could have, and ``calibrate``
refuses those (:class:`Implausible`, one line, exit status 2) instead of writing them.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import enum
import functools
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Optional, Sequence, TypeVar

import numpy as np

from ..base.errors import ConfigError, SimulatorError
from ..base.units import Quantity, format_quantity, parse_bytes
from ..engine.core import walk_saved_s
from ..hardware.profile import HardwareProfile, PackedTile, Replacement
from ..memory.cache import CacheGeometry, CacheHierarchy

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
LINE_BYTES_DEFAULT = 64
MiB = 1 << 20
# Working-set sizes of the GEMV sweep (MiB): dense around typical LLC shares, up to far beyond;
# extended by :func:`working_set_sizes` when sysfs claims a last level this sweep cannot see past.
WORKING_SET_MIB = (0.25, 0.5, 1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 48, 64, 96, 128)
WORKING_SET_COLUMNS = 1000      # the sweep's matrices' row length (each row a stream: see the row probes)
DRAM_CHASE_BYTES = 256 << 20
CHASE_STEPS = 2_000_000
CHAINS = (1, 2, 4, 8, 16, 32)
# (rows, cols, batch): FC layers' GEMMs at batch 64, power-of-two and not, none of them a layer of
# the EIE benchmark (crosscheck compares on those: calibrating on the very shapes it checks would
# fit the check)
GEMM_SHAPES = ((3072, 3072, 64), (2048, 8192, 64), (1536, 1000, 64), (1024, 3000, 64), (2048, 2048, 64))
# The same shapes again at a wider batch: a GEMM's time is affine in its batch (its weights packed
# once per call, then the multiply-adds), so two batches give the rate (the slope) and the packing
# (the intercept); 64 and 256 span the batches the checks run (64) and a prefill's (128).
GEMM_WIDE_BATCH = 256
# CSR matrices of the sparse-kernel fit: the same non-zeros (512 KiB of values and indices, in
# cache) on 256, 1024 and 8192 rows (256, 64 and 8 a row), so per-row and per-non-zero costs
# separate; SpMM at batch 64 and at half a vector, which tells a kernel that vectorises over the
# dense columns from one that does not (a batch that is a multiple of the vector width cannot).
SPARSE_NONZEROS = 1 << 16
SPARSE_COLUMNS = 2048
SPARSE_ROWS = (256, 1024, 8192)
# SpMV also on the middle matrix's rows with a quarter of the non-zeros: a library's set-up per call
# (``call_overhead``) separates from its cost per non-zero only across two non-zero counts.
SPMV_FEW_NONZEROS = SPARSE_NONZEROS // 4
SPMM_BATCH = 64
# The SpMM's matrices have fewer columns where a core's private caches are small: its dense operand
# at batch 64 (columns x 64 fp32) stays within half the last private level, so the gathers its
# costs hold are served by the private caches (at 2048 columns, 512 KiB, a Zen 3 core's whole L2,
# the cache model served 14% of them from the L3). The SpMM gathering beyond them
# (:func:`_measure_spmm_gathers`) measures what the others wait.
SPMM_MIN_COLUMNS = 256
# The lowered product of a sparse convolution (im2col + CSR x dense), as `bench --sparse-conv`
# runs it: filters x (channels x 3 x 3) CSR weights times a lowered input of output pixels, at two
# widths and two densities. 160 channels and 224 filters are no layer the crosscheck checks.
SPCONV_FILTERS, SPCONV_DEPTH = 224, 160 * 9
SPCONV_PIXELS = (100, 324)
SPCONV_DENSITIES = (0.15, 0.4)

#: Rounds agree when their figures are within this share of each other.
SETTLE_TOLERANCE = 0.05
#: Rounds a measurement may take to settle before it is reported unsettled.
MAX_ROUNDS = 6
#: Passes ``calibrate`` makes over its steps by default, each measurement kept at its best look
#: (:meth:`Settled.best_of`). Rounds agree within seconds; a burst on the host can outlast them: on
#: the 2-vCPU Zen 3 guest a 20 s burst halved F.conv2d's rate (its rounds agreed on it) while the GEMM
#: timed just after it kept its own, and three of sixteen profiles of a day had their convolution at
#: 0.60-0.65 of the peak against 0.80-0.87 in the others. The second look comes two minutes later.
LOOKS = 2
#: Looks further apart than this share name a measurement the host disturbed (twice the tolerance
#: within which its rounds agree).
LOOKS_APART = 2 * SETTLE_TOLERANCE
#: How far the fp32 GEMM's slope may come out above the FMA peak before it is implausible. The
#: slope is the difference of two settled times (batch 64 and 256, about 3.5x apart), each only
#: known within SETTLE_TOLERANCE, which moves their difference by up to (3.5 + 1) / 2.5 = 1.8x that;
#: a library at the peak then measures up to 9% above it (sessions on the development VM measured
#: 1.04-1.07x and were refused before this margin). Within it the library efficiency is 1.
GEMM_PEAK_MARGIN = 2 * SETTLE_TOLERANCE
#: The smallest issue cost a sparse fit may return, in cycles.
MIN_CYCLES = 0.01

# Plausibility limits (see CHECKS): generous enough for any quiet machine, far from what a busy one gives.
MAX_CALL_OVERHEAD_S = 100e-6       # a 16 x 16 torch.mv: a few us on any CPU
ORDER_TOLERANCE = 1.20             # a level may look up to 20% slower than the one below it: a last level
                                   # whose random chase pays DRAM anyway (a VM's oversized L3) moves by 15%
MONOTONE_TOLERANCE = 0.25          # a bigger working set may look up to 25% faster than a smaller one
FALL_OFF_RATIO = 1.2               # in-cache plateau over DRAM plateau needed to see the last level
SIZE_STEP_RATIO = 1.3              # latency over twice a private level / over half of it
THREAD_SLOWDOWN = 4.0              # a small GEMV on all threads vs one thread
MIN_CPU_SHARE = 0.85               # CPU time the threads get over wall time x threads, running GEMMs
CPU_SHARE_WINDOW_S = 0.5           # how long the threads run GEMMs for that share
MIN_THREAD_SCALING = 0.8           # streaming read on all threads vs one thread


class CacheKind(str, enum.Enum):
    """What a cache level holds (sysfs ``type``)."""

    DATA = "Data"
    INSTRUCTION = "Instruction"
    UNIFIED = "Unified"


@dataclass(frozen=True)
class SysfsCache:
    """One cache level as sysfs describes it for cpu0."""

    level: int
    kind: CacheKind
    size_bytes: int
    ways: int
    line_bytes: int
    sharing_cpus: int        # CPUs in shared_cpu_list: > 1 means shared


@dataclass(frozen=True)
class CpuInfo:
    """The processor as lscpu and /proc/cpuinfo describe it."""

    model: str
    cores: int
    clock_hz: float
    flags: frozenset[str]
    memory_bytes: int
    vendor: str = ""         # lscpu's Vendor ID / cpuinfo's vendor_id (``AuthenticAMD``, ``GenuineIntel``)
    family: int = 0          # lscpu's CPU family / cpuinfo's ``cpu family`` (0: not given)

    @property
    def splits_512_bit(self) -> bool:
        """True for AMD Zen 4 (family 25 with AVX-512): it runs each 512-bit instruction on its
        256-bit FMA pipes in two halves, so its FMA rate is AVX2's (AMD, "Software Optimization
        Guide for the AMD Zen 4 Microarchitecture", 57647, section 2.11: two 256-bit FMA pipes).
        Zen 5 (family 26) has 512-bit pipes."""
        return self.vendor == "AuthenticAMD" and self.family == 25 and "avx512f" in self.flags

    @property
    def lanes_per_core(self) -> int:
        """fp32 FLOP lanes per cycle per core / 2: two FMA ports x the width of their datapaths (the
        i7 profile's convention: peak = cores x lanes x 2 x clock). An AVX-512 core whose pipes are
        256 bits wide (:attr:`splits_512_bit`) has AVX2's 16."""
        if "avx512f" in self.flags and not self.splits_512_bit:
            return 32
        if "avx2" in self.flags and "fma" in self.flags:
            return 16
        if "avx" in self.flags:
            return 8
        return 4

    @property
    def peak_flops_per_s(self) -> float:
        """fp32 FMA peak of all cores: cores x lanes x 2 FLOP x clock."""
        return self.cores * self.lanes_per_core * 2 * self.clock_hz

    @property
    def vector_lanes(self) -> int:
        """fp32 lanes of one vector instruction: AVX-512 16, AVX2 / AVX 8, SSE / NEON 4."""
        if "avx512f" in self.flags:
            return 16
        if "avx2" in self.flags or "avx" in self.flags:
            return 8
        return 4


def parse_size(text: str) -> int:
    """sysfs / lscpu sizes: ``32K``, ``512K``, ``32768K``, ``1 MiB``, ``32 MiB`` -> bytes. sysfs's
    ``K`` is KiB; the units themselves are :mod:`simulator.base.units`'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a cache size: {text!r}")
    prefix = match.group(2).upper()
    return parse_bytes(f"{match.group(1)} {prefix + 'i' if prefix else ''}B")


def parse_cpu_list(text: str) -> int:
    """Number of CPUs in a sysfs CPU list such as ``0-1,4,6-7``."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-")
            count += int(high) - int(low) + 1
        else:
            count += 1
    return count


def _read_sysfs_cache(index: Path) -> Optional[SysfsCache]:
    """One ``index*`` folder of sysfs as a cache level; None for an instruction cache."""
    def read(name: str) -> str:
        return (index / name).read_text(encoding="utf-8").strip()

    kind = CacheKind(read("type"))
    if kind is CacheKind.INSTRUCTION:
        return None
    return SysfsCache(int(read("level")), kind, parse_size(read("size")), int(read("ways_of_associativity")),
                      int(read("coherency_line_size")), parse_cpu_list(read("shared_cpu_list")))


def read_sysfs_caches(root: Path = SYSFS_CACHE) -> list[SysfsCache]:
    """The data and unified cache levels of cpu0 (instruction caches left out), innermost first."""
    if not root.is_dir():
        raise ConfigError(str(root), "", "no cache description in sysfs (not Linux, or hidden by the VM)")
    levels = []
    for index in sorted(root.glob("index*"), key=lambda p: int(p.name[5:] or 0)):
        try:
            level = _read_sysfs_cache(index)
        except (OSError, ValueError) as err:
            raise ConfigError(str(index), "", f"unreadable cache description ({err})") from None
        if level is not None:
            levels.append(level)
    if not levels:
        raise ConfigError(str(root), "", "lists no data or unified cache")
    return sorted(levels, key=lambda c: c.level)


def parse_cpu_info(lscpu: str, cpuinfo: str, meminfo: str) -> CpuInfo:
    """Model, cores, clock, flags and memory from the text of ``lscpu``, ``/proc/cpuinfo`` and
    ``/proc/meminfo``. The clock is lscpu's maximum MHz where it gives one (a VM often does
    not), else cpuinfo's ``cpu MHz``."""
    fields: dict[str, str] = {}
    for line in lscpu.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    model = fields.get("Model name", "unknown CPU")
    cores = int(fields.get("CPU(s)", "0") or 0)
    mhz = fields.get("CPU max MHz")
    flags = fields.get("Flags", "")
    vendor = fields.get("Vendor ID", "")
    family = fields.get("CPU family", "")
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "cpu MHz" and mhz is None:
            mhz = value.strip()
        elif key == "flags" and not flags:
            flags = value.strip()
        elif key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "cpu family" and not family:
            family = value.strip()
        elif key == "processor" and not fields.get("CPU(s)"):
            cores += 1
    if mhz is None:
        raise ConfigError("lscpu / /proc/cpuinfo", "cpu MHz", "no clock frequency found")
    memory = 0
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    return CpuInfo(model, max(1, cores), float(mhz) * 1e6, frozenset(flags.split()), memory, vendor,
                   int(family) if family.isdigit() else 0)


def read_cpu_info() -> CpuInfo:
    """:func:`parse_cpu_info` on this machine."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10,
                               env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = ""
    def text(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError:
            return ""
    return parse_cpu_info(lscpu, text("/proc/cpuinfo"), text("/proc/meminfo"))


# --- measurements -------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkingSetPoint:
    """GEMV bandwidth with one matrix of ``size_bytes`` repeated (per-call overhead removed)."""

    size_bytes: int
    bandwidth_bytes_per_s: float


@dataclass(frozen=True)
class ChasePoint:
    """``chains`` independent pointer chases interleaved: bandwidth of the line fetches."""

    chains: int
    bandwidth_bytes_per_s: float


@dataclass(frozen=True)
class SparseTiming:
    """One CSR product timed: ``rows`` x ``depth`` with ``nonzeros`` stored, times ``columns``
    dense columns (1: SpMV), on ``backend`` with ``threads`` threads; ``seconds`` per call."""

    kind: str                 # "spmv" or "spmm"
    rows: int
    depth: int
    columns: int
    nonzeros: int
    row_steps: int            # issue steps over the non-zeros: sum over rows of max(1, n)
    seconds: float
    backend: str
    threads: int
    faulted_bytes: float = 0.0   # pages one call faulted in (counted on the SpMV beyond the caches only)
    index_bits: Optional[int] = None   # the width of the indices the call was given (None: the backend's own)


@dataclass(frozen=True)
class GatherProbe:
    """One CSR library's product timed on the same rows and non-zeros over two widths of its dense
    operand, ``near_columns`` and ``far_columns``: seconds per call of each, on ``threads`` threads.
    The SpMM's (:data:`SPMM_BATCH`, the middle fit matrix's rows) gathers from the private caches
    and from the last level (:func:`gather_wait`); the SpMV's (the widest-row fit matrix's rows)
    from the first level and from below it (:func:`gather_fill`)."""

    backend: str
    rows: int
    nonzeros: int
    near_columns: int
    far_columns: int
    near_s: float
    far_s: float
    threads: int

    def describe(self, product: str) -> str:
        """What the probe timed, for a source note: ``product`` (``SpMV``, ``SpMM at batch 64``)
        over the far and the near operand."""
        return (f"{self.backend}'s {product} on {self.threads} thread(s), {self.rows} rows and {self.nonzeros} "
                f"non-zeros, gathering over {self.far_columns} columns ({_us(self.far_s)}) against "
                f"{self.near_columns} ({_us(self.near_s)})")


def keep_timing(timings: list[SparseTiming], timing: SparseTiming) -> None:
    """Add ``timing`` to ``timings``, in place of an earlier look's timing of the same call (its
    seconds are the best of both looks already: :meth:`Session.record`)."""
    same = [i for i, t in enumerate(timings) if replace(t, seconds=timing.seconds, faulted_bytes=timing.faulted_bytes)
            == timing]
    if same:
        timings[same[0]] = timing
    else:
        timings.append(timing)


@dataclass(frozen=True)
class Settled:
    """A figure measured in rounds until two rounds agree: the smallest round's figure (other
    processes can only slow a round down), the rounds it took, and how far apart its two best
    rounds were (``stable``: within the tolerance)."""

    value: float
    rounds: int
    spread: float
    stable: bool
    looks: tuple[float, ...] = ()   # each look's figure, where ``calibrate`` took more than one (:meth:`best_of`)

    @property
    def looks_apart(self) -> float:
        """How far apart the looks' figures came, as a share of the best (0 for one look)."""
        if len(self.looks) < 2 or min(self.looks) <= 0:
            return 0.0
        return (max(self.looks) - min(self.looks)) / min(self.looks)

    def best_of(self, later: Settled) -> Settled:
        """This measurement and a ``later`` look at it, minutes on: the smaller figure with its own
        rounds' agreement (a burst on the host that outlasts one look's rounds slows that look, and
        its rounds agree on the slow figure), the rounds of both, and each look's figure."""
        best = min((self, later), key=lambda s: s.value)
        return Settled(best.value, self.rounds + later.rounds, best.spread, best.stable,
                       (self.looks or (self.value,)) + (later.looks or (later.value,)))

    def describe(self) -> str:
        """``best of 3 rounds (2.1% apart)`` (``best of 2 looks (31% apart), 5 rounds (...)``), or
        says it did not settle."""
        spread = f"{100 * self.spread:.2g}%" if math.isfinite(self.spread) else "n/a"
        state = "" if self.stable else f", NOT settled within {100 * SETTLE_TOLERANCE:g}%"
        looks = f"{len(self.looks)} looks ({100 * self.looks_apart:.2g}% apart), " if len(self.looks) > 1 else ""
        return f"best of {looks}{self.rounds} rounds ({spread} apart{state})"


@dataclass
class Measurements:
    """Everything ``calibrate`` measured, in base units."""

    threads: int
    versions: dict[str, str]
    load_average: tuple[float, float] = (0.0, 0.0)   # 1-minute load average before and after
    clock_hz: float = 0.0                     # one core's clock as measured (0: not measured, lscpu's holds)
    launch_overhead_s: float = 0.0
    small_gemv_s: float = 0.0                 # a 256 x 256 torch.mv on ``threads`` threads
    small_gemv_one_thread_s: float = 0.0      # the same on one thread
    cpu_share: float = 1.0                    # CPU time the threads got over wall time x threads (GEMMs)
    stream_read_bytes_per_s: float = 0.0
    stream_triad_bytes_per_s: float = 0.0
    stream_read_one_thread_bytes_per_s: float = 0.0
    stream_fill_bytes_per_s: float = 0.0      # filling the STREAM arrays: a read for ownership and a write-back a line
    working_set: list[WorkingSetPoint] = field(default_factory=list)
    cache_latency_s: dict[int, float] = field(default_factory=dict)    # level -> chase over half of it
    beyond_latency_s: dict[int, float] = field(default_factory=dict)   # private level -> chase over twice it
    # footprint -> chase over it, from twice the last private level up (the TLBs' reach)
    reach_latency_s: dict[int, float] = field(default_factory=dict)
    llc_chase_bytes: int = 0     # the footprint of the last level's chase (half its measured share)
    dram_latency_s: float = 0.0
    chases: list[ChasePoint] = field(default_factory=list)
    gemm_flops_per_s: float = 0.0             # fp32: the slope of the GEMMs' time over their batch
    # the same GEMMs in other types (:func:`_measure_types`): "bf16" F.linear, "int8" dynamic quantization
    type_gemm_flops_per_s: dict[str, float] = field(default_factory=dict)
    # per type ("fp32" too): the GEMMs' intercept per weight, what packing the weights costs a call
    gemm_pack_s_per_weight: dict[str, float] = field(default_factory=dict)
    conv_flops_per_s: float = 0.0             # fp32 F.conv2d: the slope of its time over the batch
    # the convolution one channel past a whole number of vector-wide blocks over the one at the
    # next whole number (:data:`CONV_BLOCK_PROBE`): about 1 where the library computes whole blocks
    conv_block_ratio: float = 0.0
    # the implementation oneDNN ran F.conv2d with, per k x k window (:func:`_measure_conv_implementations`)
    conv_implementations: dict[int, str] = field(default_factory=dict)
    # per batch-1 3 x 3 input size of :data:`CONV_NATIVE_PROBES` (elements): whether oneDNN ran it
    conv_onednn_inputs: dict[int, bool] = field(default_factory=dict)
    conv_call_s: float = 0.0     # the median call of :data:`CONV_CALL_PROBE`: a convolution's set-up alone
    # batch-1 GEMV in cache per type (:func:`_measure_gemv_types`): weights per second, all threads
    gemv_weights_per_s: dict[str, float] = field(default_factory=dict)
    gemv_row_s: dict[str, float] = field(default_factory=dict)         # its cost a row, all threads, per type
    gemv_beyond_s: dict[str, float] = field(default_factory=dict)      # the same over 32 MiB, per type
    # (type, columns) -> a GEMV over ``gemv_rows_bytes`` of weights beyond the last level
    # (:func:`_measure_gemv_rows`): rows of that many columns, the weights' bytes fixed
    gemv_rows_s: dict[tuple[str, int], float] = field(default_factory=dict)
    gemv_rows_bytes: int = 0
    # the tile fbgemm packs int8 weights in here, depth x rows (:func:`fbgemm_int8_tile`; None: the
    # int8 GEMV is not fbgemm's)
    int8_tile: Optional[tuple[int, int]] = None
    # columns -> an fp32 GEMV over ``gemv_cached_rows_bytes`` inside the last level's measured
    # share (:func:`_measure_gemv_cached_rows`), in rows of :data:`ROW_PROBE_COLUMNS`
    gemv_cached_rows_s: dict[int, float] = field(default_factory=dict)
    gemv_cached_rows_bytes: int = 0
    # columns -> an int8 GEMV over the same bytes in the same level, at :func:`partial_tile_depth`
    # and in the long rows (where ``int8_tile`` is known): the starts of fbgemm's tiles from there
    gemv_cached_int8_s: dict[int, float] = field(default_factory=dict)
    gemv_cached_rows_level: str = ""          # that level's name in the profile (``L3``)
    block_dispatch_s: dict[str, float] = field(default_factory=dict)   # a tiny decoder block's step, per type
    gemv_call_s: dict[str, float] = field(default_factory=dict)        # the GEMV line's intercept, per type
    elementwise_per_s: float = 0.0            # element-wise ops in cache, elements per second (all threads)
    bsr_block_s: dict[int, float] = field(default_factory=dict)        # batch -> seconds per stored block
    sparse: list[SparseTiming] = field(default_factory=list)        # every backend's
    # kind -> the backend ``bench`` picks on the middle matrix (absent: the first timing's)
    sparse_backends: dict[str, str] = field(default_factory=dict)
    sparse_beyond: list[SparseTiming] = field(default_factory=list)  # the SpMV beyond the private caches, per backend
    spmm_gathers: list[GatherProbe] = field(default_factory=list)   # each SpMM library gathering near and far
    spmv_gathers: list[GatherProbe] = field(default_factory=list)   # each SpMV library gathering near and far
    lowering: list[tuple[int, float]] = field(default_factory=list)   # F.unfold: (elements out, seconds)
    # bytes -> (filling a buffer that exists, allocating and filling one), seconds (:func:`_measure_fresh_pages`)
    fresh_fill_s: dict[int, tuple[float, float]] = field(default_factory=dict)
    # bytes -> bytes of pages one allocating fill faulted in (minor faults x page size; absent where
    # the OS counts none)
    fresh_faulted: dict[int, int] = field(default_factory=dict)
    settled: dict[str, Settled] = field(default_factory=dict)          # every measurement by name

    def sparse_of(self, kind: str, backend: Optional[str] = None) -> list[SparseTiming]:
        """The timings of one sparse kernel kind (``spmv``, ``spmm``) with ``backend`` (None: the
        one ``bench`` picks, :attr:`sparse_backends`)."""
        timings = [t for t in self.sparse if t.kind == kind]
        if backend is None:
            backend = self.sparse_backends.get(kind, timings[0].backend if timings else "")
        return [t for t in timings if t.backend == backend]

    def sparse_libraries(self) -> list[str]:
        """The backends whose SpMV and SpMM were both timed, in the order first timed."""
        timed = {kind: {t.backend for t in self.sparse if t.kind == kind} for kind in ("spmv", "spmm")}
        return [b for b in dict.fromkeys(t.backend for t in self.sparse) if b in timed["spmv"] & timed["spmm"]]

    def beyond_of(self, backend: str, index_bits: Optional[int] = None) -> Optional[SparseTiming]:
        """The SpMV beyond the private caches with ``backend``, where it was timed: over the indices
        the backend stores (``index_bits`` None), or over ``index_bits``-wide ones."""
        return next((t for t in self.sparse_beyond if t.backend == backend and t.index_bits == index_bits), None)

    @property
    def unsettled(self) -> list[str]:
        """Names of the measurements whose rounds never agreed."""
        return [name for name, s in self.settled.items() if not s.stable]

    def moved_between_looks(self, share: float = LOOKS_APART) -> list[str]:
        """Names of the measurements whose looks came out more than ``share`` apart: the host was
        busier in one of them (the best look is kept)."""
        return [name for name, s in self.settled.items() if s.looks_apart > share]


def settled(figures: Sequence[float], tolerance: float = SETTLE_TOLERANCE) -> Settled:
    """The figure of a measurement's rounds (seconds, or any cost where smaller is less
    disturbed): the smallest, stable once a second round comes within ``tolerance`` of it."""
    ordered = sorted(figures)
    spread = (ordered[1] - ordered[0]) / ordered[0] if len(ordered) > 1 and ordered[0] > 0 else math.inf
    return Settled(ordered[0], len(ordered), spread, spread <= tolerance)


_Key = TypeVar("_Key", bound=Hashable)


def settle(rounds: Mapping[_Key, Callable[[], float]], tolerance: float = SETTLE_TOLERANCE,
           max_rounds: int = MAX_ROUNDS) -> dict[_Key, Settled]:
    """Run every measurement's round, round-robin, until each has settled (:func:`settled`) or
    ``max_rounds`` have passed. Round-robin spreads other processes' bursts over the measurements
    instead of one measurement taking them all."""
    figures: dict[_Key, list[float]] = {key: [] for key in rounds}
    pending = list(rounds)
    for _ in range(max_rounds):
        for key in pending:
            figures[key].append(rounds[key]())
        pending = [key for key in pending if not settled(figures[key], tolerance).stable]
        if not pending:
            break
    return {key: settled(values, tolerance) for key, values in figures.items()}


def _typical_time(call: Callable[[], Any], min_calls: int = 5, budget_s: float = 0.15) -> float:
    """The median call of a run of calls: the figure every throughput probe keeps, as ``bench``
    keeps a layer's median call and a decode sums thousands of calls. A run's fastest call is a
    moment when the host's other guests left the DRAM, the L3 and the cores' siblings alone; a
    frame or a token is timed through the typical moments (on the 2-vCPU Zen 3 guest the median
    call of a GEMV streaming from DRAM was 5-15% slower than its fastest). Rounds of these
    (:func:`settle`) keep the best round, as ``crosscheck`` keeps a bench's fastest run."""
    return statistics.median(_call_times(call, min_calls, budget_s))


def _call_times(call: Callable[[], Any], min_calls: int, budget_s: float) -> list[float]:
    """Seconds of each call after one warm-up, until both ``min_calls`` and ``budget_s`` are reached."""
    call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < budget_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2000:
            break
    return times


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _chase_kernels():
    """The compiled pointer-chase loops (numba; compiled on first use)."""
    from numba import njit

    @njit(cache=False, nogil=True)
    def chase(next_index, start, steps):
        p = start
        for _ in range(steps):
            p = next_index[p]
        return p

    @njit(cache=False, nogil=True)
    def chase_many(next_index, starts, steps):
        # independent chains advanced in turn: their misses can be in flight together
        positions = starts.copy()
        for _ in range(steps):
            for j in range(positions.size):
                positions[j] = next_index[positions[j]]
        return positions.sum()

    return chase, chase_many


def _clock_kernel():
    """A dependent chain of ALU operations (numba): ``x ^= x >> 1`` is a shift and an xor, two
    one-cycle operations on every x86 core since the P6, each waiting for the one before (the
    loop's own counter runs beside them), so the chain takes :data:`CYCLES_PER_CLOCK_STEP`
    cycles a step whatever the clock."""
    from numba import njit

    @njit(cache=False, nogil=True)
    def chain(x, steps):
        for _ in range(steps):
            x ^= x >> 1
        return x

    return chain


#: Cycles one step of :func:`_clock_kernel`'s chain takes on x86.
CYCLES_PER_CLOCK_STEP = 2
CLOCK_STEPS = 2_000_000        # about a millisecond: shorter than a scheduler time slice
#: Machines (``platform.machine()``) whose clock is measured; elsewhere lscpu's holds (an ARM core
#: may fuse the shift into the xor, which would halve the cycles a step).
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def cyclic_chain(size_bytes: int, line_bytes: int, seed: int = 0) -> np.ndarray:
    """A random cyclic permutation over the lines of a ``size_bytes`` array, one int64 per line
    used: following ``next[p]`` from any line visits every line once, in random order
    (defeating prefetchers), before coming back."""
    stride = line_bytes // 8
    lines = max(2, size_bytes // line_bytes)
    order = np.random.default_rng(seed).permutation(lines).astype(np.int64) * stride
    chain = np.zeros(lines * stride, dtype=np.int64)
    chain[order] = np.roll(order, -1)
    return chain


def thread_seconds(call: Callable[[], Any]) -> float:
    """CPU seconds the calling thread spends in ``call``: for the single-threaded numba loops (the
    clock chain, the pointer chases). While the scheduler gives the core to another process this
    clock stops and the wall clock does not: on a busy 2-core machine a 0.2 s walk got half a core
    and looked twice as slow by the wall clock."""
    t0 = time.thread_time()
    call()
    return time.thread_time() - t0


def chase_latency_s(chase, chain: np.ndarray, steps: int) -> float:
    """Seconds per dependent load of one walk of ``steps`` over ``chain`` (thread CPU time)."""
    return thread_seconds(lambda: chase(chain, 0, steps)) / steps


def csr_with_rows(rows: int, depth: int, nonzeros: int, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pointers, indices, values) of a ``rows`` x ``depth`` CSR matrix with ``nonzeros // rows``
    non-zeros in every row, at distinct sorted random columns (one in each of that many equal
    bands, so no row repeats a column)."""
    per_row = max(1, min(depth, nonzeros // rows))
    band = depth // per_row
    rng = np.random.default_rng(seed)
    columns = rng.integers(0, band, size=(rows, per_row)) + np.arange(per_row) * band
    pointers = np.arange(rows + 1, dtype=np.int32) * per_row
    values = rng.random(rows * per_row, dtype=np.float32)
    return pointers, columns.reshape(-1).astype(np.int32), values


# --- the measurement steps ----------------------------------------------------------------------

@dataclass
class Session:
    """What the measurement steps share: the machine, the threads, and the measurements so far."""

    threads: int
    caches: Sequence[SysfsCache]
    cpu: CpuInfo
    m: Measurements
    progress: Callable[[str], None]
    scratch: dict[str, Any] = field(default_factory=dict)   # data one step hands the next (the DRAM chain)
    look: int = 1                                            # the pass over the steps (:data:`LOOKS`)
    earlier: dict[str, Settled] = field(default_factory=dict)   # the earlier looks' measurements, by name

    @property
    def line_bytes(self) -> int:
        """The last level's line: what DRAM moves."""
        return self.caches[-1].line_bytes if self.caches else LINE_BYTES_DEFAULT

    def measured_llc_bytes(self) -> int:
        """The last level's share as the working-set curve measured so far shows it
        (:func:`effective_llc_bytes`; the granule where the curve shows no level)."""
        return effective_llc_bytes(self.m.working_set, private_bytes(self.caches, self.cpu.cores),
                                   self.line_bytes * (self.caches[-1].ways if self.caches else 1))[0]

    def record(self, results: Mapping[_Key, Settled], name: Callable[[_Key], str] = str
               ) -> dict[_Key, float]:
        """Keep each settled measurement under its name, at its best look so far
        (:meth:`Settled.best_of`); return the figures by key."""
        kept = {}
        for key, result in results.items():
            before = self.earlier.get(name(key))
            kept[key] = self.m.settled[name(key)] = result if before is None else before.best_of(result)
        return {key: result.value for key, result in kept.items()}


@dataclass(frozen=True)
class Step:
    """One measurement of ``calibrate``: the progress label, the function that runs it, and the
    plausibility checks (names in :data:`CHECKS`) its figures allow at once, so that a machine
    too busy to measure is refused early instead of after the whole minute."""

    label: str
    run: Callable[[Session], None]
    checks: tuple[str, ...] = ()


def _measure_clock(s: Session) -> None:
    """One core's clock, from the time a dependent ALU chain takes (:func:`_clock_kernel`): a VM
    reports its host's base clock, and a core in turbo runs well above it (a GEMM would then
    seem to beat the peak). x86 only."""
    if platform.machine().lower() not in X86_MACHINES:
        return
    chain = _clock_kernel()
    chain(0x5555, 10)                                                  # compile

    def run() -> float:      # seconds a cycle: the best of short walks, each on the thread's CPU time
        return min(thread_seconds(lambda: chain(0x5555555555555, CLOCK_STEPS)) for _ in range(10)) \
            / (CYCLES_PER_CLOCK_STEP * CLOCK_STEPS)
    s.m.clock_hz = 1.0 / s.record(settle({"clock": run}))["clock"]


def _measure_overhead(s: Session) -> None:
    """The per-call overhead (median of a 16 x 16 torch.mv), and a 256 x 256 torch.mv on all
    threads and on one: a machine whose threads do not get cores of their own makes the
    threaded call far slower than the one-thread call (the plausibility check ``threads``)."""
    import torch

    tiny_w, tiny_x = torch.rand(16, 16), torch.rand(16)
    small_w, small_x = torch.rand(256, 256), torch.rand(256)
    got = s.record(settle({
        "per-call overhead": lambda: _typical_time(lambda: torch.mv(tiny_w, tiny_x), min_calls=200, budget_s=0.1),
        "256 x 256 GEMV": lambda: _typical_time(lambda: torch.mv(small_w, small_x), min_calls=50, budget_s=0.05)}))
    with _torch_threads(1):
        one = s.record(settle({"256 x 256 GEMV, one thread":
                               lambda: _typical_time(lambda: torch.mv(small_w, small_x), min_calls=50, budget_s=0.05)}))
    s.m.launch_overhead_s = got["per-call overhead"]
    s.m.small_gemv_s = got["256 x 256 GEMV"]
    s.m.small_gemv_one_thread_s = one["256 x 256 GEMV, one thread"]
    share = cpu_share(s.m.threads)     # a larger share is a less disturbed look
    s.m.cpu_share = share if s.look == 1 else max(s.m.cpu_share, share)


def cpu_share(threads: int, window_s: float = CPU_SHARE_WINDOW_S) -> float:
    """The share of ``threads`` cores the process gets while its threads run GEMMs for ``window_s``:
    CPU time over wall time x threads. Best-of-N timings cannot see another process that holds a
    core (some calls still get both); this can: with one core busy elsewhere, two threads get
    about two thirds of two cores, whoever is faster in a single call."""
    import torch

    a = torch.rand(384, 384)
    torch.mm(a, a)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < window_s:
        torch.mm(a, a)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return cpu / (wall * max(1, threads))


def _measure_stream(s: Session) -> None:
    """STREAM-like read (``torch.sum``), fill and triad over 256 MiB arrays, and one thread's read:
    with the hardware prefetchers, the lines a core keeps in flight on a sequential stream
    (Little's law with the DRAM latency). The fill against the read gives what a line written back
    costs DRAM (:func:`writeback_cost`)."""
    import torch

    n = (256 << 20) // 4
    a, b, c = torch.rand(n), torch.rand(n), torch.rand(n)
    got = s.record(settle({
        "STREAM read": lambda: _typical_time(lambda: torch.sum(a), min_calls=5, budget_s=0.3),
        "STREAM fill": lambda: _typical_time(lambda: a.fill_(1.5), min_calls=5, budget_s=0.3),
        "STREAM triad": lambda: _typical_time(lambda: torch.add(b, c, alpha=3.0, out=a), min_calls=5, budget_s=0.3)}))
    with _torch_threads(1):
        one = s.record(settle({"STREAM read, one thread":
                               lambda: _typical_time(lambda: torch.sum(a), min_calls=3, budget_s=0.2)}))
    s.m.stream_read_bytes_per_s = 4 * n / got["STREAM read"]
    s.m.stream_triad_bytes_per_s = 3 * 4 * n / got["STREAM triad"]
    s.m.stream_fill_bytes_per_s = 4 * n / got["STREAM fill"]
    s.m.stream_read_one_thread_bytes_per_s = 4 * n / one["STREAM read, one thread"]


#: Buffers :func:`_measure_fresh_pages` fills: one below glibc's largest mmap threshold (its freed
#: memory is reused, call after call) and one above it (mapped and unmapped at every call).
FRESH_PAGE_BYTES = (16 * MiB, 64 * MiB)
#: glibc's ceiling on its dynamic mmap threshold on 64-bit Linux (``DEFAULT_MMAP_THRESHOLD_MAX``,
#: malloc/malloc.c: 4 x 1 MiB x sizeof(long)): a request above it is always a fresh mapping.
GLIBC_MMAP_THRESHOLD_MAX = 32 * MiB


def _measure_fresh_pages(s: Session) -> None:
    """Each of :data:`FRESH_PAGE_BYTES` filled as a buffer that exists and as a buffer allocated for
    the call (``torch.empty(n).fill_``, what a kernel does to its output): the difference is the
    OS faulting in (and zeroing) the pages of a fresh mapping, where the allocator made one. The
    pages one allocating fill faults in are counted too: whether the allocator mapped the buffer
    afresh is then a count, not a ratio of two noisy times.

    It runs in a new process: after the other steps this one's heap may hold a free 64 MiB chunk
    (glibc serves a request from one before it maps a new one), and then nothing faults here
    although a layer early in a run, or in ``bench``, faults at every call."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..base.workers import init_worker, result, worker_initargs

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=worker_initargs()) as pool:
        settled_fills, faulted = result(pool.submit(fresh_fills, s.threads))
    got = s.record(settled_fills, name=_fresh_label)
    s.m.fresh_fill_s = {size: (got[(size, False)], got[(size, True)]) for size in FRESH_PAGE_BYTES}
    s.m.fresh_faulted = faulted if any(faulted.values()) else {}    # no faults counted: the times alone decide


def fresh_fills(threads: int) -> tuple[dict[tuple[int, bool], Settled], dict[int, int]]:
    """In this process, on ``threads`` torch threads: every fill of :func:`_measure_fresh_pages`,
    settled, by (bytes, fresh); and the bytes of pages one allocating fill of each size faulted in."""
    import torch

    from .bench import PAGE_BYTES, minor_faults

    torch.set_num_threads(threads)

    def fill(size: int, fresh: bool) -> Callable[[], float]:
        n = size // 4
        kept = torch.empty(n)
        call = (lambda: torch.empty(n).fill_(1.0)) if fresh else (lambda: kept.fill_(1.0))
        return lambda: _typical_time(call, min_calls=5, budget_s=0.1)
    keys = [(size, fresh) for size in FRESH_PAGE_BYTES for fresh in (False, True)]
    fills = settle({key: fill(*key) for key in keys})
    faulted = {}
    for size in FRESH_PAGE_BYTES:
        before = minor_faults()
        torch.empty(size // 4).fill_(1.0)
        faulted[size] = (minor_faults() - before) * PAGE_BYTES
    return fills, faulted


def _fresh_label(key: tuple[int, bool]) -> str:
    return f"fill of {'a fresh' if key[1] else 'an existing'} {key[0] // MiB} MiB buffer"


def working_set_sizes(claimed_llc_bytes: int, memory_bytes: int) -> list[int]:
    """The sweep's sizes (bytes): :data:`WORKING_SET_MIB`, then, when sysfs claims a last level
    beyond half of them, steps of sqrt(2) up to four times the claim (so the claim is measured,
    never taken on trust, and the fall from the last level to DRAM is sampled wherever it lies:
    a VM that claims 300 MB may keep 120 MB), within a quarter of the memory."""
    sizes = [int(mib * MiB) for mib in WORKING_SET_MIB]
    cap = memory_bytes // 4 if memory_bytes else sizes[-1]
    top = min(4 * claimed_llc_bytes, cap)
    if 2 * claimed_llc_bytes > sizes[-1]:
        while sizes[-1] < top:
            sizes.append(min(top, int(sizes[-1] * math.sqrt(2)) // MiB * MiB))
    return sizes


def _gemv_round(size: int, overhead_s: float) -> Callable[[], float]:
    """One round of the working-set sweep at ``size`` bytes: the median torch.mv over one matrix,
    its per-call overhead removed (but never below a tenth of the call)."""
    def run() -> float:
        import torch

        cols = WORKING_SET_COLUMNS
        rows = max(1, size // (4 * cols))
        w, x = torch.full((rows, cols), 0.5), torch.rand(cols)
        t = _typical_time(lambda: torch.mv(w, x), min_calls=10, budget_s=0.05 if size < 64 * MiB else 0.15)
        return max(t - overhead_s, 0.1 * t)
    return run


def _measure_working_set(s: Session) -> None:
    """GEMV bandwidth against the working-set size, round-robin over the sizes."""
    claimed = s.caches[-1].size_bytes if s.caches else 0
    sizes = working_set_sizes(claimed, s.cpu.memory_bytes)
    rows = {size: max(1, size // 4096) * 4096 for size in sizes}      # the bytes the matrix really has
    got = s.record(settle({size: _gemv_round(size, s.m.launch_overhead_s) for size in sizes}),
                   name=lambda size: f"GEMV over {size / MiB:.4g} MiB")
    s.m.working_set = [WorkingSetPoint(rows[size], rows[size] / busy) for size, busy in got.items()]


@dataclass(frozen=True)
class GemmLine:
    """A GEMM's time as an affine function of its batch: the multiply-adds' rate (the slope) and the
    time per weight of packing the weights once per call (the intercept)."""

    flops_per_s: float
    pack_s_per_weight: float


def gemm_shapes() -> list[tuple[int, int, int]]:
    """Every GEMM calibrate times: :data:`GEMM_SHAPES` at their batch and at :data:`GEMM_WIDE_BATCH`."""
    return [*GEMM_SHAPES, *((r, c, GEMM_WIDE_BATCH) for r, c, _ in GEMM_SHAPES)]


@dataclass(frozen=True)
class BatchPair:
    """One shape timed at two batches (median calls, less the per-call overhead; ``wide_s`` None where
    the wide batch was not timed), with its multiply-add FLOPs per batch item and its weights."""

    narrow_s: float
    wide_s: Optional[float]
    narrow_batch: int
    wide_batch: int
    flops_per_item: float
    weights: int


def batch_line(pairs: Sequence[BatchPair]) -> GemmLine:
    """The medians over ``pairs`` of each shape's line through its two batches: rate ``flops_per_item``
    per second of added batch item, and intercept per weight. A shape whose wider batch did not take
    longer (noise) gives no slope; if none does, the rate is the narrow batches', with no packing."""
    rates, packs = [], []
    for p in pairs:
        if p.wide_s is None or p.wide_s <= p.narrow_s:
            continue
        per_item_s = (p.wide_s - p.narrow_s) / (p.wide_batch - p.narrow_batch)
        rates.append(p.flops_per_item / per_item_s)
        packs.append(max(0.0, p.narrow_s - p.narrow_batch * per_item_s) / p.weights)
    if not rates:
        return GemmLine(statistics.median(p.flops_per_item * p.narrow_batch / p.narrow_s for p in pairs), 0.0)
    return GemmLine(statistics.median(rates), statistics.median(packs))


def gemm_line(times: Mapping[tuple[int, int, int], float], overhead_s: float = 0.0) -> GemmLine:
    """:func:`batch_line` of :data:`GEMM_SHAPES` at their batch and :data:`GEMM_WIDE_BATCH`, from
    each call's best time less the per-call ``overhead_s``: ``2 x rows x cols`` FLOPs per batch row."""
    def pair(rows: int, cols: int, batch: int) -> BatchPair:
        wide = times.get((rows, cols, GEMM_WIDE_BATCH))
        return BatchPair(times[(rows, cols, batch)] - overhead_s, None if wide is None else wide - overhead_s,
                         batch, GEMM_WIDE_BATCH, 2.0 * rows * cols, rows * cols)
    return batch_line([pair(*shape) for shape in GEMM_SHAPES])


def _gemm_label(shape: tuple[int, int, int], dtype: str = "fp32") -> str:
    return "GEMM {} x {} at batch {}".format(*shape) + ("" if dtype == "fp32" else f" in {dtype}")


def _measure_gemm_line(s: Session, dtype: str) -> GemmLine:
    """:func:`gemm_shapes` in ``dtype`` as the variant runs it, each its median call, settled; their line."""
    def gemm_round(rows: int, cols: int, batch: int) -> Callable[[], float]:
        def run() -> float:
            return _typical_time(_type_gemm_call(dtype, rows, cols, batch), min_calls=6, budget_s=0.2)
        return run
    got = s.record(settle({shape: gemm_round(*shape) for shape in gemm_shapes()}),
                   name=functools.partial(_gemm_label, dtype=dtype))
    line = gemm_line(got, s.m.launch_overhead_s)
    s.m.gemm_pack_s_per_weight[dtype] = line.pack_s_per_weight
    return line


def _measure_gemm(s: Session) -> None:
    """F.linear on :func:`gemm_shapes` in fp32: the rate of its multiply-adds and its packing
    (:func:`gemm_line`; a power-of-two leading dimension makes the packed panels alias in the caches)."""
    s.m.gemm_flops_per_s = _measure_gemm_line(s, "fp32").flops_per_s


#: The direct convolutions :func:`_measure_conv` times: (input channels, output channels, map side),
#: a 3 x 3 window with padding 1 in fp32, as ``bench`` runs a dense convolution (``F.conv2d``), at
#: batch 1 and :data:`CONV_WIDE_BATCH`; none is a layer of the shipped workloads. The slope of each
#: line through its two batches is the multiply-adds' rate. Its intercept is not a per-weight reorder
#: as a GEMM's is (it ranges over 0.5-0.8 ns a weight and one shape's is negative: oneDNN's batch-1
#: loop is slower per image than its batched one), so the convolution keeps the GEMM's packing.
#: Every input has more than the 20480 elements at batch 1 under which torch runs a small 3 x 3
#: convolution without oneDNN.
CONV_SHAPES = ((64, 128, 28), (128, 128, 14), (96, 192, 20))
CONV_WIDE_BATCH = 8
#: The channel-block probe: a convolution of this many channels in and out on a 28 x 28 map at
#: :data:`CONV_WIDE_BATCH`, against one of ``vector_lanes - 1`` channels fewer (49 for 16 lanes: one
#: channel past three whole blocks). A library that computes whole blocks of ``vector_lanes``
#: channels takes as long for both; one that does not takes the square of their ratio less.
CONV_BLOCK_PROBE = 64
CONV_BLOCK_SIDE = 28
#: The set-up probe (input channels, output channels, map side, batch): a convolution whose
#: multiply-adds (37 k FLOP) take under a microsecond, so its call is the library's set-up. Batch 2,
#: because torch runs a small batch-1 convolution without oneDNN (:data:`CONV_NATIVE_PROBES`).
CONV_CALL_PROBE = (8, 8, 4, 2)


def _conv_call(in_channels: int, out_channels: int, side: int, batch: int) -> Callable[[], Any]:
    """``F.conv2d`` of a 3 x 3 window, padding 1, fp32 (``bench``'s dense convolution)."""
    import torch

    w, x = torch.rand(out_channels, in_channels, 3, 3), torch.rand(batch, in_channels, side, side)
    return lambda: torch.nn.functional.conv2d(x, w, padding=1)


def conv_block_short(lanes: int) -> int:
    """The probe's channel count one past a whole number of ``lanes``-wide blocks."""
    return max(1, CONV_BLOCK_PROBE - lanes + 1)


def _conv_label(key: tuple[int, int, int, int]) -> str:
    return f"convolution {key[0]} -> {key[1]} channels on {key[2]} x {key[2]} at batch {key[3]}"


def _measure_conv(s: Session) -> None:
    """:data:`CONV_SHAPES` at two batches, each its median call, settled: the median slope is the conv
    kernel's rate; then the channel-block probe at :data:`CONV_WIDE_BATCH` and the set-up probe
    (:data:`CONV_CALL_PROBE`)."""
    short = conv_block_short(s.cpu.vector_lanes)
    keys = [(i, o, side, b) for i, o, side in CONV_SHAPES for b in (1, CONV_WIDE_BATCH)]
    keys += [(c, c, CONV_BLOCK_SIDE, CONV_WIDE_BATCH) for c in (CONV_BLOCK_PROBE, short)]
    keys.append(CONV_CALL_PROBE)

    def conv_round(key: tuple[int, int, int, int]) -> Callable[[], float]:
        return functools.partial(_typical_time, _conv_call(*key), 6, 0.2)
    got = s.record(settle({key: conv_round(key) for key in keys}), name=_conv_label)
    over = s.m.launch_overhead_s

    def pair(i: int, o: int, side: int) -> BatchPair:
        return BatchPair(got[(i, o, side, 1)] - over, got[(i, o, side, CONV_WIDE_BATCH)] - over, 1, CONV_WIDE_BATCH,
                         2.0 * i * o * 9 * side * side, i * o * 9)
    s.m.conv_flops_per_s = batch_line([pair(*shape) for shape in CONV_SHAPES]).flops_per_s
    full = got[(CONV_BLOCK_PROBE, CONV_BLOCK_PROBE, CONV_BLOCK_SIDE, CONV_WIDE_BATCH)]
    s.m.conv_block_ratio = got[(short, short, CONV_BLOCK_SIDE, CONV_WIDE_BATCH)] / full
    s.m.conv_call_s = got[CONV_CALL_PROBE]


#: The k x k windows whose convolution :func:`_measure_conv_implementations` has oneDNN name.
CONV_WINDOWS = (3, 5, 7, 9, 11)
#: Batch-1 3 x 3 convolutions of 5 channels on 64 x (width) maps whose oneDNN log says which input
#: sizes torch hands to oneDNN (:func:`native_max_input_elements`): inputs of 5 x 64 x width elements.
CONV_NATIVE_WIDTHS = (32, 64, 65, 128)
CONV_NATIVE_PROBES = tuple(5 * 64 * width for width in CONV_NATIVE_WIDTHS)
#: A child interpreter that runs one small F.conv2d per window, each followed by a marker line, then
#: the batch-1 input probes, each followed by its own.
_CONV_IMPLEMENTATION_SCRIPT = """
import torch, torch.nn.functional as F
for k in {windows}:
    F.conv2d(torch.rand(1, 16, 32, 32), torch.rand(16, 16, k, k), padding=k // 2)
    print("WINDOW", k, flush=True)
for width in {widths}:
    F.conv2d(torch.rand(1, 5, 64, width), torch.rand(5, 5, 3, 3), padding=1)
    print("INPUT", 5 * 64 * width, flush=True)
"""


def _marked_runs(log: str) -> Iterator[tuple[str, int, Optional[str]]]:
    """Each marker line of oneDNN's verbose ``log`` (``WINDOW k``, ``INPUT n``: its word and number)
    with the implementation of the last convolution the log names since the previous marker (None:
    it names none, another backend ran it or there is no oneDNN)."""
    last = None
    for line in log.splitlines():
        match = re.search(r"exec,cpu,convolution,([^,]+),", line)
        if match:
            last = match.group(1)
        elif line.startswith(("WINDOW ", "INPUT ")):
            word, number = line.split()[:2]
            yield word, int(number), last
            last = None


def conv_implementations(log: str) -> dict[int, str]:
    """Per window, the implementation oneDNN's verbose ``log`` names for the convolution run before
    the window's marker line (none where the log names none: another backend, or no oneDNN)."""
    return {window: impl for word, window, impl in _marked_runs(log) if word == "WINDOW" and impl is not None}


def onednn_inputs(log: str) -> dict[int, bool]:
    """Per batch-1 input probe (elements), whether oneDNN's verbose ``log`` names a convolution run
    between the previous marker line and the probe's."""
    return {size: impl is not None for word, size, impl in _marked_runs(log) if word == "INPUT"}


def native_max_input_elements(onednn: Mapping[int, bool]) -> Optional[int]:
    """The largest batch-1 input the framework kept from oneDNN, where every probe up to it was kept
    and every larger one ran on oneDNN (torch's rule is a threshold); None where the probes show no
    such step (oneDNN ran them all, or none: no oneDNN to hand them to)."""
    sizes = sorted(onednn)
    kept = [size for size in sizes if not onednn[size]]
    if not kept or len(kept) == len(sizes) or sizes[:len(kept)] != kept:
        return None
    return kept[-1]


def direct_max_kernel(implementations: Mapping[int, str]) -> Optional[int]:
    """The widest window before the first that oneDNN runs as im2col + GEMM (an implementation
    named ``gemm``): None where every window ran direct, or none was named."""
    widest = None
    for window in sorted(implementations):
        if "gemm" in implementations[window]:
            return widest
        widest = window
    return None


def _measure_conv_implementations(s: Session) -> None:
    """Which convolutions oneDNN runs lowered, and which torch keeps from it: one F.conv2d per window
    of :data:`CONV_WINDOWS`, then one per batch-1 input of :data:`CONV_NATIVE_PROBES`, in a child
    interpreter with oneDNN's verbose log on (the log goes to the process's own stdout)."""
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    script = _CONV_IMPLEMENTATION_SCRIPT.format(windows=CONV_WINDOWS, widths=CONV_NATIVE_WIDTHS)
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return
    s.m.conv_implementations = conv_implementations(done.stdout)
    s.m.conv_onednn_inputs = onednn_inputs(done.stdout)


#: The types whose GEMM rate :func:`_measure_types` measures, and what runs each: the variants
#: ``bench --format`` times (``dense@bf16``: F.linear in bfloat16; ``dense@int8``: torch's dynamic
#: quantization, ``torch.ops.quantized.linear_dynamic`` on int8 weights packed by ``quantize_dynamic``).
TYPE_KERNELS = {"bf16": "F.linear on bfloat16 weights and input",
                "int8": "torch.ops.quantized.linear_dynamic (quantize_dynamic's int8 weights, the input quantized "
                        "on the fly)"}


def _type_gemm_call(dtype: str, rows: int, cols: int, batch: int) -> Callable[[], Any]:
    """A ``rows`` x ``cols`` F.linear at ``batch`` as the ``dtype`` variant runs it (:data:`TYPE_KERNELS`;
    ``fp32``: plain F.linear)."""
    import torch

    g, xb = torch.rand(rows, cols), torch.rand(batch, cols)
    if dtype == "fp32":
        return lambda: torch.nn.functional.linear(xb, g)
    if dtype == "bf16":
        gb, xbb = g.to(torch.bfloat16), xb.to(torch.bfloat16)
        return lambda: torch.nn.functional.linear(xbb, gb)
    from .variantbench import int8_linear_call

    return int8_linear_call(g, xb)


def _gemv_label(dtype: str, shape: tuple[int, int]) -> str:
    return f"GEMV {shape[0]} x {shape[1]} in {dtype}"


def _dispatch_label(weights: str, blocks: int) -> str:
    return f"decode step of {blocks} tiny block(s) in {weights}"


def _sparse_label(kind: str, backend: str, key: tuple[int, int, int]) -> str:
    rows, nonzeros, batch = key
    return f"{kind} {rows} rows, {nonzeros} non-zeros at batch {batch} ({backend})"


def _measure_types(s: Session) -> None:
    """The GEMMs of :func:`_measure_gemm` in bf16 and int8 (dynamic quantization): each type's rate
    (what the cost model's ``peak_flops.bf16`` / ``int8`` are scaled from, :func:`type_peaks`) and
    packing."""
    for dtype in TYPE_KERNELS:
        s.m.type_gemm_flops_per_s[dtype] = _measure_gemm_line(s, dtype).flops_per_s


#: The cache-resident GEMVs :func:`_measure_gemv_types` times: rows of :data:`GEMV_LOOP_COLUMNS`
#: weights, the same bytes in every type, at most 2 MiB (half a MiB per core of two: inside every
#: private L2 this project has met, or its L3), so the loop's issue rate shows, not DRAM's bandwidth.
#: The same bytes put every type's two GEMVs in the same level and make each type's span of work
#: four times its smaller call's: int8 in fp32's rows (128 and 512 x 1024) spanned 8 us of loop
#: against a 20-30 us call (its input quantized, Zen 3 VM), and one slow call read as a third of
#: the rate.
GEMV_LOOP_BYTES = (512 * 1024, 2 * MiB)
GEMV_LOOP_COLUMNS = 1024
GEMV_LOOP_TYPES = ("fp32", "bf16", "int8")
#: The same GEMVs on 32 MiB of weights in every type: beyond the private caches, so each type's
#: loop meets a memory level's bandwidth; fp32's (a streaming loop, far faster in cache than its
#: memory) is the probe of that bandwidth for the others (:func:`gemv_load_overlaps`).
GEMV_BEYOND_BYTES = 32 * MiB


#: The row lengths of the loop probe's other GEMVs (:func:`gemv_loop_shapes`): the larger loop
#: GEMV's bytes again in short and in long rows, for every type but fp32, whose loop streams from
#: the level that holds it near that level's bandwidth and whose rows start there
#: (``cached_row_start``). A loop that converts each weight has its own cost per row (the row's
#: accumulators reduced across the lanes, converted and stored): torch's bf16 GEMV on the Zen 3
#: guest, 2 threads, in cache, took 18.6 ns a row on top of 0.094 ns a weight (8.9 G weights/s in
#: rows of 896, 10.5 in rows of 4864), affine from rows of 256 columns to 16000. Rows of 1024 and
#: 16000 alone told it within a factor of three (40 and 120 cycles a core in two calibrations an
#: hour apart): their 16:1 rows are a sixth of the time; rows of 256 make the rows half of it.
GEMV_ROW_COLUMNS = (256, 16000)


def gemv_loop_rows(dtype: str) -> tuple[int, ...]:
    """The rows of the cache-resident GEMVs in ``dtype`` (:data:`GEMV_LOOP_BYTES` of its weights):
    fp32 128 and 512 rows, int8 512 and 2048."""
    return tuple(size // TYPE_BYTES[dtype] // GEMV_LOOP_COLUMNS for size in GEMV_LOOP_BYTES)


@dataclass(frozen=True)
class LoopLine:
    """A GEMV's time in its weights and rows: ``call_s + rows x row_s + weights / weights_per_s``
    (``row_s`` 0 where the rows' cost was not told apart)."""

    weights_per_s: float
    call_s: float
    row_s: float = 0.0


def loop_line(points: Mapping[int, float]) -> Optional[LoopLine]:
    """The least-squares line through ``{weights: seconds}``: its slope the loop's seconds a weight,
    its intercept the call's own work. None without a positive slope."""
    if len(points) < 2:
        return None
    slope, intercept = np.polyfit(np.array(list(points), dtype=float), np.array(list(points.values())), 1)
    return LoopLine(1.0 / float(slope), float(intercept)) if slope > 0 else None


def loop_plane(points: Mapping[tuple[int, int], float]) -> Optional[LoopLine]:
    """The least-squares fit of ``{(rows, columns): seconds}`` to ``call + rows x row + weights x
    weight``: GEMVs in rows of two lengths tell the rows' cost from the weights'. Where the rows
    cost nothing measurable (a negative row cost, which is noise) or the points have one row length,
    the line through the weights (:func:`loop_line`) of the points in the most common length."""
    lengths = {cols for _, cols in points}
    if len(lengths) > 1 and len(points) >= 3:
        keys = list(points)
        a = np.array([[1.0, rows, rows * cols] for rows, cols in keys])
        call, row, weight = np.linalg.lstsq(a, np.array([points[k] for k in keys]), rcond=None)[0]
        if row > 0 and weight > 0:
            return LoopLine(1.0 / float(weight), float(call), float(row))
    common = max(lengths, key=lambda c: sum(cols == c for _, cols in points))
    return loop_line({rows * cols: t for (rows, cols), t in points.items() if cols == common})


def gemv_loop_shapes(dtype: str) -> list[tuple[int, int]]:
    """(rows, columns) of the cache-resident loop GEMVs in ``dtype``: :func:`gemv_loop_rows` x
    :data:`GEMV_LOOP_COLUMNS`, and but for fp32 the larger one's bytes in rows of each of
    :data:`GEMV_ROW_COLUMNS`."""
    shapes = [(rows, GEMV_LOOP_COLUMNS) for rows in gemv_loop_rows(dtype)]
    if dtype == "fp32":
        return shapes
    weights = GEMV_LOOP_BYTES[-1] // TYPE_BYTES[dtype]
    return shapes + [(max(1, weights // cols), cols) for cols in GEMV_ROW_COLUMNS]


def _measure_gemv_types(s: Session) -> None:
    """Batch-1 F.linear of :func:`gemv_loop_shapes` in each type of :data:`GEMV_LOOP_TYPES`, as the
    variants run it: the fit through the shapes (:func:`loop_plane`: weights per second and, where
    the rows of two lengths tell it, seconds a row, the per-call work cancelling) is the inner
    loop's issue rate."""
    for dtype in GEMV_LOOP_TYPES:
        def gemv_round(shape: tuple[int, int], dtype: str = dtype) -> Callable[[], float]:
            def run() -> float:
                return _typical_time(_type_gemm_call(dtype, *shape, 1), min_calls=20, budget_s=0.1)
            return run
        got = s.record(settle({shape: gemv_round(shape) for shape in gemv_loop_shapes(dtype)}),
                       name=functools.partial(_gemv_label, dtype))
        line = loop_plane(dict(got))
        if line is not None:
            s.m.gemv_weights_per_s[dtype] = line.weights_per_s
            if line.row_s > 0:
                s.m.gemv_row_s[dtype] = line.row_s
            # the fit's intercept: what a call costs whatever its size, beyond the launch overhead
            s.m.gemv_call_s[dtype] = max(0.0, line.call_s - s.m.launch_overhead_s)
    beyond = {dtype: GEMV_BEYOND_BYTES // TYPE_BYTES[dtype] // GEMV_LOOP_COLUMNS for dtype in GEMV_LOOP_TYPES}

    def beyond_round(dtype: str) -> Callable[[], float]:
        def run() -> float:
            return _typical_time(_type_gemm_call(dtype, beyond[dtype], GEMV_LOOP_COLUMNS, 1), min_calls=5, budget_s=0.1)
        return run
    beyond_s = s.record(settle({dtype: beyond_round(dtype) for dtype in GEMV_LOOP_TYPES}),
                        name=lambda dtype: f"GEMV over {GEMV_BEYOND_BYTES // MiB} MiB in {dtype}")
    s.m.gemv_beyond_s = dict(beyond_s)


#: The GEMVs :func:`_measure_gemv_rows` times far beyond the last level: fp32 in rows of the short
#: and of the long length (the same bytes in 16 times fewer rows: a row is a stream the library
#: starts, so the rows' count shows as the difference), every type in the short rows, and
#: :data:`STREAM_TYPE` in the long ones too (the DRAM's own rate, :func:`row_streams`). Neither
#: is a multiple of a 4 KiB page: rows of exactly a page start cheaper than the rows around them
#: (fp32 from DRAM on the Zen 3 guest, 2 threads: 1024 columns 211 ns a row, 1000 and 1048 columns
#: 227 and 231 ns), and a layer's rows are mostly not (Qwen2.5's 896 and 4864 columns), so a probe
#: of page rows set every other row's start a third too low.
ROW_PROBE_COLUMNS = (1000, 16000)
#: The row probe's largest weights (int8's are quantized from fp32 ones four times as large).
ROW_PROBE_MAX_BYTES = 128 * MiB
#: The type whose GEMV has the lightest loop a byte: beyond the caches it streams at the DRAM's own
#: rate where fp32's waits for part of its loop (Zen 3 guest, 2 threads, 128 MiB: int8 26-33 GB/s
#: and no slower in rows of 1000 B than of 64000 B; fp32 in rows of 16000 columns 18-21, with its
#: loop at 36-46 GB/s in cache; a STREAM-like sum 27-32).
STREAM_TYPE = "int8"
#: The tile fbgemm packs int8 weights in for 32-bit accumulation (KCB x NCB of
#: ``PackingTraits<int8_t, int32_t, ISA>``, fbgemm/PackingTraits-inl.h as torch 2.13 ships it), by
#: the instruction set it picks at run time, first match: AVX-512 VNNI, AVX-512 (F, BW, DQ, VL),
#: AVX2. Every tile of a depth block takes the whole block's bytes, a last partial block's too.
FBGEMM_INT8_TILES: tuple[tuple[frozenset[str], tuple[int, int]], ...] = (
    (frozenset({"avx512_vnni", "avx512f", "avx512bw", "avx512dq", "avx512vl"}), (512, 48)),
    (frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"}), (256, 32)),
    (frozenset({"avx2"}), (512, 8)),
)


def fbgemm_int8_tile(flags: frozenset[str], engine: str) -> Optional[tuple[int, int]]:
    """The depth x rows tile fbgemm packs int8 weights in on a CPU with ``flags``, where torch's
    quantized ``engine`` runs its dynamic linear on fbgemm (``x86``, ``fbgemm``); else None."""
    if engine not in ("x86", "fbgemm"):
        return None
    return next((tile for needs, tile in FBGEMM_INT8_TILES if needs <= flags), None)


def partial_tile_depth(tile: tuple[int, int]) -> int:
    """The depth of the row probe's int8 GEMV whose last depth block is half full (768 for a
    512-deep tile): each of that block's tiles a run and a gap of half a tile, the middle of the
    gaps a layer has (Qwen2.5's 896 and 4864 columns leave 1 and 2 KiB)."""
    return tile[0] * 3 // 2


def short_columns(dtype: str, tile: Optional[tuple[int, int]]) -> int:
    """The row probe's short rows in ``dtype``: :data:`ROW_PROBE_COLUMNS`' shorter length, but int8
    packed in tiles takes the nearest whole number of tile depths (1024 for 512-deep tiles), so that
    its time holds no tile starts and its ``load_overlap`` is judged against its bytes alone."""
    short = ROW_PROBE_COLUMNS[0]
    if dtype != "int8" or tile is None:
        return short
    return max(tile[0], round(short / tile[0]) * tile[0])


def packed_streams(tile: Optional[tuple[int, int]], size: int, cols: int) -> int:
    """The streams an int8 GEMV over ``size`` bytes in rows of ``cols`` starts beyond its one: the
    tiles of a partly full last depth block (:meth:`PackedTile.partial_tiles`); 0 without a tile."""
    if tile is None:
        return 0
    return PackedTile(depth=tile[0], rows=tile[1]).partial_tiles(size // cols, cols)


def row_probe_bytes(claimed_llc_bytes: int, memory_bytes: int) -> int:
    """Weights of the row probe: four times the last level sysfs claims (at twice a 32 MiB L3, a Zen 4
    guest's long rows still hit it: 28 GB/s over 64 MiB against 24 over 128), at least
    :data:`GEMV_BEYOND_BYTES`, at most :data:`ROW_PROBE_MAX_BYTES` and an eighth of the memory (a
    multiple of the longest row in every type)."""
    size = min(max(GEMV_BEYOND_BYTES, 4 * claimed_llc_bytes), ROW_PROBE_MAX_BYTES)
    if memory_bytes:
        size = min(size, memory_bytes // 8)
    quantum = ROW_PROBE_COLUMNS[-1] * max(TYPE_BYTES.values())
    return max(quantum, size // quantum * quantum)


def _measure_gemv_rows(s: Session) -> None:
    """Batch-1 F.linear over :func:`row_probe_bytes` of weights (beyond the last level): fp32 in
    rows of each of :data:`ROW_PROBE_COLUMNS` columns, bf16 and int8 in the short rows, and
    :data:`STREAM_TYPE` in the long rows too."""
    size = row_probe_bytes(s.caches[-1].size_bytes if s.caches else 0, s.cpu.memory_bytes)
    short, long_ = ROW_PROBE_COLUMNS
    keys = [("fp32", short), ("fp32", long_),
            *((dtype, short_columns(dtype, s.m.int8_tile)) for dtype in GEMV_LOOP_TYPES if dtype != "fp32"),
            (STREAM_TYPE, long_)]
    if s.m.int8_tile is not None:       # fbgemm's partial tiles, each a stream (:func:`packed_starts`)
        keys.append(("int8", partial_tile_depth(s.m.int8_tile)))

    got = s.record(settle({key: _rows_round(*key, size, s.m.launch_overhead_s, 5, 0.1) for key in keys}),
                   name=_rows_label)
    s.m.gemv_rows_s = dict(got)
    s.m.gemv_rows_bytes = size


def _rows_round(dtype: str, cols: int, size: int, overhead_s: float, min_calls: int,
                budget_s: float) -> Callable[[], float]:
    """One round of a row probe: the median batch-1 GEMV over ``size`` bytes of ``dtype`` weights in
    rows of ``cols`` columns, less the per-call overhead."""
    call = _type_gemm_call(dtype, size // TYPE_BYTES[dtype] // cols, cols, 1)

    def run() -> float:
        return max(_typical_time(call, min_calls=min_calls, budget_s=budget_s) - overhead_s, 0.0)
    return run


def _rows_label(key: tuple[str, int]) -> str:
    return f"GEMV beyond the last level in {key[0]}, rows of {key[1]} columns"


def cached_row_probe_bytes(private_total_bytes: int, llc_bytes: int) -> int:
    """Weights of the row probe inside the last level: the geometric mean of twice the private
    levels and half the last level's measured share (beyond the first, well inside the second, as
    the share of a VM's L3 moves), a multiple of the longest row; 0 when the share is not above
    four times the private levels (no room between them)."""
    low, high = 2 * private_total_bytes, llc_bytes // 2
    if not low or high <= low:
        return 0
    quantum = ROW_PROBE_COLUMNS[-1] * TYPE_BYTES["fp32"]
    return max(quantum, int(math.sqrt(low * high)) // quantum * quantum)


def _measure_gemv_cached_rows(s: Session) -> None:
    """Batch-1 fp32 F.linear over :func:`cached_row_probe_bytes` of weights (inside the last level)
    in rows of each of :data:`ROW_PROBE_COLUMNS` columns: the row starts from that level; with
    fbgemm's int8 tile, int8 over the same bytes at the partial depth and in the long rows: the
    tiles' starts from there (as :func:`_measure_gemv_rows` beyond it)."""
    size = cached_row_probe_bytes(private_bytes(s.caches, s.cpu.cores), s.measured_llc_bytes())
    if not size:
        return
    keys = [("fp32", cols) for cols in ROW_PROBE_COLUMNS]
    if s.m.int8_tile is not None:
        keys += [("int8", partial_tile_depth(s.m.int8_tile)), ("int8", ROW_PROBE_COLUMNS[-1])]
    got = s.record(settle({key: _rows_round(*key, size, s.m.launch_overhead_s, 10, 0.05) for key in keys}),
                   name=lambda key: _cached_rows_label(key[1], key[0]))
    s.m.gemv_cached_rows_s = {cols: t for (dtype, cols), t in got.items() if dtype == "fp32"}
    s.m.gemv_cached_int8_s = {cols: t for (dtype, cols), t in got.items() if dtype == "int8"}
    s.m.gemv_cached_rows_bytes = size
    s.m.gemv_cached_rows_level = f"L{s.caches[-1].level}"


def _cached_rows_label(cols: int, dtype: str = "fp32") -> str:
    return f"GEMV inside the last level in {dtype}, rows of {cols} columns"


def memory_probes(m: Measurements, dtypes: Sequence[str]) -> list[str]:
    """The measurements a judgement against the memory's time used, for its note: the row probe's
    GEMVs where it gives the bandwidth (:func:`row_streams`), else the 32 MiB GEMVs of ``dtypes``."""
    if row_streams(m) is not None:
        return [_rows_label(key) for key in m.gemv_rows_s if key[0] in dtypes]
    return [f"GEMV over {GEMV_BEYOND_BYTES // MiB} MiB in {d}" for d in dtypes if d in m.gemv_beyond_s]


@dataclass(frozen=True)
class RowStreams:
    """A batch-1 GEMV beyond the caches as the row probe shows it: each weight row a stream that
    costs ``row_start_s`` (all threads together) on top of its bytes at ``bandwidth_bytes_per_s``.
    Beyond the last level, that bandwidth is the faster of fp32's fit (``fitted_bytes_per_s``) and
    :data:`STREAM_TYPE`'s long rows (``streamed_by`` says which): fp32's loop may hold its loads
    back, which is fp32's ``load_overlap``, not the DRAM's rate."""

    bandwidth_bytes_per_s: float
    row_start_s: float
    fitted_bytes_per_s: float = 0.0
    streamed_by: str = "fp32"


def row_streams(m: Measurements) -> Optional[RowStreams]:
    """The row probe beyond the last level (:func:`solve_row_streams`): DRAM's rows, at the faster of
    fp32's fit and :data:`STREAM_TYPE`'s GEMV in long rows (its bytes over its time, less the starts
    of its packed tiles where :func:`packed_starts` gives them)."""
    short, long_ = ROW_PROBE_COLUMNS
    fit = solve_row_streams(m.gemv_rows_s.get(("fp32", short)), m.gemv_rows_s.get(("fp32", long_)),
                            m.gemv_rows_bytes)
    if fit is None:
        return None
    streamed_s = m.gemv_rows_s.get((STREAM_TYPE, long_))
    starts = packed_starts(m)
    if streamed_s and starts is not None:
        streamed_s -= packed_streams(m.int8_tile, m.gemv_rows_bytes, long_) * starts.start_s
    streamed = m.gemv_rows_bytes / streamed_s if streamed_s else 0.0
    fitted = fit.bandwidth_bytes_per_s
    if streamed > fitted:
        return replace(fit, bandwidth_bytes_per_s=streamed, fitted_bytes_per_s=fitted, streamed_by=STREAM_TYPE)
    return replace(fit, fitted_bytes_per_s=fitted)


@dataclass(frozen=True)
class PackedStarts:
    """int8's GEMV beyond the last level as the row probe shows it, where fbgemm packs the weights in
    tiles (:func:`fbgemm_int8_tile`): one stream, but each tile of a partly full last depth block a
    stream of its own that costs ``start_s`` (all threads together) on top of its bytes."""

    start_s: float
    depth: int              # the partial probe's depth (its last block half full)
    streams: int            # its streams beyond one
    long_streams: int       # the long rows' (:data:`ROW_PROBE_COLUMNS`), at the same bytes


def int8_row_times(m: Measurements) -> dict[int, float]:
    """The row probe's int8 GEMVs beyond the last level, by columns."""
    return {cols: t for (dtype, cols), t in m.gemv_rows_s.items() if dtype == "int8"}


def packed_starts(m: Measurements) -> Optional[PackedStarts]:
    """The tiles' starts beyond the last level (:func:`solve_packed_starts` on the row probe)."""
    return solve_packed_starts(int8_row_times(m), m.int8_tile, m.gemv_rows_bytes)


def _nearer_start(cached_s: float, beyond_s: Optional[float]) -> bool:
    """Whether a stream's start from the last level (``cached_s``) is physical beside its start
    from DRAM (``beyond_s``, where solved): no dearer. A probe that met another process's threads
    reads far more (int8's tiles inside the L3 on the Zen 3 guest, 2026-12-07 07:57 UTC, beside a
    test run: 11.3 us a tile against 54 ns from DRAM, which put NT_Wd's int8 GEMV at 90 times its
    time)."""
    return beyond_s is None or cached_s <= beyond_s


def cached_packed_starts(m: Measurements) -> Optional[PackedStarts]:
    """The tiles' starts from the last level (:func:`solve_packed_starts` on the row probe inside it);
    None where they come out dearer than from DRAM (:func:`_nearer_start`)."""
    inside, beyond = solve_packed_starts(m.gemv_cached_int8_s, m.int8_tile, m.gemv_cached_rows_bytes), packed_starts(m)
    if inside is None or not _nearer_start(inside.start_s, beyond.start_s if beyond else None):
        return None
    return inside


def solve_packed_starts(times: Mapping[int, float], tile: Optional[tuple[int, int]],
                        size: int) -> Optional[PackedStarts]:
    """Solve ``t = bytes / bandwidth + tiles x start`` from int8's GEMVs over ``size`` bytes (``times``
    by columns) at :func:`partial_tile_depth` and in the long rows (both have partial tiles, in
    numbers far apart); None without fbgemm's tile, where the probe did not run, or where the partial
    one was not slower (no start to see)."""
    if tile is None:
        return None
    depth, long_ = partial_tile_depth(tile), ROW_PROBE_COLUMNS[-1]
    t_partial, t_long = times.get(depth), times.get(long_)
    streams, long_streams = packed_streams(tile, size, depth), packed_streams(tile, size, long_)
    if not (t_partial and t_long) or streams <= long_streams or t_partial <= t_long * (1 + SETTLE_TOLERANCE):
        return None
    return PackedStarts((t_partial - t_long) / (streams - long_streams), depth, streams, long_streams)


def cached_row_streams(m: Measurements) -> Optional[RowStreams]:
    """The row probe inside the last level (:func:`solve_row_streams`): that level's rows; None where
    a row starts dearer there than from DRAM (:func:`_nearer_start`)."""
    short, long_ = ROW_PROBE_COLUMNS
    inside = solve_row_streams(m.gemv_cached_rows_s.get(short), m.gemv_cached_rows_s.get(long_),
                               m.gemv_cached_rows_bytes)
    beyond = row_streams(m)
    if inside is None or not _nearer_start(inside.row_start_s, beyond.row_start_s if beyond else None):
        return None
    return inside


def solve_row_streams(t_short: Optional[float], t_long: Optional[float], size: int) -> Optional[RowStreams]:
    """Solve ``t / bytes = 1 / bandwidth + row_start / row_bytes`` from fp32's two row lengths over
    ``size`` bytes; None where the probe did not run, or where short rows were not slower (no cost
    per row to see) or the solution is not physical."""
    short, long_ = ROW_PROBE_COLUMNS
    if not (t_short and t_long and size) or t_short <= t_long * (1 + SETTLE_TOLERANCE):
        return None
    b_short, b_long = short * TYPE_BYTES["fp32"], long_ * TYPE_BYTES["fp32"]
    row_start = (t_short - t_long) / size / (1 / b_short - 1 / b_long)
    per_byte = t_long / size - row_start / b_long
    if per_byte <= 0 or row_start <= 0:
        return None
    return RowStreams(1 / per_byte, row_start)


#: The decoders :func:`_measure_dispatch` times: ``bench --llm``'s decoder (a Llama-style block)
#: at a width where its products are a few thousand multiply-adds, so what a decode step costs is
#: the host's dispatch of its operators; with 1 and 3 blocks, the difference is two blocks' worth.
DISPATCH_BLOCKS = (1, 3)
DISPATCH_TOKENS = 8          # decode steps per call, after a context of as many tokens
#: What the cost model already charges a Llama-style block apart from its dispatch: the launch
#: overhead of each of its operators (input and post norms; q, k, v; scores, softmax, values; o;
#: two residual adds; gate, up, act, down: :func:`simulator.model.llm.llm_workload`, a test checks
#: the count) and its 7 linear layers' per-call overhead (``gemv.call_overhead``).
DISPATCH_OPERATORS = 15
DISPATCH_LINEARS = 7


def _dispatch_call(weights: str, blocks: int) -> Callable[[], Any]:
    """``DISPATCH_TOKENS`` decode steps of a tiny decoder of ``blocks`` blocks in ``weights``."""
    import torch

    from .llmbench import DecoderDims, KvCache, WeightType, _torch_dtype, build_decoder, generate

    dims = DecoderDims("dispatch", hidden_size=64, layers=blocks, heads=2, kv_heads=1, head_dim=32,
                       intermediate_size=128, vocab_size=256, tied_embeddings=False)
    kind = WeightType(weights)
    model = build_decoder(dims, kind, 2 * DISPATCH_TOKENS)
    # a cache filled as a prefill would (random keys and values): uninitialised memory can hold NaNs,
    # which int8's dynamic quantization refuses
    cache = KvCache(dims, 1, 2 * DISPATCH_TOKENS, _torch_dtype(kind), generator=torch.Generator().manual_seed(0))
    prompt = torch.zeros((1, DISPATCH_TOKENS), dtype=torch.long)

    def run() -> None:
        cache.length = DISPATCH_TOKENS
        with torch.inference_mode():
            generate(model, prompt, cache, DISPATCH_TOKENS)
    return run


def _measure_dispatch(s: Session) -> None:
    """Decode steps of :data:`DISPATCH_BLOCKS` tiny decoders per weight type: the slope per block is
    the host's dispatch of one block's operators (``compute.block_dispatch``)."""
    for weights in GEMV_LOOP_TYPES:
        def dispatch_round(blocks: int, weights: str = weights) -> Callable[[], float]:
            def run() -> float:
                return _typical_time(_dispatch_call(weights, blocks), min_calls=3, budget_s=0.1) / DISPATCH_TOKENS
            return run
        got = s.record(settle({blocks: dispatch_round(blocks) for blocks in DISPATCH_BLOCKS}),
                       name=functools.partial(_dispatch_label, weights))
        few, many = DISPATCH_BLOCKS
        if got[many] > got[few]:
            s.m.block_dispatch_s[weights] = (got[many] - got[few]) / (many - few)


#: The element-wise kernels :func:`_measure_elementwise` times, on :data:`ELEMENTWISE_SIZES` fp32
#: elements (in the private caches of two cores): what a decoder's norms, softmax, gated activation
#: and residual adds, and a network's pooling and joins, run as.
ELEMENTWISE_OPS = ("add", "mul", "silu", "exp")
ELEMENTWISE_SIZES = (1 << 16, 1 << 18)


def _elementwise_call(op: str, elements: int) -> Callable[[], Any]:
    import torch

    a, b = torch.rand(elements), torch.rand(elements)
    out = torch.empty(elements)
    calls = {"add": lambda: torch.add(a, b, out=out), "mul": lambda: torch.mul(a, b, out=out),
             "silu": lambda: torch.nn.functional.silu(a), "exp": lambda: torch.exp(a, out=out)}
    return calls[op]


def _measure_elementwise(s: Session) -> None:
    """Each op of :data:`ELEMENTWISE_OPS` on the two sizes: the slope between them (the call's own
    work cancelling) is the op's elements per second; the median over the ops is the element kernel's."""
    rates = []
    for op in ELEMENTWISE_OPS:
        def round_of(elements: int, op: str = op) -> Callable[[], float]:
            def run() -> float:
                return _typical_time(_elementwise_call(op, elements), min_calls=20, budget_s=0.05)
            return run
        def label(elements: int, op: str = op) -> str:
            return f"element-wise {op} over {elements} elements"
        got = s.record(settle({n: round_of(n) for n in ELEMENTWISE_SIZES}), name=label)
        small, large = ELEMENTWISE_SIZES
        if got[large] > got[small]:
            rates.append((large - small) / (got[large] - got[small]))
    if rates:
        s.m.elementwise_per_s = statistics.median(rates)


#: The BSR products :func:`_measure_bsr` times: torch's ``sparse_bsr_tensor`` of 4 x 4 blocks on a
#: 1024 x 2048 matrix at two block densities (none an EIE layer), times a vector (``torch.mv``, as
#: ``bench`` runs batch 1) and times :data:`SPMM_BATCH` columns; the slope between the two block
#: counts is the cost of a block on each path.
BSR_SHAPE = (1024, 2048)
BSR_BLOCK = (4, 4)
BSR_DENSITIES = (0.05, 0.2)


def _bsr_matrix(density: float) -> Any:
    import torch

    rows, cols = BSR_SHAPE
    br, bc = BSR_BLOCK
    gen = torch.Generator().manual_seed(int(density * 1000))
    keep = (torch.rand(rows // br, cols // bc, generator=gen) < density).float()
    dense = torch.rand(rows, cols, generator=gen) * keep.repeat_interleave(br, 0).repeat_interleave(bc, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "sparse BSR support is in beta"
        return dense.to_sparse_bsr(BSR_BLOCK), int(keep.sum())


def _measure_bsr(s: Session) -> None:
    """Batch-1 and batch-64 BSR products at :data:`BSR_DENSITIES`: per block on each path, the
    slope between the two block counts (the rows, the call and the FMAs of the other path cancel)."""
    import torch

    rows, cols = BSR_SHAPE
    matrices = {d: _bsr_matrix(d) for d in BSR_DENSITIES}
    vector, columns = torch.rand(cols), torch.rand(cols, SPMM_BATCH)

    def round_of(key: tuple[float, int]) -> Callable[[], float]:
        density, batch = key
        matrix = matrices[density][0]
        call = (lambda: torch.mv(matrix, vector)) if batch == 1 else (lambda: matrix @ columns)
        return lambda: _typical_time(call, min_calls=3, budget_s=0.05)

    def label(key: tuple[float, int]) -> str:
        return f"BSR {BSR_BLOCK[0]}x{BSR_BLOCK[1]} of {rows} x {cols} at block density {key[0]:g}, batch {key[1]}"
    keys = [(d, b) for d in BSR_DENSITIES for b in (1, SPMM_BATCH)]
    got = s.record(settle({key: round_of(key) for key in keys}), name=label)
    few, many = BSR_DENSITIES
    blocks = matrices[many][1] - matrices[few][1]
    for batch in (1, SPMM_BATCH):
        extra_s = got[(many, batch)] - got[(few, batch)]
        if extra_s > 0 and blocks > 0:
            s.m.bsr_block_s[batch] = extra_s / blocks


#: Bytes a weight of each GEMV type takes as the variants store it.
TYPE_BYTES = {"fp32": 4, "bf16": 2, "int8": 1}


def overlap_share(issue_s: float, memory_s: float, measured_s: float) -> float:
    """The share of a kernel's issue time its loads ran under, from its issue and streaming times
    and what it measured: a kernel whose next loads start once ``1 - share`` of its issue is done
    takes ``memory + (1 - share) x issue`` where memory is the larger, so ``share = (issue + memory
    - measured) / issue``, from 0 (the sum: loads wait for the loop) to 1 (the larger)."""
    return min(1.0, max(0.0, (issue_s + memory_s - measured_s) / issue_s)) if issue_s > 0 else 1.0


@dataclass(frozen=True)
class GemvOverlap:
    """A type's GEMV beyond the caches against its in-cache loop and its bytes' streaming time: the
    share of the loop its loads ran under (:func:`gemv_load_overlaps`), and the figures for its note."""

    overlap: float
    measured_s: float
    loop_s: float
    memory_s: float
    memory: str          # where the memory's time came from
    size_bytes: int

    def note(self, dtype: str) -> str:
        """One line for the profile's notes."""
        return (f"{dtype}: {self.overlap:.3g}, {self.measured_s * 1e6:.0f} us over {self.size_bytes / MiB:.4g} MiB "
                f"against loop {self.loop_s * 1e6:.0f} us + memory {self.memory_s * 1e6:.0f} us ({self.memory})")


def gemv_load_overlaps(m: Measurements) -> dict[str, GemvOverlap]:
    """Per type, the share of its GEMV loop under which its loads ran beyond the caches, as a sparse
    kernel's (:func:`sparse_overlap`): ``(loop + memory - measured) / loop`` between 0 (the two
    took turns: a library that packs each panel, then multiplies it) and 1 (the larger of the two).
    The loop is the weights at the type's in-cache rate, the memory their bytes' time: where the
    row probe ran (:func:`row_streams`), its bytes far beyond the last level at the bandwidth the
    profile gets, each type in the short rows but fp32 in the long ones, paying their starts (its
    short rows gave the starts); else :data:`GEMV_BEYOND_BYTES` and fp32's GEMV of the same bytes
    (no share for fp32 then: its GEMV is the memory's probe)."""
    rows = row_streams(m)
    short, long_ = ROW_PROBE_COLUMNS
    if rows is not None:
        size = m.gemv_rows_bytes
        columns = {dtype: long_ if dtype == "fp32" else short_columns(dtype, m.int8_tile) for dtype in GEMV_LOOP_TYPES}
        measured_s = {dtype: m.gemv_rows_s[(dtype, cols)] for dtype, cols in columns.items()
                      if (dtype, cols) in m.gemv_rows_s}
        bytes_s = size / rows.bandwidth_bytes_per_s
        memory_s = {dtype: bytes_s for dtype in measured_s}
        memory_s["fp32"] = bytes_s + size // (TYPE_BYTES["fp32"] * long_) * rows.row_start_s
        memory = f"the bytes at {_gbs(rows.bandwidth_bytes_per_s)}"
    else:
        size, measured_s = GEMV_BEYOND_BYTES, {d: t for d, t in m.gemv_beyond_s.items() if d != "fp32"}
        columns = {dtype: GEMV_LOOP_COLUMNS for dtype in GEMV_LOOP_TYPES}
        memory_s = {dtype: m.gemv_beyond_s.get("fp32", 0.0) for dtype in measured_s}
        memory = "fp32's GEMV of the same bytes"
    out = {}
    for dtype, measured in measured_s.items():
        rate = m.gemv_weights_per_s.get(dtype)
        if not memory_s.get(dtype) or not rate:
            continue
        weights = size // TYPE_BYTES[dtype]
        loop_s = weights / rate + weights // columns[dtype] * m.gemv_row_s.get(dtype, 0.0)
        overlap = overlap_share(loop_s, memory_s[dtype], measured)
        how = memory + (f" and {weights // columns[dtype]} row starts" if dtype == "fp32" and rows is not None else "")
        out[dtype] = GemvOverlap(float(f"{overlap:.3g}"), measured, loop_s, memory_s[dtype], how, size)
    return out


def _measure_sparse(s: Session) -> None:
    """SpMV and SpMM on :data:`SPARSE_ROWS` matrices of :data:`SPARSE_NONZEROS` non-zeros (SpMV also
    on the middle rows with :data:`SPMV_FEW_NONZEROS`) with each of ``bench``'s backends (scipy runs
    on one thread), noting the one ``bench`` picks on the middle matrix: the profile's ``spmv`` /
    ``spmm`` are that backend's, and every backend is a library of its own (``bench`` picks per
    layer, and a cross-check times each layer with the library that ran it)."""
    from .bench import CSR_BACKENDS, SparseBackend, pick_sparse_backend, sparse_operator

    middle = SPARSE_ROWS[len(SPARSE_ROWS) // 2]
    shapes = [(rows, SPARSE_NONZEROS) for rows in SPARSE_ROWS]
    rng = np.random.default_rng(0)
    for kind, batches in (("spmv", (1,)), ("spmm", (max(1, s.cpu.vector_lanes // 2), SPMM_BATCH))):
        depth = SPARSE_COLUMNS if kind == "spmv" else spmm_columns(s.caches)
        timed = shapes + [(middle, SPMV_FEW_NONZEROS)] if kind == "spmv" else shapes
        matrices = {(rows, nonzeros): csr_with_rows(rows, depth, nonzeros, seed=rows) for rows, nonzeros in timed}
        xs = {batch: rng.random((depth, batch), dtype=np.float32) if batch > 1
              else rng.random(depth, dtype=np.float32) for batch in batches}
        picked = pick_sparse_backend(*matrices[(middle, SPARSE_NONZEROS)], (middle, depth), xs[batches[-1]])
        s.m.sparse_backends[kind] = picked.value
        for backend in CSR_BACKENDS:
            threads = 1 if backend is SparseBackend.SCIPY else s.threads
            rounds: dict[tuple[int, int, int], Callable[[], float]] = {}
            for rows, nonzeros in timed:
                ptr, idx, val = matrices[(rows, nonzeros)]
                for batch in batches:
                    op = sparse_operator(backend, ptr, idx, val, (rows, depth), xs[batch])
                    rounds[(rows, nonzeros, batch)] = functools.partial(_typical_time, op, 10, 0.1)
            got = s.record(settle(rounds), name=functools.partial(_sparse_label, kind, backend.value))
            for (rows, nonzeros, batch), seconds in got.items():
                ptr = matrices[(rows, nonzeros)][0]
                steps = int(np.maximum(np.diff(ptr), 1).sum())
                keep_timing(s.m.sparse, SparseTiming(kind, rows, depth, batch, int(ptr[-1]), steps, seconds,
                                                     backend.value, threads))


def spmm_columns(caches: Sequence[SysfsCache]) -> int:
    """Columns of the SpMM fit's matrices: its dense operand at :data:`SPMM_BATCH` within half the
    last private level (a power of two, :data:`SPMM_MIN_COLUMNS` to :data:`SPARSE_COLUMNS`;
    :data:`SPARSE_COLUMNS` where sysfs names no private level below the last)."""
    private = last_private(caches)
    if private is None:
        return SPARSE_COLUMNS
    fit = private.size_bytes // 2 // (SPMM_BATCH * TYPE_BYTES["fp32"])
    columns = SPMM_MIN_COLUMNS
    while columns * 2 <= min(fit, SPARSE_COLUMNS):
        columns *= 2
    return columns


def last_private(caches: Sequence[SysfsCache]) -> Optional[SysfsCache]:
    """The last level below the last that sysfs says one core has to itself (None: none)."""
    return next((c for c in reversed(caches[:-1]) if c.sharing_cpus <= 1), None)


def spmm_far_columns(private_total_bytes: int, llc_bytes: int) -> int:
    """Columns of the SpMM whose dense operand at :data:`SPMM_BATCH` lies beyond the private
    levels and inside the last level's measured share (:func:`cached_row_probe_bytes`' size, the
    geometric mean of twice the one and half the other); 0 where there is no room between them."""
    size = cached_row_probe_bytes(private_total_bytes, llc_bytes)
    return size // (SPMM_BATCH * TYPE_BYTES["fp32"])


def _measure_spmm_gathers(s: Session) -> None:
    """Each SpMM library :func:`_measure_sparse` timed, at :data:`SPMM_BATCH` on the middle matrix's
    rows and non-zeros, gathering from the private caches (the fit's columns) and from the last level
    (:func:`spmm_far_columns`), the two calls side by side: what its loop waits on its gathers from
    the last level (:func:`gather_wait`)."""
    far = spmm_far_columns(private_bytes(s.caches, s.cpu.cores), s.measured_llc_bytes())
    near = spmm_columns(s.caches)
    if far <= near:
        return
    s.m.spmm_gathers = _gather_probes(s, "spmm", SPARSE_ROWS[len(SPARSE_ROWS) // 2], (near, far), SPMM_BATCH,
                                      seed=11, label=_gathers_label)


def _gather_probes(s: Session, kind: str, rows: int, depths: tuple[int, int], batch: int, seed: int,
                   label: Callable[[tuple[str, int]], str]) -> list[GatherProbe]:
    """Each library :func:`_measure_sparse` timed for ``kind``, on ``rows`` rows of
    :data:`SPARSE_NONZEROS` non-zeros times ``batch`` dense columns (1: a vector), over the near and
    the far of ``depths`` columns, the two calls side by side in rounds (named by ``label``)."""
    from .bench import SparseBackend, sparse_operator

    near, far = depths
    rng = np.random.default_rng(seed)
    probes = []
    for backend in dict.fromkeys(t.backend for t in s.m.sparse if t.kind == kind):
        threads = s.m.sparse_of(kind, backend)[0].threads
        rounds: dict[tuple[str, int], Callable[[], float]] = {}
        for depth in depths:
            ptr, idx, val = csr_with_rows(rows, depth, SPARSE_NONZEROS, seed=rows)
            x = rng.random((depth, batch) if batch > 1 else depth, dtype=np.float32)
            op = sparse_operator(SparseBackend(backend), ptr, idx, val, (rows, depth), x)
            rounds[(backend, depth)] = functools.partial(_typical_time, op, 10, 0.1)
        got = s.record(settle(rounds), name=label)
        probes.append(GatherProbe(backend, rows, SPARSE_NONZEROS, near, far, got[(backend, near)],
                                  got[(backend, far)], threads))
    return probes


def _gathers_label(key: tuple[str, int]) -> str:
    return f"SpMM ({key[0]}) gathering over {key[1]} columns"


#: How many times the first level the SpMV's far operand is (:func:`spmv_far_columns`): a row sweeps
#: it front to back, so an LRU first level keeps none of it from one row to the next.
SPMV_FAR_FIRST_LEVELS = 8


def spmv_far_columns(caches: Sequence[SysfsCache]) -> int:
    """Columns of the SpMV whose operand the first level cannot hold but a lower private level can:
    :data:`SPMV_FAR_FIRST_LEVELS` times the first level, at most half the last private level (its
    gathers are then fills from there, not waits on the last level); 0 without both levels."""
    private = last_private(caches)
    if private is None or not caches or private is caches[0]:
        return 0
    size = min(SPMV_FAR_FIRST_LEVELS * caches[0].size_bytes, private.size_bytes // 2)
    return size // TYPE_BYTES["fp32"]


def _measure_spmv_gathers(s: Session) -> None:
    """Each SpMV library :func:`_measure_sparse` timed, on the fit's widest rows and non-zeros,
    gathering over the fit's columns (within the first level) and over :func:`spmv_far_columns`
    (each non-zero a line of its own, from the level below), the two calls side by side: what a
    gathered line's fill costs its loop (:func:`gather_fill`)."""
    far, near = spmv_far_columns(s.caches), SPARSE_COLUMNS
    if far <= near:
        return
    s.m.spmv_gathers = _gather_probes(s, "spmv", SPARSE_ROWS[0], (near, far), 1, seed=12,
                                      label=_spmv_gathers_label)


def _spmv_gathers_label(key: tuple[str, int]) -> str:
    return f"SpMV ({key[0]}) gathering over {key[1]} columns"


#: The SpMV of :func:`_measure_sparse_beyond`: the GEMV row probe's bytes (:func:`row_probe_bytes`,
#: beyond the last level; :data:`GEMV_BEYOND_BYTES` where it did not run) of values and int64
#: indices (the widest bench's backends store) on 16,384 rows of :data:`SPARSE_COLUMNS` columns,
#: while the dense operand stays in the first level.
SPARSE_BEYOND_ROWS = 16384


#: Calls whose page faults :func:`_measure_sparse_beyond` counts (after its timed calls).
FAULT_COUNT_CALLS = 3

#: The index width :func:`_measure_sparse_beyond` also times a backend at where it stores wider
#: ones: the width MKL's LP64 interface takes, which torch's CSR product copies its int64 indices
#: into at every call (:func:`copied_index_bits`).
KERNEL_PROBE_BITS = 32


def _measure_sparse_beyond(s: Session) -> None:
    """Each SpMV backend :func:`_measure_sparse` timed, on a matrix beyond the private caches:
    how much of its loop its loads run under there (:func:`sparse_overlap`); and the pages a call
    faults in, which show a library copying its indices into new arrays at every call
    (:func:`copied_index_bits`; before each counted call the heap's free pages go back to the OS,
    :func:`~simulator.measure.bench.release_free_pages`, so the copy faults wherever it comes from).
    A backend storing indices wider than :data:`KERNEL_PROBE_BITS` is also timed on the same matrix
    with indices that wide, in the same rounds: what a library that copies its indices into
    arrays of that width runs after its copy, without the copy and its page faults."""
    from .bench import INDEX_BITS, PAGE_BYTES, SparseBackend, minor_faults, release_free_pages, sparse_operator

    nonzeros = (s.m.gemv_rows_bytes or GEMV_BEYOND_BYTES) // 12
    ptr, idx, val = csr_with_rows(SPARSE_BEYOND_ROWS, SPARSE_COLUMNS, nonzeros, seed=7)
    x = np.random.default_rng(7).random(SPARSE_COLUMNS, dtype=np.float32)
    steps = int(np.maximum(np.diff(ptr), 1).sum())
    shape = (SPARSE_BEYOND_ROWS, SPARSE_COLUMNS)
    for name in dict.fromkeys(t.backend for t in s.m.sparse if t.kind == "spmv"):
        backend, threads = SparseBackend(name), s.m.sparse_of("spmv", name)[0].threads
        widths: list[Optional[int]] = [None] + ([KERNEL_PROBE_BITS] if INDEX_BITS[backend] > KERNEL_PROBE_BITS else [])
        ops = {bits: sparse_operator(backend, ptr, idx, val, shape, x, bits) for bits in widths}
        got = s.record(settle({bits: functools.partial(_typical_time, op, 5, 0.2) for bits, op in ops.items()}),
                       name=functools.partial(_beyond_label, name))
        faulted_pages = 0
        for _ in range(FAULT_COUNT_CALLS):
            release_free_pages()        # else a free chunk of the heap may serve the copy without a fault
            before = minor_faults()
            ops[None]()
            faulted_pages += minor_faults() - before
        faulted = faulted_pages * PAGE_BYTES / FAULT_COUNT_CALLS
        for bits in widths:
            keep_timing(s.m.sparse_beyond, SparseTiming("spmv", *shape, 1, int(ptr[-1]), steps, got[bits], name,
                                                        threads, faulted if bits is None else 0.0, bits))


def _beyond_label(backend: str, bits: Optional[int] = None) -> str:
    return f"SpMV beyond the caches ({backend}" + (f", {bits}-bit indices)" if bits else ")")


#: How near (a share of the width) the bits a non-zero the SpMV beyond the caches faulted in must
#: come to a narrower index width for :func:`copied_index_bits` to take it as the library's copy.
COPY_WIDTH_TOLERANCE = 0.2


def copied_index_bits(m: Measurements, backend: str) -> Optional[int]:
    """The index width ``backend``'s kernel reads where the library copies its stored indices into
    narrower new arrays at every call (``kernel_index_bits``), or None: one call of the SpMV beyond
    the caches faulted in about 16 or 32 bits a non-zero, narrower than the indices it stores.
    That matrix's copy is above glibc's largest mmap threshold, so each call maps it afresh, and
    counted faults are a count, not a time (torch 2.13's CPU CSR product over int64 indices: 44 MiB
    a call over 11.5 M non-zeros, 4.0 bytes each, for MKL's LP64 interface; scipy: none)."""
    from .bench import INDEX_BITS, SparseBackend

    timing = m.beyond_of(backend)
    if timing is None or timing.nonzeros <= 0 or timing.faulted_bytes <= 0:
        return None
    bits = 8 * timing.faulted_bytes / timing.nonzeros
    return next((width for width in (16, 32) if width < INDEX_BITS[SparseBackend(backend)]
                 and abs(bits - width) <= COPY_WIDTH_TOLERANCE * width), None)


def fault_rate(m: Measurements) -> Optional[float]:
    """Bytes a second the OS faults fresh pages in: the fill of a fresh buffer above glibc's largest
    mmap threshold less the fill of one that exists (None where not timed, or not slower)."""
    if not m.fresh_fill_s:
        return None
    large, (kept_s, fresh_s) = max(m.fresh_fill_s.items())
    return large / (fresh_s - kept_s) if fresh_s > kept_s else None


@dataclass(frozen=True)
class LoadOverlap:
    """What :func:`sparse_overlap` read off the SpMV beyond the caches: the share of its issue time
    its loads ran under (``load_overlap``), and the times it was read from."""

    share: float
    measured_s: float
    faults_s: float
    issue_s: float
    memory_s: float
    how: str          # the streaming rate the memory time is at
    moved_bytes: float   # what the memory time moves (:func:`beyond_bytes`)
    index_bits: Optional[int] = None   # the width of the indices of the call it was read off (None: stored)

    def describe(self, backend: str) -> str:
        """One line for the profile's sources."""
        faults = f" less page faults {self.faults_s * 1e6:.0f} us" if self.faults_s else ""
        width = f" with {self.index_bits}-bit indices (its kernel's, no copy)" if self.index_bits else ""
        return (f"{backend}{width} over {self.moved_bytes / MiB:.3g} MiB: {self.measured_s * 1e6:.0f} us{faults}, "
                f"against issue {self.issue_s * 1e6:.0f} us and memory {self.memory_s * 1e6:.0f} us ({self.how}): "
                f"(issue + memory - measured) / issue = {self.share:.3g}")


def sparse_overlap(m: Measurements, fit: SparseFit, clock_hz: float, backend: str) -> Optional[LoadOverlap]:
    """How much of the SpMV's issue time its loads run under, beyond the caches (``load_overlap``),
    or None where that was not measured (:func:`overlap_share`). Issue time is the
    in-cache fit; the streaming is at the sustained bandwidth the profile gets from the GEMV row
    probe (:func:`row_streams`; where it did not run, at fp32's GEMV rate over
    :data:`GEMV_BEYOND_BYTES`), on the backend's threads: for a backend on fewer threads than the
    GEMV ran on, that rate scaled by the STREAM read's one-thread share, :func:`stream_share` (the
    all-thread rate would understate its memory time, which reads overlapped loads as waiting
    ones). A library that copies its indices at every call (:func:`copied_index_bits`) is read off
    the call over indices of the copy's width, where it was timed (:func:`_measure_sparse_beyond`):
    its kernel alone, as the engine times it after the copy's pass. Otherwise the call over the
    stored indices streams the copy's bytes too, and faults its pages in first, at
    :func:`fault_rate`, which comes off the measured time (torch's copy over 11.5 M non-zeros: 13 ms
    of faults, more than its product; on the Zen 3 guest the difference of two such figures put the
    share anywhere from 0 to 0.78 between calibrations an hour apart)."""
    copied, rate = copied_index_bits(m, backend), fault_rate(m)
    narrow = m.beyond_of(backend, copied) if copied is not None else None
    timing, probe, rows = narrow or m.beyond_of(backend), m.gemv_beyond_s.get("fp32"), row_streams(m)
    if timing is None or not (probe or rows):
        return None
    issue_s = fit.call_overhead_s + (fit.cycles_per_nonzero * timing.row_steps + fit.cycles_per_row * timing.rows) / (
        clock_hz * timing.threads)
    stored = beyond_bytes(m, timing)
    faults_s = timing.faulted_bytes / rate if copied is not None and narrow is None and rate else 0.0
    share = stream_share(m, timing.threads)
    if rows is not None:
        memory_s = stored / (rows.bandwidth_bytes_per_s * share)
        how = f"the bytes at {_gbs(rows.bandwidth_bytes_per_s)}"
    else:
        memory_s, how = (probe or 0.0) * stored / GEMV_BEYOND_BYTES / share, "fp32's GEMV of the same bytes"
    if share < 1:
        how += f" on {timing.threads} thread(s): {share:.2g} of its rate"
    measured = max(timing.seconds - m.launch_overhead_s - faults_s, 0.0)
    overlap = overlap_share(issue_s, memory_s, measured)
    return LoadOverlap(float(f"{overlap:.3g}"), measured, faults_s, issue_s, memory_s, how, stored, timing.index_bits)


def beyond_bytes(m: Measurements, timing: SparseTiming) -> float:
    """The bytes the SpMV beyond the caches moves: its values, indices and pointers at the width
    the call was given (its backend's, unless :attr:`SparseTiming.index_bits`), and, where the
    library copies wider ones (:func:`copied_index_bits`), the copy written and read again."""
    from .bench import INDEX_BITS, SparseBackend

    index_bytes = (timing.index_bits or INDEX_BITS[SparseBackend(timing.backend)]) // 8
    stored = timing.nonzeros * (4 + index_bytes) + (timing.rows + 1) * index_bytes
    copied = copied_index_bits(m, timing.backend) if timing.index_bits is None else None
    return stored + (2 * (timing.nonzeros + timing.rows + 1) * copied // 8 if copied is not None else 0)


@dataclass(frozen=True)
class GatherWait:
    """What :func:`gather_wait` read off an SpMM library's :class:`GatherProbe`: the gathers its
    loop keeps in flight on a core while it waits on them beyond the private caches
    (``gathers_in_flight_per_core``), and what that was read from."""

    in_flight: float
    probe: GatherProbe
    lines: float              # gathered lines the far call takes from beyond the private levels, over the near one's
    extra_latency_s: float    # a gather's latency from the last level less the last private level's
    slots: float              # the core's demand-miss slots (``outstanding_gathers_per_core``)

    def describe(self) -> str:
        """One line for the profile's sources."""
        return (f"{self.probe.describe(f'SpMM at batch {SPMM_BATCH}')}: {self.lines:.4g} more gathered lines "
                f"from beyond the private caches (each "
                f"non-zero's operand row, the share of a random gather the last private level does not hold) x "
                f"{_us(self.extra_latency_s)} more latency each / (threads x the difference) = {self.in_flight:.3g} "
                f"in flight a core, of its {self.slots:.3g} demand-miss slots")


def gather_wait(caches: Sequence[SysfsCache], m: Measurements, probe: GatherProbe) -> Optional[GatherWait]:
    """How many gathers an SpMM library's loop keeps in flight on a core while it waits on those
    beyond the private caches (``gathers_in_flight_per_core``), from its :class:`GatherProbe`: the
    far call takes longer than the near one by the lines it gathers from the last level x their
    extra latency / (in flight x threads), the engine's charge (``gather-wait``). A gather of one
    non-zero's operand row covers ``SPMM_BATCH`` x 4 B of lines; of a random gather over ``size``
    bytes, the last private level holds ``its size / size``. The latency is the last level's as the
    profile writes it, less the page walk the engine spares a gather over the far operand
    (:func:`~simulator.engine.core.walk_saved_s`), less the last private level's. None where the far
    call was not slower, or where its loop keeps at least as many in flight as the core has slots
    (its gathers then only bound it, as unset)."""
    private = last_private(caches)
    if private is None:
        return None
    near_s, llc_s = m.cache_latency_s.get(private.level), m.cache_latency_s.get(caches[-1].level)
    if not near_s or not llc_s:
        return None
    line = caches[-1].line_bytes
    row_bytes = SPMM_BATCH * TYPE_BYTES["fp32"]

    def beyond(columns: int) -> float:       # share of a random gather over the operand the private level misses
        return max(0.0, 1.0 - private.size_bytes / (columns * row_bytes))
    row_lines = -(-row_bytes // line)
    lines = probe.nonzeros * row_lines * (beyond(probe.far_columns) - beyond(probe.near_columns))
    tlb = tlb_fit(caches, m)
    far_s = llc_s - (walk_saved_s(tlb.miss_latency_s, tlb.reach_bytes, probe.far_columns * row_bytes, row_lines)
                     if tlb is not None else 0.0)
    extra_s = max(far_s, m.cache_latency_s.get(caches[0].level, 0.0)) - near_s
    waited_s = probe.far_s - probe.near_s
    if lines <= 0 or extra_s <= 0 or waited_s <= 0:
        return None
    in_flight = lines * extra_s / (probe.threads * waited_s)
    slots = demand_slots(m, line)
    if in_flight >= slots:
        return None
    return GatherWait(float(f"{max(1.0, in_flight):.3g}"), probe, lines, extra_s, slots)


@dataclass(frozen=True)
class GatherFill:
    """What :func:`gather_fill` read off an SpMV library's :class:`GatherProbe`: the cycles of one
    core's loop a gathered line costs where the first level does not hold it
    (``cycles_per_gather_fill``), and what that was read from."""

    cycles: float
    probe: GatherProbe
    lines: float              # gathered lines the far call takes from below the first level, over the near one's
    clock_hz: float

    def describe(self) -> str:
        """One line for the profile's sources."""
        return (f"{self.probe.describe('SpMV')}: {self.lines:.4g} more gathered lines the first level does not "
                f"hold (a row's non-zeros a line "
                f"apart or more, over {SPMV_FAR_FIRST_LEVELS} times the first level) x clock "
                f"{self.clock_hz / 1e9:.3g} GHz x threads x the difference / lines = {self.cycles:.3g} cycles a line")


def gather_fill(caches: Sequence[SysfsCache], probe: GatherProbe, clock_hz: float) -> Optional[GatherFill]:
    """The cycles an SpMV library's loop spends on a gathered line the first level does not hold,
    from its :class:`GatherProbe` (``cycles_per_gather_fill``): the far call takes longer than the
    near one by the lines it gathers from below the first level x that cost / threads. The near
    operand is within the first level (none); in the far one each non-zero of a row gathers a line
    of its own wherever its columns lie a line apart or more, and a row sweeps an operand many times
    the first level front to back, so an LRU first level, as the cache model keeps it, holds none
    of them by the next row. None where the far call was not slower."""
    if not caches:
        return None
    line = caches[0].line_bytes
    per_row = max(1, probe.nonzeros // max(1, probe.rows))
    apart_bytes = probe.far_columns // per_row * TYPE_BYTES["fp32"]
    lines = probe.nonzeros * min(1.0, apart_bytes / line)
    waited_s = probe.far_s - probe.near_s
    if lines <= 0 or waited_s <= 0 or clock_hz <= 0:
        return None
    cycles = waited_s * probe.threads * clock_hz / lines
    return GatherFill(float(f"{cycles:.3g}"), probe, lines, clock_hz)


def writeback_cost(m: Measurements) -> Optional[float]:
    """What a line written back costs DRAM as a share of a line read (``memory.dram.writeback_cost``),
    from the STREAM-like fill against the read of the same bytes: the fill reads each line for
    ownership (a read) and writes it back, so its time over the read's, less one; within [0, 2].
    None where either was not measured."""
    if m.stream_fill_bytes_per_s <= 0 or m.stream_read_bytes_per_s <= 0:
        return None
    return float(f"{min(2.0, max(0.0, m.stream_read_bytes_per_s / m.stream_fill_bytes_per_s - 1.0)):.3g}")


def demand_slots(m: Measurements, line_bytes: int) -> float:
    """Demand misses a core keeps in flight, by Little's law on the interleaved pointer chases over
    DRAM: their best bandwidth x DRAM latency / a line (``outstanding_gathers_per_core``)."""
    best_chase = max((p.bandwidth_bytes_per_s for p in m.chases), default=0.0)
    return best_chase * m.dram_latency_s / line_bytes


def stream_share(m: Measurements, threads: int) -> float:
    """The share of the all-thread streaming rate ``threads`` threads get: 1 on every thread
    measured, else the one-thread STREAM read over the all-thread one (1 where either is missing)."""
    if threads >= m.threads or not (m.stream_read_one_thread_bytes_per_s and m.stream_read_bytes_per_s):
        return 1.0
    return min(1.0, m.stream_read_one_thread_bytes_per_s / m.stream_read_bytes_per_s)


def _measure_lowered_product(s: Session) -> None:
    """The lowered product of a sparse convolution (torch CSR weights x an im2col-shaped dense
    input, as ``bench --sparse-conv`` runs it) at two widths and two densities: the ``spconv``
    costs. SpMM at 64 columns prices products hundreds of columns wide badly (docs/validation.md)."""
    import torch

    rng = np.random.default_rng(1)
    rounds, shapes = {}, {}
    for density in SPCONV_DENSITIES:
        ptr, idx, val = csr_with_rows(SPCONV_FILTERS, SPCONV_DEPTH, int(density * SPCONV_FILTERS * SPCONV_DEPTH),
                                      seed=int(density * 100))
        weights = torch.sparse_csr_tensor(torch.from_numpy(ptr.astype(np.int64)),
                                          torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(val),
                                          (SPCONV_FILTERS, SPCONV_DEPTH))
        for pixels in SPCONV_PIXELS:
            lowered = torch.from_numpy(rng.random((SPCONV_DEPTH, pixels), dtype=np.float32))
            product = functools.partial(torch.matmul, weights, lowered)
            rounds[(density, pixels)] = functools.partial(_typical_time, product, 10, 0.1)
            shapes[(density, pixels)] = ptr
    got = s.record(settle(rounds), name=lambda key: f"lowered product at density {key[0]}, {key[1]} columns")
    # the lowering itself: F.unfold of a 3 x 3 convolution's input at both widths
    unfolds = {}
    for pixels in SPCONV_PIXELS:
        side = int(round(pixels ** 0.5))
        image = torch.from_numpy(rng.random((1, SPCONV_DEPTH // 9, side, side), dtype=np.float32))
        unfold = functools.partial(torch.nn.functional.unfold, image, 3, padding=1)
        unfolds[pixels] = functools.partial(_typical_time, unfold, 10, 0.1)
    lowered_got = s.record(settle(unfolds), name=lambda key: f"im2col (F.unfold) to {key} columns")
    s.m.lowering = [(SPCONV_DEPTH * pixels, seconds) for pixels, seconds in lowered_got.items()]
    for (density, pixels), seconds in got.items():
        ptr = shapes[(density, pixels)]
        steps = int(np.maximum(np.diff(ptr), 1).sum())
        keep_timing(s.m.sparse, SparseTiming("spconv", SPCONV_FILTERS, SPCONV_DEPTH, pixels, int(ptr[-1]), steps,
                                             seconds, "torch", s.threads))


def _chase_round(chase, chain: np.ndarray, line_bytes: int) -> Callable[[], float]:
    """One round of a latency chase: a warm-up walk over the chain (up to 500 000 lines, so a
    cache-sized chain is resident again after the other chases of the round), then a timed walk."""
    lines = chain.size // (line_bytes // 8)

    def run() -> float:
        chase(chain, 0, min(lines, 500_000))
        return chase_latency_s(chase, chain, CHASE_STEPS)
    return run


def _measure_latencies(s: Session) -> None:
    """Pointer chases: over half of each level (its latency), over twice each private level (its
    size confirmed by the step up), over half the last level's measured share, and over DRAM."""
    chase, _ = _chase_kernels()
    chase(np.zeros(8, dtype=np.int64), 0, 10)                        # compile
    llc = s.measured_llc_bytes()
    walks: dict[tuple[str, int], np.ndarray] = {}      # (half / twice / dram, level)
    for level in s.caches:
        last = level is s.caches[-1]
        half = (llc if last and llc else level.size_bytes) // 2
        walks[("half", level.level)] = cyclic_chain(half, level.line_bytes, seed=level.level)
        if not last:
            walks[("twice", level.level)] = cyclic_chain(2 * level.size_bytes, level.line_bytes, seed=level.level)
    for footprint in reach_footprints(s.caches, llc):
        walks[("reach", footprint)] = cyclic_chain(footprint, s.line_bytes, seed=footprint % 1000)
    dram_chain = cyclic_chain(max(DRAM_CHASE_BYTES, 4 * llc), s.line_bytes)
    walks[("dram", 0)] = dram_chain
    got = s.record(settle({key: _chase_round(chase, chain, s.line_bytes) for key, chain in walks.items()}),
                   name=_chase_label)
    s.m.cache_latency_s = {level: t for (where, level), t in got.items() if where == "half"}
    s.m.llc_chase_bytes = ((llc or s.caches[-1].size_bytes) // 2) if s.caches else 0
    s.m.reach_latency_s = {footprint: t for (where, footprint), t in got.items() if where == "reach"}
    s.m.beyond_latency_s = {level: t for (where, level), t in got.items() if where == "twice"}
    s.m.dram_latency_s = got[("dram", 0)]
    s.scratch["dram chain"] = dram_chain


def _chase_label(key: tuple[str, int]) -> str:
    if key[0] == "dram":
        return "DRAM latency"
    if key[0] == "reach":
        return f"chase over {key[1] / MiB:g} MiB"
    return f"L{key[1]} latency ({key[0]})"


#: Footprints of the TLB reach chases, in multiples of twice the last private level: a step of
#: about 1.4 finds the knee within that factor (the development VM: 6 to 8 MiB).
REACH_STEPS = (1.5, 2, 3, 4, 6, 8)
#: A random access beyond the reach that takes at least this many times one within it has met a
#: page walk (the development VM: 3x; without a knee the profile gets no ``memory.tlb``).
TLB_KNEE_RATIO = 1.5


def reach_footprints(caches: Sequence[SysfsCache], llc_bytes: int) -> list[int]:
    """The footprints :func:`_measure_latencies` chases to find the TLBs' reach: beyond twice the
    last private level, below half the last level (still served by it)."""
    if len(caches) < 2:
        return []
    base = 2 * caches[-2].size_bytes
    top = (llc_bytes or caches[-1].size_bytes) // 2
    return [int(base * k) for k in REACH_STEPS if base * k < top]


@dataclass(frozen=True)
class TlbFit:
    """The TLBs' reach and the page walk beyond it, and where the chases put the knee."""

    reach_bytes: int
    miss_latency_s: float
    why: str


def tlb_fit(caches: Sequence[SysfsCache], m: Measurements) -> Optional[TlbFit]:
    """The TLBs' reach and miss latency, or None: the chases beyond the private caches and
    within the last level, from twice the last private level (its hit latency) up to the chase over
    half the last level; the reach lies between the last footprint whose chase stays below the
    middle of the hit latency and the chase over half the last level, and the first above it
    (their geometric mean); the miss latency is the difference of those two chases. The knee may
    fall after the last of the reach chases, before the last level's own: on a guest whose share of
    a shared last level shrank between the working-set curve and the chases, that chase met the
    step up (10:22 UTC on the Zen 3 guest of docs/validation.md: 116 ns over 11 MiB, where 8 MiB
    and less stayed near the 18 ns hit latency), and without the knee every hit of the level was
    charged it."""
    if len(caches) < 2 or not m.reach_latency_s:
        return None
    base = 2 * caches[-2].size_bytes
    within, beyond = m.beyond_latency_s.get(caches[-2].level), m.cache_latency_s.get(caches[-1].level)
    if not within or not beyond or beyond < TLB_KNEE_RATIO * within:
        return None
    middle = (within + beyond) / 2
    last = {m.llc_chase_bytes: beyond} if m.llc_chase_bytes > max(m.reach_latency_s) else {}
    points = sorted({base: within, **m.reach_latency_s, **last}.items())
    for (small, t_small), (large, t_large) in zip(points, points[1:]):
        if t_small <= middle < t_large:
            curve = ", ".join(f"{f / MiB:g} MiB {t * 1e9:.0f} ns" for f, t in points)
            return TlbFit(int(math.sqrt(small * large)), beyond - within,
                          f"pointer chases beyond the private caches ({curve}; half the last level "
                          f"{beyond * 1e9:.0f} ns): the knee between {small / MiB:g} and {large / MiB:g} MiB")
    return None


def _measure_parallelism(s: Session) -> None:
    """1 ... 32 independent chases interleaved over the DRAM chain: the line fetches' bandwidth."""
    _, chase_many = _chase_kernels()
    line = s.line_bytes
    chain = s.scratch.pop("dram chain", None)
    if chain is None:
        chain = cyclic_chain(DRAM_CHASE_BYTES, line)
    lines = chain.size // (line // 8)

    def chase_round(chains: int) -> Callable[[], float]:
        # starts spread around the cycle so the chains do not meet within the walk
        starts = np.array([i * (lines // chains) * (line // 8) for i in range(chains)], dtype=np.int64)
        steps = max(20_000, 1_000_000 // chains)

        def run() -> float:          # seconds per line, on the thread's CPU time
            return thread_seconds(lambda: chase_many(chain, starts, steps)) / (chains * steps)
        chase_many(chain, starts, 100)
        return run
    got = s.record(settle({chains: chase_round(chains) for chains in CHAINS}),
                   name=lambda chains: f"{chains} chases interleaved")
    s.m.chases = [ChasePoint(chains, line / t) for chains, t in got.items()]


#: What ``calibrate`` measures, in order. The pointer chases come last: after numba has compiled
#: and run, torch's GEMM was seen to slow down on the development VM.
STEPS = (
    Step("clock (dependent ALU chain)", _measure_clock),
    Step("per-call overhead", _measure_overhead, ("per-call overhead", "threads")),
    Step("STREAM-like read and triad", _measure_stream, ("threads",)),
    Step("GEMV bandwidth vs working set", _measure_working_set, ("working-set curve",)),
    Step("GEMM", _measure_gemm),
    Step("direct convolution (F.conv2d)", _measure_conv),
    Step("convolutions oneDNN lowers (its verbose log)", _measure_conv_implementations),
    Step("GEMM in bf16 and int8 (dynamic quantization)", _measure_types),
    Step("GEMV in cache in fp32, bf16 and int8 (the loop's issue rate)", _measure_gemv_types),
    Step("GEMV rows beyond the last level (a row is a stream)", _measure_gemv_rows),
    Step("GEMV rows inside the last level", _measure_gemv_cached_rows),
    Step("decoder blocks' dispatch (tiny decoders, bench --llm's code)", _measure_dispatch),
    Step("element-wise kernels (add, mul, silu, exp)", _measure_elementwise),
    Step("BSR products (torch, 4 x 4 blocks)", _measure_bsr),
    Step("CSR SpMV / SpMM", _measure_sparse),
    Step("CSR SpMV beyond the private caches", _measure_sparse_beyond),
    Step("CSR SpMM gathering from the last level", _measure_spmm_gathers),
    Step("CSR SpMV gathering from below the first level", _measure_spmv_gathers),
    Step("the lowered product of a sparse convolution (torch CSR x im2col)", _measure_lowered_product),
    Step("latency per level (pointer chase)", _measure_latencies, ("private cache sizes", "latency order")),
    Step("memory-level parallelism", _measure_parallelism),
    Step("fresh pages (buffers the allocator maps at every call)", _measure_fresh_pages),
)


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def measure(threads: int, caches: Sequence[SysfsCache], cpu: CpuInfo,
            progress: Callable[[str], None] = lambda _: None, steps: Sequence[Step] = STEPS,
            looks: int = 1) -> Measurements:
    """Run every step of ``steps`` on ``threads`` torch threads, ``looks`` times over, each
    measurement kept at its best look (:meth:`Session.record`; two minutes a look on a small VM)."""
    import numba
    import scipy
    import torch

    torch.set_num_threads(threads)
    m = Measurements(threads, {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                               "numba": numba.__version__, "python": platform.python_version()})
    m.int8_tile = fbgemm_int8_tile(cpu.flags, torch.backends.quantized.engine)
    before = _load_average()
    session = Session(threads, caches, cpu, m, progress)
    for look in range(1, looks + 1):
        session.look, session.earlier = look, dict(m.settled)
        for step in steps:
            progress(f"calibrate: {step.label}" + (f" (look {look} of {looks})" if looks > 1 else ""))
            step.run(session)
            m.load_average = (before, _load_average())
            check_plausible(Calibration(caches, cpu, m, None), step.checks)
    progress("")
    return m


# --- fits: from measurements to model parameters ------------------------------------------------

def private_bytes(caches: Sequence[SysfsCache], cores: int) -> int:
    """Bytes of all private levels on all cores: working sets below this do not test the LLC."""
    return sum(c.size_bytes * cores for c in caches[:-1] if c.sharing_cpus <= 1)


def _beyond(points: Sequence[WorkingSetPoint], floor_bytes: int) -> list[WorkingSetPoint]:
    """The sweep's points beyond the private levels, by size."""
    return sorted((p for p in points if p.size_bytes > floor_bytes), key=lambda p: p.size_bytes)


def curve_plateaus(points: Sequence[WorkingSetPoint], floor_bytes: int) -> tuple[float, float]:
    """(in-cache, DRAM) bandwidth of the working-set curve beyond the private levels: the medians
    of the two parts of the best split of the curve into a higher part and a lower part of at
    least two points (least squares in log bandwidth). Nothing here depends on a claimed size."""
    pts = _beyond(points, floor_bytes)
    logs = np.log([p.bandwidth_bytes_per_s for p in pts])
    if len(pts) < 3:
        value = float(np.exp(np.median(logs))) if len(pts) else 0.0
        return value, value
    best: Optional[tuple[float, float, float]] = None
    for k in range(1, len(pts) - 1):
        left, right = np.median(logs[:k]), np.median(logs[k:])
        cost = float(np.sum((logs[:k] - left) ** 2) + np.sum((logs[k:] - right) ** 2))
        if best is None or cost < best[0]:
            best = (cost, left, right)
    assert best is not None     # three or more points: at least one split
    return float(np.exp(best[1])), float(np.exp(best[2]))


def effective_llc_bytes(points: Sequence[WorkingSetPoint], floor_bytes: int, granule_bytes: int
                        ) -> tuple[int, float, float]:
    """(LLC size, in-cache bandwidth, DRAM bandwidth) read off the working-set curve; the size is
    0 when the curve shows no last level (its plateaus within :data:`FALL_OFF_RATIO`).

    The plateaus are :func:`curve_plateaus`. The size: where the curve, interpolated log-log,
    crosses the geometric mean of the two, i.e. where a repeated working set has lost half (in
    log) of the LLC's advantage. Under LRU a layer is served from the LLC entirely below this
    size and not at all above it; a real LLC shared in a VM falls off gradually, and this crossing
    keeps a layer in that fall-off within the square root of the in-cache / DRAM ratio of the
    model (see docs/validation.md)."""
    level, dram = curve_plateaus(points, floor_bytes)
    if level < FALL_OFF_RATIO * dram:
        return 0, level, dram
    middle = math.sqrt(level * dram)
    previous = None
    size = 0.0
    for p in _beyond(points, floor_bytes):
        if p.bandwidth_bytes_per_s < middle:
            if previous is None:
                size = float(p.size_bytes)
            else:
                # log-log interpolation between the last point above and the first below
                share = (math.log(previous.bandwidth_bytes_per_s / middle)
                         / math.log(previous.bandwidth_bytes_per_s / p.bandwidth_bytes_per_s))
                size = previous.size_bytes * (p.size_bytes / previous.size_bytes) ** share
            break
        previous = p
    return max(granule_bytes, int(size) // granule_bytes * granule_bytes), level, dram


#: Policies :func:`fit_llc` tries (BIP behaves as DIP on a loop too large for the cache).
LLC_POLICIES = (Replacement.LRU, Replacement.RANDOM, Replacement.DIP)
#: Loop sizes, as multiples of the cache, at which each policy's hit share is simulated.
_LOOP_RATIOS = np.geomspace(1 / 8, 8, 49)


@functools.cache
def loop_hit_shares(policy: Replacement, ways: int, sets: int = 128) -> tuple[float, ...]:
    """Steady-state hit share of a cache under ``policy`` for a loop over ``r`` times its size,
    at each ``r`` of ``_LOOP_RATIOS``: the working-set sweep's access pattern (one matrix read
    sequentially, over and over), run through the cache model itself on a cache of ``sets`` sets
    (the share depends on the ratio and the ways, not on the absolute size)."""
    line = 64
    geometry = CacheGeometry("LLC", sets * ways * line, line, ways, True, policy)
    shares = []
    for ratio in _LOOP_RATIOS:
        lines = max(1, int(round(ratio * sets * ways)))
        addresses = np.tile(np.arange(lines, dtype=np.int64) * line, 4)
        served = CacheHierarchy([geometry], 1).access(addresses, np.zeros(addresses.size, dtype=bool),
                                                      np.zeros(addresses.size, dtype=np.int64)).served_level
        shares.append(float(np.mean(served[-lines:] == 0)))    # the last pass: steady state
    return tuple(shares)


@dataclass(frozen=True)
class LlcFit:
    """The last level as the working-set curve shows it: size (0: no fall-off seen), policy, and
    the two bandwidths.

    ``losses`` holds, per policy tried, its best size and the mean |log error| of the curve it
    predicts there (the chosen policy has the smallest; LRU's size is the crossing rule of
    :func:`effective_llc_bytes`)."""

    size_bytes: int
    replacement: Replacement
    in_cache_bytes_per_s: float
    dram_bytes_per_s: float
    losses: dict[Replacement, tuple[int, float]]


def _curve_loss(points: Sequence[WorkingSetPoint], size: float, shares: np.ndarray, level: float,
                dram: float) -> float:
    """Mean |log error| of the bandwidths a cache of ``size`` with these loop hit shares predicts:
    a share ``h`` of the bytes at the in-cache rate, the rest at the DRAM rate."""
    ratios = np.array([p.size_bytes for p in points], dtype=float) / size
    h = np.interp(np.log(ratios), np.log(_LOOP_RATIOS), shares, left=shares[0], right=shares[-1])
    predicted = 1.0 / (h / level + (1.0 - h) / dram)
    measured = np.array([p.bandwidth_bytes_per_s for p in points])
    return float(np.mean(np.abs(np.log(predicted / measured))))


def fit_llc(points: Sequence[WorkingSetPoint], floor_bytes: int, granule_bytes: int, ways: int,
            choose_policy: bool = True) -> LlcFit:
    """The last level's size and policy that best reproduce the working-set curve.

    For each policy of :data:`LLC_POLICIES`, the cache model's hit share of a repeated loop
    (:func:`loop_hit_shares`) turns a candidate size (up to the largest size swept) into a
    predicted curve; the size with the smallest mean |log error| over the points beyond the
    private levels is the policy's, and the policy with the smallest error wins (LRU on a tie).
    LRU keeps the crossing rule's size. With ``choose_policy`` False the result is LRU whatever
    the errors (still all in ``losses``).
    """
    lru_size, level, dram = effective_llc_bytes(points, floor_bytes, granule_bytes)
    pts = _beyond(points, floor_bytes)
    if not lru_size or len(pts) < 2:
        return LlcFit(lru_size, Replacement.LRU, level, dram, {Replacement.LRU: (lru_size, 0.0)})
    candidates = np.geomspace(max(granule_bytes, floor_bytes), pts[-1].size_bytes, 241)
    losses: dict[Replacement, tuple[int, float]] = {}
    for policy in LLC_POLICIES:
        shares = np.array(loop_hit_shares(policy, ways))
        if policy is Replacement.LRU:
            losses[policy] = (lru_size, _curve_loss(pts, lru_size, shares, level, dram))
            continue
        errors = [_curve_loss(pts, size, shares, level, dram) for size in candidates]
        best = int(np.argmin(errors))
        size = max(granule_bytes, int(candidates[best]) // granule_bytes * granule_bytes)
        losses[policy] = (size, float(errors[best]))
    winner = min(LLC_POLICIES, key=lambda p: (losses[p][1], p is not Replacement.LRU)) if choose_policy \
        else Replacement.LRU
    return LlcFit(losses[winner][0], winner, level, dram, losses)


@dataclass(frozen=True)
class SparseFit:
    """A sparse kernel's issue costs as :mod:`simulator.engine.kernelcost` reads them, fitted to
    its timings: ``errors`` holds the largest |relative error| of the fitted times for each
    ``columns_per_step`` tried (the chosen one has the smallest)."""

    cycles_per_nonzero: float
    cycles_per_row: float
    columns_per_step: int
    errors: dict[int, float]
    call_overhead_s: float = 0.0       # the library's set-up per call, beyond the launch overhead

    @property
    def error(self) -> float:
        """Largest |relative error| of the chosen fit over the timings."""
        return self.errors[self.columns_per_step]


def busy_cycles(timing: SparseTiming, overhead_s: float, clock_hz: float) -> float:
    """Core cycles a timed call spent issuing: its time less the per-call overhead (never below a
    tenth of the call), times the clock, times the threads it ran on (the cost model divides by
    the cores the kernel uses)."""
    busy = max(timing.seconds - overhead_s, 0.1 * timing.seconds)
    return busy * clock_hz * timing.threads


def fit_sparse(timings: Sequence[SparseTiming], overhead_s: float, clock_hz: float,
               widths: Sequence[int] = (1,), per_call: bool = False) -> SparseFit:
    """``cycles_per_nonzero`` and ``cycles_per_row`` by non-negative least squares in relative
    error, for each ``columns_per_step`` of ``widths``: the cost model's cycles of a call are
    ``ceil(columns / width) x (row_steps x per_nonzero + rows x per_row)``. Both costs are kept
    at least :data:`MIN_CYCLES`; the width with the smallest largest error wins (the narrower on
    a tie). With ``per_call`` (timings at two or more non-zero counts), the library's set-up per
    call is a third unknown: seconds of the call, whatever its size, that its threads wait through."""
    from scipy.optimize import nnls

    if not timings:
        raise ValueError("no sparse timings to fit")
    per_call = per_call and len({t.nonzeros for t in timings}) > 1
    cycles = np.array([busy_cycles(t, overhead_s, clock_hz) for t in timings])
    best: Optional[tuple[float, int, np.ndarray]] = None
    errors: dict[int, float] = {}
    for width in sorted(set(widths)):
        groups = np.array([math.ceil(t.columns / width) for t in timings], dtype=float)
        columns = [np.array([t.row_steps for t in timings]) * groups, np.array([t.rows for t in timings]) * groups]
        if per_call:    # busy cycles are seconds x clock x threads: a second of set-up is clock x threads of them
            columns.append(np.array([clock_hz * t.threads for t in timings], dtype=float))
        design = np.column_stack(columns) / cycles[:, None]     # relative error: every timing counts alike
        costs, _ = nnls(design, np.ones(len(timings)))
        costs[:2] = np.maximum(costs[:2], MIN_CYCLES)
        errors[width] = float(np.max(np.abs(design @ costs - 1.0)))
        if best is None or errors[width] < best[0]:
            best = (errors[width], width, costs)
    assert best is not None, "fit_sparse needs a width"
    _, width, costs = best
    return SparseFit(float(costs[0]), float(costs[1]), width, errors, float(costs[2]) if per_call else 0.0)


@dataclass(frozen=True)
class Fits:
    """What the measurements say about the model's parameters."""

    llc: LlcFit
    spmv: SparseFit
    spmm: SparseFit
    spconv: Optional[SparseFit] = None      # the lowered product, where it was measured
    # every CSR backend timed: (spmv, spmm) fitted on its own timings
    libraries: dict[str, tuple[SparseFit, SparseFit]] = field(default_factory=dict)
    # SpMM backend -> its loop's wait on gathers beyond the private caches, where it waits
    gathers: dict[str, GatherWait] = field(default_factory=dict)
    # SpMV backend -> what a gathered line its first level does not hold costs its loop
    fills: dict[str, GatherFill] = field(default_factory=dict)

    def sparse_fits(self) -> list[tuple[str, SparseFit]]:
        """Every sparse fit by a name that says which: ``spmv``, ``scipy spmm``, ..."""
        out = [(kind, fit) for kind, fit in (("spmv", self.spmv), ("spmm", self.spmm), ("spconv", self.spconv))
               if fit is not None]
        for name, (spmv, spmm) in self.libraries.items():
            out += [(f"{name} spmv", spmv), (f"{name} spmm", spmm)]
        return out


def fit_measurements(caches: Sequence[SysfsCache], cpu: CpuInfo, m: Measurements,
                     fit_llc_policy: bool = False) -> Fits:
    """The last level's fit and the sparse kernels' costs."""
    last = caches[-1]
    llc = fit_llc(m.working_set, private_bytes(caches, cpu.cores), last.line_bytes * last.ways, last.ways,
                  choose_policy=fit_llc_policy)
    def pair(backend: Optional[str]) -> tuple[SparseFit, SparseFit]:
        # the library's set-up per call, from its SpMV at two non-zero counts, is its SpMM's too
        spmv = fit_sparse(m.sparse_of("spmv", backend), m.launch_overhead_s, cpu.clock_hz, per_call=True)
        spmm = fit_sparse(m.sparse_of("spmm", backend), m.launch_overhead_s + spmv.call_overhead_s, cpu.clock_hz,
                          widths=(1, cpu.vector_lanes))
        return spmv, replace(spmm, call_overhead_s=spmv.call_overhead_s)

    spmv, spmm = pair(None)
    lowered = m.sparse_of("spconv")
    spconv = fit_sparse(lowered, m.launch_overhead_s, cpu.clock_hz, widths=(1, cpu.vector_lanes)) if lowered else None
    backends = m.sparse_libraries()
    libraries = {backend: pair(backend) for backend in backends} if len(backends) > 1 else {}
    gathers = {probe.backend: wait for probe in m.spmm_gathers
               if (wait := gather_wait(caches, m, probe)) is not None}
    fills = {probe.backend: fill for probe in m.spmv_gathers
             if (fill := gather_fill(caches, probe, cpu.clock_hz)) is not None}
    return Fits(llc, spmv, spmm, spconv, libraries, gathers, fills)


# --- plausibility -------------------------------------------------------------------------------

class Implausible(SimulatorError):
    """Measurements no hardware could give: ``calibrate`` writes no profile (exit status 2)."""

    def __init__(self, check: str, why: str, load_average: tuple[float, float] = (0.0, 0.0)) -> None:
        self.check = check
        self.why = why
        before, after = load_average
        super().__init__(f"calibrate: the {check} check failed: {why} (load average {before:.2f} before, "
                         f"{after:.2f} after); no profile written")


@dataclass(frozen=True)
class Calibration:
    """What the checks look at: the machine as read, the measurements, and the fits (None while
    measuring: the checks a step names use its measurements only)."""

    caches: Sequence[SysfsCache]
    cpu: CpuInfo
    m: Measurements
    fits: Optional[Fits]


def _us(seconds: float) -> str:
    return format_quantity(seconds, Quantity.SECONDS, 3)


def _gbs(rate: float) -> str:
    return format_quantity(rate, Quantity.BYTES_PER_S, 3)


def check_overhead(c: Calibration) -> Optional[str]:
    """The per-call overhead is a few microseconds on any CPU."""
    overhead = c.m.launch_overhead_s
    if not 0 < overhead <= MAX_CALL_OVERHEAD_S:
        return (f"a 16 x 16 torch.mv takes {_us(overhead)} per call (at most {_us(MAX_CALL_OVERHEAD_S)} on an "
                "idle CPU): other processes are busy on these cores")
    return None


def check_threads(c: Calibration) -> Optional[str]:
    """The threads get cores of their own: running GEMMs they get (nearly) all of their cores' time,
    a small GEMV on all of them is not far slower than on one, and a streaming read on all of
    them is not slower than on one."""
    m = c.m
    if m.threads <= 1:
        return None
    if m.cpu_share < MIN_CPU_SHARE:
        return (f"running GEMMs, the {m.threads} threads got {m.cpu_share:.0%} of {m.threads} cores' time: other "
                "processes are busy on these cores (or more --threads than free cores)")
    if m.small_gemv_s > THREAD_SLOWDOWN * m.small_gemv_one_thread_s + 20e-6:
        return (f"a 256 x 256 torch.mv takes {_us(m.small_gemv_s)} on {m.threads} threads against "
                f"{_us(m.small_gemv_one_thread_s)} on one: the threads do not get cores of their own "
                "(other processes busy, or more --threads than free cores)")
    if m.stream_read_one_thread_bytes_per_s and \
            m.stream_read_bytes_per_s < MIN_THREAD_SCALING * m.stream_read_one_thread_bytes_per_s:
        return (f"a streaming read reaches {_gbs(m.stream_read_bytes_per_s)} on {m.threads} threads against "
                f"{_gbs(m.stream_read_one_thread_bytes_per_s)} on one: too few threads get a core "
                "(other processes busy)")
    return None


def check_private_sizes(c: Calibration) -> Optional[str]:
    """Every private level's sysfs size is confirmed: a chase over twice it is clearly slower
    than over half of it (the data left the level in between)."""
    for level in c.caches[:-1]:
        inside, outside = c.m.cache_latency_s.get(level.level), c.m.beyond_latency_s.get(level.level)
        if inside is None or outside is None:
            return f"L{level.level}'s size was not measured (no pointer chase over it)"
        if outside < SIZE_STEP_RATIO * inside:
            return (f"sysfs says L{level.level} holds {format_quantity(level.size_bytes, Quantity.BYTES)}, but a "
                    f"chase over twice that ({_us(outside)}) is not slower than over half of it ({_us(inside)}): "
                    "the size is not confirmed")
    return None


def check_working_set_curve(c: Calibration) -> Optional[str]:
    """Beyond the private levels, a bigger repeated working set is never served faster (up to
    :data:`MONOTONE_TOLERANCE`): a cache keeps less of it, never more."""
    slowest: Optional[WorkingSetPoint] = None
    for p in _beyond(c.m.working_set, private_bytes(c.caches, c.cpu.cores)):
        if slowest is not None and p.bandwidth_bytes_per_s > (1 + MONOTONE_TOLERANCE) * slowest.bandwidth_bytes_per_s:
            return (f"GEMV over {p.size_bytes / MiB:.4g} MiB ({_gbs(p.bandwidth_bytes_per_s)}) is faster than over "
                    f"{slowest.size_bytes / MiB:.4g} MiB ({_gbs(slowest.bandwidth_bytes_per_s)}): a bigger working "
                    "set cannot be served faster (other processes busy during the sweep)")
        if slowest is None or p.bandwidth_bytes_per_s < slowest.bandwidth_bytes_per_s:
            slowest = p
    return None


def check_last_level(c: Calibration) -> Optional[str]:
    """The sweep sees the last level: an in-cache plateau above the DRAM plateau, and a fall-off
    between them within the sizes swept (so its size is measured, whatever sysfs says)."""
    assert c.fits is not None, "a check of the fits runs after them"
    llc = c.fits.llc
    swept = max((p.size_bytes for p in c.m.working_set), default=0)
    if not llc.size_bytes:
        claimed = format_quantity(c.caches[-1].size_bytes, Quantity.BYTES)
        return (f"GEMV bandwidth falls from no in-cache plateau to DRAM up to {swept / MiB:.3g} MiB (plateaus "
                f"{_gbs(llc.in_cache_bytes_per_s)} and {_gbs(llc.dram_bytes_per_s)}): the last level's size "
                f"cannot be measured (sysfs claims {claimed}, not trusted unmeasured)")
    return None


def check_latency_order(c: Calibration) -> Optional[str]:
    """Each level answers no slower than the level below it (DRAM last), within :data:`ORDER_TOLERANCE`."""
    names = [f"L{level.level}" for level in c.caches] + ["DRAM"]
    latencies = [c.m.cache_latency_s.get(level.level, 0.0) for level in c.caches] + [c.m.dram_latency_s]
    for upper, lower, t_upper, t_lower in zip(names, names[1:], latencies, latencies[1:]):
        if t_upper > ORDER_TOLERANCE * t_lower:
            return (f"{upper} answers a pointer chase in {_us(t_upper)}, slower than {lower} below it "
                    f"({_us(t_lower)}): other processes disturbed the chases")
    return None


def check_kernel_rates(c: Calibration) -> Optional[str]:
    """No kernel beats the FMA peak of the threads it ran on: GEMM's FLOP/s, and each sparse fit's
    cost per non-zero (one step covers ``columns_per_step`` FMAs; a core does at most
    ``lanes_per_core`` a cycle)."""
    peak = c.cpu.peak_flops_per_s * c.m.threads / c.cpu.cores
    if c.m.gemm_flops_per_s > peak * (1 + GEMM_PEAK_MARGIN):
        return (f"GEMM at {format_quantity(c.m.gemm_flops_per_s, Quantity.FLOP_PER_S, 3)} beats the peak of "
                f"{c.m.threads} thread(s), {format_quantity(peak, Quantity.FLOP_PER_S, 3)}, by more than "
                f"{GEMM_PEAK_MARGIN:.0%} (its measurement noise): the clock "
                f"({format_quantity(c.cpu.clock_hz, Quantity.HZ)}) is below the real one, or the vector "
                "width the CPU flags give is")
    assert c.fits is not None, "a check of the fits runs after them"
    for kind, fit in c.fits.sparse_fits():
        floor = fit.columns_per_step / c.cpu.lanes_per_core
        if fit.cycles_per_nonzero < floor:
            return (f"{kind}'s fit costs {fit.cycles_per_nonzero:.3g} cycles per non-zero for "
                    f"{fit.columns_per_step} column(s), below the FMA peak's {floor:.3g}: its timings are too "
                    "fast for this clock and core count")
    return None


def check_profile_order(profile: HardwareProfile) -> Optional[str]:
    """In the profile built: every level at least as fast as the one below it, in bandwidth (all
    of a private level's instances together) and in latency, DRAM last."""
    cores = profile.compute.cores
    rows = [(level.name, level.bandwidth_bytes_per_s * (1 if level.shared else cores), level.latency_s)
            for level in profile.caches]
    if profile.dram is not None:
        rows.append(("DRAM", profile.dram.sustained_bandwidth_bytes_per_s, profile.dram.latency_s))
    for (upper, bw_upper, t_upper), (lower, bw_lower, t_lower) in zip(rows, rows[1:]):
        if bw_upper * ORDER_TOLERANCE < bw_lower:
            return (f"{upper} ({_gbs(bw_upper)}) is slower than {lower} below it ({_gbs(bw_lower)}): other "
                    "processes busy during the working-set sweep")
        if t_upper > ORDER_TOLERANCE * t_lower:
            return f"{upper}'s latency ({_us(t_upper)}) exceeds {lower}'s below it ({_us(t_lower)})"
    return None


#: The checks measurements must pass before a profile is built, in order: the first that fails
#: is the one line ``calibrate`` prints (the earlier ones explain the later ones' failures).
CHECKS: tuple[tuple[str, Callable[[Calibration], Optional[str]]], ...] = (
    ("per-call overhead", check_overhead),
    ("threads", check_threads),
    ("private cache sizes", check_private_sizes),
    ("working-set curve", check_working_set_curve),
    ("last-level size", check_last_level),
    ("latency order", check_latency_order),
    ("kernel rates", check_kernel_rates),
)


def check_plausible(c: Calibration, names: Optional[Sequence[str]] = None) -> None:
    """Raise :class:`Implausible` naming the first check of :data:`CHECKS` that fails (of those
    in ``names``, when given)."""
    for name, check in CHECKS:
        if names is not None and name not in names:
            continue
        why = check(c)
        if why is not None:
            raise Implausible(name, why, c.m.load_average)


# --- the profile, one block at a time -----------------------------------------------------------

class Notes:
    """The ``sources`` and ``fitted`` entries of the profile being built. ``how`` says when, on how
    many threads and with which libraries the measurements were made; ``under(prefix)`` gives a
    view whose paths are relative to a block (``compute.kernels.spmv``)."""

    def __init__(self, how: str, prefix: str = "", sources: Optional[dict[str, str]] = None,
                 fitted: Optional[dict[str, str]] = None) -> None:
        self.how = how
        self.prefix = prefix
        self.sources: dict[str, str] = {} if sources is None else sources
        self.fitted: dict[str, str] = {} if fitted is None else fitted

    def under(self, prefix: str) -> Notes:
        """The same notes, with paths under ``prefix``."""
        return Notes(self.how, self._path(prefix), self.sources, self.fitted)

    def _path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def source(self, name: str, text: str) -> None:
        """A figure read or derived, not measured."""
        self.sources[self._path(name)] = text

    def measured(self, name: str, text: str) -> None:
        """A figure measured directly."""
        self.sources[self._path(name)] = f"{self.how}: {text}"

    def fit(self, name: str, text: str) -> None:
        """A figure fitted to measurements."""
        self.fitted[self._path(name)] = f"{self.how}: {text}"


def _q(value: float, quantity: Quantity) -> str:
    return format_quantity(value, quantity)


def _settled(m: Measurements, *names: str) -> str:
    """How the named measurements settled, for a note."""
    parts = [f"{name} {m.settled[name].describe()}" for name in names if name in m.settled]
    return f" [{'; '.join(parts)}]" if parts else ""


def block_dispatch(m: Measurements) -> dict[str, float]:
    """Each type's tiny-decoder block less what the cost model charges it apart (the launch overhead
    of its operators and its linear layers' call overhead): the host's dispatch alone."""
    out = {}
    for dtype, per_block in m.block_dispatch_s.items():
        charged = DISPATCH_OPERATORS * m.launch_overhead_s + DISPATCH_LINEARS * m.gemv_call_s.get(dtype, 0.0)
        if per_block > charged:
            out[dtype] = per_block - charged
    return out


def _sparse_note(kind: str, fit: SparseFit, timings: Sequence[SparseTiming], m: Optional[Measurements] = None) -> str:
    shapes = ", ".join(f"{t.rows} x {t.depth} ({t.nonzeros} non-zeros)" for t in timings
                       if t.columns == timings[0].columns)
    batches = sorted({t.columns for t in timings})
    tried = "; ".join(f"{w} column(s) a step: {100 * e:.3g}%" for w, e in fit.errors.items())
    fixed = "the per-call overhead"
    if fit.call_overhead_s > 0:
        fixed += f" and the library's set-up per call, {_q(fit.call_overhead_s, Quantity.SECONDS)}"
        fixed += " (fitted as a third unknown)" if len({t.nonzeros for t in timings}) > 1 else " (its SpMV's)"
    return (f"{kind} of CSR {shapes} x {batches} column(s) with {timings[0].backend} on {timings[0].threads} "
            f"thread(s), median call per shape less {fixed}, x clock x threads = cycles; non-negative least "
            f"squares in relative error on ceil(columns / columns_per_step) x (non-zeros x per non-zero + rows "
            f"x per row); largest error {tried}"
            + ("" if m is None else _settled(m, *(_sparse_label(kind, t.backend, (t.rows, t.nonzeros, t.columns))
                                                 for t in timings))))


def kernels_block(cpu: CpuInfo, m: Measurements, fits: Fits, notes: Notes) -> dict[str, Any]:
    """``compute.kernels``: GEMM's library efficiency (conv the same), GEMV's loop per type, the
    sparse costs (spconv as spmm, lowered by im2col as bench runs it)."""
    measured = m.gemm_flops_per_s / (cpu.peak_flops_per_s * m.threads / cpu.cores)
    efficiency = float(f"{min(1.0, measured):.4g}")
    above = (f" ({measured:.3g} measured: above the peak by less than its noise, GEMM_PEAK_MARGIN)"
             if measured > 1 else "")
    gemm_names = [_gemm_label(shape) for shape in gemm_shapes()]
    notes.fit("gemm.library_efficiency", "median over F.linear of " + ", ".join(f"{r} x {c}" for r, c, _ in GEMM_SHAPES)
              + f" of the slope between batch {GEMM_SHAPES[0][2]} and {GEMM_WIDE_BATCH} (each its median call): "
              f"FLOP/s over the FMA peak of {m.threads} thread(s){above}" + _settled(m, *gemm_names))
    dense = {"library_efficiency": efficiency, **pack_block(cpu, m, notes)}
    block: dict[str, Any] = {"gemm": dense, "conv": conv_block(cpu, m, dense, notes), "gemv": gemv_block(cpu, m, notes)}
    if m.elementwise_per_s > 0:
        per_vector = cpu.clock_hz * m.threads * cpu.vector_lanes / m.elementwise_per_s
        block["pool"] = {"cycles_per_element": float(f"{per_vector:.4g}")}
        notes.fit("pool.cycles_per_element", f"torch {', '.join(ELEMENTWISE_OPS)} over " + " and ".join(
            str(n) for n in ELEMENTWISE_SIZES) + f" fp32 elements (in cache), each op's slope between the two "
            f"sizes, the median: {m.elementwise_per_s / 1e9:.3g} G elements/s on {m.threads} thread(s) = "
            f"{per_vector:.3g} cycles per vector of {cpu.vector_lanes}")
    for kind, fit in (("spmv", fits.spmv), ("spmm", fits.spmm)):
        block[kind] = _sparse_costs(fit)
        note = _sparse_note(kind, fit, m.sparse_of(kind), m)
        notes.fit(f"{kind}.cycles_per_nonzero", note)
        notes.fit(f"{kind}.cycles_per_row", "the same fit")
        notes.fit(f"{kind}.columns_per_step", "the width (1 or the vector's lanes) whose fit has the smaller error")
        if fit.call_overhead_s > 0:
            notes.fit(f"{kind}.call_overhead", "the same fit" if kind == "spmv" else "spmv's (the same library)")
    block.update(_sparse_memory(cpu, m, fits.spmv, notes, block["spmv"]))
    spmm_backend = next((t.backend for t in m.sparse_of("spmm")), "")     # the library the SpMM fit is of
    _gather_wait_entry(m, fits.gathers.get(spmm_backend), block["spmm"], notes, "spmm")
    spmv_backend = next((t.backend for t in m.sparse_of("spmv")), "")
    _gather_fill_entry(m, fits.fills.get(spmv_backend), block["spmv"], notes, "spmv")
    if fits.libraries:
        block["libraries"] = libraries_block(cpu, m, fits, notes)
    if fits.spconv is None:
        block["spconv"] = {"algorithm": "im2col", **block["spmm"]}
        notes.source("spconv", "[D] as spmm, by im2col: bench lowers the input with F.unfold and multiplies it by "
                     "the same CSR product")
        return block
    fit = fits.spconv
    block["spconv"] = {"algorithm": "im2col", "cycles_per_nonzero": float(f"{fit.cycles_per_nonzero:.4g}"),
                       "cycles_per_row": float(f"{fit.cycles_per_row:.4g}"), "columns_per_step": fit.columns_per_step}
    if m.lowering:
        per_element = lowering_cycles(m, cpu.clock_hz)
        block["spconv"]["lowering_cycles_per_element"] = float(f"{per_element:.4g}")
        notes.fit("spconv.lowering_cycles_per_element", "F.unfold of a 160-channel 3 x 3 convolution's input to "
                  + " and ".join(f"{e // SPCONV_DEPTH}" for e, _ in m.lowering) + " columns, median call less the "
                  f"per-call overhead x clock x {m.threads} thread(s) over the elements written (the mean)")
    notes.source("spconv.algorithm", "im2col: bench lowers the input with F.unfold and multiplies it by a torch CSR "
                 "product, as calibrate times it")
    notes.fit("spconv.cycles_per_nonzero", f"torch CSR ({SPCONV_FILTERS} x {SPCONV_DEPTH}, densities "
              f"{', '.join(f'{d:g}' for d in SPCONV_DENSITIES)}) x a lowered input of "
              f"{' and '.join(str(p) for p in SPCONV_PIXELS)} columns (no layer the crosscheck checks); "
              + _sparse_note("spconv", fit, m.sparse_of("spconv")))
    notes.fit("spconv.cycles_per_row", "the same fit")
    notes.fit("spconv.columns_per_step", "the width (1 or the vector's lanes) whose fit has the smaller error")
    return block


def _sparse_costs(fit: SparseFit) -> dict[str, Any]:
    """A sparse kernel's costs as the profile writes them."""
    costs: dict[str, Any] = {"cycles_per_nonzero": float(f"{fit.cycles_per_nonzero:.4g}"),
                             "cycles_per_row": float(f"{fit.cycles_per_row:.4g}"),
                             "columns_per_step": fit.columns_per_step}
    if fit.call_overhead_s > 0:
        costs["call_overhead"] = _q(fit.call_overhead_s, Quantity.SECONDS)
    return costs


def _sparse_memory(cpu: CpuInfo, m: Measurements, spmv_fit: SparseFit, notes: Notes, spmv: dict[str, Any],
                   backend: Optional[str] = None) -> dict[str, Any]:
    """What a sparse library's memory side needs: ``index_bits`` of its backend (None: the SpMV
    backend bench picks) and ``kernel_index_bits`` where it copies them, returned, and
    ``load_overlap`` set in ``spmv`` where its loads run under less than all of its loop."""
    from .bench import INDEX_BITS, SparseBackend

    timings = m.sparse_of("spmv", backend)
    if not timings or timings[0].backend not in {b.value for b in SparseBackend}:
        return {}
    name = timings[0].backend
    at = "" if backend is None else f"libraries.{backend}."
    overlap = sparse_overlap(m, spmv_fit, cpu.clock_hz, name)
    if overlap is not None and overlap.share < 1:
        spmv["load_overlap"] = overlap.share
        probes = memory_probes(m, ("fp32",))
        notes.measured(f"{at}spmv.load_overlap", overlap.describe(name)
                       + _settled(m, _beyond_label(name, overlap.index_bits), *probes))
    notes.measured(f"{at}index_bits", f"the width of the indices and row pointers of {name}'s CSR matrices as "
                   "bench builds them" + (" (the SpMV backend it picks here)" if backend is None else ""))
    out: dict[str, Any] = {"index_bits": INDEX_BITS[SparseBackend(name)]}
    copied = copied_index_bits(m, name)
    if copied is not None:
        timing = m.beyond_of(name)
        assert timing is not None
        out["kernel_index_bits"] = copied
        notes.measured(f"{at}kernel_index_bits", f"one call of {name}'s SpMV over {timing.nonzeros / 1e6:.3g} M "
                       f"non-zeros faulted in {timing.faulted_bytes / MiB:.3g} MiB of fresh pages, "
                       f"{8 * timing.faulted_bytes / timing.nonzeros:.3g} bits a non-zero: a copy of its "
                       f"{out['index_bits']}-bit indices at every call")
    return out


def _gather_wait_entry(m: Measurements, wait: Optional[GatherWait], spmm: dict[str, Any], notes: Notes,
                       at: str) -> None:
    """``gathers_in_flight_per_core`` in ``spmm`` (a profile's SpMM block, named ``at`` in its notes)
    where its library's loop waits on its gathers (:func:`gather_wait`)."""
    if wait is None:
        return
    p = wait.probe
    spmm["gathers_in_flight_per_core"] = wait.in_flight
    notes.measured(f"{at}.gathers_in_flight_per_core", wait.describe() + _settled(
        m, _gathers_label((p.backend, p.near_columns)), _gathers_label((p.backend, p.far_columns))))


def _gather_fill_entry(m: Measurements, fill: Optional[GatherFill], spmv: dict[str, Any], notes: Notes,
                       at: str) -> None:
    """``cycles_per_gather_fill`` in ``spmv`` (a profile's SpMV block, named ``at`` in its notes)
    where its library was timed gathering from below the first level (:func:`gather_fill`)."""
    if fill is None:
        return
    p = fill.probe
    spmv["cycles_per_gather_fill"] = fill.cycles
    notes.measured(f"{at}.cycles_per_gather_fill", fill.describe() + _settled(
        m, _spmv_gathers_label((p.backend, p.near_columns)), _spmv_gathers_label((p.backend, p.far_columns))))


def libraries_block(cpu: CpuInfo, m: Measurements, fits: Fits, notes: Notes) -> dict[str, Any]:
    """``compute.kernels.libraries``: every CSR backend timed, its SpMV and SpMM fitted on its own
    timings, its index width, its loads' overlap beyond the caches and its threads where fewer
    than the cores (``bench`` picks per layer; a cross-check times each cell with its own)."""
    out: dict[str, Any] = {}
    for backend, (spmv_fit, spmm_fit) in fits.libraries.items():
        library: dict[str, Any] = {"spmv": _sparse_costs(spmv_fit), "spmm": _sparse_costs(spmm_fit)}
        for kind, fit in (("spmv", spmv_fit), ("spmm", spmm_fit)):
            notes.fit(f"libraries.{backend}.{kind}", _sparse_note(kind, fit, m.sparse_of(kind, backend), m))
        library.update(_sparse_memory(cpu, m, spmv_fit, notes, library["spmv"], backend))
        _gather_wait_entry(m, fits.gathers.get(backend), library["spmm"], notes, f"libraries.{backend}.spmm")
        _gather_fill_entry(m, fits.fills.get(backend), library["spmv"], notes, f"libraries.{backend}.spmv")
        threads = m.sparse_of("spmv", backend)[0].threads
        if threads < cpu.cores:
            library["threads"] = threads
            notes.measured(f"libraries.{backend}.threads", f"{backend}'s CSR product runs on one thread")
        out[backend] = library
    return out


def blocked_channels(ratio: float, lanes: int) -> bool:
    """True when the channel-block probe's ``ratio`` (:attr:`Measurements.conv_block_ratio`) is nearer
    whole blocks (1) than the plain count's square ratio: the library computes whole blocks."""
    plain = (conv_block_short(lanes) / CONV_BLOCK_PROBE) ** 2
    return ratio >= (1.0 + plain) / 2


def conv_block(cpu: CpuInfo, m: Measurements, gemm: Mapping[str, Any], notes: Notes) -> dict[str, Any]:
    """``kernels.conv``: the GEMM's block (its packing per type) with the direct convolution's own
    measured rate and channel blocking where :func:`_measure_conv` ran."""
    block = copy.deepcopy(dict(gemm))
    if m.conv_flops_per_s <= 0:
        notes.source("conv", "[D] as gemm: the same library GEMM (implicit-GEMM convolution)")
        return block
    names = [_conv_label((i, o, side, b)) for i, o, side in CONV_SHAPES for b in (1, CONV_WIDE_BATCH)]
    measured = m.conv_flops_per_s / (cpu.peak_flops_per_s * m.threads / cpu.cores)
    block["library_efficiency"] = float(f"{min(1.0, measured):.4g}")
    notes.fit("conv.library_efficiency", "median over F.conv2d of " + ", ".join(
        f"{i} -> {o} channels on {side} x {side}" for i, o, side in CONV_SHAPES) + f" (3 x 3, padding 1) of the "
        f"slope between batch 1 and {CONV_WIDE_BATCH} (each its median call): FLOP/s over the FMA peak of "
        f"{m.threads} thread(s)" + _settled(m, *names))
    notes.source("conv.pack_cycles_per_vector", "[D] as gemm: the convolution's batch line has no per-weight "
                 "intercept to fit (CONV_SHAPES)")
    short = conv_block_short(cpu.vector_lanes)
    probe = [_conv_label((c, c, CONV_BLOCK_SIDE, CONV_WIDE_BATCH)) for c in (CONV_BLOCK_PROBE, short)]
    blocked = blocked_channels(m.conv_block_ratio, cpu.vector_lanes)
    if blocked:
        block["channel_block"] = cpu.vector_lanes
    notes.measured("conv.channel_block", f"F.conv2d of {short} channels in and out took {m.conv_block_ratio:.3g} "
                   f"of the time of {CONV_BLOCK_PROBE} ({CONV_BLOCK_SIDE} x {CONV_BLOCK_SIDE}, batch "
                   f"{CONV_WIDE_BATCH}): " + (f"whole blocks of {cpu.vector_lanes} channels" if blocked else
                   f"no blocks (whole blocks would take 1, plain channels {(short / CONV_BLOCK_PROBE) ** 2:.3g})")
                   + _settled(m, *probe))
    if m.conv_call_s > m.launch_overhead_s:
        i, o, side, batch = CONV_CALL_PROBE
        block["call_overhead"] = {"fp32": _q(m.conv_call_s - m.launch_overhead_s, Quantity.SECONDS)}
        notes.measured("conv.call_overhead", f"the median call of F.conv2d of {i} -> {o} channels on {side} x "
                       f"{side} at batch {batch} ({2 * i * o * 9 * side * side * batch / 1e3:.0f} kFLOP), less "
                       "the per-call overhead: the library's set-up alone" + _settled(m, _conv_label(CONV_CALL_PROBE)))
    most = native_max_input_elements(m.conv_onednn_inputs)
    if most is not None:
        block["native_max_input_elements"] = most
        ran = ", ".join(f"{size}: {'oneDNN' if onednn else 'not oneDNN'}"
                        for size, onednn in sorted(m.conv_onednn_inputs.items()))
        notes.measured("conv.native_max_input_elements", "whether oneDNN's verbose log names a convolution for "
                       f"F.conv2d at batch 1, 3 x 3, per input size in elements ({ran}): the largest it did not")
    widest = direct_max_kernel(m.conv_implementations)
    if widest is not None:
        block["direct_max_kernel"] = widest
        named = ", ".join(f"{k} x {k}: {impl}" for k, impl in sorted(m.conv_implementations.items()))
        notes.measured("conv.direct_max_kernel", f"the implementation oneDNN's verbose log names for F.conv2d "
                       f"of 16 channels on 32 x 32 per window ({named}): the widest before the first im2col + "
                       "GEMM one")
    return block


def pack_block(cpu: CpuInfo, m: Measurements, notes: Notes) -> dict[str, Any]:
    """``pack_cycles_per_vector`` of the GEMM (and convolution) kernel: each type's intercept per
    weight (:func:`gemm_line`) as cycles of one core per vector of ``vector_lanes`` weights, the
    kernel's threads sharing the pass; empty where no type showed one."""
    cycles = {dtype: float(f"{per_weight * cpu.clock_hz * m.threads * cpu.vector_lanes:.4g}")
              for dtype, per_weight in m.gemm_pack_s_per_weight.items() if per_weight > 0}
    if not cycles:
        return {}
    notes.fit("gemm.pack_cycles_per_vector", "the intercept of each type's GEMM line (its time at batch "
              f"{GEMM_SHAPES[0][2]} less the slope's multiply-adds and the per-call overhead, the median over the "
              "shapes per weight) x clock x threads x lanes: " + ", ".join(
                  f"{dtype} {m.gemm_pack_s_per_weight[dtype] * 1e12:.3g} ps a weight" for dtype in cycles))
    return {"pack_cycles_per_vector": cycles}


def gemv_block(cpu: CpuInfo, m: Measurements, notes: Notes) -> dict[str, Any]:
    """``kernels.gemv``: the loop's cycles per vector of ``vector_lanes`` weights per type, from the
    cache-resident GEMVs (clock x threads x lanes over the weights per second); none measured, a
    GEMV is timed by its FMAs and its traffic."""
    cycles = {dtype: float(f"{cpu.clock_hz * m.threads * cpu.vector_lanes / rate:.4g}")
              for dtype, rate in m.gemv_weights_per_s.items() if rate > 0}
    if not cycles:
        notes.source("gemv", "[D] no loop measured: a GEMV is timed by its FMAs and its traffic")
        return {}
    for dtype in cycles:
        names = [_gemv_label(dtype, shape) for shape in gemv_loop_shapes(dtype)]
        kernel = "F.linear" if dtype == "fp32" else TYPE_KERNELS[dtype]
        row_s = m.gemv_row_s.get(dtype)
        fit = (f"the fit call + rows x row + weights / rate through their median calls: "
               f"{m.gemv_weights_per_s[dtype] / 1e9:.3g} G weights/s and {row_s * 1e9:.3g} ns a row" if row_s else
               f"the slope between their median calls: {m.gemv_weights_per_s[dtype] / 1e9:.3g} G weights/s")
        notes.fit(f"gemv.cycles_per_vector.{dtype}", f"{kernel} at batch 1 on "
                  + " and ".join(f"{r} x {c}" for r, c in gemv_loop_shapes(dtype)) + " weights (in cache), "
                  + fit + f" on {m.threads} thread(s)" + _settled(m, *names))
    block: dict[str, Any] = {"cycles_per_vector": cycles}
    row_cycles = {dtype: float(f"{cpu.clock_hz * m.threads * seconds:.4g}")
                  for dtype, seconds in m.gemv_row_s.items() if seconds > 0 and dtype in cycles}
    if row_cycles:
        block["cycles_per_row"] = row_cycles
        notes.fit("gemv.cycles_per_row", "each type's loop fit's seconds a row (above) x clock x threads: "
                  + ", ".join(f"{dtype} {m.gemv_row_s[dtype] * 1e9:.3g} ns a row on {m.threads} thread(s)"
                              for dtype in row_cycles))
    calls = {dtype: seconds for dtype, seconds in m.gemv_call_s.items() if seconds > 0 and dtype in cycles}
    if calls:
        block["call_overhead"] = {dtype: _q(seconds, Quantity.SECONDS) for dtype, seconds in calls.items()}
        notes.fit("gemv.call_overhead", "the intercept of each type's GEMV fit (its smaller GEMV less its weights "
                  "and rows at the fit's rates) less the per-call overhead: " + ", ".join(
                      f"{dtype} {seconds * 1e6:.3g} us" for dtype, seconds in calls.items()))
    overlaps = {dtype: o for dtype, o in gemv_load_overlaps(m).items() if o.overlap < 1}
    if overlaps:
        block["load_overlap"] = {dtype: o.overlap for dtype, o in sorted(overlaps.items())}
        notes.measured("gemv.load_overlap", "the share of the loop its loads ran under beyond the caches, "
                       "(loop + memory - measured) / loop: " + "; ".join(o.note(d) for d, o in sorted(overlaps.items()))
                       + _settled(m, *memory_probes(m, GEMV_LOOP_TYPES)))
    rows = row_streams(m)
    starts: dict[str, Any] = {}
    if rows is not None:
        starts["fp32"] = _q(rows.row_start_s * m.threads, Quantity.SECONDS)
        short, long_ = ROW_PROBE_COLUMNS
        notes.fit("gemv.row_start.fp32", f"F.linear at batch 1 over {m.gemv_rows_bytes / MiB:.4g} MiB of fp32 weights "
                  f"(beyond the last level) in rows of {short} and of {long_} columns: "
                  f"{m.gemv_rows_s[('fp32', short)] * 1e3:.3g} and {m.gemv_rows_s[('fp32', long_)] * 1e3:.3g} ms; "
                  f"t / bytes = 1 / bandwidth + row start / row bytes gives {_gbs(rows.fitted_bytes_per_s)} "
                  f"and {rows.row_start_s * 1e9:.3g} ns a row on {m.threads} thread(s), a row's start on one core"
                  + _settled(m, _rows_label(("fp32", short)), _rows_label(("fp32", long_))))
    if m.int8_tile is not None:
        depth, tile_rows = m.int8_tile
        block["packed_tiles"] = {"int8": {"depth": depth, "rows": tile_rows}}
        notes.source("gemv.packed_tiles.int8", f"[D] fbgemm's PackingTraits<int8_t, int32_t, ISA> (KCB x NCB) for the "
                     f"instruction set it picks on these CPU flags: {depth} x {tile_rows}")
    packed = packed_starts(m)
    if packed is not None:
        starts["int8"] = _q(packed.start_s * m.threads, Quantity.SECONDS)
        notes.fit("gemv.row_start.int8", _packed_starts_note(
            m, packed, "beyond the last level", m.gemv_rows_bytes, int8_row_times(m),
            lambda cols: _rows_label(("int8", cols))))
    if starts:
        block["row_start"] = starts
    level = m.gemv_cached_rows_level
    cached: dict[str, Any] = {}
    rows_inside = cached_row_streams(m)
    if rows_inside is not None:
        cached["fp32"] = _q(rows_inside.row_start_s * m.threads, Quantity.SECONDS)
        notes.fit(f"gemv.cached_row_start.{level}.fp32", _cached_rows_note(m, rows_inside))
    packed_inside = cached_packed_starts(m)
    if packed_inside is not None:
        cached["int8"] = _q(packed_inside.start_s * m.threads, Quantity.SECONDS)
        notes.fit(f"gemv.cached_row_start.{level}.int8", _packed_starts_note(
            m, packed_inside, f"inside {level}", m.gemv_cached_rows_bytes, m.gemv_cached_int8_s,
            lambda cols: _cached_rows_label(cols, "int8")))
    if cached:
        block["cached_row_start"] = {level: cached}
    return block


def _packed_starts_note(m: Measurements, packed: PackedStarts, where: str, size: int, times: Mapping[int, float],
                        label: Callable[[int], str]) -> str:
    """The note of int8's ``row_start`` or ``cached_row_start``: the probe (``where`` it ran, over
    ``size`` bytes, its ``times`` by columns, each measurement's ``label``), its solution, its rounds."""
    long_ = ROW_PROBE_COLUMNS[-1]
    return (f"int8 F.linear at batch 1 over {size / MiB:.4g} MiB of weights ({where}) in rows of {packed.depth} "
            f"and of {long_} columns: {_us(times[packed.depth])} and {_us(times[long_])}, {packed.streams} and "
            f"{packed.long_streams} tiles in a partly full last depth block; t = bytes / bandwidth + tiles x start "
            f"gives {packed.start_s * 1e9:.3g} ns a tile on {m.threads} thread(s), a stream's start on one core"
            + _settled(m, label(packed.depth), label(long_)))


def _cached_rows_note(m: Measurements, rows: RowStreams) -> str:
    """The note of ``gemv.cached_row_start``: the probe, its solution, its rounds."""
    short, long_ = ROW_PROBE_COLUMNS
    return (f"F.linear at batch 1 over {m.gemv_cached_rows_bytes / MiB:.4g} MiB of fp32 weights (inside "
            f"{m.gemv_cached_rows_level}) in rows of {short} and of {long_} columns: "
            f"{_us(m.gemv_cached_rows_s[short])} and {_us(m.gemv_cached_rows_s[long_])}; t / bytes = 1 / bandwidth + "
            "row start / row bytes gives "
            f"{_gbs(rows.bandwidth_bytes_per_s)} at that size and {rows.row_start_s * 1e9:.3g} ns a row "
            f"on {m.threads} thread(s), a row's start on one core"
            + _settled(m, *(_cached_rows_label(cols) for cols in ROW_PROBE_COLUMNS)))


def lowering_cycles(m: Measurements, clock_hz: float) -> float:
    """Cycles of one core per element ``F.unfold`` writes (mean over the measured widths)."""
    per = [max(0.0, seconds - m.launch_overhead_s) * clock_hz * m.threads / elements
           for elements, seconds in m.lowering]
    return float(np.mean(per)) if per else 0.0


def type_peaks(cpu: CpuInfo, m: Measurements, notes: Notes) -> dict[str, str]:
    """``peak_flops.bf16`` / ``int8``: the fp32 peak scaled by the measured GEMM rate of the type over
    fp32's, so that the cost model (a type's peak x the GEMM library efficiency, which calibrate
    fits on fp32) gives each type the GEMM rate torch reached in it. An *effective* peak of the
    library on this machine, not the datasheet's (AMX or AVX512-BF16 peaks are far above what
    torch's small-batch GEMMs reach); a type not measured gets none (bf16 is then emulated, int8
    refused)."""
    peaks = {}
    for dtype, rate in m.type_gemm_flops_per_s.items():
        if rate <= 0 or m.gemm_flops_per_s <= 0:
            continue
        ratio = rate / m.gemm_flops_per_s
        peaks[dtype] = _q(cpu.peak_flops_per_s * ratio, Quantity.FLOP_PER_S)
        names = [_gemm_label(shape, dtype) for shape in gemm_shapes()]
        notes.fit(f"peak_flops.{dtype}", f"effective: the fp32 peak x {ratio:.4g}, the median over "
                  + ", ".join(f"{r} x {c}" for r, c, _ in GEMM_SHAPES) + " of the slope between batch "
                  f"{GEMM_SHAPES[0][2]} and {GEMM_WIDE_BATCH} of {TYPE_KERNELS[dtype]} "
                  f"({format_quantity(rate, Quantity.FLOP_PER_S, 3)}) over the same in fp32 "
                  f"({format_quantity(m.gemm_flops_per_s, Quantity.FLOP_PER_S, 3)}), each its median call; with "
                  "gemm.library_efficiency it reproduces the measured rate (int8's quantize / dequantize passes "
                  "are charged apart, a few hundred thousand elements here)" + _settled(m, *names))
    return peaks


def bsr_block(cpu: CpuInfo, m: Measurements, fits: Fits, notes: Notes) -> dict[str, Any]:
    """``kernels.bsr``, derived, not fitted: the blocks at the GEMM's library efficiency, a block's
    index load and address work as an SpMV non-zero, a block row as an SpMV row, the SpMM's columns
    a step (the i7 profile's rule). ``crosscheck`` of a ``bench --format ...,bsr4x4`` file says
    how far that is from torch's BSR kernel."""
    efficiency = float(f"{m.gemm_flops_per_s / (cpu.peak_flops_per_s * m.threads / cpu.cores):.4g}")
    block = {"library_efficiency": min(1.0, efficiency),
             "cycles_per_block": float(f"{fits.spmv.cycles_per_nonzero:.4g}"),
             "cycles_per_row": float(f"{fits.spmv.cycles_per_row:.4g}"),
             "columns_per_step": fits.spmm.columns_per_step}
    if not m.bsr_block_s:
        notes.source("bsr", "[D] not fitted: library_efficiency as gemm (dense blocks), cycles_per_block as spmv's "
                     "cycles_per_nonzero (one index load and address arithmetic per block and column group), "
                     "cycles_per_row as spmv's, columns_per_step as spmm's")
        return block
    notes.source("bsr", "[D] library_efficiency as gemm's (dense blocks), cycles_per_row as spmv's, "
                 "columns_per_step as spmm's; the costs per block fitted (below)")
    cycles = {batch: seconds * cpu.clock_hz * m.threads for batch, seconds in m.bsr_block_s.items()}
    where = (f"torch BSR {BSR_BLOCK[0]} x {BSR_BLOCK[1]} of {BSR_SHAPE[0]} x {BSR_SHAPE[1]} at block densities "
             f"{' and '.join(f'{d:g}' for d in BSR_DENSITIES)}")
    if 1 in cycles:
        block["vector_cycles_per_block"] = float(f"{cycles[1]:.4g}")
        notes.fit("bsr.vector_cycles_per_block", f"{where} x a vector (torch.mv): the slope per block x clock "
                  f"x {m.threads} thread(s)")
    if SPMM_BATCH in cycles:
        groups = -(-SPMM_BATCH // block["columns_per_step"])
        # one block's multiply-adds on one core at the GEMM's rate, in cycles
        fma_cycles = 2.0 * BSR_BLOCK[0] * BSR_BLOCK[1] * SPMM_BATCH * cpu.clock_hz / (
            cpu.peak_flops_per_s / cpu.cores * block["library_efficiency"])
        block["cycles_per_block"] = float(f"{max(0.01, (cycles[SPMM_BATCH] - fma_cycles) / groups):.4g}")
        notes.fit("bsr.cycles_per_block", f"{where} x {SPMM_BATCH} columns: the slope per block x clock x "
                  f"{m.threads} thread(s), less its multiply-adds at the GEMM's rate, per group of "
                  f"{block['columns_per_step']} columns")
    return block


def compute_block(cpu: CpuInfo, m: Measurements, fits: Fits, line_bytes: int, listed_hz: float,
                  notes: Notes) -> dict[str, Any]:
    """``compute``: clock, cores, vector widths, peak, demand misses in flight, kernel costs,
    per-call overhead, and the threads of a single-threaded sparse backend."""
    line = line_bytes
    gathers = demand_slots(m, line)
    curve = ", ".join(f"{p.chains}: {p.bandwidth_bytes_per_s / 1e9:.2g}" for p in m.chases)
    if m.clock_hz:
        notes.measured("clock", f"one core, a dependent chain of {CYCLES_PER_CLOCK_STEP} one-cycle ALU operations a "
                       f"step (x ^= x >> 1 in numba); lscpu / cpuinfo say {format_quantity(listed_hz, Quantity.HZ)}"
                       + _settled(m, "clock"))
    else:
        notes.source("clock", "lscpu CPU max MHz, else /proc/cpuinfo cpu MHz")
    notes.source("cores", "lscpu CPU(s)")
    split = (" (AMD Zen 4: AVX-512 on 256-bit FMA pipes, AMD's Zen 4 optimization guide 57647, section 2.11)"
             if cpu.splits_512_bit else "")
    notes.source("lanes_per_core", f"[D] cpu flags: {cpu.lanes_per_core // 2} fp32 lanes x 2 FMA ports{split}")
    notes.source("vector_lanes", "[D] cpu flags: AVX-512 16, AVX2 / AVX 8, SSE / NEON 4 fp32 lanes")
    notes.source("peak_flops.fp32", "[D] cores x lanes x 2 FLOP x clock")
    notes.measured("outstanding_gathers_per_core", "Little's law on interleaved dependent pointer chases over "
                   f"DRAM (demand misses): best bandwidth x DRAM latency / {line} B = {gathers:.1f} lines "
                   f"(chains: GB/s {curve})" + _settled(m, *(f"{p.chains} chases interleaved" for p in m.chases)))
    notes.measured("launch_overhead", "median time of a 16 x 16 torch.mv" + _settled(m, "per-call overhead"))
    block: dict[str, Any] = {
        "clock": _q(cpu.clock_hz, Quantity.HZ),
        "cores": cpu.cores,
        "lanes_per_core": cpu.lanes_per_core,
        "vector_lanes": cpu.vector_lanes,
        "peak_flops": {"fp32": _q(cpu.peak_flops_per_s, Quantity.FLOP_PER_S)},
        "outstanding_gathers_per_core": max(1, round(gathers)),
        "kernels": kernels_block(cpu, m, fits, notes.under("kernels")),
        "launch_overhead": _q(m.launch_overhead_s, Quantity.SECONDS),
    }
    dispatch = block_dispatch(m)
    if dispatch:
        block["block_dispatch"] = {w: _q(t, Quantity.SECONDS) for w, t in dispatch.items()}
        blocks = " and ".join(str(b) for b in DISPATCH_BLOCKS)
        names = [f"decode step of {b} tiny block(s) in {w}" for w in m.block_dispatch_s for b in DISPATCH_BLOCKS]
        notes.measured("block_dispatch", f"bench --llm's decoder at hidden size 64 with {blocks} blocks, "
                       f"{DISPATCH_TOKENS} decode steps a call, median call per step: the difference per block, "
                       f"less {DISPATCH_OPERATORS} operators' launch overhead and {DISPATCH_LINEARS} linear layers' "
                       "call overhead (what the cost model charges them apart)" + _settled(m, *names))
    # the variants bench times: bf16 / int8 GEMM rates, and a BSR kernel (docs/validation.md, Variants)
    block["peak_flops"].update(type_peaks(cpu, m, notes))
    block["kernels"]["bsr"] = bsr_block(cpu, m, fits, notes.under("kernels"))
    threads = {kind: t[0].threads for kind in ("spmv", "spmm", "spconv")
               if (t := m.sparse_of(kind)) and t[0].threads < cpu.cores}
    if "spmm" in threads and not m.sparse_of("spconv"):
        threads["spconv"] = threads["spmm"]
    if threads:
        block["threads"] = threads
        notes.measured("threads", "the sparse backend bench picks (" + ", ".join(
            f"{k}: {m.sparse_of(k)[0].backend}" for k in ("spmv", "spmm") if m.sparse_of(k)) + ") runs on one thread")
    return block


def cache_blocks(caches: Sequence[SysfsCache], cpu: CpuInfo, m: Measurements, fits: Fits, notes: Notes,
                 fit_llc_policy: bool) -> list[dict[str, Any]]:
    """``memory.caches``: geometry from sysfs, private sizes confirmed by the chases, the last
    level's size, policy and bandwidth from the working-set fit, latencies from the chases."""
    levels = []
    for i, c in enumerate(caches):
        name = f"L{c.level}"
        at = notes.under(f"memory.caches.{name}")
        last = i == len(caches) - 1
        latency = m.cache_latency_s.get(c.level, 0.0)
        at.source("ways", f"sysfs {SYSFS_CACHE}/index*/ (level {c.level})")
        at.measured("latency", "dependent pointer chase over half the level (its measured size)"
                    + _settled(m, f"{name} latency (half)"))
        stream_latency = None
        if last:
            size, replacement, bandwidth = fits.llc.size_bytes, fits.llc.replacement, fits.llc.in_cache_bytes_per_s
            _llc_notes(at, c, fits.llc, fit_llc_policy)
            rows = cached_row_streams(m)
            if rows is not None and m.gemv_cached_rows_level == name:
                bandwidth = _without_row_starts(bandwidth, rows.row_start_s, at, name)
            stream_latency = _llc_stream_latency(m, c.line_bytes, bandwidth, latency, at)
        else:
            size, replacement = c.size_bytes, Replacement.LRU
            # private levels: the first level's width per cycle (two vector loads), the second's
            # half of it; an in-cache GEMV is a lower bound, not the level's own width
            per_cycle = cpu.lanes_per_core * 4 / (1 if i == 0 else 2)
            bandwidth = per_cycle * cpu.clock_hz
            at.source("bandwidth", f"[D] {per_cycle:g} B/cycle x clock ({'two' if i == 0 else 'one'} vector "
                      "load(s) per cycle)")
            at.measured("size", f"sysfs, confirmed: a pointer chase over half of it takes "
                        f"{_us(latency)}, over twice it {_us(m.beyond_latency_s.get(c.level, 0.0))}"
                        + _settled(m, f"{name} latency (twice)"))
        level = {"name": name, "size": _q(size, Quantity.BYTES), "line": _q(c.line_bytes, Quantity.BYTES),
                 "ways": c.ways, "shared": c.sharing_cpus > 1, "latency": _q(latency, Quantity.SECONDS),
                 "bandwidth": _q(bandwidth, Quantity.BYTES_PER_S), "replacement": replacement.value}
        if stream_latency is not None:
            level["stream_latency"] = _q(stream_latency, Quantity.SECONDS)
        levels.append(level)
    return levels


def _without_row_starts(plateau: float, row_start_s: float, at: Notes, name: str) -> float:
    """The last level's bandwidth without the row starts its in-cache plateau paid: the working-set
    sweep walks rows of :data:`WORKING_SET_COLUMNS`, each a stream that starts from the level
    (``gemv.cached_row_start``), so ``1 / plateau = 1 / bandwidth + row start / row bytes``. The
    plateau (a median over the sizes the level holds) stays the measurement; the row probe, at one
    size, only says how much of it the starts took. The plateau where the starts leave nothing."""
    row_bytes = WORKING_SET_COLUMNS * TYPE_BYTES["fp32"]
    per_byte = 1 / plateau - row_start_s / row_bytes
    if per_byte <= 0:
        return plateau
    at.fit("bandwidth", f"the in-cache plateau of the working-set curve ({_gbs(plateau)}, median of the higher part "
           f"of its best two-level split) in rows of {WORKING_SET_COLUMNS} columns, less their starts "
           f"(compute.kernels.gemv.cached_row_start.{name}: {row_start_s * 1e9:.3g} ns a row on all threads): "
           "1 / plateau = 1 / bandwidth + row start / row bytes")
    return 1 / per_byte


def _llc_stream_latency(m: Measurements, line_bytes: int, bandwidth: float, latency: float,
                        at: Notes) -> Optional[float]:
    """The latency a prefetched stream sees at the last level, by Little's law from what the
    threads really stream from it (its in-cache GEMV plateau) with the lines a thread keeps in
    flight on a stream (one thread's sequential read x DRAM latency): where that is below the
    pointer chase's latency (page walks, no prefetcher ahead of a random chase), the level's
    streams would otherwise be capped below the rate they were measured at. None when the chase
    latency already allows the measured rate."""
    if not (m.stream_read_one_thread_bytes_per_s and m.dram_latency_s and bandwidth):
        return None
    lines = max(1.0, round(m.stream_read_one_thread_bytes_per_s * m.dram_latency_s / line_bytes))
    streamed = m.threads * lines * line_bytes / bandwidth
    if streamed >= latency:
        return None
    at.fit("stream_latency", f"Little's law on the in-cache GEMV plateau ({_gbs(bandwidth)}) with {m.threads} "
           f"thread(s) x {lines:.0f} stream lines in flight: {_us(streamed)}, below the pointer chase's "
           f"{_us(latency)} (a random chase pays a page walk per line, a prefetched stream does not)")
    return streamed


def _llc_notes(at: Notes, c: SysfsCache, llc: LlcFit, fit_llc_policy: bool) -> None:
    tried = "; ".join(f"{policy.value} {best >> 10} KiB: {error:.3f}" for policy, (best, error) in llc.losses.items())
    rule = ("the size and replacement policy whose repeated-loop curve in the cache model best reproduces torch "
            "GEMV bandwidth vs working set (--llc-policy fit)" if fit_llc_policy else
            "an LRU step where torch GEMV bandwidth vs working set crosses the geometric mean of its in-cache and "
            "DRAM plateaus (--llc-policy lru)")
    at.fit("size", f"{rule}; mean |log error| of the curve per policy at its best size: {tried} (LRU's size is the "
           f"crossing); sysfs says {c.size_bytes >> 10} KiB, not used (a VM's share can be smaller, its claim larger)")
    if fit_llc_policy:
        at.fit("replacement", "the policy of that fit with the smallest error")
    at.fit("bandwidth", "the in-cache plateau of the working-set curve (median of the higher part of its best "
           "two-level split)")


def dram_block(cpu: CpuInfo, m: Measurements, fits: Fits, line_bytes: int, notes: Notes) -> dict[str, Any]:
    """``memory.dram``: peak (STREAM-like), sustained (the GEMV row probe's bandwidth, else the curve's
    DRAM plateau), latency (chase),
    the prefetched lines in flight per core (one thread's sequential read), capacity."""
    rows = row_streams(m)
    sustained = rows.bandwidth_bytes_per_s if rows is not None else fits.llc.dram_bytes_per_s
    peak = max(m.stream_read_bytes_per_s, m.stream_triad_bytes_per_s, sustained)
    streams = m.stream_read_one_thread_bytes_per_s * m.dram_latency_s / line_bytes
    notes.measured("peak_bandwidth", f"best of STREAM-like read {_gbs(m.stream_read_bytes_per_s)} and triad "
                   f"{_gbs(m.stream_triad_bytes_per_s)} (256 MiB arrays)" + _settled(m, "STREAM read", "STREAM triad"))
    if rows is not None:
        long_ = ROW_PROBE_COLUMNS[-1]
        streamed = (f"{STREAM_TYPE}'s GEMV over the same bytes in rows of {long_} columns, "
                    f"{_gbs(rows.bandwidth_bytes_per_s)}" if rows.streamed_by == STREAM_TYPE
                    else f"{STREAM_TYPE}'s GEMV in rows of {long_} columns no faster")
        notes.fit("sustained_bandwidth", f"the faster of the GEMV row probe's streams beyond the last level: fp32's "
                  f"fit, {_gbs(rows.fitted_bytes_per_s)} (compute.kernels.gemv.row_start's note), and {streamed} "
                  "(what fp32's GEMV streams slower waits for its loop: gemv.load_overlap.fp32); the working-set "
                  f"curve's DRAM plateau, {_gbs(fits.llc.dram_bytes_per_s)} in rows of {ROW_PROBE_COLUMNS[0]} "
                  "columns, includes their starts" + _settled(m, _rows_label((STREAM_TYPE, long_))))
    else:
        notes.fit("sustained_bandwidth", "the DRAM plateau of the torch GEMV working-set curve (median of the lower "
                  "part of its best two-level split)")
    notes.measured("latency", f"dependent pointer chase over a random cyclic permutation of at least "
                   f"{DRAM_CHASE_BYTES >> 20} MiB" + _settled(m, "DRAM latency"))
    notes.measured("outstanding_requests_per_core", "Little's law on one thread's sequential read (the lines the "
                   f"prefetchers keep in flight on a stream): {_gbs(m.stream_read_one_thread_bytes_per_s)} x DRAM "
                   f"latency / {line_bytes} B = {streams:.1f} lines" + _settled(m, "STREAM read, one thread"))
    notes.source("capacity", "/proc/meminfo MemTotal")
    block = {
        "peak_bandwidth": _q(peak, Quantity.BYTES_PER_S),
        "sustained_bandwidth": _q(min(sustained, peak), Quantity.BYTES_PER_S),
        "latency": _q(m.dram_latency_s, Quantity.SECONDS),
        "outstanding_requests_per_core": max(1, round(streams)),
        "capacity": _q(max(cpu.memory_bytes, 1 << 20), Quantity.BYTES),
    }
    cost = writeback_cost(m)
    if cost is not None:
        block["writeback_cost"] = cost
        notes.measured("writeback_cost", f"STREAM-like fill {_gbs(m.stream_fill_bytes_per_s)} against read "
                       f"{_gbs(m.stream_read_bytes_per_s)} of the same 256 MiB: the fill reads each line for "
                       "ownership and writes it back, so a write-back costs (read rate / fill rate - 1) = "
                       f"{cost:.3g} of a line read" + _settled(m, "STREAM read", "STREAM fill"))
    return block


def build_profile(caches: Sequence[SysfsCache], cpu: CpuInfo, m: Measurements,
                  when: Optional[_dt.datetime] = None, name: str = "", fit_llc_policy: bool = False
                  ) -> dict[str, Any]:
    """The profile mapping (valid under :func:`simulator.hardware.profile.profile_from_mapping`),
    after the measurements pass :data:`CHECKS` and the profile built passes
    :func:`check_profile_order` (else :class:`Implausible`).

    The last level is an LRU step at the crossing size unless ``fit_llc_policy``: then it takes
    the policy (and its size) whose loop curve best matches the working-set sweep (:func:`fit_llc`).
    """
    from ..hardware.profile import profile_from_mapping

    listed_hz = cpu.clock_hz
    if m.clock_hz:
        cpu = replace(cpu, clock_hz=m.clock_hz)     # the clock the cores really ran at
    fits = fit_measurements(caches, cpu, m, fit_llc_policy)
    check_plausible(Calibration(caches, cpu, m, fits))
    stamp = (when or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {v}" for k, v in m.versions.items())
    notes = Notes(f"measured by `simulator calibrate` on {stamp}, {m.threads} thread(s), {versions}")
    notes.source("name", f"lscpu: {cpu.model}")
    line = caches[-1].line_bytes if caches else LINE_BYTES_DEFAULT
    curve = ", ".join(f"{p.size_bytes / MiB:.3g} MiB: {p.bandwidth_bytes_per_s / 1e9:.3g}" for p in m.working_set)
    unsettled = (f" Did not settle within {100 * SETTLE_TOLERANCE:g}% in {MAX_ROUNDS} rounds: "
                 + ", ".join(m.unsettled) + "." if m.unsettled else
                 f" Every measurement settled (two rounds within {100 * SETTLE_TOLERANCE:g}%).")
    mapping = {
        "schema_version": 1,
        "name": name or f"{cpu.model} (this machine, {m.threads} thread(s))",
        "kind": "cpu",
        "description": (f"Measured, not a datasheet: {notes.how} on {platform.node() or 'this host'}, load average "
                        f"{m.load_average[0]:.2f} before and {m.load_average[1]:.2f} after. GEMV GB/s vs working "
                        f"set: {curve}.{unsettled}"),
        "compute": compute_block(cpu, m, fits, line, listed_hz, notes.under("compute")),
        "memory": {"caches": cache_blocks(caches, cpu, m, fits, notes, fit_llc_policy),
                   "dram": dram_block(cpu, m, fits, line, notes.under("memory.dram")),
                   **tlb_block(caches, m, notes.under("memory.tlb")),
                   **fresh_pages_block(m, notes.under("memory.fresh_pages"))},
        "sources": notes.sources,
        "fitted": notes.fitted,
    }
    why = check_profile_order(profile_from_mapping(mapping, "calibrate"))
    if why is not None:
        raise Implausible("cache order", why, m.load_average)
    return mapping


def tlb_block(caches: Sequence[SysfsCache], m: Measurements, notes: Notes) -> dict[str, Any]:
    """``memory.tlb`` where the chases show a knee (:func:`tlb_fit`), else nothing."""
    fit = tlb_fit(caches, m)
    if fit is None:
        return {}
    notes.measured("reach", fit.why + _settled(m, *(_chase_label(("reach", f)) for f in m.reach_latency_s)))
    notes.measured("miss_latency", "the chase over half the last level less the chase over twice the last private "
                   "level (both served by the last level; one beyond the reach, one within it)")
    return {"tlb": {"reach": _q(fit.reach_bytes, Quantity.BYTES),
                    "miss_latency": _q(fit.miss_latency_s, Quantity.SECONDS)}}


#: How much of a buffer's fault rate per byte the buffer below the threshold may show and still
#: count as reused (a fresh mapping's faults cost tens of times the fill; a reused buffer's none).
FRESH_REUSE_SHARE = 0.25


def fresh_pages_block(m: Measurements, notes: Notes) -> dict[str, Any]:
    """``memory.fresh_pages`` where glibc's allocator serves the buffers: the fault rate of the
    buffer above :data:`GLIBC_MMAP_THRESHOLD_MAX` (fresh fill less existing fill), written only where
    that buffer is mapped afresh at every call and the one below it is not (its memory reused).
    Where the OS counts page faults that is what decides (the large buffer's call faults in at
    least half its pages, the small one's less than :data:`FRESH_REUSE_SHARE` of its own);
    elsewhere the times do (the large buffer's fill slowed by half or more, the small one's not)."""
    if len(m.fresh_fill_s) < 2 or platform.libc_ver()[0] != "glibc":
        return {}
    (small, (small_kept, small_fresh)), (large, (large_kept, large_fresh)) = sorted(m.fresh_fill_s.items())
    fault_s = large_fresh - large_kept
    small_fault_s = max(0.0, small_fresh - small_kept)
    if not (small < GLIBC_MMAP_THRESHOLD_MAX < large) or fault_s <= 0:
        return {}
    if m.fresh_faulted:
        counted = (m.fresh_faulted.get(large, 0) >= large / 2
                   and m.fresh_faulted.get(small, 0) < FRESH_REUSE_SHARE * small)
        how = (f"one allocating fill faulted in {m.fresh_faulted.get(small, 0) / MiB:.3g} MiB of it, against "
               f"{m.fresh_faulted.get(large, 0) / MiB:.3g} MiB of the {large // MiB} MiB one (its memory reused)")
    else:
        counted = fault_s >= 0.5 * large_kept and small_fault_s / small <= FRESH_REUSE_SHARE * fault_s / large
        how = (f"filled fresh in {small_fresh * 1e3:.3g} ms against {small_kept * 1e3:.3g} ms existing (its freed "
               "memory reused)")
    if not counted:
        return {}
    bandwidth = fault_rate(m)
    assert bandwidth is not None
    notes.measured("above", f"glibc's largest mmap threshold on 64-bit Linux (DEFAULT_MMAP_THRESHOLD_MAX); "
                   f"the {small // MiB} MiB buffer below it {how}")
    notes.measured("bandwidth", f"a fresh {large // MiB} MiB buffer filled in {large_fresh * 1e3:.3g} ms against "
                   f"{large_kept * 1e3:.3g} ms for one that exists: its pages fault in at {_gbs(bandwidth)}"
                   + _settled(m, *(_fresh_label((large, fresh)) for fresh in (False, True))))
    return {"fresh_pages": {"above": _q(GLIBC_MMAP_THRESHOLD_MAX, Quantity.BYTES),
                            "bandwidth": _q(bandwidth, Quantity.BYTES_PER_S)}}


def write_profile(mapping: dict[str, Any], path: str | Path) -> None:
    """Validate the mapping as a profile and write it as YAML (a header says it was measured)."""
    import yaml

    from ..hardware.profile import profile_from_mapping

    profile_from_mapping(mapping, str(path))      # never write a profile the loader would refuse
    header = ("# Measured on this machine by `python -m simulator calibrate`: machine-specific, do not\n"
              "# ship it as a datasheet profile. See docs/calibrate.md for what each figure is.\n")
    Path(path).write_text(header + yaml.safe_dump(mapping, sort_keys=False, width=110), encoding="utf-8")
