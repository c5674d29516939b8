"""Exact set-associative model of a cache hierarchy on byte addresses (LRU and its relatives).

Semantics, in a few sentences. The hierarchy is *non-inclusive non-exclusive* (NINE):
an access walks the levels from level 0 and stops at the first level where its line is
present (that level's recency order is updated); every level it missed in before that
allocates the line on the way back, deepest first (*write-allocate*; nothing is ever
invalidated to keep levels inclusive or exclusive). Caches are *write-back*: a write marks
the line dirty in level 0 only, copies further down stay clean. When a level evicts a
dirty line, the line is written to the next level down as a write (it hits there or is
allocated there without fetching from below, and is marked dirty and most recently used
there); that may evict a dirty line further down, and a dirty line evicted from the last
level is a write-back to DRAM.

Two per-level policies act on per-access hints (:meth:`CacheHierarchy.access`). A level with
``write_allocate`` ``no-fetch`` takes a store hinted :data:`HINT_OVERWRITE` that misses it without
looking further down: the walk stops there, that level is the serving level, and the missed
levels fill as usual (``fetch``, the default, walks on: read-for-ownership). A level with
``caches_streams`` False is passed by (neither looked up nor filled nor touched) by every access
hinted :data:`HINT_STREAM` and by every write-back; a write then marks dirty the nearest level
that holds the line after the access (the topmost filled one, else the one that hit). An access
that passes every level by is served below them (``len(levels)``; a profile's last level always
keeps streams, but the levels above one level, as :mod:`~simulator.memory.mrc` runs them, may not).
A *private* level has one instance per core and the
access's core selects the instance (write-backs from a private instance go to the same
core's instance below, or to the shared one); a *shared* level has one instance. Each
level has its own line size; a set is ``line_address % sets`` with
``line_address = address >> log2(line_bytes)``, and tags are whole line addresses.

Each level has a replacement policy (:class:`~simulator.hardware.profile.Replacement`). Every
policy fills an invalid way before it evicts. ``lru`` evicts the least recently used line and
inserts the new one as most recently used. ``random`` evicts a valid way drawn from the level's
own generator (``x <- (1103515245 x + 12345) mod 2**31``, way ``(x >> 16) mod ways``, seeded
with ``level index + 1``; deterministic, so runs repeat exactly). ``bip`` evicts the LRU line but
inserts the new one at the LRU position, except every 32nd fill of the level, which goes to MRU.
``dip`` keeps a 10-bit saturating counter per level (starting at 511): a miss fill in a set with
``set % 64 == 0`` (an LRU leader) counts up, one with ``set % 64 == 32`` (a BIP leader) counts
down, and every other set inserts as BIP while the counter is at 512 or more, else as LRU (with
fewer than 64 sets the period is the number of sets, and with one set the only set is an LRU
leader). Write-backs from above always insert as most recently used, and do not count in the duel.

The state persists across :meth:`CacheHierarchy.access` calls (warm caches are real)
until :meth:`CacheHierarchy.reset`. The whole trace goes through all levels in one
numba-compiled loop, because an exact LRU model needs per-access sequential state updates
that cannot be vectorised, and a Python loop per address would be ~100x slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..hardware.profile import CacheLevel, Replacement, WriteAllocate
from .jit import numba

__all__ = [
    "HINT_OVERWRITE",
    "HINT_STREAM",
    "MAX_ADDRESS",
    "MAX_LEVELS",
    "MAX_WAYS",
    "AccessOutcome",
    "CacheGeometry",
    "CacheHierarchy",
    "Replacement",
    "WriteAllocate",
]

#: Access hint bits (one uint8 per access, see :meth:`CacheHierarchy.access`): the access belongs to a
#: stream (anything but a gather load), which a level with ``caches_streams=False`` passes by.
HINT_STREAM = 1
#: The access is a store that overwrites whole sectors of its line: a ``no-fetch`` level that misses
#: allocates the line without reading it from below.
HINT_OVERWRITE = 2

#: Largest number of levels: ``served_level`` is int8 and ``len(levels)`` means DRAM.
MAX_LEVELS = 127

#: Largest byte address (a tag keeps the line address shifted left by one bit).
MAX_ADDRESS = (1 << 62) - 1

#: Largest associativity (the way number is kept in the low 16 bits of an LRU stamp).
MAX_WAYS = 1 << 16


@dataclass(frozen=True)
class CacheGeometry:
    """One cache level as the cache model needs it.

    ``size_bytes`` is the capacity of one instance, ``line_bytes`` a power of two,
    ``ways`` the associativity (``size_bytes`` must be a multiple of
    ``line_bytes * ways``); ``shared`` is True for one instance shared by all cores,
    False for one private instance per core; ``replacement`` is the level's policy.
    Construction raises ValueError, naming the level, on an impossible geometry.
    """

    name: str
    size_bytes: int
    line_bytes: int
    ways: int
    shared: bool
    replacement: Replacement = Replacement.LRU
    write_allocate: WriteAllocate = WriteAllocate.FETCH
    caches_streams: bool = True

    @staticmethod
    def of(level: CacheLevel) -> CacheGeometry:
        """The geometry and policies of a profile's cache level."""
        return CacheGeometry(level.name, level.size_bytes, level.line_bytes, level.ways, level.shared,
                             level.replacement, level.write_allocate, level.caches_streams)

    def __post_init__(self) -> None:
        where = f"cache level {self.name!r}"
        for field in ("size_bytes", "line_bytes", "ways"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{where}: {field} must be an integer, got {value!r}")
        if not isinstance(self.shared, (bool, np.bool_)):
            raise ValueError(f"{where}: shared must be a bool, got {self.shared!r}")
        if not isinstance(self.replacement, Replacement):
            raise ValueError(f"{where}: replacement must be a Replacement, got {self.replacement!r}")
        if not isinstance(self.write_allocate, WriteAllocate):
            raise ValueError(f"{where}: write_allocate must be a WriteAllocate, got {self.write_allocate!r}")
        if not isinstance(self.caches_streams, (bool, np.bool_)):
            raise ValueError(f"{where}: caches_streams must be a bool, got {self.caches_streams!r}")
        if not 1 <= self.ways <= MAX_WAYS:
            raise ValueError(f"{where}: ways must be in 1..{MAX_WAYS}, got {self.ways}")
        if self.line_bytes < 1 or self.line_bytes & (self.line_bytes - 1):
            raise ValueError(
                f"{where}: line_bytes must be a power of two, got {self.line_bytes}"
            )
        if self.size_bytes < 1 or self.size_bytes % (self.line_bytes * self.ways):
            raise ValueError(
                f"{where}: size_bytes {self.size_bytes} is not a positive multiple of "
                f"line_bytes * ways = {self.line_bytes} * {self.ways}"
            )

    @property
    def sets(self) -> int:
        """Number of sets of one instance: ``size_bytes / (line_bytes * ways)``."""
        return self.size_bytes // (self.line_bytes * self.ways)

    @property
    def line_shift(self) -> int:
        """``log2(line_bytes)``: a byte address shifted right by this is a line address."""
        return int(self.line_bytes).bit_length() - 1


@dataclass(frozen=True)
class AccessOutcome:
    """Per-access result of :meth:`CacheHierarchy.access`.

    ``served_level`` (int8) is the index of the level that hit, or ``len(levels)`` when
    the access went to DRAM. ``dram_writebacks`` (uint8) is the number of dirty lines
    this access caused to be written back to DRAM (through eviction chains). Within one access,
    its own look-up below the last level comes before its write-backs.
    """

    served_level: np.ndarray
    dram_writebacks: np.ndarray
    #: With ``record_writebacks``: the byte address of every line written back to DRAM, in the
    #: order they leave, and the index of the access that caused each (else None).
    writeback_addresses: Optional[np.ndarray] = None
    writeback_access: Optional[np.ndarray] = None

    def recorded_writebacks(self) -> tuple[np.ndarray, np.ndarray]:
        """``(writeback_addresses, writeback_access)`` of an access run with ``record_writebacks``."""
        if self.writeback_addresses is None or self.writeback_access is None:
            raise ValueError("the write-backs were not recorded (access(..., record_writebacks=True))")
        return self.writeback_addresses, self.writeback_access


def tile_tallies(outcome: AccessOutcome, bounds: np.ndarray, kinds: np.ndarray, gather: int,
                 levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tile (``bounds``: the first access of each tile, then the end): the accesses each level
    served ``[tiles, 2, levels + 1]`` (DRAM last), the others first, then those whose kind (in
    ``kinds``) is ``gather``; and the DRAM write-backs ``[tiles]``. One compiled pass that releases
    the GIL."""
    tiles = bounds.size - 1
    by_kind = np.zeros((tiles, 2, levels + 1), dtype=np.int64)
    writebacks = np.zeros(tiles, dtype=np.int64)
    _tally(np.ascontiguousarray(bounds, dtype=np.int64), outcome.served_level, kinds, int(gather),
           outcome.dram_writebacks, by_kind, writebacks, np.empty(_TALLY_BANKS * 2 * (levels + 1), dtype=np.int64))
    return by_kind, writebacks


#: Counter banks of :func:`_tally`: access i counts in bank ``i % _TALLY_BANKS``.
_TALLY_BANKS = 4


# Speed trick: consecutive accesses are mostly served by the same level, so one counter per
# (kind, level) made each increment wait for the previous one's store (a memory dependency
# chain); four banks, summed at the end of each tile, break the chain (about 2x faster).
@numba.njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _tally(bounds, served, kinds, gather, dram_writebacks, by_kind, writebacks,
           banks):  # pragma: no cover - compiled
    width = by_kind.shape[2]
    for t in range(bounds.size - 1):
        banks[:] = 0
        wb = 0
        for i in range(bounds[t], bounds[t + 1]):
            u = np.uint64(i)
            g = 1 if kinds[u] == gather else 0
            banks[np.uint64(((i % _TALLY_BANKS) * 2 + g) * width + served[u])] += 1
            wb += dram_writebacks[u]
        for b in range(_TALLY_BANKS):
            for g in range(2):
                for lv in range(width):
                    by_kind[t, g, lv] += banks[(b * 2 + g) * width + lv]
        writebacks[t] = wb


class CacheHierarchy:
    """State of a whole hierarchy; persists across calls (warm caches are real).

    ``levels`` run from the one nearest the core (index 0) towards memory; ``cores`` is
    the number of instances of every private level. Line sizes may grow but never
    shrink towards memory, and a private level may not lie below a shared one (its
    write-backs would have no owning core). Zero levels is allowed: everything is served
    by DRAM.
    """

    def __init__(self, levels: Sequence[CacheGeometry], cores: int) -> None:
        """Build cold caches for ``levels`` (nearest the core first) and ``cores`` cores.

        Raises ValueError, naming the level, when the levels do not form a hierarchy.
        """
        levels = tuple(levels)
        if isinstance(cores, bool) or not isinstance(cores, (int, np.integer)) or cores < 1:
            raise ValueError(f"cores must be a positive integer, got {cores!r}")
        if len(levels) > MAX_LEVELS:
            raise ValueError(f"at most {MAX_LEVELS} cache levels, got {len(levels)}")
        for index, level in enumerate(levels):
            if not isinstance(level, CacheGeometry):
                raise ValueError(f"cache level {index} is not a CacheGeometry: {level!r}")
        for upper, lower in zip(levels, levels[1:]):
            if lower.line_bytes < upper.line_bytes:
                raise ValueError(
                    f"cache level {lower.name!r}: line_bytes {lower.line_bytes} is smaller "
                    f"than {upper.line_bytes} of level {upper.name!r} above it "
                    "(line sizes never shrink towards memory)"
                )
            if upper.shared and not lower.shared:
                raise ValueError(
                    f"cache level {lower.name!r}: a private level cannot lie below the "
                    f"shared level {upper.name!r}"
                )
        self._levels = levels
        self._cores = int(cores)

        # Flat state: per level, per instance, per set one contiguous block of int64:
        # ``ways_padded`` tags then ``ways_padded`` LRU stamps, ``ways_padded`` being
        # ``ways`` rounded up to a multiple of 4 so the compiled loop scans in fixed chunks.
        # tag = (line address << 1) | dirty, -1 if invalid or padding;
        # stamp = (touch time << _WAY_BITS) | way, unique within a set, so the way with
        # the smallest stamp is the LRU one. Touches count up from 0; an insertion at the
        # LRU position (bip, dip) takes a time counting down from -1, below every touch;
        # invalid ways hold time _INVALID_TIME (below both), padding ways the largest
        # int64 (never the victim).
        n = len(levels)
        instances = [1 if lv.shared else self._cores for lv in levels]
        sets = [lv.sets for lv in levels]
        chunks = [-(-lv.ways // 4) for lv in levels]
        sizes = [i * s * 8 * c for i, s, c in zip(instances, sets, chunks)]
        offsets = np.cumsum([0] + sizes)
        self._params = np.zeros((n, _N_PARAMS), dtype=np.int64)
        for lv, level in enumerate(levels):
            self._params[lv, _OFFSET] = offsets[lv]
            self._params[lv, _PRIVATE] = not level.shared
            self._params[lv, _SETS] = sets[lv]
            self._params[lv, _SET_MASK] = sets[lv] - 1 if sets[lv] & (sets[lv] - 1) == 0 else -1
            self._params[lv, _CHUNKS] = chunks[lv]
            self._params[lv, _SHIFT] = level.line_shift
            self._params[lv, _POLICY] = _POLICY_CODES[level.replacement]
            self._params[lv, _WAYS] = level.ways
            self._params[lv, _DUEL_PERIOD] = min(_DUEL_PERIOD_SETS, sets[lv])
            self._params[lv, _NO_FETCH] = level.write_allocate is WriteAllocate.NO_FETCH
            self._params[lv, _PASSES_STREAMS] = not level.caches_streams
        self._instances = instances
        # Per level: the random generator, the dueling counter, the next LRU-position time and
        # the count of BIP fills (see the module docstring).
        self._policy_state = np.zeros((max(1, n), _N_POLICY_STATE), dtype=np.int64)
        # 64-byte aligned so that a set block starts on a host cache line.
        raw = np.empty(int(offsets[-1]) + 8, dtype=np.int64)
        skip = (-raw.ctypes.data % 64) // 8
        self._state = raw[skip : skip + int(offsets[-1])]
        self._clock = np.zeros(1, dtype=np.int64)
        self.reset()

    @property
    def levels(self) -> tuple[CacheGeometry, ...]:
        """The levels, nearest the core first."""
        return self._levels

    @property
    def cores(self) -> int:
        """Number of cores (instances of each private level)."""
        return self._cores

    def reset(self) -> None:
        """Make every cache cold: all lines invalid and clean, LRU history forgotten."""
        for lv, level in enumerate(self._levels):
            offset, sets = self._params[lv, _OFFSET], self._params[lv, _SETS]
            padded = 4 * int(self._params[lv, _CHUNKS])
            n_blocks = self._instances[lv] * sets
            blocks = self._state[offset : offset + n_blocks * 2 * padded]
            blocks = blocks.reshape(n_blocks, 2 * padded)
            blocks[:, :padded] = -1
            stamps = np.full(padded, np.iinfo(np.int64).max, dtype=np.int64)
            stamps[: level.ways] = (_INVALID_TIME << _WAY_BITS) | np.arange(level.ways)
            blocks[:, padded:] = stamps
            self._policy_state[lv] = (lv + 1, _PSEL_START, -1, 0)
        self._clock[0] = 0

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A copy of the whole state (lines, recency, policy state, clock)."""
        return self._state.copy(), self._policy_state.copy(), self._clock.copy()

    def restore(self, snapshot: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Go back to a state from :meth:`snapshot`."""
        state, policy_state, clock = snapshot
        self._state[:] = state
        self._policy_state[:] = policy_state
        self._clock[:] = clock

    def same_state(self, snapshot: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bool:
        """True when the caches would behave from now on exactly as from ``snapshot``: the same
        lines, equally dirty, in the same recency order in every set (the stamps' absolute times
        do not matter), and, for a random level, in the same ways with the same generator, for
        BIP and DIP with the same counters."""
        now = self._canonical(self._state, self._policy_state)
        then = self._canonical(*snapshot[:2])
        return all(np.array_equal(a, b) for a, b in zip(now, then))

    def _canonical(self, state: np.ndarray, policy_state: np.ndarray) -> list[np.ndarray]:
        parts = []
        for lv, level in enumerate(self._levels):
            offset, sets = int(self._params[lv, _OFFSET]), int(self._params[lv, _SETS])
            padded = 4 * int(self._params[lv, _CHUNKS])
            n_blocks = self._instances[lv] * sets
            blocks = state[offset : offset + n_blocks * 2 * padded].reshape(n_blocks, 2 * padded)
            tags, stamps = blocks[:, :padded], blocks[:, padded:]
            parts.append(np.take_along_axis(tags, np.argsort(stamps, axis=1, kind="stable"), axis=1))
            if level.replacement is Replacement.RANDOM:
                parts += [tags, policy_state[lv, _RNG : _RNG + 1]]
            elif level.replacement is not Replacement.LRU:
                parts.append(np.array([policy_state[lv, _PSEL], policy_state[lv, _BIP_FILLS] % _BIP_PERIOD]))
        return parts

    def access(
        self, addresses: np.ndarray, is_write: np.ndarray, core: np.ndarray, record_writebacks: bool = False,
        hints: Optional[np.ndarray] = None,
    ) -> AccessOutcome:
        """Run a trace through the hierarchy, in order, updating its state.

        ``addresses`` are integer byte addresses in ``0..MAX_ADDRESS`` (converted to int64),
        ``is_write`` a bool array, ``core`` an integer array with values in
        ``0..cores-1``; all three 1-D and of equal length. With ``record_writebacks`` the
        outcome also lists every DRAM write-back's address and access (what a level below this
        hierarchy would receive). ``hints`` (uint8, one per access, bits :data:`HINT_STREAM` and
        :data:`HINT_OVERWRITE`) says which accesses belong to streams and which stores overwrite
        whole sectors; without it no access is either (every level caches every access, and every
        store fetches). Raises ValueError on malformed input (a programming error).
        """
        addr = np.asarray(addresses)
        write = np.asarray(is_write)
        cores = np.asarray(core)
        for name, arr in (("addresses", addr), ("is_write", write), ("core", cores)):
            if arr.ndim != 1:
                raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
        if not (len(addr) == len(write) == len(cores)):
            raise ValueError(
                "addresses, is_write and core must have equal lengths, got "
                f"{len(addr)}, {len(write)} and {len(cores)}"
            )
        if len(addr) and not np.issubdtype(addr.dtype, np.integer):
            raise ValueError(f"addresses must be integers, got dtype {addr.dtype}")
        if len(write) and write.dtype != np.bool_:
            raise ValueError(f"is_write must be a bool array, got dtype {write.dtype}")
        if len(cores) and not np.issubdtype(cores.dtype, np.integer):
            raise ValueError(f"core must be integers, got dtype {cores.dtype}")
        hints = np.zeros(len(addr), dtype=np.uint8) if hints is None else np.asarray(hints)
        if hints.shape != addr.shape or (len(hints) and not np.issubdtype(hints.dtype, np.integer)):
            raise ValueError(f"hints must be integers shaped like addresses {addr.shape}, got "
                             f"{hints.dtype} {hints.shape}")
        hints = np.ascontiguousarray(hints, dtype=np.uint8)
        if len(addr):
            lo, hi = int(addr.min()), int(addr.max())
            if lo < 0 or hi > MAX_ADDRESS:
                bad = lo if lo < 0 else hi
                raise ValueError(f"address {bad} out of range 0..2**62-1")
        addr = np.ascontiguousarray(addr, dtype=np.int64)
        write = np.ascontiguousarray(write, dtype=np.bool_)
        if len(addr):
            lo, hi = int(cores.min()), int(cores.max())
            if lo < 0 or hi >= self._cores:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"core id {bad} out of range 0..{self._cores - 1} "
                    f"(hierarchy built for {self._cores} cores)"
                )
        # a trace's own int16 core ids go to the kernel as they are: no 8-byte copy of each access
        cores = np.ascontiguousarray(cores, dtype=np.int16 if cores.dtype == np.int16 else np.int64)

        served = np.empty(len(addr), dtype=np.int8)
        writebacks = np.zeros(len(addr), dtype=np.uint8)
        # a DRAM write-back leaves the last level at most once per level filled by an access
        capacity = len(addr) * len(self._levels) if record_writebacks else 0
        wb_addresses = np.empty(capacity, dtype=np.int64)
        wb_access = np.empty(capacity, dtype=np.int64)
        if not self._levels:
            served.fill(0)
        else:
            # the compiled loop's scratch (it allocates nothing itself): per missed level, top down, its
            # set block, the line address there, and the level's index
            scratch = np.empty((3, len(self._levels)), dtype=np.int64)
            recorded = _run_trace(
                addr, write, cores, hints, self._params, self._state, self._clock, self._policy_state,
                served, writebacks, record_writebacks, wb_addresses, wb_access, scratch[0], scratch[1], scratch[2],
            )
            wb_addresses, wb_access = wb_addresses[:recorded].copy(), wb_access[:recorded].copy()
        if not record_writebacks:
            return AccessOutcome(served, writebacks)
        return AccessOutcome(served, writebacks, wb_addresses, wb_access)


#: Low bits of an LRU stamp that hold the way (so the smallest stamp names its way).
_WAY_BITS = 16
_WAY_MASK = (1 << _WAY_BITS) - 1

#: Time of an invalid way's stamp: older than any touch and any LRU-position insertion.
_INVALID_TIME = -(1 << 46)
_FIRST_VALID_STAMP = (_INVALID_TIME + 1) << _WAY_BITS   # every valid way's stamp is at least this

# Columns of the per-level parameter table handed to the compiled loop (:func:`_run_trace`).
_OFFSET, _PRIVATE, _SETS, _SET_MASK, _CHUNKS, _SHIFT, _POLICY, _WAYS, _DUEL_PERIOD, _NO_FETCH, _PASSES_STREAMS = \
    range(11)
_N_PARAMS = 11

_LRU, _RANDOM, _BIP, _DIP = range(4)
_POLICY_CODES = {Replacement.LRU: _LRU, Replacement.RANDOM: _RANDOM, Replacement.BIP: _BIP, Replacement.DIP: _DIP}

# Columns of the per-level policy state.
_RNG, _PSEL, _LOW_TIME, _BIP_FILLS = range(4)
_N_POLICY_STATE = 4
_PSEL_MAX = 1023         # a 10-bit saturating counter (Qureshi et al. 2007)
_PSEL_START = 511        # just below the midpoint: followers start as LRU
_BIP_PERIOD = 32         # one BIP fill in 32 goes to MRU (epsilon = 1/32)
_DUEL_PERIOD_SETS = 64   # one LRU leader and one BIP leader in every 64 sets


@numba.njit(cache=True, inline="always")
def _set_block(params, lv, line, core):  # pragma: no cover - compiled
    """Index in the flat state of the set block that ``line`` maps to at level ``lv``."""
    mask = params[lv, _SET_MASK]
    sets = params[lv, _SETS]
    s = line & mask if mask >= 0 else line % sets
    inst = core if params[lv, _PRIVATE] else 0
    return params[lv, _OFFSET] + (inst * sets + s) * (8 * params[lv, _CHUNKS])


@numba.njit(cache=True, inline="always")
def _find(state, block, chunks, line):  # pragma: no cover - compiled
    """Way holding ``line`` in the set block, or -1.

    Tags hold ``line << 1 | dirty`` and a line is in at most one way, so every way is compared
    and the matching one (if any) picked without a branch: over a slice of the block the loop has
    no per-load negative-index code and LLVM turns it into vector compares (about 1.2x faster on
    the VGG-16 traces than one branch per four ways). Four ways are straight-line code.
    """
    if chunks == 1:
        tags4 = state[block:block + 4]
        return (((tags4[0] >> 1) == line) * 1 + ((tags4[1] >> 1) == line) * 2 + ((tags4[2] >> 1) == line) * 3
                + ((tags4[3] >> 1) == line) * 4) - 1
    tags = state[block:block + 4 * chunks]
    found = 0
    for j in range(4 * chunks):
        found |= ((tags[j] >> 1) == line) * (j + 1)
    return found - 1


@numba.njit(cache=True, inline="always")
def _lru_way(state, block, chunks):  # pragma: no cover - compiled
    """Least recently used way of the set block: the low bits of its smallest stamp (a min over a
    slice of the block, which LLVM vectorises)."""
    stamps = state[block + 4 * chunks:block + 8 * chunks]
    oldest = stamps[0]
    for j in range(4 * chunks):
        oldest = min(oldest, stamps[j])
    return oldest & _WAY_MASK


@numba.njit(cache=True, inline="always")
def _random_victim(state, block, chunks, lru, params, pstate, lv):  # pragma: no cover - compiled
    """Way a random level fills: ``lru`` if that way is invalid (invalid ways are the oldest),
    else a way drawn from the level's generator."""
    if state[block + 4 * chunks + lru] < _FIRST_VALID_STAMP:
        return lru
    x = (pstate[lv, _RNG] * 1103515245 + 12345) & 0x7FFFFFFF
    pstate[lv, _RNG] = x
    return (x >> 16) % params[lv, _WAYS]


@numba.njit(cache=True, inline="always")
def _fill_time(params, pstate, lv, line, t):  # pragma: no cover - compiled
    """Time stamp of a demand fill at level ``lv``: ``t`` (MRU) or an LRU-position time.

    Updates the level's dueling counter (dip) and BIP fill count on the way.
    """
    policy = params[lv, _POLICY]
    if policy == _LRU or policy == _RANDOM:
        return t
    bimodal = True
    if policy == _DIP:
        period = params[lv, _DUEL_PERIOD]
        mask = params[lv, _SET_MASK]
        s = (line & mask if mask >= 0 else line % params[lv, _SETS]) % period
        psel = pstate[lv, _PSEL]
        if s == 0:
            pstate[lv, _PSEL] = min(psel + 1, _PSEL_MAX)
            bimodal = False
        elif s == period // 2 and period > 1:
            pstate[lv, _PSEL] = max(psel - 1, 0)
        else:
            bimodal = psel > _PSEL_MAX // 2
    if not bimodal:
        return t
    fills = pstate[lv, _BIP_FILLS] + 1
    pstate[lv, _BIP_FILLS] = fills
    if fills % _BIP_PERIOD == 0:
        return t
    low = pstate[lv, _LOW_TIME]
    pstate[lv, _LOW_TIME] = low - 1
    return low


@numba.njit(cache=True, inline="always")
def _keeper(params, lv, hint):  # pragma: no cover - compiled
    """The first level from ``lv`` down that an access with ``hint`` does not pass by
    (``params.shape[0]``: none, DRAM)."""
    n_levels = params.shape[0]
    if hint & HINT_STREAM:
        while lv < n_levels and params[lv, _PASSES_STREAMS] != 0:
            lv += 1
    return lv


@numba.njit(cache=True, inline="always")
def _probe(params, state, lv, address, core):  # pragma: no cover - compiled
    """Line address, set block and way holding the line (-1: a miss) of byte ``address`` at level
    ``lv`` (the instance of ``core`` if the level is private)."""
    la = address >> params[lv, _SHIFT]
    b = _set_block(params, lv, la, core)
    return la, b, _find(state, b, params[lv, _CHUNKS], la)


@numba.njit(cache=True, inline="always")
def _walk_down(params, state, a, c, hint, overwrite, lv, t, block, line, missed,
               n_missed):  # pragma: no cover - compiled
    """Look byte address ``a`` up from level ``lv`` down until the first hit, or a no-fetch level
    that takes a whole-sector store; each level missed on the way is appended (at ``n_missed``)
    to ``missed`` with its set block and line address. A hit touches the line at time ``t``.

    Returns (serving level, flat index of the hit line's tag or -1, levels missed, next time).
    """
    n_levels = params.shape[0]
    while lv < n_levels:
        la, b, w = _probe(params, state, lv, a, c)
        chunks = params[lv, _CHUNKS]
        if w >= 0:
            state[b + 4 * chunks + w] = (t << _WAY_BITS) | w
            return lv, b + w, n_missed, t + 1
        block[n_missed] = b
        line[n_missed] = la
        missed[n_missed] = lv
        n_missed += 1
        if overwrite and params[lv, _NO_FETCH] != 0:
            return lv, -1, n_missed, t
        lv = _keeper(params, lv + 1, hint)
    return n_levels, -1, n_missed, t


@numba.njit(cache=True, inline="always")
def _level_params(params, lv):  # pragma: no cover - compiled
    """Level ``lv``'s parameters as a tuple the loop keeps in locals: line shift, chunks of four ways,
    sets, set mask, offset in the state, private (0/1), no-fetch (0/1)."""
    return (params[lv, _SHIFT], params[lv, _CHUNKS], params[lv, _SETS], params[lv, _SET_MASK], params[lv, _OFFSET],
            params[lv, _PRIVATE], params[lv, _NO_FETCH])


@numba.njit(cache=True, inline="always")
def _look_up(level, state, a, c, t):  # pragma: no cover - compiled
    """(line, set block, way or -1) of address ``a`` from core ``c`` at a level whose parameters the
    loop keeps in locals (``level``, :func:`_level_params`); a hit is touched at time ``t``."""
    shift, chunks, sets, mask, offset, private, _ = level
    la = a >> shift
    s = la & mask if mask >= 0 else la % sets
    b = offset + ((c if private != 0 else 0) * sets + s) * (8 * chunks)
    w = _find(state, b, chunks, la)
    if w >= 0:
        state[b + 4 * chunks + w] = (t << _WAY_BITS) | w
    return la, b, w


@numba.njit(cache=True, inline="always")
def _walk_from_one(params, state, a, c, hint, overwrite, t, block, line, missed, n_missed,
                   one):  # pragma: no cover - compiled
    """:func:`_walk_down` from level 1, whose parameters ``one`` (:func:`_level_params`) the loop keeps
    in locals."""
    la, b, w = _look_up(one, state, a, c, t)
    if w >= 0:
        return 1, b + w, n_missed, t + 1
    block[n_missed] = b
    line[n_missed] = la
    missed[n_missed] = 1
    n_missed += 1
    if overwrite and one[6] != 0:           # no-fetch
        return 1, -1, n_missed, t
    return _walk_down(params, state, a, c, hint, overwrite, _keeper(params, 2, hint), t, block, line, missed,
                      n_missed)


@numba.njit(cache=True, inline="always")
def _fill(params, state, pstate, lv, b, la, t):  # pragma: no cover - compiled
    """Demand fill of line address ``la`` into set block ``b`` of level ``lv`` at time ``t``: the
    victim and the insertion position follow the level's policy, the new line is clean.

    Returns (flat index of the new line's tag, the evicted tag: -1 if the way was invalid).
    """
    chunks = params[lv, _CHUNKS]
    w = _lru_way(state, b, chunks)
    stamp = t
    policy = params[lv, _POLICY]
    if policy != _LRU:
        if policy == _RANDOM:
            w = _random_victim(state, b, chunks, w, params, pstate, lv)
        else:
            stamp = _fill_time(params, pstate, lv, la, t)
    evicted = state[b + w]
    state[b + w] = la << 1
    state[b + 4 * chunks + w] = (stamp << _WAY_BITS) | w
    return b + w, evicted


@numba.njit(cache=True, inline="always")
def _write_back(params, state, pstate, lv, evicted, c, t):  # pragma: no cover - compiled
    """Write-back chain of the dirty tag ``evicted`` from level ``lv`` (core ``c``): it goes down to
    the next level that keeps streams, where it hits or is allocated dirty and most recently used
    (without fetching); a dirty line evicted by that goes on down.

    Returns (next time, the byte address that fell off the last level as a DRAM write-back, or -1).
    """
    n_levels = params.shape[0]
    wb_addr = (evicted >> 1) << params[lv, _SHIFT]
    nxt = _keeper(params, lv + 1, HINT_STREAM)
    while nxt < n_levels:
        la, b, w = _probe(params, state, nxt, wb_addr, c)
        chunks = params[nxt, _CHUNKS]
        if w >= 0:
            state[b + w] |= 1
            state[b + 4 * chunks + w] = (t << _WAY_BITS) | w
            return t + 1, -1
        w = _lru_way(state, b, chunks)
        if params[nxt, _POLICY] == _RANDOM:
            w = _random_victim(state, b, chunks, w, params, pstate, nxt)
        evicted = state[b + w]
        state[b + w] = (la << 1) | 1
        state[b + 4 * chunks + w] = (t << _WAY_BITS) | w
        t += 1
        if evicted < 0 or (evicted & 1) == 0:
            return t, -1
        wb_addr = (evicted >> 1) << params[nxt, _SHIFT]
        nxt = _keeper(params, nxt + 1, HINT_STREAM)
    return t, wb_addr


# Without numba's runtime (_nrt=False): with it, every array handed to an inlined helper that
# branches or loops gets an atomic reference count up and down around each call, which made the
# split loop three times slower than the one-piece loop it replaced; the loop allocates nothing.
# (numba's annotations leave out the private _nrt flag its njit takes)
@numba.njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _run_trace(addr, write, cores, hints, params, state, clock, pstate, served, writebacks, record, wb_addr_out,
               wb_access_out, block, line, missed):  # pragma: no cover
    """Compiled loop: all accesses through all levels, write-back chains included; returns the number of
    DRAM write-backs recorded in ``wb_addr_out`` / ``wb_access_out`` (0 unless ``record``).

    Each touch of a line stores stamp ``(t << _WAY_BITS) | way`` and increments ``t``
    (an int64 lasts 2**46 touches, far beyond any trace); a fill at the LRU position takes the
    level's next time counting down from -1 instead (:func:`_fill_time`).
    Level 0 has a fast path with its parameters in locals: most accesses hit there; so has level 1,
    where the streams that pass level 0 by and level 0's misses go (about 1.05-1.1x the accesses per
    second on the VGG-16 traces of a 2-level GPU profile).
    The levels an access missed are kept in ``missed`` (top down) with their set blocks (``block``)
    and line addresses (``line``), since the levels it passes by are neither looked up nor filled;
    those three scratch arrays hold one entry per level. The helpers
    (:func:`_walk_down`, :func:`_fill`, :func:`_write_back`) are inlined into this loop.
    """
    n_levels = params.shape[0]
    n = addr.shape[0]
    # levels 0 and 1 (where streams that pass level 0 by and level 0's misses go) in locals
    zero = _level_params(params, 0)
    no_fetch0 = zero[6]
    one = _level_params(params, min(1, n_levels - 1))
    t = clock[0]
    recorded = 0
    for i in range(n):
        a = addr[i]
        c = cores[i]
        hint = hints[i]
        overwrite = write[i] and (hint & HINT_OVERWRITE) != 0
        n_missed = 0
        hit_level = n_levels
        hit_tag = -1
        lv = _keeper(params, 0, hint)
        if lv == 0:
            # Level 0 first, with its parameters in locals.
            la, b, w = _look_up(zero, state, a, c, t)
            if w >= 0:
                t += 1
                served[i] = 0
                writebacks[i] = 0
                if write[i]:
                    state[b + w] |= 1
                continue
            block[0] = b
            line[0] = la
            missed[0] = 0
            n_missed = 1
            if overwrite and no_fetch0 != 0:
                hit_level = 0           # allocated without fetching: served here
            lv = _keeper(params, 1, hint)
        if hit_level == n_levels and lv == 1 and n_levels > 1:
            hit_level, hit_tag, n_missed, t = _walk_from_one(params, state, a, c, hint, overwrite, t, block, line,
                                                             missed, n_missed, one)
        elif hit_level == n_levels:
            hit_level, hit_tag, n_missed, t = _walk_down(params, state, a, c, hint, overwrite, lv, t, block, line,
                                                         missed, n_missed)
        served[i] = hit_level
        # Fill the missed levels on the way back, deepest first.
        n_wb = 0
        tag0 = hit_tag   # ends as the line's tag at the nearest level that holds it
        for k in range(n_missed - 1, -1, -1):
            lv = missed[k]
            tag0, evicted = _fill(params, state, pstate, lv, block[k], line[k], t)
            t += 1
            if evicted < 0 or (evicted & 1) == 0:
                continue
            t, wb_addr = _write_back(params, state, pstate, lv, evicted, c, t)
            if wb_addr >= 0:
                n_wb += 1  # fell off the last level: a write-back to DRAM
                if record:
                    wb_addr_out[recorded] = wb_addr
                    wb_access_out[recorded] = i
                    recorded += 1
        if write[i] and tag0 >= 0:
            state[tag0] |= 1
        writebacks[i] = n_wb
    clock[0] = t
    return recorded
