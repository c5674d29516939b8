"""The discrete-event engine: layer kernels as SimPy processes over shared hardware resources.

Resources (one :class:`Machine` per simulation, one ``simpy.Environment`` passed explicitly):
the compute unit, one bandwidth resource per cache level, the DRAM channel and, on discrete
devices, the host link. The cache model has already said, per access, which level served it;
here the accesses are grouped into tiles (contiguous chunks of a layer's trace) and timed:

* a tile's *load* holds every memory resource it uses for ``bytes / bandwidth``, all at once
  (levels work in parallel, as a pipeline), then waits the DRAM latency once before its data
  is ready. An engine without caches (a scratchpad accelerator) takes its DRAM time as
  ``max(bytes / sustained bandwidth, bursts x latency / requests in flight)``;
* every access that misses the first level waits the latency of the level that serves it (L2, L3
  or DRAM) while holding one of a core's request slots (Little's law): prefetched *streams*
  (weights, inputs, outputs) keep ``memory.dram.outstanding_requests_per_core`` lines in flight
  per core, *gathers* (loads at data-dependent addresses: a sparse kernel's input reads) are
  demand misses, at most ``compute.outstanding_gathers_per_core`` per core (a warp-per-row GPU
  kernel issues one request for its lanes' gathers). A tile's latency hold is
  ``sum(requests x latency of their level) / (slots x cores)``, named ``stream-latency`` or
  ``gather-latency`` by the larger part; DRAM itself holds for ``bytes / sustained bandwidth``
  (a line written back at ``memory.dram.writeback_cost`` of a line read),
  plus, for a batch-1 dense GEMV that walks its weight rows as streams of their own
  (``compute.kernels.gemv.row_start``), each row from DRAM's start (``dram-row-starts``); a
  cache level likewise holds for the starts of the rows it serves (``cached_row_start``);
* a tile's *compute* holds the compute unit for its share of the kernel's issue time, from the
  kernel cost model (:mod:`simulator.engine.kernelcost`: FMA tiles in waves for dense kernels,
  steps over the non-zeros and rows for sparse ones, plus, where the kernel gives
  ``cycles_per_gather_fill``, the fill of each gathered line the first level did not hold), or
  from an accelerator's cycle model; a sparse kernel whose loop waits for its gathers
  (``gathers_in_flight_per_core``) then holds it for their latency beyond the private caches,
  that many at a time per core (``gather-wait``);
* a kernel keeps at most :data:`PREFETCH_TILES` tile loads in flight ahead of its compute
  (bounded prefetch), so transfer and compute overlap but memory cannot run away; a layer's
  work may hold fewer (``LayerWork.prefetch_tiles``: 2 for a double-buffered scratchpad, 1 for a
  dense kernel that packs each weight panel before multiplying it, ``compute.kernels.*.packs``,
  and for a kernel whose loads run under only part of its loop, ``load_overlap`` (a sparse
  kernel's; a dense one's for the type, measured beyond the caches, weighed by the share of its
  bytes DRAM serves, since its loop keeps up with a cache): the next
  tile's load then starts once that share of the tile's compute is left, so memory and issue
  take turns for the rest);
* a GPU kernel (any kernel, where the profile sets it) first pays its launch overhead, and a dense
  kernel its library's per-call set-up for its type (``compute.kernels.*.call_overhead``);
* a kernel whose output (or a layout temporary) is above the allocator's threshold for fresh
  mappings holds its cores while the OS faults those pages in (``memory.fresh_pages``,
  ``page-faults``).

Busy time per resource is recorded explicitly per layer; the resource with the most busy
time is the layer's *bound*. Inside ``with recording():`` every busy interval is also kept
(:class:`Interval`), for timelines (``run --timeline``).
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Generator, Iterable, Iterator, Optional

import numpy as np
import simpy
from simpy.resources.resource import Request

from ..hardware.profile import DenseKernel, HardwareProfile, KernelKind, SparseKernel
from ..memory.cache import AccessOutcome, tile_tallies
from ..memory.kernelshape import KernelShape
from ..memory.traffic import LayerTraffic, StreamKind
from ..model.workload import LayerKind
from .kernelcost import (
    SPARSE_KINDS,
    IssueTime,
    call_overhead_s,
    fresh_page_seconds,
    issue_time,
    load_overlap,
    overlap_is_dram_only,
)
from .results import LayerResult

PREFETCH_TILES = 4   # tile loads a kernel may have in flight ahead of its compute


@dataclass(frozen=True)
class LayerWork:
    """Per-tile work of one layer, after the cache model: what the engine times."""

    traffic: LayerTraffic
    flops: np.ndarray            # [tiles]
    level_bytes: np.ndarray      # [tiles, levels] bytes each cache level delivers upwards
    dram_read_bytes: np.ndarray  # [tiles]
    dram_write_bytes: np.ndarray  # [tiles]
    dram_lines: np.ndarray       # [tiles] lines moved to or from DRAM
    hits: np.ndarray             # [levels + 1] accesses served per level, DRAM last
    gather_requests: Optional[np.ndarray] = None   # [tiles, levels + 1] gather requests served per level
    stream_lines: Optional[np.ndarray] = None      # [tiles, levels + 1] other accesses served per level, DRAM last
    compute_s: Optional[np.ndarray] = None   # [tiles] compute time from a cycle model (accelerators)
    scratchpad_bytes: dict[str, np.ndarray] = field(default_factory=dict)   # name -> [tiles]
    dma_channel_bytes: Optional[np.ndarray] = None   # [tiles] bytes of the busiest DMA channel (tiled engines)
    prefetch_tiles: int = PREFETCH_TILES   # tiles held at once (a double-buffered scratchpad holds 2)
    load_overlap: float = 1.0    # share of a tile's compute under which the next tile loads (kernelcost.load_overlap)
    tiling: str = ""             # how a scratchpad engine tiled the layer, for the report

    @property
    def tiles(self) -> int:
        """Number of tiles."""
        return int(self.flops.size)

    @property
    def accesses(self) -> int:
        """Line accesses the layer issued (every one is served by some level or DRAM)."""
        return int(self.hits.sum())

    def without_trace(self) -> LayerWork:
        """The same work with the per-access arrays dropped (cheap to keep or send to another
        process; the engine needs only the per-tile counts)."""
        empty = np.zeros(0, np.int64)
        slim = replace(self.traffic, addresses=empty, is_write=empty.astype(bool), core=empty.astype(np.int16),
                       stream=empty.astype(np.int8))
        return replace(self, traffic=slim)


def layer_work(traffic: LayerTraffic, outcome: AccessOutcome, profile: HardwareProfile) -> LayerWork:
    """Aggregate the cache model's per-access outcome into per-tile byte counts."""
    levels = len(profile.caches)
    bounds = traffic.tile_bounds()
    # accesses per tile by (gather or not) x (serving level), and write-backs per tile
    by_kind, tile_writebacks = tile_tallies(outcome, bounds, traffic.stream, StreamKind.GATHER, levels)
    counts = by_kind.sum(axis=1)
    writebacks = tile_writebacks.astype(float)
    share = np.diff(bounds) / max(1, traffic.accesses)
    # The first level hands the core what it uses: a whole line of a stream, a few bytes of a
    # gather. A lower level hands the level above one of that level's lines for a stream, but
    # only the sectors a gather touches (GPUs move 32 B sectors, CPUs whole lines).
    levels_cfg = profile.caches
    line_above = np.array([traffic.line_bytes] + [c.line_bytes for c in levels_cfg[:-1]], dtype=float)
    gather_above = np.array([traffic.gather_bytes] + [
        min(c.line_bytes, -(-traffic.gather_bytes // c.fill_bytes) * c.fill_bytes) for c in levels_cfg[:-1]],
        dtype=float)
    level_bytes = by_kind[:, 0, :levels] * line_above[:levels] + by_kind[:, 1, :levels] * gather_above[:levels]
    memory_line = profile.caches[-1].line_bytes if levels else traffic.line_bytes
    per_request = traffic.shape.gathers_per_request if traffic.shape is not None else 1
    dram_read_bytes = counts[:, levels] * float(memory_line)
    overlap = load_overlap(profile, traffic.shape) if traffic.shape is not None else 1.0
    if overlap < 1 and traffic.shape is not None and overlap_is_dram_only(profile, traffic.shape):
        overlap = 1.0 - (1.0 - overlap) * _dram_share(dram_read_bytes, level_bytes)
    return LayerWork(
        traffic=traffic,
        flops=traffic.flops * share,
        level_bytes=level_bytes,
        dram_read_bytes=dram_read_bytes,
        dram_write_bytes=writebacks * float(memory_line),
        dram_lines=counts[:, levels] + writebacks,
        hits=counts.sum(axis=0),
        gather_requests=by_kind[:, 1, :] / float(per_request),
        stream_lines=np.column_stack([by_kind[:, 0, :levels], by_kind[:, 0, levels] + writebacks]),
        # a kernel whose loads do not all run ahead of its loop (it packs each panel first, or its
        # sparse loads wait for part of it) holds one tile, and starts the next one's load part
        # way through computing it
        prefetch_tiles=PREFETCH_TILES if overlap >= 1 else 1,
        load_overlap=overlap,
    )


def _dram_share(dram_read_bytes: np.ndarray, level_bytes: np.ndarray) -> float:
    """DRAM's share of the bytes the last cache level and DRAM served (0 where neither served any:
    a layer the levels above hold)."""
    dram = float(dram_read_bytes.sum())
    beyond = dram + (float(level_bytes[:, -1].sum()) if level_bytes.size else 0.0)
    return dram / beyond if beyond > 0 else 0.0


class Machine:
    """The SimPy resources of one profile in one environment."""

    def __init__(self, env: simpy.Environment, profile: HardwareProfile) -> None:
        self.env = env
        self.profile = profile
        self.compute = simpy.Resource(env, capacity=1)
        self.levels = [simpy.Resource(env, capacity=1) for _ in profile.caches]
        self.dram = simpy.Resource(env, capacity=1)
        self.latency = simpy.Resource(env, capacity=1)
        self.scratchpads = {pad.name: simpy.Resource(env, capacity=1) for pad in profile.memory.scratchpads}
        self.link = simpy.Resource(env, capacity=profile.link.copy_engines) if profile.link else None


@dataclass(frozen=True)
class Interval:
    """One busy interval of one resource, for timelines (``run --timeline``). The resource
    ``layer`` marks a whole layer (or host copy) from its start to its end."""

    resource: str
    start_s: float
    end_s: float
    layer: str


class _Busy:
    """Explicit busy-time bookkeeping of one layer (and, when asked, its busy intervals)."""

    def __init__(self, names: list[str], layer: str = "", intervals: Optional[list[Interval]] = None) -> None:
        self.seconds = {name: 0.0 for name in names}
        self.layer = layer
        self.intervals = intervals

    def add(self, name: str, seconds: float, end_s: Optional[float] = None) -> None:
        self.seconds[name] += seconds
        if self.intervals is not None and end_s is not None:
            self.intervals.append(Interval(name, end_s - seconds, end_s, self.layer))


def _hold(env: simpy.Environment, resource: simpy.Resource, seconds: float, busy: _Busy,
          name: str) -> Generator[simpy.Event, Any, None]:
    """Hold ``resource`` for ``seconds`` (queueing first if it is busy); run inside the caller's
    process with ``yield from`` (a process of its own would cost two more events)."""
    with resource.request() as request:
        yield request
        yield env.timeout(seconds)
    busy.add(name, seconds, float(env.now))


class _TileLoad:
    """One tile's load: it holds every memory resource it uses at once, each for its own time,
    then waits the DRAM latency once and triggers ``ready``.

    Driven by event callbacks rather than by a process per hold (speed: a process costs an
    initialisation and an end event and a generator per hold, and VGG-16 loads thousands of
    tiles). A hold still requests its SimPy resource, queues in request order, and releases it
    after ``env.timeout(seconds)``, so the times are those of a process per hold."""

    __slots__ = ("env", "busy", "ready", "wait_s", "pending")

    def __init__(self, env: simpy.Environment, holds: list[tuple[simpy.Resource, float, str]],
                 wait_s: Optional[float], busy: _Busy, ready: simpy.Event) -> None:
        self.env, self.busy, self.ready, self.wait_s = env, busy, ready, wait_s
        self.pending = len(holds)
        if not holds:
            self._loaded()
        for resource, seconds, name in holds:
            request = resource.request()
            _then(request, partial(self._granted, resource, request, seconds, name))

    def _granted(self, resource: simpy.Resource, request: Request, seconds: float, name: str, _: simpy.Event) -> None:
        _then(self.env.timeout(seconds), partial(self._release, resource, request, seconds, name))

    def _release(self, resource: simpy.Resource, request: Request, seconds: float, name: str, _: simpy.Event) -> None:
        resource.release(request)
        self.busy.add(name, seconds, float(self.env.now))
        self.pending -= 1
        if self.pending == 0:
            self._loaded()

    def _loaded(self) -> None:
        if self.wait_s is not None:     # first data of the tile arrives
            _then(self.env.timeout(self.wait_s), self._arrived)
        else:
            self.ready.succeed()

    def _arrived(self, _: simpy.Event) -> None:
        self.ready.succeed()


def _then(event: simpy.Event, callback: Callable[[simpy.Event], None]) -> None:
    """Call ``callback`` when ``event`` is processed (it is not yet: it was just made)."""
    assert event.callbacks is not None
    event.callbacks.append(callback)


def _dma_channel_seconds(profile: HardwareProfile, work: LayerWork) -> Optional[np.ndarray]:
    """[tiles] time the busiest DMA channel of a tiled engine needs for each tile's transfers (None
    if unlimited)."""
    engine = profile.tiled_engine
    if work.dma_channel_bytes is None or engine is None or engine.dma_channel_bandwidth_bytes_per_s is None:
        return None
    return np.asarray(work.dma_channel_bytes, dtype=float) / engine.dma_channel_bandwidth_bytes_per_s


def _memory_holds(machine: Machine, work: LayerWork) -> list[list[tuple[simpy.Resource, float, str]]]:
    """Per tile, (resource, seconds, name) for every memory resource its load uses: each cache
    level, scratchpad and DRAM, then the latency slots. Computed for all tiles at once (the same
    element-wise arithmetic as one tile at a time, so the same seconds)."""
    profile = machine.profile
    cores = work.traffic.cores_used
    columns: list[tuple[simpy.Resource, list[float], list[bool], list[str]]] = []
    for i, level in enumerate(profile.caches):
        seconds = work.level_bytes[:, i] / (level.bandwidth_bytes_per_s * (1 if level.shared else cores))
        starts_s = _row_start_seconds(profile, work, cores, level=i)
        if starts_s is not None:    # the rows this level serves start as streams of their own
            seconds = seconds + starts_s
        columns.append((machine.levels[i], seconds.tolist(), (seconds > 0).tolist(), [level.name] * work.tiles))
    for pad in profile.memory.scratchpads:
        size = work.scratchpad_bytes.get(pad.name)
        if size is not None:
            seconds = size / (pad.bandwidth_bytes_per_s * (cores if pad.per_core else 1))
            columns.append((machine.scratchpads[pad.name], seconds.tolist(), (size > 0).tolist(),
                            [pad.name] * work.tiles))
    dram = profile.dram
    if dram is not None:
        columns.append(_dram_column(machine, work, cores))
    if work.stream_lines is not None and work.gather_requests is not None:   # layer_work sets both, others neither
        columns.append(_latency_column(machine, work, cores))
    return [[(resource, seconds[tile], names[tile]) for resource, seconds, used, names in columns if used[tile]]
            for tile in range(work.tiles)]


def _dram_column(machine: Machine, work: LayerWork,
                 cores: int) -> tuple[simpy.Resource, list[float], list[bool], list[str]]:
    """DRAM's hold of every tile: bytes moved over the sustained bandwidth (a written-back byte at
    ``writeback_cost`` of a read one), or Little's law over the DRAM bursts of an engine without
    caches, or its busiest DMA channel, whichever is longest."""
    dram = machine.profile.dram
    assert dram is not None
    moved = work.dram_read_bytes + work.dram_write_bytes
    bandwidth_s = (work.dram_read_bytes + dram.writeback_cost * work.dram_write_bytes) \
        / dram.sustained_bandwidth_bytes_per_s
    latency_s = np.zeros(work.tiles)
    if work.stream_lines is None:   # engines without caches: Little's law over their DRAM bursts
        latency_s = work.dram_lines * dram.latency_s / (dram.outstanding_requests_per_core * cores)
    names = np.where(latency_s > bandwidth_s, "dram-latency", "dram-bandwidth")
    seconds = np.maximum(bandwidth_s, latency_s)
    starts_s = _row_start_seconds(machine.profile, work, cores)
    if starts_s is not None:
        names = np.where(starts_s > seconds, "dram-row-starts", names)
        seconds = seconds + starts_s
    channel_s = _dma_channel_seconds(machine.profile, work)
    if channel_s is not None:
        names = np.where(channel_s > seconds, "dram-channel", names)
        seconds = np.maximum(seconds, channel_s)
    return machine.dram, seconds.tolist(), (moved > 0).tolist(), names.tolist()


def _row_start_seconds(profile: HardwareProfile, work: LayerWork, cores: int, level: Optional[int] = None
                       ) -> Optional[np.ndarray]:
    """What the rows of a batch-1 dense GEMV that come from ``level`` (a cache level's index; None:
    DRAM) cost to start, per tile, on top of their bytes (``compute.kernels.gemv.row_start`` for
    the layer's type from DRAM, ``cached_row_start`` from a cache level: each row a stream the
    prefetchers meet cold, its first lines waiting on that level), shared by the kernel's cores;
    None for any other layer or profile. A tile's streams from a level are its share of the
    weights' streams (:func:`_weight_streams`) by the bytes it serves. Only a linear layer's own
    weights (stored in the arithmetic type) are walked so; attention reads its cache in one run."""
    shape = work.traffic.shape
    kernels = profile.compute.kernels
    if (shape is None or shape.kind is not KernelKind.GEMV or work.traffic.layer.kind is not LayerKind.FC
            or shape.dequantized_weights or kernels is None):
        return None
    starts = kernels.gemv.row_start if level is None else kernels.gemv.cached_row_start.get(profile.caches[level].name)
    start_s = starts.of(shape.dtype.value) if starts is not None else None
    weight_bytes = shape.rows * shape.depth * shape.dtype.size_bytes
    if not start_s or weight_bytes <= 0:
        return None
    streams = _weight_streams(kernels.gemv, shape)
    if not streams:
        return None
    served = work.dram_read_bytes if level is None else work.level_bytes[:, level]
    return np.minimum(served / weight_bytes, 1.0) * streams * float(start_s) / max(1, cores)


def _weight_streams(gemv: DenseKernel, shape: KernelShape) -> int:
    """The streams a batch-1 GEMV's weights form: one a row where the library walks them row by
    row; where it keeps the type packed in tiles (``gemv.packed_tiles``), one a tile of a partly
    full last depth block (the rest is a single stream)."""
    tile = gemv.packed_tile(shape.dtype.value)
    return shape.rows if tile is None else tile.partial_tiles(shape.rows, shape.depth)


def _latency_column(machine: Machine, work: LayerWork,
                    cores: int) -> tuple[simpy.Resource, list[float], list[bool], list[str]]:
    """The request slots' hold of every tile: stream and gather latencies (Little's law)."""
    profile = machine.profile
    assert work.stream_lines is not None and work.gather_requests is not None
    stream_flight = profile.dram.outstanding_requests_per_core * cores if profile.dram is not None else 1
    gather_flight = profile.compute.outstanding_gathers_per_core * cores
    stream_latencies = _latencies(profile, streams=True)
    gather_latencies = _gather_latencies(profile, work)
    seconds, names = [], []
    for tile in range(work.tiles):
        stream_s = _latency_seconds(work.stream_lines[tile], stream_latencies, stream_flight)
        gather_s = _latency_seconds(work.gather_requests[tile], gather_latencies, gather_flight)
        seconds.append(stream_s + gather_s)
        names.append("gather-latency" if gather_s > stream_s else "stream-latency")
    return machine.latency, seconds, [s > 0 for s in seconds], names


def _latencies(profile: HardwareProfile, streams: bool, footprint_bytes: int = 0, lines_per_walk: int = 1
               ) -> np.ndarray:
    """The latency of each level below the first, DRAM last (a stream's: its ``stream_latency``
    where the profile gives one). The levels' latencies are those of random loads beyond the TLBs'
    reach (``memory.tlb``), each with a page walk. A gather over an operand of ``footprint_bytes``
    within the reach translates without one: each level waits the walk less, never less than the
    first level's latency. Beyond the reach, a gathered operand row of ``lines_per_walk`` lines
    walks once for all of them (they share a page), so each line waits its share of the walk."""
    latencies = np.array([level.streamed_latency_s if streams else level.latency_s for level in profile.caches[1:]]
                         + [profile.dram.latency_s if profile.dram is not None else 0.0], dtype=float)
    tlb = profile.memory.tlb
    if not streams and tlb is not None:
        floor = profile.caches[0].latency_s if profile.caches else 0.0
        saved_s = walk_saved_s(tlb.miss_latency_s, tlb.reach_bytes, footprint_bytes, lines_per_walk)
        latencies = np.maximum(latencies - saved_s, floor)
    return latencies


def walk_saved_s(miss_latency_s: float, reach_bytes: int, footprint_bytes: int, lines_per_walk: int = 1) -> float:
    """Of the page walk a random load's latency holds (``miss_latency_s``), what a gathered line over
    an operand of ``footprint_bytes`` does not wait: all of it within the TLBs' reach, all but its
    share of one walk beyond (a row of ``lines_per_walk`` lines shares a page); none without an
    operand."""
    if footprint_bytes <= 0:
        return 0.0
    walked = 0.0 if footprint_bytes <= reach_bytes else 1.0 / max(1, lines_per_walk)
    return miss_latency_s * (1.0 - walked)


def _gather_latencies(profile: HardwareProfile, work: LayerWork) -> np.ndarray:
    """:func:`_latencies` of the layer's gathers: over its input operand, an SpMM's operand row (its
    batch columns, contiguous) walking once for its lines; one line a walk for other kernels."""
    shape = work.traffic.shape
    if shape is None:
        return _latencies(profile, streams=False)
    row_lines = 1
    if shape.kind is KernelKind.SPMM:
        row_lines = max(1, -(-shape.columns * shape.dtype.size_bytes // max(1, work.traffic.line_bytes)))
    return _latencies(profile, streams=False, footprint_bytes=shape.input_bytes, lines_per_walk=row_lines)


def _latency_seconds(served: np.ndarray, latencies: np.ndarray, in_flight: int) -> float:
    """Little's law below the first level: each request served by a lower level (L2, L3, DRAM)
    occupies one of the ``in_flight`` slots for that level's latency (see :func:`_latencies`)."""
    waited = float(np.dot(served[1:], latencies)) if served.size > 1 else 0.0
    return waited / max(1, in_flight)


def _gathering_kernel(profile: HardwareProfile, work: LayerWork) -> Optional[SparseKernel]:
    """The profile's sparse kernel of a layer whose gathers the cache model counted; None for any
    other layer (dense, element-wise, an accelerator's)."""
    shape = work.traffic.shape
    kernels = profile.compute.kernels
    if shape is None or shape.kind not in SPARSE_KINDS or kernels is None or work.gather_requests is None:
        return None
    return kernels.sparse(shape.kind)


def _gather_wait_seconds(profile: HardwareProfile, work: LayerWork, cores: int) -> Optional[np.ndarray]:
    """[tiles] time a sparse kernel's loop waits on its gathers, or None where its kernel does not
    (``gathers_in_flight_per_core`` unset: its gathers run beside the loop). Each gather served
    beyond the private caches waits its level's latency (:func:`_latencies`, page walks included)
    less the last private level's, which the kernel's in-cache costs already hold (they were
    measured gathering from there); the core keeps ``gathers_in_flight_per_core`` of them waiting
    at once, and its cores wait in parallel."""
    kernel = _gathering_kernel(profile, work)
    in_flight = kernel.gathers_in_flight_per_core if kernel is not None else None
    if in_flight is None:
        return None
    private = [i for i, level in enumerate(profile.caches) if not level.shared]
    last = private[-1] if private else 0
    base_s = profile.caches[last].latency_s if profile.caches else 0.0
    # _latencies' entry j is the level below the first at index j + 1 (DRAM last); the private
    # levels' gathers wait nothing beyond what the costs hold
    beyond_s = np.maximum(_gather_latencies(profile, work) - base_s, 0.0)
    beyond_s[:last] = 0.0
    waited = np.asarray(work.gather_requests, dtype=float)[:, 1:] @ beyond_s
    return waited / (in_flight * max(1, cores))


def layer_issue_time(profile: HardwareProfile, work: LayerWork) -> IssueTime:
    """The whole layer's compute time and its mechanism: an accelerator's cycle model, or the
    kernel cost model."""
    if work.compute_s is not None:
        return IssueTime(float(work.compute_s.sum()), "cycles")
    if work.traffic.shape is None:
        raise ValueError(f"{work.traffic.layer.name}: no kernel shape to time")
    return issue_time(profile, work.traffic.shape, work.traffic.cores_used)


def _tile_compute(profile: HardwareProfile, work: LayerWork) -> tuple[np.ndarray, str]:
    """Each tile's compute time (its share of the layer's flops, or of its accesses for kernels
    without flops, of the layer's issue time), and the busy-time name: ``compute``, or
    ``row-latency`` when the compute unit waits on dependent loads rather than issuing."""
    if work.compute_s is not None:
        return np.asarray(work.compute_s, dtype=float), "compute"
    issue = layer_issue_time(profile, work)
    flops = np.asarray(work.flops, dtype=float)
    weights = flops if flops.sum() > 0 else np.full(work.tiles, 1.0)
    name = "row-latency" if issue.mechanism == "row-latency" else "compute"
    return issue.seconds * weights / weights.sum() + _gather_fill_seconds(profile, work), name


def _gather_fill_seconds(profile: HardwareProfile, work: LayerWork) -> np.ndarray | float:
    """[tiles] issue time a sparse kernel's loop spends on the fills of its gathered lines that the
    first level did not hold, whichever level below served them (``cycles_per_gather_fill``; its
    in-cache costs were measured gathering from the first level), shared by its cores; 0 where
    the kernel gives no such cost."""
    kernel = _gathering_kernel(profile, work)
    cycles = kernel.cycles_per_gather_fill if kernel is not None else None
    if not cycles:
        return 0.0
    filled = np.asarray(work.gather_requests, dtype=float)[:, 1:].sum(axis=1)
    return filled * cycles / (profile.compute.clock_hz * max(1, work.traffic.cores_used))


def kernel(env: simpy.Environment, machine: Machine, work: LayerWork, busy: _Busy) -> Generator[simpy.Event, Any, None]:
    """One layer: launch, then compute each tile as soon as its load is ready, starting the load of
    the tile ``prefetch_tiles`` ahead as each computed tile frees its buffer (bounded prefetch)."""
    launch_s = machine.profile.compute.launch_overhead_s
    if work.traffic.shape is not None:
        launch_s += call_overhead_s(machine.profile, work.traffic.shape)
    if launch_s > 0:
        yield from _hold(env, machine.compute, launch_s, busy, "launch")
    # the output's pages fault in as the kernel first writes them; the faulting cores do nothing else
    faults_s = fresh_page_seconds(machine.profile, work.traffic.shape) if work.traffic.shape is not None else 0.0
    if faults_s > 0:
        yield from _hold(env, machine.compute, faults_s, busy, "page-faults")
    ready = [env.event() for _ in range(work.tiles)]
    compute_s, compute_name = _tile_compute(machine.profile, work)
    gather_wait_s = _gather_wait_seconds(machine.profile, work, work.traffic.cores_used)
    holds = _memory_holds(machine, work)
    dram = machine.profile.dram
    # the tile waits the DRAM latency once, for its first data, when it moves lines to or from DRAM
    wait_s = [dram.latency_s if lines > 0 else None for lines in work.dram_lines.tolist()] if dram is not None \
        else [None] * work.tiles

    def load(tile: int) -> None:
        if tile < work.tiles:
            _TileLoad(env, holds[tile], wait_s[tile], busy, ready[tile])

    for tile in range(min(work.prefetch_tiles, work.tiles)):
        load(tile)
    # the share of each tile's compute that runs before the next load may start (all of it where
    # the loads wait for the loop; none where they run ahead, but then the buffers bound them)
    alone = 1.0 - work.load_overlap if work.load_overlap < 1 else 1.0
    for tile in range(work.tiles):
        yield ready[tile]
        seconds = float(compute_s[tile])
        if seconds * alone > 0:
            yield from _hold(env, machine.compute, seconds * alone, busy, compute_name)
        load(tile + work.prefetch_tiles)
        if seconds * (1 - alone) > 0:
            yield from _hold(env, machine.compute, seconds * (1 - alone), busy, compute_name)
        if gather_wait_s is not None and gather_wait_s[tile] > 0:
            yield from _hold(env, machine.compute, float(gather_wait_s[tile]), busy, "gather-wait")


def link_copy(env: simpy.Environment, machine: Machine, size_bytes: int,
              busy: _Busy) -> Generator[simpy.Event, Any, None]:
    """A host-link transfer: latency plus bytes over the per-direction bandwidth."""
    link = machine.profile.link
    assert link is not None and machine.link is not None
    yield from _hold(env, machine.link, link.latency_s + size_bytes / link.bandwidth_bytes_per_s, busy, "link")


def _resource_names(profile: HardwareProfile) -> list[str]:
    return (["launch", "page-faults", "compute", "row-latency", "gather-wait"] + [c.name for c in profile.caches]
            + [p.name for p in profile.memory.scratchpads]
            + ["dram-bandwidth", "dram-latency", "dram-row-starts", "dram-channel", "stream-latency",
               "gather-latency", "link"])


def _bound(busy: dict[str, float]) -> str:
    """The resource that was busy longest within the layer. DRAM holds count together, named by
    what limited most of them (bandwidth, Little's law, or a DMA channel)."""
    holds = {k: v for k, v in busy.items() if k.startswith("dram")}
    candidates = {k: v for k, v in busy.items() if not k.startswith("dram")}
    if sum(holds.values()) > 0:
        candidates[max(holds, key=lambda k: holds[k])] = sum(holds.values())
    return max(candidates, key=lambda k: candidates[k]) if candidates else "compute"


_RECORDING: contextvars.ContextVar[Optional[list[list[Interval]]]] = contextvars.ContextVar("_RECORDING",
                                                                                           default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[list[Interval]]]:
    """Record busy intervals of every :func:`simulate` call made inside the ``with`` block.

    Yields a list that receives one list of :class:`Interval` per call, in call order (the
    pipeline simulates each variant, or each layer in layer mode, in its own call). Opt-in
    and scoped, so runs that do not ask for a timeline keep no intervals; the pipeline's API
    stays as it is because the recorder does not travel through it.
    """
    calls: list[list[Interval]] = []
    token = _RECORDING.set(calls)
    try:
        yield calls
    finally:
        _RECORDING.reset(token)


def current_recording() -> Optional[list[list[Interval]]]:
    """The list a :func:`recording` block around this call is filling, or None.

    Threads do not inherit it: code that simulates in worker threads records there under its
    own :func:`recording` and appends the calls here in a fixed order (see ``pipeline.run``).
    """
    return _RECORDING.get()


def simulate(profile: HardwareProfile, works: Iterable[LayerWork], copies: Optional[tuple[int, int]] = None
             ) -> list[LayerResult]:
    """Run the layers back to back on one machine; returns one result per layer.

    ``works`` may be an iterator that produces each layer while the engine times the ones
    before (the pipeline's stages overlap so); an exception it raises is raised here as it
    was (SimPy would raise a copy of it, built from its arguments).
    ``copies`` = (input bytes, output bytes) adds host-to-device and device-to-host copies of
    the network's input and output over the profile's link (discrete devices only).
    """
    env = simpy.Environment()
    machine = Machine(env, profile)
    names = _resource_names(profile)
    calls = _RECORDING.get()
    intervals: Optional[list[Interval]] = None
    if calls is not None:
        intervals = []
        calls.append(intervals)

    def record(name: str, start: float) -> None:
        if intervals is not None:
            intervals.append(Interval("layer", start, float(env.now), name))
    records: list[tuple[str, str, Optional[LayerWork], _Busy, float, float, int]] = []
    failed: list[BaseException] = []

    def step(name: str, kind: str, process, work: Optional[LayerWork] = None,
             link_bytes: int = 0) -> Generator[simpy.Event, Any, None]:
        busy = _Busy(names, name, intervals)
        start = float(env.now)
        yield env.process(process(busy))
        record(name, start)
        records.append((name, kind, work, busy, start, env.now, link_bytes))

    def network() -> Generator[simpy.Event, Any, None]:
        if copies and machine.link is not None:
            yield from step("input (h2d)", "copy", lambda busy: link_copy(env, machine, copies[0], busy),
                            link_bytes=copies[0])
        for work in _until_failure(works, failed):
            layer = work.traffic.layer
            yield from step(layer.name, layer.kind.value, lambda busy, w=work: kernel(env, machine, w, busy), work)
        if copies and machine.link is not None:
            yield from step("output (d2h)", "copy", lambda busy: link_copy(env, machine, copies[1], busy),
                            link_bytes=copies[1])

    env.process(network())
    env.run()
    if failed:
        raise failed[0]
    return [_layer_result(profile, *record) for record in records]


def _until_failure(works: Iterable[LayerWork], failed: list[BaseException]) -> Iterator[LayerWork]:
    """The items of ``works``, ending at the first exception it raises, appended to ``failed``."""
    iterator = iter(works)
    while True:
        try:
            work = next(iterator)
        except StopIteration:
            return
        except BaseException as err:       # noqa: BLE001 - raised again by simulate, as it was
            failed.append(err)
            return
        yield work


def layer_energy(profile: HardwareProfile, work: Optional[LayerWork], seconds: float) -> tuple[float, float]:
    """(energy, DRAM energy) of a layer: operations, bytes each memory delivered, static power."""
    energy = profile.energy
    if energy is None:
        return 0.0, 0.0
    total = energy.static_power_w * seconds
    if work is None:
        return total, 0.0
    per_byte = energy.per_byte_j
    total += energy.flop_j * float(work.traffic.flops)
    for i, level in enumerate(profile.caches):
        total += per_byte[level.name] * float(work.level_bytes[:, i].sum())
    for name, size in work.scratchpad_bytes.items():
        total += per_byte[name] * float(size.sum())
    dram = per_byte.get("dram", 0.0) * float(work.dram_read_bytes.sum() + work.dram_write_bytes.sum())
    return total + dram, dram


def _layer_result(profile: HardwareProfile, name: str, kind: str, work: Optional[LayerWork], busy: _Busy,
                  start: float, end: float, link_bytes: int) -> LayerResult:
    busy_s = {k: v for k, v in busy.seconds.items() if v > 0}
    level_names = [c.name for c in profile.caches]
    energy_j, dram_energy_j = layer_energy(profile, work, end - start)
    if work is None:
        return LayerResult(name, kind, None, end - start, start, 0.0, 0, 0, 0, link_bytes, 0,
                           {n: 0 for n in level_names}, {n: 0.0 for n in level_names}, busy_s, "link", 0,
                           energy_j, dram_energy_j)
    hits = {n: int(work.hits[i]) for i, n in enumerate(level_names)}
    reaching = work.accesses
    hit_rate = {}
    for n in level_names:
        hit_rate[n] = hits[n] / reaching if reaching else 0.0
        reaching -= hits[n]
    return LayerResult(
        name=name, kind=kind, kernel=work.traffic.kernel.value, time_s=end - start, start_s=start,
        flops=float(work.traffic.flops), weight_bytes=int(work.traffic.weight_bytes),
        dram_read_bytes=int(work.dram_read_bytes.sum()), dram_write_bytes=int(work.dram_write_bytes.sum()),
        link_bytes=0, accesses=work.accesses, hits=hits, hit_rate=hit_rate, busy_s=busy_s,
        bound=_bound(busy_s), cores_used=work.traffic.cores_used, energy_j=energy_j, dram_energy_j=dram_energy_j,
        tiling=work.tiling)
