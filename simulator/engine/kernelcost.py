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
* **sparse** CSR / CSC products and sparse convolution: an issue cost per step over the
  non-zeros (index load, gather, FMA: ``cycles_per_nonzero``), where a step covers
  ``columns_per_step`` dense columns at once (the vector width the kernel uses on the batch or
  the output pixels) and a warp-per-row kernel takes ``ceil(n / lanes)`` steps for a row of ``n``
  non-zeros; plus a cost per row and column group (``cycles_per_row``: pointer loads, reduction,
  store). Where a kernel's steps wait on each other (a GPU warp per row gathers at the indices it
  has just loaded, with no prefetcher ahead of it), each step also waits the latency of the levels
  its weights and its gathers come from, and a core overlaps only ``rows_in_flight_per_core``
  rows. Convolution by ``im2col`` also writes and reads back the lowered input, at the bandwidth
  of the level it fits in.
* **element-wise** kernels (pooling, adds, concats): ``cycles_per_element`` per vector.
* **conversions** of a variant's type (:mod:`simulator.compress.precision`): each stored weight
  of a weight-only or emulated type dequantised once (``dequant_cycles_per_vector`` per vector),
  and int8's quantize / dequantize passes over the input and output at the element kernel's rate;
  the FMAs run at the arithmetic type's peak (int8's for ``@int8``).

Library behaviour no mechanism explains yet stays as a named property of the library on the
profile (``library_efficiency``; ``compute.threads`` for libraries that use fewer cores), each
with its source; nothing here is a fraction of peak per kernel kind for the sparse kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..hardware.profile import HardwareProfile, KernelKind, SparseConvAlgorithm
from ..memory.kernelshape import KernelShape
from ..model.workload import DType

DENSE_KINDS = (KernelKind.GEMV, KernelKind.GEMM, KernelKind.CONV)
SPARSE_KINDS = (KernelKind.SPMV, KernelKind.SPMM, KernelKind.SPCONV)


@dataclass(frozen=True)
class IssueTime:
    """Seconds a kernel keeps its cores busy issuing, and the mechanism that decided it."""

    seconds: float
    mechanism: str      # "fma", "nonzeros", "rows", "row-latency", "lowering", "elements", "conversion"


def core_flops_per_s(profile: HardwareProfile, dtype: DType) -> float:
    """One core's peak FLOP/s in ``dtype``: the profile's peak for that type (or its fp32 peak when
    it gives none) over its cores: FMA lanes x 2 x clock."""
    peaks = profile.compute.peak_flops
    peak = peaks.of(dtype.value) or peaks.best_known
    return float(peak) / profile.compute.cores


def dense_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> float:
    """Tiles of ``rows_per_task`` x ``tile_columns`` in waves over ``cores`` at the FMA rate."""
    compute = profile.compute
    kernel = compute.kernels.dense(shape.kind)
    tile_rows = compute.rows_per_task.of(shape.kind)
    tile_columns = kernel.tile_columns
    tasks = math.ceil(shape.rows / tile_rows) * math.ceil(shape.columns / tile_columns)
    cores = max(1, min(cores, tasks))
    waves = math.ceil(tasks / cores)
    tile_flops = 2.0 * min(tile_rows, shape.rows) * min(tile_columns, shape.columns) * shape.depth
    return waves * tile_flops / (core_flops_per_s(profile, shape.dtype) * kernel.library_efficiency)


def sparse_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """Steps over the non-zeros and per-row work, per column group, spread over ``cores``; for a
    kernel whose steps wait on each other, at least the rows' latency chains over the rows in flight."""
    compute = profile.compute
    kernel = compute.kernels.sparse(shape.kind)
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
        lowering = lowering_seconds(profile, shape.lowered_bytes, cores)
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


def lowering_seconds(profile: HardwareProfile, lowered_bytes: int, cores: int) -> float:
    """im2col's lowered input, written once and read back once, at the bandwidth of the first cache
    level that holds it (DRAM's sustained bandwidth when none does)."""
    if lowered_bytes <= 0:
        return 0.0
    for level in profile.caches:
        capacity = level.size_bytes * (1 if level.shared else cores)
        if lowered_bytes <= capacity:
            rate = level.bandwidth_bytes_per_s * (1 if level.shared else cores)
            return 2.0 * lowered_bytes / rate
    if profile.dram is None:
        return 0.0
    return 2.0 * lowered_bytes / profile.dram.sustained_bandwidth_bytes_per_s


def element_seconds(profile: HardwareProfile, shape: KernelShape, cores: int) -> float:
    """Element-wise work: ``cycles_per_element`` per vector of ``vector_lanes`` elements."""
    compute = profile.compute
    kernel = compute.kernels.pool
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
        kernel = kernels.dense(shape.kind) if shape.kind in DENSE_KINDS else kernels.sparse(shape.kind)
        seconds += vectors_seconds(profile, shape.dequantized_weights, kernel.dequant_cycles_per_vector, cores)
    if shape.converted_elements:
        seconds += vectors_seconds(profile, shape.converted_elements, kernels.pool.cycles_per_element, cores)
    return seconds


def issue_time(profile: HardwareProfile, shape: KernelShape, cores: int) -> IssueTime:
    """The time ``cores`` cores (SMs) of ``profile`` spend issuing the kernel ``shape``."""
    if profile.compute.kernels is None:
        raise ValueError(f"{profile.name}: compute.kernels is needed to time {shape.kind.value} kernels")
    if shape.kind in DENSE_KINDS:
        issue = IssueTime(dense_seconds(profile, shape, cores), "fma")
    elif shape.kind in SPARSE_KINDS:
        issue = sparse_seconds(profile, shape, cores)
    else:
        return IssueTime(element_seconds(profile, shape, cores), "elements")
    converting = conversion_seconds(profile, shape, cores)
    if converting > issue.seconds:
        return IssueTime(issue.seconds + converting, "conversion")
    return IssueTime(issue.seconds + converting, issue.mechanism) if converting else issue
