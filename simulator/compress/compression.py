"""Compression: storage formats with exact bytes, and the pruned encodings of a workload.

Pruning itself is in :mod:`simulator.model.seeded` (numpy only: neither a cold nor a warm run
imports torch); encodings are kept in the on-disk :mod:`~simulator.compress.encodingcache`.

Encoding keeps the real index arrays (column indices and row pointers for CSR, row indices
and column pointers for CSC): the traffic stage turns them into gather addresses.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..model import seeded
from ..model.workload import Layer, LayerKind, Workload
from . import encodingcache

INDEX_BYTES = 4      # int32 column / row indices, as MKL and cuSPARSE use
POINTER_BYTES = 4    # int32 row / column pointers
_CACHE_VERSION = 2   # bump when pruning or encoding changes, to invalidate cached encodings


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
    value_bits: int = 0          # bits per stored value when not 8 x value_bytes_each (int4: 4); 0: whole bytes
    scale_bytes: int = 0         # weight-only types: the groups' fp16 scales, stored with the values

    @property
    def density(self) -> float:
        """Stored non-zeros over dense size."""
        return self.nnz / (self.rows * self.cols)

    @property
    def values_bytes(self) -> int:
        """Bytes of stored values (and of their scales, for weight-only types)."""
        if self.value_bits:
            return -(-self.nnz * self.value_bits // 8) + self.scale_bytes
        return self.nnz * self.value_bytes_each + self.scale_bytes

    @property
    def weight_bytes_each(self) -> float:
        """Bytes a stored value takes on average, its share of the scales included."""
        return self.values_bytes / self.nnz if self.nnz else float(self.value_bytes_each)

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


def encode_mask(layer_name: str, mask: np.ndarray, fmt: StorageFormat, value_bytes_each: int) -> EncodedWeights:
    """Encode the non-zero pattern of a weight matrix (any shape; flattened to rows x cols)."""
    mask = np.asarray(mask, dtype=bool)
    rows = mask.shape[0]
    matrix = mask.reshape(rows, -1)
    cols = matrix.shape[1]
    if fmt is StorageFormat.DENSE:
        return EncodedWeights(layer_name, fmt, rows, cols, rows * cols, value_bytes_each)
    major = matrix if fmt is StorageFormat.CSR else matrix.T
    major = np.ascontiguousarray(major)
    width = major.shape[1]
    flat = np.flatnonzero(major)   # one pass; row and column follow from the flat position
    indices = (flat % width).astype(np.int32)
    pointers = np.searchsorted(flat, np.arange(major.shape[0] + 1, dtype=np.int64) * width)
    return EncodedWeights(layer_name, fmt, rows, cols, int(pointers[-1]), value_bytes_each, indices, pointers)


def dense_encoding(layer: Layer) -> EncodedWeights:
    """The unpruned layer stored dense (no weights need to exist for this)."""
    rows, cols = layer.weight_matrix_shape
    return EncodedWeights(layer.name, StorageFormat.DENSE, rows, cols, rows * cols, layer.dtype.size_bytes)


def pruned_encoding(layer: Layer, fmt: StorageFormat, seed: int) -> EncodedWeights:
    """Magnitude-prune the layer's seeded weights to ``layer.density`` and encode them.

    Encodings are cached on disk (:mod:`simulator.compress.encodingcache`: size-bounded, least
    recently used first) because drawing and pruning 100 M weights costs a good part of a second
    while the result depends only on the shape, density, seed and layer name.
    """
    if fmt is StorageFormat.DENSE:
        return dense_encoding(layer)
    shape = "x".join(map(str, layer.weight_shape))
    key = f"v{_CACHE_VERSION}-{layer.name}-{shape}-d{layer.density!r}-s{seed}-{fmt.value}"
    name = hashlib.sha256(key.encode()).hexdigest()[:24]
    rows, cols = layer.weight_matrix_shape
    cached = encodingcache.load(name, key)
    if cached is not None and "indices" in cached and "pointers" in cached:
        return EncodedWeights(layer.name, fmt, rows, cols, int(cached["pointers"][-1]),
                              layer.dtype.size_bytes, cached["indices"], cached["pointers"])
    mask = seeded.pruned_mask(layer, seed)
    encoded = encode_mask(layer.name, mask, fmt, layer.dtype.size_bytes)
    encodingcache.store(name, key, {"indices": encoded.indices, "pointers": encoded.pointers})
    return encoded


def is_pruned(workload: Workload, layer: Layer) -> bool:
    """True if ``layer`` has weights and some are pruned: a mask with a zero (a checkpoint's or a
    torch model's own weights), else a density below 1. A layer at density 1.0 runs dense even in
    a sparse variant: its indices would only add bytes and work."""
    if not layer.kind.has_weights:
        return False
    if layer.name in workload.weight_masks:
        return not bool(np.asarray(workload.weight_masks[layer.name]).all())
    return layer.density < 1.0


def prunes_anything(workload: Workload) -> bool:
    """True if any layer of ``workload`` is pruned (a workload file without densities is not)."""
    return any(is_pruned(workload, layer) for layer in workload.layers)


def unsupported_sparse_layer(workload: Workload, fmt: StorageFormat) -> Optional[Layer]:
    """The first layer that ``fmt`` cannot store (CSC is modelled for FC layers only: a pruned
    convolution would need a CSC convolution kernel), or None."""
    if fmt is not StorageFormat.CSC:
        return None
    return next((l for l in workload.layers if l.kind is LayerKind.CONV and is_pruned(workload, l)), None)


def compress_workload(workload: Workload, fmt: StorageFormat, seed: int = 0) -> dict[str, EncodedWeights]:
    """Encode every weighted layer: dense format means unpruned; sparse formats are pruned.

    A layer with a mask in ``workload.weight_masks`` (a checkpoint's own non-zeros) is encoded
    from that mask; the others from seeded weights pruned to their density. A layer with
    nothing pruned (:func:`is_pruned`) is stored dense in every format.
    """
    out: dict[str, EncodedWeights] = {}
    for layer in workload.layers:
        if not layer.kind.has_weights:
            continue
        if fmt is StorageFormat.DENSE or not is_pruned(workload, layer):
            out[layer.name] = dense_encoding(layer)
        elif layer.name in workload.weight_masks:
            out[layer.name] = encode_mask(layer.name, workload.weight_masks[layer.name], fmt, layer.dtype.size_bytes)
        else:
            out[layer.name] = pruned_encoding(layer, fmt, seed)
    return out
