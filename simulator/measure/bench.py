"""Real timings of a workload's layers on this CPU with torch (``python -m simulator bench``).

The benchmark mode is the simulator's layer mode: each layer alone, the
same layer called back to back with the same weights, time per frame = time per call / batch.
Warm-up calls first, until two calls in a row are no faster than the fastest before them
(:func:`warm_up`: they warm the caches, as the simulator's first repetition does), then
``repeat`` timed calls; the median is the figure, the 10th and 90th percentiles the spread (other
processes share the cores, so single calls are noisy).

The weights are the simulator's: dense layers use the unpruned seeded weights
(:func:`simulator.model.weights.synthetic_weights`); CSR layers keep exactly the non-zeros of
:func:`simulator.compress.compression.pruned_encoding` (its row pointers and column indices, the values
of the seeded weights there). Dense layers run torch (``F.linear`` / ``F.conv2d``); CSR layers
run whichever of ``torch.sparse_csr_tensor`` and ``scipy.sparse.csr_matrix`` is faster on the
layer's first calls, and the result says which (scipy runs on one thread).

``bench --sparse-conv`` (:func:`bench_sparse_conv`) times dense against sparse convolution at
several densities instead (:mod:`simulator.measure.sparseconv`); its timings are the result's
``sparse_conv``, in the same file. ``bench --llm`` (:func:`bench_llm`) times a decoder LLM's time
to first token and decode rate (:mod:`simulator.measure.llmbench`): the result's ``llm``.
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

from ..base.errors import ConfigError
from ..compress.compression import StorageFormat
from ..model.workload import Layer, LayerKind, Workload
from .llmbench import DecoderDims, LlmTiming, WeightType, llm_timing_from_json, measure_llm, render_llm
from .sparseconv import (
    DEFAULT_DENSITIES,
    DEFAULT_ROUNDS,
    ConvShape,
    SparseConvAlgorithm,
    SparseConvLayer,
    csr_weights,
    render_table,
    sparse_conv_from_json,
)

resource: Optional[ModuleType]
try:
    import resource
except ImportError:        # Windows: no fault counts
    resource = None

BENCH_SCHEMA = "simulator-bench/1"
WARMUP_CALLS = 3
#: A warm-up call gains when it is more than this share faster than the fastest call before it.
WARMUP_TOLERANCE = 0.05
#: A warm-up ends after this many calls in a row that gain nothing: repeating the call no longer
#: changes what the caches hold for it. One is not enough where a level refills slowly (its second
#: pass barely faster than its first; see :func:`warm_up`).
WARMUP_PATIENCE = 2
#: The most warm-up calls :func:`warm_up` makes, whatever the calls still gain.
WARMUP_MAX_CALLS = 12


class SparseBackend(str, enum.Enum):
    """Which library runs a CSR layer."""

    TORCH = "torch"       # torch.sparse_csr_tensor @ dense, on the torch threads
    SCIPY = "scipy"       # scipy.sparse.csr_matrix @ ndarray, one thread
    DENSE = "torch-dense"  # not sparse: torch dense kernels


#: The CSR libraries ``bench`` picks from, per layer (:func:`pick_sparse_backend`).
CSR_BACKENDS = (SparseBackend.TORCH, SparseBackend.SCIPY)


@dataclass(frozen=True)
class LayerTiming:
    """Measured time per frame of one layer run alone, repeatedly."""

    layer: str
    kind: str                 # conv, fc, maxpool, ...
    kernel: str               # gemv, gemm, spmv, spmm, conv, spconv, pool
    format: str               # dense, csr
    batch: int
    backend: str              # SparseBackend value
    threads: int              # threads the backend ran on
    median_s: float           # per frame
    p10_s: float
    p90_s: float
    calls: int                # timed calls
    weight_bytes: int         # values + indices + pointers as stored
    # pages the process faulted in a timed call, as bytes (minor faults x page size, the mean over
    # the calls): a buffer the allocator maps afresh at every call (absent in files before it: 0)
    faulted_bytes: float = 0.0

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: how noisy the timing was."""
        return (self.p90_s - self.p10_s) / self.median_s if self.median_s > 0 else 0.0


@dataclass(frozen=True)
class OperatorTime:
    """One torch operator in the profiled pass over the whole workload."""

    name: str
    calls: int
    cpu_total_s: float       # including children
    self_cpu_s: float


@dataclass(frozen=True)
class BenchResult:
    """Everything one ``bench`` run measured; ``to_json`` is the file ``crosscheck`` reads."""

    workload: str
    workload_path: str
    format: str
    batch: int
    threads: int
    repeat: int
    seed: int
    when: str
    machine: str
    versions: dict[str, str]
    load_before: str              # os.getloadavg() when the run started: others share the cores
    layers: list[LayerTiming] = field(default_factory=list)
    operators: list[OperatorTime] = field(default_factory=list)
    repeat_mode: str = "layer"
    sparse_conv: list[SparseConvLayer] = field(default_factory=list)   # ``bench --sparse-conv``
    llm: list[LlmTiming] = field(default_factory=list)                 # ``bench --llm``
    variants: list[LayerTiming] = field(default_factory=list)   # ``bench --format LIST`` (variantbench)
    notes: list[str] = field(default_factory=list)              # what a run skipped, and why

    def to_json(self) -> dict[str, Any]:
        """The ``--out`` document."""
        out = asdict(self)
        out["schema"] = BENCH_SCHEMA
        return out


def load_bench(path: str | Path) -> BenchResult:
    """Read a ``bench --out`` file; a bad file is a :class:`ConfigError` naming the field."""
    source = str(path)
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, "", "no such file") from None
    except (OSError, ValueError) as err:
        raise ConfigError(source, "", f"not a readable JSON file ({err.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
        raise ConfigError(source, "schema", f"expected {BENCH_SCHEMA!r} (a file written by `simulator bench`)")
    try:
        layers = [LayerTiming(**entry) for entry in doc["layers"]]
        operators = [OperatorTime(**entry) for entry in doc.get("operators", [])]
        fields = {k: doc[k] for k in ("workload", "workload_path", "format", "batch", "threads", "repeat", "seed",
                                      "when", "machine", "versions", "load_before")}
    except KeyError as err:
        raise ConfigError(source, str(err.args[0]), "missing") from None
    except TypeError as err:
        raise ConfigError(source, "layers", f"malformed entry ({err})") from None
    for i, timing in enumerate(layers):
        if not (isinstance(timing.median_s, (int, float)) and timing.median_s > 0):
            raise ConfigError(source, f"layers[{i}].median_s", f"{timing.median_s!r} is not a positive time")
    # files written before `--sparse-conv` existed have no such key
    entries = doc.get("sparse_conv", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(source, "sparse_conv", "expected a list of measured convolutions")
    sparse_conv = [sparse_conv_from_json(e, source, f"sparse_conv[{i}]") for i, e in enumerate(entries)]
    # nor those written before `--llm`
    entries = doc.get("llm", [])
    if not isinstance(entries, list):
        raise ConfigError(source, "llm", "expected a list of measured LLM runs")
    llm = [llm_timing_from_json(e, source, f"llm[{i}]") for i, e in enumerate(entries)]
    variants = _timings(doc.get("variants", []), source, "variants")    # absent before variant lists
    notes = doc.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ConfigError(source, "notes", "expected a list of strings")
    return BenchResult(**fields, layers=layers, operators=operators, repeat_mode=doc.get("repeat_mode", "layer"),
                       sparse_conv=sparse_conv, llm=llm, variants=variants, notes=notes)


def _timings(entries: Any, source: str, where: str) -> list[LayerTiming]:
    """Layer timings of a bench file's ``where`` list; a bad entry is a :class:`ConfigError`."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(source, where, "expected a list of layer timings")
    try:
        timings = [LayerTiming(**entry) for entry in entries]
    except TypeError as err:
        raise ConfigError(source, where, f"malformed entry ({err})") from None
    for i, timing in enumerate(timings):
        if not (isinstance(timing.median_s, (int, float)) and timing.median_s > 0):
            raise ConfigError(source, f"{where}[{i}].median_s", f"{timing.median_s!r} is not a positive time")
    return timings


# --- operators ----------------------------------------------------------------------------------

#: The width of the row pointers and column indices each backend's CSR matrices hold here: torch's
#: as ``to_sparse_csr()`` gives them (int64), scipy's int32 (``calibrate`` writes it to the profile).
INDEX_BITS = {SparseBackend.TORCH: 64, SparseBackend.SCIPY: 32}


def sparse_operator(backend: SparseBackend, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                    shape: tuple[int, int], x: np.ndarray, index_bits: Optional[int] = None) -> Callable[[], Any]:
    """A call computing CSR(indptr, indices, values) @ x with ``backend``, its indices and pointers
    ``index_bits`` wide (default :data:`INDEX_BITS`, the width the backend stores as bench builds it)."""
    index = np.dtype(f"int{index_bits or INDEX_BITS[backend]}")
    if backend is SparseBackend.SCIPY:
        import scipy.sparse as sp

        matrix = sp.csr_matrix((values, np.asarray(indices, dtype=index), np.asarray(indptr, dtype=index)),
                               shape=shape)
        return lambda: matrix @ x
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "sparse CSR support is in beta"
        matrix = torch.sparse_csr_tensor(torch.from_numpy(np.asarray(indptr, dtype=index)),
                                         torch.from_numpy(np.asarray(indices, dtype=index)),
                                         torch.from_numpy(np.asarray(values, dtype=np.float32)), size=shape)
    xt = torch.from_numpy(x)
    if x.ndim == 1:
        return lambda: torch.mv(matrix, xt)
    return lambda: torch.mm(matrix, xt)


def pick_sparse_backend(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, shape: tuple[int, int],
                        x: np.ndarray, calls: int = 5) -> SparseBackend:
    """The faster of torch and scipy on this matrix: mean of a few calls after one warm-up (the
    mean, not the median, because torch's CSR kernels are sometimes bimodal, fast on most calls
    and very slow on some)."""
    mean_s = {backend: statistics.fmean(time_calls(sparse_operator(backend, indptr, indices, values, shape, x),
                                                   calls, warmup=1))
              for backend in CSR_BACKENDS}
    return min(mean_s, key=mean_s.__getitem__)


def _csr_of(layer: Layer, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pointers, indices, values) of the simulator's pruned layer (:func:`csr_weights`), with int32
    pointers and indices, as torch's and scipy's CSR kernels take them."""
    pointers, indices, values = csr_weights(layer, seed)
    return pointers.astype(np.int32), indices.astype(np.int32), values


def kernel_name(layer: Layer, fmt: StorageFormat, batch: int) -> str:
    """The simulator's kernel kind of the layer (``simulator.memory.traffic.kernel_kind``)."""
    from ..memory.traffic import kernel_kind

    return kernel_kind(layer, fmt, batch).value


@dataclass
class _Operator:
    call: Callable[[], Any]
    backend: SparseBackend
    threads: int
    weight_bytes: int


def layer_operator(layer: Layer, fmt: StorageFormat, batch: int, seed: int, threads: int,
                   source: str = "workload") -> _Operator:
    """A callable running ``layer`` once on ``batch`` samples, as stored in ``fmt``."""
    import torch
    import torch.nn.functional as F

    from ..model.weights import synthetic_weights

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, *layer.in_shape), generator=gen)
    if layer.kind is LayerKind.FC:
        rows, cols = layer.weight_matrix_shape
        xin = x.reshape(batch, cols)
        if fmt is StorageFormat.DENSE:
            w = synthetic_weights(layer, seed).reshape(rows, cols).contiguous()
            # F.linear at every batch, batch 1 included: what nn.Linear runs (not torch.mv; see
            # variantbench.dense_call)
            return _Operator(lambda: F.linear(xin, w), SparseBackend.DENSE, threads, rows * cols * 4)
        ptr, idx, val = _csr_of(layer, seed)
        # CSR x (inputs x batch): the weight-stationary product; a vector at batch 1
        xs = np.ascontiguousarray(xin.numpy().T) if batch > 1 else np.ascontiguousarray(xin.numpy()[0])
        backend = pick_sparse_backend(ptr, idx, val, (rows, cols), xs)
        return _Operator(sparse_operator(backend, ptr, idx, val, (rows, cols), xs), backend,
                         1 if backend is SparseBackend.SCIPY else threads, val.nbytes + idx.nbytes + ptr.nbytes)
    if layer.kind is LayerKind.CONV:
        stride, padding, groups = layer.stride, layer.padding, layer.groups
        if fmt is StorageFormat.DENSE:
            w = synthetic_weights(layer, seed).contiguous()
            return _Operator(lambda: F.conv2d(x, w, stride=stride, padding=padding, groups=groups),
                             SparseBackend.DENSE, threads, w.numel() * 4)
        if groups != 1:
            raise ConfigError(source, f"layers.{layer.name}.groups", "CSR convolution is benched for groups = 1 only")
        rows, cols = layer.weight_matrix_shape
        ptr, idx, val = _csr_of(layer, seed)
        k = layer.kernel_hw

        # sparse convolution as the simulator lowers it: im2col, then CSR x columns
        patches = F.unfold(x, k, padding=padding, stride=stride)            # [batch, cols, pixels]
        xs = np.ascontiguousarray(patches.permute(1, 0, 2).reshape(cols, -1).numpy())
        backend = pick_sparse_backend(ptr, idx, val, (rows, cols), xs)
        product = sparse_operator(backend, ptr, idx, val, (rows, cols), xs)

        def call() -> Any:
            F.unfold(x, k, padding=padding, stride=stride)
            return product()
        return _Operator(call, backend, 1 if backend is SparseBackend.SCIPY else threads,
                         val.nbytes + idx.nbytes + ptr.nbytes)
    if layer.kind in (LayerKind.MAXPOOL, LayerKind.AVGPOOL):
        pool = F.max_pool2d if layer.kind is LayerKind.MAXPOOL else F.avg_pool2d
        k, stride, padding = layer.kernel_hw, layer.stride, layer.padding
        return _Operator(lambda: pool(x, k, stride=stride, padding=padding), SparseBackend.DENSE, threads, 0)
    if layer.kind is LayerKind.ADD:
        y = torch.rand_like(x)
        return _Operator(lambda: x + y, SparseBackend.DENSE, threads, 0)
    # a concat only copies its inputs
    y = torch.rand_like(x)
    return _Operator(lambda: torch.cat([x, y], dim=1), SparseBackend.DENSE, threads, 0)


#: The size of a page the OS faults in (4 KiB on x86-64 and most ARM Linux).
PAGE_BYTES = resource.getpagesize() if resource is not None else 4096


def minor_faults() -> int:
    """Page faults this process has taken without I/O (a fresh page mapped and zeroed), 0 where the
    OS does not count them."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def release_free_pages() -> None:
    """Hand the pages of the C heap's free chunks back to the OS (glibc's ``malloc_trim(0)``; nothing
    elsewhere), so that the next allocation faults its pages in wherever glibc serves it from. A
    count of the pages a call faults in then shows every array the call allocates, not only those
    above glibc's mmap threshold: a free chunk left in the heap by an earlier step would serve a
    45 MB copy with no fault at all (calibrate's SpMV beyond the caches missed torch's index copy in
    3 of the 16 profiles of sessions 62-69 on the Zen 3 guest; with glibc's mmap threshold raised
    so that the copy always comes from the heap, it faults 32 bits a non-zero in every call after
    this and in one call of three without)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """The C library's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig``); None
    where the C library has none (not glibc) or cannot be found."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def time_calls(call: Callable[[], Any], repeat: int, warmup: int = WARMUP_CALLS) -> list[float]:
    """Seconds of ``repeat`` back-to-back calls after ``warmup`` untimed ones."""
    return time_calls_faulted(call, repeat, warmup)[0]


def warm_up(call: Callable[[], Any], at_least: int = WARMUP_CALLS) -> int:
    """Call until the caches hold what repeating the call leaves in them: ``at_least`` calls, then
    on until :data:`WARMUP_PATIENCE` calls in a row are no more than :data:`WARMUP_TOLERANCE` faster
    than the fastest call before them (at most :data:`WARMUP_MAX_CALLS` in all); the calls made.

    A fixed count is not enough where the last level does not keep a repeated working set the way
    LRU does. On the 2-vCPU Zen 3 guest, an 11 MiB fp32 GEMV (NT_LSTM) called again after its bf16,
    int8 and CSR variants took 650, 500, 340, 270, 250, 250 us: about a fifth of its lines was back
    in the L3 after one pass, nearly all after four. Its timed calls after a single warm-up call were
    15-35% slower than calls of the layer alone, which is what the benchmark mode times (and the
    simulator's second back-to-back run models: there LRU keeps the whole loop after one pass).
    Nor is one call without a gain: the same layer's refill also ran 696, 664, 470, 359, 284, 252,
    246 us, its second pass 4.6% faster than its first, and a warm-up that stopped there timed
    calls of 470 to 252 us (six crosschecks, sessions 62-64, had this layer 31-37% slower than the
    model, which its steady calls meet)."""
    best = float("inf")
    idle = 0
    for calls in range(1, WARMUP_MAX_CALLS + 1):
        t0 = time.perf_counter()
        call()
        seconds = time.perf_counter() - t0
        idle = 0 if seconds < best * (1.0 - WARMUP_TOLERANCE) else idle + 1
        best = min(best, seconds)
        if calls >= at_least and idle >= WARMUP_PATIENCE:
            return calls
    return WARMUP_MAX_CALLS


def time_calls_faulted(call: Callable[[], Any], repeat: int, warmup: int = WARMUP_CALLS) -> tuple[list[float], float]:
    """:func:`time_calls`, and the bytes of pages the process faulted in a timed call (the mean).
    The warm-up is :func:`warm_up`'s: ``warmup`` calls at least."""
    warm_up(call, warmup)
    times = []
    faults = minor_faults()
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times, (minor_faults() - faults) * PAGE_BYTES / max(1, repeat)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench(workload: Workload, fmt: StorageFormat, batch: int = 1, threads: Optional[int] = None,
          repeat: int = 20, seed: int = 0, progress: Callable[[str], None] = lambda _: None,
          profile_operators: bool = True, timeline_path: Optional[str | Path] = None) -> BenchResult:
    """Time every layer alone, repeated; then (optionally) profile one pass over all layers."""
    import torch

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    load = _load_average()
    timings = []
    operators: list[tuple[str, _Operator]] = []
    for n, layer in enumerate(workload.layers):
        progress(f"bench {fmt.value} batch {batch}: {layer.name} ({n + 1}/{len(workload.layers)})")
        layer_fmt = fmt if layer.kind.has_weights else StorageFormat.DENSE
        op = layer_operator(layer, layer_fmt, batch, seed, threads, workload.path or "workload")
        seconds, faulted = time_calls_faulted(op.call, repeat)
        times = [t / batch for t in seconds]
        timings.append(LayerTiming(layer.name, layer.kind.value, kernel_name(layer, layer_fmt, batch), fmt.value,
                                   batch, op.backend.value, op.threads, float(statistics.median(times)),
                                   _percentile(times, 10), _percentile(times, 90), repeat, op.weight_bytes, faulted))
        if profile_operators or timeline_path:
            operators.append((layer.name, op))
    breakdown: list[OperatorTime] = []
    if operators:
        progress("bench: torch.profiler pass over the whole workload")
        breakdown = _profile_pass(operators, timeline_path)
    progress("")
    return BenchResult(workload.name, workload.path, fmt.value, batch, threads, repeat, seed, *_run_facts(load),
                       timings, breakdown)


def _load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def _run_facts(load: str) -> tuple[str, str, dict[str, str], str]:
    """(when, machine, library versions, load average at the start) of a bench run."""
    import numba
    import scipy
    import torch

    return (_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            f"{platform.node()} {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)",
            {"torch": torch.__version__, "scipy": scipy.__version__, "numpy": np.__version__,
             "numba": numba.__version__}, load)


SPARSE_CONV_FORMAT = "sparse-conv"     # the ``format`` of a ``bench --sparse-conv`` result


def bench_sparse_conv(shapes: list[ConvShape], densities: tuple[float, ...] = DEFAULT_DENSITIES,
                      batch: int = 1, threads: Optional[int] = None, rounds: int = DEFAULT_ROUNDS, seed: int = 0,
                      progress: Callable[[str], None] = lambda _: None, workload_path: str = "") -> BenchResult:
    """Dense against sparse convolution at each density (:mod:`simulator.measure.sparseconv`), as a
    bench result whose ``sparse_conv`` holds the timings (``layers`` is empty)."""
    from .sparseconv import measure

    threads = threads or os.cpu_count() or 1
    load = _load_average()
    measured = measure(shapes, densities, tuple(SparseConvAlgorithm), batch, threads, rounds, seed, progress)
    progress("")
    return BenchResult("sparse convolution", workload_path, SPARSE_CONV_FORMAT, batch, threads, rounds, seed,
                       *_run_facts(load), sparse_conv=measured)


LLM_FORMAT = "llm"      # the ``format`` of a ``bench --llm`` result


def bench_llm(dims: DecoderDims, config_path: str, weights: tuple[WeightType, ...], prompt: int, context: int,
              tokens: int, batch: int = 1, threads: Optional[int] = None, rounds: int = 3, seed: int = 0,
              progress: Callable[[str], None] = lambda _: None) -> BenchResult:
    """Time to first token and decode rate of the decoder, each weight type
    (:func:`simulator.measure.llmbench.measure_llm`), as a bench result whose ``llm`` holds them."""
    threads = threads or os.cpu_count() or 1
    load = _load_average()
    measured = measure_llm(dims, config_path, weights, prompt, context, tokens, batch, threads, rounds, seed, progress)
    progress("")
    return BenchResult(dims.name, config_path, LLM_FORMAT, batch, threads, rounds, seed, *_run_facts(load),
                       llm=measured)


def _profile_pass(operators: list[tuple[str, _Operator]], timeline_path: Optional[str | Path]) -> list[OperatorTime]:
    """One pass over every layer under torch.profiler, each layer in a named range: the
    per-operator breakdown, and the real timeline when ``timeline_path`` is given."""
    from torch.profiler import ProfilerActivity, profile, record_function

    for _, op in operators:     # warm: the profiled pass is steady state, like the timings
        op.call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for name, op in operators:
            with record_function(name):
                op.call()
    if timeline_path:
        prof.export_chrome_trace(str(timeline_path))
    out = [OperatorTime(e.key, int(e.count), e.cpu_time_total * 1e-6, e.self_cpu_time_total * 1e-6)
           for e in prof.key_averages()]
    return sorted(out, key=lambda o: o.self_cpu_s, reverse=True)


def render(result: BenchResult) -> str:
    """Per-layer table and the top operators (or the sparse-convolution table), as text."""
    from ..base.units import format_seconds

    if result.sparse_conv:
        return render_sparse_conv(result)
    if result.llm:
        return render_llm(result.llm, result.load_before)
    if result.variants:
        from .variantbench import render_variants

        return render_variants(result)
    lines = [f"{result.workload}: measured on this CPU, {result.format}, batch {result.batch}, "
             f"{result.threads} thread(s); each layer alone, {result.repeat} calls after {WARMUP_CALLS} or more "
             "warm-up calls; "
             f"time per frame (load average at start {result.load_before})", "",
             f"{'layer':14s} {'kernel':7s} {'backend':11s} {'thr':>3s} {'median':>9s} {'p10':>9s} {'p90':>9s} "
             f"{'weights':>10s}"]
    for t in result.layers:
        lines.append(f"{t.layer:14s} {t.kernel:7s} {t.backend:11s} {t.threads:3d} {format_seconds(t.median_s):>9s} "
                     f"{format_seconds(t.p10_s):>9s} {format_seconds(t.p90_s):>9s} {t.weight_bytes / 2**20:8.2f} MiB")
    if result.operators:
        lines += ["", "torch.profiler, one pass over all layers (top operators by self CPU time):"]
        for o in result.operators[:10]:
            lines.append(f"  {o.name:36s} {o.calls:5d} calls  self {format_seconds(o.self_cpu_s):>9s}  "
                         f"total {format_seconds(o.cpu_total_s):>9s}")
    return "\n".join(lines)


def render_sparse_conv(result: BenchResult) -> str:
    """The ``bench --sparse-conv`` table: per layer and algorithm, sparse / dense time at each density."""
    lines = [f"sparse vs dense convolution measured on this CPU, batch {result.batch}, {result.threads} thread(s); "
             f"each kernel's best of {result.repeat} round-robin rounds (load average at start {result.load_before})",
             "dense: torch F.conv2d; im2col+torch-csr: F.unfold, then torch CSR weights @ columns; "
             "direct-numba: direct sparse convolution (Park et al. 2017)", ""]
    lines += [f"  {l.shape.name:24s} {l.shape.describe():30s} {l.shape.source}" for l in result.sparse_conv]
    return "\n".join(lines + [""] + render_table(result.sparse_conv))
