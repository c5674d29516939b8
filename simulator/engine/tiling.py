"""Scratchpad accelerators: conv, FC and pooling layers tiled onto explicitly managed buffers.

An FPGA design such as Qiu et al.'s (FPGA 2016) has no caches. A DMA engine copies tiles of the
input, the weights and the outputs between DRAM and three on-chip buffers (BRAM), and a dense
array of multipliers computes on whatever the buffers hold. Each buffer is split in two halves
(double buffering): the DMA fills one while the array works on the other. In the engine that is
the bounded prefetch of :data:`BUFFERS` tiles, so DRAM transfer and compute overlap tile by tile
and a layer comes out compute- or DRAM-bound from its own numbers.

**The loop nest.** A convolution is ``out[m, r, c] += w[m, n, ky, kx] x in[n, r*S+ky-P, c*S+kx-P]``
over output channels m < M, input channels n < N, output rows r < R and columns c < C. It is cut
into tiles of Tm x Tn x Tr x Tc and the tiles run in one of three loop orders (outer to inner):

* output-stationary ``(m, r, c, n)``: an output tile stays on chip until every input-channel tile
  has been summed into it, then is written once; input and weight tiles stream past it;
* weight-stationary ``(m, n, r, c)``: each weight tile is loaded once; input tiles stream past it
  and the outputs go back to DRAM as partial sums, read again for the next input-channel tile;
* input-stationary ``(n, r, c, m)``: each input tile is loaded once; weight tiles stream past it,
  outputs are partial sums as above.

A tile is loaded again only when the step before used a different one (the buffer still holds
it otherwise). So an operand's DRAM traffic is one pass over it times the trip counts of the
loops that lie outside the innermost loop it depends on and do not index it (:func:`_reloads`);
partial sums are written once per visit and read on every visit but the first. An FC layer is
the same nest as a 1 x 1 convolution over a 1 x batch image (weights stream once per batch). A
pooling layer has one order, *streaming* (output channel m reads input channel m only, no
weights). Convolutions with groups, and every sample of a batch, rerun the nest (weights too).

**The tiling rule.** Candidates: Tm a multiple of the array's output lanes (or all of M), Tn a
multiple of its input lanes (or all of N), Tr and Tc any size (one candidate per distinct tile
count). A candidate counts only if its input tile (with the halo the k x k window needs), its weight
tile and its output tile each fit half of their buffer. For each candidate and loop order the
model estimates the layer's time from its compute time ``C = array cycles / clock`` and its DRAM
time ``D = max(bytes / sustained bandwidth, bursts x latency / outstanding bursts, busiest
channel's bytes / dma_channel_bandwidth)`` (each buffer has its own DMA channel; the output
buffer's reads and writes are two) as the double-buffered pipeline: a step's load overlaps only
the step before's compute, so the time is the first load, then per step ``max(compute, next
load)``, then the last compute and write (:func:`_pipeline_s` sums this in closed form over
classes of steps: a balanced layer wants more than a few tiles, and an order whose loads come in
bursts pays for them). Of the tilings within
:data:`TIME_TOLERANCE` of the fastest it takes the one with the least DRAM traffic, then the
fewest tiles (the largest that fits). For a compute-bound layer that compares the orders'
traffic; for a DRAM-bound one the traffic is the time.

**DMA bursts.** Weights are stored tile by tile (rearranged offline, as Qiu et al. do for long
bursts), so a weight tile is one contiguous run. Activations are channel-major (C, H, W; an FC's
features x batch): a tile that spans the whole width is one run per channel, or one run in all
when it spans the whole plane; otherwise one run per channel and row. A run moves in bursts of at
most ``dma_burst`` bytes; the engine's DRAM obeys Little's law over bursts (``dram_lines``).

**Compute.** Per cycle the array takes ``output_lanes`` output channels x ``input_lanes`` input
channels; each lane is a ``window`` x ``window`` line-buffer convolver (Qiu et al.'s: one input
pixel enters per cycle, one window result leaves), and an adder tree sums over the input lanes.
A tile takes ``ceil(tm / output_lanes) x ceil(tn / input_lanes) x ceil(K / window)**2`` passes,
each streaming the tile's padded input region, ``((tr-1)S+K) x ((tc-1)S+K)`` pixels, zeros
included (the line buffer fills row by row). A 1 x 1 kernel (FC) uses one multiplier of each
window. Pooling spreads channels over all output x input lanes, each streaming its channel's
tile. Partial sums are kept at the activation width (the design's dynamic fixed point).
"""

from __future__ import annotations

import enum
import functools
import operator
from dataclasses import dataclass
from typing import Optional, overload

import numpy as np

from ..base.errors import ConfigError
from ..hardware.profile import HardwareProfile, KernelKind, TiledEngine
from ..memory.traffic import LayerTraffic
from ..model.workload import Layer, LayerKind, Workload
from .core import LayerWork

BUFFERS = 2              # double buffering: the DMA fills one half while the array works on the other
TIME_TOLERANCE = 0.01    # tilings whose estimate is within 1% of the fastest count as equally fast
MAX_ENGINE_TILES = 256   # tile steps per layer handed to SimPy; more are merged in consecutive groups


class LoopOrder(str, enum.Enum):
    """The order of the tile loops, named by the operand that stays on chip."""

    OUTPUT_STATIONARY = "output-stationary"
    WEIGHT_STATIONARY = "weight-stationary"
    INPUT_STATIONARY = "input-stationary"
    STREAMING = "streaming"          # pooling: no weights, no reduction across tiles

    @property
    def axes(self) -> tuple[str, ...]:
        """Tile loops from outer to inner (m output channels, n input channels, r rows, c columns)."""
        return _AXES[self]


_AXES = {LoopOrder.OUTPUT_STATIONARY: ("m", "r", "c", "n"), LoopOrder.WEIGHT_STATIONARY: ("m", "n", "r", "c"),
         LoopOrder.INPUT_STATIONARY: ("n", "r", "c", "m"), LoopOrder.STREAMING: ("m", "r", "c", "n")}
_REDUCTION_ORDERS = (LoopOrder.OUTPUT_STATIONARY, LoopOrder.WEIGHT_STATIONARY, LoopOrder.INPUT_STATIONARY)


@dataclass(frozen=True)
class LoopNest:
    """A layer as the tiled kernel sees it: one pass of the nest, and how many passes run."""

    out_channels: int      # M (per group)
    in_channels: int       # N (per group; pooling: = M)
    out_rows: int          # R
    out_cols: int          # C (an FC layer: the batch)
    in_rows: int           # H
    in_cols: int           # W
    kernel_hw: int         # K: the K x K window
    stride: int
    padding: int
    element_bytes: int
    depthwise: bool        # pooling: output channel m reads input channel m only, no weights
    passes: int            # groups x samples, each a fresh run of the nest

    @staticmethod
    def of(layer: Layer, batch: int) -> LoopNest:
        """The nest of a conv, FC or pooling layer at ``batch``."""
        size = layer.dtype.size_bytes
        if layer.kind is LayerKind.FC:
            return LoopNest(layer.out_shape[0], layer.in_shape[0], 1, batch, 1, batch, 1, 1, 0, size, False, 1)
        channels, height, width = layer.in_shape
        out_channels, rows, cols = layer.out_shape
        if layer.kind is LayerKind.CONV:
            groups = layer.groups
            return LoopNest(out_channels // groups, channels // groups, rows, cols, height, width, layer.kernel_hw,
                            layer.stride, layer.padding, size, False, groups * batch)
        return LoopNest(channels, channels, rows, cols, height, width, layer.kernel_hw, layer.stride, layer.padding,
                        size, True, batch)

    @property
    def weight_elements(self) -> int:
        """Weights of one pass (0 for pooling)."""
        return 0 if self.depthwise else self.out_channels * self.in_channels * self.kernel_hw ** 2

    @property
    def depends(self) -> dict[str, frozenset[str]]:
        """The tile loops each operand is indexed by."""
        return {"input": frozenset("mrc" if self.depthwise else "nrc"), "weights": frozenset("mn"),
                "output": frozenset("mrc")}


@dataclass(frozen=True)
class Tiling:
    """A tiling of one layer and its totals: the rule's choice (:func:`choose_tiling`) or any
    tiling named to :func:`evaluate_tiling`."""

    layer: str
    order: LoopOrder
    tile_out_channels: int
    tile_in_channels: int
    tile_rows: int
    tile_cols: int
    tiles: int                 # tile steps over all passes
    dram_read_bytes: float
    dram_write_bytes: float
    bursts: float              # DMA bursts, both ways
    cycles: float              # array cycles, all passes
    estimate_s: float          # the rule's estimate of the layer's time
    fits: bool = True          # every tile fits half of its buffer

    def describe(self) -> str:
        """One line for the report, e.g. ``output-stationary M64 N64 10x224``."""
        if self.order is LoopOrder.STREAMING:
            return f"{self.order.value} C{self.tile_out_channels} {self.tile_rows}x{self.tile_cols}"
        return (f"{self.order.value} M{self.tile_out_channels} N{self.tile_in_channels} "
                f"{self.tile_rows}x{self.tile_cols}")


@dataclass(frozen=True)
class TileSteps:
    """Per tile step of a tiling, in loop order over all passes: what the DMA and the array do."""

    flops: np.ndarray
    cycles: np.ndarray
    input_bytes: np.ndarray          # DMA reads into each buffer
    weight_bytes: np.ndarray
    partial_read_bytes: np.ndarray   # partial sums read back into the output buffer
    write_bytes: np.ndarray          # output tile written when the step leaves it
    read_bursts: np.ndarray
    write_bursts: np.ndarray


@overload
def _ceil_div(a: int, b: int) -> int: ...
@overload
def _ceil_div(a: np.ndarray, b: np.ndarray | int) -> np.ndarray: ...
@overload
def _ceil_div(a: int, b: np.ndarray) -> np.ndarray: ...
def _ceil_div(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray | int:
    """Integer ceil(a / b), elementwise (an array if either operand is one)."""
    return -(-a // b)


@dataclass(frozen=True)
class _Channels:
    """Candidate tile sizes along a channel axis (one per distinct tile count)."""

    size: np.ndarray           # [k]
    count: np.ndarray          # [k] tiles
    last: np.ndarray           # [k] size of the last tile
    lane_passes: np.ndarray    # [k] sum over the tiles of ceil(tile / lanes)

    def sizes(self, k: int) -> np.ndarray:
        """Tile sizes of candidate ``k`` in order."""
        out = np.full(int(self.count[k]), int(self.size[k]), np.int64)
        out[-1] = self.last[k]
        return out


def _channel_axis(total: int, lanes: int, only: Optional[int] = None) -> _Channels:
    if only is not None:
        size = np.array([only], np.int64)
    else:
        tiles = np.arange(1, _ceil_div(total, lanes) + 1, dtype=np.int64)
        size = np.unique(np.minimum(total, _ceil_div(_ceil_div(total, tiles), lanes) * lanes))
    count = _ceil_div(total, size)
    last = total - (count - 1) * size
    return _Channels(size, count, last, (count - 1) * _ceil_div(size, lanes) + _ceil_div(last, lanes))


@dataclass(frozen=True)
class _Span:
    """Candidate tile sizes along rows or columns; per tile (padded with zeros past ``count``)."""

    size: np.ndarray           # [k] output rows (columns) per tile
    count: np.ndarray          # [k]
    out: np.ndarray            # [k, t] output extent of each tile
    loaded: np.ndarray         # [k, t] input extent the DMA loads (clipped to the real input)
    streamed: np.ndarray       # [k, t] input extent streamed through the line buffer (padding included)


def _span_axis(out_len: int, in_len: int, kernel: int, stride: int, padding: int,
               only: Optional[int] = None) -> _Span:
    if only is not None:
        size = np.array([only], np.int64)
    else:
        size = np.unique(_ceil_div(out_len, np.arange(1, out_len + 1, dtype=np.int64)))
    count = _ceil_div(out_len, size)
    start = np.arange(int(count.max()), dtype=np.int64)[None, :] * size[:, None]
    valid = start < out_len
    out = np.where(valid, np.minimum(size[:, None], out_len - start), 0)
    low = start * stride - padding
    high = (start + out - 1) * stride - padding + kernel
    loaded = np.where(valid, np.clip(np.minimum(high, in_len) - np.maximum(low, 0), 0, None), 0)
    streamed = np.where(valid, (out - 1) * stride + kernel, 0)
    return _Span(size, count, out, loaded, streamed)


def _reloads(axes: tuple[str, ...], depends: frozenset[str], counts: dict[str, np.ndarray]) -> np.ndarray:
    """How many times one pass over an operand is loaded: the product of the trip counts of the
    loops outside its innermost changing loop that do not index it (a tile the previous step
    used stays in the buffer)."""
    times: np.ndarray = np.ones((), np.int64)
    changing = np.zeros((), bool)
    for axis in reversed(axes):
        if axis in depends:
            changing = changing | (counts[axis] > 1)
        else:
            times = times * np.where(changing, counts[axis], 1)
    return times


def _capacities(profile: HardwareProfile, engine: TiledEngine) -> dict[str, tuple[str, float]]:
    """Per operand: (scratchpad name, bytes one half of it holds)."""
    pads = {pad.name: pad for pad in profile.memory.scratchpads}
    out = {}
    for operand, name in (("input", engine.input_buffer), ("weights", engine.weight_buffer),
                          ("output", engine.output_buffer)):
        pad = pads[name]
        out[operand] = (name, pad.size_bytes * (profile.compute.cores if pad.per_core else 1) / BUFFERS)
    return out


@dataclass(frozen=True)
class _Axes:
    m: _Channels
    n: _Channels
    r: _Span
    c: _Span


def _axes(nest: LoopNest, engine: TiledEngine, only: Optional[tuple[int, int, int, int]] = None) -> _Axes:
    om, on, orr, oc = only if only is not None else (None, None, None, None)
    m_lanes = engine.output_lanes * engine.input_lanes if nest.depthwise else engine.output_lanes
    n_axis = _channel_axis(1, 1) if nest.depthwise else _channel_axis(nest.in_channels, engine.input_lanes, on)
    return _Axes(_channel_axis(nest.out_channels, m_lanes, om), n_axis,
                 _span_axis(nest.out_rows, nest.in_rows, nest.kernel_hw, nest.stride, nest.padding, orr),
                 _span_axis(nest.out_cols, nest.in_cols, nest.kernel_hw, nest.stride, nest.padding, oc))


def _activation_bursts(channels: _Channels, rows_extent: np.ndarray, cols_extent: np.ndarray, row_count: np.ndarray,
                       col_count: np.ndarray, plane_rows: int, plane_cols: int, elem: int, burst: int,
                       total_channels: int) -> np.ndarray:
    """Bursts of one pass over a channel-major activation, tiled as given; shape [m/n, rows, cols]."""
    rows_sum = rows_extent.sum(axis=1)
    full_width = (col_count == 1) & (cols_extent[:, 0] == plane_cols)                     # [cols]
    full_plane = full_width[None, :] & ((row_count == 1) & (rows_extent[:, 0] == plane_rows))[:, None]
    per_row = total_channels * rows_sum[:, None] * _ceil_div(cols_extent * elem, burst).sum(axis=1)[None, :]
    per_channel = total_channels * _ceil_div(rows_extent * plane_cols * elem, burst).sum(axis=1)
    plane = plane_rows * plane_cols * elem
    whole = ((channels.count - 1) * _ceil_div(channels.size * plane, burst)
             + _ceil_div(channels.last * plane, burst))
    return np.where(full_plane[None], whole[:, None, None],
                    np.where(full_width[None, None, :], per_channel[None, :, None], per_row[None]))


def _evaluate(nest: LoopNest, engine: TiledEngine, profile: HardwareProfile, ax: _Axes,
              orders: tuple[LoopOrder, ...]) -> dict[str, np.ndarray]:
    """Totals of every candidate (axes m, n, r, c) under every order (leading axis)."""
    dram = profile.dram
    assert dram is not None
    b, k, burst = nest.element_bytes, nest.kernel_hw, engine.dma_burst_bytes
    m, n, r, c = ax.m, ax.n, ax.r, ax.c
    tm, tn = m.size[:, None, None, None], n.size[None, :, None, None]
    counts = {"m": m.count[:, None, None, None], "n": n.count[None, :, None, None],
              "r": r.count[None, None, :, None], "c": c.count[None, None, None, :]}
    caps = _capacities(profile, engine)
    in_tile_channels = tm if nest.depthwise else tn
    fits = ((in_tile_channels * r.loaded.max(axis=1)[None, None, :, None] * c.loaded.max(axis=1)[None, None, None, :]
             * b <= caps["input"][1])
            & (tm * tn * (0 if nest.depthwise else k * k) * b <= caps["weights"][1])
            & (tm * r.size[None, None, :, None] * c.size[None, None, None, :] * b <= caps["output"][1]))

    in_channels = nest.out_channels if nest.depthwise else nest.in_channels
    in_pass = (in_channels * r.loaded.sum(axis=1)[:, None] * c.loaded.sum(axis=1)[None, :] * b)[None, None]
    in_axis = m if nest.depthwise else n
    in_bursts = _activation_bursts(in_axis, r.loaded, c.loaded, r.count, c.count, nest.in_rows, nest.in_cols, b,
                                   burst, in_channels)
    in_bursts = in_bursts[:, None] if nest.depthwise else in_bursts[None]
    out_pass = nest.out_channels * nest.out_rows * nest.out_cols * b
    out_bursts = _activation_bursts(m, r.out, c.out, r.count, c.count, nest.out_rows, nest.out_cols, b, burst,
                                    nest.out_channels)[:, None]
    w_pass = nest.weight_elements * b
    kk = 0 if nest.depthwise else k * k * b
    fm, lm, fn, ln = m.size[:, None], m.last[:, None], n.size[None, :], n.last[None, :]
    w_bursts = ((m.count[:, None] - 1) * (n.count[None, :] - 1) * _ceil_div(fm * fn * kk, burst)
                + (m.count[:, None] - 1) * _ceil_div(fm * ln * kk, burst)
                + (n.count[None, :] - 1) * _ceil_div(lm * fn * kk, burst) + _ceil_div(lm * ln * kk, burst))
    w_bursts = w_bursts[:, :, None, None]

    window_passes = _ceil_div(k, engine.window) ** 2
    cycles = (m.lane_passes[:, None, None, None] * n.lane_passes[None, :, None, None] * window_passes
              * r.streamed.sum(axis=1)[None, None, :, None] * c.streamed.sum(axis=1)[None, None, None, :]
              * nest.passes).astype(float)
    tiles = (counts["m"] * counts["n"] * counts["r"] * counts["c"] * nest.passes).astype(float)

    deps = nest.depends
    compute_s = cycles / profile.compute.clock_hz
    channel_bandwidth = engine.dma_channel_bandwidth_bytes_per_s
    channel_s_per_byte = 0.0 if channel_bandwidth is None else 1.0 / channel_bandwidth
    pass_bytes = {"input": in_pass, "weights": w_pass, "output": out_pass}
    totals: dict[str, list[np.ndarray]] = {"read": [], "write": [], "bursts": [], "estimate": []}
    for order in orders:
        times = {x: _reloads(order.axes, deps[x], counts) for x in deps}
        read = (in_pass * times["input"] + w_pass * times["weights"] + out_pass * (times["output"] - 1)) * nest.passes
        write = out_pass * times["output"] * nest.passes
        bursts = (in_bursts * times["input"] + w_bursts * times["weights"]
                  + out_bursts * (2 * times["output"] - 1)) * nest.passes
        dram_s = np.maximum((read + write) / dram.sustained_bandwidth_bytes_per_s,
                            bursts * dram.latency_s / dram.outstanding_requests_per_core)
        # seconds per byte moved: 1 / bandwidth, or more where Little's law over bursts binds
        per_byte_s = dram_s / np.maximum(read + write, 1)
        estimate = _pipeline_s(order, deps, counts, nest.passes, pass_bytes, times, compute_s, per_byte_s,
                               channel_s_per_byte)
        for key, value in (("read", read), ("write", write), ("bursts", bursts), ("estimate", estimate)):
            totals[key].append(np.broadcast_to(value, fits.shape).astype(float))
    out = {key: np.stack(value) for key, value in totals.items()}
    shape = out["read"].shape
    return {**out, "fits": np.broadcast_to(fits, shape), "cycles": np.broadcast_to(cycles, shape),
            "tiles": np.broadcast_to(tiles, shape)}


def _pipeline_s(order: LoopOrder, deps: dict[str, frozenset[str]], counts: dict[str, np.ndarray], passes: int,
                pass_bytes: dict[str, np.ndarray], times: dict[str, np.ndarray], compute_s: np.ndarray,
                per_byte_s: np.ndarray, channel_s_per_byte: float = 0.0) -> np.ndarray:
    """The double-buffered pipeline's time, step class by step class.

    With two buffers a step's load overlaps the previous step's compute only, so a layer takes
    ``first load + sum over steps of max(compute, next load) + last compute + last write``. The
    steps fall into classes by the outermost loop that advances at them: there the loops inside
    wrap too, and an operand reloads iff it depends on one of the loops that change. Every tile of
    an operand is taken at its mean size and every step at the mean compute. Summed over the
    classes the input and weight loads are exactly their traffic (partial sums: on average).
    A load takes its bytes at ``per_byte_s`` (the shared DRAM), or longer where one buffer's DMA
    channel (``channel_s_per_byte``, 0 when unlimited) cannot keep up with its own share.
    """
    axes = order.axes
    trips = [counts[a] for a in axes]
    steps = trips[0] * trips[1] * trips[2] * trips[3]
    step_s = compute_s / (steps * passes)
    tile = {x: pass_bytes[x] / functools.reduce(operator.mul, [counts[a] for a in deps[x]]) for x in deps}
    # each step that moves to another output tile writes the old one and, past its first visit, reads partial sums
    partial = tile["output"] * (times["output"] - 1) / times["output"]   # partial sums read, on average

    def load_s(input_bytes, weight_bytes, read_bytes, write_bytes):
        shared = (input_bytes + weight_bytes + read_bytes + write_bytes) * per_byte_s
        busiest = np.maximum(np.maximum(input_bytes, weight_bytes), np.maximum(read_bytes, write_bytes))
        return np.maximum(shared, busiest * channel_s_per_byte)

    first = load_s(tile["input"], tile["weights"], 0, 0)
    body = np.zeros_like(step_s)
    outer = np.ones((), np.int64)
    for j, axis in enumerate(axes):
        count = (trips[j] - 1) * outer
        outer = outer * trips[j]
        inner = [(a, trips[i]) for i, a in enumerate(axes) if i > j]

        def moves(x: str, inner: list[tuple[str, np.ndarray]] = inner,
                  axis: str = axis) -> np.ndarray | bool:   # called in this iteration only
            return functools.reduce(operator.or_, [(a in deps[x]) & (n > 1) for a, n in inner], axis in deps[x])

        out_moves = moves("output")
        load = load_s(np.where(moves("input"), tile["input"], 0), np.where(moves("weights"), tile["weights"], 0),
                      np.where(out_moves, partial, 0), np.where(out_moves, tile["output"], 0))
        body = body + count * np.maximum(step_s, load)
    # a new pass loads afresh while the last one's output drains
    boundary = load_s(tile["input"], tile["weights"], 0, tile["output"])
    last_write = load_s(0, 0, 0, tile["output"])
    return first + passes * body + (passes - 1) * np.maximum(step_s, boundary) + step_s + last_write


def choose_tiling(layer: Layer, profile: HardwareProfile, batch: int = 1) -> Tiling:
    """The tiling of ``layer`` on the profile's tiled engine, by the rule in the module docstring."""
    engine = _engine(profile)
    nest = LoopNest.of(layer, batch)
    ax = _axes(nest, engine)
    orders = (LoopOrder.STREAMING,) if nest.depthwise else _REDUCTION_ORDERS
    totals = _evaluate(nest, engine, profile, ax, orders)
    estimate = np.where(totals["fits"], totals["estimate"], np.inf)
    best = float(estimate.min())
    if not np.isfinite(best):
        _raise_nothing_fits(layer, nest, profile, engine)
    near = estimate <= best * (1 + TIME_TOLERANCE)
    traffic = np.where(near, totals["read"] + totals["write"], np.inf).ravel()
    tiles = np.where(near, totals["tiles"], np.inf).ravel()
    pick = int(np.lexsort((np.arange(traffic.size), tiles, traffic))[0])
    return _tiling(layer, nest, ax, orders, totals, pick)


def evaluate_tiling(layer: Layer, profile: HardwareProfile, order: LoopOrder, tile: tuple[int, int, int, int],
                    batch: int = 1) -> Tiling:
    """The totals of one given tiling, ``tile`` = (Tm, Tn, Tr, Tc), whether or not it fits the
    buffers (``fits`` says): what the rule weighs for every candidate, for one of them."""
    engine = _engine(profile)
    nest = LoopNest.of(layer, batch)
    if (order is LoopOrder.STREAMING) != nest.depthwise:
        raise ValueError(f"{order.value} does not apply to a {layer.kind.value} layer")
    tm, tn, tr, tc = tile
    if not (0 < tm <= nest.out_channels and 0 < tr <= nest.out_rows and 0 < tc <= nest.out_cols
            and (nest.depthwise or 0 < tn <= nest.in_channels)):
        raise ValueError(f"tile {tile} does not fit the layer's loop nest")
    ax = _axes(nest, engine, (tm, tn, tr, tc))
    return _tiling(layer, nest, ax, (order,), _evaluate(nest, engine, profile, ax, (order,)), 0)


def _engine(profile: HardwareProfile) -> TiledEngine:
    if profile.tiled_engine is None:
        raise ValueError(f"{profile.name} has no tiled engine")
    return profile.tiled_engine


def _tiling(layer: Layer, nest: LoopNest, ax: _Axes, orders: tuple[LoopOrder, ...], totals: dict[str, np.ndarray],
            pick: int) -> Tiling:
    o, im, jn, ir, ic = np.unravel_index(pick, totals["read"].shape)
    tm = int(ax.m.size[im])

    def at(name: str) -> float:
        return float(totals[name].ravel()[pick])

    return Tiling(layer.name, orders[o], tm, tm if nest.depthwise else int(ax.n.size[jn]), int(ax.r.size[ir]),
                  int(ax.c.size[ic]), int(at("tiles")), at("read"), at("write"), at("bursts"), at("cycles"),
                  at("estimate"), bool(totals["fits"].ravel()[pick]))


def _raise_nothing_fits(layer: Layer, nest: LoopNest, profile: HardwareProfile, engine: TiledEngine) -> None:
    """Name the buffer that cannot hold even the smallest tile of the layer."""
    b, k = nest.element_bytes, nest.kernel_hw
    lanes = engine.output_lanes * (engine.input_lanes if nest.depthwise else 1)
    tm = min(nest.out_channels, lanes)
    tn = tm if nest.depthwise else min(nest.in_channels, engine.input_lanes)
    smallest = {"input": tn * min(k, nest.in_rows) * min(k, nest.in_cols) * b,
                "weights": 0 if nest.depthwise else tm * tn * k * k * b, "output": tm * b}
    for operand, (name, half) in _capacities(profile, engine).items():
        if smallest[operand] > half:
            pad = next(p for p in profile.memory.scratchpads if p.name == name)
            raise ConfigError(profile.path, f"memory.scratchpads.{name}.size",
                              f"{pad.size_bytes} B holds no tile of layer {layer.name}: its smallest {operand} tile "
                              f"needs {smallest[operand]} B in each of the {BUFFERS} halves (double buffering)")
    raise AssertionError("a smallest tile fits every buffer, so some candidate fits")


def tile_steps(layer: Layer, tiling: Tiling, profile: HardwareProfile, batch: int = 1) -> TileSteps:
    """Every tile step of ``tiling`` in loop order: the loads it needs, its cycles, its writes."""
    engine = _engine(profile)
    nest = LoopNest.of(layer, batch)
    ax = _axes(nest, engine, (tiling.tile_out_channels, tiling.tile_in_channels, tiling.tile_rows, tiling.tile_cols))
    b, k, burst = nest.element_bytes, nest.kernel_hw, engine.dma_burst_bytes
    counts = {"m": int(ax.m.count[0]), "n": int(ax.n.count[0]), "r": int(ax.r.count[0]), "c": int(ax.c.count[0])}
    axes = tiling.order.axes
    grid = np.indices([counts[a] for a in axes]).reshape(len(axes), -1)
    index = {a: grid[i] for i, a in enumerate(axes)}
    steps = grid.shape[1]
    tm = ax.m.sizes(0)[index["m"]]
    tn = tm if nest.depthwise else ax.n.sizes(0)[index["n"]]
    rows_out, rows_in, rows_streamed = (x[0][index["r"]] for x in (ax.r.out, ax.r.loaded, ax.r.streamed))
    cols_out, cols_in, cols_streamed = (x[0][index["c"]] for x in (ax.c.out, ax.c.loaded, ax.c.streamed))

    def changed(operand: str) -> np.ndarray:
        keys = sorted(nest.depends[operand])
        out = np.ones(steps, bool)
        out[1:] = np.any([index[a][1:] != index[a][:-1] for a in keys], axis=0)
        return out

    def runs(channels, rows, cols, full_rows: bool, full_cols: bool, plane_rows: int, plane_cols: int):
        # bursts of one activation tile stored channel-major (see the module docstring)
        if full_cols and full_rows:
            return _ceil_div(channels * plane_rows * plane_cols * b, burst)
        if full_cols:
            return channels * _ceil_div(rows * plane_cols * b, burst)
        return channels * rows * _ceil_div(cols * b, burst)

    in_full_cols = counts["c"] == 1 and int(ax.c.loaded[0, 0]) == nest.in_cols
    in_full_rows = counts["r"] == 1 and int(ax.r.loaded[0, 0]) == nest.in_rows
    in_tile = tn * rows_in * cols_in * b
    in_bursts = runs(tn, rows_in, cols_in, in_full_rows, in_full_cols, nest.in_rows, nest.in_cols)
    out_tile = tm * rows_out * cols_out * b
    out_bursts = runs(tm, rows_out, cols_out, counts["r"] == 1, counts["c"] == 1, nest.out_rows, nest.out_cols)
    w_tile = tm * tn * (0 if nest.depthwise else k * k) * b

    load_in, load_w, enter_out = changed("input"), changed("weights"), changed("output")
    leave_out = np.ones(steps, bool)
    leave_out[:-1] = enter_out[1:]
    read_partial = enter_out & (index["n"] > 0)
    macs = tm * (1 if nest.depthwise else tn) * k * k * rows_out * cols_out
    per_pass = TileSteps(
        flops=(1.0 if nest.depthwise else 2.0) * macs,
        cycles=(_ceil_div(tm, engine.output_lanes * (engine.input_lanes if nest.depthwise else 1))
                * (1 if nest.depthwise else _ceil_div(tn, engine.input_lanes))
                * _ceil_div(k, engine.window) ** 2 * rows_streamed * cols_streamed).astype(float),
        input_bytes=np.where(load_in, in_tile, 0).astype(float),
        weight_bytes=np.where(load_w, w_tile, 0).astype(float),
        partial_read_bytes=np.where(read_partial, out_tile, 0).astype(float),
        write_bytes=np.where(leave_out, out_tile, 0).astype(float),
        read_bursts=(np.where(load_in, in_bursts, 0) + np.where(load_w, _ceil_div(w_tile, burst), 0)
                     + np.where(read_partial, out_bursts, 0)).astype(float),
        write_bursts=np.where(leave_out, out_bursts, 0).astype(float))
    return TileSteps(*(np.tile(np.asarray(x, float), nest.passes) for x in (
        per_pass.flops, per_pass.cycles, per_pass.input_bytes, per_pass.weight_bytes, per_pass.partial_read_bytes,
        per_pass.write_bytes, per_pass.read_bursts, per_pass.write_bursts)))


def _merge(values: np.ndarray, groups: int) -> np.ndarray:
    """Sum consecutive entries into ``groups`` near-equal groups (SimPy sees coarse events)."""
    if values.size <= groups:
        return values
    starts = np.linspace(0, values.size, groups + 1).astype(np.int64)[:-1]
    return np.add.reduceat(values, starts)


def _kernel_kind(layer: Layer, batch: int) -> KernelKind:
    if layer.kind is LayerKind.CONV:
        return KernelKind.CONV
    if layer.kind is LayerKind.FC:
        return KernelKind.GEMV if batch == 1 else KernelKind.GEMM
    return KernelKind.POOL


def tiled_layer_work(layer: Layer, tiling: Tiling, profile: HardwareProfile, batch: int = 1) -> LayerWork:
    """The engine's tile work of one tiled layer.

    A step's load holds DRAM for its input, weight and partial-sum reads and for the output
    write of the step :data:`BUFFERS` before it: that tile is complete once its compute has
    freed the buffer half this load takes, and it drains while the next step computes. The
    last writes go in :data:`BUFFERS` drain steps without compute.
    """
    engine = _engine(profile)
    steps = tile_steps(layer, tiling, profile, batch)
    drain = np.zeros(BUFFERS)

    def timed(values: np.ndarray) -> np.ndarray:      # per step, merged, then the drain steps
        return np.concatenate([_merge(values, MAX_ENGINE_TILES), drain])

    def shifted(values: np.ndarray) -> np.ndarray:    # writes land BUFFERS steps later
        moved = np.concatenate([drain, values])
        return np.concatenate([_merge(moved[:values.size], MAX_ENGINE_TILES), moved[values.size:]])

    reads = steps.input_bytes + steps.weight_bytes + steps.partial_read_bytes
    bursts = timed(steps.read_bursts) + shifted(steps.write_bursts)
    # one DMA channel per buffer, each direction its own (the output buffer reads partial sums
    # and writes results at once): a step's load waits for the busiest of the four
    channels = np.max([timed(steps.input_bytes), timed(steps.weight_bytes), timed(steps.partial_read_bytes),
                       shifted(steps.write_bytes)], axis=0)
    traffic = LayerTraffic(layer, _kernel_kind(layer, batch), layer.flops(batch), np.zeros(0, np.int64),
                           np.zeros(0, bool), np.zeros(0, np.int16), np.zeros(0, np.int8), 1, 1.0,
                           layer.weight_bytes(), int(engine.dma_burst_bytes), int(engine.dma_burst_bytes))
    return LayerWork(
        traffic=traffic, flops=timed(steps.flops), level_bytes=np.zeros((bursts.size, 0)),
        dram_read_bytes=timed(reads), dram_write_bytes=shifted(steps.write_bytes), dram_lines=bursts,
        hits=np.array([int(round(bursts.sum()))], np.int64), compute_s=timed(steps.cycles) / profile.compute.clock_hz,
        dma_channel_bytes=channels,
        scratchpad_bytes={engine.input_buffer: timed(steps.input_bytes),
                          engine.weight_buffer: timed(steps.weight_bytes),
                          engine.output_buffer: timed(steps.partial_read_bytes) + shifted(steps.write_bytes)},
        prefetch_tiles=BUFFERS, tiling=tiling.describe())


def tiled_works(profile: HardwareProfile, workload: Workload, batch: int = 1) -> list[tuple[LayerWork, Tiling]]:
    """Tile work of every layer of ``workload`` on a tiled-engine profile, with each layer's tiling."""
    if getattr(profile.compute.peak_flops, workload.dtype.value) is None:
        given = [name for name in ("fp32", "fp16", "int16", "int8") if getattr(profile.compute.peak_flops, name)]
        raise ConfigError(workload.path, "dtype", f"{workload.dtype.value}: {profile.name} computes "
                          f"{', '.join(given)} only (compute.peak_flops in {profile.path}); give the workload "
                          f"dtype: {given[0]}")
    out = []
    for layer in workload.layers:
        if layer.kind in (LayerKind.ADD, LayerKind.CONCAT):
            raise ConfigError(workload.path, f"layers.{layer.name}", f"{profile.name} runs conv, fc and pooling "
                              f"layers; this is a {layer.kind.value} layer")
        tiling = choose_tiling(layer, profile, batch)
        out.append((tiled_layer_work(layer, tiling, profile, batch), tiling))
    return out
