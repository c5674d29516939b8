"""EIE, bitmask, BSR and N:M formats: byte counts against hand counts on small matrices, the
real arrays, and exact round trips at every value precision."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.compress.formats import (
    ByteCounts,
    ValueBits,
    encode_bitmask,
    encode_bsr,
    encode_eie,
    encode_nm,
    kmeans_codebook,
    nm_mask,
    quantise,
)


@pytest.fixture(scope="module")
def pruned():
    """A 50 x 37 matrix at 15% density with distinct random values."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, 37)).astype(np.float32)
    w[rng.random(w.shape) < 0.85] = 0
    return w


# --- EIE ------------------------------------------------------------------------------------------

def eie_column_matrix():
    """40 x 2, one PE: column 0 has rows 0 and 37 (36 zeros between: two padding entries),
    column 1 has rows 15 (15 zeros before: no padding) and 39 (23 zeros: one padding entry)."""
    w = np.zeros((40, 2), np.float32)
    w[0, 0], w[37, 0], w[15, 1], w[39, 1] = 1.0, 2.0, 3.0, -1.0
    return w


def test_eie_relative_indices_and_padding_by_hand():
    enc = encode_eie(eie_column_matrix(), pes=1, code_bits=4, value_bits=ValueBits.B16)
    # codebook: code 0 = zero, then the sorted distinct values (4 <= 15, so k-means is exact)
    assert enc.codebook.tolist() == [0.0, -1.0, 1.0, 2.0, 3.0]
    assert enc.z[0].tolist() == [0, 15, 15, 4, 15, 15, 7]
    assert enc.v[0].tolist() == [2, 0, 0, 3, 4, 0, 1]
    assert enc.pointers[0].tolist() == [0, 4, 7]
    assert enc.entries == 7 and enc.padding == 3
    # v: 7 x 4 bits -> 4 B; z: 7 x 4 bits -> 4 B; pointers: 1 PE x 3 x 16 bits; codebook: 4 x 16 bits
    assert enc.byte_counts() == ByteCounts(values_bytes=4, index_bytes=4, pointer_bytes=6, table_bytes=8)
    assert enc.byte_counts().total_bytes == 22
    assert np.array_equal(enc.decode(), eie_column_matrix())


def test_eie_interleaves_rows_over_pes_by_hand():
    w = np.array([[1, 0, 0],
                  [0, 2, 0],
                  [0, 0, 3],
                  [5, 0, 0]], np.float32)
    enc = encode_eie(w, pes=2, code_bits=4, value_bits=ValueBits.B16)
    # PE 0 holds rows 0 and 2 (local rows 0, 1); PE 1 holds rows 1 and 3
    assert enc.v[0].tolist() == [1, 3] and enc.z[0].tolist() == [0, 1] and enc.pointers[0].tolist() == [0, 1, 1, 2]
    assert enc.v[1].tolist() == [4, 2] and enc.z[1].tolist() == [1, 0] and enc.pointers[1].tolist() == [0, 1, 2, 2]
    # v: 2 PEs x 1 B; z: 2 x 1 B; pointers: 2 PEs x 4 x 2 B; codebook: 4 entries x 2 B
    assert enc.byte_counts().total_bytes == 2 + 2 + 16 + 8
    assert np.array_equal(enc.decode(), w)


def test_kmeans_weight_sharing_by_hand():
    values = np.array([-1.0, -0.9, 0.5, 0.55, 2.0, 2.1])
    # linear initialisation [-1, 0.55, 2.1]; one Lloyd step settles on the three pairs' means
    assert np.allclose(kmeans_codebook(values, 3), [-0.95, 0.525, 2.05])


@pytest.mark.parametrize("bits", list(ValueBits))
def test_eie_decodes_to_the_weight_shared_matrix(pruned, bits):
    enc = encode_eie(pruned, pes=4, code_bits=4, value_bits=bits)
    nonzero = pruned != 0
    centroids = kmeans_codebook(pruned[nonzero], 15)
    nearest = np.argmin(np.abs(pruned[nonzero][:, None] - centroids[None, :]), axis=1)
    shared = np.zeros_like(pruned)
    shared[nonzero] = quantise(centroids, bits)[nearest]
    assert np.array_equal(enc.decode(), shared)
    assert enc.entries - enc.padding == int(nonzero.sum())


def test_eie_is_exact_when_the_codebook_covers_every_value(pruned):
    few = np.round(pruned * 2) / 2      # at most 15 distinct non-zero values
    few[np.abs(few) > 3.5] = 0
    assert np.unique(few[few != 0]).size <= 15
    assert np.array_equal(encode_eie(few, pes=3, value_bits=ValueBits.B32).decode(), few)


def test_eie_pointers_are_16_bit():
    with pytest.raises(ValueError, match="16-bit pointers"):
        encode_eie(np.ones((300, 300), np.float32), pes=1)
    assert encode_eie(np.ones((300, 300), np.float32), pes=2).entries == 90_000


# --- bitmask ----------------------------------------------------------------------------------------

BITMASK = np.array([[0, 1.5, 0, 0, 0],
                    [0, 0, 0, -2, 0],
                    [3, 0, 0, 0, 0.25]], np.float32)


@pytest.mark.parametrize("bits, total", [(32, 2 + 16), (16, 2 + 8), (8, 2 + 4 + 4), (4, 2 + 2 + 4)])
def test_bitmask_bytes_by_hand(bits, total):
    enc = encode_bitmask(BITMASK, ValueBits(bits))
    assert enc.byte_counts().total_bytes == total       # 15 presence bits -> 2 B; 4 values; scale if int
    assert enc.bits.tolist() == [0x40, 0xA2]
    assert np.array_equal(enc.decode(), quantise(BITMASK, ValueBits(bits)))


def test_bitmask_values_in_row_major_order():
    assert encode_bitmask(BITMASK).values.tolist() == [1.5, -2.0, 3.0, 0.25]


# --- BSR --------------------------------------------------------------------------------------------

BSR = np.array([[0, 0, 0, 0, 1, 0],
                [0, 0, 0, 0, 0, 0],
                [2, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 3]], np.float32)


def test_bsr_by_hand():
    enc = encode_bsr(BSR, (2, 3))
    assert enc.indices.tolist() == [1, 0, 1] and enc.pointers.tolist() == [0, 1, 3]
    # 3 whole 2x3 blocks of float32, 3 int32 block columns, 3 int32 block-row pointers
    assert enc.byte_counts() == ByteCounts(values_bytes=72, index_bytes=12, pointer_bytes=12)
    assert encode_bsr(BSR, (2, 3), ValueBits.B16).byte_counts().total_bytes == 36 + 12 + 12
    assert np.array_equal(enc.decode(), BSR)


def test_bsr_pads_partial_blocks(pruned):
    enc = encode_bsr(pruned, (4, 3))      # 50 x 37 -> 13 x 13 blocks of 4 x 3
    assert enc.pointers.size == 14 and enc.values.size == enc.indices.size * 12
    assert np.array_equal(enc.decode(), pruned)


# --- N:M ----------------------------------------------------------------------------------------------

NM = np.array([[1, 0, 0, 2, 0, 0, 0, 0],
               [0, 3, 4, 0, 0, 5, 0, 0]], np.float32)


def test_nm_by_hand():
    enc = encode_nm(NM, 2, 4)
    assert enc.positions.tolist() == [[[0, 3], [0, 1]], [[1, 2], [0, 1]]]
    assert enc.values.tolist() == [[[1, 2], [0, 0]], [[3, 4], [0, 5]]]
    # 4 groups x 2 float32 values; 4 groups x 2 positions x 2 bits = 16 bits
    assert enc.byte_counts() == ByteCounts(values_bytes=32, index_bytes=2, pointer_bytes=0)
    assert encode_nm(NM, 2, 4, ValueBits.B8).byte_counts().total_bytes == 8 + 2 + 4
    assert np.array_equal(enc.decode(), NM)


def test_nm_refuses_a_group_with_too_many():
    dense = NM.copy()
    dense[1, 0] = 7
    with pytest.raises(ValueError, match="row 1, columns 0..3: 3 non-zeros, more than 2 of 4"):
        encode_nm(dense, 2, 4)


def test_nm_mask_keeps_the_largest_per_group():
    w = np.array([[0.1, -0.9, 0.5, 0.2, 3, 1, 2, -4]], np.float32)
    assert nm_mask(w, 2, 4).tolist() == [[False, True, True, False, True, False, False, True]]


# --- every format round-trips at every precision ------------------------------------------------------

@pytest.mark.parametrize("bits", list(ValueBits))
def test_round_trips(pruned, bits):
    assert np.array_equal(encode_bitmask(pruned, bits).decode(), quantise(pruned, bits))
    assert np.array_equal(encode_bsr(pruned, (4, 4), bits).decode(), quantise(pruned, bits))
    nm = pruned * nm_mask(pruned, 2, 4)
    assert np.array_equal(encode_nm(nm, 2, 4, bits).decode(), quantise(nm, bits))
    if bits is ValueBits.B32:
        assert np.array_equal(quantise(pruned, bits), pruned)


def test_conv_weights_are_flattened_to_the_kernel_matrix():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0
    enc = encode_bitmask(w)
    assert (enc.rows, enc.cols) == (8, 36)
    assert np.array_equal(enc.decode(), w.reshape(8, 36))
