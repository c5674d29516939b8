"""Magnitude pruning and sparse encodings: exact kept counts, the same kept set as torch,
hand-checked CSR / CSC arrays and byte counts, and the on-disk encoding cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

from simulator.compress.compression import (
    EncodedWeights,
    StorageFormat,
    compress_workload,
    dense_encoding,
    encode_mask,
    pruned_encoding,
)
from simulator.model import seeded
from simulator.model.weights import MagnitudePruning, magnitude_mask, synthetic_weights
from simulator.model.workload import DType, Layer, LayerKind, load_workload


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(path))
    return path


@pytest.fixture
def fc_layer():
    """A 16 x 32 FC layer (512 weights) at density 0.3."""
    return Layer(name="fc", kind=LayerKind.FC, module="fc", in_shape=(32,), out_shape=(16,),
                 dtype=DType.FP32, density=0.3)


@pytest.fixture
def mask():
    """3 x 4, five non-zeros:  [1 0 1 0] / [0 0 0 0] / [0 1 1 1]."""
    return np.array([[1, 0, 1, 0],
                     [0, 0, 0, 0],
                     [0, 1, 1, 1]], dtype=bool)


@pytest.fixture
def count_masks(monkeypatch):
    """Counts the calls of seeded.pruned_mask (i.e. encodings not served from the cache)."""
    calls = []
    original = seeded.pruned_mask

    def counting(layer, seed):
        calls.append(layer.density)
        return original(layer, seed)

    monkeypatch.setattr(seeded, "pruned_mask", counting)
    return calls


# --- MagnitudePruning --------------------------------------------------------------------------

@pytest.mark.parametrize("density", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_keeps_exactly_round_density_times_n(density):
    weights = torch.randn(7, 13, generator=torch.Generator().manual_seed(1))
    assert int(magnitude_mask(weights, density).sum()) == round(density * weights.numel())


def test_kept_weights_are_the_largest_in_magnitude():
    weights = torch.randn(10, 10, generator=torch.Generator().manual_seed(2))
    mask = magnitude_mask(weights, 0.2)
    magnitude = weights.abs()
    assert magnitude[mask].min() > magnitude[~mask].max()


@pytest.mark.parametrize("density", [0.1, 0.3, 0.75])
def test_same_kept_set_as_torch_l1_unstructured(density):
    weights = torch.randn(12, 9, generator=torch.Generator().manual_seed(3))
    keep = round(density * weights.numel())
    reference = torch.nn.Linear(9, 12, bias=False)
    with torch.no_grad():
        reference.weight.copy_(weights)
    prune.l1_unstructured(reference, "weight", amount=weights.numel() - keep)
    assert torch.equal(magnitude_mask(weights, density), reference.weight_mask.bool())


def test_mask_has_the_weight_shape_and_is_boolean():
    weights = torch.randn(4, 3, 2, 2)
    mask = magnitude_mask(weights, 0.5)
    assert mask.shape == weights.shape
    assert mask.dtype == torch.bool


def test_apply_adds_a_weight_mask():
    torch.manual_seed(0)
    module = torch.nn.Linear(8, 4)
    original = module.weight.detach().clone()
    MagnitudePruning.apply(module, "weight", 0.25)
    assert hasattr(module, "weight_mask")
    assert hasattr(module, "weight_orig")
    assert int(module.weight_mask.sum()) == 8
    assert torch.equal(module.weight_orig.detach(), original)
    assert torch.equal(module.weight.detach(), original * module.weight_mask)


def test_apply_can_be_made_permanent():
    module = torch.nn.Linear(8, 4)
    MagnitudePruning.apply(module, "weight", 0.5)
    prune.remove(module, "weight")
    assert not hasattr(module, "weight_mask")
    assert int((module.weight != 0).sum()) == 16


def test_ties_keep_the_exact_count():
    # 5 large, 10 equal middling, 5 small: keeping 10 takes the 5 large and 5 of the ties
    weights = torch.tensor([2.0] * 5 + [-0.5] * 10 + [0.1] * 5)
    mask = magnitude_mask(weights, 0.5)
    assert int(mask.sum()) == 10
    assert bool(mask[:5].all())
    assert int(mask[5:15].sum()) == 5
    assert not bool(mask[15:].any())


def test_all_equal_weights():
    mask = magnitude_mask(torch.ones(100), 0.37)
    assert int(mask.sum()) == 37


def test_density_too_small_to_keep_any():
    assert int(magnitude_mask(torch.randn(10), 0.01).sum()) == 0


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5])
def test_density_outside_zero_one_is_refused(density):
    with pytest.raises(ValueError, match="density"):
        MagnitudePruning(density)


# --- synthetic weights ----------------------------------------------------------------------------

def test_pruning_is_deterministic_for_a_seed(fc_layer):
    first = magnitude_mask(synthetic_weights(fc_layer, 0), fc_layer.density)
    second = magnitude_mask(synthetic_weights(fc_layer, 0), fc_layer.density)
    assert torch.equal(first, second)


def test_pruning_differs_between_seeds(fc_layer):
    first = magnitude_mask(synthetic_weights(fc_layer, 0), fc_layer.density)
    other = magnitude_mask(synthetic_weights(fc_layer, 1), fc_layer.density)
    assert int(first.sum()) == int(other.sum())
    assert not torch.equal(first, other)


def test_synthetic_weights_follow_torch_default_bound(fc_layer):
    weights = synthetic_weights(fc_layer, 0)
    assert weights.shape == (16, 32)
    assert float(weights.abs().max()) <= 1 / 32**0.5


# --- encodings ---------------------------------------------------------------------------------------

def test_csr_encoding_by_hand(mask):
    enc = encode_mask("m", mask, StorageFormat.CSR, 4)
    assert (enc.rows, enc.cols, enc.nnz) == (3, 4, 5)
    assert enc.pointers.tolist() == [0, 2, 2, 5]
    assert enc.indices.tolist() == [0, 2, 1, 2, 3]
    assert enc.values_bytes == 5 * 4
    assert enc.index_bytes == 5 * 2          # 4 columns: 16-bit indices (they follow the matrix)
    assert enc.pointer_bytes == (3 + 1) * 2  # 5 non-zeros: 16-bit pointers
    assert enc.total_bytes == 20 + 10 + 8
    wide = encode_mask("m", mask, StorageFormat.CSR, 4, index_bits=32)   # MKL / cuSPARSE
    assert (wide.index_bytes, wide.pointer_bytes) == (5 * 4, 4 * 4)
    assert (enc.with_index_bits(32).index_bytes, enc.with_index_bits(32).pointer_bytes) == (20, 16)


def test_index_widths_follow_the_matrix():
    narrow = np.zeros((2, 65536), bool)
    narrow[0, 65535] = True
    wide = np.zeros((2, 65537), bool)
    wide[1, 65536] = True
    assert encode_mask("m", narrow, StorageFormat.CSR, 4).index_bits == 16
    assert encode_mask("m", wide, StorageFormat.CSR, 4).index_bits == 32
    assert encode_mask("m", wide, StorageFormat.CSC, 4).index_bits == 16     # CSC indexes the 2 rows
    assert encode_mask("m", np.ones((2, 40000), bool), StorageFormat.CSR, 4).pointer_bits == 32   # 80000 > 65535


def test_csc_encoding_by_hand(mask):
    enc = encode_mask("m", mask, StorageFormat.CSC, 4)
    assert (enc.rows, enc.cols, enc.nnz) == (3, 4, 5)
    assert enc.pointers.tolist() == [0, 1, 2, 4, 5]
    assert enc.indices.tolist() == [0, 2, 0, 2, 2]
    assert enc.values_bytes == 5 * 4
    assert enc.index_bytes == 5 * 2
    assert enc.pointer_bytes == (4 + 1) * 2
    assert enc.total_bytes == 20 + 10 + 10


def test_encodings_agree_with_scipy(mask):
    sparse = pytest.importorskip("scipy.sparse")
    csr = encode_mask("m", mask, StorageFormat.CSR, 4)
    csc = encode_mask("m", mask, StorageFormat.CSC, 4)
    assert csr.indices.tolist() == sparse.csr_matrix(mask).indices.tolist()
    assert csc.pointers.tolist() == sparse.csc_matrix(mask).indptr.tolist()


def test_dense_encoding_has_no_index_bytes(mask):
    enc = encode_mask("m", mask, StorageFormat.DENSE, 4)
    assert enc.nnz == 12
    assert enc.indices is None and enc.pointers is None
    assert enc.index_bytes == 0
    assert enc.pointer_bytes == 0
    assert enc.total_bytes == enc.values_bytes == 12 * 4
    assert enc.density == 1.0


def test_conv_mask_flattens_to_outputs_by_reduction():
    mask = np.zeros((2, 3, 2, 2), dtype=bool)
    mask[1, 2, 1, 1] = True     # row 1, column 2*4 + 1*2 + 1 = 11
    enc = encode_mask("conv", mask, StorageFormat.CSR, 2)
    assert (enc.rows, enc.cols, enc.nnz) == (2, 12, 1)
    assert enc.indices.tolist() == [11]
    assert enc.values_bytes == 2


def test_encoded_density(mask):
    assert encode_mask("m", mask, StorageFormat.CSR, 4).density == pytest.approx(5 / 12)


def test_dense_encoding_of_a_layer(fc_layer):
    enc = dense_encoding(fc_layer)
    assert enc.format is StorageFormat.DENSE
    assert (enc.rows, enc.cols, enc.nnz) == (16, 32, 512)
    assert enc.total_bytes == 512 * 4


# --- pruned_encoding and its cache ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [StorageFormat.CSR, StorageFormat.CSC])
def test_pruned_encoding_reaches_the_layer_density(cache_dir, fc_layer, fmt):
    enc = pruned_encoding(fc_layer, fmt, seed=0)
    n = enc.rows * enc.cols
    assert (enc.rows, enc.cols) == (16, 32)
    assert abs(enc.density - fc_layer.density) <= 1 / n
    assert enc.nnz == len(enc.indices) == enc.pointers[-1]


def test_pruned_encoding_matches_the_pruned_mask(cache_dir, fc_layer):
    mask = magnitude_mask(synthetic_weights(fc_layer, 7), fc_layer.density).numpy()
    enc = pruned_encoding(fc_layer, StorageFormat.CSR, seed=7)
    expected = encode_mask("fc", mask, StorageFormat.CSR, 4)
    assert np.array_equal(enc.indices, expected.indices)
    assert np.array_equal(enc.pointers, expected.pointers)


def test_pruned_encoding_is_read_back_from_the_cache(cache_dir, fc_layer, count_masks):
    first = pruned_encoding(fc_layer, StorageFormat.CSR, seed=0)
    assert len(count_masks) == 1
    assert len(list(cache_dir.glob("*.npz"))) == 1
    second = pruned_encoding(fc_layer, StorageFormat.CSR, seed=0)
    assert len(count_masks) == 1            # served from disk, not pruned again
    assert isinstance(second, EncodedWeights)
    assert (second.layer, second.format, second.rows, second.cols, second.nnz) == \
        (first.layer, first.format, first.rows, first.cols, first.nnz)
    assert second.value_bytes_each == first.value_bytes_each
    assert np.array_equal(second.indices, first.indices)
    assert np.array_equal(second.pointers, first.pointers)


def test_cache_entries_differ_by_seed_and_format(cache_dir, fc_layer, count_masks):
    pruned_encoding(fc_layer, StorageFormat.CSR, seed=0)
    pruned_encoding(fc_layer, StorageFormat.CSR, seed=1)
    pruned_encoding(fc_layer, StorageFormat.CSC, seed=0)
    assert len(count_masks) == 3
    assert len(list(cache_dir.glob("*.npz"))) == 3


def test_damaged_cache_entry_is_rebuilt(cache_dir, fc_layer, count_masks):
    first = pruned_encoding(fc_layer, StorageFormat.CSR, seed=0)
    (entry,) = cache_dir.glob("*.npz")
    entry.write_bytes(b"not an npz file")
    again = pruned_encoding(fc_layer, StorageFormat.CSR, seed=0)
    assert len(count_masks) == 2
    assert np.array_equal(again.indices, first.indices)


def test_empty_cache_dir_setting_disables_the_cache(tmp_path, monkeypatch, fc_layer, count_masks):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    first = pruned_encoding(fc_layer, StorageFormat.CSR, seed=0)
    second = pruned_encoding(fc_layer, StorageFormat.CSR, seed=0)
    assert len(count_masks) == 2            # pruned both times
    assert np.array_equal(first.indices, second.indices)
    assert list(tmp_path.iterdir()) == []   # nothing written anywhere under tmp_path


def test_dense_format_needs_no_pruning(cache_dir, fc_layer, count_masks):
    enc = pruned_encoding(fc_layer, StorageFormat.DENSE, seed=0)
    assert enc.nnz == 512
    assert count_masks == []
    assert not cache_dir.exists()


def test_compress_workload_encodes_weighted_layers_only(cache_dir, tiny_workload_path):
    workload = load_workload(tiny_workload_path)
    encoded = compress_workload(workload, StorageFormat.CSR)
    assert list(encoded) == ["conv1", "fc1", "fc2"]
    for name, enc in encoded.items():
        layer = workload.layer(name)
        assert (enc.rows, enc.cols) == layer.weight_matrix_shape
        assert abs(enc.density - layer.density) <= 1 / (enc.rows * enc.cols)


def test_compress_workload_dense_is_unpruned(cache_dir, tiny_workload_path):
    encoded = compress_workload(load_workload(tiny_workload_path), StorageFormat.DENSE)
    assert all(enc.density == 1.0 and enc.index_bytes == 0 for enc in encoded.values())
    assert not cache_dir.exists()


def test_a_layer_with_nothing_pruned_is_stored_dense_in_a_sparse_format(tiny_workload_file, monkeypatch):
    from dataclasses import replace

    from simulator.compress.compression import is_pruned, prunes_anything, unsupported_sparse_layer

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    workload = load_workload(tiny_workload_file)
    layers = tuple(replace(l, density=1.0) if l.name == "fc2" else l for l in workload.layers)
    workload = replace(workload, layers=layers)
    encodings = compress_workload(workload, StorageFormat.CSR)
    assert encodings["fc2"].format is StorageFormat.DENSE and encodings["fc1"].format is StorageFormat.CSR
    assert encodings["fc2"].total_bytes == dense_encoding(workload.layers[3]).total_bytes
    # a mask decides for a checkpoint's layer: all ones is nothing pruned, one zero is pruned
    full = np.ones((10, 64), bool)
    assert not is_pruned(replace(workload, weight_masks={"fc2": full}), workload.layers[3])
    full[0, 0] = False
    assert is_pruned(replace(workload, weight_masks={"fc2": full}), workload.layers[3])
    assert prunes_anything(workload) and not prunes_anything(workload.with_density(1.0))
    # CSC cannot store a pruned convolution; at density 1.0 the convolution is not pruned
    assert unsupported_sparse_layer(workload, StorageFormat.CSC).name == "conv1"
    assert unsupported_sparse_layer(workload, StorageFormat.CSR) is None
