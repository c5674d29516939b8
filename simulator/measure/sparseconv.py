"""Sparse convolution against dense on this CPU, and the break-even density (``bench --sparse-conv``).

For a few convolution layers (by default AlexNet's conv2-conv5 and a ResNet-20 3x3 layer) and a
few weight densities, three kernels run on the same input, with the simulator's weights:

* dense: torch's ``F.conv2d`` on the unpruned seeded weights (what ``bench`` times for a dense
  convolution);
* ``im2col+torch-csr``: ``F.unfold`` (im2col), then the pruned weights as a
  ``torch.sparse_csr_tensor`` times the column matrix, on the torch threads;
* ``direct-numba``: a direct sparse convolution (Park et al., "Faster CNNs with direct sparse
  convolutions", ICLR 2017): per output channel, each non-zero weight (c, r, s) adds its value
  times the input plane of channel c shifted by (r, s) to the output plane, read in place with no
  im2col buffer. Numba-compiled, output channels split over the same number of threads. This is
  the kernel whose accesses the simulator traces for a CSR convolution
  (:func:`simulator.memory.traffic._sparse_conv`: weight blocks, the input planes they use, the
  output planes).

The pruned weights are exactly :func:`simulator.compress.compression.pruned_encoding`'s non-zeros
for the layer at that density (the layer named as in the one-layer workload ``crosscheck``
simulates), with the seeded weights' values there.

Timing is best-of-N in round-robin rounds: each round calls every kernel once (dense, then each
algorithm at each density), so a burst of load from other processes hits all of them alike;
the figure is each kernel's fastest call (other processes only ever slow a call down), the
median is kept as the spread. The break-even density is where sparse time equals dense time,
interpolated between the measured densities with the log of the time ratio linear in density
(:func:`break_even`).
"""

from __future__ import annotations

import enum
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import numba
import numpy as np

from ..base.errors import ConfigError, OptionError
from ..model.workload import Layer, LayerKind, Workload

DEFAULT_DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
DEFAULT_ROUNDS = 7


class SparseConvAlgorithm(str, enum.Enum):
    """A real sparse convolution kernel ``bench --sparse-conv`` times."""

    IM2COL_CSR = "im2col+torch-csr"    # F.unfold, then torch CSR weights @ columns
    DIRECT = "direct-numba"            # Park et al. 2017 direct sparse convolution, numba


class Crossing(str, enum.Enum):
    """Where sparse and dense times cross within the measured densities."""

    IN_RANGE = "in range"                # the density where sparse time = dense time
    ABOVE = "above range"                # sparse faster at every measured density
    BELOW = "below range"                # sparse slower at every measured density


@dataclass(frozen=True)
class BreakEven:
    """The break-even density, or on which side of the measured range it lies."""

    crossing: Crossing
    density: Optional[float] = None      # set when ``crossing`` is IN_RANGE

    def describe(self, densities: Sequence[float]) -> str:
        """``0.231``, ``> 0.7`` or ``< 0.05``."""
        if self.crossing is Crossing.IN_RANGE:
            return f"{self.density:.3f}"
        return f"> {max(densities):g}" if self.crossing is Crossing.ABOVE else f"< {min(densities):g}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"crossing": self.crossing.value, "density": self.density}


def break_even(densities: Sequence[float], ratios: Sequence[float]) -> BreakEven:
    """Where ``ratio`` (sparse time / dense time, one per density) crosses 1.

    The densities are sorted; the crossing is the first one going up in density where sparse
    stops being faster (ratio < 1, then >= 1), interpolated with log(ratio) linear in density
    between the two measured densities around it (a sparse kernel's time is about linear in
    density, so the log of the ratio is smooth where it crosses zero). Sparse slower already at
    the lowest density: BELOW; faster at every density: ABOVE.
    """
    if len(densities) != len(ratios) or not densities:
        raise ValueError("one ratio per density, at least one")
    order = np.argsort(densities)
    d = np.asarray(densities, dtype=float)[order]
    logs = np.log(np.asarray(ratios, dtype=float)[order])
    if logs[0] >= 0:
        return BreakEven(Crossing.BELOW)
    for i in range(len(d) - 1):
        if logs[i] < 0 <= logs[i + 1]:
            share = -logs[i] / (logs[i + 1] - logs[i])
            return BreakEven(Crossing.IN_RANGE, float(d[i] + share * (d[i + 1] - d[i])))
    return BreakEven(Crossing.ABOVE)


@dataclass(frozen=True)
class ConvShape:
    """The geometry of one measured convolution (groups = 1), and where it comes from."""

    name: str                # the layer's name in the one-layer workload (it seeds the weights)
    source: str              # e.g. workloads/alexnet.yaml:conv2
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0

    @staticmethod
    def of(layer: Layer, source: str) -> ConvShape:
        """The shape of a workload's convolution layer."""
        channels, height, width = layer.in_shape
        return ConvShape(layer.name, source, channels, height, width, layer.out_shape[0], layer.kernel_hw,
                         layer.stride, layer.padding)

    def describe(self) -> str:
        """``64x27x27 -> 192, 5x5 s1 p2``."""
        return (f"{self.in_channels}x{self.height}x{self.width} -> {self.out_channels}, "
                f"{self.kernel}x{self.kernel} s{self.stride} p{self.padding}")

    def workload(self, density: float = 1.0) -> Workload:
        """A one-layer workload of this convolution at ``density`` (what ``crosscheck`` simulates)."""
        from ..base.schema import validate
        from ..model.workload import WorkloadSpec, resolve

        source = f"sparse convolution {self.name}"
        spec = validate(WorkloadSpec, {
            "schema_version": 1, "name": self.name, "source": self.source,
            "input_shape": [self.in_channels, self.height, self.width],
            "layers": [{"name": self.name, "kind": "conv", "in_channels": self.in_channels,
                        "out_channels": self.out_channels, "kernel": self.kernel, "stride": self.stride,
                        "padding": self.padding, "density": density}]}, source)
        return resolve(spec, source)

    def layer(self, density: float = 1.0) -> Layer:
        """The convolution at ``density``."""
        return self.workload(density).layers[0]


@dataclass(frozen=True)
class SparseConvPoint:
    """One sparse kernel at one density."""

    algorithm: str           # SparseConvAlgorithm value
    density: float
    nnz: int
    best_s: float            # per frame
    median_s: float


@dataclass(frozen=True)
class SparseConvLayer:
    """Dense and sparse timings of one convolution; per-frame times."""

    shape: ConvShape
    batch: int
    threads: int
    rounds: int
    dense_best_s: float
    dense_median_s: float
    points: list[SparseConvPoint] = field(default_factory=list)

    @property
    def algorithms(self) -> list[str]:
        """The sparse algorithms measured, in order."""
        return list(dict.fromkeys(p.algorithm for p in self.points))

    @property
    def densities(self) -> list[float]:
        """The densities measured, ascending."""
        return sorted({p.density for p in self.points})

    def ratios(self, algorithm: str) -> list[float]:
        """Sparse best / dense best at each density (ascending)."""
        by_density = {p.density: p.best_s for p in self.points if p.algorithm == algorithm}
        return [by_density[d] / self.dense_best_s for d in self.densities]

    def break_even(self, algorithm: str) -> BreakEven:
        """The measured break-even density of ``algorithm``."""
        return break_even(self.densities, self.ratios(algorithm))

    def disturbed(self, algorithm: str, drop: float = 0.8) -> bool:
        """True when the ratio falls by more than ``1 - drop`` from one density to the next: more
        non-zeros never make a sparse kernel faster, so some of these calls (or every dense call)
        were slowed down by other processes, and a re-run on a quieter machine is needed."""
        ratios = self.ratios(algorithm)
        return any(b < drop * a for a, b in zip(ratios, ratios[1:]))


def sparse_conv_from_json(doc: dict[str, Any], source: str, where: str) -> SparseConvLayer:
    """One ``sparse_conv`` entry of a bench file; a bad entry is a :class:`ConfigError`."""
    try:
        shape = ConvShape(**doc["shape"])
        points = [SparseConvPoint(**p) for p in doc["points"]]
        out = SparseConvLayer(shape, doc["batch"], doc["threads"], doc["rounds"], doc["dense_best_s"],
                              doc["dense_median_s"], points)
    except KeyError as err:
        raise ConfigError(source, f"{where}.{err.args[0]}", "missing") from None
    except TypeError as err:
        raise ConfigError(source, where, f"malformed entry ({err})") from None
    times = [("dense_best_s", out.dense_best_s)] + [(f"points[{i}].best_s", p.best_s) for i, p in enumerate(points)]
    for name, value in times:
        if not (isinstance(value, (int, float)) and value > 0):
            raise ConfigError(source, f"{where}.{name}", f"{value!r} is not a positive time")
    for i, p in enumerate(points):
        if p.algorithm not in {a.value for a in SparseConvAlgorithm}:
            raise ConfigError(source, f"{where}.points[{i}].algorithm", f"{p.algorithm!r} is not one of "
                              f"{', '.join(a.value for a in SparseConvAlgorithm)}")
        if not (isinstance(p.density, (int, float)) and 0 < p.density <= 1):
            raise ConfigError(source, f"{where}.points[{i}].density", f"{p.density!r} is not in (0, 1]")
    for algorithm in out.algorithms:
        if len([p for p in points if p.algorithm == algorithm]) != len(out.densities):
            raise ConfigError(source, f"{where}.points", f"{algorithm} is not measured at every density")
    return out


# --- kernels ------------------------------------------------------------------------------------

def csr_weights(layer: Layer, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pointers, column indices, values) of the simulator's pruned layer: the non-zeros of its
    CSR encoding (rows = output channels or features, columns = (channel, r, s) or input features),
    the seeded weights there."""
    from ..compress.compression import StorageFormat, pruned_encoding
    from ..model.weights import synthetic_weights

    encoded = pruned_encoding(layer, StorageFormat.CSR, seed)
    rows, cols = layer.weight_matrix_shape
    weights = synthetic_weights(layer, seed).reshape(rows, cols).numpy()
    if encoded.pointers is None or encoded.indices is None:
        raise ValueError(f"{layer.name}: a CSR encoding stores row pointers and column indices")
    row_of = np.repeat(np.arange(rows), np.diff(encoded.pointers))
    values = np.ascontiguousarray(weights[row_of, encoded.indices], dtype=np.float32)
    return encoded.pointers.astype(np.int64), encoded.indices.astype(np.int64), values


# Speed trick, labelled: with stride 1 the k x k window is "stretched" over the padded input's width
# (Park et al., section 3.1): output pixel (y, x) of non-zero (c, r, s) reads padded input
# element (c, y + r, x + s), so over the flattened plane every output row, and the padding columns
# between them, is one contiguous run of (OH - 1) * Wp + OW elements: one long vectorised axpy per
# non-zero instead of OH short ones. The Wp - OW padding columns computed per row are thrown away.
# The source is taken as a slice first so the loop index is known non-negative (numba drops the
# wraparound check, and LLVM vectorises the loop: about 3x faster on a 13 x 13 plane).
@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _direct_sparse_conv(x_flat, pointers, indices, values, out, kernel_hw, stride, hp, wp,
                        out_h, out_w):  # pragma: no cover - compiled
    """out[n, m] += value * (input plane c of sample n shifted by (r, s), strided) over the non-zeros
    (c, r, s) of row m. ``x_flat`` [batch, C * hp * wp] is the padded input; ``out`` [batch, M, P] holds
    per output channel OH rows of ``wp`` pixels (stride 1, the last wp - OW of each row unused) or
    of OW pixels (stride > 1). One task per (sample, output channel): each output plane is written
    by one thread and stays in its L1 cache while every non-zero of its row adds to it."""
    batch, m_total, _ = out.shape
    kk = kernel_hw * kernel_hw
    span = (out_h - 1) * wp + out_w
    for task in numba.prange(batch * m_total):
        n, m = task // m_total, task % m_total
        dst, src_all = out[n, m], x_flat[n]
        dst[:] = 0.0
        for j in range(pointers[m], pointers[m + 1]):
            col = indices[j]
            c, r, s = col // kk, (col % kk) // kernel_hw, col % kernel_hw
            w = values[j]
            base = c * hp * wp + r * wp + s
            if stride == 1:
                src = src_all[base:base + span]
                for i in range(span):
                    dst[i] += w * src[i]
            else:
                for y in range(out_h):
                    row = src_all[base + y * stride * wp:base + y * stride * wp + (out_w - 1) * stride + 1:stride]
                    line = dst[y * out_w:(y + 1) * out_w]
                    for x in range(out_w):
                        line[x] += w * row[x]


def sparse_conv_call(algorithm: SparseConvAlgorithm, layer: Layer, csr: tuple[np.ndarray, np.ndarray, np.ndarray],
                     x: Any) -> Callable[[], Any]:
    """A call running ``layer`` with CSR weights ``csr`` on the torch tensor ``x`` [batch, C, H, W];
    it returns the output [batch, M, OH, OW] (a torch tensor or a numpy array)."""
    import warnings

    import torch
    import torch.nn.functional as F

    pointers, indices, values = csr
    k, stride, padding = layer.kernel_hw, layer.stride, layer.padding
    rows, cols = layer.weight_matrix_shape
    batch, (m_total, out_h, out_w) = x.shape[0], layer.out_shape
    if algorithm is SparseConvAlgorithm.DIRECT:
        hp, wp = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
        row = wp if stride == 1 else out_w
        out = np.empty((batch, m_total, out_h * row), np.float32)

        def direct() -> np.ndarray:
            padded = F.pad(x, (padding,) * 4).reshape(batch, -1).numpy()
            _direct_sparse_conv(padded, pointers, indices, values, out, k, stride, hp, wp, out_h, out_w)
            return out.reshape(batch, m_total, out_h, row)[..., :out_w]
        return direct
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "sparse CSR support is in beta"
        weights = torch.sparse_csr_tensor(torch.from_numpy(pointers), torch.from_numpy(indices),
                                          torch.from_numpy(values), size=(rows, cols))

    def im2col() -> Any:
        columns = F.unfold(x, k, padding=padding, stride=stride)                 # [batch, cols, pixels]
        columns = columns.permute(1, 0, 2).reshape(cols, -1) if batch > 1 else columns[0]
        product = torch.mm(weights, columns)                                      # [rows, batch * pixels]
        return product.reshape(rows, batch, out_h, out_w).permute(1, 0, 2, 3)
    return im2col


# --- measurement --------------------------------------------------------------------------------

def _best_of_rounds(calls: list[Callable[[], Any]], rounds: int) -> list[list[float]]:
    """Seconds of every call in each of ``rounds`` round-robin rounds, after one untimed call each."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for i, call in enumerate(calls):
            t0 = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - t0)
    return times


def measure_layer(shape: ConvShape, densities: Sequence[float], algorithms: Sequence[SparseConvAlgorithm],
                  batch: int, threads: int, rounds: int, seed: int) -> SparseConvLayer:
    """Dense and every (algorithm, density) of one convolution, best of ``rounds`` rounds."""
    import torch
    import torch.nn.functional as F

    from ..model.weights import synthetic_weights

    dense_layer = shape.layer(1.0)
    x = torch.rand((batch, shape.in_channels, shape.height, shape.width),
                   generator=torch.Generator().manual_seed(seed))
    w = synthetic_weights(dense_layer, seed).contiguous()
    calls = [lambda: F.conv2d(x, w, stride=shape.stride, padding=shape.padding)]
    keys: list[tuple[str, float, int]] = []
    for density in densities:
        layer = shape.layer(density)
        csr = csr_weights(layer, seed)
        for algorithm in algorithms:
            calls.append(sparse_conv_call(algorithm, layer, csr, x))
            keys.append((algorithm.value, float(density), int(csr[2].size)))
    times = _best_of_rounds(calls, rounds)
    points = [SparseConvPoint(a, d, nnz, min(t) / batch, statistics.median(t) / batch)
              for (a, d, nnz), t in zip(keys, times[1:])]
    return SparseConvLayer(shape, batch, threads, rounds, min(times[0]) / batch, statistics.median(times[0]) / batch,
                           points)


def default_shapes() -> list[ConvShape]:
    """AlexNet's conv2-conv5 (torchvision's channel counts) and ResNet-20's layer2.1.conv1
    (32 channels, 16 x 16), read from the shipped workload files."""
    from ..base.paths import WORKLOADS_DIR
    from ..model.workload import load_workload

    picks = (("alexnet.yaml", ("conv2", "conv3", "conv4", "conv5")), ("resnet20_cifar.yaml", ("layer2.1.conv1",)))
    out = []
    for file, names in picks:
        workload = load_workload(WORKLOADS_DIR / file)
        prefix = file.split(".")[0].split("_")[0]
        for name in names:
            shape = ConvShape.of(workload.layer(name), f"workloads/{file}:{name}")
            out.append(replace(shape, name=f"{prefix}.{name}"))
    return out


def workload_shapes(workload: Workload, names: Optional[Sequence[str]] = None) -> list[ConvShape]:
    """The workload's convolutions (groups = 1), or the named ones; unknown or unsuitable names
    are a :class:`ConfigError` naming ``--layers``."""
    if names is None:
        layers = [l for l in workload.layers if l.kind is LayerKind.CONV and l.groups == 1]
        if not layers:
            raise ConfigError(workload.path, "layers", "no convolution (groups = 1) to measure")
    else:
        known = {l.name for l in workload.layers}
        for name in names:
            if name not in known:
                raise OptionError("layers", f"{name!r} is not a layer of {workload.path}")
        layers = [workload.layer(n) for n in names]
        for layer in layers:
            if layer.kind is not LayerKind.CONV or layer.groups != 1:
                raise OptionError("layers", f"{layer.name} is not a convolution with groups = 1")
    return [ConvShape.of(l, f"{workload.path}:{l.name}") for l in layers]


def measure(shapes: Sequence[ConvShape], densities: Sequence[float] = DEFAULT_DENSITIES,
            algorithms: Sequence[SparseConvAlgorithm] = tuple(SparseConvAlgorithm), batch: int = 1,
            threads: int = 1, rounds: int = DEFAULT_ROUNDS, seed: int = 0,
            progress: Callable[[str], None] = lambda _: None) -> list[SparseConvLayer]:
    """Every shape, on ``threads`` torch and numba threads."""
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    # numba.config sets its options from the environment at import time, which mypy cannot see
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    try:
        out = []
        for n, shape in enumerate(shapes):
            progress(f"bench sparse convolution: {shape.name} ({n + 1}/{len(shapes)}), {len(densities)} "
                     f"densities, {rounds} rounds")
            out.append(measure_layer(shape, densities, algorithms, batch, threads, rounds, seed))
        return out
    finally:       # the caller's thread counts back (the cache model's compiled loops share them)
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def render_table(layers: Sequence[SparseConvLayer]) -> list[str]:
    """Per layer and algorithm: sparse / dense time at each density, and the break-even density."""
    from ..base.units import format_seconds

    lines = ["sparse / dense time per frame (best of each kernel's calls) at weight density:"]
    densities: list[float] = []
    for layer in layers:
        if layer.densities != densities:       # a header wherever the densities change
            densities = layer.densities
            lines += ["", f"{'layer':24s} {'dense':>9s}  {'algorithm':17s} "
                      + " ".join(f"{d:>6g}" for d in densities) + "  break-even"]
        for i, algorithm in enumerate(layer.algorithms):
            first = f"{layer.shape.name:24s} {format_seconds(layer.dense_best_s):>9s}" if i == 0 else " " * 34
            ratios = " ".join(f"{r:6.2f}" for r in layer.ratios(algorithm))
            mark = "  (*)" if layer.disturbed(algorithm) else ""
            lines.append(f"{first}  {algorithm:17s} {ratios}  {layer.break_even(algorithm).describe(densities)}{mark}")
    if any(layer.disturbed(a) for layer in layers for a in layer.algorithms):
        lines += ["", "(*) the ratio falls as the density grows: other processes slowed some calls down; re-run "
                  "when the machine is quiet"]
    return lines

