"""Trace-driven cache simulation: any address trace through a profile's cache hierarchy.

    load_trace(path)                  -> Trace (a .npy array of byte addresses, checked)
    simulate_trace(profile, trace)    -> TraceResult (exact hits and misses per level,
                                         DRAM line reads and write-backs, optionally the
                                         miss-ratio curve of every level)

The hierarchy is the one ``run`` uses (:class:`simulator.memory.cache.CacheHierarchy`, built by
:func:`simulator.pipeline.cache_hierarchy`), cold at the start of the trace.

Trace files are NumPy ``.npy`` arrays, loaded with ``allow_pickle=False`` (a file can never
run code): a 1-D integer array of byte addresses (all reads, all on core 0); a 2-D integer
array whose columns are address, is_write (0 / 1) and optionally core; or a structured array
with fields ``address`` and optionally ``is_write`` and ``core``.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..base.budget import check_memory
from ..base.errors import ConfigError, OptionError, clip
from ..hardware.fieldpaths import level_path
from ..hardware.profile import HardwareProfile, Replacement
from ..memory.cache import HINT_OVERWRITE, HINT_STREAM, MAX_ADDRESS
from ..memory.mrc import MissRatioCurve, level_stream, miss_ratio_curve
from ..pipeline import cache_hierarchy

_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Trace:
    """A checked trace: int64 byte addresses, bool write flags, int64 core ids, and the cache
    model's hint bits when the file has them (a trace ``run --dump-trace`` wrote)."""

    path: str
    addresses: np.ndarray
    is_write: np.ndarray
    core: np.ndarray
    hints: Optional[np.ndarray] = None

    @property
    def accesses(self) -> int:
        """Number of accesses."""
        return int(self.addresses.size)


def _integers(values: np.ndarray, source: str, what: str) -> np.ndarray:
    """``values`` as int64, or a ConfigError naming the file and what is wrong."""
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        raise ConfigError(source, what, f"dtype {values.dtype} is not an integer type (save int64 byte addresses)")
    if values.size and values.dtype == np.uint64 and int(values.max()) > _INT64_MAX:
        raise ConfigError(source, what, f"{int(values.max())} does not fit in int64")
    out = values.astype(np.int64)
    if out.size and out.min() < 0:
        first = int(np.flatnonzero(out < 0)[0])
        raise ConfigError(source, what, f"negative value {int(out[first])} at index {first}")
    return out


def _flags(values: np.ndarray, source: str, what: str) -> np.ndarray:
    if values.dtype == np.bool_:
        return values.astype(bool)
    flags = _integers(values, source, what)
    if flags.size and flags.max() > 1:
        first = int(np.flatnonzero(flags > 1)[0])
        raise ConfigError(source, what, f"{int(flags[first])} at index {first} is not 0 (read) or 1 (write)")
    return flags.astype(bool)


#: memory per access of a trace run: the loaded columns, their int64 / bool copies, and the cache
#: model's per-access state (the same figure as a run's traces)
TRACE_BYTES_PER_ACCESS = 48


def _check_header(path: Path, source: str) -> None:
    """Read the .npy header alone, and refuse a file whose declared array its bytes cannot hold
    (a 100-byte file claiming 10^12 elements) or that would not fit in memory, before loading it."""
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(handle))
            data_start = handle.tell()
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(source, "", f"not a valid .npy file ({clip(str(err), 120)})") from None
    if dtype.hasobject:
        return    # refused by the load itself, with its own message
    elements = math.prod(shape)
    declared = elements * dtype.itemsize
    held = path.stat().st_size - data_start
    if declared > held:
        raise ConfigError(source, "", f"its header declares shape {shape} ({declared:,} bytes) but the file holds "
                                      f"{held:,} bytes of data (truncated or damaged)")
    accesses = elements // max(1, shape[1] if len(shape) == 2 else 1)
    check_memory(declared + accesses * TRACE_BYTES_PER_ACCESS, f"a trace of {accesses:,} accesses", source, "")


def load_trace(path: str | Path) -> Trace:
    """Read and check a ``.npy`` trace (see the module docstring); errors are one ConfigError line."""
    source = str(path)
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ConfigError(source, "", "not a .npy file (write the trace with numpy.save)")
    if not path.is_file():
        raise ConfigError(source, "", "no such file" if not path.exists() else "is not a file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(6)
    except OSError as err:
        raise ConfigError(source, "", f"cannot be read ({err.strerror or err})") from None
    if magic[:4] == b"PK\x03\x04":
        raise ConfigError(source, "", "is an .npz archive of several arrays; save one array with numpy.save")
    if magic != b"\x93NUMPY":
        raise ConfigError(source, "", "not a valid .npy file (no NumPy header)")
    _check_header(path, source)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ConfigError(source, "", "holds Python objects (a pickled object array); save a numeric "
                                          "array instead") from None
        raise ConfigError(source, "", f"not a valid .npy file ({err})") from None
    except (OSError, EOFError) as err:
        raise ConfigError(source, "", f"cannot be read ({err})") from None
    if array.dtype.names:
        names = array.dtype.names
        if "address" not in names or array.ndim != 1:
            raise ConfigError(source, "", f"a structured trace needs a 1-D array with an 'address' field "
                                          f"(fields: {', '.join(names)})")
        for name in names:
            if array.dtype.fields[name][0].shape:
                raise ConfigError(source, name, f"a sub-array field of shape {array.dtype.fields[name][0].shape}; "
                                                "each field holds one value per access")
        addresses = _integers(array["address"], source, "address")
        writes = (_flags(array["is_write"], source, "is_write") if "is_write" in names
                  else np.zeros(addresses.size, dtype=bool))
        core = _integers(array["core"], source, "core") if "core" in names else np.zeros(addresses.size, np.int64)
        hints = _hints(array["hints"], source) if "hints" in names else None
    elif array.ndim == 1:
        addresses = _integers(array, source, "addresses")
        writes = np.zeros(addresses.size, dtype=bool)
        core = np.zeros(addresses.size, dtype=np.int64)
        hints = None
    elif array.ndim == 2 and array.shape[1] in (2, 3, 4):
        addresses = _integers(array[:, 0], source, "column 0 (address)")
        writes = _flags(array[:, 1], source, "column 1 (is_write)")
        core = (_integers(array[:, 2], source, "column 2 (core)") if array.shape[1] >= 3
                else np.zeros(addresses.size, dtype=np.int64))
        hints = _hints(array[:, 3], source) if array.shape[1] == 4 else None
    else:
        raise ConfigError(source, "", f"shape {array.shape}: expected addresses (N,) or columns (N, 2) / (N, 3) / "
                                      "(N, 4): address, is_write[, core[, hints]]")
    if addresses.size == 0:
        raise ConfigError(source, "", "the trace is empty")
    if int(addresses.max()) > MAX_ADDRESS:
        first = int(np.flatnonzero(addresses > MAX_ADDRESS)[0])
        raise ConfigError(source, "address", f"{int(addresses[first])} at index {first} is beyond the simulated "
                                             f"address space (addresses below 2^62)")
    return Trace(source, np.ascontiguousarray(addresses), np.ascontiguousarray(writes), np.ascontiguousarray(core),
                 None if hints is None else np.ascontiguousarray(hints))


def _hints(column: np.ndarray, source: str) -> np.ndarray:
    """The hints column: the cache model's bits (stream, overwrite), 0 to 3."""
    values = _integers(column, source, "column 3 (hints)")
    if values.size and (values.min() < 0 or values.max() > HINT_STREAM | HINT_OVERWRITE):
        bad = int(np.flatnonzero((values < 0) | (values > (HINT_STREAM | HINT_OVERWRITE)))[0])
        raise ConfigError(source, "column 3 (hints)", f"{int(values[bad])} at index {bad} is not a hint (0 to 3: "
                                                       "bit 1 stream, bit 2 whole-sector store)")
    return values.astype(np.uint8)


@dataclass(frozen=True)
class LevelCount:
    """Exact counts of one cache level for a trace."""

    name: str
    size_bytes: int
    line_bytes: int
    ways: int
    shared: bool
    replacement: Replacement
    accesses: int     # accesses reaching the level (missed every level above)
    hits: int

    @property
    def misses(self) -> int:
        """Accesses the level passed on downwards."""
        return self.accesses - self.hits

    @property
    def hit_rate(self) -> float:
        """Local hit rate: hits over accesses reaching the level."""
        return self.hits / self.accesses if self.accesses else 0.0


@dataclass(frozen=True)
class TraceResult:
    """What ``cachesim`` found: per-level counts, DRAM traffic, speed, and the curves."""

    profile: str
    trace: str
    accesses: int
    writes: int
    cores: int
    levels: list[LevelCount]
    dram_line_reads: int
    dram_writebacks: int
    dram_line_bytes: int
    cache_seconds: float
    curves: list[MissRatioCurve] = field(default_factory=list)
    curve_seconds: float = 0.0

    @property
    def accesses_per_s(self) -> float:
        """Speed of the cache model on this trace."""
        return self.accesses / self.cache_seconds if self.cache_seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"profile": self.profile, "trace": self.trace, "accesses": self.accesses, "writes": self.writes,
                "cores": self.cores,
                "levels": [{"name": l.name, "size_bytes": l.size_bytes, "line_bytes": l.line_bytes, "ways": l.ways,
                            "shared": l.shared, "replacement": l.replacement.value, "accesses": l.accesses,
                            "hits": l.hits, "misses": l.misses,
                            "hit_rate": l.hit_rate} for l in self.levels],
                "dram": {"line_reads": self.dram_line_reads, "writebacks": self.dram_writebacks,
                         "read_bytes": self.dram_line_reads * self.dram_line_bytes,
                         "write_bytes": self.dram_writebacks * self.dram_line_bytes},
                "cache_seconds": self.cache_seconds, "accesses_per_s": self.accesses_per_s,
                "miss_ratio_curves": [c.to_json() for c in self.curves]}


def simulate_trace(profile: HardwareProfile, trace: Trace, curves: bool = False) -> TraceResult:
    """Run ``trace`` through the profile's hierarchy from cold; with ``curves``, the MRC of every
    LRU level (other policies have no stack distances)."""
    cores = profile.compute.cores
    if trace.core.size and int(trace.core.max()) >= cores:
        first = int(np.flatnonzero(trace.core >= cores)[0])
        raise ConfigError(trace.path, "core", f"core {int(trace.core[first])} at index {first}, but "
                                              f"{profile.name} has {cores} core{'s' * (cores != 1)} (0..{cores - 1})")
    if curves and profile.caches and all(level.replacement is not Replacement.LRU for level in profile.caches):
        raise ConfigError(profile.path, level_path("caches", profile.caches[0].name, "replacement"),
                          f"{profile.caches[0].name} uses {profile.caches[0].replacement.value} and no level is LRU; "
                          "miss-ratio curves come from LRU stack distances (use lru, or run without miss-ratio curves)")
    # One access through a throw-away hierarchy first, so that loading the compiled loops is
    # not timed: the rate printed is the model's.
    cache_hierarchy(profile, cores).access(trace.addresses[:1], trace.is_write[:1], trace.core[:1])
    hierarchy = cache_hierarchy(profile, cores)
    start = time.perf_counter()
    outcome = hierarchy.access(trace.addresses, trace.is_write, trace.core, hints=trace.hints)
    cache_seconds = time.perf_counter() - start
    served = np.bincount(outcome.served_level.astype(np.int64), minlength=len(hierarchy.levels) + 1)
    reaching = trace.accesses
    counts = []
    for i, level in enumerate(hierarchy.levels):
        counts.append(LevelCount(level.name, level.size_bytes, level.line_bytes, level.ways, level.shared,
                                 level.replacement, reaching, int(served[i])))
        reaching -= int(served[i])
    found: list[MissRatioCurve] = []
    curve_seconds = 0.0
    if curves:
        start = time.perf_counter()
        for i, level in enumerate(hierarchy.levels):
            if level.replacement is not Replacement.LRU:
                continue    # stack distances are an LRU property; the levels above may be anything
            stream = level_stream(hierarchy.levels, cores, i, trace.addresses, trace.is_write, trace.core)
            found.append(miss_ratio_curve(stream, level, cores))
        curve_seconds = time.perf_counter() - start
    last_line = hierarchy.levels[-1].line_bytes if hierarchy.levels else 64
    return TraceResult(profile.name, trace.path, trace.accesses, int(trace.is_write.sum()), cores, counts,
                       int(served[-1]), int(outcome.dram_writebacks.sum()), last_line, cache_seconds, found,
                       curve_seconds)


def write_curves_csv(curves: list[MissRatioCurve], path: str | Path, option: str = "mrc") -> None:
    """The miss-ratio curves as CSV: one row per level, associativity and size."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["level", "associativity", "size_bytes", "sets", "ways", "references", "hits", "misses",
                             "miss_ratio"])
            for curve in curves:
                for p in curve.points:
                    writer.writerow([curve.level, p.associativity.value, p.size_bytes, p.sets, p.ways, p.references,
                                     p.hits, p.misses, repr(p.miss_ratio)])
    except OSError as err:
        raise OptionError(option, f"{path}: cannot write ({err.strerror or err})") from None


def check_curves_path(path: Optional[str], option: str = "mrc") -> Optional[Path]:
    """The ``--mrc`` target, checked before any work: .csv, or a plot file."""
    if path is None:
        return None
    from ..output.plots import PLOT_SUFFIXES, check_plot_path

    target = Path(path)
    if target.suffix.lower() == ".csv":
        directory = target.parent if str(target.parent) else Path(".")
        if not directory.is_dir():
            raise OptionError(option, f"{path}: directory {directory} does not exist")
        return target
    if target.suffix.lower() not in PLOT_SUFFIXES:
        raise OptionError(option, f"{path}: write the curves as .csv or a plot "
                                                f"({', '.join(PLOT_SUFFIXES)})")
    return check_plot_path(target, option)
