"""Miss-ratio curves and the level filter, checked against the cache model itself.

Exactness is the claim of simulator.memory.mrc, so every test compares with
:class:`simulator.memory.cache.CacheHierarchy` (itself checked against a plain reference in
test_cache.py) on random, strided and real CSR-gather traces: per-access outcomes where the
swept level is the last, hit counts at every size where it is not.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.compress.compression import StorageFormat, encode_mask
from simulator.memory.cache import CacheGeometry, CacheHierarchy
from simulator.memory.mrc import (
    Associativity,
    LevelFilter,
    LruStacks,
    fully_associative_distances,
    level_outcome,
    level_stream,
    miss_ratio_curve,
)
from simulator.memory.traffic import AddressSpace, CoreView, layer_traffic
from simulator.model.workload import load_workload

KIB = 1024


def _geo(name, size, line, ways, shared=True):
    return CacheGeometry(name, size, line, ways, shared)


def _random(n=3000, span=32 * KIB, cores=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, span, n), rng.random(n) < 0.3, rng.integers(0, cores, n)


def _strided(n=2000, cores=1):
    a = (np.arange(n, dtype=np.int64) % 48) * 64 * 16 + 8     # 48 lines that collide in few sets
    return a, np.arange(n) % 3 == 0, np.arange(n) % cores


def _csr_gather(tiny_workload_path, line=64):
    """The trace of a real CSR SpMV kernel: the tiny workload's fc1 at 10% density."""
    layer = load_workload(tiny_workload_path).layer("fc1")
    rows, cols = layer.weight_matrix_shape
    mask = np.random.default_rng(3).random((rows, cols)) < 0.1
    enc = encode_mask("fc1", mask, StorageFormat.CSR, 4)
    view = CoreView(cores=2, line_bytes=line, first_level_bytes=KIB, last_private_bytes=KIB)
    t = layer_traffic(layer, "input", enc, 1, AddressSpace(), view)
    return t.addresses, t.is_write, t.core.astype(np.int64)


HIERARCHIES = {
    "one level": [_geo("L1", 2 * KIB, 64, 4)],
    "two levels": [_geo("L1", 1 * KIB, 64, 2, shared=False), _geo("L2", 4 * KIB, 64, 4)],
    "three levels, growing lines": [_geo("L1", 1 * KIB, 64, 2, shared=False), _geo("L2", 6 * KIB, 128, 4),
                                    _geo("L3", 16 * KIB, 128, 8)],
    "all private": [_geo("L1", 1 * KIB, 64, 2, shared=False), _geo("L2", 4 * KIB, 64, 4, shared=False)],
}


def _traces(tiny_workload_path):
    return {"random": _random(cores=2), "strided": _strided(cores=2), "csr-gather": _csr_gather(tiny_workload_path)}


@pytest.mark.parametrize("hierarchy", list(HIERARCHIES))
def test_last_level_outcome_equals_cache_model(hierarchy, tiny_workload_path):
    levels = HIERARCHIES[hierarchy]
    for name, (a, w, c) in _traces(tiny_workload_path).items():
        expected = CacheHierarchy(levels, 2).access(a, w, c)
        got = level_outcome(level_stream(levels, 2, len(levels) - 1, a, w, c), levels[-1], 2)
        np.testing.assert_array_equal(got.served_level, expected.served_level, err_msg=name)
        np.testing.assert_array_equal(got.dram_writebacks, expected.dram_writebacks, err_msg=name)
        assert got.dram_writebacks.dtype == np.uint8 and got.served_level.dtype == np.int8


def test_outcome_is_exact_for_other_last_level_sizes_from_one_stream():
    # The stream reaching L2 does not depend on L2: one stream, every size of L2.
    a, w, c = _random(n=5000, span=64 * KIB)
    l1 = _geo("L1", 1 * KIB, 64, 2)
    stream = level_stream([l1, _geo("L2", 4 * KIB, 64, 4)], 1, 1, a, w, c)
    for size in (2 * KIB, 3 * KIB, 8 * KIB, 20 * KIB):     # 3 and 20 KiB: set counts not powers of two
        l2 = _geo("L2", size, 64, 4)
        expected = CacheHierarchy([l1, l2], 1).access(a, w, c)
        got = level_outcome(stream, l2, 1)
        np.testing.assert_array_equal(got.served_level, expected.served_level)
        np.testing.assert_array_equal(got.dram_writebacks, expected.dram_writebacks)


def test_state_carries_over_calls_like_the_cache_model():
    levels = HIERARCHIES["two levels"]
    a, w, c = _random(n=3000, cores=2, seed=5)
    model = CacheHierarchy(levels, 2)
    level_filter = LevelFilter(levels, 2, 1)
    stacks = LruStacks(levels[1].sets, 1, levels[1].ways, (levels[1].ways,))
    for part in np.array_split(np.arange(a.size), 4):
        expected = model.access(a[part], w[part], c[part])
        got = level_outcome(level_filter.run(a[part], w[part], c[part]), levels[1], 2, stacks)
        np.testing.assert_array_equal(got.served_level, expected.served_level)
        np.testing.assert_array_equal(got.dram_writebacks, expected.dram_writebacks)


def test_filter_snapshots_restore_and_compare():
    levels = HIERARCHIES["two levels"]
    a, w, c = _random(n=500, cores=2)
    level_filter = LevelFilter(levels, 2, 1)
    cold = level_filter.snapshot()
    first = level_filter.run(a, w, c)
    after = level_filter.snapshot()
    assert not level_filter.same_state(cold)
    level_filter.restore(cold)
    again = level_filter.run(a, w, c)
    assert level_filter.same_state(after)
    np.testing.assert_array_equal(first.line, again.line)
    np.testing.assert_array_equal(first.served_above, again.served_above)


@pytest.mark.parametrize("hierarchy", list(HIERARCHIES))
def test_curve_hits_equal_the_cache_model_at_every_size(hierarchy, tiny_workload_path):
    levels = HIERARCHIES[hierarchy]
    for name, (a, w, c) in _traces(tiny_workload_path).items():
        for index, level in enumerate(levels):
            curve = miss_ratio_curve(level_stream(levels, 2, index, a, w, c), level, 2)
            assert curve.of(Associativity.SET_ASSOCIATIVE) and curve.of(Associativity.FULLY_ASSOCIATIVE)
            for point in curve.points:
                resized = list(levels)
                resized[index] = _geo(level.name, point.size_bytes, level.line_bytes, point.ways, level.shared)
                served = CacheHierarchy(resized, 2).access(a, w, c).served_level
                assert point.hits == int(np.count_nonzero(served == index)), (name, level.name, point)
                assert point.references == int(np.count_nonzero(served >= index))


def test_stack_distances_by_hand():
    # one set, references A B C A B D A: distances - - - 2 2 - 2
    stacks = LruStacks(sets=1, instances=1, depth=8)
    distance, _ = stacks.run(np.array([1, 2, 3, 1, 2, 4, 1]), None, np.zeros(7, bool))
    assert distance.tolist() == [8, 8, 8, 2, 2, 8, 2]
    fa = fully_associative_distances(np.array([1, 2, 3, 1, 2, 4, 1]))
    assert fa.tolist() == [-1, -1, -1, 2, 2, -1, 2]


def test_fully_associative_distances_per_instance_are_independent():
    line = np.array([1, 1, 2, 1, 2])
    core = np.array([0, 1, 0, 1, 0])
    # core 0 sees 1 2 2 -> -, -, 0; core 1 sees 1 1 -> -, 0
    assert fully_associative_distances(line, core).tolist() == [-1, -1, -1, 0, 0]


def test_dirty_evictions_by_hand():
    # 2-way set: write A, read B, read C evicts A (dirty); then A comes back clean
    stacks = LruStacks(sets=1, instances=1, depth=3, writeback_ways=(1, 2, 3))
    lines = np.array([10, 11, 12, 10, 13, 14])
    dirtying = np.array([True, False, False, False, False, False])
    distance, evicted = stacks.run(lines, None, dirtying)
    assert distance.tolist() == [3, 3, 3, 2, 3, 3]
    # 1 way: B evicts dirty A. 2 ways: C evicts dirty A. 3 ways: A hits (still dirty), then
    # D and E push B and C out (clean), never A until the end.
    assert evicted[0].tolist() == [False, True, False, False, False, False]
    assert evicted[1].tolist() == [False, False, True, False, False, False]
    assert evicted[2].tolist() == [False] * 6


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="level"):
        LevelFilter(HIERARCHIES["two levels"], 1, 2)
    with pytest.raises(ValueError, match="writeback_ways"):
        LruStacks(4, 1, 2, (3,))
    with pytest.raises(ValueError, match="instances"):
        LruStacks(4, 2, 2).run(np.array([1]), None, np.array([False]))


@pytest.mark.parametrize("policy", ["random", "bip", "dip"])
def test_levels_above_may_use_any_policy_the_level_itself_must_be_lru(policy, tiny_workload_path):
    from simulator.memory.cache import Replacement

    above = CacheGeometry("L1", 1024, 64, 2, False, Replacement(policy))
    lru = _geo("L2", 4 * KIB, 64, 4)
    for name, (a, w, c) in _traces(tiny_workload_path).items():
        expected = CacheHierarchy((above, lru), 2).access(a, w, c)
        got = level_outcome(level_stream((above, lru), 2, 1, a, w, c), lru, 2)
        np.testing.assert_array_equal(got.served_level, expected.served_level, err_msg=name)
        np.testing.assert_array_equal(got.dram_writebacks, expected.dram_writebacks, err_msg=name)
    stream = level_stream((above, lru), 2, 1, a, w, c)
    with pytest.raises(ValueError, match=f"'L1' uses {policy}; stack distances model LRU levels only"):
        miss_ratio_curve(level_stream((lru, above), 2, 1, a, w, c), above, 2)
    with pytest.raises(ValueError, match=f"'L1' uses {policy}"):
        level_outcome(stream, above, 2)


def test_equivalent_states_compare_equal_whatever_the_clock():
    # Two histories that leave the same lines in the same recency order (LRU) are the same state,
    # though their stamps differ; a different order is not.
    levels = HIERARCHIES["two levels"]
    a = np.array([0, 512, 1024, 0, 512], dtype=np.int64)     # one set of L1 (8 sets, 2 ways)
    zeros = np.zeros(a.size, np.int64)
    first = LevelFilter(levels, 1, 1)
    first.run(a, np.zeros(a.size, bool), zeros)
    second = LevelFilter(levels, 1, 1)
    second.run(np.concatenate([a, a[3:]]), np.zeros(a.size + 2, bool), np.zeros(a.size + 2, np.int64))
    assert second.same_state(first.snapshot())
    second.run(np.array([0], dtype=np.int64), np.zeros(1, bool), np.zeros(1, np.int64))
    assert not second.same_state(first.snapshot())
