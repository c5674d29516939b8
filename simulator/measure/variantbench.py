"""Every compression variant torch can run on this CPU, timed layer by layer (``bench --format LIST``).

``bench --format dense,dense@bf16,dense@int8,csr,bsr4x4,thinned`` times each weighted layer of the
workload in each variant (``STRUCTURE[@TYPE]``, :mod:`simulator.compress.variants`), with the
simulator's own weights, so the measurement and ``run --format`` see the same structure:

==================  ============================================================================
variant             what runs (torch on the CPU)
==================  ============================================================================
``dense``           the unpruned seeded weights (:func:`simulator.model.weights.synthetic_weights`),
                    ``F.linear`` / ``F.conv2d`` in fp32, as plain ``bench``
``dense@bf16``      the same weights and input cast to bfloat16, the same calls
``dense@int8``      torch's dynamic quantization (``torch.ao.quantization.quantize_dynamic`` of an
                    ``nn.Linear`` holding the weights: int8 weights, one scale per tensor), called
                    as ``torch.ops.quantized.linear_dynamic`` (the input quantized on the fly, int8
                    GEMM, the output dequantized): FC layers only, as torch quantizes only those
``csr``             the non-zeros of the simulator's CSR encoding, the faster of torch's and
                    scipy's CSR product (:func:`simulator.measure.bench.layer_operator`, as plain
                    ``bench --format csr``)
``bsr<R>x<C>``      ``torch.sparse_bsr_tensor`` of exactly the blocks the simulator's BSR encoding
                    keeps (:func:`simulator.compress.compression.encode_variant`: the blocks of
                    largest L1 norm), the seeded weights in them, times the input
                    (``torch.mv`` / ``@``): FC layers only
``thinned``         the smaller dense layers of :func:`simulator.compress.thinning.thin_workload`:
                    the original seeded weights with the removed rows / columns (filters /
                    channels) cut out (:meth:`LayerThinning.slice`), in the variant's type
==================  ============================================================================

A type after ``@`` other than fp32, bf16 and int8, int8 on anything but ``dense`` / ``thinned``, and
a sparse structure this module has no torch kernel for (``csc``, ``N:M``, ``bitmask``, ``eie``,
``auto``) are refused with one line naming ``format`` (:func:`parse_bench_variants`). A layer a
variant cannot run (a convolution in ``@int8`` or ``bsr``) is skipped with a note in the result.

Timing keeps the benchmark mode of plain ``bench`` (each layer alone, the same call back to back, so
a layer whose weights fit a cache runs from it, as the simulator's layer mode assumes) but
interleaves the variants of a layer in rounds: every round runs each variant's warm-up calls (until
the caches stop filling: :func:`simulator.measure.bench.warm_up`) and a block of timed calls, so a
burst of load from other processes falls on all variants of the layer alike and the pair comparisons
``crosscheck`` makes stay fair. The rounds go over the whole run (round 1 of every layer, then round
2 of every layer, ...), so a layer's rounds lie a run's length apart rather than within a second: on the
shared 2-vCPU guest of ``docs/validation.md`` the host slows a loop for 0.05 s to several seconds
at a time (torch's BSR ``mv`` from 18-19 to 31-35 ns a block on one thread, the same buffers in the
same process), and a layer whose rounds ran back to back fell into one such phase whole. The
figure is the median of all the timed calls of a variant, its spread the 10th and 90th
percentiles, as ``bench``. Every layer's operators are built first and kept for the run (the
workload's weights in every variant at once).
"""

from __future__ import annotations

import enum
import os
import statistics
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..base.errors import OptionError
from ..compress.compression import StorageFormat, encode_layer
from ..compress.variants import Precision, Structure, Variant, parse_variants
from ..model.workload import Layer, LayerKind, Workload
from .bench import BenchResult, LayerTiming, _load_average, _percentile, _run_facts, layer_operator, time_calls_faulted

VARIANTS_FORMAT = "variants"      # the ``format`` of a ``bench --format LIST`` result
DEFAULT_ROUNDS = 5
#: What ``bench`` runs: structure -> the types it has a torch kernel for on the CPU.
BENCHABLE = {
    Structure.DENSE: (Precision.FP32, Precision.BF16, Precision.INT8),
    Structure.THINNED: (Precision.FP32, Precision.BF16, Precision.INT8),
    Structure.CSR: (Precision.FP32,),
    Structure.BSR: (Precision.FP32,),
}


class VariantBackend(str, enum.Enum):
    """The torch kernel that ran a variant (the CSR backends are :class:`~.bench.SparseBackend`'s)."""

    DENSE = "torch-dense"
    BF16 = "torch-bf16"
    INT8 = "torch-int8-dynamic"
    BSR = "torch-bsr"


def effective_precision(variant: Variant, workload: Workload) -> Optional[Precision]:
    """The variant's type, the workload's when the spec gives none (None: a type no variant names)."""
    if variant.precision is not None:
        return variant.precision
    try:
        return Precision(workload.dtype.value)
    except ValueError:
        return None


def refusal(variant: Variant, workload: Workload) -> Optional[str]:
    """Why ``bench`` cannot time ``variant`` on this workload, or None."""
    if variant.structure not in BENCHABLE:
        return (f"bench has no torch CPU kernel for {variant.structure.value} (it times dense, thinned, csr and "
                "bsr<R>x<C>)")
    precision = effective_precision(variant, workload)
    allowed = BENCHABLE[variant.structure]
    if precision not in allowed:
        named = precision.value if precision is not None else workload.dtype.value
        return (f"bench times {variant.structure.value} in {', '.join(p.value for p in allowed)} only, not {named} "
                "(no torch CPU kernel, or no rate calibrate fits for it)")
    return None


def parse_bench_variants(text: str, workload: Workload) -> tuple[Variant, ...]:
    """``--format``'s list, every spec one bench can run; otherwise one :class:`OptionError`
    naming ``format`` and the spec (a block that does not divide a pruned layer included)."""
    from ..compress.compression import check_variant

    variants = parse_variants(text)
    for variant in variants:
        why = refusal(variant, workload)
        if why is not None:
            raise OptionError("format", f"{variant.spec!r}: {why}")
        if variant.structure is Structure.BSR and not block_layers(workload, variant):
            check_variant(workload, variant)       # no layer fits: the first that does not, in one line
    return variants


def block_layers(workload: Workload, variant: Variant) -> list[str]:
    """The weighted layers whose matrix is a whole number of the variant's blocks (``bsr``); the
    others are skipped with a note (the EIE set's NT_Wd has 8791 rows: no block height but 1 fits)."""
    br, bc = variant.block
    return [l.name for l in workload.layers if l.kind.has_weights
            and l.weight_matrix_shape[0] % br == 0 and l.weight_matrix_shape[1] % bc == 0]


def layers_alone(workload: Workload, names: Sequence[str]) -> Workload:
    """A workload of only the named layers, each reading its own input (what the benchmark mode
    times anyway: each layer alone): a variant that cannot encode some layer of ``workload`` (a
    block that does not divide it) is simulated on the layers it can."""
    keep = [l for l in workload.layers if l.name in set(names)]
    masks = {k: v for k, v in workload.weight_masks.items() if k in set(names)}
    return replace(workload, inputs={l.name: () for l in keep}, layers=tuple(keep), weight_masks=masks)


# --- operators ----------------------------------------------------------------------------------

@dataclass
class VariantOperator:
    """One layer in one variant, ready to call: what ran it, on how many threads, the weight bytes
    as the simulator stores them."""

    call: Callable[[], Any]
    backend: str
    threads: int
    weight_bytes: int
    kernel: str


def _weights(layer: Layer, seed: int) -> Any:
    """The layer's seeded weights as a torch tensor [rows, cols] (FC) or its conv shape."""
    from ..model.weights import synthetic_weights

    w = synthetic_weights(layer, seed)
    return w.reshape(layer.weight_matrix_shape) if layer.kind is LayerKind.FC else w


def _input(layer: Layer, batch: int, seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *layer.in_shape), generator=gen)


def dense_call(layer: Layer, w: Any, x: Any, precision: Precision) -> tuple[Callable[[], Any], str]:
    """A dense call of ``layer`` with weights ``w`` on input ``x`` in ``precision`` (fp32, bf16,
    int8: dynamic quantization), and the backend's name."""
    import torch
    import torch.nn.functional as F

    batch = x.shape[0]
    if precision is Precision.INT8:
        return int8_linear_call(w, x.reshape(batch, -1).contiguous()), VariantBackend.INT8.value
    backend = VariantBackend.DENSE.value
    if precision is Precision.BF16:
        w, x = w.to(torch.bfloat16), x.to(torch.bfloat16)
        backend = VariantBackend.BF16.value
    w = w.contiguous()
    if layer.kind is LayerKind.CONV:
        stride, padding, groups = layer.stride, layer.padding, layer.groups
        return (lambda: F.conv2d(x, w, stride=stride, padding=padding, groups=groups)), backend
    # F.linear at every batch, as nn.Linear runs it, and as calibrate times its GEMVs: at batch 1
    # torch.mv takes another kernel, the same speed in fp32 but 1.6-1.8x faster than F.linear's in
    # bf16 (4096 x 4096 and three other shapes on the development VM)
    xin = x.reshape(batch, -1).contiguous()
    return (lambda: F.linear(xin, w)), backend


def dynamic_int8(w: Any) -> Any:
    """The packed int8 weights torch's dynamic quantization makes of an ``nn.Linear`` holding ``w``."""
    import torch

    linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # quantized tensor creation is deprecated, still what torch runs
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear},
                                                           dtype=torch.qint8)
    return quantized[0]._packed_params._packed_params


def int8_linear_call(w: Any, x: Any) -> Callable[[], Any]:
    """``x @ w.T`` as torch's dynamic-quantized ``nn.Linear`` runs it: weights packed by
    :func:`dynamic_int8`, the input quantized on the fly to 7 bits (``reduce_range``, as the module
    passes it: without it, AVX2's saturating u8 x s8 pair sums put outputs of the tests' layer 10-14%
    of the largest output off on a core without VNNI, an AMD Zen 3)."""
    import torch

    packed = dynamic_int8(w)
    return lambda: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)


def bsr_tensor(layer: Layer, w: Any, indices: np.ndarray, pointers: np.ndarray, block: tuple[int, int]) -> Any:
    """``torch.sparse_bsr_tensor`` of the blocks (block-row ``pointers``, block-column ``indices``) of
    the weight matrix ``w`` [rows, cols]."""
    import torch

    rows, cols = layer.weight_matrix_shape
    br, bc = block
    blocks = w.reshape(rows // br, br, cols // bc, bc).permute(0, 2, 1, 3)
    row_of = np.repeat(np.arange(rows // br), np.diff(pointers))
    values = blocks[torch.from_numpy(row_of), torch.from_numpy(np.asarray(indices, dtype=np.int64))].contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "sparse BSR support is in beta"
        return torch.sparse_bsr_tensor(torch.from_numpy(np.asarray(pointers, dtype=np.int64)),
                                       torch.from_numpy(np.asarray(indices, dtype=np.int64)), values,
                                       size=(rows, cols))


def _bsr_call(layer: Layer, matrix: Any, x: Any) -> Callable[[], Any]:
    import torch

    batch = x.shape[0]
    xin = x.reshape(batch, -1)
    if batch == 1:
        vector = xin[0].contiguous()
        return lambda: torch.mv(matrix, vector)
    columns = xin.T.contiguous()        # weight-stationary: BSR x (inputs x batch), as CSR
    return lambda: matrix @ columns


def _kernel(layer: Layer, fmt: StorageFormat, batch: int) -> str:
    from ..memory.traffic import kernel_kind

    return kernel_kind(layer, fmt, batch).value


def variant_operator(workload: Workload, layer: Layer, variant: Variant, batch: int, seed: int, threads: int
                     ) -> Optional[VariantOperator]:
    """``layer`` (of ``workload``: for ``thinned``, of the thinned workload) in ``variant``, or None
    where the variant has no torch kernel for this kind of layer."""
    precision = effective_precision(variant, workload) or Precision.FP32
    if layer.kind is LayerKind.CONV and (precision is Precision.INT8 or variant.structure is Structure.BSR):
        return None
    if variant.structure is Structure.BSR and layer.name not in block_layers(workload, variant):
        return None
    encoded = encode_layer(workload, layer, replace(variant, structure=Structure.DENSE)
                           if variant.structure is Structure.THINNED else variant, seed)
    if variant.structure is Structure.CSR:
        op = layer_operator(layer, StorageFormat.CSR, batch, seed, threads, workload.path or "workload")
        return VariantOperator(op.call, op.backend.value, op.threads, encoded.total_bytes,
                               _kernel(layer, StorageFormat.CSR, batch))
    x = _input(layer, batch, seed)
    if variant.structure is Structure.BSR and encoded.format is StorageFormat.BSR:
        w = _weights(layer, seed)
        if layer.name in workload.weight_masks:     # a checkpoint's zeros inside the kept blocks
            import torch

            w = w * torch.from_numpy(np.asarray(workload.weight_masks[layer.name], dtype=np.float32)).reshape(w.shape)
        if encoded.indices is None or encoded.pointers is None:
            raise ValueError(f"{layer.name}: a BSR encoding stores block-column indices and block-row pointers")
        matrix = bsr_tensor(layer, w, encoded.indices, encoded.pointers, encoded.block)
        return VariantOperator(_bsr_call(layer, matrix, x), VariantBackend.BSR.value, threads, encoded.total_bytes,
                               _kernel(layer, StorageFormat.BSR, batch))
    # dense (the unpruned weights, as the simulator's dense encoding), and a BSR layer with nothing pruned
    call, backend = dense_call(layer, _weights(layer, seed), x, precision)
    return VariantOperator(call, backend, threads, encoded.total_bytes, _kernel(layer, StorageFormat.DENSE, batch))


def thinned_operator(workload: Workload, thinned: Workload, record: Any, layer: Layer, variant: Variant, batch: int,
                     seed: int, threads: int) -> Optional[VariantOperator]:
    """``layer`` of the thinned workload: the original layer's seeded weights, sliced to what
    thinning kept (so both sides see the same weights), in the variant's type."""
    precision = effective_precision(variant, workload) or Precision.FP32
    small = thinned.layer(layer.name)
    if small.kind is LayerKind.CONV and precision is Precision.INT8:
        return None
    full = _weights(workload.layer(layer.name), seed)
    cut = record.layers[layer.name].slice(full) if layer.name in record.layers else full
    w = cut.reshape(small.weight_shape) if small.kind is LayerKind.CONV else cut.reshape(small.weight_matrix_shape)
    encoded = encode_layer(thinned, small, replace(variant, structure=Structure.DENSE), seed)
    call, backend = dense_call(small, w.contiguous(), _input(small, batch, seed), precision)
    return VariantOperator(call, backend, threads, encoded.total_bytes, _kernel(small, StorageFormat.DENSE, batch))


# --- timing -------------------------------------------------------------------------------------

def time_rounds(layers: Sequence[Sequence[Callable[[], Any]]], rounds: int, per_round: int,
                progress: Callable[[int, int], None] = lambda _round, _layer: None
                ) -> tuple[list[list[list[float]]], list[list[float]]]:
    """Per layer, the seconds of every timed call of each of its calls, and each call's bytes of
    pages faulted in a timed call (the mean). ``rounds`` rounds over the whole run, each visiting
    every layer in turn (``progress(round, layer)`` first) and running each of the layer's calls
    untimed until it no longer speeds up (its warm-up, :func:`simulator.measure.bench.warm_up`:
    the caches hold its data again after the other calls') and then ``per_round`` times timed,
    back to back. A layer's rounds are thus as far apart as the run allows: a phase in which other
    processes slow the machine takes the rounds it overlaps, not all of a layer's."""
    times: list[list[list[float]]] = [[[] for _ in calls] for calls in layers]
    faulted = [[0.0 for _ in calls] for calls in layers]
    for round_index in range(rounds):
        for n, calls in enumerate(layers):
            progress(round_index, n)
            for i, call in enumerate(calls):
                seconds, faulted_bytes = time_calls_faulted(call, per_round, warmup=1)
                times[n][i] += seconds
                faulted[n][i] += faulted_bytes / rounds
    return times, faulted


def _timing(layer: Layer, variant: Variant, op: VariantOperator, batch: int, times: list[float],
            faulted_bytes: float) -> LayerTiming:
    per_frame = [t / batch for t in times]
    return LayerTiming(layer.name, layer.kind.value, op.kernel, variant.spec, batch, op.backend, op.threads,
                       float(statistics.median(per_frame)), _percentile(per_frame, 10), _percentile(per_frame, 90),
                       len(per_frame), op.weight_bytes, faulted_bytes)


def _operators(workload: Workload, layer: Layer, variants: Sequence[Variant], thinned: Any, batch: int, seed: int,
               threads: int, notes: list[str]) -> list[tuple[Variant, VariantOperator]]:
    out = []
    for variant in variants:
        if variant.structure is Structure.THINNED:
            op = thinned_operator(workload, thinned[0], thinned[1], layer, variant, batch, seed, threads)
        else:
            op = variant_operator(workload, layer, variant, batch, seed, threads)
        if op is None:
            rows, cols = layer.weight_matrix_shape
            why = (f"its {rows} x {cols} matrix is not a whole number of {variant.block[0]} x {variant.block[1]} "
                   "blocks" if layer.kind is LayerKind.FC else
                   f"torch runs {layer.kind.value} layers in {variant.spec} on no CPU kernel: dynamic quantization "
                   "and BSR products are FC only")
            notes.append(f"{variant.spec}: {layer.name} skipped ({why})")
            continue
        out.append((variant, op))
    return out


def bench_variants(workload: Workload, variants: Sequence[Variant], batch: int = 1, threads: Optional[int] = None,
                   repeat: int = 20, seed: int = 0, progress: Callable[[str], None] = lambda _: None,
                   rounds: int = DEFAULT_ROUNDS) -> BenchResult:
    """Every weighted layer in every variant, the variants of a layer interleaved in ``rounds``
    rounds over the whole run (:func:`time_rounds`) of ``repeat / rounds`` timed calls each (at
    least one); a :class:`BenchResult` whose ``variants`` hold the timings (``layers`` is empty)."""
    import torch

    threads = threads or os.cpu_count() or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    load = _load_average()
    notes: list[str] = []
    thinned = None
    if any(v.structure is Structure.THINNED for v in variants):
        from ..compress.thinning import thin_workload

        thinned = thin_workload(workload, seed)
        if not thinned[1].changed():
            notes.append(f"thinned: thinning removes nothing from {workload.name} (no layer's zeros free a whole "
                         "filter, row or column the graph lets go: the network's input and output keep their "
                         "shape), so thinned runs the dense layers")
    rounds = max(1, min(rounds, repeat))
    per_round = max(1, round(repeat / rounds))
    weighted = [l for l in workload.layers if l.kind.has_weights]
    timings: list[LayerTiming] = []
    try:
        ops = []
        for n, layer in enumerate(weighted):
            progress(f"bench {len(variants)} variants batch {batch}: building {layer.name} ({n + 1}/{len(weighted)})")
            ops.append(_operators(workload, layer, variants, thinned, batch, seed, threads, notes))

        def said(round_index: int, n: int) -> None:
            progress(f"bench {len(variants)} variants batch {batch}: round {round_index + 1}/{rounds}, "
                     f"{weighted[n].name} ({n + 1}/{len(weighted)})")

        times, faulted = time_rounds([[op.call for _, op in layer_ops] for layer_ops in ops], rounds, per_round, said)
        for layer, layer_ops, layer_times, layer_faulted in zip(weighted, ops, times, faulted):
            timings += [_timing(layer, v, op, batch, t, f) for (v, op), t, f in zip(layer_ops, layer_times,
                                                                                     layer_faulted)]
        del ops
    finally:
        torch.set_num_threads(before)
    progress("")
    return BenchResult(workload.name, workload.path, VARIANTS_FORMAT, batch, threads, rounds * per_round, seed,
                       *_run_facts(load), variants=timings, notes=notes)


def render_variants(result: BenchResult) -> str:
    """Per layer, each variant's median time per frame, its speed-up over the first variant, and
    its spread."""
    from ..base.units import format_seconds

    specs = list(dict.fromkeys(t.format for t in result.variants))
    lines = [f"{result.workload}: every variant measured on this CPU, batch {result.batch}, {result.threads} "
             f"thread(s); each layer alone, the variants interleaved in rounds, {result.repeat} timed calls each; "
             f"time per frame (load average at start {result.load_before})", "",
             f"{'layer':14s} {'variant':12s} {'kernel':7s} {'backend':18s} {'thr':>3s} {'median':>9s} "
             f"{'vs ' + specs[0] if specs else '':>10s} {'spread':>6s} {'weights':>10s}"]
    by_layer: dict[str, dict[str, LayerTiming]] = {}
    for t in result.variants:
        by_layer.setdefault(t.layer, {})[t.format] = t
    for layer, row in by_layer.items():
        base = row.get(specs[0])
        for i, spec in enumerate(s for s in specs if s in row):
            t = row[spec]
            speed = f"{base.median_s / t.median_s:9.2f}x" if base else f"{'-':>10s}"
            lines.append(f"{layer if i == 0 else '':14s} {spec:12s} {t.kernel:7s} {t.backend:18s} {t.threads:3d} "
                         f"{format_seconds(t.median_s):>9s} {speed} {100 * t.spread:5.0f}% "
                         f"{t.weight_bytes / 2**20:8.2f} MiB")
    faulted = [t for t in result.variants if t.faulted_bytes >= 1 << 20]
    if faulted:
        lines += ["", "pages faulted a call (a buffer mapped afresh at every call): " + ", ".join(
            f"{t.layer} {t.format} {t.faulted_bytes / 2**20:.1f} MiB" for t in faulted)]
    if result.notes:
        lines += [""] + [f"note: {n}" for n in result.notes]
    return "\n".join(lines)
