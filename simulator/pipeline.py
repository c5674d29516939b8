"""The whole flow of one run, on one page.

    profile + workload
      -> compression   (prune to the layer densities, encode: dense / CSR / CSC)
      -> traffic       (per-layer access traces at real addresses and indices)
      -> cache         (exact set-associative LRU hierarchy; state kept across layers
                        and across the ``repeat`` back-to-back inferences)
      -> engine        (SimPy: tiles through DRAM / cache / compute / link resources)
      -> results       (dataclasses; the report module prints them)

A profile with an engine of its own replaces compression, traffic and cache by that engine's
model of each layer, which feeds the same SimPy engine: an EIE-style sparse engine
(``accelerator.py``) or a scratchpad accelerator whose layers are tiled onto its buffers
(``tiling.py``).

On the cache path, a device with a memory capacity also gets its memory model
(``offload.py``): an inference whose weights do not fit streams them over the host link. With
``mode=train`` a run is one training step per variant (``training.py``): the forward pass is
timed by this same flow, backward and the update follow from it, and vDNN's offload policies
move feature maps over the link.
"""

from __future__ import annotations

import enum
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

from .base.console import expect
from .base.errors import OptionError
from .base.units import format_bytes
from .compress.compression import StorageFormat, compress_workload, is_pruned, unsupported_sparse_layer
from .engine.core import LayerWork, current_recording, layer_work, recording, simulate
from .engine.offload import OffloadPolicy, inference_memory
from .engine.results import RunResult, VariantResult
from .engine.training import Mode, Optimizer, train
from .hardware.profile import ConvAlgorithm, HardwareProfile
from .memory.cache import CacheGeometry, CacheHierarchy
from .memory.estimate import check_run_memory
from .memory.traffic import CoreView, LayerTraffic, workload_traffic
from .model.workload import Workload


class RepeatMode(str, enum.Enum):
    """What ``repeat`` repeats."""

    NETWORK = "network"   # whole inferences back to back; caches carry from layer to layer
    LAYER = "layer"       # each layer alone, repeated back to back, cold at its start (the EIE
                          # paper's benchmark mode: the same layer over many frames)


@dataclass(frozen=True)
class RunOptions:
    """How to run: batch, repeats, which storage formats, pruning overrides."""

    batch: int = 1
    repeat: int = 1
    formats: Sequence[StorageFormat] = (StorageFormat.DENSE, StorageFormat.CSR)
    density: Optional[float] = None      # one density for every weighted layer (None: the workload's)
    seed: int = 0
    threads: Optional[int] = None        # cores to use (None: all of the profile's)
    host_copies: bool = True             # copy input / output over the host link (discrete devices)
    repeat_mode: RepeatMode = RepeatMode.NETWORK
    mode: Mode = Mode.INFER              # train: one training step per variant (dense weights)
    offload: OffloadPolicy = OffloadPolicy.BASE              # train: vDNN policy
    conv_algorithm: ConvAlgorithm = ConvAlgorithm.PERFORMANCE_OPTIMAL   # train: for a static policy
    optimizer: Optimizer = Optimizer.MOMENTUM                # train: the weight update


def cache_hierarchy(profile: HardwareProfile, cores: int) -> CacheHierarchy:
    """A cold cache hierarchy built from the profile's cache levels."""
    levels = [CacheGeometry.of(c) for c in profile.caches]
    return CacheHierarchy(levels, cores=cores)


def host_copies(profile: HardwareProfile, workload: Workload, options: RunOptions) -> Optional[tuple[int, int]]:
    """(input bytes, output bytes) a discrete device copies over its host link, or None."""
    if not (options.host_copies and profile.link is not None):
        return None
    return workload.layers[0].in_bytes(options.batch), workload.layers[-1].out_bytes(options.batch)


def variant_name(fmt: StorageFormat) -> str:
    """``dense`` for the unpruned network, ``pruned`` for a sparse format."""
    return "pruned" if fmt.is_sparse else "dense"


def _traffic(profile: HardwareProfile, workload: Workload, fmt: StorageFormat, options: RunOptions,
             progress: Callable[[str], None]) -> tuple[list[LayerTraffic], CoreView]:
    if options.density is not None:
        workload = workload.with_density(options.density)
    progress(f"{variant_name(fmt)}: compressing")
    encodings = compress_workload(workload, fmt, options.seed)
    view = CoreView.of(profile, options.threads)
    progress(f"{variant_name(fmt)}: building traffic")
    return workload_traffic(workload, encodings, options.batch, view), view


def variant_traffic(profile: HardwareProfile, workload: Workload, fmt: StorageFormat,
                    options: RunOptions) -> list[LayerTraffic]:
    """The access traces one variant's inference sends through the caches (``run --dump-trace``)."""
    if profile.sparse_engine is not None or profile.tiled_engine is not None:
        raise OptionError("dump_trace", f"{profile.name} has no caches: its engine moves whole buffers, so there "
                          "is no address trace to dump")
    return _traffic(profile, workload, fmt, options, lambda _: None)[0]


def benchmark_works(profile: HardwareProfile, workload: Workload, fmt: StorageFormat, options: RunOptions,
                    progress: Callable[[str], None] = lambda _: None) -> list[LayerWork]:
    """Each layer alone, its trace run ``repeat`` times from cold caches; the last run's tile work.

    The result depends on the profile's cache geometry and cores only, not on its rates, so
    calibration can re-time it under other rates with :func:`simulator.engine.core.simulate` alone.
    """
    expect(progress, 2 + len(workload.layers))
    traffic, view = _traffic(profile, workload, fmt, options, progress)
    works = []
    for t in traffic:
        progress(f"{variant_name(fmt)}: cache model, {t.layer.name}")
        hierarchy = cache_hierarchy(profile, view.cores)    # cold at the start of each layer
        for _ in range(options.repeat):
            outcome = hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints)
        works.append(layer_work(t, outcome, profile))
    return works


def simulate_variant(profile: HardwareProfile, workload: Workload, fmt: StorageFormat,
                     options: RunOptions, progress: Callable[[str], None] = lambda _: None) -> VariantResult:
    """Compress, trace, run the caches ``repeat`` times, and time the last run."""
    if profile.sparse_engine is not None:
        return _sparse_engine_variant(profile, workload, options, progress)
    if profile.tiled_engine is not None:
        return _tiled_engine_variant(profile, workload, options, progress)
    if options.repeat_mode is RepeatMode.LAYER:
        layers = []
        for work in benchmark_works(profile, workload, fmt, options, progress):
            (result,) = simulate(profile, [work])
            start = layers[-1].start_s + layers[-1].time_s if layers else 0.0
            layers.append(replace(result, start_s=start))
    else:
        expect(progress, 2 + options.repeat + 1)
        traffic, view = _traffic(profile, workload, fmt, options, progress)
        hierarchy = cache_hierarchy(profile, view.cores)
        outcomes = []
        for repetition in range(options.repeat):
            progress(f"{variant_name(fmt)}: cache model, inference {repetition + 1}/{options.repeat}")
            outcomes = [hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints) for t in traffic]
        works = [layer_work(t, o, profile) for t, o in zip(traffic, outcomes)]
        progress(f"{variant_name(fmt)}: discrete-event engine")
        layers = simulate(profile, works, host_copies(profile, workload, options))
        total = max((l.start_s + l.time_s for l in layers), default=0.0)
        variant = VariantResult(variant_name(fmt), fmt.value, total, layers,
                                dense_layers=_dense_layers(workload, fmt, options))
        # device memory; weights that do not fit stream over the link
        return inference_memory(profile, workload, variant, options.batch, options.host_copies)
    total = max((l.start_s + l.time_s for l in layers), default=0.0)
    return VariantResult(variant_name(fmt), fmt.value, total, layers, dense_layers=_dense_layers(workload, fmt, options))


def _dense_layers(workload: Workload, fmt: StorageFormat, options: RunOptions) -> list[str]:
    """The weighted layers a sparse variant stores dense, nothing of them being pruned."""
    if not fmt.is_sparse:
        return []
    if options.density is not None:
        workload = workload.with_density(options.density)
    return [l.name for l in workload.layers if l.kind.has_weights and not is_pruned(workload, l)]


def check_formats(profile: HardwareProfile, workload: Workload, options: RunOptions) -> None:
    """Refuse, before any simulation, a storage format the cache path cannot run on this
    workload (``--format csc`` with a pruned convolution)."""
    if profile.sparse_engine is not None or profile.tiled_engine is not None or options.mode is Mode.TRAIN:
        return      # these run their own formats
    if options.density is not None:
        workload = workload.with_density(options.density)
    for fmt in options.formats:
        layer = unsupported_sparse_layer(workload, fmt)
        if layer is not None:
            raise OptionError("format", f"{fmt.value} is modelled for FC layers only, and "
                              f"{workload.name}'s {layer.name} is a pruned {layer.kind.value} layer; use {{format}} "
                              "csr (CSR covers convolutions)")


def _sparse_engine_variant(profile: HardwareProfile, workload: Workload, options: RunOptions,
                           progress: Callable[[str], None]) -> VariantResult:
    """An EIE-style engine: weights resident in its SRAM, each layer timed by the PE-array model."""
    from .engine.accelerator import column_batches, eie_works

    if options.batch != 1:
        raise OptionError("batch", f"{profile.name} multiplies one activation vector at a "
                          "time; use {batch} 1")
    if options.density is not None:
        workload = workload.with_density(options.density)
    expect(progress, 1)
    progress("sparse engine: encoding and PE-array model")
    pairs = eie_works(profile, workload, options.seed)
    layers = simulate(profile, [work for work, _ in pairs])
    total = max((l.start_s + l.time_s for l in layers), default=0.0)
    notes = []
    for _, timing in pairs:     # layers too big for the PEs' SRAM: say how they were split
        streams = column_batches(profile, profile.sparse_engine, timing, workload.path)
        if streams.batches > 1:
            what = " and ".join(w for w, b in (("stored entries", streams.streamed_entry_bytes),
                                               ("column pointers", streams.streamed_pointer_bytes)) if b > 0)
            notes.append(f"{timing.layer}: its {what} do not fit the PEs' SRAM: {streams.batches} column batches, "
                         f"{format_bytes(streams.dram_bytes)} reloaded from DRAM per inference")
    return VariantResult("pruned", "eie", total, layers, notes=notes)


def _tiled_engine_variant(profile: HardwareProfile, workload: Workload, options: RunOptions,
                          progress: Callable[[str], None]) -> VariantResult:
    """A scratchpad accelerator (an FPGA design): each layer tiled onto its buffers by the rule in
    :mod:`simulator.engine.tiling` and timed tile by tile, DMA overlapping compute. Its buffers keep
    nothing from one layer (or inference) to the next, so ``repeat`` changes nothing."""
    from .engine.tiling import tiled_works

    if options.density is not None:
        raise OptionError("density", f"{profile.name} computes dense weights (its array does "
                          "not skip zeros), so pruning would not change its time")
    expect(progress, 1)
    progress("tiled engine: tilings and tile work")
    works = [work for work, _ in tiled_works(profile, workload, options.batch)]
    if options.repeat_mode is RepeatMode.LAYER:
        layers = []
        for work in works:
            (result,) = simulate(profile, [work])
            start = layers[-1].start_s + layers[-1].time_s if layers else 0.0
            layers.append(replace(result, start_s=start))
    else:
        copies = None
        if options.host_copies and profile.link is not None:
            copies = (workload.layers[0].in_bytes(options.batch), workload.layers[-1].out_bytes(options.batch))
        layers = simulate(profile, works, copies)
    total = max((l.start_s + l.time_s for l in layers), default=0.0)
    return VariantResult("dense", StorageFormat.DENSE.value, total, layers)


def _variants_side_by_side(profile: HardwareProfile, workload: Workload, formats: Sequence[StorageFormat],
                           options: RunOptions, progress: Callable[[str], None]) -> list[VariantResult]:
    """Every variant in its own thread: they are independent, and their heavy stages (traffic
    kernels, cache model) release the GIL. A timeline being recorded gets each variant's engine
    calls in variant order, as if they had run one after the other."""
    outer = current_recording()
    stop = threading.Event()

    def steps(message: str) -> None:
        if stop.is_set():              # Ctrl-C in the main thread: end this variant at its next step
            raise _Stopped
        progress(message)

    steps.expect = lambda n: expect(progress, n)      # type: ignore[attr-defined]

    def one(fmt: StorageFormat) -> tuple[VariantResult, list]:
        if outer is None:
            return simulate_variant(profile, workload, fmt, options, steps), []
        with recording() as calls:
            return simulate_variant(profile, workload, fmt, options, steps), calls

    pool = ThreadPoolExecutor(max_workers=min(len(formats), os.cpu_count() or 1))
    try:
        done = list(pool.map(one, formats))
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if outer is not None:
        for _, calls in done:
            outer.extend(calls)
    return [variant for variant, _ in done]


class _Stopped(Exception):
    """Raised in a variant's thread to end it after the main thread was interrupted."""


def run(profile: HardwareProfile, workload: Workload, options: RunOptions = RunOptions(),
        progress: Callable[[str], None] = lambda _: None) -> RunResult:
    """Simulate every requested variant of ``workload`` on ``profile``."""
    cache_path = profile.sparse_engine is None and profile.tiled_engine is None
    check_run_memory(profile, workload, options.formats if options.mode is Mode.INFER else (StorageFormat.DENSE,),
                     options.batch, options.density, traces=cache_path)     # before anything is allocated
    if options.mode is Mode.TRAIN:
        return _train(profile, workload, options, progress)
    check_formats(profile, workload, options)
    formats = options.formats
    if profile.sparse_engine is not None:
        if any(f is StorageFormat.DENSE for f in formats) and len(formats) == 1:
            raise OptionError("format", f"{profile.name} runs compressed weights only")
        formats = formats[-1:]    # one variant: its own compressed format
    if profile.tiled_engine is not None:
        if StorageFormat.DENSE not in formats:
            raise OptionError("format", f"{profile.name} computes dense weights only (its array "
                              "does not skip zeros); use {format} dense")
        formats = (StorageFormat.DENSE,)
    if len(formats) > 1 and (os.cpu_count() or 1) > 1:
        variants = _variants_side_by_side(profile, workload, formats, options, progress)
    else:
        variants = [simulate_variant(profile, workload, fmt, options, progress) for fmt in formats]
    return RunResult(profile=profile.name, profile_path=profile.path, workload=workload.name,
                     workload_path=workload.path, batch=options.batch, repeat=options.repeat,
                     seed=options.seed, variants=variants, repeat_mode=options.repeat_mode.value,
                     notes=[note for v in variants for note in v.notes],
                     static_power_w=_static_power_w(profile))


def _static_power_w(profile: HardwareProfile) -> Optional[float]:
    return profile.energy.static_power_w if profile.energy is not None else None


def _train(profile: HardwareProfile, workload: Workload, options: RunOptions,
           progress: Callable[[str], None]) -> RunResult:
    """One training step per variant: base(p) and the requested offload policy (dense weights)."""
    if any(f is not StorageFormat.DENSE for f in options.formats) and len(options.formats) == 1:
        raise OptionError("format", "training updates dense weights; use {format} dense "
                          "or leave it out")
    if options.repeat != 1 or options.repeat_mode is not RepeatMode.NETWORK:
        raise OptionError("repeat", "applies to inference; a training run is one step")
    if options.density is not None:
        raise OptionError("density", "training updates dense weights; leave it out")

    def forward_at(batch: int) -> VariantResult:
        """The forward pass alone at ``batch``: the pipeline's own per-layer simulation."""
        forward = replace(options, batch=batch, repeat=1, formats=(StorageFormat.DENSE,), host_copies=False,
                          mode=Mode.INFER)
        traffic, view = _traffic(profile, workload, StorageFormat.DENSE, forward, progress)
        hierarchy = cache_hierarchy(profile, view.cores)
        progress(f"train: forward at batch {batch}, cache model")
        works = [layer_work(t, hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints), profile)
                 for t in traffic]
        layers = simulate(profile, works)
        return VariantResult("dense", StorageFormat.DENSE.value, max((l.start_s + l.time_s for l in layers),
                                                                     default=0.0), layers)

    variants = train(profile, workload, options.batch, options.offload, options.conv_algorithm, forward_at,
                     options.host_copies, progress, options.optimizer)
    return RunResult(profile=profile.name, profile_path=profile.path, workload=workload.name,
                     workload_path=workload.path, batch=options.batch, repeat=1, seed=options.seed,
                     variants=variants, repeat_mode=options.repeat_mode.value, mode=Mode.TRAIN.value,
                     static_power_w=_static_power_w(profile))
