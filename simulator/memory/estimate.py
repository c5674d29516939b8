"""How much memory a run will need, from shapes, batch and formats alone: checked before any
weight is drawn or any trace built (:func:`check_run_memory`).

The figures are estimates of the peak, meant to tell a run that fits from one that cannot
(``--batch 100000``, a 100,000 x 100,000 FC layer), not to account for every byte:

* weights: every weighted layer's weights drawn as float32, its mask and its encoding
  (:data:`WEIGHT_COPIES` copies of 4 B per weight);
* access traces: one access per line of weights streamed (twice: a tile's first touch and
  its reuse), one per non-zero gathered by a sparse kernel, and per sample one per line of
  input read and output written (twice, for the read-modify-write of partial sums); a sparse
  convolution gathers again for each sample (:data:`SPARSE_CONV_GATHERS_PER_SAMPLE` of its
  non-zeros, measured on AlexNet's conv2-conv5);
* :data:`BYTES_PER_ACCESS` per access for the trace arrays (address, write flag, core, stream),
  the cache model's per-access state and the temporaries of building them.

Variants run side by side, so their traces add up.
"""

from __future__ import annotations

from typing import Sequence

from ..base.budget import check_memory
from ..compress.compression import StorageFormat
from ..compress.variants import Variant
from ..hardware.profile import HardwareProfile
from ..model.workload import LayerKind, Workload

#: float32 weights drawn, the mask, the encoded arrays
WEIGHT_COPIES = 3
#: measured: AlexNet on tegra, dense + CSR, batch 64 -> 128 grew the peak by 440 MB for about
#: 21 million more accesses (21 B each); rounded up
BYTES_PER_ACCESS = 24
#: measured: AlexNet conv2-conv5 in CSR gather 0.16-0.32 x their non-zeros more per extra sample
SPARSE_CONV_GATHERS_PER_SAMPLE = 0.3


def weight_memory_bytes(workload: Workload) -> float:
    """Bytes the weights of every weighted layer take while drawn, masked and encoded."""
    return float(WEIGHT_COPIES * 4 * sum(l.weight_count for l in workload.layers if l.kind.has_weights))


def trace_accesses(workload: Workload, fmt: StorageFormat | Variant, batch: int, line_bytes: int,
                   density: float | None = None) -> float:
    """Estimated line accesses of one variant's traces (see the module docstring)."""
    total = 0.0
    for layer in workload.layers:
        per_sample = 2 * (layer.in_bytes(1) + layer.out_bytes(1)) / line_bytes
        fixed = 0.0
        if layer.kind.has_weights:
            fixed = 2 * layer.weight_bytes() / line_bytes
            if fmt.is_sparse:
                nonzeros = layer.weight_count * (density if density is not None else layer.density)
                fixed += nonzeros
                if layer.kind is LayerKind.CONV:
                    per_sample += SPARSE_CONV_GATHERS_PER_SAMPLE * nonzeros
        total += fixed + (batch - 1) * per_sample + per_sample
    return total


def run_memory_bytes(profile: HardwareProfile, workload: Workload, formats: Sequence[StorageFormat | Variant],
                     batch: int, density: float | None = None, traces: bool = True) -> float:
    """Estimated peak bytes of a run: weights, plus every variant's traces on the cache path."""
    need = weight_memory_bytes(workload)
    if traces:
        line = min((c.line_bytes for c in profile.caches), default=64)   # one access per line
        need += BYTES_PER_ACCESS * sum(trace_accesses(workload, f, batch, line, density) for f in formats)
    return need


def check_weight_memory(workload: Workload) -> None:
    """Refuse a workload whose weights alone exceed the memory limit, before any is drawn."""
    _check_weights(workload, weight_memory_bytes(workload))


def check_run_memory(profile: HardwareProfile, workload: Workload, formats: Sequence[StorageFormat | Variant],
                     batch: int, density: float | None = None, traces: bool = True) -> None:
    """Refuse, before anything is allocated, a run whose estimate exceeds the memory limit
    (:func:`simulator.base.budget.check_memory`); the message names the biggest contributor."""
    weights = weight_memory_bytes(workload)
    need = run_memory_bytes(profile, workload, formats, batch, density, traces)
    if need - weights > weights and batch > 1:
        check_memory(need, f"batch {batch} of {workload.name} ({len(formats)} variant"
                     f"{'s' * (len(formats) != 1)}, access traces)", "command line", "--batch",
                     "lower --batch, or raise --max-memory")
    else:
        _check_weights(workload, need)


def _check_weights(workload: Workload, need: float) -> None:
    """The refusal of a workload too big for memory, naming its largest layer."""
    weighted = [(i, l) for i, l in enumerate(workload.layers) if l.kind.has_weights]
    if not weighted:
        check_memory(need, workload.name, workload.path, "")
        return
    index, biggest = max(weighted, key=lambda item: item[1].weight_count)
    count = sum(l.weight_count for _, l in weighted)
    check_memory(need, f"{workload.name}: {count:,} weights (largest {biggest.name}, "
                 f"{biggest.weight_count:,})", workload.path, f"layers[{index}]")
