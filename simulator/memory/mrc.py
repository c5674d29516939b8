"""Miss-ratio curves from LRU stack distances: the hits of one cache level at every size.

Mattson et al. (1970): under LRU, a cache of ``W`` lines holds exactly the ``W`` most recently
used lines, so a reference hits iff its *stack distance* (distinct lines touched since its
previous touch) is below ``W``. One pass that records every reference's distance answers
every cache size at once. This module applies that to one level of a hierarchy, exactly as
:mod:`simulator.memory.cache` models it. What is exact, and why:

* **The stream a level sees.** In the non-inclusive non-exclusive hierarchy of
  :mod:`simulator.memory.cache`, what happens in the levels above level ``k`` never depends on level
  ``k`` or anything below it. So the references that reach level ``k`` (the look-ups of
  accesses that missed above, and the write-backs of dirty lines evicted above) are fixed
  once the levels above are: :class:`LevelFilter` computes them in one pass of the cache model
  itself over the levels above (any replacement policy there), which records what falls out of
  the last of them.
* **Set-associative, any number of ways.** A set-associative LRU cache is one LRU stack per
  set (``set = line % sets``; one set of stacks per core for a private level). For a fixed
  number of sets, the distance of a reference within its set gives hit or miss for every
  associativity at once: :class:`LruStacks` (depth bounded by the largest associativity of
  interest). It also tracks dirty lines per associativity, so the dirty evictions (DRAM
  write-backs when the level is the last) are exact too: a line is dirty in a ``W``-way
  cache iff every reference since its last dirtying reference had distance below ``W``.
* **Sizes at a fixed associativity.** Growing a cache at fixed ways changes the number of
  sets, and with it which lines share a set, so every set count needs its own pass (each
  pass covers all associativities at that set count). :func:`miss_ratio_curve` does one
  pass per set count; each pass is exact.
* **Fully associative.** One set: one pass gives the hits for every capacity in lines
  (:func:`fully_associative_distances`, unbounded distances with a Fenwick tree,
  O(n log n)).

Hits counted here are those of *demand* references (accesses the level serves), which is
what :class:`simulator.memory.cache.CacheHierarchy` reports as ``served_level``; write-back
references from above change the LRU order and dirty state but are not accesses served.
All per-reference work is in numba-compiled loops (an LRU stack update is sequential).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .cache import HINT_OVERWRITE, HINT_STREAM, AccessOutcome, CacheGeometry, CacheHierarchy, Replacement, WriteAllocate
from .jit import numba

__all__ = ["Associativity", "LevelFilter", "LevelStream", "LruStacks", "MissRatioCurve", "MrcPoint", "default_sizes",
           "fully_associative_distances", "level_outcome", "level_stream", "miss_ratio_curve", "require_lru"]

#: Flags of a reference in a :class:`LevelStream`.
_DIRTYING = 1   # makes the line dirty at this level (a write-back from above; a write at level 0)
_DEMAND = 2     # the access's own look-up (served here or below), not a write-back
_OVERWRITE = 4  # a demand store that overwrites whole sectors: a no-fetch level that misses takes it


@dataclass(frozen=True)
class LevelStream:
    """The references that reach one level, for one trace, in the order the level sees them.

    ``served_above`` (int8, one per access of the trace) is the index of the level above
    ``level`` that served the access, or ``level`` when the access reached this level.
    Per reference: ``line`` is the line address at this level's line size, ``access`` the
    index of the access it belongs to, ``core`` the core that issued it, ``flags`` a bit set
    of dirtying (``1``) and demand (``2``).
    """

    level: int
    served_above: np.ndarray
    line: np.ndarray
    access: np.ndarray
    core: np.ndarray
    flags: np.ndarray

    @property
    def references(self) -> int:
        """Number of references reaching the level (demand look-ups and write-backs)."""
        return int(self.line.size)

    @property
    def demand(self) -> np.ndarray:
        """True for the accesses' own look-ups."""
        return (self.flags & _DEMAND) != 0

    @property
    def dirtying(self) -> np.ndarray:
        """True for references that leave the line dirty at this level."""
        return (self.flags & _DIRTYING) != 0


def require_lru(levels: Sequence[CacheGeometry]) -> None:
    """Raise ValueError, naming the level, unless every level replaces LRU: stack distances are
    an LRU property."""
    for level in levels:
        if level.replacement is not Replacement.LRU:
            raise ValueError(f"cache level {level.name!r} uses {level.replacement.value}; "
                             "stack distances model LRU levels only")


# --- the levels above: the cache model itself -------------------------------------------------

class LevelFilter:
    """The levels above level ``level``, as the cache model runs them; emits the references
    reaching ``level``.

    ``levels`` is the whole hierarchy (the levels above ``level`` are simulated by
    :class:`~simulator.memory.cache.CacheHierarchy`, with their own replacement policies; of
    ``level`` itself only the line size is used); ``cores`` the number of instances of each
    private level. State persists across :meth:`run` calls, and can be saved, restored and
    compared (:meth:`snapshot`, :meth:`restore`, :meth:`same_state`: equal when the levels above
    would behave alike from there on).
    """

    def __init__(self, levels: Sequence[CacheGeometry], cores: int, level: int) -> None:
        levels = tuple(levels)
        if not 0 <= level < len(levels):
            raise ValueError(f"level must be in 0..{len(levels) - 1}, got {level}")
        if cores < 1:
            raise ValueError(f"cores must be positive, got {cores}")
        self.levels = levels
        self.level = level
        self.cores = int(cores)
        self._above = CacheHierarchy(levels[:level], self.cores)
        self._shift = levels[level].line_shift

    def reset(self) -> None:
        """All levels above cold."""
        self._above.reset()

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A copy of the state."""
        return self._above.snapshot()

    def restore(self, snapshot: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Go back to a state from :meth:`snapshot`."""
        self._above.restore(snapshot)

    def same_state(self, snapshot: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bool:
        """True when the levels above would behave from here exactly as from ``snapshot``."""
        return self._above.same_state(snapshot)

    def run(self, addresses: np.ndarray, is_write: np.ndarray, core: np.ndarray,
            hints: Optional[np.ndarray] = None) -> LevelStream:
        """Run a trace through the levels above; returns the stream reaching the level.

        Per access, in the cache model's order: its own look-up (when every level above missed
        or passed it by), then the dirty lines its fills pushed out of the level just above.
        ``hints`` as for :meth:`~simulator.memory.cache.CacheHierarchy.access`.
        """
        addr = np.ascontiguousarray(addresses, dtype=np.int64)
        write = np.ascontiguousarray(is_write, dtype=np.bool_)
        cores = np.ascontiguousarray(core, dtype=np.int64)
        hints = np.zeros(addr.size, np.uint8) if hints is None else np.ascontiguousarray(hints, dtype=np.uint8)
        outcome = self._above.access(addr, write, cores, record_writebacks=True, hints=hints)
        demand = np.flatnonzero(outcome.served_level == self.level)
        wb_addresses, wb_access = outcome.recorded_writebacks()
        access = np.concatenate([demand, wb_access])
        # stable: within an access the look-up first, then the write-backs in the order they left
        order = np.lexsort((np.concatenate([np.zeros(demand.size, np.int8), np.ones(wb_access.size, np.int8)]),
                            access))
        demand_flags = np.full(demand.size, _DEMAND, dtype=np.int8)
        # a store dirties the nearest level holding the line: this one when every level above
        # passed it by (none above, or all of them pass streams and it is one)
        passes_above = all(not g.caches_streams for g in self.levels[:self.level])
        nearest = ((hints[demand] & HINT_STREAM) != 0) if passes_above and self.level else self.level == 0
        demand_flags |= np.where(write[demand] & nearest, _DIRTYING, 0).astype(np.int8)
        demand_flags |= np.where(write[demand] & ((hints[demand] & HINT_OVERWRITE) != 0), _OVERWRITE, 0).astype(np.int8)
        line = np.concatenate([addr[demand], wb_addresses]) >> self._shift
        flags = np.concatenate([demand_flags, np.full(wb_access.size, _DIRTYING, dtype=np.int8)])
        access = access[order]
        return LevelStream(self.level, outcome.served_level, line[order], access, cores[access].astype(np.int16),
                           flags[order])


def level_stream(levels: Sequence[CacheGeometry], cores: int, level: int, addresses: np.ndarray,
                 is_write: np.ndarray, core: np.ndarray, hints: Optional[np.ndarray] = None) -> LevelStream:
    """The references reaching ``level`` for a trace run from cold caches."""
    return LevelFilter(levels, cores, level).run(addresses, is_write, core, hints)


# --- the level itself: LRU stacks per set ----------------------------------------------------

class LruStacks:
    """LRU stacks, one per set and instance, of bounded depth: stack distances and dirty evictions.

    ``sets`` and ``instances`` fix the geometry (an instance per core for a private level, one
    for a shared level); ``depth`` is the largest associativity of interest (distances of
    ``depth`` or more are reported as ``depth``: a miss for every associativity up to
    ``depth``). ``writeback_ways`` lists the associativities whose dirty evictions are counted.
    State persists across :meth:`run` calls.
    """

    def __init__(self, sets: int, instances: int, depth: int, writeback_ways: Sequence[int] = ()) -> None:
        if sets < 1 or instances < 1 or depth < 1:
            raise ValueError(f"sets, instances and depth must be positive, got {sets}, {instances}, {depth}")
        ways = np.asarray(list(writeback_ways), dtype=np.int64)
        if ways.size and (ways.min() < 1 or ways.max() > depth):
            raise ValueError(f"writeback_ways must be in 1..{depth}, got {list(writeback_ways)}")
        self.sets, self.instances, self.depth = int(sets), int(instances), int(depth)
        self.writeback_ways = ways
        groups = self.sets * self.instances
        self._lines = np.full(groups * self.depth, -1, dtype=np.int64)
        # Per entry: the largest distance of its references since the last dirtying one
        # (``depth`` when never dirtied): dirty in a W-way cache iff this is below W.
        self._since_dirty = np.zeros(groups * self.depth, dtype=np.int32)
        self._filled = np.zeros(groups, dtype=np.int32)

    def run(self, line: np.ndarray, instance: Optional[np.ndarray], dirtying: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        """Push references through; returns (distance per reference, dirty evictions).

        ``instance`` gives each reference's instance (its core, for a private level), None
        for a single instance. The distances are int32 (``depth`` for "not within depth");
        the evictions are a bool array ``[len(writeback_ways), references]``, True where the
        reference made a ``W``-way cache evict a dirty line.
        """
        line = np.ascontiguousarray(line, dtype=np.int64)
        if instance is None:
            if self.instances != 1:
                raise ValueError(f"{self.instances} instances need an instance per reference")
            instance = np.zeros(1, dtype=np.int16)
        instance = np.ascontiguousarray(instance)
        distance = np.empty(line.size, dtype=np.int32)
        evicted = np.zeros((self.writeback_ways.size, line.size), dtype=np.bool_)
        _stack_distance_loop(line, instance, self.instances > 1, self.sets,
                             np.ascontiguousarray(dirtying, dtype=np.bool_), self.depth, self.writeback_ways,
                             self._lines, self._since_dirty, self._filled, distance, evicted)
        return distance, evicted


@numba.njit(cache=True, nogil=True)
def _stack_distance_loop(line, instance, by_instance, sets, dirtying, depth, wb_ways, lines, since_dirty, filled,
                         distance, evicted):  # pragma: no cover - compiled
    """LRU stack distances of one level's references, set by set (a numba-compiled loop)."""
    for t in range(line.shape[0]):
        x = line[t]
        g = (instance[t] * sets if by_instance else 0) + x % sets
        base = g * depth
        used = filled[g]
        p = depth
        for j in range(used):
            if lines[base + j] == x:
                p = j
                break
        distance[t] = p
        for w in range(wb_ways.shape[0]):
            ways = wb_ways[w]
            # a W-way cache misses and is full: its LRU line (position W-1) leaves
            if p >= ways and used >= ways and since_dirty[base + ways - 1] < ways:
                evicted[w, t] = True
        if dirtying[t]:
            m = 0
        elif p < depth:
            m = max(since_dirty[base + p], p)
        else:
            m = depth
        top = p if p < depth else min(used, depth - 1)
        for j in range(top, 0, -1):
            lines[base + j] = lines[base + j - 1]
            since_dirty[base + j] = since_dirty[base + j - 1]
        lines[base] = x
        since_dirty[base] = m
        if p == depth and used < depth:
            filled[g] = used + 1


def level_outcome(stream: LevelStream, geometry: CacheGeometry, cores: int,
                  stacks: Optional[LruStacks] = None) -> AccessOutcome:
    """Per-access outcome of a hierarchy whose *last* level is ``geometry`` (at ``stream.level``).

    Equal to :meth:`simulator.memory.cache.CacheHierarchy.access` for the whole hierarchy: the
    served level is the one above that hit, this level, or DRAM (``level + 1``); write-backs
    are the dirty lines this level evicted. Pass ``stacks`` to carry the level's state over
    from earlier traces (built with ``writeback_ways=(geometry.ways,)``).
    """
    require_lru([geometry])
    if stacks is None:
        stacks = LruStacks(geometry.sets, 1 if geometry.shared else cores, geometry.ways, (geometry.ways,))
    distance, evicted = stacks.run(stream.line, None if geometry.shared else stream.core, stream.dirtying)
    served = stream.served_above.copy()
    demand = stream.demand
    hit = distance[demand] < geometry.ways
    if geometry.write_allocate is WriteAllocate.NO_FETCH:     # a whole-sector store is taken without a fetch
        hit |= (stream.flags[demand] & _OVERWRITE) != 0
    served[stream.access[demand]] = np.where(hit, stream.level, stream.level + 1).astype(np.int8)
    writebacks = np.zeros(served.size, dtype=np.uint8)
    np.add.at(writebacks, stream.access[evicted[0]], 1)   # few evictions are dirty: cheap
    return AccessOutcome(served, writebacks)


# --- fully associative: unbounded distances --------------------------------------------------

def fully_associative_distances(line: np.ndarray, instance: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact LRU stack distance of every reference in one fully-associative stack per instance.

    Returns int64 distances, -1 for a first touch (a miss at every size). A cache of ``C``
    lines hits exactly the references with ``0 <= distance < C``. O(n log n): the distance
    is the number of lines whose latest touch lies between the reference and its previous
    touch, counted with a Fenwick tree over time.
    """
    line = np.asarray(line, dtype=np.int64)
    if line.size == 0:
        return np.zeros(0, dtype=np.int64)
    ids = np.unique(line, return_inverse=True)[1].astype(np.int64).ravel()
    if instance is None:
        return _fenwick_distances(ids, int(ids.max()) + 1)
    # Stacks of different instances are independent: lay each instance's references out as
    # one contiguous stretch of "time" (a stable sort keeps their order), and make the same
    # line in two instances two different stack entries.
    inst = np.asarray(instance, dtype=np.int64)
    order = np.argsort(inst, kind="stable")
    keyed = inst[order] * (int(ids.max()) + 1) + ids[order]
    keyed = np.unique(keyed, return_inverse=True)[1].astype(np.int64).ravel()
    out = np.empty(line.size, dtype=np.int64)
    out[order] = _fenwick_distances(keyed, int(keyed.max()) + 1)
    return out


@numba.njit(cache=True, nogil=True)
def _fenwick_distances(ids, n_ids):  # pragma: no cover - compiled
    n = ids.shape[0]
    tree = np.zeros(n + 1, dtype=np.int64)   # marks at the latest touch of every line
    last = np.full(n_ids, -1, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    for t in range(n):
        x = ids[t]
        prev = last[x]
        if prev < 0:
            out[t] = -1
        else:
            # marks in (prev, t): prefix(t) - prefix(prev + 1)
            s = 0
            i = t
            while i > 0:
                s += tree[i]
                i -= i & -i
            i = prev + 1
            while i > 0:
                s -= tree[i]
                i -= i & -i
            out[t] = s
            i = prev + 1
            while i <= n:
                tree[i] -= 1
                i += i & -i
        i = t + 1
        while i <= n:
            tree[i] += 1
            i += i & -i
        last[x] = t
    return out


# --- the curve ---------------------------------------------------------------------------------

class Associativity(str, enum.Enum):
    """How a curve's caches map lines to places."""

    SET_ASSOCIATIVE = "set-associative"      # the level's own ways; sets = size / (ways x line)
    FULLY_ASSOCIATIVE = "fully-associative"  # one set of size / line ways


@dataclass(frozen=True)
class MrcPoint:
    """Hits of one cache size on a level's demand references."""

    associativity: Associativity
    size_bytes: int
    sets: int
    ways: int
    references: int      # demand references reaching the level
    hits: int

    @property
    def misses(self) -> int:
        """Demand references the level does not serve."""
        return self.references - self.hits

    @property
    def miss_ratio(self) -> float:
        """Misses over demand references (0 when nothing reaches the level)."""
        return self.misses / self.references if self.references else 0.0


@dataclass(frozen=True)
class MissRatioCurve:
    """The miss-ratio curve of one level: set-associative points and fully-associative points."""

    level: str
    line_bytes: int
    ways: int
    points: tuple[MrcPoint, ...]

    def of(self, associativity: Associativity) -> list[MrcPoint]:
        """The points of one associativity kind, smallest size first."""
        return sorted((p for p in self.points if p.associativity is associativity), key=lambda p: p.size_bytes)

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"level": self.level, "line_bytes": self.line_bytes, "ways": self.ways,
                "points": [{"associativity": p.associativity.value, "size_bytes": p.size_bytes, "sets": p.sets,
                            "ways": p.ways, "references": p.references, "hits": p.hits, "misses": p.misses,
                            "miss_ratio": p.miss_ratio} for p in self.points]}


def default_sizes(stream: LevelStream, geometry: CacheGeometry) -> list[int]:
    """Power-of-two set counts from one set up to the first size that holds every line touched.

    Beyond that size only first touches miss, so the curve is flat.
    """
    distinct = int(np.unique(stream.line).size) if stream.references else 1
    unit = geometry.line_bytes * geometry.ways
    sizes = [unit]
    while sizes[-1] // geometry.line_bytes < distinct and len(sizes) < 40:
        sizes.append(sizes[-1] * 2)
    if geometry.size_bytes not in sizes:
        sizes.append(geometry.size_bytes)
    return sorted(sizes)


def miss_ratio_curve(stream: LevelStream, geometry: CacheGeometry, cores: int,
                     sizes: Optional[Sequence[int]] = None) -> MissRatioCurve:
    """Hits of the level at every size in ``sizes`` (default: :func:`default_sizes`).

    Set-associative points keep ``geometry.ways`` and change the number of sets (one exact
    stack pass per set count); fully-associative points come from one pass for all sizes.
    A size that is not a whole number of ``ways x line`` sets is skipped for the
    set-associative curve.
    """
    require_lru([geometry])
    sizes = sorted(set(int(s) for s in (sizes if sizes is not None else default_sizes(stream, geometry))))
    demand = stream.demand
    references = int(demand.sum())
    instances = 1 if geometry.shared else cores
    instance = None if geometry.shared else stream.core
    points = []
    unit = geometry.line_bytes * geometry.ways
    for size in sizes:
        if size % unit:
            continue
        stacks = LruStacks(size // unit, instances, geometry.ways)
        distance, _ = stacks.run(stream.line, instance, stream.dirtying)
        points.append(MrcPoint(Associativity.SET_ASSOCIATIVE, size, size // unit, geometry.ways, references,
                               int(np.count_nonzero(distance[demand] < geometry.ways))))
    fa = fully_associative_distances(stream.line, instance)[demand]
    fa = np.sort(fa[fa >= 0])
    for size in sizes:
        capacity = size // geometry.line_bytes
        if capacity < 1:
            continue
        hits = int(np.searchsorted(fa, capacity, side="left"))
        points.append(MrcPoint(Associativity.FULLY_ASSOCIATIVE, size, 1, capacity, references, hits))
    return MissRatioCurve(geometry.name, geometry.line_bytes, geometry.ways, tuple(points))
