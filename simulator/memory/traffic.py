"""Traffic: turn each layer and its encoded weights into the memory accesses a kernel makes.

Every layer becomes one trace of byte addresses (one access per cache line a stream touches,
at the first cache level's line size), with a read/write flag, the core that issues it and
the stream it belongs to. Buffers get fixed addresses from a bump allocator, so the same
buffer has the same address in every repetition and cache warmth across inferences is real.

Kernels and their access order (all vectorised, no Python loop per address):

* Dense FC and convolution lower to one blocked GEMM, ``C[M, N] = A[M, K] x B[K, N]`` with
  A the weights, B the input (im2col done implicitly) and C the output. The output rows M
  are split into equal contiguous ranges, one per core. Each core walks its rows in blocks
  of ``mc`` rows and the input in blocks of ``kc`` channels (features for FC): for every
  (row block, channel block) it reads the input block, then the matching weight block; after
  the last channel block it writes the outputs of its rows. ``kc`` is the largest channel
  count whose input block fills half the first cache level; ``mc`` the largest row count
  whose weight block fills half the last private level. So weights stream once per
  inference and the input is re-read once per row block, from wherever it still is.
* On a GPU (``CoreView.gpu``) the same GEMM follows the thread-block grid instead: block ``t``
  takes ``rows_per_task`` output rows (a convolution the GEMM's: an implicit GEMM tiles output
  channels like an SGEMM) and runs on SM ``t mod SMs``, the SMs being as many as the occupancy
  counts. An SM keeps up to :data:`RESIDENT_BLOCKS` blocks resident: block ``t`` sits in lane
  ``(t // SMs) mod resident`` and a lane runs its blocks one after another, each reading per
  k-chunk (``kc`` as above: the chunk a block stages) its input chunk, then its rows' weights,
  and at the end writing its outputs. The lanes of all SMs are interleaved like cores, so the
  resident blocks read an input chunk close together in time and it hits on chip for all but
  the first; weights stream once.
* CSR FC (SpMV / SpMM): rows are split between cores with equal non-zeros. In non-zero
  order a core reads the row pointer, the value and the column index (once per line, as a
  sequential stream), then gathers the input at that real column index: one line per
  non-zero at batch 1, ``batch`` values (row-major ``K x batch`` operand, as MKL's and
  cuSPARSE's csrmm read it) at larger batches; at the end of a row it writes the output row.
* CSC FC: columns are split between cores; per column the input value is read once and
  every non-zero's output row is read-modified-written (a write access: write-allocate).
* Sparse convolution (CSR weights): per block of output channels a core reads the block's
  values, indices and pointers, then the input planes of just the channels the block's
  non-zeros reference, then writes the block's output planes. A block holds as many rows as
  fit half of the largest cache share one core has (a private level, or a shared level
  divided by the cores), so the input is re-read once per block.
* BSR FC: block rows are split between cores with equal blocks. Per block row its pointer, per
  block its block-column index and its R x C values (sequential streams, once per line) and the
  gather of its C input rows (``C x batch`` contiguous operand values); the block row's R output
  rows at its end. BSR convolution: as the CSR one, in groups of block rows.
* N:M (FC and convolution) and bitmask (FC): the dense GEMM's blocking (and GPU thread-block
  grid), the weight stream of each row and k-chunk replaced by the format's arrays: the kept
  values and their positions (N:M), the mask bits and the chunk's share of the row's values
  (bitmask, in proportion to the chunk: the mask alone would say exactly which). The input is
  read densely, as these kernels do.
* EIE's format (FC): PEs split between cores; per PE, column by column, its pointer, the
  column's activation and its packed ``v`` and ``z`` entries (padding included); then its output
  rows (rows p, p + PEs, ...).
* Array entries are addressed at their stored width in bits (4-bit values, 16-bit indices). A
  profile whose sparse library stores wider indices than the matrix needs
  (``compute.kernels.index_bits``) gets the encoding widened first. A library whose kernels read
  narrower ones than it stores (``compute.kernels.kernel_index_bits``: torch's CSR and BSR over
  MKL's LP64 interface) copies them at every call: each core first reads its equal share of the
  stored pointers and indices and writes the narrower copy, a chunk at a time, and the kernel's
  trace then reads the copy.
* Pooling reads its input planes and writes its output planes, channels split among cores.
* An add (residual join) streams its two inputs and its output together, line by line: a
  line of the first input, the same line of the second, then the output line (channels
  split among cores), as an element-wise kernel does.
* A concat (an inception join) copies, sample by sample, each input's slice of the output
  channels a core owns: it reads the slice, then writes it into the output at its channel
  offset (output channels split among cores).

Streams from different cores are interleaved in groups of :data:`INTERLEAVE` accesses, the
order in which concurrently running cores reach shared levels.

Which function traces which layer is the table :data:`TRACES`, from (layer kind, storage format)
to a :class:`TraceRow`; a trace function gets a :class:`TraceContext`. Every access also carries
the cache model's hints (:attr:`LayerTraffic.hints`): whether it belongs to a stream (all but
gather loads) and whether it is a store that overwrites whole sectors (output stores).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np

from ..compress.compression import EncodedWeights, StorageFormat
from ..hardware.profile import DeviceKind, HardwareProfile, KernelKind
from ..model.workload import Layer, LayerKind, Workload, layer_seed
from .cache import HINT_OVERWRITE, HINT_STREAM
from .jit import numba
from .kernelshape import KernelShape, kernel_shape

INTERLEAVE = 16          # accesses a core issues before the next core's turn
PAGE_BYTES = 4096        # buffer alignment of the bump allocator
DEFAULT_LINE_BYTES = 64  # access granularity when a profile has no caches
MAX_TILES = 64           # engine tiles per layer (SimPy sees tiles, not lines)
MIN_TILE_ACCESSES = 512
# Thread blocks one SM keeps resident at once in a GPU trace: 2048 threads per SM (Kepler to Ampere)
# over 128-thread blocks, the cuBLAS GEMV / SGEMM block size the profiles' rows_per_task reads.
RESIDENT_BLOCKS = 16


class StreamKind(enum.IntEnum):
    """Which data an access belongs to."""

    WEIGHT_VALUES = 0
    WEIGHT_INDICES = 1
    WEIGHT_POINTERS = 2
    INPUT = 3
    GATHER = 4
    OUTPUT = 5
    KV_CACHE = 6         # a decoder's cached keys and values, streamed by its attention


@dataclass(frozen=True)
class CoreView:
    """What the traffic stage needs from a profile: cores and the cache sizes used for blocking."""

    cores: int
    line_bytes: int
    first_level_bytes: int
    last_private_bytes: int
    cache_share_bytes: int = 0  # the largest cache capacity one core can count on (shared levels / cores)
    rows_per_task: tuple[tuple[KernelKind, int], ...] = ()  # FC kernels' unit of work (see RowsPerTask)
    kernel_threads: tuple[tuple[KernelKind, int], ...] = ()  # kernels that use fewer cores (see Threads)
    lanes_per_row: tuple[tuple[KernelKind, int], ...] = ()  # SIMD lanes on one sparse row (see LanesPerRow)
    gpu: bool = False   # traces follow the thread-block grid (dense GEMMs) instead of per-core cache blocking
    index_bits: Optional[int] = None   # the sparse library's index width (compute.kernels.index_bits)
    kernel_index_bits: Optional[int] = None   # the width its kernels read (compute.kernels.kernel_index_bits)

    @staticmethod
    def of(profile: HardwareProfile, threads: Optional[int] = None) -> CoreView:
        """Blocking view of a profile; ``threads`` limits the cores used."""
        caches = profile.caches
        cores = min(threads or profile.compute.cores, profile.compute.cores)
        line = caches[0].line_bytes if caches else DEFAULT_LINE_BYTES
        first = caches[0].size_bytes if caches else 32 * 1024
        private = [c.size_bytes for c in caches if not c.shared]
        last_private = private[-1] if private else first
        share = max([c.size_bytes // (cores if c.shared else 1) for c in caches], default=first)
        tasks = tuple((k, profile.compute.rows_per_task.of(k))
                      for k in (KernelKind.GEMV, KernelKind.GEMM, KernelKind.SPMV, KernelKind.SPMM))
        kernel_threads = tuple((k, n) for k in KernelKind if (n := profile.compute.threads.of(k)) is not None)
        lanes = tuple((k, n) for k in (KernelKind.SPMV, KernelKind.SPMM)
                      if (n := profile.compute.lanes_per_row.of(k)) > 1)
        kernels = profile.compute.kernels
        return CoreView(cores, line, first, last_private, max(share, last_private), tasks, kernel_threads, lanes,
                        profile.kind is DeviceKind.GPU, kernels.index_bits if kernels is not None else None,
                        kernels.kernel_index_bits if kernels is not None else None)

    def cores_for(self, kind: KernelKind) -> int:
        """Cores a kernel of ``kind`` may use."""
        return min(self.cores, dict(self.kernel_threads).get(kind, self.cores))

    def tasks(self, kind: KernelKind, rows: int) -> int:
        """Units of work a kernel of ``kind`` splits ``rows`` output rows into."""
        per_task = dict(self.rows_per_task).get(kind, 1)
        return -(-rows // per_task)

    def block_rows(self, kind: KernelKind) -> int:
        """Output rows of one GPU thread block of a dense kernel: its rows per task, a convolution
        taking the GEMM's (cuDNN's implicit GEMM tiles output channels like an SGEMM tile)."""
        dense_shaped = (KernelKind.CONV, KernelKind.NM, KernelKind.BITMASK)   # tiled like an SGEMM
        return dict(self.rows_per_task).get(KernelKind.GEMM if kind in dense_shaped else kind, 1)


@dataclass(frozen=True)
class LayerTraffic:
    """One layer's accesses in issue order, and the work that goes with them."""

    layer: Layer
    kernel: KernelKind
    flops: float
    addresses: np.ndarray     # int64 byte addresses, one per line touched
    is_write: np.ndarray      # bool
    core: np.ndarray          # int16
    stream: np.ndarray        # int8 StreamKind
    cores_used: int
    occupancy: float          # share of the lanes in use kept busy: tasks not dividing into whole waves, short rows
    weight_bytes: int         # encoded weight footprint (values + indices + pointers)
    line_bytes: int           # access granularity: one access per line of this size
    gather_bytes: int         # bytes a GATHER access actually uses (the rest of its line is over-fetch)
    shape: Optional[KernelShape] = None   # the kernel's work, for the kernel cost model

    @property
    def accesses(self) -> int:
        """Number of line accesses."""
        return int(self.addresses.size)

    @cached_property
    def hints(self) -> np.ndarray:
        """The cache model's hint bits per access (uint8, see :mod:`simulator.memory.cache`): every
        access but a gather load belongs to a stream; an output store overwrites whole sectors (a
        layer writes every byte of its output, and where two cores' ranges share a line each writes
        its part), while a scatter-add into the output (a GATHER store) must read the line first."""
        bits = np.empty(self.accesses, dtype=np.uint8)
        _hint_bits(np.ascontiguousarray(self.stream, dtype=np.int8), np.ascontiguousarray(self.is_write, dtype=bool),
                   bits)
        return bits

    def tile_bounds(self) -> np.ndarray:
        """Start indices of the engine's tiles plus the end: contiguous, near-equal chunks."""
        n = self.accesses
        tiles = int(min(MAX_TILES, max(1, n // MIN_TILE_ACCESSES)))
        return np.linspace(0, n, tiles + 1).astype(np.int64)


# Speed trick: one compiled pass that releases the GIL. Six numpy passes took the GIL back between
# each other, and waited for it behind the other stages' threads: 0.05-0.08 s of wall time in the
# cache model's thread of each variant of a warm VGG-16 run, for 0.01-0.02 s of work.
@numba.njit(cache=True, nogil=True)
def _hint_bits(stream, is_write, bits):  # pragma: no cover - compiled
    """:attr:`LayerTraffic.hints` of each access into ``bits``: a stream unless a gather load, an
    overwrite if an output store."""
    for i in range(stream.size):
        write = is_write[i]
        in_stream = (stream[i] != _GATHER) | write
        overwrite = (stream[i] == _OUTPUT) & write
        bits[i] = np.uint8(in_stream) * np.uint8(HINT_STREAM) | np.uint8(overwrite) * np.uint8(HINT_OVERWRITE)


_GATHER, _OUTPUT = int(StreamKind.GATHER), int(StreamKind.OUTPUT)     # plain ints for the compiled pass


class AddressSpace:
    """Bump allocator: every buffer gets a page-aligned base address that never moves."""

    def __init__(self) -> None:
        self._next = PAGE_BYTES
        self.buffers: dict[str, tuple[int, int]] = {}

    def base(self, name: str, size_bytes: int) -> int:
        """Base address of buffer ``name`` (allocated on first use)."""
        if name not in self.buffers:
            self.buffers[name] = (self._next, size_bytes)
            self._next += -(-max(size_bytes, 1) // PAGE_BYTES) * PAGE_BYTES
        return self.buffers[name][0]


# --- vectorised building blocks -------------------------------------------------------

def _expand_ranges(first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(first[i], first[i] + count[i])`` for all i, without a loop."""
    count = count.astype(np.int64, copy=False)
    if count.size and count.min() == 1 and count.max() == 1:
        return first.astype(np.int64, copy=False)
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(count) - count, count)
    return np.repeat(first.astype(np.int64, copy=False), count) + (np.arange(total, dtype=np.int64) - starts)


class _Part(NamedTuple):
    """A stretch of one core's trace: runs of consecutive lines, or explicit line ids."""

    first: np.ndarray             # int64 line id: the first of each run, or every explicit line
    run_lines: Optional[np.ndarray]   # int64 lines per run; None for explicit lines
    write: np.ndarray             # bool, per run or per line
    stream: np.ndarray            # int8 StreamKind, per run or per line
    accesses: int                 # lines it touches


class _Trace:
    """Accumulates the accesses of one core in order.

    Byte ranges stay runs of lines (first line, count) until :func:`_interleave` writes them into
    the merged trace: a dense GEMM's row block is then a few hundred runs, not a copy of its
    million line ids, and no per-core array is built only to be copied again.
    """

    def __init__(self, line: int) -> None:
        self.line = line
        self.parts: list[_Part] = []
        self.accesses = 0

    def segments(self, start_bytes: np.ndarray, length_bytes: np.ndarray, stream: StreamKind | np.ndarray,
                 write: bool | np.ndarray = False) -> None:
        """Touch every line of each byte range [start, start + length), in order; an empty range
        touches nothing. ``stream`` and ``write`` are one value for all ranges or one per range."""
        start_bytes = np.asarray(start_bytes, dtype=np.int64)
        length_bytes = np.asarray(length_bytes, dtype=np.int64)
        keep = length_bytes > 0
        first = start_bytes[keep] // self.line
        count = (start_bytes[keep] + length_bytes[keep] - 1) // self.line - first + 1
        self._append(_Part(first, count, _kept(write, keep, bool), _kept(stream, keep, np.int8), int(count.sum())))

    def lines(self, lines: np.ndarray, write: np.ndarray, stream: np.ndarray) -> None:
        """Append explicit line ids, each with its write flag and stream kind."""
        self._append(_Part(lines.astype(np.int64, copy=False), None, write.astype(bool, copy=False),
                           stream.astype(np.int8, copy=False), int(lines.size)))

    def _append(self, part: _Part) -> None:
        if part.accesses:
            self.parts.append(part)
            self.accesses += part.accesses


def _kept(value: bool | int | np.ndarray, keep: np.ndarray, dtype: type) -> np.ndarray:
    """``value[keep]`` as ``dtype``, where a scalar ``value`` stands for one value per entry."""
    if np.ndim(value) == 0:
        return np.full(np.count_nonzero(keep), value, dtype=dtype)
    return np.asarray(value, dtype=dtype)[keep]


def _interleave(traces: Sequence[_Trace], core_of: Optional[Sequence[int]] = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-core traces round-robin in groups of INTERLEAVE accesses (a core that has
    finished drops out), as (byte addresses, write flags, cores, stream kinds). Trace i is issued
    by core ``core_of[i]`` (default i): several traces (a GPU's resident thread blocks) may share one.

    Each core's accesses are written straight to their merged positions by a compiled loop
    (see :func:`_place_runs`), one call per part.
    """
    core_of = list(range(len(traces))) if core_of is None else list(core_of)
    if max(core_of, default=0) > np.iinfo(np.int16).max:
        raise ValueError(f"at most {np.iinfo(np.int16).max} cores can be interleaved, got {max(core_of) + 1}")
    lengths = np.array([tr.accesses for tr in traces], dtype=np.int64)
    total = int(lengths.sum())
    merged = (np.empty(total, np.int64), np.empty(total, bool), np.empty(total, np.int16), np.empty(total, np.int8))
    group_start = _group_starts(lengths)
    for c, tr in enumerate(traces):
        done = 0   # accesses of this core already placed
        for part in tr.parts:
            if part.run_lines is None:
                _place_lines(part.first, part.write, part.stream, done, group_start[c], core_of[c], tr.line,
                             *merged)
            else:
                _place_runs(part.first, part.run_lines, part.write, part.stream, done, group_start[c], core_of[c],
                            tr.line, *merged)
            done += part.accesses
    return merged


def _group_starts(lengths: np.ndarray) -> np.ndarray:
    """Position in the merged trace of each core's g-th group of INTERLEAVE accesses, [cores, groups]:
    the groups g of all cores, in core order, come before any group g + 1."""
    groups = -(-int(lengths.max(initial=0)) // INTERLEAVE)
    sizes = np.clip(lengths[None, :] - np.arange(groups, dtype=np.int64)[:, None] * INTERLEAVE, 0, INTERLEAVE)
    starts = np.cumsum(sizes.ravel()).reshape(sizes.shape) - sizes                # [groups, cores]
    return np.ascontiguousarray(starts.T)


# Speed trick: the merge is compiled. In numpy it packed every access into an int64, padded the
# cores into one block, transposed it and filtered the padding out: ~0.15 s of VGG-16's 0.5 s.
# Indexing with an unsigned position skips numba's negative-index wraparound (~1.5x faster).
@numba.njit(cache=True, nogil=True)
def _place_runs(first, count, write, stream, done, group_start, core, line, addresses, is_write, cores,
                streams):  # pragma: no cover - compiled
    """Write runs of lines (run i: ``count[i]`` lines from ``first[i]``), which follow a core's
    first ``done`` accesses, to their places in the merged trace."""
    n = done
    for i in range(first.size):
        for j in range(count[i]):
            at = np.uint64(group_start[n // INTERLEAVE] + n % INTERLEAVE)
            addresses[at] = (first[i] + j) * line
            is_write[at] = write[i]
            cores[at] = core
            streams[at] = stream[i]
            n += 1


@numba.njit(cache=True, nogil=True)
def _place_lines(lines, write, stream, done, group_start, core, line, addresses, is_write, cores,
                 streams):  # pragma: no cover - compiled
    """:func:`_place_runs` for explicit line ids (runs of one line each)."""
    for i in range(lines.size):
        n = done + i
        at = np.uint64(group_start[n // INTERLEAVE] + n % INTERLEAVE)
        addresses[at] = lines[i] * line
        is_write[at] = write[i]
        cores[at] = core
        streams[at] = stream[i]


def _lane_efficiency(enc: EncodedWeights, lanes: int) -> float:
    """Share of SIMD lane steps doing a multiply when ``lanes`` lanes work on one CSR row together:
    a row of ``n`` non-zeros takes ``max(1, ceil(n / lanes))`` steps (an empty row still reads its
    pointers and writes its zero)."""
    if lanes == 1 or enc.nnz == 0:
        return 1.0
    per_row = np.diff(enc.pointer_array)
    steps = np.maximum(1, -(-per_row // lanes))
    return float(enc.nnz) / float(steps.sum() * lanes)


def _split(total: int, parts: int) -> np.ndarray:
    """Boundaries of ``parts`` near-equal contiguous ranges of ``total`` items."""
    return np.linspace(0, total, parts + 1).astype(np.int64)


# --- kernels --------------------------------------------------------------------------------

class _WeightStream(NamedTuple):
    """One weight array a dense-shaped kernel streams row by row: row r's bits are
    ``[start_bits[r], start_bits[r] + length_bits[r])`` from ``base``, and a k-chunk of the row
    reads the matching share of them (exact for dense rows; in proportion for the compressed
    rows of a bitmask, whose values per chunk the mask alone would tell)."""

    base: int
    kind: StreamKind
    start_bits: np.ndarray   # int64, per output row
    length_bits: np.ndarray  # int64, per output row


class _Gemm(NamedTuple):
    """A dense-shaped layer lowered to ``C[M, N] = A[M, K] x B[K, N]``: buffer bases and shape."""

    a_streams: tuple[_WeightStream, ...]   # the weights' arrays, row-major [M, K]: K = b_rows * kk
    b_base: int       # input, sample-major [batch, b_rows, plane]
    c_base: int       # output, sample-major [batch, M, out_plane]
    m_total: int      # output rows (features, output channels)
    b_rows: int       # input rows (features, channels per group)
    kk: int           # weights per input row and output row (kernel area; 1 for FC)
    plane: int        # input elements per input row and sample (pixels; 1 for FC)
    out_plane: int    # output elements per output row and sample


def _rows_of(per_row_bits: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) bits of ``rows`` equal rows of ``per_row_bits`` bits."""
    return np.arange(rows, dtype=np.int64) * per_row_bits, np.full(rows, per_row_bits, dtype=np.int64)


def _weight_streams(ctx: TraceContext) -> tuple[_WeightStream, ...]:
    """The weight arrays a dense-shaped kernel streams, in the order it reads them per row: the
    values (dense); the values, then their positions (N:M: N of each M, 2 bits each for 2:4); the
    mask, then the non-zero values (bitmask, whose row lengths are its real per-row counts)."""
    enc, bases = ctx.weights, ctx.bases
    rows, cols = enc.rows, enc.cols
    if enc.format is StorageFormat.NM:
        n, m = enc.group
        stored = -(-cols // m) * n
        streams = [_WeightStream(bases["values"], StreamKind.WEIGHT_VALUES, *_rows_of(stored * enc.value_bits, rows))]
        if enc.index_bits:
            streams.append(_WeightStream(bases["indices"], StreamKind.WEIGHT_INDICES,
                                         *_rows_of(stored * enc.index_bits, rows)))
        return tuple(streams)
    if enc.format is StorageFormat.BITMASK:
        ptr = enc.pointer_array.astype(np.int64)
        return (_WeightStream(bases["indices"], StreamKind.WEIGHT_INDICES, *_rows_of(cols, rows)),
                _WeightStream(bases["values"], StreamKind.WEIGHT_VALUES, ptr[:-1] * enc.value_bits,
                              np.diff(ptr) * enc.value_bits))
    return (_WeightStream(bases["values"], StreamKind.WEIGHT_VALUES, *_rows_of(cols * enc.value_bits, rows)),)


def _gemm_of(ctx: TraceContext) -> _Gemm:
    """The GEMM a dense-shaped FC or convolution lowers to (im2col left implicit)."""
    layer, bases = ctx.layer, ctx.bases
    streams = _weight_streams(ctx)
    if layer.kind is LayerKind.FC:
        return _Gemm(streams, bases["input"], bases["output"], ctx.weights.rows, layer.in_shape[0], 1, 1, 1)
    return _Gemm(streams, bases["input"], bases["output"], ctx.weights.rows, layer.in_shape[0] // layer.groups,
                 layer.kernel_hw * layer.kernel_hw, layer.in_elements // layer.in_shape[0], layer.out_pixels)


def _k_chunk(g: _Gemm, ctx: TraceContext) -> int:
    """Input rows per k-chunk: the most whose input block (every sample) fills half the first
    cache level (a CPU core's cache block; a GPU thread block's staged chunk), at least one."""
    return min(g.b_rows, max(1, (ctx.view.first_level_bytes // 2) // max(1, ctx.batch * g.plane * ctx.elem)))


def _dense_rows(ctx: TraceContext, tr: _Trace, rows: tuple[int, int]) -> None:
    """Blocked GEMM over output rows [r0, r1) of one CPU core (see module docstring): row blocks of
    ``mc`` rows, the largest whose weight block fills half the last private level."""
    r0, r1 = rows
    if r1 <= r0:
        return
    g = _gemm_of(ctx)
    kc = _k_chunk(g, ctx)
    mc = min(r1 - r0, max(1, int((ctx.view.last_private_bytes // 2) // max(1, kc * g.kk * ctx.weight_elem))))
    m_starts = np.arange(r0, r1, mc, dtype=np.int64)
    _gemm_blocks(tr, g, m_starts, np.minimum(m_starts + mc, r1) - m_starts, kc, ctx.batch, ctx.elem,
                 ctx.weight_elem)


def _gemm_blocks(tr: _Trace, g: _Gemm, m_starts: np.ndarray, m_len: np.ndarray, kc: int, batch: int,
                 elem: int, weight_elem: float | int = 0) -> None:
    """Row blocks one after another, block b being rows [m_starts[b], m_starts[b] + m_len[b]).

    Built for all row blocks at once: a (row block, segment) table of byte ranges, where each
    row block holds, per k-chunk of ``kc`` input rows, the input segments of every sample and the
    weight segments of every row, followed by the block's output writes. ``weight_elem`` is the
    bytes of one stored weight when they differ from the activations' ``elem`` (a weight-only or
    int8 variant: 1 or 0.5 bytes plus the scales' share).
    """
    a_streams, b_base, c_base, m_total, b_rows, kk, plane, out_plane = g
    k_total = b_rows * kk
    mc = int(m_len.max())
    k_starts = np.arange(0, b_rows, kc, dtype=np.int64)
    k_len = np.minimum(k_starts + kc, b_rows) - k_starts
    samples = np.arange(batch, dtype=np.int64)
    nb, nk = m_starts.size, k_starts.size
    row = m_starts[:, None] + np.arange(mc, dtype=np.int64)[None, :]          # [nb, mc]
    row_ok = np.arange(mc)[None, :] < m_len[:, None]
    b_start = np.broadcast_to(b_base + (samples[None, :] * b_rows + k_starts[:, None]) * plane * elem,
                              (nb, nk, batch))
    b_size = np.broadcast_to((k_len * plane * elem)[:, None], (nb, nk, batch))
    a_start, a_size = _weight_segments(a_streams, row, row_ok, k_starts * kk, (k_starts + k_len) * kk, k_total)
    streams = len(a_streams)
    c_start = c_base + (samples[None, :] * m_total + m_starts[:, None]) * out_plane * elem     # [nb, batch]
    c_size = np.broadcast_to((m_len * out_plane * elem)[:, None], (nb, batch))
    starts = np.concatenate([np.concatenate([b_start, a_start], axis=2).reshape(nb, -1), c_start], axis=1)
    sizes = np.concatenate([np.concatenate([b_size, a_size], axis=2).reshape(nb, -1), c_size], axis=1)
    kinds: np.ndarray = np.empty(starts.shape, np.int8)
    reads = kinds[:, : nk * (batch + mc * streams)].reshape(nb, nk, batch + mc * streams)
    reads[:, :, :batch] = StreamKind.INPUT
    reads[:, :, batch:] = np.tile(np.array([s.kind for s in a_streams], np.int8), mc)
    kinds[:, nk * (batch + mc * streams):] = StreamKind.OUTPUT
    kinds = kinds.ravel()
    tr.segments(starts.ravel(), sizes.ravel(), kinds, kinds == StreamKind.OUTPUT)


def _weight_segments(streams: tuple[_WeightStream, ...], row: np.ndarray, row_ok: np.ndarray, e0: np.ndarray,
                     e1: np.ndarray, k_total: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges [nb, nk, mc x streams] of every row's share of each weight stream for the
    k-chunks covering row elements [e0, e1): per row, the streams in order."""
    clipped = np.minimum(row, streams[0].start_bits.size - 1)[:, None, :, None]        # [nb, 1, mc, 1]
    ok = row_ok[:, None, :, None]
    e0, e1 = e0[None, :, None, None], e1[None, :, None, None]
    starts, sizes = [], []
    for s in streams:
        first, length = s.start_bits[clipped], s.length_bits[clipped]
        b0 = first + length * e0 // k_total
        b1 = first + length * e1 // k_total
        starts.append(s.base + (b0 >> 3))
        sizes.append(np.where(ok & (b1 > b0), ((b1 + 7) >> 3) - (b0 >> 3), 0))
    nb, nk, mc = row.shape[0], e0.shape[1], row.shape[1]
    return (np.concatenate(starts, axis=3).reshape(nb, nk, mc * len(streams)),
            np.concatenate(sizes, axis=3).reshape(nb, nk, mc * len(streams)))


def _gpu_dense_blocks(ctx: TraceContext) -> list[tuple[int, _Trace]]:
    """Dense GEMM as a GPU grid of thread blocks (see module docstring), as (SM, lane trace) pairs.

    Block t takes output rows [t * rows, (t + 1) * rows) (``rows`` the profile's rows per task:
    the GEMM tile's for a convolution, an implicit GEMM) and runs on SM ``t % sms``; an SM keeps
    up to :data:`RESIDENT_BLOCKS` blocks at once, so block t sits in lane ``(t // sms) % resident``
    of its SM and each lane runs its blocks one after another. Every lane of every SM is then
    interleaved with the others, so the resident blocks read each input chunk close together.
    """
    g = _gemm_of(ctx)
    kernel = ctx.kernel
    rows = ctx.view.block_rows(kernel)
    tasks = -(-g.m_total // rows)
    sms = max(1, min(ctx.view.cores_for(kernel), tasks))
    resident = min(RESIDENT_BLOCKS, -(-tasks // sms))
    kc = _k_chunk(g, ctx)
    lanes = []
    for slot in range(resident):
        for sm in range(sms):
            blocks = np.arange(sm + sms * slot, tasks, sms * resident, dtype=np.int64)
            if blocks.size == 0:
                continue
            tr = _Trace(ctx.view.line_bytes)
            m_starts = blocks * rows
            _gemm_blocks(tr, g, m_starts, np.minimum(rows, g.m_total - m_starts), kc, ctx.batch, ctx.elem,
                         ctx.weight_elem)
            lanes.append((sm, tr))
    return lanes


def _fresh(lines: np.ndarray) -> np.ndarray:
    """True where a sequential stream moves on to a new line (one access per line touched)."""
    fresh = np.ones(lines.size, bool)
    fresh[1:] = lines[1:] != lines[:-1]
    return fresh


def _per_element(tr: _Trace, items: list[tuple[np.ndarray, np.ndarray, StreamKind, bool]]) -> None:
    """Lay out, element by element (non-zero by non-zero), each item's ``count`` lines
    starting at ``first``, in the order the items are listed."""
    counts = np.asarray(sum(count.astype(np.int64, copy=False) for _, count, _, _ in items))
    pos = np.cumsum(counts) - counts
    total = int(counts.sum())
    lines = np.empty(total, np.int64)
    kinds = np.empty(total, np.int8)
    write = np.zeros(total, bool)
    for first, count, kind, is_write in items:
        count = count.astype(np.int64, copy=False)
        where = _expand_ranges(pos, count)
        lines[where] = _expand_ranges(first, count)
        kinds[where] = kind
        write[where] = is_write
        pos = pos + count
    tr.lines(lines, write, kinds)


def _line_span(base: int, index: np.ndarray, size_bytes: int, line: int) -> tuple[np.ndarray, np.ndarray]:
    """(first line, line count) of element ``index`` of a buffer of ``size_bytes``-byte elements."""
    first = (base + index * size_bytes) // line
    return first, (base + (index + 1) * size_bytes - 1) // line - first + 1


@numba.njit(cache=True, inline="always")
def _line_of(address, line, shift):  # pragma: no cover - compiled
    """``address // line``. Speed trick: a shift where ``line == 1 << shift`` (cache lines are powers
    of two; ``shift`` is -1 otherwise), as a 64-bit division takes tens of cycles."""
    return address >> shift if shift >= 0 else address // line


@numba.njit(cache=True, inline="always")
def _put_lines(lines, kinds, n, first, last, kind):  # pragma: no cover - compiled
    """Write lines ``first .. last`` (none when ``last < first``) of stream ``kind`` at position ``n``
    of the kernel's (lines, kinds) arrays; returns the position after them."""
    for x in range(first, last + 1):
        lines[n] = x
        kinds[n] = kind
        n += 1
    return n


@numba.njit(cache=True, inline="always")
def _put_new_line(lines, kinds, n, line_id, previous, kind):  # pragma: no cover - compiled
    """Write ``line_id`` of stream ``kind`` at position ``n`` unless it is the ``previous`` line of
    that stream (a sequential stream touches each of its lines once); returns the next position."""
    if line_id != previous:
        lines[n] = line_id
        kinds[n] = kind
        n += 1
    return n


def _kernel_lines(tr: _Trace, bound: int, write_lines: Callable[..., int], *args: Any) -> None:
    """Run a compiled line writer (:func:`_csr_lines`, :func:`_bsr_lines`) on ``args``, then the
    trace's line size and its ``shift`` (see :func:`_line_of`), then (line, kind) arrays of ``bound``
    entries, at least as many as it can write; append to ``tr`` the lines it wrote, the output rows
    (kind OUTPUT) as the writes."""
    line = int(tr.line)
    shift = line.bit_length() - 1 if line & (line - 1) == 0 else -1
    lines = np.empty(bound, np.int64)
    kinds = np.empty(bound, np.int8)
    n = write_lines(*args, line, shift, lines, kinds)
    tr.lines(lines[:n], kinds[:n] == StreamKind.OUTPUT, kinds[:n])


# Without numba's runtime (_nrt=False, as the cache kernel): with it, the arrays handed to the
# inlined _put_* helpers got reference counts around every call (4-8x slower on VGG-16's FC6
# shape); these allocate nothing.
# (numba's annotations leave out the private _nrt flag its njit takes)
@numba.njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _csr_lines(ptr, indices, r0, r1, ptr_base, val_base, idx_base, x_base, y_base, value_bits, index_bits,
               pointer_bits, operand_bytes, line, shift, lines, kinds):  # pragma: no cover - compiled
    """The CSR kernel's accesses, non-zero by non-zero (see :func:`_csr_fc`), written as (line, kind)
    to ``lines`` / ``kinds``; returns their count. Array entries are ``*_bits`` wide (element k at
    byte ``k * bits // 8``)."""
    n = 0
    last_val = -1
    last_idx = -1
    previous_ptr = -1      # the pointer line of the previous non-zero if it started a row, else -1
    for r in range(r0, r1):
        start, stop = ptr[r], ptr[r + 1]
        for k in range(start, stop):
            if k == start:
                p_line = _line_of(ptr_base + (((r + 1) * pointer_bits) >> 3), line, shift)
                n = _put_new_line(lines, kinds, n, p_line, previous_ptr, 2)   # StreamKind.WEIGHT_POINTERS
                previous_ptr = p_line
            else:
                previous_ptr = -1
            v_line = _line_of(val_base + ((k * value_bits) >> 3), line, shift)
            n = _put_new_line(lines, kinds, n, v_line, last_val, 0)         # StreamKind.WEIGHT_VALUES
            last_val = v_line
            i_line = _line_of(idx_base + ((k * index_bits) >> 3), line, shift)
            n = _put_new_line(lines, kinds, n, i_line, last_idx, 1)         # StreamKind.WEIGHT_INDICES
            last_idx = i_line
            n = _put_lines(lines, kinds, n, _line_of(x_base + indices[k] * operand_bytes, line, shift),
                           _line_of(x_base + (indices[k] + 1) * operand_bytes - 1, line, shift), 4)   # GATHER
            if k == stop - 1:
                n = _put_lines(lines, kinds, n, _line_of(y_base + r * operand_bytes, line, shift),
                               _line_of(y_base + (r + 1) * operand_bytes - 1, line, shift), 5)   # OUTPUT
    return n


def _csr_fc(ctx: TraceContext, tr: _Trace, rows: tuple[int, int]) -> None:
    """CSR SpMV / SpMM over rows [r0, r1), in non-zero order: the row pointer when a row starts,
    the value and the column index (once per line: sequential streams), the gather of the operand
    at the real column index, and the output row when the row ends. Compiled: FC6 of VGG-16 has
    4 M non-zeros, and laying them out with numpy took over a second on a single-core device."""
    enc, bases, batch, elem = ctx.weights, ctx.bases, ctx.batch, ctx.elem
    r0, r1 = rows
    if enc.pointer_array[r1] <= enc.pointer_array[r0]:
        return
    ptr, operand_bytes = enc.pointer_array, batch * elem
    x_span = (operand_bytes + tr.line - 1) // tr.line + 1          # most lines one operand row can touch
    bound = int(ptr[r1] - ptr[r0]) * (3 + x_span) + (r1 - r0) * x_span
    _kernel_lines(tr, bound, _csr_lines, ptr, enc.index_array, r0, r1, bases["pointers"], bases["values"],
                  bases["indices"], bases["input"], bases["output"], enc.value_bits, enc.index_bits,
                  enc.pointer_bits, operand_bytes)


def _csc_fc(ctx: TraceContext, tr: _Trace, cols: tuple[int, int]) -> None:
    """CSC SpMV / SpMM over columns [c0, c1): input value once, scatter-add into output rows."""
    enc, bases, batch, elem = ctx.weights, ctx.bases, ctx.batch, ctx.elem
    c0, c1 = cols
    ptr = enc.pointer_array
    k0, k1 = int(ptr[c0]), int(ptr[c1])
    if k1 <= k0:
        return
    line = tr.line
    k = np.arange(k0, k1, dtype=np.int64)
    col_of = np.repeat(np.arange(c0, c1, dtype=np.int64), np.diff(ptr[c0:c1 + 1]))
    col_start = _fresh(col_of)
    ptr_line = (bases["pointers"] + (((col_of + 1) * enc.pointer_bits) >> 3)) // line
    val_line = (bases["values"] + ((k * enc.value_bits) >> 3)) // line
    idx_line = (bases["indices"] + ((k * enc.index_bits) >> 3)) // line
    x_first, x_count = _line_span(bases["input"], col_of, batch * elem, line)
    y_first, y_count = _line_span(bases["output"], enc.index_array[k0:k1].astype(np.int64), batch * elem, line)
    _per_element(tr, [
        (ptr_line, col_start & _fresh(np.where(col_start, ptr_line, -1)), StreamKind.WEIGHT_POINTERS, False),
        (x_first, np.where(col_start, x_count, 0), StreamKind.INPUT, False),
        (val_line, _fresh(val_line), StreamKind.WEIGHT_VALUES, False),
        (idx_line, _fresh(idx_line), StreamKind.WEIGHT_INDICES, False),
        (y_first, y_count, StreamKind.GATHER, True),   # read-modify-write of the output row
    ])


def _array_ranges(bases: dict[str, int], arrays) -> tuple[np.ndarray, np.ndarray]:
    """Byte (start, size) [n, arrays] of element ranges [first, stop) of bit-packed arrays: each
    of ``arrays`` is (first, stop, bits per element, buffer name)."""
    starts, sizes = [], []
    for first, stop, bits, name in arrays:
        b0, b1 = (first * bits) >> 3, (stop * bits + 7) >> 3
        starts.append(bases[name] + b0)
        sizes.append(np.where(stop > first, b1 - b0, 0))
    return np.stack(starts, axis=1), np.stack(sizes, axis=1)


def _sparse_conv(ctx: TraceContext, tr: _Trace, rows: tuple[int, int]) -> None:
    """CSR-weight convolution over output channels [r0, r1), in blocks of output channels.

    Per block: its row pointers, values and column indices, then (sample by sample, channels
    ascending) the input planes of the channels its non-zeros reference, then its output planes.
    Built for all blocks at once, as a (block, segment) table of byte ranges in which the
    channels a block does not use are empty ranges.
    """
    enc, bases, layer, view = ctx.weights, ctx.bases, ctx.layer, ctx.view
    r0, r1 = rows
    if r1 <= r0:
        return
    kk = layer.kernel_hw * layer.kernel_hw
    budget = max(1, max(view.cache_share_bytes, view.last_private_bytes) // 2)
    block_nnz = 8 * budget // (enc.value_bits + enc.index_bits)
    bounds, used = _conv_blocks(enc.pointer_array, enc.index_array, r0, r1, block_nnz, kk, -(-enc.cols // kk))
    m0, m1 = bounds[:-1], bounds[1:]
    k0, k1 = enc.pointer_array[m0].astype(np.int64, copy=False), enc.pointer_array[m1].astype(np.int64, copy=False)
    weight_start, weight_size = _array_ranges(bases, ((m0, m1 + 1, enc.pointer_bits, "pointers"),
                                                      (k0, k1, enc.value_bits, "values"),
                                                      (k0, k1, enc.index_bits, "indices")))
    _conv_segments(ctx, tr, m0, m1, used, weight_start, weight_size)


def _conv_segments(ctx: TraceContext, tr: _Trace, m0: np.ndarray, m1: np.ndarray, used: np.ndarray,
                   weight_start: np.ndarray, weight_size: np.ndarray) -> None:
    """Blocks of output channels [m0[b], m1[b]) of a sparse-weight convolution: per block its weight
    ranges (pointers, values, indices: [blocks, 3]), then sample by sample the input planes of the
    channels it uses (``used[b, channel]``), then its output planes."""
    bases, layer, batch, elem = ctx.bases, ctx.layer, ctx.batch, ctx.elem
    channels, plane_bytes = layer.in_shape[0], layer.in_elements // layer.in_shape[0] * elem
    out_plane_bytes, m_total = layer.out_pixels * elem, layer.out_shape[0]
    nb, samples = m0.size, np.arange(batch, dtype=np.int64)
    channel = np.arange(used.shape[1], dtype=np.int64)
    per_block = (nb, batch, channel.size)                # sample-major, as the kernel reads them
    in_start = np.broadcast_to(bases["input"] + (samples[:, None] * channels + channel) * plane_bytes, per_block)
    in_size = np.broadcast_to(np.where(used, plane_bytes, 0)[:, None, :], per_block)
    in_start, in_size = in_start.reshape(nb, -1), in_size.reshape(nb, -1)
    out_start = bases["output"] + (samples[None, :] * m_total + m0[:, None]) * out_plane_bytes      # [nb, batch]
    out_size = np.broadcast_to(((m1 - m0) * out_plane_bytes)[:, None], (nb, batch))
    kinds: np.ndarray = np.empty((nb, 3 + in_start.shape[1] + batch), np.int8)
    kinds[:, :3] = [StreamKind.WEIGHT_POINTERS, StreamKind.WEIGHT_VALUES, StreamKind.WEIGHT_INDICES]
    kinds[:, 3:-batch] = StreamKind.INPUT
    kinds[:, -batch:] = StreamKind.OUTPUT
    kinds = kinds.ravel()
    tr.segments(np.concatenate([weight_start, in_start, out_start], axis=1).ravel(),
                np.concatenate([weight_size, in_size, out_size], axis=1).ravel(), kinds, kinds == StreamKind.OUTPUT)


# Speed trick: compiled, because each block's end depends on where the previous one ended; with
# np.unique per block, VGG-16's ~650 blocks cost ~0.3 s in small numpy calls.
@numba.njit(cache=True, nogil=True)
def _conv_blocks(ptr, indices, r0, r1, block_nnz, kk, channels):  # pragma: no cover - compiled
    """Blocks of rows [r0, r1) of a CSR convolution, each the longest run of rows whose non-zeros
    fit ``block_nnz`` (at least one row), as (bounds: block b is rows [bounds[b], bounds[b + 1])),
    used: used[b, c] when a non-zero of block b reads input channel c (column index // kk))."""
    bounds = np.empty(r1 - r0 + 1, np.int64)
    used = np.zeros((r1 - r0, channels), np.bool_)
    blocks = 0
    m0 = r0
    while m0 < r1:
        limit = np.searchsorted(ptr, ptr[m0] + block_nnz, side="right") - 1
        m1 = min(r1, max(m0 + 1, limit))
        for k in range(ptr[m0], ptr[m1]):
            used[blocks, indices[k] // kk] = True
        bounds[blocks] = m0
        blocks += 1
        m0 = m1
    bounds[blocks] = r1
    return bounds[:blocks + 1], used[:blocks]


@numba.njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]  # (as _csr_lines)
def _bsr_lines(ptr, indices, b0, b1, br, bc, ptr_base, val_base, idx_base, x_base, y_base, value_bits, index_bits,
               pointer_bits, operand_bytes, line, shift, lines, kinds):  # pragma: no cover - compiled
    """The BSR kernel's accesses over block rows [b0, b1), block by block (see :func:`_bsr_fc`),
    written as (line, kind) to ``lines`` / ``kinds``; returns their count. Each sequential stream
    touches each of its lines once."""
    block_bits = br * bc * value_bits
    n = 0
    last_ptr = -1
    last_idx = -1
    last_val = -1
    for r in range(b0, b1):
        p_line = _line_of(ptr_base + (((r + 1) * pointer_bits) >> 3), line, shift)
        n = _put_new_line(lines, kinds, n, p_line, last_ptr, 2)             # StreamKind.WEIGHT_POINTERS
        last_ptr = p_line
        for k in range(ptr[r], ptr[r + 1]):
            i_line = _line_of(idx_base + ((k * index_bits) >> 3), line, shift)
            n = _put_new_line(lines, kinds, n, i_line, last_idx, 1)         # StreamKind.WEIGHT_INDICES
            last_idx = i_line
            first = _line_of(val_base + ((k * block_bits) >> 3), line, shift)
            last = _line_of(val_base + (((k + 1) * block_bits + 7) >> 3) - 1, line, shift)
            n = _put_lines(lines, kinds, n, max(first, last_val + 1), last, 0)   # StreamKind.WEIGHT_VALUES
            last_val = max(last_val, last)
            start = x_base + indices[k] * bc * operand_bytes
            n = _put_lines(lines, kinds, n, _line_of(start, line, shift),
                           _line_of(start + bc * operand_bytes - 1, line, shift), 4)   # StreamKind.GATHER
        start = y_base + r * br * operand_bytes
        n = _put_lines(lines, kinds, n, _line_of(start, line, shift),
                       _line_of(start + br * operand_bytes - 1, line, shift), 5)       # StreamKind.OUTPUT
    return n


def _bsr_fc(ctx: TraceContext, tr: _Trace, block_rows: tuple[int, int]) -> None:
    """BSR product over block rows [b0, r1): per block row its pointer, then per block its
    block-column index and its R x C values (sequential streams, once per line), and the gather of
    its C input rows (``C x batch`` contiguous operand values); at the end of the block row its R
    output rows. Compiled, like the CSR loop (:func:`_csr_lines`)."""
    enc, bases = ctx.weights, ctx.bases
    b0, b1 = block_rows
    if b1 <= b0:
        return
    line, ptr = tr.line, enc.pointer_array
    br, bc = enc.block
    operand_bytes, block_bits = ctx.batch * ctx.elem, br * bc * enc.value_bits
    x_span = (bc * operand_bytes + line - 1) // line + 1             # most lines of one block's operand rows
    v_span = (block_bits // 8 + line - 1) // line + 1                # of one block's values
    y_span = (br * operand_bytes + line - 1) // line + 1             # of one block row's outputs
    bound = int(ptr[b1] - ptr[b0]) * (1 + v_span + x_span) + (b1 - b0) * (1 + y_span)
    _kernel_lines(tr, bound, _bsr_lines, ptr, enc.index_array, b0, b1, br, bc, bases["pointers"], bases["values"],
                  bases["indices"], bases["input"], bases["output"], enc.value_bits, enc.index_bits,
                  enc.pointer_bits, operand_bytes)


def _bsr_conv(ctx: TraceContext, tr: _Trace, block_rows: tuple[int, int]) -> None:
    """BSR-weight convolution over block rows [b0, b1), as the CSR one (:func:`_sparse_conv`): in
    groups of block rows whose blocks fill half a core's cache share, each reading its pointers,
    block indices and block values, the input planes its blocks reference, then its output planes."""
    enc, layer, view = ctx.weights, ctx.layer, ctx.view
    b0, b1 = block_rows
    if b1 <= b0:
        return
    br, bc = enc.block
    kk = layer.kernel_hw * layer.kernel_hw
    ptr = enc.pointer_array.astype(np.int64, copy=False)
    columns = (enc.index_array.astype(np.int64)[:, None] * bc + np.arange(bc, dtype=np.int64)).ravel()
    budget = max(1, max(view.cache_share_bytes, view.last_private_bytes) // 2)
    per_column_bits = br * enc.value_bits + enc.index_bits / bc
    bounds, used = _conv_blocks(ptr * bc, columns, b0, b1, max(1, int(8 * budget // per_column_bits)), kk,
                                -(-enc.cols // kk))
    m0, m1 = bounds[:-1], bounds[1:]
    k0, k1 = ptr[m0], ptr[m1]
    weight_start, weight_size = _array_ranges(ctx.bases, ((m0, m1 + 1, enc.pointer_bits, "pointers"),
                                                          (k0, k1, br * bc * enc.value_bits, "values"),
                                                          (k0, k1, enc.index_bits, "indices")))
    _conv_segments(ctx, tr, m0 * br, m1 * br, used, weight_start, weight_size)


def _stream_runs(first_byte: np.ndarray, end_byte: np.ndarray, line: int) -> tuple[np.ndarray, np.ndarray]:
    """(first line, line count) of consecutive pieces [first, end) of one sequential stream, each
    line touched once: a piece starts after the last line an earlier piece touched."""
    nonempty = end_byte > first_byte
    first, last = first_byte // line, np.where(nonempty, (end_byte - 1) // line, -1)
    before = np.concatenate([[-1], np.maximum.accumulate(last)[:-1]]) if last.size else last
    start = np.maximum(first, before + 1)
    return start, np.where(nonempty, np.maximum(0, last - start + 1), 0)


def _eie_fc(ctx: TraceContext, tr: _Trace, pes: tuple[int, int]) -> None:
    """EIE's format over PEs [p0, p1): per PE, column by column, the PE's pointer to the column's
    end, the activation of the column, the packed codebook indices ``v`` and relative indices ``z``
    of its entries (padding entries included; each stream once per line); then the PE's output
    rows (rows p, p + PEs, ...: interleaved with the other PEs')."""
    enc, bases, batch, elem = ctx.weights, ctx.bases, ctx.batch, ctx.elem
    line = tr.line
    ptr = enc.pointer_array.astype(np.int64, copy=False)
    entries = ptr[:, -1]
    v_start = np.concatenate([[0], np.cumsum(-(-entries * enc.code_bits // 8))])
    z_start = np.concatenate([[0], np.cumsum(-(-entries * enc.index_bits // 8))])
    cols = np.arange(enc.cols, dtype=np.int64)
    operand = batch * elem
    x_first, x_count = _stream_runs(bases["input"] + cols * operand, bases["input"] + (cols + 1) * operand, line)
    for p in range(*pes):
        p_base = bases["pointers"] + ((p * (enc.cols + 1) * enc.pointer_bits) >> 3)
        p_line = (p_base + (((cols + 1) * enc.pointer_bits) >> 3)) // line
        items = [(p_line, _fresh(p_line).astype(np.int64), StreamKind.WEIGHT_POINTERS, False),
                 (x_first, x_count, StreamKind.INPUT, False)]
        for base, bits, kind in ((bases["values"] + v_start[p], enc.code_bits, StreamKind.WEIGHT_VALUES),
                                 (bases["indices"] + z_start[p], enc.index_bits, StreamKind.WEIGHT_INDICES)):
            first, count = _stream_runs(base + ((ptr[p, :-1] * bits) >> 3), base + ((ptr[p, 1:] * bits + 7) >> 3),
                                        line)
            items.append((first, count, kind, False))
        _per_element(tr, items)
        rows = np.arange(p, enc.rows, enc.pes, dtype=np.int64)
        first, count = _line_span(bases["output"], rows, operand, line)
        out = np.unique(_expand_ranges(first, count))
        tr.lines(out, np.ones(out.size, bool), np.full(out.size, StreamKind.OUTPUT, np.int8))


def _pool(ctx: TraceContext, tr: _Trace, channels: tuple[int, int]) -> None:
    """Pooling over channels [c0, c1): the input planes, then the output planes."""
    layer, bases, batch, elem = ctx.layer, ctx.bases, ctx.batch, ctx.elem
    c0, c1 = channels
    if c1 <= c0:
        return
    samples = np.arange(batch, dtype=np.int64)
    in_plane = layer.in_elements // layer.in_shape[0]
    out_plane = layer.out_pixels
    c_in = layer.in_shape[0]
    tr.segments(bases["input"] + (samples * c_in + c0) * in_plane * elem, np.full(batch, (c1 - c0) * in_plane * elem),
                StreamKind.INPUT)
    tr.segments(bases["output"] + (samples * c_in + c0) * out_plane * elem,
                np.full(batch, (c1 - c0) * out_plane * elem), StreamKind.OUTPUT, write=True)


def _add(ctx: TraceContext, tr: _Trace, channels: tuple[int, int]) -> None:
    """Element-wise sum over channels [c0, c1): both inputs and the output, line by line."""
    layer, bases, batch, elem = ctx.layer, ctx.bases, ctx.batch, ctx.elem
    c0, c1 = channels
    if c1 <= c0:
        return
    samples = np.arange(batch, dtype=np.int64)
    plane = layer.out_pixels * elem
    c_all = layer.out_shape[0]
    offsets = (samples * c_all + c0) * plane
    length = np.full(batch, (c1 - c0) * plane, dtype=np.int64)
    first = offsets // tr.line
    relative = _expand_ranges(first, (offsets + length - 1) // tr.line - first + 1)
    # buffers are page-aligned, so the same element offsets cover the same lines of each
    lines = np.stack([bases[key] // tr.line + relative for key in ("input", "input2", "output")], axis=1).ravel()
    write = np.tile(np.array([False, False, True]), relative.size)
    kinds = np.tile(np.array([StreamKind.INPUT, StreamKind.INPUT, StreamKind.OUTPUT], np.int8), relative.size)
    tr.lines(lines, write, kinds)


def _concat(ctx: TraceContext, tr: _Trace, channels: tuple[int, int]) -> None:
    """Channel-wise join over output channels [c0, c1): per sample and input, read the input's
    part of the range, then write it at its offset in the output."""
    layer, part_bases, output_base, batch, elem = ctx.layer, ctx.part_bases, ctx.bases["output"], ctx.batch, ctx.elem
    c0, c1 = channels
    if c1 <= c0:
        return
    plane = layer.out_pixels * elem
    offsets = np.cumsum((0,) + tuple(layer.parts))
    samples = np.arange(batch, dtype=np.int64)
    reads, writes, sizes = [], [], []
    for i, base in enumerate(part_bases):
        lo, hi = max(c0, int(offsets[i])), min(c1, int(offsets[i + 1]))
        if hi <= lo:
            continue
        reads.append(base + (samples * layer.parts[i] + (lo - offsets[i])) * plane)
        writes.append(output_base + (samples * layer.out_shape[0] + lo) * plane)
        sizes.append(np.full(batch, (hi - lo) * plane, dtype=np.int64))
    # sample-major order: every input's slice of sample 0, then of sample 1, ...
    read = np.stack(reads, axis=1).ravel()
    write = np.stack(writes, axis=1).ravel()
    size = np.stack(sizes, axis=1).ravel()
    starts = np.stack([read, write], axis=1).ravel()         # read a slice, then write it
    is_write = np.tile(np.array([False, True]), size.size)
    tr.segments(starts, np.repeat(size, 2), np.where(is_write, StreamKind.OUTPUT, StreamKind.INPUT), is_write)


# --- decoder (LLM) layers ------------------------------------------------------------------------

#: bytes of the first operand an element-wise decoder kernel handles before moving on to the next
#: stretch of every operand (the order of a vectorised loop over all operands; a core's range is
#: cut into such chunks so its reads and writes interleave as they do, not operand after operand)
DECODER_CHUNK_BYTES = 4096


def _decoder_operands(ctx: TraceContext) -> list[tuple[int, int, StreamKind, bool]]:
    """(base, total bytes, stream, write) of every operand of a decoder layer, split over its work
    items in proportion: reads first, the output last."""
    layer, bases, batch = ctx.layer, ctx.bases, ctx.batch
    kind = layer.kind
    out = (bases["output"], layer.out_bytes(batch), StreamKind.OUTPUT, True)
    if kind.reads_kv_cache:
        return [(bases["input"], layer.in_bytes(batch), StreamKind.INPUT, False),
                (bases["kv"], layer.attention_shape.cache_bytes, StreamKind.KV_CACHE, False), out]
    if kind is LayerKind.NORM:    # the norm's weights are re-read per token: they stay in the first level
        return [(bases["input"], layer.in_bytes(batch), StreamKind.INPUT, False), out]
    if kind is LayerKind.GLU:
        second = bases.get("input2", bases["input"] + layer.in_bytes(batch))   # a fused gate_up: its second half
        return [(bases["input"], layer.in_bytes(batch), StreamKind.INPUT, False),
                (second, layer.in_bytes(batch), StreamKind.INPUT, False), out]
    return [(bases["input"], layer.in_bytes(batch), StreamKind.INPUT, False), out]


def _decoder_items(ctx: TraceContext) -> int:
    """Work items a decoder layer splits over cores: cached key / value rows for the attention
    products, score rows for a softmax, tokens for the others."""
    if ctx.layer.kind.reads_kv_cache:
        a = ctx.layer.attention_shape
        return a.sequences * a.kv_heads * a.keys_last
    if ctx.layer.kind is LayerKind.SOFTMAX:
        a = ctx.layer.attention_shape
        return a.sequences * a.heads * a.queries
    return ctx.batch


def _decoder_stream(ctx: TraceContext, tr: _Trace, items: tuple[int, int]) -> None:
    """Items [i0, i1) of an element-wise or attention decoder kernel: each operand's share of the
    items, chunk by chunk (:data:`DECODER_CHUNK_BYTES` of the first operand), reads then the write."""
    i0, i1 = items
    if i1 <= i0:
        return
    total = _decoder_items(ctx)
    operands = _decoder_operands(ctx)
    lo = np.array([base + size * i0 // total for base, size, _, _ in operands], dtype=np.int64)
    hi = np.array([base + size * i1 // total for base, size, _, _ in operands], dtype=np.int64)
    chunks = max(1, int(-(-(hi[0] - lo[0]) // DECODER_CHUNK_BYTES)))
    cuts = lo[None, :] + (hi - lo)[None, :] * np.arange(chunks + 1, dtype=np.int64)[:, None] // chunks
    starts, sizes = cuts[:-1].ravel(), np.diff(cuts, axis=0).ravel()
    kinds = np.tile(np.array([stream for _, _, stream, _ in operands], np.int8), chunks)
    writes = np.tile(np.array([write for _, _, _, write in operands]), chunks)
    tr.segments(starts, sizes, kinds, writes)


def _embedding(ctx: TraceContext, tr: _Trace, tokens: tuple[int, int]) -> None:
    """Tokens [t0, t1) of an embedding lookup: each token's row of the table (at a seeded token id,
    the same in every repetition), then its output row."""
    t0, t1 = tokens
    if t1 <= t0:
        return
    layer, bases, elem = ctx.layer, ctx.bases, ctx.elem
    row_bytes = layer.out_elements * elem
    rng = np.random.default_rng(layer_seed(0, layer.name))
    ids = rng.integers(0, max(1, layer.table_rows), size=ctx.batch, dtype=np.int64)[t0:t1]
    token = np.arange(t0, t1, dtype=np.int64)
    starts = np.stack([bases["table"] + ids * row_bytes, bases["output"] + token * row_bytes], axis=1).ravel()
    kinds = np.tile(np.array([StreamKind.WEIGHT_VALUES, StreamKind.OUTPUT], np.int8), token.size)
    tr.segments(starts, np.full(starts.size, row_bytes, np.int64), kinds, kinds == StreamKind.OUTPUT)


# --- layer dispatch -------------------------------------------------------------------------

_FORMAT_KERNELS = {StorageFormat.BSR: KernelKind.BSR, StorageFormat.NM: KernelKind.NM,
                   StorageFormat.BITMASK: KernelKind.BITMASK, StorageFormat.EIE: KernelKind.CODEBOOK}


def kernel_kind(layer: Layer, fmt: StorageFormat, batch: int) -> KernelKind:
    """The library kernel a layer lowers to."""
    if layer.kind.has_weights and fmt in _FORMAT_KERNELS:
        return _FORMAT_KERNELS[fmt]
    if layer.kind is LayerKind.FC:
        if fmt.is_sparse:
            return KernelKind.SPMV if batch == 1 else KernelKind.SPMM
        return KernelKind.GEMV if batch == 1 else KernelKind.GEMM
    if layer.kind is LayerKind.CONV:
        return KernelKind.SPCONV if fmt.is_sparse else KernelKind.CONV
    if layer.kind.reads_kv_cache:   # batched products over the cached keys / values: GEMVs in decode
        return KernelKind.GEMV if layer.attention_shape.queries == 1 else KernelKind.GEMM
    return KernelKind.POOL


@dataclass(frozen=True)
class TraceContext:
    """What a trace function gets: the layer, its encoded weights, the base address of every buffer
    it touches (``input``, ``output``, ``input2``, ``values``, ``indices``, ``pointers``), the batch,
    the element size, the profile's view and the kernel the layer lowers to."""

    layer: Layer
    enc: Optional[EncodedWeights]
    bases: dict[str, int]
    batch: int
    elem: int
    view: CoreView
    kernel: KernelKind
    part_bases: tuple[int, ...] = ()     # a concat's inputs, in order
    weight_elem: float = 0.0             # bytes of one stored weight (0: ``elem``, the activations')

    def __post_init__(self) -> None:
        if not self.weight_elem:
            object.__setattr__(self, "weight_elem", self.enc.value_bits / 8 if self.enc is not None else self.elem)

    @property
    def weights(self) -> EncodedWeights:
        """``enc``, for a layer with weights (the trace functions of weighted kinds read it)."""
        if self.enc is None:
            raise ValueError(f"layer {self.layer.name} ({self.layer.kind.value}) has no encoded weights")
        return self.enc


class TraceRow(NamedTuple):
    """How one (layer kind, storage format) pair becomes a trace.

    ``trace`` lays out one core's share ``[start, stop)`` of the work items; ``work_items`` counts
    them (output rows, columns, channels); ``split`` gives the per-core bounds (default: near-equal
    ranges); ``lane_efficiency`` is the share of SIMD lanes a row keeps busy. ``gpu_blocks``, when
    given, replaces the per-core split on a GPU profile: it returns (SM, trace) lanes of thread
    blocks (see :func:`_gpu_dense_blocks`).
    """

    trace: Callable[[TraceContext, _Trace, tuple[int, int]], None]
    work_items: Callable[[TraceContext], int]
    split: Optional[Callable[[TraceContext, int], np.ndarray]] = None
    lane_efficiency: Callable[[TraceContext], float] = lambda ctx: 1.0
    gpu_blocks: Optional[Callable[[TraceContext], list[tuple[int, _Trace]]]] = None


def _equal_nonzeros(ctx: TraceContext, cores: int) -> np.ndarray:
    """Row bounds giving each core the same number of non-zeros (CSR)."""
    enc = ctx.weights
    targets = np.linspace(0, enc.nnz, cores + 1)
    bounds = np.searchsorted(enc.pointer_array, targets, side="left")
    bounds[0], bounds[-1] = 0, enc.rows
    return np.maximum.accumulate(bounds)


def _equal_blocks(ctx: TraceContext, cores: int) -> np.ndarray:
    """Block-row bounds giving each core the same number of blocks (BSR)."""
    ptr = ctx.weights.pointer_array
    bounds = np.searchsorted(ptr, np.linspace(0, ptr[-1], cores + 1), side="left")
    bounds[0], bounds[-1] = 0, ptr.size - 1
    return np.maximum.accumulate(bounds)


def _rows(ctx: TraceContext) -> int:
    return ctx.weights.rows


def _block_rows(ctx: TraceContext) -> int:
    return ctx.weights.pointer_array.size - 1


def _channels(ctx: TraceContext) -> int:
    return ctx.layer.in_shape[0]


_CSR_LANES = lambda ctx: _lane_efficiency(ctx.weights, dict(ctx.view.lanes_per_row).get(ctx.kernel, 1))  # noqa: E731

#: The trace of every (layer kind, storage format) pair; layers without weights have format None.
#: A new storage format adds its rows here (and its arrays in ``compress``).
TRACES: dict[tuple[LayerKind, Optional[StorageFormat]], TraceRow] = {
    (LayerKind.FC, StorageFormat.DENSE): TraceRow(_dense_rows, _rows, gpu_blocks=_gpu_dense_blocks),
    (LayerKind.CONV, StorageFormat.DENSE): TraceRow(_dense_rows, _rows, gpu_blocks=_gpu_dense_blocks),
    (LayerKind.FC, StorageFormat.CSR): TraceRow(_csr_fc, _rows, _equal_nonzeros, _CSR_LANES),
    (LayerKind.FC, StorageFormat.CSC): TraceRow(_csc_fc, lambda ctx: ctx.weights.cols),
    (LayerKind.CONV, StorageFormat.CSR): TraceRow(_sparse_conv, _rows),
    (LayerKind.FC, StorageFormat.BSR): TraceRow(_bsr_fc, _block_rows, _equal_blocks),
    (LayerKind.CONV, StorageFormat.BSR): TraceRow(_bsr_conv, _block_rows),
    (LayerKind.FC, StorageFormat.NM): TraceRow(_dense_rows, _rows, gpu_blocks=_gpu_dense_blocks),
    (LayerKind.CONV, StorageFormat.NM): TraceRow(_dense_rows, _rows, gpu_blocks=_gpu_dense_blocks),
    (LayerKind.FC, StorageFormat.BITMASK): TraceRow(_dense_rows, _rows, gpu_blocks=_gpu_dense_blocks),
    (LayerKind.FC, StorageFormat.EIE): TraceRow(_eie_fc, lambda ctx: ctx.weights.pes),
    (LayerKind.MAXPOOL, None): TraceRow(_pool, _channels),
    (LayerKind.AVGPOOL, None): TraceRow(_pool, _channels),
    (LayerKind.ADD, None): TraceRow(_add, _channels),
    (LayerKind.CONCAT, None): TraceRow(_concat, _channels),
    (LayerKind.EMBEDDING, None): TraceRow(_embedding, lambda ctx: ctx.batch),
    (LayerKind.NORM, None): TraceRow(_decoder_stream, _decoder_items),
    (LayerKind.GLU, None): TraceRow(_decoder_stream, _decoder_items),
    (LayerKind.SOFTMAX, None): TraceRow(_decoder_stream, _decoder_items),
    (LayerKind.ATTN_SCORES, None): TraceRow(_decoder_stream, _decoder_items),
    (LayerKind.ATTN_VALUES, None): TraceRow(_decoder_stream, _decoder_items),
}


_KIND_NAMES = {LayerKind.FC: "FC", LayerKind.CONV: "convolution"}


def trace_row(layer: Layer, fmt: Optional[StorageFormat]) -> TraceRow:
    """The row of :data:`TRACES` for a layer stored in ``fmt`` (None: no weights)."""
    key = (layer.kind, fmt if layer.kind.has_weights else None)
    if key not in TRACES:
        if fmt is None:
            raise ValueError(f"{layer.name}: a {layer.kind.value} layer needs its encoded weights")
        kinds = [_KIND_NAMES.get(kind, kind.value) for kind, f in TRACES if f is fmt]
        others = sorted(f.value for kind, f in TRACES if kind is layer.kind and f is not None and f.is_sparse)
        name = _KIND_NAMES.get(layer.kind, layer.kind.value)
        raise ValueError(f"{layer.name}: {fmt.value} storage is supported for {' and '.join(kinds) or 'no'} layers "
                         f"only; use {' or '.join(others) or 'dense'} for {name}s")
    return TRACES[key]


def _bases(layer: Layer, enc: Optional[EncodedWeights], batch: int, space: AddressSpace, input_buffer: str,
           second_input: Optional[str], concat_inputs: Sequence[str]) -> tuple[dict[str, int], tuple[int, ...]]:
    """Base addresses of the buffers a layer touches, and of a concat's inputs."""
    bases = {
        "input": space.base(input_buffer, layer.in_bytes(batch)),
        "output": space.base(f"act:{layer.name}", layer.out_bytes(batch)),
    }
    if layer.kind is LayerKind.ADD:
        if second_input is None:
            raise ValueError(f"{layer.name}: an add layer needs its second input buffer")
        bases["input2"] = space.base(second_input, layer.in_bytes(batch))
    if layer.kind is LayerKind.GLU and second_input is not None:
        bases["input2"] = space.base(second_input, layer.in_bytes(batch))
    if layer.kind.reads_kv_cache:       # the keys (scores) or the values (output) of this block's cache
        bases["kv"] = space.base(f"kv:{layer.name}", layer.attention_shape.cache_bytes)
    if layer.kind is LayerKind.EMBEDDING:
        bases["table"] = space.base(f"table:{layer.name}", layer.table_rows * layer.out_bytes(1))
    part_bases: tuple[int, ...] = ()
    if layer.kind is LayerKind.CONCAT:
        if len(concat_inputs) != len(layer.parts):
            raise ValueError(f"{layer.name}: a concat of {len(layer.parts)} inputs got {len(concat_inputs)} "
                             "buffers (pass concat_inputs=concat_buffers(workload, layer))")
        elem = layer.dtype.size_bytes
        part_bases = tuple(space.base(name, c * layer.out_pixels * batch * elem)
                           for name, c in zip(concat_inputs, layer.parts))
    if enc is not None:
        fmt = enc.format
        bases["values"] = space.base(f"w:{layer.name}:{fmt.value}:values", enc.values_bytes)
        if fmt.is_sparse:
            bases["indices"] = space.base(f"w:{layer.name}:{fmt.value}:indices", enc.index_bytes)
            bases["pointers"] = space.base(f"w:{layer.name}:{fmt.value}:pointers", enc.pointer_bytes)
    return bases, part_bases


#: Formats whose index arrays a library may copy into narrower ones at every call
#: (``compute.kernels.kernel_index_bits``): MKL's CSR and BSR handles take 32-bit arrays under LP64.
COPIED_INDEX_FORMATS = frozenset({StorageFormat.CSR, StorageFormat.BSR})
COPY_CHUNK_ELEMENTS = 1024   # elements a core's copy reads, then writes, at a time (a 4 KiB page of int32)


def _narrowed(enc: EncodedWeights, view: CoreView) -> Optional[EncodedWeights]:
    """The encoding as the library's kernel reads it, where the library copies ``enc``'s indices
    and pointers into narrower arrays at every call (``kernel_index_bits``); None where it does not."""
    bits = view.kernel_index_bits
    if bits is None or enc.format not in COPIED_INDEX_FORMATS or max(enc.index_bits, enc.pointer_bits) <= bits:
        return None
    return replace(enc, index_bits=min(enc.index_bits, bits), pointer_bits=min(enc.pointer_bits, bits))


def _index_copy(tr: _Trace, stored: EncodedWeights, narrow: EncodedWeights, bases: dict[str, int], core: int,
                cores: int) -> None:
    """One core's share of the library's copy of the indices and pointers into narrower arrays, as
    an element-wise conversion splits it (equal ranges of elements, whatever the kernel's split):
    chunk by chunk, the stored entries' lines read, then the copy's lines written."""
    for name, count, kind in (("pointers", stored.pointer_array.size, StreamKind.WEIGHT_POINTERS),
                              ("indices", stored.index_array.size, StreamKind.WEIGHT_INDICES)):
        wide, slim = (stored.pointer_bits, narrow.pointer_bits) if name == "pointers" else \
            (stored.index_bits, narrow.index_bits)
        e0, e1 = (int(bound) for bound in _split(count, cores)[core:core + 2])
        starts = np.arange(e0, e1, COPY_CHUNK_ELEMENTS, dtype=np.int64)
        ends = np.minimum(starts + COPY_CHUNK_ELEMENTS, e1)
        first = np.stack([bases[f"stored_{name}"] + starts * wide // 8, bases[name] + starts * slim // 8], axis=1)
        length = np.stack([-(-(ends - starts) * wide // 8), -(-(ends - starts) * slim // 8)], axis=1)
        tr.segments(first.ravel(), length.ravel(), kind, np.tile(np.array([False, True]), starts.size))


def layer_traffic(layer: Layer, input_buffer: str, enc: Optional[EncodedWeights], batch: int,
                  space: AddressSpace, view: CoreView, second_input: Optional[str] = None,
                  concat_inputs: Sequence[str] = ()) -> LayerTraffic:
    """Build the access trace of one layer reading ``input_buffer`` (and ``second_input``, the
    other operand of an add; a concat reads every buffer of ``concat_inputs``, in order: see
    :func:`concat_buffers`) (see module docstring)."""
    stored, narrow = None, None
    if enc is not None:
        enc = enc.with_index_bits(view.index_bits)     # a library storing wider indices than the matrix needs
        stored, narrow = enc, _narrowed(enc, view)
        enc = narrow or enc                            # the kernel reads the library's copies
    fmt = enc.format if enc is not None else StorageFormat.DENSE
    row = trace_row(layer, fmt if enc is not None else None)
    bases, part_bases = _bases(layer, stored, batch, space, input_buffer, second_input, concat_inputs)
    if narrow is not None:    # the stored arrays keep their names; the copies are the call's own buffers
        for name in ("indices", "pointers"):
            bases[f"stored_{name}"] = bases[name]
            bases[name] = space.base(f"copy:{layer.name}:{fmt.value}:{name}",
                                     narrow.index_bytes if name == "indices" else narrow.pointer_bytes)
    kernel = kernel_kind(layer, fmt, batch)
    ctx = TraceContext(layer, enc, bases, batch, layer.dtype.size_bytes, view, kernel, part_bases)
    work_items = row.work_items(ctx)
    occupancy = 1.0
    if layer.kind.has_weights:
        tasks = view.tasks(kernel, work_items)
        cores = max(1, min(view.cores_for(kernel), tasks))
        waves = -(-tasks // cores)
        occupancy = tasks / (waves * cores) * row.lane_efficiency(ctx)
    else:
        cores = max(1, min(view.cores, work_items))
    if view.gpu and row.gpu_blocks is not None:
        lanes = row.gpu_blocks(ctx)
        per_core, core_of = [tr for _, tr in lanes], [sm for sm, _ in lanes]
    else:
        bounds = row.split(ctx, cores) if row.split is not None else _split(work_items, cores)
        per_core, core_of = [], list(range(cores))
        for c in range(cores):
            tr = _Trace(view.line_bytes)
            if narrow is not None:
                assert stored is not None
                _index_copy(tr, stored, narrow, bases, c, cores)
            row.trace(ctx, tr, (int(bounds[c]), int(bounds[c + 1])))
            per_core.append(tr)
    addresses, is_write, core, stream = _interleave(per_core, core_of)
    density = enc.density if enc is not None else 1.0
    shape = kernel_shape(layer, stored, batch, kernel, dict(view.lanes_per_row).get(kernel, 1))
    if narrow is not None:
        shape = replace(shape, index_copies=(narrow.index_bytes, narrow.pointer_bytes))
    gather_bytes = min(view.line_bytes, batch * ctx.elem * (enc.block[1] if enc is not None else 1))
    return LayerTraffic(layer, kernel, layer.flops(batch, density), addresses, is_write, core, stream, cores,
                        occupancy, stored.total_bytes if stored is not None else 0, view.line_bytes, gather_bytes,
                        shape=shape)


def input_buffers(workload: Workload, layer: Layer) -> tuple[str, Optional[str]]:
    """The buffers ``layer`` reads: its predecessor's output (or its own network input), and the
    second operand of a join."""
    preds = workload.predecessors(layer.name)
    first = f"act:{preds[0]}" if preds else f"input:{layer.name}"
    return first, (f"act:{preds[1]}" if len(preds) > 1 else None)


def concat_buffers(workload: Workload, layer: Layer) -> list[str]:
    """Every buffer a concat joins, in the order of its inputs (empty for any other layer)."""
    if layer.kind is not LayerKind.CONCAT:
        return []
    return [f"act:{p}" for p in workload.predecessors(layer.name)]


def workload_traffic(workload: Workload, encodings: dict[str, EncodedWeights], batch: int,
                     view: CoreView, space: Optional[AddressSpace] = None) -> list[LayerTraffic]:
    """Traces of every layer in execution order; each layer reads its predecessor's output."""
    space = space or AddressSpace()
    return [workload_layer_traffic(workload, layer, encodings.get(layer.name), batch, space, view)
            for layer in workload.layers]


def workload_layer_traffic(workload: Workload, layer: Layer, enc: Optional[EncodedWeights], batch: int,
                           space: AddressSpace, view: CoreView) -> LayerTraffic:
    """One layer's trace, reading the buffers the workload's graph gives it."""
    first, second = input_buffers(workload, layer)
    return layer_traffic(layer, first, enc, batch, space, view, second, concat_buffers(workload, layer))
