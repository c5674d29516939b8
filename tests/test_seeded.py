"""Seeded weights and the sampled magnitude selection (numpy only): exact against a full
partition, the same values for any thread count, and no torch import on the encoding path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from simulator.model import seeded
from simulator.model.workload import DType, Layer, LayerKind


def _reference_mask(magnitude: np.ndarray, density: float) -> np.ndarray:
    """The plain rule: a full partition, then ties in index order."""
    flat = magnitude.reshape(-1)
    keep = int(round(density * flat.size))
    cut = flat.size - keep
    threshold = np.partition(flat, cut)[cut]
    mask = flat > threshold
    mask[np.flatnonzero(flat == threshold)[: keep - int(mask.sum())]] = True
    return mask.reshape(magnitude.shape)


@pytest.mark.parametrize("values", ["uniform", "sorted", "few-levels", "heavy-tail"])
@pytest.mark.parametrize("density", [0.001, 0.04, 0.5, 0.97])
def test_sampled_selection_equals_a_full_partition(values, density):
    rng = np.random.default_rng(3)
    size = 3 * seeded._SMALL_ELEMENTS   # large enough for the sampled path
    magnitude = {"uniform": lambda: rng.random(size, dtype=np.float32),
                 "sorted": lambda: np.sort(rng.random(size, dtype=np.float32)),
                 "few-levels": lambda: rng.integers(0, 7, size).astype(np.float32),   # ties everywhere
                 "heavy-tail": lambda: rng.standard_cauchy(size).astype(np.float32) ** 2}[values]()
    mask = seeded.largest_mask(magnitude, density)
    assert int(mask.sum()) == round(density * size)
    assert np.array_equal(mask, _reference_mask(magnitude, density))


def _layer(outputs: int, inputs: int) -> Layer:
    return Layer(name="fc", kind=LayerKind.FC, module="fc", in_shape=(inputs,), out_shape=(outputs,),
                 dtype=DType.FP32, density=0.1)


def test_weights_do_not_depend_on_the_thread_count(monkeypatch):
    layer = _layer(9, seeded.CHUNK_ELEMENTS // 4)     # a little over two chunks
    many = seeded.synthetic_weight_array(layer, 5)
    monkeypatch.setattr(seeded.os, "cpu_count", lambda: 1)
    assert np.array_equal(many, seeded.synthetic_weight_array(layer, 5))


def test_weights_are_uniform_within_the_fan_in_bound_and_differ_by_seed():
    layer = _layer(64, 400)
    weights = seeded.synthetic_weight_array(layer, 0)
    assert weights.dtype == np.float32 and weights.shape == (64, 400)
    assert np.abs(weights).max() <= 1 / 400 ** 0.5
    assert abs(float(weights.mean())) < 0.05 / 400 ** 0.5      # centred: 25,600 draws
    assert not np.array_equal(weights, seeded.synthetic_weight_array(layer, 1))


def test_pruned_mask_is_the_keep_mask_of_the_weights():
    layer = _layer(300, 700)
    expected = seeded.keep_mask(seeded.synthetic_weight_array(layer, 2), layer.density)
    assert np.array_equal(seeded.pruned_mask(layer, 2), expected)


def test_the_encoding_path_does_not_import_torch(tmp_path):
    code = ("import sys; from simulator.compress.compression import compress_workload, StorageFormat;"
            "from simulator.model.workload import load_workload;"
            "compress_workload(load_workload('workloads/eie.yaml'), StorageFormat.CSR);"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"SIMULATOR_CACHE_DIR": str(tmp_path), "PATH": ""}, cwd=str(_root()))
    assert out.stdout.strip() == "False"


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent
