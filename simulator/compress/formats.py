"""More storage formats for a pruned weight matrix, with exact byte counts and exact decoding.

The matrix is the one a kernel multiplies: rows = outputs, columns = the reduction (inputs),
as in :class:`simulator.compress.compression.EncodedWeights`. Each encoder keeps the real arrays, each
``decode()`` rebuilds the matrix from them alone, and each ``byte_counts()`` counts the
arrays as stored, bit-packed where a field is narrower than a byte:

* :class:`EieMatrix`, EIE's format (Han et al., ISCA 2016, section III): rows interleaved over
  N processing elements (row i on PE i mod N); each PE stores its rows column by column as
  ``(v, z)`` entries: ``v`` a k-bit index into a codebook of shared weights, ``z`` a 4-bit count
  of the zeros since the previous entry of the column. A run of more than 15 zeros gets a
  padding entry ``(0, 15)`` (code 0 is the zero weight) standing for 15 zeros and itself.
  Per PE, ``columns + 1`` 16-bit column pointers (32-bit when asked for, or when ``pointer_bits``
  is None and a PE holds more entries than 16 bits address). The codebook comes from k-means weight
  sharing (Deep Compression: linear initialisation over the weights' range, Lloyd
  iterations); its ``2^k - 1`` non-zero entries are stored at the value precision.
* :class:`BitmaskMatrix`: one bit per element (row-major), then the non-zero values.
* :class:`BsrMatrix`: block-sparse rows: every ``br x bc`` block holding a non-zero is stored
  whole, with a block-column index per block and block-row pointers (int32 by default, or the
  width asked for: :func:`simulator.compress.compression.index_bits_for` picks 16 bits where the
  matrix allows). A matrix whose sides are not multiples of the block is padded with zeros to
  whole blocks.
* :class:`NMMatrix`: N:M structured sparsity (Ampere's 2:4): every group of M consecutive
  elements of a row keeps at most N; each group stores exactly N values (zeros where it has
  fewer) and a ``ceil(log2 M)``-bit position for each. A last, short group is padded.

Value precision (:class:`ValueBits`): 32 (float32, exact), 16 (float16), 8 or 4 bits
(symmetric linear integers with one float32 scale per matrix, counted as table bytes). So
``decode()`` gives back the pruned matrix exactly at 32 bits, and :func:`quantise` of it
exactly at the others; EIE gives back the weight-shared matrix (:attr:`EieMatrix.shared`).

:func:`simulator.compress.compression.encode_variant` builds a layer's encoding in each of these
formats for ``run --format`` (reusing :func:`bsr_structure` and :func:`encode_eie`, with byte
counts equal to these encoders'); the traffic stage traces their kernels from the real arrays.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

INDEX_BITS = 32          # BSR block-column indices and block-row pointers by default (int32)
EIE_RUN_BITS = 4         # EIE's z field: zeros before an entry
EIE_POINTER_BITS = 16    # EIE's per-PE column pointers (the paper's)
SCALE_BYTES = 4          # the float32 scale of 8- and 4-bit values


class ValueBits(enum.IntEnum):
    """Bits per stored weight value."""

    B32 = 32
    B16 = 16
    B8 = 8
    B4 = 4


def _bytes(bits: int) -> int:
    """Bytes of a bit-packed array of ``bits`` bits."""
    return -(-int(bits) // 8)


@dataclass(frozen=True)
class ByteCounts:
    """What a format stores, by role, in bytes (each array bit-packed and rounded up to bytes)."""

    values_bytes: int        # weight values, or codebook indices (EIE's v)
    index_bytes: int         # positions: EIE's z, bitmask bits, BSR block columns, N:M metadata
    pointer_bytes: int       # EIE column pointers, BSR block-row pointers
    table_bytes: int = 0     # codebook and / or quantisation scale

    @property
    def total_bytes(self) -> int:
        """Everything that must be read to see the whole matrix once."""
        return self.values_bytes + self.index_bytes + self.pointer_bytes + self.table_bytes


# --- value precision -----------------------------------------------------------------------------

def _scale(values: np.ndarray, bits: ValueBits) -> float:
    top = float(np.max(np.abs(values))) if values.size else 0.0
    levels = 2 ** (int(bits) - 1) - 1          # 127 for 8 bits, 7 for 4 bits
    return np.float32(top / levels) if top > 0 else np.float32(1.0)


def encode_values(values: np.ndarray, bits: ValueBits, scale: Optional[float] = None
                  ) -> tuple[np.ndarray, Optional[np.float32]]:
    """Values as stored: float32 / float16 arrays, or integer codes plus the scale."""
    bits = ValueBits(bits)
    values = np.asarray(values, dtype=np.float32)
    if bits is ValueBits.B32:
        return values.copy(), None
    if bits is ValueBits.B16:
        return values.astype(np.float16), None
    step = np.float32(_scale(values, bits) if scale is None else scale)
    levels = 2 ** (int(bits) - 1) - 1
    codes = np.clip(np.rint(values / step), -levels, levels).astype(np.int8)
    return codes, step


def decode_values(stored: np.ndarray, scale: Optional[np.float32]) -> np.ndarray:
    """float32 values from what :func:`encode_values` stored."""
    if scale is None:
        return stored.astype(np.float32)
    return stored.astype(np.float32) * np.float32(scale)


def quantise(matrix: np.ndarray, bits: ValueBits) -> np.ndarray:
    """The matrix every format decodes to at ``bits`` (zeros stay zero; 32 bits: unchanged)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    out = np.zeros_like(matrix)
    nonzero = matrix != 0
    stored, scale = encode_values(matrix[nonzero], bits)
    out[nonzero] = decode_values(stored, scale)
    return out


def _value_bytes(count: int, bits: ValueBits) -> tuple[int, int]:
    """(bytes of ``count`` packed values, bytes of their scale)."""
    return _bytes(count * int(bits)), (SCALE_BYTES if bits in (ValueBits.B8, ValueBits.B4) else 0)


def _matrix(weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim < 2:
        raise ValueError(f"expected a weight matrix or tensor, got shape {weights.shape}")
    return weights.reshape(weights.shape[0], -1)


# --- EIE ------------------------------------------------------------------------------------------

def kmeans_codebook(values: np.ndarray, clusters: int, iterations: int = 100) -> np.ndarray:
    """Deep Compression's weight sharing: 1-D k-means with linear initialisation.

    Returns ``clusters`` sorted centroids (fewer if there are fewer distinct values).
    """
    values = np.asarray(values, dtype=np.float64)
    distinct = np.unique(values)
    if distinct.size <= clusters:
        return distinct.astype(np.float32)
    centroids = np.linspace(values.min(), values.max(), clusters)
    assign = None
    for _ in range(iterations):
        edges = (centroids[1:] + centroids[:-1]) / 2
        new = np.searchsorted(edges, values)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        sums = np.bincount(assign, weights=values, minlength=clusters)
        counts = np.bincount(assign, minlength=clusters)
        filled = counts > 0                          # an empty cluster keeps its centroid
        centroids = np.where(filled, sums / np.maximum(counts, 1), centroids)
        centroids.sort()
    return centroids.astype(np.float32)


@dataclass(frozen=True)
class EieMatrix:
    """A matrix in EIE's interleaved CSC with relative row indices and a shared-weight codebook."""

    rows: int
    cols: int
    pes: int
    code_bits: int                 # k: bits of v
    value_bits: ValueBits          # precision of the codebook entries
    codebook: np.ndarray           # float32, 2^k entries (fewer used); entry 0 is the zero weight
    codebook_stored: np.ndarray    # the entries as stored at value_bits (scale applied on decode)
    scale: Optional[np.float32]
    v: tuple[np.ndarray, ...]      # per PE: codebook index of every entry (uint8)
    z: tuple[np.ndarray, ...]      # per PE: zeros before every entry (uint8)
    pointers: tuple[np.ndarray, ...]  # per PE: cols + 1 entry offsets (uint16, or uint32 at 32 bits)
    pointer_bits: int = EIE_POINTER_BITS

    @property
    def entries(self) -> int:
        """Stored entries, padding included."""
        return sum(v.size for v in self.v)

    @property
    def padding(self) -> int:
        """Entries that only bridge a run of more than 15 zeros."""
        return sum(int(np.count_nonzero(v == 0)) for v in self.v)

    def byte_counts(self) -> ByteCounts:
        """v and z as packed arrays per PE; pointers per PE; the codebook's used entries."""
        values = sum(_bytes(v.size * self.code_bits) for v in self.v)
        runs = sum(_bytes(z.size * EIE_RUN_BITS) for z in self.z)
        pointers = self.pes * (self.cols + 1) * self.pointer_bits // 8
        # entry 0 is the zero weight, implied by the decoder; the others are stored
        table, scale = _value_bytes(self.codebook.size - 1, self.value_bits)
        return ByteCounts(values, runs, pointers, table + scale)

    @property
    def shared(self) -> np.ndarray:
        """The weight-shared matrix this encoding stands for (what decode() returns)."""
        return self.decode()

    def decode(self) -> np.ndarray:
        """Rebuild the matrix from the entries, pointers and codebook."""
        out = np.zeros((self.rows, self.cols), dtype=np.float32)
        for pe in range(self.pes):
            v, z, ptr = self.v[pe], self.z[pe].astype(np.int64), self.pointers[pe].astype(np.int64)
            if not v.size:
                continue
            col = np.repeat(np.arange(self.cols), np.diff(ptr))
            # each entry moves past its z zeros and itself; rows count from the column's start
            position = np.concatenate([[0], np.cumsum(z + 1)])
            local_row = position[1:] - 1 - np.repeat(position[ptr[:-1]], np.diff(ptr))
            real = v != 0                              # code 0: a padding zero
            out[pe + local_row[real] * self.pes, col[real]] = self.codebook[v[real]]
        return out


def encode_eie(weights: np.ndarray, pes: int = 64, code_bits: int = 4, value_bits: ValueBits = ValueBits.B16,
               iterations: int = 100, pointer_bits: Optional[int] = EIE_POINTER_BITS) -> EieMatrix:
    """Encode a pruned matrix in EIE's format over ``pes`` processing elements.

    Raises ValueError when a PE holds more entries than ``pointer_bits``-bit pointers can address
    (16: EIE's); ``pointer_bits=None`` takes 16 bits where every PE fits them, else 32.
    """
    matrix = _matrix(weights)
    if pes < 1 or not 1 <= code_bits <= 8:
        raise ValueError(f"need pes >= 1 and code_bits in 1..8, got pes={pes}, code_bits={code_bits}")
    value_bits = ValueBits(value_bits)
    rows, cols = matrix.shape
    nonzero = matrix[matrix != 0]
    centroids = kmeans_codebook(nonzero, 2 ** code_bits - 1, iterations) if nonzero.size else np.zeros(0, np.float32)
    stored, scale = encode_values(centroids, value_bits)
    codebook = np.concatenate([[np.float32(0)], decode_values(stored, scale)]).astype(np.float32)
    run = 2 ** EIE_RUN_BITS
    limit_bits = 32 if pointer_bits is None else int(pointer_bits)
    vs, zs, ptrs = [], [], []
    for pe in range(pes):
        local = matrix[pe::pes]                                   # rows pe, pe + N, ...
        col, local_row = np.nonzero(local.T)                      # column-major: CSC order
        values = local[local_row, col]
        first = np.ones(col.size, dtype=bool)
        first[1:] = col[1:] != col[:-1]
        previous = np.where(first, -1, np.concatenate([[-1], local_row[:-1]]))
        gap = local_row - previous - 1
        pads = gap // run                                         # each padding entry covers 16 positions
        count = pads + 1
        total = int(count.sum())
        if total > 2 ** limit_bits - 1:
            raise ValueError(f"PE {pe} holds {total} entries; {limit_bits}-bit pointers address at most "
                             f"{2 ** limit_bits - 1} (use more PEs)")
        v = np.zeros(total, dtype=np.uint8)
        z = np.full(total, run - 1, dtype=np.uint8)
        real = np.cumsum(count) - 1
        edges = (centroids[1:] + centroids[:-1]) / 2
        v[real] = (np.searchsorted(edges, values) + 1).astype(np.uint8)   # nearest centroid; 0 is zero
        z[real] = (gap % run).astype(np.uint8)
        pointers = np.zeros(cols + 1, dtype=np.int64)
        np.cumsum(np.bincount(col, weights=count, minlength=cols).astype(np.int64), out=pointers[1:])
        vs.append(v)
        zs.append(z)
        ptrs.append(pointers)
    if pointer_bits is None:
        pointer_bits = EIE_POINTER_BITS if max(int(p[-1]) for p in ptrs) <= 2 ** EIE_POINTER_BITS - 1 else 32
    width = np.uint16 if pointer_bits <= 16 else np.uint32
    return EieMatrix(rows, cols, pes, code_bits, value_bits, codebook, stored, scale, tuple(vs), tuple(zs),
                     tuple(p.astype(width) for p in ptrs), int(pointer_bits))


# --- bitmask ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BitmaskMatrix:
    """One presence bit per element (row-major) and the non-zero values in that order."""

    rows: int
    cols: int
    value_bits: ValueBits
    bits: np.ndarray               # packed presence bits (np.packbits, row-major)
    values: np.ndarray             # as stored at value_bits
    scale: Optional[np.float32]

    def byte_counts(self) -> ByteCounts:
        values, scale = _value_bytes(self.values.size, self.value_bits)
        return ByteCounts(values, _bytes(self.rows * self.cols), 0, scale)

    def decode(self) -> np.ndarray:
        present = np.unpackbits(self.bits, count=self.rows * self.cols).astype(bool)
        out = np.zeros(self.rows * self.cols, dtype=np.float32)
        out[present] = decode_values(self.values, self.scale)
        return out.reshape(self.rows, self.cols)


def encode_bitmask(weights: np.ndarray, value_bits: ValueBits = ValueBits.B32) -> BitmaskMatrix:
    """Encode a pruned matrix as a bitmask plus values."""
    matrix = _matrix(weights)
    present = matrix != 0
    stored, scale = encode_values(matrix[present], ValueBits(value_bits))
    return BitmaskMatrix(matrix.shape[0], matrix.shape[1], ValueBits(value_bits), np.packbits(present.ravel()),
                         stored, scale)


# --- block-sparse rows ----------------------------------------------------------------------------

@dataclass(frozen=True)
class BsrMatrix:
    """Whole blocks holding a non-zero, with block-column indices and block-row pointers of
    ``index_bits`` bits each (int32 by default)."""

    rows: int
    cols: int
    block: tuple[int, int]
    value_bits: ValueBits
    values: np.ndarray             # (blocks, br, bc) as stored
    scale: Optional[np.float32]
    indices: np.ndarray            # int32 block column of each stored block
    pointers: np.ndarray           # int32, block rows + 1
    index_bits: int = INDEX_BITS   # stored width of the indices (the arrays here are int32 whatever it is)
    pointer_bits: Optional[int] = None   # stored width of the pointers (None: index_bits)

    def byte_counts(self) -> ByteCounts:
        values, scale = _value_bytes(self.values.size, self.value_bits)
        pointer_bits = self.pointer_bits or self.index_bits
        return ByteCounts(values, _bytes(self.indices.size * self.index_bits),
                          _bytes(self.pointers.size * pointer_bits), scale)

    def decode(self) -> np.ndarray:
        br, bc = self.block
        block_rows, block_cols = self.pointers.size - 1, -(-self.cols // bc)
        grid = np.zeros((block_rows, block_cols, br, bc), dtype=np.float32)
        block_row = np.repeat(np.arange(block_rows), np.diff(self.pointers))
        grid[block_row, self.indices] = decode_values(self.values, self.scale).reshape(-1, br, bc)
        return grid.transpose(0, 2, 1, 3).reshape(block_rows * br, block_cols * bc)[: self.rows, : self.cols]


def bsr_structure(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block-column index of every stored block, block-row pointers) of a grid of kept blocks
    (``kept[block row, block column]``), both int32."""
    kept = np.asarray(kept, dtype=bool)
    block_col = np.nonzero(kept)[1]
    pointers = np.zeros(kept.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(kept, axis=1), out=pointers[1:])
    return block_col.astype(np.int32), pointers.astype(np.int32)


def encode_bsr(weights: np.ndarray, block: tuple[int, int] = (4, 4),
               value_bits: ValueBits = ValueBits.B32, index_bits: int = INDEX_BITS,
               pointer_bits: Optional[int] = None) -> BsrMatrix:
    """Encode a pruned matrix as block-sparse rows with ``block = (rows, cols)`` blocks."""
    matrix = _matrix(weights)
    br, bc = block
    if br < 1 or bc < 1:
        raise ValueError(f"block sides must be >= 1, got {block}")
    rows, cols = matrix.shape
    padded = np.zeros((-(-rows // br) * br, -(-cols // bc) * bc), dtype=np.float32)
    padded[:rows, :cols] = matrix
    grid = padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc).transpose(0, 2, 1, 3)
    kept = grid.any(axis=(2, 3))
    block_row, block_col = np.nonzero(kept)
    indices, pointers = bsr_structure(kept)
    stored, scale = encode_values(grid[block_row, block_col].ravel(), ValueBits(value_bits))
    return BsrMatrix(rows, cols, (br, bc), ValueBits(value_bits), stored, scale, indices, pointers, int(index_bits),
                     pointer_bits)


# --- N:M ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NMMatrix:
    """N values and their positions in every group of M consecutive elements of each row."""

    rows: int
    cols: int
    n: int
    m: int
    value_bits: ValueBits
    values: np.ndarray             # (rows, groups, n) as stored
    scale: Optional[np.float32]
    positions: np.ndarray          # (rows, groups, n) uint8 in 0..m-1, increasing within a group

    @property
    def position_bits(self) -> int:
        """Bits of one position: ceil(log2 M)."""
        return math.ceil(math.log2(self.m)) if self.m > 1 else 0

    def byte_counts(self) -> ByteCounts:
        values, scale = _value_bytes(self.values.size, self.value_bits)
        return ByteCounts(values, _bytes(self.positions.size * self.position_bits), 0, scale)

    def decode(self) -> np.ndarray:
        groups = self.values.shape[1]
        out = np.zeros((self.rows, groups, self.m), dtype=np.float32)
        np.put_along_axis(out, self.positions.astype(np.int64),
                          decode_values(self.values, self.scale).reshape(self.positions.shape), axis=2)
        return out.reshape(self.rows, groups * self.m)[:, : self.cols]


def _groups(matrix: np.ndarray, m: int) -> np.ndarray:
    rows, cols = matrix.shape
    padded = np.zeros((rows, -(-cols // m) * m), dtype=np.float32)
    padded[:, :cols] = matrix
    return padded.reshape(rows, -1, m)


def nm_mask(weights: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the N largest magnitudes of every group of M along each row (ties: lower index)."""
    matrix = _matrix(weights)
    groups = _groups(matrix, m)
    order = np.argsort(-np.abs(groups), axis=2, kind="stable")[:, :, :n]
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=2)
    return keep.reshape(matrix.shape[0], -1)[:, : matrix.shape[1]].reshape(np.shape(weights))


def encode_nm(weights: np.ndarray, n: int = 2, m: int = 4, value_bits: ValueBits = ValueBits.B32) -> NMMatrix:
    """Encode an N:M-sparse matrix; raises ValueError naming the first group with more than N."""
    matrix = _matrix(weights)
    if not 1 <= n <= m or m > 256:
        raise ValueError(f"need 1 <= n <= m <= 256, got {n}:{m}")
    groups = _groups(matrix, m)
    counts = np.count_nonzero(groups, axis=2)
    if (counts > n).any():
        row, group = np.argwhere(counts > n)[0]
        raise ValueError(f"row {row}, columns {group * m}..{group * m + m - 1}: {counts[row, group]} non-zeros, "
                         f"more than {n} of {m} (prune with nm_mask first)")
    # non-zeros first, then zero positions, each in index order; the first N, sorted
    positions = np.sort(np.argsort(groups == 0, axis=2, kind="stable")[:, :, :n], axis=2)
    values = np.take_along_axis(groups, positions, axis=2)
    bits = ValueBits(value_bits)
    stored, scale = encode_values(values.ravel(), bits)   # padding zeros do not change the scale
    return NMMatrix(matrix.shape[0], matrix.shape[1], n, m, bits, stored.reshape(values.shape), scale,
                    positions.astype(np.uint8))
