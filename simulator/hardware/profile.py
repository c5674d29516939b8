"""Hardware profiles: what a CPU, GPU or accelerator offers the memory model.

A profile is a YAML file with readable units (``hwprofiles/*.yaml``), validated into
immutable objects whose fields carry their base unit in the name (``size_bytes``,
``bandwidth_bytes_per_s``). Every datasheet figure is cited in the profile's ``sources``
map, keyed by the field path it supports (``memory.caches.L2.size``).

The per-level cache block holds exactly what the cache model needs (size, line, ways,
shared) plus its timing (latency, bandwidth), in the spirit of kerncraft machine files.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field

from ..base.errors import ConfigError
from ..base.schema import (
    Bytes,
    BytesPerS,
    FlopPerS,
    Fraction,
    Hertz,
    Joules,
    PositiveInt,
    Seconds,
    Share,
    Strict,
    Watts,
    validate,
)
from ..base.yamlio import read_yaml_mapping
from .fieldpaths import field_paths, level_path, spell

SCHEMA_VERSION = 1


class DeviceKind(str, enum.Enum):
    """What sort of machine a profile describes."""

    CPU = "cpu"
    GPU = "gpu"
    FPGA = "fpga"
    ACCELERATOR = "accelerator"


class KernelKind(str, enum.Enum):
    """The library kernels a layer lowers to; each has its own issue costs in a profile (compute.kernels)."""

    GEMV = "gemv"      # dense matrix x vector (FC at batch 1)
    GEMM = "gemm"      # dense matrix x matrix (FC at batch > 1)
    SPMV = "spmv"      # sparse (CSR/CSC) matrix x vector
    SPMM = "spmm"      # sparse matrix x dense matrix
    CONV = "conv"      # dense convolution (implicit GEMM)
    SPCONV = "spconv"  # convolution with sparse weights
    POOL = "pool"      # pooling / element-wise, no weights
    BSR = "bsr"        # block-sparse (BSR) weights x dense input: FC and convolution
    NM = "nm"          # N:M structured-sparse weights x dense input: FC and convolution
    BITMASK = "bitmask"    # bitmask-compressed weights x dense input (FC)
    CODEBOOK = "codebook"  # EIE's format: codebook indices with relative row indices (FC)


class Replacement(str, enum.Enum):
    """How a cache level picks the line to evict, and where it inserts a new line.

    ``lru`` evicts the least recently used line and inserts at the most recently used position.
    ``random`` evicts a pseudo-random valid line (invalid ways first). ``bip`` (bimodal insertion,
    Qureshi et al., ISCA 2007) evicts the LRU line but inserts most new lines at the LRU position,
    one in 32 at MRU, so a working set larger than the cache keeps part of itself resident instead
    of thrashing. ``dip`` duels the two: a few leader sets always use LRU, a few always BIP, and a
    saturating counter of their misses decides what the other sets do (timing studies report
    adaptive insertion of this kind in Intel's L3 caches since Ivy Bridge).
    """

    LRU = "lru"
    RANDOM = "random"
    BIP = "bip"
    DIP = "dip"


class WriteAllocate(str, enum.Enum):
    """What a cache level does on a store that misses it.

    ``fetch`` reads the line from below first (a CPU's read-for-ownership), then merges the store.
    ``no-fetch`` allocates the line without reading it when the store overwrites whole sectors
    (NVIDIA's L2 keeps a valid mask per 32 B sector): the line is dirty and written back later,
    and nothing is read from below. A read-modify-write (a scatter-add) always fetches.
    """

    FETCH = "fetch"
    NO_FETCH = "no-fetch"


class PerType(Strict):
    """A figure per data type, each optional; the subclasses give the fields and their units."""

    def of(self, dtype: str) -> Optional[float]:
        """The figure for ``dtype`` (``fp16``, ``int8``, ...), or None when the profile gives none."""
        value = getattr(self, dtype, None)
        return None if value is None else float(value)


class PeakFlops(PerType):
    """Peak arithmetic throughput per data type, whole device."""

    fp32: Optional[FlopPerS] = None
    fp16: Optional[FlopPerS] = None
    bf16: Optional[FlopPerS] = None
    int16: Optional[FlopPerS] = None   # fixed point, as fixed-function accelerators compute
    int8: Optional[FlopPerS] = None

    @property
    def best_known(self) -> float:
        """The fp32 peak, or else the first type the profile gives."""
        for name in ("fp32", "fp16", "int16", "int8"):
            value = getattr(self, name)
            if value is not None:
                return float(value)
        raise ValueError("no peak given")


class SparseConvAlgorithm(str, enum.Enum):
    """How a library convolves with sparse weights.

    ``direct``: each non-zero weight multiplies a whole output plane's worth of input in place,
    vectorised along the output row (Park et al., ICLR 2017, "Faster CNNs with direct sparse
    convolutions"): no lowered copy of the input. ``im2col``: the input is first lowered into a
    (channels x kernel**2) x (batch x pixels) matrix, written and read back, then multiplied by the
    CSR weights as a sparse x dense product (what GPU libraries and torch's CSR matmul do).
    """

    DIRECT = "direct"
    IM2COL = "im2col"


class TypeSeconds(PerType):
    """A time per data type (absent types: see :meth:`seconds`)."""

    fp32: Optional[Seconds] = None
    fp16: Optional[Seconds] = None
    bf16: Optional[Seconds] = None
    int8: Optional[Seconds] = None

    def seconds(self, dtype: str, fallback: Optional[str] = None) -> float:
        """Seconds for ``dtype``: its own figure, else ``fallback``'s, else 0."""
        value = self.of(dtype)
        if value is None and fallback is not None:
            value = self.of(fallback)
        return 0.0 if value is None else value


class VectorCycles(PerType):
    """Cycles one core's inner loop spends per vector of ``compute.vector_lanes`` weights, per data
    type (a measured property of the library's loop, like a sparse kernel's ``cycles_per_nonzero``)."""

    fp32: Optional[Annotated[float, Field(gt=0, le=1e4)]] = None
    fp16: Optional[Annotated[float, Field(gt=0, le=1e4)]] = None
    bf16: Optional[Annotated[float, Field(gt=0, le=1e4)]] = None
    int8: Optional[Annotated[float, Field(gt=0, le=1e4)]] = None


class RowCycles(PerType):
    """Cycles one core's loop spends per output row (a dot product's end), per data type."""

    fp32: Optional[Annotated[float, Field(ge=0, le=1e6)]] = None
    fp16: Optional[Annotated[float, Field(ge=0, le=1e6)]] = None
    bf16: Optional[Annotated[float, Field(ge=0, le=1e6)]] = None
    int8: Optional[Annotated[float, Field(ge=0, le=1e6)]] = None


class TypeShares(PerType):
    """A share (0 to 1) per data type."""

    fp32: Optional[Share] = None
    fp16: Optional[Share] = None
    bf16: Optional[Share] = None
    int8: Optional[Share] = None


class PackedTile(Strict):
    """One tile of a library's packed weight layout: ``depth`` weights of the reduction by ``rows``
    output rows, stored contiguously (fbgemm's KCB x NCB)."""

    depth: PositiveInt
    rows: PositiveInt

    def partial_tiles(self, rows: int, depth: int) -> int:
        """Tiles of a ``rows`` x ``depth`` matrix's last depth block when that block is only partly
        full (each a run with a gap after it), else 0: a whole number of blocks is one stream."""
        return -(-rows // self.rows) if depth % self.depth else 0


class DenseKernel(Strict):
    """How a dense kernel (GEMV, GEMM, convolution) issues its multiply-adds on one core.

    Its time is its output tiles' FMAs at the core's vector FMA rate for the data type, in waves
    over the cores (tile and wave geometry: a tile of ``rows_per_task`` rows x ``tile_columns``
    columns is a task; partial tiles still cost a whole tile; tasks that do not fill the last wave
    leave cores idle). ``library_efficiency`` is the share of that FMA rate the library's inner
    loop reaches where no modelled mechanism explains the gap; every value below 1 is a named,
    measured property of the library on that profile, with its source. A weight-only (``w8``,
    ``w4``) or emulated (fp16 without fp16 arithmetic) type also converts each stored weight into
    the arithmetic type once per kernel: ``dequant_cycles_per_vector`` cycles per vector of
    ``compute.vector_lanes`` weights (unpack, multiply by the group's scale, convert; default 1,
    one vector instruction's worth).
    """

    library_efficiency: Fraction = 1.0
    tile_columns: PositiveInt = 1
    # Weight-only and emulated types: cycles to convert one vector of ``compute.vector_lanes``
    # stored weights into the arithmetic type (unpack, scale, convert), each weight once per kernel.
    dequant_cycles_per_vector: Annotated[float, Field(ge=0, le=1e4)] = 1.0
    # A loop bound by its loads and conversions, not its FMAs: a batch-1 GEMV reads each weight
    # once and uses it once, so a library whose loop converts each weight (torch's bf16 GEMV on a
    # CPU converts to fp32 lane by lane) issues at its own rate per type, whatever the FMA peak.
    # Where given for the kernel's type, each tile's weights x columns cost this many cycles per
    # vector of ``compute.vector_lanes`` instead of their FMAs (calibrate: a cache-resident GEMV).
    cycles_per_vector: VectorCycles = VectorCycles()
    # With ``cycles_per_vector`` for the type, a loop's own cost per output row on top of its
    # weights' (a row's accumulators reduced across the lanes, converted and stored): torch's bf16
    # GEMV on a Zen 3 guest spends about 37 ns a row on a core, so in cache rows of 896 columns run
    # at 8.9 G weights/s on two cores and rows of 4864 at 10.5 (calibrate: the same weights in rows
    # of 256, 1024 and 16000 columns). Absent: the rows are in ``cycles_per_vector``'s rate.
    cycles_per_row: RowCycles = RowCycles()
    # Types whose weights the library first packs (copies into a blocked panel in cache: oneDNN's
    # reorder of plain-layout bf16 weights for its brgemm kernels), then multiplies: a panel's
    # loads do not run ahead of the loop, so the loop and the memory take turns instead of
    # overlapping (calibrate: a GEMV far beyond the caches takes loop + memory, not the larger).
    packs: list[Literal["fp32", "fp16", "bf16", "int8"]] = []
    # Per type, the share of the loop's issue time under which its next weight loads run, for a
    # loop that neither packs (0) nor keeps its loads wholly ahead of it (1, the default): beyond
    # the private caches it takes the larger of its issue and streaming times plus the rest of its
    # issue time, as a sparse kernel's ``load_overlap``. torch's batch-1 bf16 GEMV on a Zen 3 guest
    # (converting each weight to fp32 as it loads it, 8.4 G weights/s in cache) took 13% longer
    # cycling 24 matrices of 4864 x 896 from DRAM than on one in the L3, where the larger of its
    # loop and its bytes' time says no longer (calibrate: the row probe's GEMV in the type against
    # its in-cache loop and its bytes at the sustained bandwidth). A type in ``packs`` has 0.
    load_overlap: TypeShares = TypeShares()
    # Host time of one call beyond ``compute.launch_overhead``, per type: the library's own set-up
    # (oneDNN's primitive dispatch for bf16, fbgemm's quantization of the input for int8), paid
    # once per call whatever the shape (calibrate: the intercept of the GEMV loop's line). A
    # convolution through torch's oneDNN sets up every call on one core while the others wait
    # (memory descriptors, primitive-cache look-ups, its blocked buffers allocated and freed: ``perf``
    # on a Zen 3 guest put 59% of a tiny one's call there; calibrate: 8 channels on a 4 x 4 map at
    # batch 2, whose multiply-adds take under a microsecond).
    call_overhead: TypeSeconds = TypeSeconds()
    # A batch-1 GEMV whose library walks its weights row by row (a few rows at once, each row a
    # stream of its own): every row that comes from DRAM starts a stream the prefetchers have not
    # seen, and its first lines wait on demand misses before they run ahead, per type, on the core
    # that reads the row. Short rows pay it more often per byte: fp32 rows of 1024 columns stream
    # at 17 GB/s, of 16384 at 24 GB/s on a Zen 4 guest (calibrate: the same bytes beyond the last
    # level in rows of two lengths). Absent: rows cost only their bytes.
    row_start: TypeSeconds = TypeSeconds()
    # Types whose weights the library keeps packed in tiles (fbgemm's int8 layout on x86: tiles of
    # ``depth`` x ``rows`` weights, tile after tile along the rows, one depth block after another,
    # every tile a whole block's bytes apart even in a last depth block that is only partly full).
    # Such a GEMV reads its weights as one stream, not row by row, except where its depth is not a
    # whole number of blocks: each tile of the last block is then a run of its own with an unused
    # gap after it, and starts a stream as a row does, at ``row_start`` for the type (calibrate: the
    # instruction set's tile from fbgemm's ``PackingTraits``; the start from the row probe's int8
    # GEMV in depths with and without a partial block). Absent: the type's rows are its streams.
    packed_tiles: dict[Literal["fp32", "fp16", "bf16", "int8"], PackedTile] = {}
    # The same start for a row that a cache level serves, per level (by name) and type: its first
    # lines wait that level's latency instead of DRAM's, so a start costs less, but a 20 MiB GEMV
    # from a shared L3 in rows of 600 columns still took 1.4x as long as in rows of 8791 on a Zen 3
    # guest (calibrate: the same bytes inside the last level in rows of two lengths, which also
    # gives the level's bandwidth without them). Absent for a level: its rows cost only their bytes.
    cached_row_start: dict[str, TypeSeconds] = {}
    # A GEMM (or convolution) that copies its whole weight matrix into the library's blocked layout
    # at every call, before any multiply-add (MKL's and oneDNN's packed B panels for plain-layout
    # weights): cycles per vector of ``compute.vector_lanes`` weights, per type, paid once per call
    # whatever the batch, spread over the kernel's cores. It is why a GEMM's time is an affine
    # function of its batch, not a rate (calibrate: the intercept of each type's GEMMs at two batches).
    pack_cycles_per_vector: VectorCycles = VectorCycles()
    # A direct convolution that keeps its activations and weights in channel blocks (oneDNN's
    # nChw16c on AVX-512: the vector's lanes) computes every block whole: output channels, and input
    # channels where a layer has at least a block of them (a first layer's few input channels are
    # broadcast one by one), round up to a multiple of it, so pruning 80 filters to 73 saves no
    # time. It also reorders its input (where blocked) and its output between the framework's plain
    # layout and the blocked one at every call: each activation read and written once more, at the
    # bandwidth of the level that holds it (calibrate: a convolution of one channel past whole
    # blocks against one of the next whole number). 1: no blocking, no reorders (an implicit GEMM).
    channel_block: PositiveInt = 1
    # The widest k x k window the library's direct convolution takes: a wider one runs lowered,
    # im2col (a copy of the input into depth x output-pixel columns, written and read back at the
    # bandwidth of the level that holds it, then packed by the GEMM at its
    # ``pack_cycles_per_vector``) then the GEMM kernel's product, neither channel blocks
    # nor reorders (oneDNN 3 in torch 2.13 on AVX2: jit:avx2 up to 7 x 7, x64:gemm:jit from 9 x 9,
    # AlexNet's 11 x 11 conv1 included; calibrate: the implementation oneDNN's verbose log names).
    # Absent: every window direct.
    direct_max_kernel: Optional[PositiveInt] = None
    # The framework's own rule for which library a convolution goes to: a batch-1 fp32 convolution
    # with a window of at most 3 x 3 whose input has at most this many elements skips the direct
    # library and runs the framework's own im2col + GEMM (torch 2.13's ``use_mkldnn`` in ATen: 20480
    # elements; ``slow_conv2d`` then MKL's SGEMM, which ``perf`` shows), priced as a lowered
    # convolution and without the direct library's ``call_overhead`` (calibrate: which batch-1
    # inputs oneDNN's verbose log names a convolution for). Absent: every convolution direct.
    native_max_input_elements: Optional[PositiveInt] = None

    def packed_tile(self, dtype: str) -> Optional[PackedTile]:
        """The tile the library packs ``dtype``'s weights in (``packed_tiles``), or None."""
        return {str(name): tile for name, tile in self.packed_tiles.items()}.get(dtype)


class SparseKernel(Strict):
    """How a sparse kernel (CSR / CSC product, sparse convolution) issues, on one core (CPU) or one
    SM (GPU), in cycles of the core clock.

    A *step* handles one non-zero for ``columns_per_step`` dense columns (batch x output pixels)
    at once (the vector width the kernel uses on them: 1 for a scalar loop). With ``lanes_per_row``
    lanes on one row, a row of ``n`` non-zeros takes ``ceil(n / lanes)`` steps. Each step costs
    ``cycles_per_nonzero`` (index load, gather, FMA), each row and column group
    ``cycles_per_row`` (pointer loads, reduction, store). A weight-only or emulated type also
    converts each stored weight once (``dequant_cycles_per_vector`` per vector of
    ``compute.vector_lanes`` weights).

    ``rows_in_flight_per_core``, where set, is a kernel whose steps wait on each other: a row's
    step gathers at indices it has just loaded, with no hardware prefetcher ahead of it (a GPU
    warp per row), so each step waits the latency of the level its weights come from plus that of
    the level its gathers hit, and a core (SM) overlaps only that many rows (its resident warps).
    Unset: the core's prefetchers keep the steps of a row overlapped (CPUs)."""

    cycles_per_nonzero: Annotated[float, Field(gt=0, le=1e4)]
    cycles_per_row: Annotated[float, Field(ge=0, le=1e6)] = 0.0
    columns_per_step: PositiveInt = 1
    rows_in_flight_per_core: Optional[PositiveInt] = None
    algorithm: SparseConvAlgorithm = SparseConvAlgorithm.DIRECT   # sparse convolution only
    # im2col only: cycles of one core per element the lowering copies (a strided gather, which a
    # library may do far below the bandwidth of the level holding it); 0: bandwidth alone
    lowering_cycles_per_element: Annotated[float, Field(ge=0, le=1e4)] = 0.0
    # as DenseKernel's: cycles per vector of stored weights converted into the arithmetic type
    dequant_cycles_per_vector: Annotated[float, Field(ge=0, le=1e4)] = 1.0
    # The share of the kernel's issue time under which its next weight loads run: 1, they run ahead
    # of its loop and beyond the private caches it takes the larger of its issue and streaming
    # times; 0, they wait for it and it takes the sum; between, the rest of its issue time is
    # added to the larger (calibrate: the kernel on a matrix beyond the private caches, against
    # its in-cache costs and its bytes' streaming time; scipy's one-thread CSR loop on a Zen 3
    # guest, 0.20-0.43 in six calibrations).
    load_overlap: Share = 1.0
    # Host time of one call beyond ``compute.launch_overhead``, whatever its size: the library's own
    # set-up (torch's CSR product hands MKL a new handle over its arrays at every call, and forks and
    # joins its threads). Left in the cost per non-zero, it makes every non-zero of a large layer pay
    # a small call's share of it: 4.5 cycles a non-zero from a 64 Ki-non-zero call against 2.2 on
    # layers of a million, on a Zen 3 guest (calibrate: the same rows at two non-zero counts).
    call_overhead_s: Optional[Seconds] = Field(None, alias="call_overhead")
    # Where set, the kernel's loop waits for its gathers that miss the private caches, with this
    # many of them in flight on a core: each adds the latency of the level that serves it beyond the
    # last private level's (whose gathers the costs above already hold) over this count to the
    # kernel's time, after its issue, instead of running beside the loop. Unset: the gathers'
    # latency only bounds the kernel, through the core's request slots (``outstanding_gathers_per_core``).
    # (calibrate: the kernel gathering from the last level against the same product gathering from
    # the private ones; torch's SpMM at batch 64 on a Zen 3 guest waited on its gathers from the L3
    # with 8 to 17 in flight a core, where the core has 16 to 20 slots.)
    gathers_in_flight_per_core: Optional[Annotated[float, Field(ge=1, le=1024)]] = None
    # Cycles of one core's loop a gather costs where its line is not in the first level (served by
    # any level below: the line's fill into the first level, which the loop's next loads wait
    # behind), on top of ``cycles_per_nonzero``, whose in-cache fit gathers from the first level
    # (calibrate: an SpMV gathering over eight times the first level, at most half the last
    # private level, against the same non-zeros gathering over 8 KiB; torch's on a Zen 3 guest,
    # 0.4 ns a gathered line beyond the L1 whether the L2 or the L3 served it: the gathers of a
    # sorted row run forward, and the prefetchers keep up). Unset: 0.
    cycles_per_gather_fill: Optional[Annotated[float, Field(ge=0, le=1e4)]] = None


class SparseLibrary(Strict):
    """A CSR library of the machine besides the one ``spmv`` / ``spmm`` describe, by the name a
    measurement gives it (``bench``'s backends: ``torch``, ``scipy``): its own SpMV and SpMM costs,
    the width of the indices and row pointers it stores (and the narrower one its kernels read,
    :class:`Kernels`), and the cores it runs on (None: all).
    ``bench`` runs each layer on whichever library is faster there, so a cross-check times each
    measured cell with the library that ran it (:meth:`HardwareProfile.with_sparse_library`):
    the index width changes the traffic, the costs and cores the issue time."""

    spmv: SparseKernel
    spmm: SparseKernel
    index_bits: Optional[Literal[16, 32, 64]] = None
    kernel_index_bits: Optional[Literal[16, 32]] = None
    threads: Optional[PositiveInt] = None


class ElementKernel(Strict):
    """An element-wise kernel (pooling, residual add, concat): ``cycles_per_element`` per vector of
    ``compute.vector_lanes`` elements on one core."""

    cycles_per_element: Annotated[float, Field(gt=0, le=1e4)] = 1.0


Cycles = Annotated[float, Field(ge=0, le=1e6)]


class BsrKernel(Strict):
    """A block-sparse (BSR) product: each stored ``R x C`` block is a small dense GEMM.

    Its multiply-adds run at the core's FMA rate times ``library_efficiency``, with partial lanes
    where the vector is wider than what it runs along (the block row's C weights, or the dense
    columns when there are enough of them: the kernel takes the better); each block costs
    ``cycles_per_block`` per group of ``columns_per_step`` columns (block-column index load,
    address arithmetic, loading the block's input rows), each block row ``cycles_per_row``. A
    library whose matrix-vector product (batch 1) takes a path of its own gives that path's cost
    per block as ``vector_cycles_per_block`` (torch's CPU BSR ``mv``: thousands of cycles a block,
    where its matrix product spends about a hundred)."""

    library_efficiency: Fraction = 1.0
    cycles_per_block: Cycles = 0.0
    cycles_per_row: Cycles = 0.0
    columns_per_step: PositiveInt = 1
    vector_cycles_per_block: Optional[Cycles] = None


class NMKernel(Strict):
    """An N:M structured-sparse product on sparse tensor cores.

    Where the profile has them for the data type (``compute.structured_sparse_peak_flops``:
    Ampere's 2:4) it runs as a dense kernel at that dense-equivalent rate: tiles of
    ``rows_per_task`` x ``tile_columns`` (a sparse MMA's smallest N: 8 for ``mma.sp``) in waves,
    times ``library_efficiency``; the metadata (2 bits per kept value) is read by the tensor core
    itself. Elsewhere it is a compressed format with an implicit row structure, timed with the CSR
    kernels' costs (``spmv`` / ``spmm`` / ``spconv``) over rows that all hold N/M of the columns."""

    library_efficiency: Fraction = 1.0
    tile_columns: PositiveInt = 1


class BitmaskKernel(Strict):
    """A bitmask-compressed product: a popcount / expand stream. Every ``word_bits`` bits of mask
    cost ``cycles_per_word`` (load, popcount, expand or compress the word's inputs), every stored
    value ``cycles_per_nonzero`` (its FMA), per group of ``columns_per_step`` dense columns."""

    word_bits: PositiveInt = 64
    cycles_per_word: Cycles = 1.0
    cycles_per_nonzero: Cycles = 1.0
    columns_per_step: PositiveInt = 1


class CodebookKernel(Strict):
    """EIE's format run by a CPU / GPU kernel: each stored entry (padding entries included) is a
    codebook lookup, a relative-index step and an FMA (``cycles_per_entry``), each column of each
    PE's slice a pointer pair and an activation load (``cycles_per_column``), per group of
    ``columns_per_step`` dense columns."""

    cycles_per_entry: Cycles = 1.0
    cycles_per_column: Cycles = 0.0
    columns_per_step: PositiveInt = 1


class Kernels(Strict):
    """Issue costs of every kernel kind (see :mod:`simulator.engine.kernelcost`).

    ``index_bits`` is the width of the indices and pointers the sparse library stores (Intel MKL,
    LP64, and cuSPARSE, ``CUSPARSE_INDEX_32I``: 32); absent, they follow the matrix (16 bits when
    the columns fit, see :mod:`simulator.compress.compression`). ``kernel_index_bits``, where
    narrower, is the width its kernels read: the library then copies the indices and row pointers
    of a CSR or BSR matrix into new arrays of that width at every call, before the product
    (torch's CPU sparse products on int64 indices, for MKL's 32-bit LP64 interface: the copy's
    traffic, and beyond ``memory.fresh_pages.above`` its page faults, come with every call;
    calibrate counts the pages one call faults in). The format kernels (``bsr``,
    ``nm``, ``bitmask``, ``codebook``) are optional: a profile without one cannot run that format.
    ``libraries`` holds the machine's other CSR libraries (:class:`SparseLibrary`), by name."""

    gemv: DenseKernel = DenseKernel()
    gemm: DenseKernel = DenseKernel()
    conv: DenseKernel = DenseKernel()
    spmv: SparseKernel
    spmm: SparseKernel
    spconv: SparseKernel
    pool: ElementKernel = ElementKernel()
    bsr: Optional[BsrKernel] = None
    nm: Optional[NMKernel] = None
    bitmask: Optional[BitmaskKernel] = None
    codebook: Optional[CodebookKernel] = None
    index_bits: Optional[Literal[16, 32, 64]] = None
    kernel_index_bits: Optional[Literal[16, 32]] = None
    libraries: dict[str, SparseLibrary] = {}

    def dense(self, kind: KernelKind) -> DenseKernel:
        """The dense kernel of ``kind`` (gemv, gemm, conv)."""
        return getattr(self, kind.value)

    def sparse(self, kind: KernelKind) -> SparseKernel:
        """The sparse kernel of ``kind`` (spmv, spmm, spconv)."""
        return getattr(self, kind.value)


class RowsPerTask(Strict):
    """Output rows one core takes as a unit of work, per FC kernel kind (a GPU library's thread-block
    tile; 1 for CPU threads, which split rows freely). Few rows then occupy few cores, and tasks that
    do not divide evenly among cores leave some idle in the last wave."""

    gemv: PositiveInt = 1
    gemm: PositiveInt = 1
    spmv: PositiveInt = 1
    spmm: PositiveInt = 1

    def of(self, kind: KernelKind) -> int:
        """Rows per task of a kernel kind (1 for kinds that are not FC kernels)."""
        return int(getattr(self, kind.value, 1))


class LanesPerRow(Strict):
    """SIMD lanes a sparse kernel puts on one row together, per sparse FC kernel kind (default 1).

    cuSPARSE's CSR-vector SpMV gives each row a 32-thread warp: a row of ``n`` non-zeros takes
    ``ceil(n / 32)`` warp steps whoever is idle in the last one, so short rows waste lanes. A CPU
    library that finishes a row's tail in a scalar loop wastes none (1)."""

    spmv: PositiveInt = 1
    spmm: PositiveInt = 1

    def of(self, kind: KernelKind) -> int:
        """Lanes per row of a kernel kind (1 for kinds other than spmv and spmm)."""
        return int(getattr(self, kind.value, 1))


class Threads(Strict):
    """Cores a library kernel actually uses, per kernel kind (default: all of them). Some
    libraries run a kernel on one thread whatever the machine (Deep Compression's CPU power
    measurements show MKL's sparse kernels drawing half the power of its threaded dense ones)."""

    gemv: Optional[PositiveInt] = None
    gemm: Optional[PositiveInt] = None
    spmv: Optional[PositiveInt] = None
    spmm: Optional[PositiveInt] = None
    conv: Optional[PositiveInt] = None
    spconv: Optional[PositiveInt] = None
    pool: Optional[PositiveInt] = None
    bsr: Optional[PositiveInt] = None
    nm: Optional[PositiveInt] = None
    bitmask: Optional[PositiveInt] = None
    codebook: Optional[PositiveInt] = None

    def of(self, kind: KernelKind) -> Optional[int]:
        """Cores a kernel of ``kind`` uses, or None for all."""
        return getattr(self, kind.value, None)


class Compute(Strict):
    """The arithmetic side: clock, cores, vector width, peak rates, kernel issue costs, launch cost.

    ``lanes_per_core`` counts the fp32 FMA lanes a core issues per cycle (FMA ports x vector lanes);
    ``vector_lanes`` the fp32 lanes of one vector instruction (AVX2: 8, NEON: 4, a GPU warp: 32).
    ``outstanding_gathers_per_core`` is the demand misses one core (SM) keeps in flight: what a
    gather that misses the first level is limited by (line fill buffers, MSHRs), apart from the
    prefetched streams' parallelism (``memory.dram.outstanding_requests_per_core``)."""

    clock_hz: Hertz = Field(alias="clock")
    cores: PositiveInt
    lanes_per_core: PositiveInt
    vector_lanes: PositiveInt = 1
    peak_flops: PeakFlops
    # N:M (2:4) structured-sparse tensor-core rates, counted as dense-equivalent FLOP/s (the
    # datasheets' "sparse" figures, twice the dense rate on Ampere); absent: no sparse tensor cores
    structured_sparse_peak_flops: Optional[PeakFlops] = None
    kernels: Optional[Kernels] = None
    outstanding_gathers_per_core: PositiveInt = 1
    launch_overhead_s: Seconds = Field(alias="launch_overhead")
    # Host time an eager framework spends dispatching one decoder block's operators beyond the
    # kernels' own launch and call overheads, per type of the block's weights (eager PyTorch:
    # about sixty operator calls a block, each a Python call, a dispatcher pass and an OpenMP fork
    # and join over the threads). It adds to each block's time (the host thread that dispatches is
    # the thread that computes); a type not given takes fp32's. Absent: a compiled runtime.
    block_dispatch: TypeSeconds = TypeSeconds()
    rows_per_task: RowsPerTask = RowsPerTask()
    lanes_per_row: LanesPerRow = LanesPerRow()
    threads: Threads = Threads()


class CacheLevel(Strict):
    """One cache level; the first five fields, ``replacement``, ``write_allocate`` and
    ``caches_streams`` are what the cache model needs.

    ``caches_streams: false`` marks a level that keeps only gather loads (irregular read-only
    loads, which GPU libraries issue through the texture / read-only data path): every other access
    of a layer's trace (weight and input streams, stores) passes it by to the level below, as global
    memory does past Kepler's and Maxwell's L1 by default.

    ``latency`` is a random load's (a dependent pointer chase: what a gather waits). A prefetched
    sequential stream can see less per line (no page walk per line, the prefetcher ahead of it):
    ``stream_latency``, where given, is what the engine's Little's law charges a stream's lines
    served by this level (default: ``latency``).
    """

    name: str
    size_bytes: Bytes = Field(alias="size")
    line_bytes: Bytes = Field(alias="line")
    ways: PositiveInt
    shared: bool
    latency_s: Seconds = Field(alias="latency")
    bandwidth_bytes_per_s: BytesPerS = Field(alias="bandwidth")
    sector_bytes: Optional[Bytes] = Field(None, alias="sector")
    replacement: Replacement = Replacement.LRU
    write_allocate: WriteAllocate = WriteAllocate.FETCH
    caches_streams: bool = True
    stream_latency_s: Optional[Seconds] = Field(None, alias="stream_latency")

    @property
    def streamed_latency_s(self) -> float:
        """The latency a prefetched stream's line waits at this level."""
        return self.latency_s if self.stream_latency_s is None else self.stream_latency_s

    @property
    def fill_bytes(self) -> int:
        """Smallest unit this level fetches from below: its sector, or else its line."""
        return self.sector_bytes or self.line_bytes


class Dram(Strict):
    """Main (device) memory."""

    peak_bandwidth_bytes_per_s: BytesPerS = Field(alias="peak_bandwidth")
    sustained_bandwidth_bytes_per_s: BytesPerS = Field(alias="sustained_bandwidth")
    latency_s: Seconds = Field(alias="latency")
    outstanding_requests_per_core: PositiveInt = Field(alias="outstanding_requests_per_core")
    capacity_bytes: Bytes = Field(alias="capacity")
    # The DRAM time a line written back takes, as a share of a line read at the sustained
    # bandwidth: 1, the bus moves it like a read. Where the cores' reads are bound by the misses
    # they keep in flight rather than by the bus, the write-backs drain beside them for less
    # (calibrate: a fill of 256 MiB, its read for ownership plus its write-back, against a read
    # of the same bytes; 0.46-0.5 on a 2-vCPU Zen 3 guest, whose two cores read 30-38 GB/s from a
    # many-channel host).
    writeback_cost: Annotated[float, Field(ge=0, le=2)] = 1.0


class Scratchpad(Strict):
    """An explicitly managed on-chip memory (SRAM buffer): data placed there is read from it at
    its bandwidth, without tags, misses or DRAM traffic."""

    name: str
    size_bytes: Bytes = Field(alias="size")
    per_core: bool
    latency_s: Seconds = Field(alias="latency")
    bandwidth_bytes_per_s: BytesPerS = Field(alias="bandwidth")   # per instance


class Tlb(Strict):
    """Address translation as a random access sees it. The latencies of the levels below the first
    (and DRAM's) are those of random accesses over footprints beyond the TLBs' ``reach``: each
    pays a page walk, ``miss_latency`` (under a hypervisor that backs guest memory with small
    pages, a two-dimensional one). A gather over an operand that fits in the reach translates
    from the TLB and waits ``miss_latency`` less at every level below the first (calibrate:
    pointer chases over growing footprints, beyond the private caches)."""

    reach_bytes: Bytes = Field(alias="reach")
    miss_latency_s: Seconds = Field(alias="miss_latency")


class FreshPages(Strict):
    """Buffers a framework's allocator maps afresh at every call, as the host OS serves them:
    glibc's malloc hands a request above its mmap threshold (dynamic, never above ``above``: 32 MiB
    on 64-bit Linux, ``DEFAULT_MMAP_THRESHOLD_MAX``) to a new mapping and unmaps it at free, so a
    kernel whose output (or a layout temporary) is that large faults in every page of it at first
    touch, the OS zeroing each, at ``bandwidth`` (calibrate: filling a fresh buffer against filling
    one that exists). Smaller buffers reuse freed memory and fault nothing."""

    above_bytes: Bytes = Field(alias="above")
    bandwidth_bytes_per_s: BytesPerS = Field(alias="bandwidth")


class Memory(Strict):
    """Caches from the core outwards, scratchpads, then DRAM (absent when everything is on chip),
    the TLBs' reach and the cost of fresh pages where a profile gives them."""

    caches: tuple[CacheLevel, ...] = ()
    scratchpads: tuple[Scratchpad, ...] = ()
    dram: Optional[Dram] = None
    tlb: Optional[Tlb] = None
    fresh_pages: Optional[FreshPages] = None


class SparseEngine(Strict):
    """An EIE-style array of processing elements (Han et al., ISCA 2016): the compressed matrix
    lives in per-PE SRAM in interleaved CSC (row i on PE i mod pes), non-zero input activations
    are broadcast one per cycle, and each PE works through its slice of that column, one stored
    entry (a codebook index and a relative row index) per cycle, behind a FIFO of activations."""

    pes: PositiveInt
    fifo_depth: PositiveInt
    index_bits: PositiveInt          # relative row index; longer zero runs need padding entries
    codebook_bits: PositiveInt       # weight-sharing index
    pointer_bits: PositiveInt        # column pointers
    weights_scratchpad: str          # scratchpad names that hold the entries and the pointers
    pointers_scratchpad: str


class TiledEngine(Strict):
    """A dense convolver array fed from explicitly managed on-chip buffers by double-buffered DMA
    (Qiu et al., FPGA 2016): each cycle it computes ``output_lanes`` output channels x
    ``input_lanes`` input channels, each lane a ``window`` x ``window`` line-buffer convolver
    (``window``**2 multipliers) whose results an adder tree sums over the input lanes. Layers are
    tiled onto the three named scratchpads by the rule in :mod:`simulator.engine.tiling`."""

    output_lanes: PositiveInt        # output channels in parallel (Qiu et al.: processing elements)
    input_lanes: PositiveInt         # input channels in parallel per output (Qiu et al.: convolvers per PE)
    window: PositiveInt              # a lane computes one window x window product per cycle
    input_buffer: str                # scratchpad names of the three buffers
    weight_buffer: str
    output_buffer: str
    dma_burst_bytes: Bytes = Field(alias="dma_burst")   # longest DMA burst; a contiguous run moves in these
    # Each buffer has its own DMA channel (an AXI port), which moves at most this many bytes per
    # second each way however fast the DRAM is: one stream (an FC layer's weights) cannot use the
    # whole DRAM bandwidth. None: the channels are as fast as the DRAM.
    dma_channel_bandwidth_bytes_per_s: Optional[BytesPerS] = Field(default=None, alias="dma_channel_bandwidth")

    @property
    def macs_per_cycle(self) -> int:
        """Multipliers of the array: output lanes x input lanes x window**2."""
        return self.output_lanes * self.input_lanes * self.window ** 2

class Link(Strict):
    """Host link of a discrete device (PCIe), per direction."""

    name: str
    bandwidth_bytes_per_s: BytesPerS = Field(alias="bandwidth")
    latency_s: Seconds = Field(alias="latency")
    copy_engines: PositiveInt


class ConvAlgorithm(str, enum.Enum):
    """The two classes of convolution algorithm a cuDNN-style library offers for every convolution
    (forward, backward data, backward filter), as vDNN runs them: workspace traded for speed."""

    MEMORY_OPTIMAL = "memory"            # implicit GEMM: no workspace (the kernel the traffic model times)
    PERFORMANCE_OPTIMAL = "performance"  # the fastest with unlimited workspace (FFT, explicit im2col GEMM)

    @property
    def key(self) -> str:
        """The profile key of the algorithm's costs (``memory_optimal``, ``performance_optimal``)."""
        return f"{self.value}_optimal"


class ConvAlgorithmCost(Strict):
    """What one algorithm class costs: workspace per byte of the layer's input feature maps (at the
    step's batch), and its throughput relative to the conv kernel's modelled rate
    (``compute.kernels.conv``), which is the implicit-GEMM rate the traffic model times."""

    workspace_per_input: Annotated[float, Field(ge=0)]
    speed: Annotated[float, Field(gt=0)]


class ConvAlgorithms(Strict):
    """Convolution algorithms for training (``run --mode train``): vDNN's memory-optimal (m) and
    performance-optimal (p) choices."""

    memory_optimal: ConvAlgorithmCost
    performance_optimal: ConvAlgorithmCost

    def of(self, algorithm: ConvAlgorithm) -> ConvAlgorithmCost:
        """The costs of one algorithm class."""
        return getattr(self, algorithm.key)


class Energy(Strict):
    """Energy per arithmetic operation and per byte each memory delivers, and the power drawn
    whatever the work (leakage, clocks, idle cores and DRAM refresh). Keys of ``per_byte`` are the
    profile's cache levels and scratchpads by name, and ``dram``; each must be present."""

    flop_j: Joules = Field(alias="flop")
    per_byte_j: dict[str, Joules] = Field(alias="per_byte")
    static_power_w: Watts = Field(alias="static_power")


class HardwareProfile(Strict):
    """A whole validated profile. ``path`` is where it was read from."""

    schema_version: Literal[1]
    name: str
    kind: DeviceKind
    description: str = ""
    compute: Compute
    memory: Memory
    link: Optional[Link] = None
    sparse_engine: Optional[SparseEngine] = None
    tiled_engine: Optional[TiledEngine] = None
    energy: Optional[Energy] = None
    conv_algorithms: Optional[ConvAlgorithms] = None
    sources: dict[str, str]
    fitted: dict[str, str] = {}
    path: str = ""

    def with_sparse_library(self, name: str) -> HardwareProfile:
        """This profile with its CSR library ``name`` (``compute.kernels.libraries``) in place of
        ``spmv``, ``spmm``, ``index_bits``, ``kernel_index_bits`` and those kernels' threads; itself
        where it has no library of that name (a published cell's kernel, a dense backend)."""
        kernels = self.compute.kernels
        library = kernels.libraries.get(name) if kernels is not None else None
        if kernels is None or library is None:
            return self
        kernels = kernels.model_copy(update={"spmv": library.spmv, "spmm": library.spmm,
                                             "index_bits": library.index_bits,
                                             "kernel_index_bits": library.kernel_index_bits})
        threads = self.compute.threads.model_copy(update={"spmv": library.threads, "spmm": library.threads})
        return self.model_copy(update={"compute": self.compute.model_copy(update={"kernels": kernels,
                                                                                   "threads": threads})})

    @property
    def caches(self) -> tuple[CacheLevel, ...]:
        """Cache levels from the core outwards."""
        return self.memory.caches

    @property
    def dram(self) -> Optional[Dram]:
        """Main memory (None for a device that keeps everything on chip)."""
        return self.memory.dram

    @property
    def peak_flops_per_s(self) -> float:
        """fp32 peak of the whole device (or the peak of the type it computes in)."""
        return self.compute.peak_flops.best_known

    @property
    def ridge_flop_per_byte(self) -> float:
        """Roofline ridge point: peak arithmetic over peak DRAM bandwidth (inf without DRAM)."""
        if self.dram is None:
            return float("inf")
        return self.peak_flops_per_s / self.dram.peak_bandwidth_bytes_per_s


def load_profile(path: str | Path) -> HardwareProfile:
    """Read, validate and cross-check a profile; errors are :class:`ConfigError` lines."""
    source = str(path)
    return profile_from_mapping(read_yaml_mapping(path), source)


def profile_from_mapping(data: dict[str, Any], source: str) -> HardwareProfile:
    """Validate an already-loaded mapping (sweeps edit the mapping, then call this)."""
    if "path" in data:
        raise ConfigError(source, "path", "is set by the loader, not in the file")
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise ConfigError(source, "schema_version",
                          f"{version!r} is not supported (this simulator reads version {SCHEMA_VERSION})")
    compute = data.get("compute")
    if isinstance(compute, dict) and "efficiency" in compute:
        raise ConfigError(source, "compute.efficiency", "was replaced by compute.kernels (issue costs per kernel "
                          "kind: see docs/profiles.md)")
    replaced = _serial_loads(compute)
    if replaced:
        raise ConfigError(source, replaced, "was replaced by load_overlap (the share of the kernel's issue time "
                          "under which its loads run: 0 for loads that wait, as serial_loads: true said; "
                          "see docs/profiles.md)")
    profile = validate(HardwareProfile, {**data, "path": source}, source, where=lambda loc: spell(loc, data))
    _check_kernels(profile, source)
    _check_caches(profile, source)
    _check_dram(profile, source)
    _check_sparse_engine(profile, source)
    _check_tiled_engine(profile, source)
    _check_energy(profile, source)
    _check_conv_algorithms(profile, source)
    _check_sources(profile, data, source)
    return profile


def _serial_loads(compute: Any) -> str:
    """The path of the first ``serial_loads`` flag a sparse kernel of ``compute`` still gives
    (replaced by ``load_overlap``), or ""."""
    kernels = compute.get("kernels") if isinstance(compute, dict) else None
    if not isinstance(kernels, dict):
        return ""
    libraries = kernels.get("libraries")
    blocks = [("compute.kernels", kernels)] + [(f"compute.kernels.libraries.{name}", library) for name, library
                                               in (libraries.items() if isinstance(libraries, dict) else ())]
    return next((f"{at}.{kind}.serial_loads" for at, block in blocks if isinstance(block, dict)
                 for kind in ("spmv", "spmm", "spconv")
                 if isinstance(block.get(kind), dict) and "serial_loads" in block[kind]), "")


def _check_kernels(profile: HardwareProfile, source: str) -> None:
    """CPUs and GPUs are timed by the kernel cost model, so they must say what their kernels cost;
    an accelerator with an engine of its own times layers by that engine's cycle model instead."""
    engine = profile.sparse_engine is not None or profile.tiled_engine is not None
    if profile.compute.kernels is None and not engine:
        raise ConfigError(source, "compute.kernels", "missing required field (a CPU or GPU profile needs the issue "
                          "costs of its kernels)")
    kernels = profile.compute.kernels
    levels = {level.name for level in profile.caches}
    for name in kernels.gemv.cached_row_start if kernels is not None else ():
        if name not in levels:
            raise ConfigError(source, f"compute.kernels.gemv.cached_row_start.{name}",
                              f"names no cache level (the levels are {', '.join(sorted(levels)) or 'none'})")
    if profile.compute.vector_lanes > profile.compute.lanes_per_core:
        raise ConfigError(source, "compute.vector_lanes", f"{profile.compute.vector_lanes} exceeds "
                          f"compute.lanes_per_core ({profile.compute.lanes_per_core})")


def _check_caches(profile: HardwareProfile, source: str) -> None:
    names = set()
    previous = None
    for level in profile.caches:
        where = level_path("caches", level.name)
        if level.name in names:
            raise ConfigError(source, f"{where}.name", f"{level.name!r} is used by an earlier level")
        names.add(level.name)
        line = level.line_bytes
        if line & (line - 1):
            raise ConfigError(source, f"{where}.line", f"{line} B is not a power of two")
        sector = level.fill_bytes
        if sector & (sector - 1) or sector > line:
            raise ConfigError(source, f"{where}.sector", f"{sector} B must be a power of two no larger than the line")
        if level.size_bytes % (line * level.ways):
            raise ConfigError(source, f"{where}.size",
                              f"{level.size_bytes} B is not a whole number of sets of "
                              f"{level.ways} ways x {line} B lines")
        if previous is not None:
            if line < previous.line_bytes:
                raise ConfigError(source, f"{where}.line",
                                  f"{line} B is smaller than {previous.name}'s {previous.line_bytes} B "
                                  "(line size may only grow towards memory)")
            total_prev = previous.size_bytes * (1 if previous.shared else profile.compute.cores)
            total = level.size_bytes * (1 if level.shared else profile.compute.cores)
            if total < total_prev:
                raise ConfigError(source, f"{where}.size",
                                  f"{level.name} ({total} B in all) is smaller than {previous.name} "
                                  f"({total_prev} B in all) above it")
            if previous.shared and not level.shared:
                raise ConfigError(source, f"{where}.shared",
                                  f"a private level cannot sit below the shared level {previous.name}")
        previous = level
    if previous is not None and not previous.caches_streams:
        raise ConfigError(source, level_path("caches", previous.name, "caches_streams"),
                          "must be true for the last level (streams that pass every level by have nowhere to go)")
    if previous is not None and profile.dram is not None \
            and previous.size_bytes * (1 if previous.shared else profile.compute.cores) > profile.dram.capacity_bytes:
        raise ConfigError(source, level_path("caches", previous.name, "size"),
                          "is larger than memory.dram.capacity")


def _check_dram(profile: HardwareProfile, source: str) -> None:
    dram = profile.dram
    if profile.compute.peak_flops == PeakFlops():
        raise ConfigError(source, "compute.peak_flops", "give at least one of fp32, fp16, int16, int8")
    if dram is None:
        if profile.caches:
            raise ConfigError(source, "memory.dram", "missing required field (a profile with caches needs DRAM)")
        if profile.sparse_engine is None:
            raise ConfigError(source, "memory.dram", "missing required field")
        return
    if dram.sustained_bandwidth_bytes_per_s > dram.peak_bandwidth_bytes_per_s:
        raise ConfigError(source, "memory.dram.sustained_bandwidth", "exceeds memory.dram.peak_bandwidth")


def _check_conv_algorithms(profile: HardwareProfile, source: str) -> None:
    algorithms = profile.conv_algorithms
    if algorithms is None:
        return
    memory, performance = algorithms.memory_optimal, algorithms.performance_optimal
    # the two classes are a trade: one may not be both slower and hungrier than the other
    if performance.speed < memory.speed:
        raise ConfigError(source, "conv_algorithms.performance_optimal.speed",
                          f"{performance.speed:g} is slower than memory_optimal's {memory.speed:g}")
    if memory.workspace_per_input > performance.workspace_per_input:
        raise ConfigError(source, "conv_algorithms.memory_optimal.workspace_per_input",
                          f"{memory.workspace_per_input:g} exceeds performance_optimal's "
                          f"{performance.workspace_per_input:g}")


def _check_sparse_engine(profile: HardwareProfile, source: str) -> None:
    engine = profile.sparse_engine
    if engine is None:
        return
    names = {pad.name for pad in profile.memory.scratchpads}
    for field in ("weights_scratchpad", "pointers_scratchpad"):
        if getattr(engine, field) not in names:
            raise ConfigError(source, f"sparse_engine.{field}",
                              f"{getattr(engine, field)!r} is not a scratchpad of this profile "
                              f"(it has: {', '.join(sorted(names)) or 'none'})")
    if engine.pes != profile.compute.cores:
        raise ConfigError(source, "sparse_engine.pes", f"{engine.pes} differs from compute.cores "
                          f"({profile.compute.cores}); a PE is a core")


def _check_tiled_engine(profile: HardwareProfile, source: str) -> None:
    engine = profile.tiled_engine
    if engine is None:
        return
    if profile.sparse_engine is not None:
        raise ConfigError(source, "tiled_engine", "a profile has one engine: sparse_engine or tiled_engine, not both")
    if profile.caches:
        raise ConfigError(source, "memory.caches", "a tiled engine moves its data by DMA into its scratchpads; "
                          "it has no caches")
    names = {pad.name for pad in profile.memory.scratchpads}
    seen: dict[str, str] = {}
    for field in ("input_buffer", "weight_buffer", "output_buffer"):
        name = getattr(engine, field)
        if name not in names:
            raise ConfigError(source, f"tiled_engine.{field}", f"{name!r} is not a scratchpad of this profile "
                              f"(it has: {', '.join(sorted(names)) or 'none'})")
        if name in seen:
            raise ConfigError(source, f"tiled_engine.{field}", f"{name!r} is already the {seen[name]}; "
                              "each buffer needs its own scratchpad")
        seen[name] = field.replace("_", " ")
    # the array is the compute: a peak that disagrees with it would print one figure and simulate another
    array_peak = 2.0 * engine.macs_per_cycle * profile.compute.clock_hz
    peak = profile.peak_flops_per_s
    if abs(peak - array_peak) > 0.01 * array_peak:
        raise ConfigError(source, "compute.peak_flops",
                          f"{peak / 1e9:.4g} G/s differs from the tiled engine's 2 x {engine.macs_per_cycle} "
                          f"MACs x {profile.compute.clock_hz / 1e6:.4g} MHz = {array_peak / 1e9:.4g} G/s")


def _check_energy(profile: HardwareProfile, source: str) -> None:
    if profile.energy is None:
        return
    memories = [c.name for c in profile.caches] + [p.name for p in profile.memory.scratchpads]
    if profile.dram is not None:
        memories.append("dram")
    given = profile.energy.per_byte_j
    for name in given:
        if name not in memories:
            raise ConfigError(source, f"energy.per_byte.{name}",
                              f"is not a memory of this profile (it has: {', '.join(memories)})")
    for name in memories:
        if name not in given:
            raise ConfigError(source, f"energy.per_byte.{name}", "missing: every cache level, scratchpad "
                              "and DRAM needs an energy per byte")


def _check_sources(profile: HardwareProfile, data: dict[str, Any], source: str) -> None:
    known = field_paths(profile)
    for key in list(profile.sources) + list(profile.fitted):
        section = "sources" if key in profile.sources else "fitted"
        if key not in known:
            raise ConfigError(source, f"{section}.{key}", "cites a field that does not exist in this profile")
        if key.startswith("link") and profile.link is None:
            raise ConfigError(source, f"{section}.{key}", "cites the link, but the profile has none")
