"""The geometry of the work a layer's kernel does: what the kernel cost model needs to know.

The traffic stage says which bytes a kernel touches; this says how much arithmetic and how many
issue steps it takes, from the layer's shape and the real encoded weights (row lengths decide
how many steps a warp-per-row SpMV needs). The engine's cost model
(:mod:`simulator.engine.kernelcost`) turns it into time on a profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..compress.compression import EncodedWeights, StorageFormat
from ..hardware.profile import KernelKind
from ..model.workload import DType, Layer, LayerKind


@dataclass(frozen=True)
class KernelShape:
    """One layer's kernel as the cost model sees it.

    A weighted layer is a product ``C[rows, columns] = A[rows, depth] x B[depth, columns]``: A the
    weights (out features / channels x reduction length), B the input (FC: the batch's vectors;
    convolution: the implicitly lowered input, batch x output pixels columns).
    """

    kind: KernelKind
    dtype: DType
    rows: int = 0               # output rows M (sparse CSC: the columns it walks)
    columns: int = 0            # dense columns N each row produces: batch x output pixels
    depth: int = 0              # reduction length K of one output (dense)
    nonzeros: int = 0           # stored weights a sparse kernel multiplies
    row_steps: int = 0          # issue steps over the non-zeros: sum over rows of ceil(n / lanes per row)
    elements: int = 0           # element-wise kernels: elements processed
    gathers_per_request: int = 1   # gather line accesses one demand request covers (a warp's lanes)
    lowered_bytes: int = 0      # sparse convolution by im2col: bytes of the lowered input matrix
    weight_bytes: int = 0       # the encoded weights a sparse kernel streams (values, indices, pointers)
    input_bytes: int = 0        # the input operand: what a sparse kernel gathers from, a convolution reads
    output_bytes: int = 0       # the output activations (weighted and element-wise layers)
    output_copies: int = 1      # tensors of that size a call materialises (eager attention's scores: 3)
    window: int = 1             # a convolution's k x k window: depth = input channels per group x window
    dequantized_weights: int = 0   # stored weights converted into ``dtype`` before their FMAs (weight-only types)
    converted_elements: int = 0    # activations converted by element-wise passes (int8's quantize / dequantize)
    blocks: int = 0             # BSR: stored blocks
    block: tuple[int, int] = (0, 0)   # BSR: block rows x columns
    mask_bits: int = 0          # bitmask: bits of mask the kernel scans
    pointer_reads: int = 0      # EIE's format: per-PE column pointer pairs (PEs x columns)
    convolution: bool = False   # the layer is a convolution (columns are output pixels)
    index_copies: tuple[int, ...] = ()   # bytes of each narrower index array the library copies a call
    batch: int = 1              # samples a call computes (a framework picks a convolution's library by it)

    @property
    def kernel_width(self) -> int:
        """A convolution's square window's side (1 for other kernels)."""
        return math.isqrt(self.window)

    @property
    def dense_macs(self) -> int:
        """Multiply-adds of the dense product (rows x columns x depth)."""
        return self.rows * self.columns * self.depth


def _row_steps(enc: EncodedWeights, lanes: int) -> int:
    """Issue steps of a CSR product with ``lanes`` lanes per row: a row of ``n`` non-zeros takes
    ``max(1, ceil(n / lanes))`` (an empty row still reads its pointers and writes its zero)."""
    per_row = np.diff(enc.pointer_array.astype(np.int64, copy=False))
    if lanes == 1:
        return int(np.maximum(per_row, 1).sum())
    return int(np.maximum(1, -(-per_row // lanes)).sum())


#: Vector passes an element-wise decoder kernel makes over its elements: an RMSNorm sums the squares,
#: then scales; a softmax finds the row's maximum, exponentiates and sums, then normalises; a gated
#: activation computes act(gate), then multiplies by up; an embedding lookup copies its rows once.
DECODER_PASSES = {LayerKind.NORM: 2, LayerKind.SOFTMAX: 3, LayerKind.GLU: 2, LayerKind.EMBEDDING: 1}


def decoder_shape(layer: Layer, batch: int, kind: KernelKind) -> KernelShape:
    """The work of a decoder layer (see :mod:`simulator.model.llm`). The attention products are the
    dense model's GEMVs / GEMMs with the cache as the matrix, one per sequence and key-value head:
    the scores multiply the cached keys (rows: the keys each query attends to on average, depth: the
    head dim) by the group's queries (columns: query heads per key-value head x queries); the output
    multiplies the cached values (rows: head dim, depth: the keys) by the probabilities. The cache
    is in its own type (``kv_dtype``), the arithmetic in the activations'."""
    if layer.kind.reads_kv_cache:
        a = layer.attention_shape
        keys = -(-a.keys_summed // a.queries)
        pairs = a.sequences * a.kv_heads
        columns = a.group * a.queries
        if layer.kind is LayerKind.ATTN_SCORES:
            # eager attention materialises the product, its scaled copy and, under a causal mask,
            # the masked copy, each a full queries x keys matrix per head
            return KernelShape(kind, layer.dtype, rows=pairs * keys, columns=columns, depth=a.head_dim,
                               nonzeros=pairs * keys * a.head_dim, output_bytes=_scores_bytes(layer),
                               output_copies=3 if a.queries > 1 else 2)
        return KernelShape(kind, layer.dtype, rows=pairs * a.head_dim, columns=columns, depth=keys,
                           nonzeros=pairs * keys * a.head_dim)
    attention = layer.attention   # a softmax over scores has one; norms and activations have none
    elements = layer.out_elements * batch if attention is None else \
        attention.sequences * attention.heads * attention.keys_summed
    return KernelShape(kind, layer.dtype, elements=int(elements * DECODER_PASSES[layer.kind]),
                       output_bytes=_scores_bytes(layer) if attention is not None else 0)


def _scores_bytes(layer: Layer) -> int:
    """One tensor of attention scores (or probabilities) as eager attention holds it: every query
    against the last query's keys, masked or not, per head and sequence."""
    a = layer.attention_shape
    return a.sequences * a.heads * a.queries * a.keys_last * layer.dtype.size_bytes


def _bsr_shape(shape: KernelShape, enc: EncodedWeights) -> KernelShape:
    """Stored blocks, and block rows as the row steps (each reads its pointers, stores its outputs)."""
    return replace(shape, blocks=int(enc.index_array.size), block=enc.block, row_steps=enc.rows // enc.block[0])


def _bitmask_shape(shape: KernelShape, enc: EncodedWeights) -> KernelShape:
    """Every mask bit is scanned; the stored values are the non-zeros."""
    return replace(shape, mask_bits=enc.rows * enc.cols)


def _eie_shape(shape: KernelShape, enc: EncodedWeights) -> KernelShape:
    """Every entry, padding included, is a lookup; every PE walks every column's pointers."""
    return replace(shape, pointer_reads=enc.pes * enc.cols)


#: How the format kernels' shapes follow from their encodings (N:M: the stored values alone).
_FORMAT_SHAPES = {
    StorageFormat.BSR: _bsr_shape,
    StorageFormat.NM: lambda shape, enc: shape,
    StorageFormat.BITMASK: _bitmask_shape,
    StorageFormat.EIE: _eie_shape,
}


def kernel_shape(layer: Layer, enc: Optional[EncodedWeights], batch: int, kind: KernelKind,
                 lanes_per_row: int = 1) -> KernelShape:
    """The work of ``layer`` at ``batch`` with its encoded weights ``enc`` (None: no weights)."""
    dtype = layer.dtype
    if layer.kind.is_decoder:
        return decoder_shape(layer, batch, kind)
    if not layer.kind.has_weights or enc is None:
        elements = layer.macs_per_sample * batch if layer.kind is not LayerKind.CONCAT else layer.out_elements * batch
        return KernelShape(kind, dtype, elements=int(elements), output_bytes=layer.out_bytes(batch))
    rows = layer.out_shape[0]
    columns = batch * layer.out_pixels
    depth = layer.weight_count // rows
    if enc.format is StorageFormat.DENSE:
        if layer.kind is LayerKind.CONV:
            return KernelShape(kind, dtype, rows=rows, columns=columns, depth=depth, nonzeros=rows * depth,
                               input_bytes=layer.in_bytes(batch), output_bytes=layer.out_bytes(batch),
                               window=layer.kernel_hw ** 2, convolution=True, batch=batch)
        return KernelShape(kind, dtype, rows=rows, columns=columns, depth=depth, nonzeros=rows * depth,
                           output_bytes=layer.out_bytes(batch))
    if enc.format in _FORMAT_SHAPES:
        return _FORMAT_SHAPES[enc.format](KernelShape(kind, dtype, rows=rows, columns=columns, depth=depth,
                                                      nonzeros=enc.stored, input_bytes=layer.in_bytes(batch),
                                                      output_bytes=layer.out_bytes(batch),
                                                      convolution=layer.kind is LayerKind.CONV), enc)
    if enc.format is StorageFormat.CSC:
        return KernelShape(kind, dtype, rows=enc.cols, columns=columns, depth=depth, nonzeros=enc.nnz,
                           row_steps=enc.nnz, output_bytes=layer.out_bytes(batch))
    lanes = lanes_per_row if kind is KernelKind.SPMV else 1
    lowered = 0
    if layer.kind is LayerKind.CONV:
        lowered = columns * depth * dtype.size_bytes
    return KernelShape(kind, dtype, rows=rows, columns=columns, depth=depth, nonzeros=enc.nnz,
                       row_steps=_row_steps(enc, lanes), gathers_per_request=lanes, lowered_bytes=lowered,
                       weight_bytes=enc.total_bytes, input_bytes=layer.in_bytes(batch),
                       output_bytes=layer.out_bytes(batch))


def with_precision(shape: KernelShape, layer: Layer, batch: int, arithmetic: DType, convert_weights: bool,
                   convert_activations: bool) -> KernelShape:
    """``shape`` as a variant's type runs it: the multiply-adds in ``arithmetic``, each stored weight
    converted once per kernel where ``convert_weights`` (a weight-only or emulated type: the
    converted value is reused for every column), and the input and output elements converted by
    element-wise passes where ``convert_activations`` (int8's on-the-fly quantization of the input
    and dequantization of the int32 output; an emulated type's conversions)."""
    if not layer.kind.has_weights:
        return shape
    weights = shape.nonzeros if convert_weights else 0
    elements = (layer.in_elements + layer.out_elements) * batch if convert_activations else 0
    return replace(shape, dtype=arithmetic, dequantized_weights=weights, converted_elements=elements)
