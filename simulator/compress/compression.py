"""Compression: storage formats with exact bytes, and the pruned encodings of a workload.

Pruning itself is in :mod:`simulator.model.seeded` (numpy only: neither a cold nor a warm run
imports torch); encodings are kept in the on-disk :mod:`~simulator.compress.encodingcache`.

Encoding keeps the real arrays the traffic stage turns into addresses: column indices and row
pointers for CSR, row indices and column pointers for CSC, block-column indices and block-row
pointers for BSR, per-row value offsets for a bitmask (what a kernel gets from the mask's
popcounts), and per-PE column pointers for EIE's format. An N:M matrix needs none: every group of
M stores exactly N values and N positions, so its arrays are as regular as a dense matrix's.

**Index widths follow the matrix** (:func:`index_bits_for`): a column index (a block column for
BSR) is 16 bits when every column fits 16 bits, else 32, and likewise a pointer is 16 bits when
every offset it holds fits. That is what TensorFlow Lite's sparse tensor format does (its
``SparseIndexVector`` holds uint8, uint16 or int32 arrays, the converter taking the narrowest that
fits) and what a hand-written kernel for a known matrix does; scipy widens int32 to int64 only when
it must. Intel MKL (LP64) and cuSPARSE (``CUSPARSE_INDEX_32I``) store 32-bit indices whatever the
matrix: a profile whose sparse library does says so in ``compute.kernels.index_bits``, and the
traffic stage widens the encoding to it (:meth:`EncodedWeights.with_index_bits`).

Value bytes follow the variant's precision (``variant.precision.weight_bits``; without one the
layer's data type), and the scales that go with quantised values are counted as table bytes:
one float32 scale per matrix for ``int8`` (torch's dynamic quantization observes one per tensor),
one fp16 scale per group of ``group_size`` consecutive weights of a row for ``w8`` / ``w4`` (the
dequantiser needs the scale of every kept weight's group, so a sparse format keeps them all).
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..base.errors import OptionError
from ..model import seeded
from ..model.workload import Layer, LayerKind, Workload
from . import encodingcache, formats
from .variants import SCALE_BYTES as GROUP_SCALE_BYTES
from .variants import Precision, Structure, Variant

_CACHE_VERSION = 3   # bump when pruning or encoding changes, to invalidate cached encodings
NARROW_INDEX_BITS = 16
WIDE_INDEX_BITS = 32
TENSOR_SCALE_BYTES = 4   # int8: one float32 scale per matrix (formats.SCALE_BYTES)
EIE_PES = 64             # EIE's processing elements: the row interleaving of its format


class StorageFormat(str, enum.Enum):
    """How a weight matrix is stored."""

    DENSE = "dense"
    CSR = "csr"
    CSC = "csc"
    BSR = "bsr"
    NM = "nm"
    BITMASK = "bitmask"
    EIE = "eie"

    @property
    def is_sparse(self) -> bool:
        """True for the index-carrying formats."""
        return self is not StorageFormat.DENSE


def index_bits_for(largest: int) -> int:
    """Bits of an index or pointer array whose largest entry is ``largest``: 16 when it fits an
    unsigned 16-bit integer, else 32 (see the module docstring for which libraries do this)."""
    return NARROW_INDEX_BITS if largest < 1 << NARROW_INDEX_BITS else WIDE_INDEX_BITS


def _packed(count: int, bits: int) -> int:
    """Bytes of ``count`` bit-packed fields of ``bits`` bits."""
    return -(-int(count) * int(bits) // 8)


@dataclass(frozen=True)
class EncodedWeights:
    """A layer's weight matrix (rows = outputs, cols = reduction) in one storage format.

    ``indices`` holds column indices (CSR), row indices (CSC) or block-column indices (BSR);
    ``pointers`` the ``rows + 1`` row pointers (CSR), ``cols + 1`` column pointers (CSC), block-row
    pointers (BSR), row offsets into the values (bitmask: not stored, popcounts give them) or the
    ``(pes, cols + 1)`` per-PE column pointers into the entries (EIE). Both are None for dense and
    N:M storage. The arrays are int32 / int64 in memory whatever their stored width
    (``index_bits``, ``pointer_bits``).

    ``nnz`` counts the real non-zeros; ``stored`` the values the format keeps, zeros included
    (BSR: whole blocks; N:M: N per group; EIE: padding entries).
    """

    layer: str
    format: StorageFormat
    rows: int
    cols: int
    nnz: int
    value_bits: int                      # bits per stored value (EIE: per codebook entry)
    indices: Optional[np.ndarray] = None
    pointers: Optional[np.ndarray] = None
    index_bits: int = WIDE_INDEX_BITS    # CSR / CSC / BSR indices; N:M: bits of a position
    pointer_bits: int = WIDE_INDEX_BITS  # CSR / CSC / BSR / EIE pointers
    padding: int = 0                     # stored zeros: BSR block fill, N:M short groups, EIE padding entries
    block: tuple[int, int] = (1, 1)      # BSR: block rows x columns
    group: tuple[int, int] = (0, 0)      # N:M: (N, M)
    code_bits: int = 0                   # EIE: bits of a codebook index
    table_bytes: int = 0                 # codebook entries and quantisation scales

    @property
    def index_array(self) -> np.ndarray:
        """``indices``, for a format that stores them (CSR, CSC, BSR)."""
        if self.indices is None:
            raise ValueError(f"{self.layer}: {self.format.value} weights store no indices")
        return self.indices

    @property
    def pointer_array(self) -> np.ndarray:
        """``pointers``, for a format that stores them (CSR, CSC, BSR, bitmask, EIE)."""
        if self.pointers is None:
            raise ValueError(f"{self.layer}: {self.format.value} weights store no pointers")
        return self.pointers

    @property
    def value_bytes_each(self) -> float:
        """Bytes per stored value (0.5 for 4-bit values)."""
        return self.value_bits / 8

    @property
    def stored(self) -> int:
        """Values (EIE: entries) the format stores, zeros included."""
        return self.nnz + self.padding

    @property
    def density(self) -> float:
        """Real non-zeros over dense size."""
        return self.nnz / (self.rows * self.cols)

    @property
    def pes(self) -> int:
        """EIE: processing elements the rows are interleaved over (0 for other formats)."""
        return int(self.pointer_array.shape[0]) if self.format is StorageFormat.EIE else 0

    @property
    def pe_entries(self) -> np.ndarray:
        """EIE: entries (padding included) each PE stores."""
        return self.pointer_array[:, -1].astype(np.int64)

    @property
    def values_bytes(self) -> int:
        """Bytes of stored values (EIE: the packed codebook indices ``v`` of every PE)."""
        if self.format is StorageFormat.EIE:
            return int(sum(_packed(n, self.code_bits) for n in self.pe_entries))
        return _packed(self.stored, self.value_bits)

    @property
    def index_bytes(self) -> int:
        """Bytes of positions: column / row / block-column indices, the bitmask, N:M positions,
        EIE's relative indices ``z``."""
        fmt = self.format
        if fmt in (StorageFormat.CSR, StorageFormat.CSC):
            return _packed(self.nnz, self.index_bits)
        if fmt is StorageFormat.BSR:
            return _packed(self.index_array.size, self.index_bits)
        if fmt is StorageFormat.NM:
            return _packed(self.stored, self.index_bits)
        if fmt is StorageFormat.BITMASK:
            return _packed(self.rows * self.cols, 1)
        if fmt is StorageFormat.EIE:
            return int(sum(_packed(n, formats.EIE_RUN_BITS) for n in self.pe_entries))
        return 0

    @property
    def pointer_bytes(self) -> int:
        """Bytes of row (CSR), column (CSC), block-row (BSR) or per-PE column (EIE) pointers."""
        if self.format in (StorageFormat.CSR, StorageFormat.CSC, StorageFormat.BSR, StorageFormat.EIE):
            return _packed(self.pointer_array.size, self.pointer_bits)
        return 0

    @property
    def total_bytes(self) -> int:
        """Everything a kernel has to read to see the whole matrix once."""
        return self.values_bytes + self.index_bytes + self.pointer_bytes + self.table_bytes

    def with_index_bits(self, bits: Optional[int]) -> EncodedWeights:
        """The encoding as a library with ``bits``-bit indices and pointers stores it (MKL, cuSPARSE:
        32); None, or a format whose fields have fixed widths (N:M, bitmask, EIE), keeps it."""
        if bits is None or self.format not in (StorageFormat.CSR, StorageFormat.CSC, StorageFormat.BSR):
            return self
        return replace(self, index_bits=max(self.index_bits, bits), pointer_bits=max(self.pointer_bits, bits))


def _csx(layer_name: str, matrix: np.ndarray, fmt: StorageFormat, value_bits: int,
         index_bits: Optional[int]) -> EncodedWeights:
    """CSR (or CSC) arrays of a boolean rows x cols matrix."""
    rows, cols = matrix.shape
    major = np.ascontiguousarray(matrix if fmt is StorageFormat.CSR else matrix.T)
    width = major.shape[1]
    flat = np.flatnonzero(major)   # one pass; row and column follow from the flat position
    indices = (flat % width).astype(np.int32)
    pointers = np.searchsorted(flat, np.arange(major.shape[0] + 1, dtype=np.int64) * width)
    nnz = int(pointers[-1])
    return EncodedWeights(layer_name, fmt, rows, cols, nnz, value_bits, indices, pointers,
                          index_bits or index_bits_for(width - 1), index_bits or index_bits_for(nnz))


def encode_mask(layer_name: str, mask: np.ndarray, fmt: StorageFormat, value_bytes_each: int,
                index_bits: Optional[int] = None) -> EncodedWeights:
    """Encode the non-zero pattern of a weight matrix (any shape; flattened to rows x cols) in CSR,
    CSC or dense storage; ``index_bits`` fixes the index and pointer width (None: follow the matrix)."""
    mask = np.asarray(mask, dtype=bool)
    rows = mask.shape[0]
    matrix = mask.reshape(rows, -1)
    cols = matrix.shape[1]
    if fmt is StorageFormat.DENSE:
        return EncodedWeights(layer_name, fmt, rows, cols, rows * cols, 8 * value_bytes_each)
    if fmt not in (StorageFormat.CSR, StorageFormat.CSC):
        raise ValueError(f"encode_mask encodes dense, csr and csc; use encode_variant for {fmt.value}")
    return _csx(layer_name, matrix, fmt, 8 * value_bytes_each, index_bits)


_STRUCTURE_FORMATS = {
    Structure.DENSE: StorageFormat.DENSE,
    Structure.THINNED: StorageFormat.DENSE,   # the thinning transform came first: smaller dense layers
    Structure.CSR: StorageFormat.CSR,
    Structure.CSC: StorageFormat.CSC,
    Structure.BSR: StorageFormat.BSR,
    Structure.NM: StorageFormat.NM,
    Structure.BITMASK: StorageFormat.BITMASK,
    Structure.EIE: StorageFormat.EIE,
}


def storage_format(variant: Variant) -> StorageFormat:
    """How a variant stores its weights (``thinned`` stores its smaller layers dense)."""
    if variant.structure not in _STRUCTURE_FORMATS:
        raise ValueError(f"{variant.spec}: resolve auto to a variant per layer before encoding")
    return _STRUCTURE_FORMATS[variant.structure]


def variant_of(fmt: StorageFormat) -> Variant:
    """The plain variant (the workload's type) of a dense, CSR, CSC or bitmask format."""
    plain = {StorageFormat.DENSE: Structure.DENSE, StorageFormat.CSR: Structure.CSR, StorageFormat.CSC: Structure.CSC,
             StorageFormat.BITMASK: Structure.BITMASK, StorageFormat.EIE: Structure.EIE}
    if fmt not in plain:
        raise ValueError(f"{fmt.value} needs its shape (a block, N:M): use a Variant")
    return Variant(plain[fmt])


def value_bits(variant: Variant, layer: Layer) -> int:
    """Bits per stored weight: the variant's precision, else the layer's data type."""
    if variant.precision is None:
        return 8 * layer.dtype.size_bytes
    return variant.precision.weight_bits


def scale_bytes(variant: Variant, rows: int, cols: int) -> int:
    """Bytes of the scales quantised weights need (see the module docstring); 0 for float types."""
    precision = variant.precision
    if precision is Precision.INT8:
        return TENSOR_SCALE_BYTES
    if precision is not None and precision.weight_only:
        return rows * math.ceil(cols / variant.group_size) * GROUP_SCALE_BYTES
    return 0


DENSE = Variant(Structure.DENSE)


def dense_encoding(layer: Layer, variant: Variant = DENSE) -> EncodedWeights:
    """The unpruned layer stored dense (no weights need to exist for this)."""
    rows, cols = layer.weight_matrix_shape
    return EncodedWeights(layer.name, StorageFormat.DENSE, rows, cols, rows * cols, value_bits(variant, layer),
                          table_bytes=scale_bytes(variant, rows, cols))


def _structure_key(variant: Variant) -> str:
    """The part of a variant's spec that decides its arrays (the precision does not)."""
    return replace(variant, precision=None).spec


def block_mask(magnitude: np.ndarray, block: tuple[int, int], density: float) -> np.ndarray:
    """Kept blocks ``[block rows, block cols]`` of a rows x cols magnitude matrix: the
    ``round(density x blocks)`` of largest L1 norm (ties in index order), as Distiller's block
    structure pruners rank blocks. The block must divide the matrix."""
    rows, cols = magnitude.shape
    br, bc = block
    norms = magnitude.reshape(rows // br, br, cols // bc, bc).sum(axis=(1, 3), dtype=np.float64)
    return seeded.largest_mask(norms, density)


def _check_block(layer: Layer, variant: Variant) -> None:
    rows, cols = layer.weight_matrix_shape
    br, bc = variant.block
    if rows % br or cols % bc:
        raise OptionError("format", f"{variant.spec!r}: {layer.name}'s {rows} x {cols} weight matrix is not a whole "
                          f"number of {br} x {bc} blocks")


def _bsr(layer: Layer, kept: np.ndarray, nnz: int, variant: Variant, index_bits: Optional[int]) -> EncodedWeights:
    rows, cols = layer.weight_matrix_shape
    br, bc = variant.block
    indices, pointers = formats.bsr_structure(kept)
    stored = int(indices.size) * br * bc
    return EncodedWeights(layer.name, StorageFormat.BSR, rows, cols, nnz, value_bits(variant, layer), indices,
                          pointers.astype(np.int64), index_bits or index_bits_for(cols // bc - 1),
                          index_bits or index_bits_for(indices.size), padding=stored - nnz, block=variant.block,
                          table_bytes=scale_bytes(variant, rows, cols))


def _nm(layer: Layer, variant: Variant, mask: Optional[np.ndarray]) -> EncodedWeights:
    """N:M storage: N values and positions per group of M along each row, whatever the density.
    From a mask, a group with more than N non-zeros keeps N (a mask has no magnitudes to rank:
    the byte counts and accesses are the same whichever N they are)."""
    rows, cols = layer.weight_matrix_shape
    n, m = variant.n, variant.m
    if not 0 < n <= m:
        raise OptionError("format", f"{variant.spec!r}: N:M needs 0 < N <= M")
    groups = math.ceil(cols / m)
    stored = rows * groups * n
    if mask is None:
        full, rest = divmod(cols, m)
        nnz = rows * (full * n + min(n, rest))
    else:
        counts = np.count_nonzero(formats._groups(np.asarray(mask, np.float32).reshape(rows, -1), m), axis=2)
        nnz = int(np.minimum(counts, n).sum())
    position_bits = math.ceil(math.log2(m)) if m > 1 else 0
    return EncodedWeights(layer.name, StorageFormat.NM, rows, cols, nnz, value_bits(variant, layer),
                          index_bits=position_bits, pointer_bits=0, padding=stored - nnz, group=(n, m),
                          table_bytes=scale_bytes(variant, rows, cols))


def _bitmask(layer: Layer, matrix: np.ndarray, variant: Variant) -> EncodedWeights:
    rows, cols = matrix.shape
    pointers = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(matrix, axis=1), out=pointers[1:])
    return EncodedWeights(layer.name, StorageFormat.BITMASK, rows, cols, int(pointers[-1]),
                          value_bits(variant, layer), pointers=pointers, index_bits=1, pointer_bits=0,
                          table_bytes=scale_bytes(variant, rows, cols))


def _eie(layer: Layer, weights: np.ndarray, variant: Variant) -> tuple[EncodedWeights, int]:
    """EIE's format of the pruned matrix ``weights`` (its values set the codebook only), and the
    codebook's stored entries."""
    rows, cols = layer.weight_matrix_shape
    matrix = formats.encode_eie(weights.reshape(rows, cols), EIE_PES, variant.codebook_bits,
                                formats.ValueBits(value_bits(variant, layer)), pointer_bits=None)
    pointers = np.stack([p.astype(np.int64) for p in matrix.pointers])
    nnz = int(np.count_nonzero(weights))
    return EncodedWeights(layer.name, StorageFormat.EIE, rows, cols, nnz, value_bits(variant, layer),
                          pointers=pointers, index_bits=formats.EIE_RUN_BITS, pointer_bits=matrix.pointer_bits,
                          padding=matrix.entries - nnz, code_bits=variant.codebook_bits,
                          table_bytes=matrix.byte_counts().table_bytes), int(matrix.codebook.size - 1)


def _from_mask(layer: Layer, mask: np.ndarray, variant: Variant, seed: int,
               index_bits: Optional[int]) -> EncodedWeights:
    """Encode the zeros a checkpoint (or schedule output) already has."""
    fmt = storage_format(variant)
    rows, cols = layer.weight_matrix_shape
    matrix = np.asarray(mask, dtype=bool).reshape(rows, cols)
    if fmt in (StorageFormat.CSR, StorageFormat.CSC):
        enc = _csx(layer.name, matrix, fmt, value_bits(variant, layer), index_bits)
        return replace(enc, table_bytes=scale_bytes(variant, rows, cols))
    if fmt is StorageFormat.BSR:
        br, bc = variant.block
        return _bsr(layer, np.asarray(matrix.reshape(rows // br, br, cols // bc, bc).any(axis=(1, 3))),
                    int(np.count_nonzero(matrix)), variant, index_bits)
    if fmt is StorageFormat.BITMASK:
        return _bitmask(layer, matrix, variant)
    # EIE: the checkpoint's values are not kept, so the seeded weights stand in for them at its non-zeros
    return _eie(layer, np.where(matrix, seeded.synthetic_weight_array(layer, seed).reshape(rows, cols), 0), variant)[0]


def _pruned(layer: Layer, variant: Variant, seed: int) -> dict[str, np.ndarray]:
    """The arrays of the layer's seeded weights pruned to its density in the variant's structure."""
    fmt = storage_format(variant)
    rows, cols = layer.weight_matrix_shape
    if fmt is StorageFormat.BSR:
        magnitude = np.abs(seeded.synthetic_weight_array(layer, seed)).reshape(rows, cols)
        indices, pointers = formats.bsr_structure(block_mask(magnitude, variant.block, layer.density))
        return {"indices": indices, "pointers": pointers.astype(np.int64)}
    if fmt is StorageFormat.EIE:
        weights = seeded.synthetic_weight_array(layer, seed)
        enc, codebook_entries = _eie(layer, np.where(seeded.keep_mask(weights, layer.density), weights, 0), variant)
        return {"pointers": enc.pointer_array, "meta": np.array([enc.nnz, enc.pointer_bits, codebook_entries])}
    matrix = seeded.pruned_mask(layer, seed).reshape(rows, cols)
    if fmt is StorageFormat.BITMASK:
        return {"pointers": _bitmask(layer, matrix, variant).pointer_array}
    enc = _csx(layer.name, matrix, fmt, 32, None)
    return {"indices": enc.index_array, "pointers": enc.pointer_array}


def _from_arrays(layer: Layer, variant: Variant, arrays: dict[str, np.ndarray],
                 index_bits: Optional[int]) -> EncodedWeights:
    """The encoding of :func:`_pruned`'s arrays (fresh or from the cache) at the variant's precision."""
    fmt = storage_format(variant)
    rows, cols = layer.weight_matrix_shape
    vbits, table = value_bits(variant, layer), scale_bytes(variant, rows, cols)
    indices, pointers = arrays.get("indices"), arrays["pointers"]
    if fmt is StorageFormat.BSR:
        indices = arrays["indices"]
        br, bc = variant.block
        kept = np.zeros((rows // br, cols // bc), dtype=bool)
        kept[np.repeat(np.arange(rows // br), np.diff(pointers)), indices] = True
        return _bsr(layer, kept, int(indices.size) * br * bc, variant, index_bits)
    if fmt is StorageFormat.EIE:
        nnz, pointer_bits, entries = (int(x) for x in arrays["meta"])
        codebook = formats._value_bytes(entries, formats.ValueBits(vbits))
        return EncodedWeights(layer.name, fmt, rows, cols, nnz, vbits, pointers=pointers,
                              index_bits=formats.EIE_RUN_BITS, pointer_bits=pointer_bits,
                              padding=int(pointers[:, -1].sum()) - nnz, code_bits=variant.codebook_bits,
                              table_bytes=sum(codebook))
    if fmt is StorageFormat.BITMASK:
        return EncodedWeights(layer.name, fmt, rows, cols, int(pointers[-1]), vbits, pointers=pointers, index_bits=1,
                              pointer_bits=0, table_bytes=table)
    nnz = int(pointers[-1])
    width = cols if fmt is StorageFormat.CSR else rows
    return EncodedWeights(layer.name, fmt, rows, cols, nnz, vbits, indices, pointers,
                          index_bits or index_bits_for(width - 1), index_bits or index_bits_for(nnz),
                          table_bytes=table)


def _cached_pruned(layer: Layer, variant: Variant, seed: int, index_bits: Optional[int]) -> EncodedWeights:
    """Prune the layer's seeded weights to ``layer.density`` in the variant's structure and encode them.

    Encodings are cached on disk (:mod:`simulator.compress.encodingcache`: size-bounded, least
    recently used first) because drawing and pruning 100 M weights costs a good part of a second
    while the result depends only on the shape, density, seed, layer name and the variant's
    structure (its spec without the precision: the arrays do not depend on the value bits).
    """
    shape = "x".join(map(str, layer.weight_shape))
    key = f"v{_CACHE_VERSION}-{layer.name}-{shape}-d{layer.density!r}-s{seed}-{_structure_key(variant)}"
    name = hashlib.sha256(key.encode()).hexdigest()[:24]
    cached = encodingcache.load(name, key)
    needed = {"pointers"} | ({"indices"} if storage_format(variant) in (StorageFormat.CSR, StorageFormat.CSC,
                                                                          StorageFormat.BSR) else set())
    needed |= {"meta"} if storage_format(variant) is StorageFormat.EIE else set()
    if cached is None or not needed <= set(cached):
        cached = _pruned(layer, variant, seed)
        encodingcache.store(name, key, cached)
    return _from_arrays(layer, variant, cached, index_bits)


def pruned_encoding(layer: Layer, fmt: StorageFormat, seed: int) -> EncodedWeights:
    """Magnitude-prune the layer's seeded weights to ``layer.density`` and encode them in ``fmt``
    (dense, CSR, CSC, bitmask or EIE; cached, see :func:`encode_variant`)."""
    if fmt is StorageFormat.DENSE:
        return dense_encoding(layer)
    return _cached_pruned(layer, variant_of(fmt), seed, None)


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


#: Formats the traffic stage traces for FC layers only (no convolution kernel reads them).
FC_ONLY_FORMATS = (StorageFormat.CSC, StorageFormat.BITMASK, StorageFormat.EIE)


def unsupported_sparse_layer(workload: Workload, fmt: StorageFormat) -> Optional[Layer]:
    """The first layer that ``fmt`` cannot store (CSC, bitmask and EIE's format are modelled for
    FC layers only: a pruned convolution would need a convolution kernel over them), or None."""
    if fmt not in FC_ONLY_FORMATS:
        return None
    return next((l for l in workload.layers if l.kind is LayerKind.CONV and is_pruned(workload, l)), None)


def check_variant(workload: Workload, variant: Variant) -> None:
    """Refuse, in one :class:`OptionError` naming ``format``, a variant that cannot encode this
    workload: a BSR block that does not divide a pruned layer's matrix, N > M, or a pruned
    convolution in a format modelled for FC layers only."""
    fmt = storage_format(variant)
    if variant.structure is Structure.NM and not 0 < variant.n <= variant.m:
        raise OptionError("format", f"{variant.spec!r}: N:M needs 0 < N <= M")
    if fmt is StorageFormat.BSR:
        for layer in workload.layers:
            if is_pruned(workload, layer):
                _check_block(layer, variant)
    unsupported = unsupported_sparse_layer(workload, fmt)
    if unsupported is not None:
        raise OptionError("format", f"{variant.spec!r} is modelled for FC layers only, and {workload.name}'s "
                          f"{unsupported.name} is a pruned {unsupported.kind.value} layer; "
                          "use csr, bsr<R>x<C> or <N>:<M> there")


def encode_layer(workload: Workload, layer: Layer, variant: Variant, seed: int = 0,
                 index_bits: Optional[int] = None) -> EncodedWeights:
    """One weighted layer of ``workload`` in ``variant`` (see :func:`encode_variant`)."""
    fmt = storage_format(variant)
    if fmt is StorageFormat.NM:
        return _nm(layer, variant, workload.weight_masks.get(layer.name))
    if fmt is StorageFormat.DENSE or not is_pruned(workload, layer):
        return dense_encoding(layer, variant)
    if fmt is StorageFormat.BSR:
        _check_block(layer, variant)
    if layer.name in workload.weight_masks:
        return _from_mask(layer, workload.weight_masks[layer.name], variant, seed, index_bits)
    return _cached_pruned(layer, variant, seed, index_bits)


def encode_variant(workload: Workload, variant: Variant, seed: int = 0,
                   index_bits: Optional[int] = None) -> dict[str, EncodedWeights]:
    """Encode every weighted layer of ``workload`` in ``variant``'s structure and precision.

    A layer with a mask in ``workload.weight_masks`` (a checkpoint's or a schedule's own
    non-zeros) is encoded from that mask: the zeros the model already has. The others are pruned
    from seeded weights to their density in the variant's structure: ``bsr<R>x<C>`` keeps the
    blocks of largest L1 norm (:func:`block_mask`), ``<N>:<M>`` keeps the N largest of each M
    (its density is N/M whatever the workload says, so it applies to unpruned layers too),
    csr / csc / bitmask / eie keep the weights of largest magnitude. A layer with nothing pruned
    is stored dense (at the variant's precision) in every other format.

    ``index_bits`` fixes the width of indices and pointers (None: they follow the matrix, see
    :func:`index_bits_for`). A block that does not divide a pruned layer's matrix is an
    :class:`OptionError` naming ``format`` and the spec.
    """
    check_variant(workload, variant)
    return {layer.name: encode_layer(workload, layer, variant, seed, index_bits)
            for layer in workload.layers if layer.kind.has_weights}


def compress_workload(workload: Workload, fmt: StorageFormat, seed: int = 0) -> dict[str, EncodedWeights]:
    """Encode every weighted layer in ``fmt`` at the workload's type (:func:`encode_variant` of the
    plain variant): dense format means unpruned; sparse formats are pruned."""
    return {layer.name: encode_layer(workload, layer, variant_of(fmt), seed)
            for layer in workload.layers if layer.kind.has_weights}
