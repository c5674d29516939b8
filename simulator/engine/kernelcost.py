"""The kernel cost model: how long a layer's kernel needs its arithmetic units, from what they execute.

Memory time comes from the traced traffic through the cache model (:mod:`simulator.engine.core`);
this module gives the other side, the time the cores spend *issuing* the kernel, from named
mechanisms whose parameters are datasheet figures or calibrated once per platform
(``compute.kernels`` in a profile):

* **dense** GEMV, GEMM and convolution (implicit GEMM): the output is cut into tiles of
  ``rows_per_task`` rows x ``tile_columns`` columns, one task each; a core computes a tile's
  multiply-adds at its vector FMA rate for the data type (``peak_flops`` / cores, i.e. FMA lanes
  x 2 x clock) times the library's measured inner-loop efficiency; tasks run in waves over the
  cores the kernel uses. Partial tiles and a last wave that leaves cores idle cost real time, so
  the efficiency of a layer follows its shape (tile and wave geometry), not one number per kind.
  A library loop that is bound by its loads and conversions rather than its FMAs (a batch-1 GEMV
  uses each weight once) gives its measured ``cycles_per_vector`` per type instead, plus its
  ``cycles_per_row`` for each row's end (the accumulators reduced and stored). A GEMM (or
  convolution) whose library copies its whole weight matrix into a packed layout at every call
  adds that copy once per call whatever the batch (``pack_cycles_per_vector``): its time is
  affine in the batch, as measured, not a rate. A direct convolution that keeps channels in
  blocks (``channel_block``: oneDNN's nChw16c) computes whole blocks of output channels and of
  input channels, and reorders its activations between the plain and the blocked layout at every
  call (a pass over them at the bandwidth of the level that holds them). A window wider than the
  direct kernel takes (``direct_max_kernel``) is lowered instead: im2col's copy, then the GEMM
  kernel's product of the same shape; so is a small batch-1 convolution the framework keeps from
  the direct library (``native_max_input_elements``: torch's own im2col + GEMM), which also skips
  that library's set-up per call (``call_overhead``).
* **sparse** CSR / CSC products and sparse convolution: an issue cost per step over the
  non-zeros (index load, gather, FMA: ``cycles_per_nonzero``), where a step covers
  ``columns_per_step`` dense columns at once (the vector width the kernel uses on the batch or
  the output pixels) and a warp-per-row kernel takes ``ceil(n / lanes)`` steps for a row of ``n``
  non-zeros; plus a cost per row and column group (``cycles_per_row``: pointer loads, reduction,
  store). Where a kernel's steps wait on each other (a GPU warp per row gathers at the indices it
  has just loaded, with no prefetcher ahead of it), each step also waits the latency of the levels
  its weights and its gathers come from, and a core overlaps only ``rows_in_flight_per_core``
  rows. Convolution by ``im2col`` also writes and reads back the lowered input, at the bandwidth
  of the level it fits in or at the library's ``lowering_cycles_per_element``, whichever is slower.
* **element-wise** kernels (pooling, adds, concats): ``cycles_per_element`` per vector.
* **conversions** of a variant's type (:mod:`simulator.compress.precision`): each stored weight
  of a weight-only or emulated type dequantised once (``dequant_cycles_per_vector`` per vector),
  and int8's quantize / dequantize passes over the input and output at the element kernel's rate;
  the FMAs run at the arithmetic type's peak (int8's for ``@int8``).
* the **format kernels** (``compute.kernels.bsr``, ``nm``, ``bitmask``, ``codebook``; each its own
  kernel kind, since each has its own inner loop and parameters): BSR as dense blocks at the FMA
  rate with block-shaped tiles (partial lanes where a block row is narrower than the vector and
  there are too few columns to vectorise along instead) plus a cost per block (its index load)
  and per block row; N:M on sparse tensor cores (the profile's ``structured_sparse_peak_flops``,
  twice the dense rate on Ampere, in tiles of ``tile_columns`` columns) where the profile has
  them, else as a compressed format costing cycles per kept value with an implicit row structure;
  a bitmask as a popcount / expand stream (cycles per mask word plus per non-zero); EIE's format
  as codebook lookups (cycles per entry, padding entries included, plus per PE column).

Library behaviour no mechanism explains yet stays as a named property of the library on the
profile (``library_efficiency``; ``compute.threads`` for libraries that use fewer cores), each
with its source; nothing here is a fraction of peak per kernel kind for the sparse kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..base.errors import ConfigError
from ..hardware.profile import HardwareProfile, KernelKind, Kernels, SparseConvAlgorithm
from ..memory.kernelshape import KernelShape
from ..model.workload import DType

DENSE_KINDS = (KernelKind.GEMV, KernelKind.GEMM, KernelKind.CONV)
SPARSE_KINDS = (KernelKind.SPMV, KernelKind.SPMM, KernelKind.SPCONV)


@dataclass(frozen=True)
class IssueTime:
    """Seconds a kernel keeps its cores busy issuing, and the mechanism that decided it."""

    seconds: float
    # "fma", "packing", "layout", "vector-loop", "nonzeros", "rows", "row-latency", "lowering", "elements",
    # "conversion"
    mechanism: str


def _kernels(profile: HardwareProfile) -> Kernels:
    """The profile's kernel costs: every profile this model times has them (the profile loader
    requires them of CPUs and GPUs)."""
    if profile.compute.kernels is None:
        raise ConfigError(profile.name, "compute.kernels", "missing: the kernel cost model times this profile")
    return profile.compute.kernels


def core_flops_per_s(profile: HardwareProfile, dtype: DType) -> float:
    """One core's peak FLOP/s in ``dtype``: the profile's peak for that type (or its fp32 peak when
    it gives none) over its cores: FMA lanes x 2 x clock."""
    peaks = profile.compute.peak_flops
    peak = peaks.of(dtype.value) or peaks.best_known
    return float(peak) / profile.compute.cores


def _round_up(value: int, block: int) -> int:
    return -(-value // block) * block


def channel_blocks(shape: KernelShape, block: int) -> tuple[KernelShape, tuple[int, ...]]:
    """A convolution in ``block``-channel blocks (``DenseKernel.channel_block``): its shape with the
    output channels (rows) and, where there is at least a block of them, the input channels of each
    window rounded up to whole blocks, and the activation buffers its layout reorders move, one
    blocked copy each (the output always, the input where its channels are blocked). Other shapes,
    or a block of 1: as they are, nothing reordered."""
    if block <= 1 or not shape.convolution:
        return shape, ()
    in_channels = shape.depth // shape.window
    if in_channels < block:
        return replace(shape, rows=_round_up(shape.rows, block)), (shape.output_bytes,)
    depth = _round_up(in_channels, block) * shape.window
    return replace(shape, rows=_round_up(shape.rows, block), depth=depth), (shape.output_bytes, shape.input_bytes)


def dense_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """Tiles of ``rows_per_task`` x ``tile_columns`` in waves over ``cores`` at the FMA rate, or at
    the kernel's measured ``cycles_per_vector`` for the type where the profile gives one; a
    channel-blocked convolution on whole blocks, plus its layout reorders."""
    compute = profile.compute
    kernel = _kernels(profile).dense(shape.kind)
    if lowered_convolution(profile, shape):
        return _lowered_seconds(profile, shape, cores)
    shape, reordered = channel_blocks(shape, kernel.channel_block)
    tile_rows = compute.rows_per_task.of(shape.kind)
    tile_columns = kernel.tile_columns
    tasks = math.ceil(shape.rows / tile_rows) * math.ceil(shape.columns / tile_columns)
    cores = max(1, min(cores, tasks))
    waves = math.ceil(tasks / cores)
    tile_products = min(tile_rows, shape.rows) * min(tile_columns, shape.columns) * shape.depth
    per_vector = kernel.cycles_per_vector.of(shape.dtype.value)
    if per_vector is not None:
        vectors = math.ceil(tile_products / compute.vector_lanes)
        # each of the tile's outputs ends a row's dot product (the loop's cost a row, where measured)
        outputs = min(tile_rows, shape.rows) * min(tile_columns, shape.columns)
        per_row = kernel.cycles_per_row.of(shape.dtype.value) or 0.0
        return IssueTime(waves * (vectors * per_vector + outputs * per_row) / compute.clock_hz, "vector-loop")
    fma_s = waves * 2.0 * tile_products / (core_flops_per_s(profile, shape.dtype) * kernel.library_efficiency)
    pack_s = packing_seconds(profile, shape, cores)
    layout_s = pass_seconds(profile, sum(reordered), cores)
    mechanism = max((fma_s, "fma"), (pack_s, "packing"), (layout_s, "layout"))[1]
    return IssueTime(fma_s + pack_s + layout_s, mechanism)


def lowered_convolution(profile: HardwareProfile, shape: KernelShape) -> bool:
    """Whether this dense convolution runs lowered (im2col, then a GEMM): its window is wider than
    the direct kernel takes (``conv.direct_max_kernel``), or the framework keeps it from the direct
    library altogether (:func:`native_convolution`)."""
    if not shape.convolution or shape.kind is not KernelKind.CONV:
        return False
    widest = _kernels(profile).dense(KernelKind.CONV).direct_max_kernel
    return (widest is not None and shape.kernel_width > widest) or native_convolution(profile, shape)


#: The widest window the framework's own batch-1 convolution takes (``conv.native_max_input_elements``).
NATIVE_MAX_KERNEL = 3


def native_convolution(profile: HardwareProfile, shape: KernelShape) -> bool:
    """Whether the framework runs this dense convolution with its own im2col + GEMM instead of the
    direct library (``conv.native_max_input_elements``): fp32, batch 1, a window of at most 3 x 3
    and an input of at most that many elements (torch's ``use_mkldnn``)."""
    if not shape.convolution or shape.kind is not KernelKind.CONV or shape.dtype is not DType.FP32:
        return False
    most = _kernels(profile).dense(KernelKind.CONV).native_max_input_elements
    return (most is not None and shape.batch == 1 and shape.kernel_width <= NATIVE_MAX_KERNEL
            and shape.input_bytes // shape.dtype.size_bytes <= most)


def _lowered_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """A convolution the library lowers: the copy of its input into ``depth x columns`` elements,
    written and read back at the bandwidth of the level that holds them (:func:`pass_seconds`: the
    library's own im2col, not ``F.unfold``, whose rate ``spconv.lowering_cycles_per_element`` is:
    oneDNN's AlexNet conv1 at batch 1 took 1.32 ms where the GEMM of its lowered input alone took
    1.13 and ``F.unfold`` of it 1.26), then the GEMM kernel's product of the same shape. That GEMM
    packs the lowered matrix into its panels as it packs weights (``pack_cycles_per_vector``): here
    the lowered operand, not the weights, is the large one (AlexNet's conv1: 1.1 M elements an
    image against 23 k weights)."""
    product = dense_seconds(profile, replace(shape, kind=KernelKind.GEMM, convolution=False, window=1), cores)
    elements = shape.depth * shape.columns
    lowering = pass_seconds(profile, elements * shape.dtype.size_bytes, cores)
    per_vector = _kernels(profile).dense(KernelKind.GEMM).pack_cycles_per_vector.of(shape.dtype.value)
    if per_vector is not None:
        lowering += _packed_seconds(profile, elements, per_vector, cores)
    return IssueTime(product.seconds + lowering, "lowering" if lowering > product.seconds else product.mechanism)


def packing_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> float:
    """Time a GEMM or convolution spends copying its weights into the library's packed layout,
    once per call (``pack_cycles_per_vector`` for the type; 0 where the profile gives none): every
    weight of the layer once, whatever the batch, shared by the kernel's cores."""
    if shape.kind not in (KernelKind.GEMM, KernelKind.CONV):
        return 0.0
    per_vector = _kernels(profile).dense(shape.kind).pack_cycles_per_vector.of(shape.dtype.value)
    if per_vector is None:
        return 0.0
    return _packed_seconds(profile, shape.rows * shape.depth, per_vector, cores)


def _packed_seconds(profile: HardwareProfile, elements: int, per_vector: float, cores: int) -> float:
    """Copying ``elements`` into a packed panel layout at ``per_vector`` cycles per vector of
    ``compute.vector_lanes``, shared by ``cores``."""
    vectors = math.ceil(elements / profile.compute.vector_lanes)
    return vectors * per_vector / (profile.compute.clock_hz * max(1, cores))


def fresh_bytes(profile: HardwareProfile, shape: KernelShape) -> int:
    """Bytes a call maps afresh (``memory.fresh_pages``): its output (a pooling's or a join's too;
    eager attention's scores as the product, scaled and masked, and its probabilities), a
    channel-blocked convolution's blocked copies, an im2col convolution's lowered input and a
    sparse library's narrower copies of its indices (``kernel_index_bits``), each that is above
    the allocator's threshold. 0 without the block."""
    fresh = profile.memory.fresh_pages
    if fresh is None or not shape.output_bytes:
        return 0
    buffers = [shape.output_bytes] * shape.output_copies + list(shape.index_copies)
    kernels = profile.compute.kernels
    if kernels is not None and shape.kind in DENSE_KINDS and not lowered_convolution(profile, shape):
        buffers += channel_blocks(shape, kernels.dense(shape.kind).channel_block)[1]
    elif kernels is not None and shape.kind is KernelKind.SPCONV \
            and kernels.sparse(shape.kind).algorithm is SparseConvAlgorithm.IM2COL:
        buffers.append(shape.lowered_bytes)
    return sum(size for size in buffers if size > fresh.above_bytes)


def fresh_page_seconds(profile: HardwareProfile, shape: KernelShape) -> float:
    """The time a call spends faulting in the pages it maps afresh (:func:`fresh_bytes`), at the
    OS's rate of fresh pages."""
    fresh = profile.memory.fresh_pages
    return fresh_bytes(profile, shape) / fresh.bandwidth_bytes_per_s if fresh is not None else 0.0


def call_overhead_s(profile: HardwareProfile, shape: KernelShape) -> float:
    """The kernel's library's own per-call set-up, beyond the launch (``call_overhead``): a dense
    kernel's for its type (none for a convolution the framework runs itself), a sparse kernel's
    whatever its type."""
    kernels = profile.compute.kernels
    if kernels is None:
        return 0.0
    if native_convolution(profile, shape):
        return 0.0          # the framework's own im2col + GEMM: none of the direct library's set-up
    if shape.kind in DENSE_KINDS:
        return kernels.dense(shape.kind).call_overhead.seconds(shape.dtype.value)
    if shape.kind in SPARSE_KINDS:
        return kernels.sparse(shape.kind).call_overhead_s or 0.0
    return 0.0


def packs_weights(profile: HardwareProfile, shape: KernelShape) -> bool:
    """True when the dense kernel of ``shape`` packs its weights before multiplying them: panel by
    panel (the type is in the kernel's ``packs``), or the whole matrix at every call (the kernel has
    ``pack_cycles_per_vector`` for the type). Its loads then wait for the loop, not run ahead: a
    GEMM whose weights come from DRAM takes its memory time on top of its packing and multiply-adds
    (measured on the development VM: 4864 x 896 at 64-256 rows, cycling 48 matrices instead of one,
    adds their bytes over the DRAM bandwidth in fp32, bf16 and int8 alike)."""
    if shape.kind not in DENSE_KINDS or profile.compute.kernels is None:
        return False
    kernel = profile.compute.kernels.dense(shape.kind)
    return shape.dtype.value in kernel.packs or (
        shape.kind is not KernelKind.GEMV and kernel.pack_cycles_per_vector.of(shape.dtype.value) is not None)


def load_overlap(profile: HardwareProfile, shape: KernelShape) -> float:
    """The share of the kernel's issue time under which its next weight loads run: 1 where its
    loads run ahead of its loop, 0 where they wait for it (the engine then holds one tile, and
    memory and issue take turns). A sparse kernel's is its profile's ``load_overlap``; a dense
    kernel that packs its weights (:func:`packs_weights`) has none; any other, its kernel's
    ``load_overlap`` for the type, else all. A sparse kernel's and an unpacked dense kernel's hold
    for their loads from DRAM (:func:`overlap_is_dram_only`: the engine weighs them by the share
    DRAM serves)."""
    if profile.compute.kernels is None:
        return 1.0
    if shape.kind in SPARSE_KINDS:
        return getattr(profile.compute.kernels, shape.kind.value).load_overlap
    if packs_weights(profile, shape):
        return 0.0
    share = profile.compute.kernels.dense(shape.kind).load_overlap.of(shape.dtype.value) \
        if shape.kind in DENSE_KINDS else None
    return 1.0 if share is None else share


def overlap_is_dram_only(profile: HardwareProfile, shape: KernelShape) -> bool:
    """Whether the kernel's ``load_overlap`` holds for its loads from DRAM only. Both kinds of
    share are measured far beyond the caches, and both kinds of loop keep up with their loads where
    a cache serves them: a dense kernel's (for its type; torch's fp32 GEMV on the Zen 3 guest: 8-12 G
    weights/s over 8 MiB in the L3, the loop's own rate, but 5-6 over 128 MiB, where the int8 GEMV
    streams the same DRAM at 30 GB/s) and a sparse kernel's (torch's SpMV over int32 indices there:
    1.65 cycles a non-zero a core over 8 MiB in the L3, calibrate's in-cache issue cost of 1.6-2.0,
    against 2.3 over 64 MiB). So the share applies to the part of the bytes DRAM serves. A packing
    kernel's (it packs each panel before it multiplies it) holds wherever its loads come from."""
    return shape.kind in SPARSE_KINDS or (shape.kind in DENSE_KINDS and not packs_weights(profile, shape))


def sparse_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """Steps over the non-zeros and per-row work, per column group, spread over ``cores``; for a
    kernel whose steps wait on each other, at least the rows' latency chains over the rows in flight."""
    compute = profile.compute
    kernel = _kernels(profile).sparse(shape.kind)
    groups = math.ceil(max(1, shape.columns) / kernel.columns_per_step)
    nonzero_cycles = shape.row_steps * kernel.cycles_per_nonzero * groups
    row_cycles = shape.rows * kernel.cycles_per_row * groups
    seconds = (nonzero_cycles + row_cycles) / (compute.clock_hz * max(1, cores))
    mechanism = "nonzeros" if nonzero_cycles >= row_cycles else "rows"
    if kernel.rows_in_flight_per_core is not None:
        chain = shape.row_steps * groups * step_latency_s(profile, shape, cores) / (
            kernel.rows_in_flight_per_core * max(1, cores))
        if chain > seconds:
            seconds, mechanism = chain, "row-latency"
    lowering = 0.0
    if shape.kind is KernelKind.SPCONV and kernel.algorithm is SparseConvAlgorithm.IM2COL:
        lowering = pass_seconds(profile, shape.lowered_bytes, cores)
        elements = shape.lowered_bytes // max(1, shape.dtype.size_bytes)
        lowering = max(lowering, elements * kernel.lowering_cycles_per_element / (compute.clock_hz * max(1, cores)))
    if lowering > seconds:
        mechanism = "lowering"
    return IssueTime(seconds + lowering, mechanism)


def _holding_latency_s(profile: HardwareProfile, size_bytes: int, cores: int) -> float:
    """Latency of the first level that holds ``size_bytes`` (DRAM's when none does)."""
    for level in profile.caches:
        if size_bytes <= level.size_bytes * (1 if level.shared else cores):
            return level.latency_s
    return profile.dram.latency_s if profile.dram is not None else 0.0


def step_latency_s(profile: HardwareProfile, shape: KernelShape, cores: int) -> float:
    """One dependent step of a sparse row: its weights' load from the level that holds them, then
    the gather from the level that holds the gathered operand."""
    return (_holding_latency_s(profile, shape.weight_bytes, cores)
            + _holding_latency_s(profile, shape.input_bytes, cores))


def pass_seconds(profile: HardwareProfile, nbytes: int, cores: int) -> float:
    """A copying pass over ``nbytes`` that writes them once and reads them once (im2col's lowered
    input, written and read back; a layout reorder, read and written), at the bandwidth of the
    first cache level that holds them (DRAM's sustained bandwidth when none does)."""
    if nbytes <= 0:
        return 0.0
    for level in profile.caches:
        capacity = level.size_bytes * (1 if level.shared else cores)
        if nbytes <= capacity:
            rate = level.bandwidth_bytes_per_s * (1 if level.shared else cores)
            return 2.0 * nbytes / rate
    if profile.dram is None:
        return 0.0
    return 2.0 * nbytes / profile.dram.sustained_bandwidth_bytes_per_s


def element_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> float:
    """Element-wise work: ``cycles_per_element`` per vector of ``vector_lanes`` elements."""
    compute = profile.compute
    kernel = _kernels(profile).pool
    vectors = math.ceil(shape.elements / compute.vector_lanes)
    return vectors * kernel.cycles_per_element / (compute.clock_hz * max(1, cores))


def vectors_seconds(profile: HardwareProfile, elements: int, cycles_per_vector: float, cores: int) -> float:
    """``elements`` in vectors of ``compute.vector_lanes``, ``cycles_per_vector`` each, over ``cores``."""
    compute = profile.compute
    return math.ceil(elements / compute.vector_lanes) * cycles_per_vector / (compute.clock_hz * max(1, cores))


def conversion_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> float:
    """A variant's conversions: each stored weight dequantised into the arithmetic type
    (``dequant_cycles_per_vector`` of the layer's kernel), and the activations an element-wise pass
    converts (int8's quantize / dequantize: the element kernel's ``cycles_per_element``)."""
    kernels = profile.compute.kernels
    seconds = 0.0
    if shape.dequantized_weights:
        kernel = getattr(kernels, shape.kind.value, None)
        cycles = getattr(kernel, "dequant_cycles_per_vector", 1.0)   # format kernels: one cycle per vector
        seconds += vectors_seconds(profile, shape.dequantized_weights, cycles, cores)
    if shape.converted_elements:
        seconds += vectors_seconds(profile, shape.converted_elements, _kernels(profile).pool.cycles_per_element, cores)
    return seconds


def format_kernel(profile: HardwareProfile, kind: KernelKind):
    """The profile's parameters of a format kernel (``compute.kernels.bsr`` ...); a profile without
    them cannot run the format: one :class:`ConfigError` naming the field."""
    kernel = getattr(profile.compute.kernels, kind.value, None)
    if kernel is None:
        raise ConfigError(profile.name, f"compute.kernels.{kind.value}", f"missing: the profile does not say what its "
                          f"{kind.value} kernel costs, so it cannot run that storage format")
    return kernel


def _column_groups(columns: int, per_step: int) -> int:
    return math.ceil(max(1, columns) / per_step)


def _lane_fill(width: int, lanes: int) -> float:
    """Share of ``lanes`` vector lanes doing work over ``width`` elements (the last vector partial)."""
    width = max(1, width)
    return width / (math.ceil(width / lanes) * lanes)


def vector_elements(profile: HardwareProfile, dtype: DType) -> int:
    """Elements of ``dtype`` in one vector: ``vector_lanes`` fp32 lanes, more for narrower types."""
    return profile.compute.vector_lanes * max(1, 4 // dtype.size_bytes)


def bsr_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """Dense R x C blocks at the FMA rate (partial lanes along the better of the block row and the
    columns), plus ``cycles_per_block`` per block and ``cycles_per_row`` per block row, per column group."""
    compute = profile.compute
    kernel = format_kernel(profile, KernelKind.BSR)
    cores = max(1, cores)
    lanes = vector_elements(profile, shape.dtype)
    fill = max(_lane_fill(shape.block[1], lanes), _lane_fill(shape.columns, lanes))
    fma = 2.0 * shape.nonzeros * max(1, shape.columns) / (
        core_flops_per_s(profile, shape.dtype) * kernel.library_efficiency * fill * cores)
    groups = _column_groups(shape.columns, kernel.columns_per_step)
    per_block = kernel.cycles_per_block
    if shape.columns <= 1 and kernel.vector_cycles_per_block is not None:
        per_block = kernel.vector_cycles_per_block      # the library's matrix-vector path
    overhead = (shape.blocks * per_block + shape.row_steps * kernel.cycles_per_row) * groups / (
        compute.clock_hz * cores)
    return IssueTime(fma + overhead, "fma" if fma >= overhead else "blocks")


def nm_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """On sparse tensor cores: tiles in waves at the structured-sparse (dense-equivalent) rate. Else
    a compressed format with an implicit row structure: the CSR kernel's costs (``spmv`` / ``spmm``
    for FC, ``spconv`` for convolution) over rows that all hold the same kept values."""
    compute = profile.compute
    sparse = compute.structured_sparse_peak_flops
    peak = sparse.of(shape.dtype.value) if sparse is not None else None
    if peak:
        kernel = format_kernel(profile, KernelKind.NM)
        tile_rows = compute.rows_per_task.of(KernelKind.GEMM if shape.columns > 1 else KernelKind.GEMV)
        tasks = math.ceil(shape.rows / tile_rows) * math.ceil(max(1, shape.columns) / kernel.tile_columns)
        used = max(1, min(cores, tasks))
        tile_flops = 2.0 * min(tile_rows, shape.rows) * kernel.tile_columns * shape.depth
        rate = peak / compute.cores * kernel.library_efficiency
        return IssueTime(math.ceil(tasks / used) * tile_flops / rate, "sparse-tensor-core")
    kind = _nm_sparse_kind(shape)
    lanes = compute.lanes_per_row.of(kind)
    per_row = math.ceil(shape.nonzeros / max(1, shape.rows))
    steps = shape.rows * max(1, math.ceil(per_row / lanes))
    return sparse_seconds(profile, replace(shape, kind=kind, row_steps=steps, lowered_bytes=0), cores)


def _nm_sparse_kind(shape: KernelShape) -> KernelKind:
    """The CSR kernel whose costs an N:M product without sparse tensor cores takes."""
    if shape.convolution:
        return KernelKind.SPCONV
    return KernelKind.SPMV if shape.columns <= 1 else KernelKind.SPMM


def bitmask_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """``cycles_per_word`` per mask word and ``cycles_per_nonzero`` per stored value, per column group."""
    kernel = format_kernel(profile, KernelKind.BITMASK)
    groups = _column_groups(shape.columns, kernel.columns_per_step)
    word_cycles = math.ceil(shape.mask_bits / kernel.word_bits) * kernel.cycles_per_word * groups
    value_cycles = shape.nonzeros * kernel.cycles_per_nonzero * groups
    return IssueTime((word_cycles + value_cycles) / (profile.compute.clock_hz * max(1, cores)),
                     "mask-words" if word_cycles > value_cycles else "nonzeros")


def codebook_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """``cycles_per_entry`` per stored entry (padding included) and ``cycles_per_column`` per PE
    column, per column group."""
    kernel = format_kernel(profile, KernelKind.CODEBOOK)
    groups = _column_groups(shape.columns, kernel.columns_per_step)
    entry_cycles = shape.nonzeros * kernel.cycles_per_entry * groups
    column_cycles = shape.pointer_reads * kernel.cycles_per_column * groups
    return IssueTime((entry_cycles + column_cycles) / (profile.compute.clock_hz * max(1, cores)),
                     "entries" if entry_cycles >= column_cycles else "columns")


_FORMAT_COSTS = {KernelKind.BSR: bsr_seconds, KernelKind.NM: nm_seconds, KernelKind.BITMASK: bitmask_seconds,
                 KernelKind.CODEBOOK: codebook_seconds}


def issue_time(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """The time ``cores`` cores (SMs) of ``profile`` spend issuing the kernel ``shape``."""
    if profile.compute.kernels is None:
        raise ValueError(f"{profile.name}: compute.kernels is needed to time {shape.kind.value} kernels")
    if shape.kind in DENSE_KINDS:
        issue = dense_seconds(profile, shape, cores)
    elif shape.kind in SPARSE_KINDS:
        issue = sparse_seconds(profile, shape, cores)
    elif shape.kind in _FORMAT_COSTS:
        issue = _FORMAT_COSTS[shape.kind](profile, shape, cores)
    else:
        return IssueTime(element_seconds(profile, shape, cores), "elements")
    converting = conversion_seconds(profile, shape, cores)
    if converting > issue.seconds:
        return IssueTime(issue.seconds + converting, "conversion")
    return IssueTime(issue.seconds + converting, issue.mechanism) if converting else issue
