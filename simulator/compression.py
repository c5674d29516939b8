"""Compression: magnitude pruning of real weight tensors, and storage formats with exact bytes.

Pruning uses ``torch.nn.utils.prune``: :class:`MagnitudePruning` is a pruning method in the
same shape as torch's ``L1Unstructured`` (one ``compute_mask``), but selects the weights to
keep with a linear-time partition instead of a full ``topk``, which makes pruning VGG-16's
100-million-weight FC6 take about a second instead of half a minute. Without a checkpoint the
weights are drawn deterministically from a seed and the layer's name.

Encoding keeps the real index arrays (column indices and row pointers for CSR, row indices
and column pointers for CSC): the traffic stage turns them into gather addresses.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.nn.utils import prune

from .workload import Layer, Workload

INDEX_BYTES = 4      # int32 column / row indices, as MKL and cuSPARSE use
POINTER_BYTES = 4    # int32 row / column pointers
_CACHE_VERSION = 1   # bump when pruning or encoding changes, to invalidate cached encodings


class StorageFormat(str, enum.Enum):
    """How a weight matrix is stored."""

    DENSE = "dense"
    CSR = "csr"
    CSC = "csc"

    @property
    def is_sparse(self) -> bool:
        """True for the index-carrying formats."""
        return self is not StorageFormat.DENSE


@dataclass(frozen=True)
class EncodedWeights:
    """A layer's weight matrix (rows = outputs, cols = reduction) in one storage format.

    ``indices`` holds column indices (CSR) or row indices (CSC); ``pointers`` holds the
    ``rows + 1`` row pointers (CSR) or ``cols + 1`` column pointers (CSC). Both are None for
    dense storage.
    """

    layer: str
    format: StorageFormat
    rows: int
    cols: int
    nnz: int
    value_bytes_each: int
    indices: Optional[np.ndarray] = None
    pointers: Optional[np.ndarray] = None

    @property
    def density(self) -> float:
        """Stored non-zeros over dense size."""
        return self.nnz / (self.rows * self.cols)

    @property
    def values_bytes(self) -> int:
        """Bytes of stored values."""
        return self.nnz * self.value_bytes_each

    @property
    def index_bytes(self) -> int:
        """Bytes of column (CSR) or row (CSC) indices."""
        return self.nnz * INDEX_BYTES if self.format.is_sparse else 0

    @property
    def pointer_bytes(self) -> int:
        """Bytes of row (CSR) or column (CSC) pointers."""
        if self.format is StorageFormat.CSR:
            return (self.rows + 1) * POINTER_BYTES
        if self.format is StorageFormat.CSC:
            return (self.cols + 1) * POINTER_BYTES
        return 0

    @property
    def total_bytes(self) -> int:
        """Everything a kernel has to read to see the whole matrix once."""
        return self.values_bytes + self.index_bytes + self.pointer_bytes


class MagnitudePruning(prune.BasePruningMethod):
    """Keep the ``density`` share of weights with the largest magnitude (exact count).

    Same result as ``prune.L1Unstructured(amount=1 - density)`` up to the order of ties,
    found with ``numpy.partition`` (linear time) rather than ``torch.topk``.
    """

    PRUNING_TYPE = "unstructured"

    def __init__(self, density: float) -> None:
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        self.density = density

    def compute_mask(self, t: torch.Tensor, default_mask: Optional[torch.Tensor]) -> torch.Tensor:
        magnitude = t.detach().abs().reshape(-1).numpy()
        keep = int(round(self.density * magnitude.size))
        if keep >= magnitude.size:
            mask = np.ones(magnitude.size, dtype=bool)
        elif keep == 0:
            mask = np.zeros(magnitude.size, dtype=bool)
        else:
            cut = magnitude.size - keep
            threshold = np.partition(magnitude, cut)[cut]
            mask = magnitude > threshold
            ties = np.flatnonzero(magnitude == threshold)[: keep - int(mask.sum())]
            mask[ties] = True
        out = torch.from_numpy(mask.reshape(t.shape))
        if default_mask is not None:
            out &= default_mask.to(torch.bool)
        return out

    @classmethod
    def apply(cls, module: torch.nn.Module, name: str, density: float):  # type: ignore[override]
        """Prune ``module.<name>`` in place with torch's re-parametrisation (adds ``<name>_mask``)."""
        return super().apply(module, name, density=density)


def layer_seed(seed: int, layer_name: str) -> int:
    """A per-layer seed that does not depend on the other layers of the workload."""
    digest = hashlib.sha256(f"{seed}:{layer_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def synthetic_weights(layer: Layer, seed: int) -> torch.Tensor:
    """Weights drawn like torch's default init (uniform, bound 1/sqrt(fan_in)), reproducibly."""
    generator = torch.Generator().manual_seed(layer_seed(seed, layer.name))
    fan_in = layer.weight_matrix_shape[1]
    bound = 1.0 / max(fan_in, 1) ** 0.5
    return torch.empty(layer.weight_shape).uniform_(-bound, bound, generator=generator)


def magnitude_mask(weights: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask of the weights magnitude pruning keeps."""
    return MagnitudePruning(density).compute_mask(weights, None)


def encode_mask(layer_name: str, mask: torch.Tensor | np.ndarray, fmt: StorageFormat,
                value_bytes_each: int) -> EncodedWeights:
    """Encode the non-zero pattern of a weight matrix (any shape; flattened to rows x cols)."""
    mask_t = torch.as_tensor(mask, dtype=torch.bool)
    rows = mask_t.shape[0]
    matrix = mask_t.reshape(rows, -1)
    cols = matrix.shape[1]
    if fmt is StorageFormat.DENSE:
        return EncodedWeights(layer_name, fmt, rows, cols, rows * cols, value_bytes_each)
    major = matrix if fmt is StorageFormat.CSR else matrix.t().contiguous()
    counts = major.sum(dim=1, dtype=torch.int64).numpy()
    pointers = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=pointers[1:])
    indices = torch.nonzero(major)[:, 1].to(torch.int32).numpy()
    return EncodedWeights(layer_name, fmt, rows, cols, int(pointers[-1]), value_bytes_each, indices, pointers)


def dense_encoding(layer: Layer) -> EncodedWeights:
    """The unpruned layer stored dense (no weights need to exist for this)."""
    rows, cols = layer.weight_matrix_shape
    return EncodedWeights(layer.name, StorageFormat.DENSE, rows, cols, rows * cols, layer.dtype.size_bytes)


def _cache_dir() -> Optional[Path]:
    setting = os.environ.get("SIMULATOR_CACHE_DIR")
    if setting == "":
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "compressed-inference-simulator"


def pruned_encoding(layer: Layer, fmt: StorageFormat, seed: int) -> EncodedWeights:
    """Magnitude-prune the layer's seeded weights to ``layer.density`` and encode them.

    Encodings are cached on disk (``$SIMULATOR_CACHE_DIR``, default ``~/.cache/...``; set it
    to an empty string to disable) because drawing and pruning 100 M weights costs seconds
    while the result depends only on the shape, density, seed and layer name.
    """
    if fmt is StorageFormat.DENSE:
        return dense_encoding(layer)
    key = f"v{_CACHE_VERSION}-{layer.name}-{'x'.join(map(str, layer.weight_shape))}-d{layer.density!r}-s{seed}-{fmt.value}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    directory = _cache_dir()
    path = directory / f"{digest}.npz" if directory else None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) == key:
                    rows, cols = layer.weight_matrix_shape
                    return EncodedWeights(layer.name, fmt, rows, cols, int(data["pointers"][-1]),
                                          layer.dtype.size_bytes, data["indices"], data["pointers"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    mask = magnitude_mask(synthetic_weights(layer, seed), layer.density)
    encoded = encode_mask(layer.name, mask, fmt, layer.dtype.size_bytes)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, key=np.array(key), indices=encoded.indices, pointers=encoded.pointers)
            os.replace(tmp, path)
        except OSError:
            pass  # caching is an optimisation only
    return encoded


def compress_workload(workload: Workload, fmt: StorageFormat, seed: int = 0) -> dict[str, EncodedWeights]:
    """Encode every weighted layer: dense format means unpruned; sparse formats are pruned."""
    out: dict[str, EncodedWeights] = {}
    for layer in workload.layers:
        if not layer.kind.has_weights:
            continue
        out[layer.name] = dense_encoding(layer) if fmt is StorageFormat.DENSE else pruned_encoding(layer, fmt, seed)
    return out
