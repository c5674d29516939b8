"""Seeded weights and the magnitude rule that prunes them, in numpy only (no torch import).

Speed matters here: a workload's first run draws and prunes every weight (VGG-16: 138 M, FC6
alone 103 M), and the pruned encodings are what the on-disk cache stores. Three tricks, kept and
labelled:

- weights are drawn in float32 (half the bytes of float64) from numpy's PCG64, in fixed-size
  chunks each with its own stream (``SeedSequence(layer seed, spawn_key=(chunk,))``), so the chunks
  can be drawn by several threads (numpy releases the GIL while filling) and the values still do
  not depend on the thread count;
- the magnitude threshold is found from a sample: a band of candidate values around the sample's
  quantile is cut out with a few vectorised comparisons and only that band is partitioned (exact:
  when the band misses the threshold, the whole array is partitioned);
- the elementwise passes over 100 M values go in cache-sized pieces, so their temporaries never
  reach memory.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .workload import Layer, layer_seed

CHUNK_ELEMENTS = 1 << 22        # 16 MiB of float32 per stream: large enough to amortise, small to spread
_SAMPLE_ELEMENTS = 1 << 16      # sample size for the threshold estimate
_SMALL_ELEMENTS = 1 << 20       # below this, a plain partition is as fast as the sampled one
_PASS_ELEMENTS = 1 << 18        # elementwise passes go piece by piece: 1 MiB of float32 stays in cache


def _fill_chunk(out: np.ndarray, entropy: int, chunk: int, bound: float, absolute: bool) -> None:
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(chunk,))))
    generator.random(out=out, dtype=np.float32)
    out *= np.float32(2.0 * bound)
    out -= np.float32(bound)
    if absolute:
        np.abs(out, out=out)   # here, while the chunk is still in cache, rather than a pass of its own


def synthetic_weight_array(layer: Layer, seed: int) -> np.ndarray:
    """The layer's seeded weights (float32, ``layer.weight_shape``): uniform in [-b, b) with
    b = 1/sqrt(fan_in), like torch's default initialisation. The same for the same layer name,
    shape and seed on every machine and thread count."""
    return _draw(layer, seed, absolute=False)


def pruned_mask(layer: Layer, seed: int) -> np.ndarray:
    """``keep_mask(synthetic_weight_array(layer, seed), layer.density)``, without the signed copy."""
    return largest_mask(_draw(layer, seed, absolute=True), layer.density)


def _draw(layer: Layer, seed: int, absolute: bool) -> np.ndarray:
    fan_in = layer.weight_matrix_shape[1]
    bound = 1.0 / max(fan_in, 1) ** 0.5
    size = int(np.prod(layer.weight_shape))
    flat = np.empty(size, dtype=np.float32)
    entropy = layer_seed(seed, layer.name)
    starts = range(0, size, CHUNK_ELEMENTS)
    jobs = [(flat[s:s + CHUNK_ELEMENTS], entropy, i, bound, absolute) for i, s in enumerate(starts)]
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        for job in jobs:
            _fill_chunk(*job)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda job: _fill_chunk(*job), jobs))
    return flat.reshape(layer.weight_shape)


def _value_at_rank(values: np.ndarray, rank: int) -> float:
    """``np.partition(values, rank)[rank]`` (the rank-th smallest), found by partitioning only a
    band of candidates around a sample's estimate when ``values`` is large."""
    size = values.size
    if size <= _SMALL_ELEMENTS:
        return np.partition(values, rank)[rank]
    sample = np.sort(values[:: size // _SAMPLE_ELEMENTS])
    quantile = rank / size
    # about 6 standard deviations of the sample quantile either side: the band misses the
    # threshold with negligible probability for any value distribution, and the fall-back is exact
    margin = 6.0 * (quantile * (1.0 - quantile) / sample.size) ** 0.5 + 2.0 / sample.size
    low = sample[max(int((quantile - margin) * sample.size), 0)]
    high = sample[min(int((quantile + margin) * sample.size), sample.size - 1)]
    below, parts = 0, []
    for start in range(0, size, _PASS_ELEMENTS):   # cache-sized pieces: the temporaries stay in cache
        piece = values[start:start + _PASS_ELEMENTS]
        under = piece < low
        below += int(np.count_nonzero(under))
        parts.append(piece[(piece <= high) & ~under])
    band = np.concatenate(parts)
    if below <= rank < below + band.size:
        return np.partition(band, rank - below)[rank - below]
    return np.partition(values, rank)[rank]


def keep_mask(weights: np.ndarray, density: float) -> np.ndarray:
    """Boolean mask (same shape) of the ``round(density * size)`` weights of largest magnitude.

    Ties at the threshold are kept in index order, so the count is exact and the mask is the
    same on every run.
    """
    return largest_mask(np.abs(weights), density)


def largest_mask(magnitude: np.ndarray, density: float) -> np.ndarray:
    """Boolean mask (same shape) of the ``round(density * size)`` largest values (ties in index order)."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    shape = magnitude.shape
    magnitude = magnitude.reshape(-1)
    keep = int(round(density * magnitude.size))
    if keep >= magnitude.size:
        return np.ones(shape, dtype=bool)
    if keep == 0:
        return np.zeros(shape, dtype=bool)
    threshold = _value_at_rank(magnitude, magnitude.size - keep)
    mask = np.empty(magnitude.size, dtype=bool)
    kept = 0
    for start in range(0, magnitude.size, _PASS_ELEMENTS):
        piece = np.greater(magnitude[start:start + _PASS_ELEMENTS], threshold, out=mask[start:start + _PASS_ELEMENTS])
        kept += int(np.count_nonzero(piece))
    for start in range(0, magnitude.size, _PASS_ELEMENTS):   # ties at the threshold, in index order
        if kept == keep:
            break
        ties = np.flatnonzero(magnitude[start:start + _PASS_ELEMENTS] == threshold)[: keep - kept]
        mask[start + ties] = True
        kept += ties.size
    return mask.reshape(shape)
