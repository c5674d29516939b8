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


# --- encode_variant: the formats a run times, pruned to their structure --------------------------------

from dataclasses import replace  # noqa: E402

from simulator.base.errors import OptionError  # noqa: E402
from simulator.compress import compression  # noqa: E402
from simulator.compress.compression import StorageFormat, block_mask, encode_variant  # noqa: E402
from simulator.compress.variants import parse_variant  # noqa: E402
from simulator.model import seeded  # noqa: E402
from simulator.model.workload import load_workload  # noqa: E402


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(path))
    return path


def fc_workload(write_yaml, rows=32, cols=64, density=0.2, conv=False):
    layer = {"name": "fc", "kind": "fc", "in_features": cols, "out_features": rows, "density": density}
    shape = [cols]
    if conv:   # 8 input channels x 3 x 3 = 72 columns
        layer = {"name": "fc", "kind": "conv", "in_channels": 8, "out_channels": rows, "kernel": 3, "padding": 1,
                 "density": density}
        shape = [8, 6, 6]
    return load_workload(write_yaml("w.yaml", {"schema_version": 1, "name": "w", "source": "tests",
                                               "input_shape": shape, "layers": [layer]}))


def _counts(enc):
    return ByteCounts(enc.values_bytes, enc.index_bytes, enc.pointer_bytes, enc.table_bytes)


def test_variant_bytes_equal_the_format_encoders(cache_dir, write_yaml):
    w = fc_workload(write_yaml)
    layer = w.layers[0]
    weights = seeded.synthetic_weight_array(layer, 0)
    pruned = np.where(seeded.pruned_mask(layer, 0), weights, 0)
    bitmask = encode_variant(w, parse_variant("bitmask"))["fc"]
    assert _counts(bitmask) == encode_bitmask(pruned).byte_counts()
    int8 = encode_variant(w, parse_variant("bitmask@int8"))["fc"]
    assert _counts(int8) == encode_bitmask(pruned, ValueBits.B8).byte_counts()       # one float32 scale
    eie = encode_variant(w, parse_variant("eie"))["fc"]
    reference = encode_eie(pruned, 64, 4, ValueBits.B32, pointer_bits=None)
    assert _counts(eie) == reference.byte_counts() and eie.padding == reference.padding
    eie3 = encode_variant(w, parse_variant("eie3@fp16"))["fc"]
    assert _counts(eie3) == encode_eie(pruned, 64, 3, ValueBits.B16, pointer_bits=None).byte_counts()
    nm = encode_variant(w, parse_variant("2:4"))["fc"]
    assert _counts(nm) == encode_nm(np.where(nm_mask(weights, 2, 4), weights, 0), 2, 4).byte_counts()
    bsr = encode_variant(w, parse_variant("bsr4x8@fp16"))["fc"]
    kept = np.repeat(np.repeat(block_mask(np.abs(weights), (4, 8), 0.2), 4, axis=0), 8, axis=1)
    reference = encode_bsr(np.where(kept, weights, 0), (4, 8), ValueBits.B16, bsr.index_bits, bsr.pointer_bits)
    assert _counts(bsr) == reference.byte_counts()
    assert np.array_equal(bsr.indices, reference.indices) and np.array_equal(bsr.pointers, reference.pointers)
    assert (bsr.index_bits, bsr.pointer_bits) == (16, 16)     # 8 block columns, 16 blocks


def test_weight_only_types_count_a_scale_per_group(cache_dir, write_yaml):
    w = fc_workload(write_yaml, rows=32, cols=256)
    dense = encode_variant(w, parse_variant("dense@w4"))["fc"]
    assert dense.values_bytes == 32 * 256 // 2
    assert dense.table_bytes == 32 * 2 * 2             # 2 groups of 128 per row, an fp16 scale each
    csr = encode_variant(w, parse_variant("csr@w8"))["fc"]
    assert csr.values_bytes == csr.nnz and csr.table_bytes == 32 * 2 * 2


def test_nm_keeps_n_of_m_whatever_the_workload_density(cache_dir, write_yaml):
    for density in (1.0, 0.1):
        enc = encode_variant(fc_workload(write_yaml, density=density), parse_variant("1:4"))["fc"]
        assert enc.format is StorageFormat.NM and enc.density == 0.25 and enc.padding == 0
        assert enc.index_bytes == 32 * 16 * 2 // 8            # a 2-bit position per kept value


def test_nm_of_a_mask_encodes_the_zeros_the_model_has(cache_dir, write_yaml):
    w = fc_workload(write_yaml, rows=2, cols=8, density=1.0)
    mask = np.array([[1, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0, 0]], bool)
    enc = encode_variant(replace(w, weight_masks={"fc": mask}), parse_variant("2:4"))["fc"]
    assert (enc.nnz, enc.stored, enc.padding) == (3, 8, 5)    # a group with 3 keeps 2; zeros pad to 2 per group


def test_bsr_keeps_the_blocks_of_largest_norm():
    magnitude = np.array([[1, 1, 9, 0], [1, 1, 0, 0], [3, 3, 0, 1], [3, 3, 0, 0]], np.float32)
    assert block_mask(magnitude, (2, 2), 0.5).tolist() == [[False, True], [True, False]]   # L1 9 and 12


def test_bsr_reaches_the_layer_density_in_whole_blocks(cache_dir, write_yaml):
    enc = encode_variant(fc_workload(write_yaml, density=0.25), parse_variant("bsr4x4"))["fc"]
    assert enc.indices.size == round(0.25 * 8 * 16) and enc.density == 0.25 and enc.padding == 0
    magnitude = np.abs(seeded.synthetic_weight_array(fc_workload(write_yaml).layers[0], 0))
    norms = magnitude.reshape(8, 4, 16, 4).sum(axis=(1, 3))
    kept = np.zeros((8, 16), bool)
    kept[np.repeat(np.arange(8), np.diff(enc.pointers)), enc.indices] = True
    assert norms[kept].min() >= norms[~kept].max()


def test_bsr_of_a_mask_stores_every_block_holding_a_non_zero(cache_dir, write_yaml):
    w = fc_workload(write_yaml, rows=4, cols=8, density=1.0)
    mask = np.zeros((4, 8), bool)
    mask[0, 0] = mask[3, 7] = mask[2, 6] = True
    enc = encode_variant(replace(w, weight_masks={"fc": mask}), parse_variant("bsr2x2"))["fc"]
    assert enc.indices.tolist() == [0, 3] and enc.pointers.tolist() == [0, 1, 2]
    assert (enc.nnz, enc.stored) == (3, 8)


@pytest.mark.parametrize("spec, words", [("bsr3x4", "3 x 4 blocks"), ("bsr4x5", "4 x 5 blocks")])
def test_a_block_that_does_not_divide_the_layer_is_refused_in_one_line(cache_dir, write_yaml, spec, words):
    with pytest.raises(OptionError, match=words) as err:
        encode_variant(fc_workload(write_yaml), parse_variant(spec))
    assert err.value.option == "format" and spec in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("spec", ["bitmask", "eie", "csc"])
def test_fc_only_formats_refuse_a_pruned_convolution(cache_dir, write_yaml, spec):
    with pytest.raises(OptionError, match="FC layers only"):
        encode_variant(fc_workload(write_yaml, conv=True), parse_variant(spec))
    assert encode_variant(fc_workload(write_yaml, conv=True, density=1.0), parse_variant(spec))["fc"].format \
        is StorageFormat.DENSE


def test_format_encodings_are_cached_by_structure(cache_dir, write_yaml, monkeypatch):
    w = fc_workload(write_yaml)
    calls = []
    original = seeded.synthetic_weight_array
    monkeypatch.setattr(seeded, "synthetic_weight_array", lambda *a: calls.append(a) or original(*a))
    first = encode_variant(w, parse_variant("bsr4x4"))["fc"]
    again = encode_variant(w, parse_variant("bsr4x4@fp16"))["fc"]     # the precision does not change the arrays
    assert len(calls) == 1 and np.array_equal(first.indices, again.indices) and again.value_bits == 16
    encode_variant(w, parse_variant("bsr2x2"))
    eie = encode_variant(w, parse_variant("eie"))["fc"]
    assert len(calls) == 3
    assert _counts(encode_variant(w, parse_variant("eie"))["fc"]) == _counts(eie) and len(calls) == 3
    assert len(list(cache_dir.glob("*.npz"))) == 3


def test_a_library_with_wider_indices_stores_them_wider(cache_dir, write_yaml):
    csr = encode_variant(fc_workload(write_yaml), parse_variant("csr"))["fc"]
    assert csr.index_bits == 16 and csr.with_index_bits(32).index_bytes == 2 * csr.index_bytes
    fixed = compression.encode_variant(fc_workload(write_yaml), parse_variant("csr"), index_bits=32)["fc"]
    assert fixed.index_bits == 32
