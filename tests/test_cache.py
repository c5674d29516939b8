"""Tests of the cache-hierarchy model against a plain Python reference and by hand."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from simulator.memory.cache import (
    HINT_OVERWRITE,
    HINT_STREAM,
    AccessOutcome,
    CacheGeometry,
    CacheHierarchy,
    Replacement,
    WriteAllocate,
)

KIB = 1024


class _ReferenceSet:
    """One set, plainly: the line in each way, dirty bits, and recency order (oldest first)."""

    def __init__(self, ways):
        self.slots = [None] * ways
        self.dirty = {}
        self.order = OrderedDict()


class _ReferenceHierarchy:
    """Same semantics as CacheHierarchy (module docstring), written plainly: per level and
    instance a list of sets; replacement policies with their generator and dueling counter."""

    def __init__(self, levels, cores):
        self.levels = tuple(levels)
        self.sets = [
            [[_ReferenceSet(lv.ways) for _ in range(lv.sets)] for _ in range(1 if lv.shared else cores)]
            for lv in self.levels
        ]
        self.rng = [i + 1 for i in range(len(self.levels))]
        self.psel = [511] * len(self.levels)
        self.bip_fills = [0] * len(self.levels)

    def _set(self, lv, core, address):
        geo = self.levels[lv]
        line = address // geo.line_bytes
        inst = 0 if geo.shared else core
        return self.sets[lv][inst][line % geo.sets], line

    def _victim_slot(self, lv, s):
        if None in s.slots:
            return s.slots.index(None)
        if self.levels[lv].replacement is Replacement.RANDOM:
            self.rng[lv] = (self.rng[lv] * 1103515245 + 12345) % 2**31
            return (self.rng[lv] >> 16) % self.levels[lv].ways
        return s.slots.index(next(iter(s.order)))

    def _at_lru_position(self, lv, line):
        """Whether a demand fill of ``line`` at ``lv`` goes to the LRU position."""
        geo = self.levels[lv]
        if geo.replacement in (Replacement.LRU, Replacement.RANDOM):
            return False
        if geo.replacement is Replacement.DIP:
            period = min(64, geo.sets)
            s = (line % geo.sets) % period
            if s == 0:
                self.psel[lv] = min(self.psel[lv] + 1, 1023)
                return False
            if period > 1 and s == period // 2:
                self.psel[lv] = max(self.psel[lv] - 1, 0)
            elif self.psel[lv] <= 511:
                return False
        self.bip_fills[lv] += 1
        return self.bip_fills[lv] % 32 != 0

    def _insert(self, lv, core, address, dirty, demand):
        """Allocate at level lv; return the DRAM write-backs its eviction chain caused."""
        s, line = self._set(lv, core, address)
        slot = self._victim_slot(lv, s)
        victim = s.slots[slot]
        victim_dirty = victim is not None and s.dirty.pop(victim)
        if victim is not None:
            del s.order[victim]
        s.slots[slot] = line
        s.dirty[line] = dirty
        s.order[line] = None
        if demand and self._at_lru_position(lv, line):
            s.order.move_to_end(line, last=False)
        if not victim_dirty:
            return 0
        return self._write_back(lv + 1, core, victim * self.levels[lv].line_bytes)

    def _passes(self, lv, hint):
        return bool(hint & HINT_STREAM) and not self.levels[lv].caches_streams

    def _write_back(self, lv, core, address):
        while lv < len(self.levels) and self._passes(lv, HINT_STREAM):
            lv += 1
        if lv == len(self.levels):
            return 1
        s, line = self._set(lv, core, address)
        if line in s.dirty:
            s.order.move_to_end(line)
            s.dirty[line] = True
            return 0
        return self._insert(lv, core, address, True, demand=False)

    def access(self, addresses, is_write, core, hints=None):
        hints = np.zeros(len(addresses), np.uint8) if hints is None else hints
        served, wbs = [], []
        for a, w, c, h in zip(addresses.tolist(), is_write.tolist(), core.tolist(), hints.tolist()):
            hit, missed = len(self.levels), []
            for lv in range(len(self.levels)):
                if self._passes(lv, h):
                    continue
                s, line = self._set(lv, c, a)
                if line in s.dirty:
                    s.order.move_to_end(line)
                    hit = lv
                    break
                missed.append(lv)
                if w and h & HINT_OVERWRITE and self.levels[lv].write_allocate is WriteAllocate.NO_FETCH:
                    hit = lv        # a whole-sector store allocated without a fetch
                    break
            n = 0
            for lv in reversed(missed):
                n += self._insert(lv, c, a, False, demand=True)
            nearest = missed[0] if missed else hit
            if w and nearest < len(self.levels):
                s, line = self._set(nearest, c, a)
                s.dirty[line] = True
            served.append(hit)
            wbs.append(n)
        return np.array(served), np.array(wbs)


def _geo(name, size, line, ways, shared=True, replacement=Replacement.LRU):
    return CacheGeometry(name, size, line, ways, shared, replacement)


def _compare(levels, cores, addresses, is_write, core, chunks=1, hints=None):
    """Run both models (optionally over several calls) and require identical outcomes."""
    model = CacheHierarchy(levels, cores)
    ref = _ReferenceHierarchy(levels, cores)
    for idx in np.array_split(np.arange(len(addresses)), chunks):
        part = None if hints is None else hints[idx]
        out = model.access(addresses[idx], is_write[idx], core[idx], hints=part)
        ref_served, ref_wb = ref.access(addresses[idx], is_write[idx], core[idx], part)
        assert out.served_level.dtype == np.int8
        assert out.dram_writebacks.dtype == np.uint8
        np.testing.assert_array_equal(out.served_level, ref_served)
        np.testing.assert_array_equal(out.dram_writebacks, ref_wb)
    return model


TWO_LEVELS = (_geo("L1", 1 * KIB, 64, 2, shared=False), _geo("L2", 4 * KIB, 64, 4))


def _random_trace(rng, n, span, cores=1, write_p=0.3):
    return (
        rng.integers(0, span, n, dtype=np.int64),
        rng.random(n) < write_p,
        rng.integers(0, cores, n),
    )


def test_random_reads_writes_match_reference():
    rng = np.random.default_rng(1)
    a, w, c = _random_trace(rng, 4000, 16 * KIB)
    model = _compare(TWO_LEVELS, 1, a, w, c, chunks=3)
    # the trace really exercises hits, misses and write-backs
    out = model.access(a, w, c)
    assert out.dram_writebacks.sum() > 0


@pytest.mark.parametrize("stride_lines", [1, 16], ids=["line", "sets_x_line"])
def test_strided_traces_match_reference(stride_lines):
    # L1 has 1 KiB / (64 B * 2) = 8 sets, L2 16 sets: stride 16 lines conflicts in both.
    n = 600
    a = (np.arange(n, dtype=np.int64) % 40) * 64 * stride_lines + 8
    w = np.arange(n) % 3 == 0
    _compare(TWO_LEVELS, 1, a, w, np.zeros(n, dtype=np.int64))


def test_csr_gather_trace_matches_reference():
    # sequential stream of values/indices interleaved with gathers in a small x vector
    rng = np.random.default_rng(2)
    n = 3000
    stream = 1_000_000 + 4 * np.arange(n // 2, dtype=np.int64)
    gather = rng.integers(0, 6 * KIB, n // 2, dtype=np.int64)
    a = np.empty(n, dtype=np.int64)
    a[0::2], a[1::2] = stream, gather
    w = np.zeros(n, dtype=bool)
    w[::17] = True  # occasional output writes
    _compare(TWO_LEVELS, 1, a, w, np.zeros(n, dtype=np.int64))


@pytest.mark.parametrize("cores", [2, 4])
def test_private_l1_l2_shared_l3_matches_reference(cores):
    levels = (
        _geo("L1", 512, 32, 2, shared=False),
        _geo("L2", 2 * KIB, 64, 4, shared=False),
        _geo("L3", 8 * KIB, 128, 8, shared=True),
    )
    rng = np.random.default_rng(cores)
    a, w, c = _random_trace(rng, 5000, 32 * KIB, cores=cores, write_p=0.4)
    model = _compare(levels, cores, a, w, c, chunks=2)
    assert model.levels == levels
    _compare(levels, cores, a, w, c.astype(np.int16), chunks=2)    # a trace's own core type, as it comes


def test_odd_ways_and_non_power_of_two_sets_match_reference():
    # 3 ways (padded to 4 in the model), 5 sets (modulo instead of a mask), 12 ways.
    levels = (
        _geo("L1", 192, 64, 3, shared=False),
        _geo("L2", 960, 64, 3, shared=False),
        _geo("L3", 6 * 12 * 128, 128, 12),
    )
    assert [lv.sets for lv in levels] == [1, 5, 6]
    rng = np.random.default_rng(5)
    a, w, c = _random_trace(rng, 4000, 24 * KIB, cores=2, write_p=0.4)
    _compare(levels, 2, a, w, c)


def test_single_level_matches_reference():
    rng = np.random.default_rng(3)
    a, w, c = _random_trace(rng, 3000, 8 * KIB, cores=2)
    _compare((_geo("only", 2 * KIB, 64, 4, shared=False),), 2, a, w, c)


def test_zero_levels_everything_from_dram():
    rng = np.random.default_rng(4)
    a, w, c = _random_trace(rng, 100, 8 * KIB, cores=3)
    model = _compare((), 3, a, w, c)
    out = model.access(a, w, c)
    assert (out.served_level == 0).all() and (out.dram_writebacks == 0).all()


def test_empty_trace():
    model = CacheHierarchy(TWO_LEVELS, 1)
    empty = np.array([], dtype=np.int64)
    out = model.access(empty, np.array([], dtype=bool), empty)
    assert isinstance(out, AccessOutcome)
    assert out.served_level.shape == (0,) and out.dram_writebacks.shape == (0,)


def test_state_persists_across_calls_and_reset_makes_cold():
    model = CacheHierarchy(TWO_LEVELS, 1)
    a = np.arange(0, 1 * KIB, 16, dtype=np.int64)  # exactly fills L1
    w = np.zeros(len(a), dtype=bool)
    c = np.zeros(len(a), dtype=np.int64)
    first = model.access(a, w, c).served_level
    assert (first[::4] == 2).all()  # first touch of each 64 B line goes to DRAM
    assert (model.access(a, w, c).served_level == 0).all()
    model.reset()
    assert (model.access(a, w, c).served_level[::4] == 2).all()


def test_lru_order_in_two_way_set():
    model = CacheHierarchy((_geo("L1", 128, 64, 2),), 1)  # a single set of 2 ways
    A, B, C = 0, 64, 128
    a = np.array([A, B, A, C, A, B], dtype=np.int64)
    out = model.access(a, np.zeros(6, dtype=bool), np.zeros(6, dtype=np.int64))
    # C evicts B (least recently used, A was touched after it): A then hits, B misses.
    assert out.served_level.tolist() == [1, 1, 0, 1, 0, 1]


def test_dirty_evictions_written_back_to_dram_counted_by_hand():
    # L1: 1 set x 2 ways; L2: 1 set x 4 ways; lines 64 B.
    levels = (_geo("L1", 128, 64, 2, shared=False), _geo("L2", 256, 64, 4))
    model = CacheHierarchy(levels, 1)
    lines = lambda *ids: np.array(ids, dtype=np.int64) * 64  # noqa: E731
    zeros = np.zeros(6, dtype=np.int64)
    # Write lines 0..5 (more than L2's 4 ways). L2 order is oldest first, d = dirty.
    #   write 0, 1: fills only; L1 {0d,1d}, L2 {0,1}.
    #   write 2: L1 evicts 0d -> L2 hit, dirty:   L2 {1,2,0d}.           no DRAM
    #   write 3: L1 evicts 1d -> L2 hit, dirty:   L2 {2,0d,3,1d}.        no DRAM
    #   write 4: L2 fill evicts clean 2; L1 evicts 2d -> L2 miss evicts 0d -> DRAM.
    #            L2 {3,1d,4,2d}
    #   write 5: L2 fill evicts clean 3; L1 evicts 3d -> L2 miss evicts 1d -> DRAM.
    out = model.access(lines(0, 1, 2, 3, 4, 5), np.ones(6, dtype=bool), zeros)
    assert out.dram_writebacks.tolist() == [0, 0, 0, 0, 1, 1]
    # Now L1 {4,5} dirty, L2 {4,2d,5,3d}. Reading 6, 7, 8, 9 pushes 2d, 3d, 4d to DRAM.
    out = model.access(lines(6, 7, 8, 9), np.zeros(4, dtype=bool), zeros[:4])
    #   read 6: L2 evicts 4 (clean); L1 evicts dirty 4 -> L2 miss, evicts dirty 2 -> DRAM.
    #   read 7: L2 evicts 5 (clean); L1 evicts dirty 5 -> L2 miss, evicts dirty 3 -> DRAM.
    #   read 8: L2 evicts 6 (clean); L1 evicts 6 (clean).
    #   read 9: L2 evicts 4 (dirty) -> DRAM; L1 evicts 7 (clean).
    assert out.dram_writebacks.tolist() == [1, 1, 0, 1]
    assert out.served_level.tolist() == [2, 2, 2, 2]


_SHRINKING = (_geo("L1", 1024, 128, 2), _geo("L2", 4096, 64, 4))
_PRIVATE_BELOW_SHARED = (_geo("L2", 1024, 64, 2), _geo("L3", 4096, 64, 4, shared=False))


@pytest.mark.parametrize(
    "make, match",
    [
        pytest.param(lambda: _geo("L1", 1024, 48, 2), "'L1'.*power of two", id="line_not_pow2"),
        pytest.param(lambda: _geo("L2", 1000, 64, 2), "'L2'.*multiple", id="size_not_multiple"),
        pytest.param(lambda: _geo("L3", 1024, 64, 0), "'L3'.*ways", id="zero_ways"),
        pytest.param(lambda: CacheHierarchy(_SHRINKING, 1), "'L2'.*shrink", id="line_shrinks"),
        pytest.param(
            lambda: CacheHierarchy(_PRIVATE_BELOW_SHARED, 2), "'L3'.*private", id="private_low"
        ),
    ],
)
def test_geometry_errors_name_the_level(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_raise_value_error():
    model = CacheHierarchy(TWO_LEVELS, 2)
    a = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="equal lengths"):
        model.access(a, np.zeros(2, dtype=bool), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="core id 2 out of range"):
        model.access(a, np.zeros(3, dtype=bool), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="core id -1 out of range"):
        model.access(a, np.zeros(3, dtype=bool), np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="address -64 out of range"):
        model.access(np.array([0, -64, 8]), np.zeros(3, dtype=bool), np.zeros(3, np.int64))


_POLICIES = [Replacement.RANDOM, Replacement.BIP, Replacement.DIP]


@pytest.mark.parametrize("policy", _POLICIES, ids=lambda p: p.value)
def test_policies_match_reference_in_a_hierarchy(policy):
    # Private L1/L2 stay LRU-free too: every level uses the policy (3 ways: padding; 5 sets: modulo).
    levels = (
        _geo("L1", 192, 64, 3, shared=False, replacement=policy),
        _geo("L2", 960, 64, 3, shared=False, replacement=policy),
        _geo("L3", 8 * KIB, 128, 8, replacement=policy),
    )
    rng = np.random.default_rng(11)
    a, w, c = _random_trace(rng, 6000, 24 * KIB, cores=2, write_p=0.4)
    model = _compare(levels, 2, a, w, c, chunks=3)
    assert model.access(a, w, c).dram_writebacks.sum() > 0


def _loop(lines, repeats, line_bytes=64):
    a = np.tile(np.arange(lines, dtype=np.int64) * line_bytes, repeats)
    return a, np.zeros(len(a), dtype=bool), np.zeros(len(a), dtype=np.int64)


@pytest.mark.parametrize("policy", _POLICIES, ids=lambda p: p.value)
def test_policies_match_reference_through_phase_changes(policy):
    # 128 sets x 4 ways: two leader pairs. A loop 1.5x the cache thrashes LRU, so the LRU leaders
    # miss more and the followers switch to BIP; then a loop that fits must switch them back.
    geo = _geo("LLC", 128 * 4 * 64, 64, 4, replacement=policy)
    big = _loop(128 * 6, 6)
    small = _loop(128 * 3, 6, line_bytes=64)
    small = (small[0] + (1 << 20),) + small[1:]
    a, w, c = (np.concatenate(parts) for parts in zip(big, small, big))
    _compare((geo,), 1, a, w, c, chunks=4)


def _hit_share(policy, lines, ways=16, sets=64, repeats=20):
    model = CacheHierarchy((_geo("LLC", sets * ways * 64, 64, ways, replacement=policy),), 1)
    a, w, c = _loop(lines, repeats)
    served = model.access(a, w, c).served_level
    return float((served[lines * 2:] == 0).mean())


def test_thrashing_loop_lru_misses_all_bip_and_dip_keep_most():
    capacity = 64 * 16
    lines = capacity * 5 // 4          # a loop 25% larger than the cache
    assert _hit_share(Replacement.LRU, lines) == 0.0
    assert _hit_share(Replacement.BIP, lines) > 0.6
    assert _hit_share(Replacement.DIP, lines) > 0.6
    # random keeps a share too, less than BIP's (which keeps a fixed part of the loop resident)
    assert 0.3 < _hit_share(Replacement.RANDOM, lines) < _hit_share(Replacement.BIP, lines)


def test_every_policy_keeps_a_loop_that_fits():
    for policy in Replacement:
        assert _hit_share(policy, 64 * 16) == 1.0, policy


def test_dip_follows_lru_when_the_working_set_moves():
    # Working sets that fit, each looped a few times then abandoned: BIP is slow to take in a
    # new set (one fill in 32 goes to MRU); DIP's duel keeps the followers on LRU.
    geo = lambda p: _geo("LLC", 64 * 8 * 64, 64, 8, replacement=p)  # noqa: E731
    phases = [np.tile((np.arange(400, dtype=np.int64) + 1000 * k) * 64, 4) for k in range(6)]
    a = np.concatenate(phases)
    w, c = np.zeros(len(a), dtype=bool), np.zeros(len(a), dtype=np.int64)
    hits = {p: (CacheHierarchy((geo(p),), 1).access(a, w, c).served_level == 0).mean()
            for p in (Replacement.LRU, Replacement.BIP, Replacement.DIP)}
    assert hits[Replacement.LRU] > hits[Replacement.BIP] + 0.3
    assert hits[Replacement.DIP] > hits[Replacement.LRU] - 0.1   # the leader sets' price
    assert hits[Replacement.DIP] > hits[Replacement.BIP] + 0.3


# --- write allocation without a fetch, and levels that pass streams by ------------------------------

def _policy_geo(name, size, line, ways, shared=True, fetch=True, streams=True, replacement=Replacement.LRU):
    allocate = WriteAllocate.FETCH if fetch else WriteAllocate.NO_FETCH
    return CacheGeometry(name, size, line, ways, shared, replacement, allocate, streams)


def _random_hints(rng, is_write):
    """Streams and gathers at random; a third of the stores (only stores) overwrite whole sectors."""
    hints = np.where(rng.random(is_write.size) < 0.6, HINT_STREAM, 0).astype(np.uint8)
    return hints | np.where(is_write & (rng.random(is_write.size) < 0.7), HINT_OVERWRITE, 0).astype(np.uint8)


_POLICY_MIXES = {
    "gpu": (dict(fetch=False, streams=False), dict(fetch=False)),       # Kepler-like L1, sectored L2
    "l2-no-fetch": (dict(), dict(fetch=False)),
    "l1-no-fetch": (dict(fetch=False), dict()),
    "middle-passes": (dict(), dict(streams=False), dict(fetch=False)),
    "top-two-pass": (dict(streams=False), dict(streams=False, fetch=False), dict()),
}


@pytest.mark.parametrize("mix", list(_POLICY_MIXES), ids=list(_POLICY_MIXES))
@pytest.mark.parametrize("replacement", [Replacement.LRU, Replacement.RANDOM, Replacement.DIP], ids=lambda p: p.value)
def test_write_allocation_and_stream_bypass_match_reference(mix, replacement):
    shapes = [("L1", 512, 64, 2, False), ("L2", 2 * KIB, 64, 4, False), ("L3", 8 * KIB, 128, 8, True)]
    flags = _POLICY_MIXES[mix]
    shapes = shapes[-len(flags):] if len(flags) == 2 else shapes
    levels = tuple(_policy_geo(n, size, line, ways, shared, replacement=replacement, **f)
                   for (n, size, line, ways, shared), f in zip(shapes, flags))
    rng = np.random.default_rng(len(mix))
    a, w, c = _random_trace(rng, 6000, 32 * KIB, cores=2, write_p=0.4)
    hints = _random_hints(rng, w)
    model = _compare(levels, 2, a, w, c, chunks=3, hints=hints)
    out = model.access(a, w, c, hints=hints)
    assert out.dram_writebacks.sum() > 0


def test_no_fetch_store_reads_nothing_from_below():
    # one level, no-fetch: a whole-sector store that misses is served by the level itself
    levels = (_policy_geo("L2", 256, 64, 4, fetch=False),)
    lines = np.arange(8, dtype=np.int64) * 64
    stores, zeros = np.ones(8, bool), np.zeros(8, np.int64)
    model = CacheHierarchy(levels, 1)
    out = model.access(lines, stores, zeros, hints=np.full(8, HINT_STREAM | HINT_OVERWRITE, np.uint8))
    assert out.served_level.tolist() == [0] * 8          # no DRAM reads
    assert out.dram_writebacks.tolist() == [0] * 4 + [1] * 4   # the first four leave dirty
    # a store that must merge with the old data (no overwrite hint) still reads the line
    fetching = CacheHierarchy(levels, 1).access(lines, stores, zeros, hints=np.full(8, HINT_STREAM, np.uint8))
    assert fetching.served_level.tolist() == [1] * 8
    # and a fetch level reads the line for a whole-sector store too (read for ownership)
    cpu = CacheHierarchy((_policy_geo("L2", 256, 64, 4),), 1)
    assert cpu.access(lines, stores, zeros, hints=np.full(8, HINT_OVERWRITE, np.uint8)).served_level.tolist() == [1] * 8


def test_streams_pass_a_level_that_keeps_only_gathers():
    levels = (_policy_geo("L1", 256, 64, 4, shared=False, streams=False), _policy_geo("L2", 1024, 64, 4))
    model = CacheHierarchy(levels, 1)
    lines = np.tile(np.arange(4, dtype=np.int64) * 64, 2)
    reads, zeros = np.zeros(8, bool), np.zeros(8, np.int64)
    streamed = model.access(lines, reads, zeros, hints=np.full(8, HINT_STREAM, np.uint8)).served_level
    assert streamed.tolist() == [2] * 4 + [1] * 4        # the second pass hits L2, never L1
    gathered = model.access(lines, reads, zeros).served_level
    assert gathered.tolist() == [1] * 4 + [0] * 4        # gathers are kept in L1


def test_streams_passing_every_level_are_served_below():
    model = CacheHierarchy((_policy_geo("L1", 256, 64, 4, streams=False),), 1)
    lines = np.tile(np.arange(4, dtype=np.int64) * 64, 2)
    out = model.access(lines, np.arange(8) % 2 == 0, np.zeros(8, np.int64), hints=np.full(8, HINT_STREAM, np.uint8))
    assert out.served_level.tolist() == [1] * 8 and out.dram_writebacks.sum() == 0


def test_policy_types_are_checked():
    with pytest.raises(ValueError, match="write_allocate"):
        CacheGeometry("L1", 256, 64, 4, True, Replacement.LRU, "no-fetch")
    with pytest.raises(ValueError, match="caches_streams"):
        CacheGeometry("L1", 256, 64, 4, True, Replacement.LRU, WriteAllocate.FETCH, "no")


def test_bad_hints_raise_value_error():
    model = CacheHierarchy(TWO_LEVELS, 1)
    a = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="hints"):
        model.access(a, np.zeros(3, bool), np.zeros(3, np.int64), hints=np.zeros(2, np.uint8))


@pytest.mark.parametrize("below", [0, 1], ids=["level-1-last", "level-2-below"])
@pytest.mark.parametrize("replacement", [Replacement.LRU, Replacement.RANDOM, Replacement.BIP], ids=lambda p: p.value)
def test_level_one_inlined_path_matches_reference(below, replacement):
    """The compiled loop looks level 1 up with its parameters in locals (where streams passing level 0
    and level-0 misses go): a private level 1 of 5 sets (modulo) and 3 ways, no-fetch, with and without
    a level below it, against the reference on random hinted traces over several calls."""
    levels = (_policy_geo("L1", 256, 64, 2, shared=False, streams=False, replacement=replacement),
              _policy_geo("L2", 960, 64, 3, shared=False, fetch=False, replacement=replacement),
              _policy_geo("L3", 4 * KIB, 128, 4, replacement=replacement))[: 2 + below]
    assert levels[1].sets == 5
    rng = np.random.default_rng(11 + below)
    a, w, c = _random_trace(rng, 5000, 16 * KIB, cores=3, write_p=0.4)
    hints = _random_hints(rng, w)
    out = _compare(levels, 3, a, w, c, chunks=4, hints=hints).access(a, w, c, hints=hints)
    assert set(np.unique(out.served_level)) == set(range(len(levels) + 1))   # every level served some
