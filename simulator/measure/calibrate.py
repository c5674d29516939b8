"""Measure this machine and write a hardware profile for it (``python -m simulator calibrate``).

What is read, and what is measured (each figure lands in the profile with a ``sources`` or
``fitted`` entry saying how it was obtained, when, on how many threads, with which libraries):

* cache geometry: size, ways, line, sharing per level from sysfs
  (``/sys/devices/system/cpu/cpu0/cache/index*/``), clock, cores and vector flags from lscpu /
  ``/proc/cpuinfo``;
* the last level's *effective* size: a VM's share of the LLC can be well below what sysfs says,
  so torch GEMV bandwidth is measured against the working-set size (the same matrix repeated)
  and the LLC size and replacement policy are fitted to that curve as the cache model sees it
  (an LRU cache serves a repeated working set entirely while it fits and not at all once it
  does not; random and adaptive (DIP) replacement keep part of a larger loop, so their curve
  falls off gradually): :func:`fit_llc`;
* sustained DRAM bandwidth: the GEMV bandwidth at a working set far beyond the LLC, and a
  STREAM-like read and triad kernel (peak);
* DRAM latency: a dependent pointer chase over a random cyclic permutation of cache lines
  (compiled with numba, so no interpreter sits between the loads); memory-level parallelism:
  several independent chases interleaved, whose bandwidth grows until the core runs out of
  outstanding misses (Little's law: requests in flight = bandwidth x latency / line);
* kernel throughput with torch on the given threads: GEMM (compute bound), GEMV, and CSR
  SpMV / SpMM on in-cache matrices with the backend ``bench`` uses; each becomes the kernel
  kind's efficiency (achieved / peak FLOP/s), calibrated once for the machine, never per layer;
* the per-call overhead (a tiny GEMV), which dominates layers below about 1 MB.
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..base.errors import ConfigError
from ..hardware.profile import Replacement
from ..memory.cache import CacheGeometry, CacheHierarchy

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
LINE_BYTES_DEFAULT = 64
# Working-set sizes of the GEMV sweep (MiB): dense around typical LLC shares, up to far beyond.
WORKING_SET_MIB = (0.25, 0.5, 1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 48, 64, 128)
DRAM_CHASE_BYTES = 256 << 20
CHAINS = (1, 2, 4, 8, 16, 32)
WORKING_SET_ROUNDS = 3
# (rows, cols, batch): FC layers' GEMMs at batch 64, power-of-two and not
# FC-like shapes at batch 64, none of them a layer of the EIE benchmark (crosscheck compares on
# those: calibrating on the very shapes it checks would fit the check), powers of two and not
GEMM_SHAPES = ((3072, 3072, 64), (2048, 8192, 64), (1536, 1000, 64), (1024, 3000, 64), (2048, 2048, 64))


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

    @property
    def lanes_per_core(self) -> int:
        """fp32 FLOP lanes per cycle per core / 2: two FMA ports x the vector width (the i7
        profile's convention: peak = cores x lanes x 2 x clock)."""
        if "avx512f" in self.flags:
            return 32
        if "avx2" in self.flags and "fma" in self.flags:
            return 16
        if "avx" in self.flags:
            return 8
        return 4


def parse_size(text: str) -> int:
    """sysfs / lscpu sizes: ``32K``, ``512K``, ``32768K``, ``1 MiB``, ``32 MiB`` -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a cache size: {text!r}")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


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


def read_sysfs_caches(root: Path = SYSFS_CACHE) -> list[SysfsCache]:
    """The data and unified cache levels of cpu0 (instruction caches left out), innermost first."""
    if not root.is_dir():
        raise ConfigError(str(root), "", "no cache description in sysfs (not Linux, or hidden by the VM)")
    levels = []
    for index in sorted(root.glob("index*"), key=lambda p: int(p.name[5:] or 0)):
        def read(name: str) -> str:
            return (index / name).read_text(encoding="utf-8").strip()
        try:
            kind = CacheKind(read("type"))
            if kind is CacheKind.INSTRUCTION:
                continue
            levels.append(SysfsCache(int(read("level")), kind, parse_size(read("size")),
                                     int(read("ways_of_associativity")), int(read("coherency_line_size")),
                                     parse_cpu_list(read("shared_cpu_list"))))
        except (OSError, ValueError) as err:
            raise ConfigError(str(index), "", f"unreadable cache description ({err})") from None
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
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "cpu MHz" and mhz is None:
            mhz = value.strip()
        elif key == "flags" and not flags:
            flags = value.strip()
        elif key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "processor" and not fields.get("CPU(s)"):
            cores += 1
    if mhz is None:
        raise ConfigError("lscpu / /proc/cpuinfo", "cpu MHz", "no clock frequency found")
    memory = 0
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    return CpuInfo(model, max(1, cores), float(mhz) * 1e6, frozenset(flags.split()), memory)


def read_cpu_info() -> CpuInfo:
    """:func:`parse_cpu_info` on this machine."""
    import subprocess

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


@dataclass
class Measurements:
    """Everything ``calibrate`` measured, in base units."""

    threads: int
    versions: dict[str, str]
    launch_overhead_s: float = 0.0
    stream_read_bytes_per_s: float = 0.0
    stream_triad_bytes_per_s: float = 0.0
    stream_read_one_thread_bytes_per_s: float = 0.0
    working_set: list[WorkingSetPoint] = field(default_factory=list)
    cache_latency_s: dict[int, float] = field(default_factory=dict)   # level -> latency
    dram_latency_s: float = 0.0
    chases: list[ChasePoint] = field(default_factory=list)
    gemm_flops_per_s: float = 0.0
    gemv_flops_per_s: float = 0.0
    spmv_flops_per_s: float = 0.0
    spmm_flops_per_s: float = 0.0
    sparse_backend: str = ""          # the SpMV backend bench would pick, and its threads
    sparse_threads: int = 1
    spmm_backend: str = ""            # the same for SpMM (batch 64)
    spmm_threads: int = 1


def _median_time(call: Callable[[], Any], min_calls: int = 5, budget_s: float = 0.15) -> float:
    """Median seconds per call: one warm-up call, then calls until both ``min_calls`` and
    ``budget_s`` are reached. For costs every call pays (the per-call overhead)."""
    return statistics.median(_call_times(call, min_calls, budget_s))


def _best_time(call: Callable[[], Any], min_calls: int = 5, budget_s: float = 0.15) -> float:
    """Fastest call, for throughputs (STREAM's convention): other processes sharing the cores
    can only slow a call down, so the best call is the machine's own rate."""
    return min(_call_times(call, min_calls, budget_s))


def _call_times(call: Callable[[], Any], min_calls: int, budget_s: float) -> list[float]:
    """Seconds of each call after one warm-up, until both ``min_calls`` and ``budget_s`` are reached."""
    call()
    times = []
    started = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < budget_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2000:
            break
    return times


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


def chase_latency_s(chase, chain: np.ndarray, steps: int) -> float:
    """Seconds per dependent load over ``chain`` (median of three timed walks)."""
    chase(chain, 0, min(steps, 1000))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        chase(chain, 0, steps)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / steps


def _gemm_round(rates: dict[tuple[int, int, int], list[float]], round_: int,
                progress: Callable[[str], None]) -> None:
    """One turn of every GEMM shape (FLOP/s of its best call), appended per shape to ``rates``."""
    import torch

    for rows, cols, batch in GEMM_SHAPES:
        progress(f"calibrate: GEMM, a {rows} x {cols} layer at batch {batch} (round {round_ + 1})")
        g, xb = torch.rand(rows, cols), torch.rand(batch, cols)
        best = _best_time(lambda: torch.nn.functional.linear(xb, g), min_calls=6, budget_s=0.3)
        rates.setdefault((rows, cols, batch), []).append(2.0 * rows * cols * batch / best)
        del g, xb


def measure(threads: int, caches: Sequence[SysfsCache], progress: Callable[[str], None] = lambda _: None
            ) -> Measurements:
    """Run every measurement on ``threads`` torch threads (about a minute on a small VM)."""
    import numba
    import scipy
    import torch

    torch.set_num_threads(threads)
    m = Measurements(threads, {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                               "numba": numba.__version__, "python": platform.python_version()})
    line = caches[-1].line_bytes if caches else LINE_BYTES_DEFAULT

    progress("calibrate: per-call overhead")
    tiny_w, tiny_x = torch.rand(16, 16), torch.rand(16)
    m.launch_overhead_s = _median_time(lambda: torch.mv(tiny_w, tiny_x), min_calls=200, budget_s=0.2)

    progress("calibrate: STREAM-like read and triad")
    n = (256 << 20) // 4
    a, b, c = torch.rand(n), torch.rand(n), torch.rand(n)
    m.stream_read_bytes_per_s = 4 * n / _best_time(lambda: torch.sum(a), min_calls=5, budget_s=0.5)
    m.stream_triad_bytes_per_s = 3 * 4 * n / _best_time(lambda: torch.add(b, c, alpha=3.0, out=a),
                                                         min_calls=5, budget_s=0.5)
    # one thread's streaming read: with the hardware prefetchers, the lines a core keeps in
    # flight on a sequential stream (Little's law with the DRAM latency measured below)
    torch.set_num_threads(1)
    m.stream_read_one_thread_bytes_per_s = 4 * n / _best_time(lambda: torch.sum(a), min_calls=3, budget_s=0.3)
    torch.set_num_threads(threads)
    del a, b, c

    # Three rounds over the sizes, the best per size: other processes come and go, and a
    # round-robin order spreads their effect over the sizes instead of one size taking it all.
    # The GEMM shapes take a turn after each round, for the same reason.
    samples: dict[int, list[float]] = {}
    gemm_rates: dict[tuple[int, int, int], list[float]] = {}
    for round_ in range(WORKING_SET_ROUNDS):
        for size_mib in WORKING_SET_MIB:
            progress(f"calibrate: GEMV bandwidth vs working set, {size_mib:g} MiB (round {round_ + 1})")
            size = int(size_mib * (1 << 20))
            cols = 1024
            rows = max(1, size // (4 * cols))
            w, x = torch.rand(rows, cols), torch.rand(cols)
            t = _best_time(lambda: torch.mv(w, x), min_calls=10, budget_s=0.05 if size_mib < 64 else 0.15)
            # the per-call overhead is not bandwidth; remove it (but never below a tenth of the call)
            busy = max(t - m.launch_overhead_s, 0.1 * t)
            samples.setdefault(rows * cols * 4, []).append(busy)
            del w, x
        _gemm_round(gemm_rates, round_, progress)
    for size, times in samples.items():
        busy = min(times)
        m.working_set.append(WorkingSetPoint(size, size / busy))
        m.gemv_flops_per_s = max(m.gemv_flops_per_s, 2.0 * (size / 4) / busy)

    # GEMM rates depend on the shape (a power-of-two leading dimension makes the packed panels
    # alias in the caches), so the efficiency is the median over the shapes of each one's best
    m.gemm_flops_per_s = statistics.median(max(rates) for rates in gemm_rates.values())

    progress("calibrate: CSR SpMV / SpMM")
    from .bench import SparseBackend, pick_sparse_backend, sparse_operator

    import scipy.sparse as sp

    rows = cols = 2048
    matrix = sp.random(rows, cols, density=0.1, format="csr", dtype=np.float32, random_state=0)
    for batch in (1, 64):
        x = np.random.default_rng(0).random((cols, batch), dtype=np.float32)
        if batch == 1:
            x = x[:, 0].copy()
        backend = pick_sparse_backend(matrix.indptr, matrix.indices, matrix.data, (rows, cols), x)
        op = sparse_operator(backend, matrix.indptr, matrix.indices, matrix.data, (rows, cols), x)
        rate = 2.0 * matrix.nnz * batch / max(_best_time(op, min_calls=10, budget_s=0.6)
                                             - m.launch_overhead_s, 1e-9)
        if batch == 1:
            m.spmv_flops_per_s = rate
            m.sparse_backend = backend.value
            m.sparse_threads = 1 if backend is SparseBackend.SCIPY else threads
        else:
            m.spmm_flops_per_s = rate
            m.spmm_backend = backend.value
            m.spmm_threads = 1 if backend is SparseBackend.SCIPY else threads
    # the pointer chases last: after numba has compiled and run, torch's GEMM was seen to slow
    # down on the development VM, so the kernel rates are measured before it
    progress("calibrate: compiling the pointer chase")
    chase, chase_many = _chase_kernels()
    private = private_bytes(caches, os.cpu_count() or 1)
    for level in caches:
        progress(f"calibrate: L{level.level} latency (pointer chase)")
        size = level.size_bytes
        if level is caches[-1] and m.working_set:
            # chase within the share of the LLC this machine really gets, not the nominal size
            size = effective_llc_bytes(m.working_set, level.size_bytes, private, level.line_bytes * level.ways)[0]
        chain = cyclic_chain(size // 2, level.line_bytes, seed=level.level)
        m.cache_latency_s[level.level] = chase_latency_s(chase, chain, 2_000_000)
    progress("calibrate: DRAM latency (pointer chase over 256 MiB)")
    chain = cyclic_chain(DRAM_CHASE_BYTES, line)
    m.dram_latency_s = chase_latency_s(chase, chain, 2_000_000)
    lines = chain.size // (line // 8)
    for chains in CHAINS:
        progress(f"calibrate: memory-level parallelism, {chains} chases interleaved")
        # starts spread around the cycle so the chains do not meet within the walk
        starts = np.array([i * (lines // chains) * (line // 8) for i in range(chains)], dtype=np.int64)
        steps = max(20_000, 1_000_000 // chains)
        chase_many(chain, starts, 100)
        t0 = time.perf_counter()
        chase_many(chain, starts, steps)
        m.chases.append(ChasePoint(chains, chains * steps * line / (time.perf_counter() - t0)))
    del chain

    progress("")
    return m


# --- from measurements to a profile -------------------------------------------------------------

def private_bytes(caches: Sequence[SysfsCache], cores: int) -> int:
    """Bytes of all private levels on all cores: working sets below this do not test the LLC."""
    return sum(c.size_bytes * cores for c in caches[:-1] if c.sharing_cpus <= 1)


def effective_llc_bytes(points: Sequence[WorkingSetPoint], nominal_bytes: int, floor_bytes: int,
                        granule_bytes: int) -> tuple[int, float, float]:
    """(LLC size, in-cache bandwidth, DRAM bandwidth) read off the working-set curve.

    In-cache: the median bandwidth between the private levels and a quarter of the nominal size.
    DRAM: the median from twice the nominal size on (or the last two points). The size: where the
    curve, interpolated log-log, crosses the geometric mean of the two, i.e. where a repeated
    working set has lost half (in log) of the LLC's advantage. The cache model is LRU, so a
    layer is served from the LLC entirely below this size and not at all above it; a real LLC
    shared in a VM falls off gradually, and this crossing keeps a layer in that fall-off within
    the square root of the in-cache / DRAM ratio of the model (see docs/validation.md).
    """
    pts = sorted((p for p in points if p.size_bytes > floor_bytes), key=lambda p: p.size_bytes) or \
        sorted(points, key=lambda p: p.size_bytes)
    beyond = [p.bandwidth_bytes_per_s for p in pts if p.size_bytes >= 2 * nominal_bytes] or \
        [p.bandwidth_bytes_per_s for p in pts[-2:]]
    dram = statistics.median(beyond)
    inside = [p.bandwidth_bytes_per_s for p in pts if p.size_bytes <= nominal_bytes // 4] or \
        [max(p.bandwidth_bytes_per_s for p in pts)]
    level = statistics.median(inside)
    size = float(nominal_bytes)
    if level > dram:
        middle = math.sqrt(level * dram)
        previous = None
        for p in pts:
            if p.size_bytes > nominal_bytes:
                break
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
    size_bytes = max(granule_bytes, int(size) // granule_bytes * granule_bytes)
    return size_bytes, level, dram


#: Policies :func:`fit_llc` tries (BIP behaves as DIP on a loop too large for the cache).
LLC_POLICIES = (Replacement.LRU, Replacement.RANDOM, Replacement.DIP)
#: Loop sizes, as multiples of the cache, at which each policy's hit share is simulated.
_LOOP_RATIOS = np.geomspace(1 / 8, 8, 49)


@functools.lru_cache(maxsize=None)
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
    """The last level as the working-set curve shows it: size, policy, and the two bandwidths.

    ``losses`` holds, per policy tried, its best size and the mean |log error| of the curve it
    predicts there (the chosen policy has the smallest; LRU's size is the crossing rule of
    :func:`effective_llc_bytes`, which keeps a layer in a fall-off within the square root of the
    in-cache / DRAM ratio)."""

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


def fit_llc(points: Sequence[WorkingSetPoint], nominal_bytes: int, floor_bytes: int, granule_bytes: int,
            ways: int, choose_policy: bool = True) -> LlcFit:
    """The last level's size and policy that best reproduce the working-set curve.

    For each policy of :data:`LLC_POLICIES`, the cache model's hit share of a repeated loop
    (:func:`loop_hit_shares`) turns a candidate size into a predicted curve; the size with the
    smallest mean |log error| over the points beyond the private levels is the policy's, and the
    policy with the smallest error wins (LRU on a tie). LRU keeps the crossing rule's size. With
    ``choose_policy`` False the result is LRU whatever the errors (still all in ``losses``).
    """
    lru_size, level, dram = effective_llc_bytes(points, nominal_bytes, floor_bytes, granule_bytes)
    pts = [p for p in points if p.size_bytes > floor_bytes] or list(points)
    if level <= dram or len(pts) < 2:
        return LlcFit(lru_size, Replacement.LRU, level, dram, {Replacement.LRU: (lru_size, 0.0)})
    candidates = np.geomspace(max(granule_bytes, floor_bytes), 2 * nominal_bytes, 241)
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


def _units(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}"


def build_profile(caches: Sequence[SysfsCache], cpu: CpuInfo, m: Measurements,
                  when: Optional[_dt.datetime] = None, name: str = "", fit_llc_policy: bool = False
                  ) -> dict[str, Any]:
    """The profile mapping (valid under :func:`simulator.hardware.profile.profile_from_mapping`).

    The last level is an LRU step at the crossing size unless ``fit_llc_policy``: then it takes
    the policy (and its size) whose loop curve best matches the working-set sweep (:func:`fit_llc`).
    """
    when = when or _dt.datetime.now(_dt.timezone.utc)
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {v}" for k, v in m.versions.items())
    how = f"measured by `simulator calibrate` on {stamp}, {m.threads} thread(s), {versions}"
    cores = cpu.cores
    peak = cores * cpu.lanes_per_core * 2 * cpu.clock_hz
    share = m.threads / cores            # measured on m.threads of the cores
    sparse_share = m.sparse_threads / cores
    eff = {
        "gemm": m.gemm_flops_per_s / (peak * share),
        "gemv": m.gemv_flops_per_s / (peak * share),
        "spmv": m.spmv_flops_per_s / (peak * sparse_share),
        "spmm": m.spmm_flops_per_s / (peak * m.spmm_threads / cores),
    }
    eff = {k: float(min(1.0, max(1e-5, v))) for k, v in eff.items()}
    eff.update(conv=eff["gemm"], spconv=eff["spmm"], pool=eff["gemv"])

    sources: dict[str, str] = {"name": f"lscpu: {cpu.model}"}
    fitted: dict[str, str] = {}
    levels = []
    llc_bw = dram_bw = m.stream_read_bytes_per_s
    for i, c in enumerate(caches):
        name_c = f"L{c.level}"
        shared = c.sharing_cpus > 1
        size = c.size_bytes
        last = i == len(caches) - 1
        latency = m.cache_latency_s.get(c.level, 1e-9)
        replacement = Replacement.LRU
        if last and m.working_set:
            llc = fit_llc(m.working_set, c.size_bytes, private_bytes(caches, cores), c.line_bytes * c.ways, c.ways,
                          choose_policy=fit_llc_policy)
            size, replacement, llc_bw, dram_bw = (llc.size_bytes, llc.replacement, llc.in_cache_bytes_per_s,
                                                  llc.dram_bytes_per_s)
            bandwidth = llc_bw
            tried = "; ".join(f"{policy.value} {best >> 10} KiB: {error:.3f}"
                              for policy, (best, error) in llc.losses.items())
            rule = ("the size and replacement policy whose repeated-loop curve in the cache model best reproduces "
                    "torch GEMV bandwidth vs working set (--llc-policy fit)" if fit_llc_policy else
                    "an LRU step where torch GEMV bandwidth vs working set crosses the geometric mean of its "
                    "in-cache and DRAM levels (--llc-policy lru)")
            fitted[f"memory.caches.{name_c}.size"] = (
                f"{how}: {rule}; mean |log error| of the curve per policy at its best size: {tried} (LRU's "
                f"size is the crossing); sysfs says {c.size_bytes >> 10} KiB, a VM's share can be smaller")
            if fit_llc_policy:
                fitted[f"memory.caches.{name_c}.replacement"] = f"{how}: the policy of that fit with the smallest error"
            fitted[f"memory.caches.{name_c}.bandwidth"] = f"{how}: median GEMV bandwidth up to a quarter of the nominal size"
        else:
            # private levels: the first level's width per cycle (two vector loads), the second's half
            # of it; the measured in-cache GEMV rate is a lower bound, not the level's own width
            per_cycle = 2 * (cpu.lanes_per_core // 2) * 4 / (1 if i == 0 else 2)
            bandwidth = per_cycle * cpu.clock_hz
            sources[f"memory.caches.{name_c}.bandwidth"] = (
                f"[D] {per_cycle:g} B/cycle x clock ({'two' if i == 0 else 'one'} vector load(s) per cycle)")
        levels.append({"name": name_c, "size": f"{size} B", "line": f"{c.line_bytes} B", "ways": c.ways,
                       "shared": shared, "latency": _units(latency * 1e9, "ns"),
                       "bandwidth": _units(bandwidth / 1e9, "GB/s"), "replacement": replacement.value})
        sources[f"memory.caches.{name_c}.ways"] = f"sysfs {SYSFS_CACHE}/index*/ (level {c.level})"
        sources[f"memory.caches.{name_c}.latency"] = f"{how}: dependent pointer chase over half the level (its effective size)"
    peak_bw = max(m.stream_read_bytes_per_s, m.stream_triad_bytes_per_s, dram_bw)
    line = caches[-1].line_bytes if caches else LINE_BYTES_DEFAULT
    best_chase = max((p.bandwidth_bytes_per_s for p in m.chases), default=line / max(m.dram_latency_s, 1e-9))
    # Little's law: lines in flight = bandwidth x latency / line, on one thread. Random dependent
    # chases give the demand-miss parallelism; a sequential stream adds what the prefetchers keep
    # in flight. The engine has one figure for both, and the layers' DRAM traffic is streams
    # (weights, indices, pointers), so the larger is used; both are recorded in sources.
    chase_outstanding = best_chase * m.dram_latency_s / line
    stream_outstanding = m.stream_read_one_thread_bytes_per_s * m.dram_latency_s / line
    outstanding = max(1, round(max(chase_outstanding, stream_outstanding)))
    chase_curve = ", ".join(f"{p.chains}: {p.bandwidth_bytes_per_s / 1e9:.2g}" for p in m.chases)
    sources.update({
        "compute.clock": "lscpu CPU max MHz, else /proc/cpuinfo cpu MHz",
        "compute.cores": "lscpu CPU(s)",
        "compute.lanes_per_core": f"[D] cpu flags: {cpu.lanes_per_core // 2} fp32 lanes x 2 FMA ports",
        "compute.peak_flops.fp32": "[D] cores x lanes x 2 FLOP x clock",
        "compute.efficiency.conv": "[D] as gemm (implicit-GEMM convolution)",
        "compute.efficiency.spconv": "[D] as spmm",
        "compute.efficiency.pool": "[D] as gemv",
        "compute.launch_overhead": f"{how}: median time of a 16 x 16 torch.mv",
        "memory.dram.peak_bandwidth": (f"{how}: best of STREAM-like read {m.stream_read_bytes_per_s / 1e9:.3g} GB/s "
                                       f"and triad {m.stream_triad_bytes_per_s / 1e9:.3g} GB/s (256 MiB arrays)"),
        "memory.dram.latency": f"{how}: dependent pointer chase over a random cyclic permutation of 256 MiB",
        "memory.dram.outstanding_requests_per_core": (
            f"{how}: Little's law, the larger of interleaved chases ({chase_outstanding:.1f} lines; chains: "
            f"GB/s {chase_curve}) and a one-thread sequential read "
            f"({m.stream_read_one_thread_bytes_per_s / 1e9:.3g} GB/s: {stream_outstanding:.1f} lines)"),
        "memory.dram.capacity": "/proc/meminfo MemTotal",
    })
    fitted.update({
        "compute.efficiency.gemm": (f"{how}: median over F.linear of "
                                    + ", ".join(f"{r} x {c}" for r, c, _ in GEMM_SHAPES)
                                    + " at batch 64 (best call of three rounds each), FLOP/s over peak"),
        "compute.efficiency.gemv": f"{how}: best torch.mv FLOP/s of the working-set sweep over peak",
        "compute.efficiency.spmv": (f"{how}: CSR 2048 x 2048 at 10% x vector with {m.sparse_backend} "
                                    f"({m.sparse_threads} thread(s)) over the peak of those threads"),
        "compute.efficiency.spmm": (f"{how}: the same matrix x 64 columns with {m.spmm_backend or m.sparse_backend} "
                                    f"({m.spmm_threads} thread(s))"),
        "memory.dram.sustained_bandwidth": f"{how}: torch GEMV bandwidth at working sets of 2x the LLC and beyond",
    })
    curve = ", ".join(f"{p.size_bytes / (1 << 20):.3g} MiB: {p.bandwidth_bytes_per_s / 1e9:.3g}"
                      for p in m.working_set)
    return {
        "schema_version": 1,
        "name": name or f"{cpu.model} (this machine, {m.threads} thread(s))",
        "kind": "cpu",
        "description": (f"Measured, not a datasheet: {how} on {platform.node() or 'this host'}. "
                        f"GEMV GB/s vs working set: {curve}."),
        "compute": {
            "clock": _units(cpu.clock_hz / 1e6, "MHz"),
            "cores": cores,
            "lanes_per_core": cpu.lanes_per_core,
            "peak_flops": {"fp32": _units(peak / 1e9, "GFLOP/s")},
            "efficiency": {k: float(f"{v:.4g}") for k, v in eff.items()},
            "launch_overhead": _units(m.launch_overhead_s * 1e6, "us"),
        },
        "memory": {
            "caches": levels,
            "dram": {
                "peak_bandwidth": _units(peak_bw / 1e9, "GB/s"),
                "sustained_bandwidth": _units(min(dram_bw, peak_bw) / 1e9, "GB/s"),
                "latency": _units(m.dram_latency_s * 1e9, "ns"),
                "outstanding_requests_per_core": int(outstanding),
                "capacity": f"{max(cpu.memory_bytes, 1 << 20)} B",
            },
        },
        "sources": sources,
        "fitted": fitted,
    }


def write_profile(mapping: dict[str, Any], path: str | Path) -> None:
    """Validate the mapping as a profile and write it as YAML (a header says it was measured)."""
    import yaml

    from ..hardware.profile import profile_from_mapping

    profile_from_mapping(mapping, str(path))      # never write a profile the loader would refuse
    header = ("# Measured on this machine by `python -m simulator calibrate`: machine-specific, do not\n"
              "# ship it as a datasheet profile. See docs/calibrate.md for what each figure is.\n")
    Path(path).write_text(header + yaml.safe_dump(mapping, sort_keys=False, width=110), encoding="utf-8")
