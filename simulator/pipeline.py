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
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

from .base.background import in_background
from .base.console import expect
from .base.errors import OptionError
from .base.units import format_bytes
from .base.workers import results
from .compress.compression import EncodedWeights, StorageFormat, check_variant, is_pruned, unsupported_sparse_layer
from .compress.precision import PrecisionPlan, encode, plan_precision, structure_available, variant_workload
from .compress.variants import (
    AUTO_CANDIDATES,
    DEFAULT_GROUP_SIZE,
    Structure,
    Variant,
    as_variant,
    parse_variant,
    result_name,
    storage_format,
)
from .engine.core import LayerWork, current_recording, layer_work, recording, simulate
from .engine.offload import OffloadPolicy, inference_memory
from .engine.results import LayerResult, RunResult, VariantResult
from .engine.training import Mode, Optimizer, train
from .hardware.profile import ConvAlgorithm, HardwareProfile
from .memory.cache import CacheGeometry, CacheHierarchy
from .memory.estimate import check_run_memory
from .memory.kernelshape import with_precision
from .memory.traffic import AddressSpace, CoreView, LayerTraffic, workload_layer_traffic
from .model.workload import Workload


class RepeatMode(str, enum.Enum):
    """What ``repeat`` repeats."""

    NETWORK = "network"   # whole inferences back to back; caches carry from layer to layer
    LAYER = "layer"       # each layer alone, repeated back to back, cold at its start (`bench`'s
                          # mode: the same layer over many frames)


#: A variant as :class:`RunOptions` takes it: a :class:`Variant`, or a plain storage format.
VariantLike = Union[Variant, StorageFormat]


@dataclass(frozen=True)
class RunOptions:
    """How to run: batch, repeats, which variants (``STRUCTURE[@TYPE]``, see
    :mod:`simulator.compress.variants`; a :class:`StorageFormat` is that structure in the workload's
    type), pruning overrides."""

    batch: int = 1
    repeat: int = 1
    formats: Sequence[VariantLike] = (StorageFormat.DENSE, StorageFormat.CSR)
    density: Optional[float] = None      # one density for every weighted layer (None: the workload's)
    seed: int = 0
    threads: Optional[int] = None        # cores to use (None: all of the profile's)
    host_copies: bool = True             # copy input / output over the host link (discrete devices)
    repeat_mode: RepeatMode = RepeatMode.NETWORK
    mode: Mode = Mode.INFER              # train: one training step per variant (dense weights)
    offload: OffloadPolicy = OffloadPolicy.BASE              # train: vDNN policy
    conv_algorithm: ConvAlgorithm = ConvAlgorithm.PERFORMANCE_OPTIMAL   # train: for a static policy
    optimizer: Optimizer = Optimizer.MOMENTUM                # train: the weight update

    @property
    def variants(self) -> tuple[Variant, ...]:
        """``formats`` as :class:`Variant` objects, in order."""
        return tuple(as_variant(f) for f in self.formats)


def cache_hierarchy(profile: HardwareProfile, cores: int) -> CacheHierarchy:
    """A cold cache hierarchy built from the profile's cache levels."""
    levels = [CacheGeometry.of(c) for c in profile.caches]
    return CacheHierarchy(levels, cores=cores)


def host_copies(profile: HardwareProfile, workload: Workload, options: RunOptions) -> Optional[tuple[int, int]]:
    """(input bytes, output bytes) a discrete device copies over its host link, or None."""
    if not (options.host_copies and profile.link is not None):
        return None
    return workload.layers[0].in_bytes(options.batch), workload.layers[-1].out_bytes(options.batch)


def variant_name(fmt: VariantLike, options: Optional[RunOptions] = None) -> str:
    """The name of a variant's result: ``dense`` / ``pruned`` in the lists ``run`` had before
    variants (``dense,csr``), else the spec (see :func:`simulator.compress.variants.result_name`)."""
    variant = as_variant(fmt)
    variants = options.variants if options is not None and variant in options.variants else (variant,)
    return result_name(variant, variants)


def prepared_workload(profile: HardwareProfile, workload: Workload, variant: Variant, options: RunOptions,
                      ) -> tuple[Workload, PrecisionPlan, dict[str, EncodedWeights]]:
    """A variant's workload (at the run's density, thinned where the structure says so, its
    activations in the variant's type), its precision plan and its encoded weights."""
    if options.density is not None:
        workload = workload.with_density(options.density)
    plan = plan_precision(profile, variant, workload.dtype)
    if variant.structure is Structure.THINNED:
        try:
            from .compress.thinning import thin_workload
        except ImportError:
            raise OptionError("format", f"{variant.spec}: thinning is not modelled yet (use dense, csr or csc)"
                              ) from None
        workload, _ = thin_workload(workload, options.seed)
        variant = replace(variant, structure=Structure.DENSE)
    workload = variant_workload(workload, plan)
    return workload, plan, encode(workload, variant, plan, options.seed)


def _precise(traffic: LayerTraffic, variant: Variant, plan: PrecisionPlan, batch: int) -> LayerTraffic:
    """A layer's traffic with its kernel shape in the variant's arithmetic type and conversions."""
    if variant.precision is None or traffic.shape is None:
        return traffic
    return replace(traffic, shape=with_precision(traffic.shape, traffic.layer, batch, plan.arithmetic,
                                                 plan.convert_weights, plan.convert_activations))


def _traffic_layers(profile: HardwareProfile, workload: Workload, fmt: VariantLike, options: RunOptions,
                    progress: Callable[[str], None]) -> tuple[Iterator[LayerTraffic], CoreView]:
    """A variant compressed, and its layers' traces in execution order, each built when the
    iterator gets to it (the same traces as :func:`_traffic`'s)."""
    variant = as_variant(fmt)
    name = variant_name(variant, options)
    progress(f"{name}: compressing")
    workload, plan, encodings = prepared_workload(profile, workload, variant, options)
    view = CoreView.of(profile, options.threads)

    def layers() -> Iterator[LayerTraffic]:
        progress(f"{name}: building traffic")
        space = AddressSpace()
        for layer in workload.layers:
            one = workload_layer_traffic(workload, layer, encodings.get(layer.name), options.batch, space, view)
            yield _precise(one, variant, plan, options.batch)

    return layers(), view


def _traffic(profile: HardwareProfile, workload: Workload, fmt: VariantLike, options: RunOptions,
             progress: Callable[[str], None]) -> tuple[list[LayerTraffic], CoreView]:
    layers, view = _traffic_layers(profile, workload, fmt, options, progress)
    return list(layers), view


def variant_traffic(profile: HardwareProfile, workload: Workload, fmt: VariantLike,
                    options: RunOptions) -> list[LayerTraffic]:
    """The access traces one variant's inference sends through the caches (``run --dump-trace``)."""
    if profile.sparse_engine is not None or profile.tiled_engine is not None:
        raise OptionError("dump_trace", f"{profile.name} has no caches: its engine moves whole buffers, so there "
                          "is no address trace to dump")
    return _traffic(profile, workload, fmt, options, lambda _: None)[0]


def _groups(names: Sequence[str], options: RunOptions,
            group_of: Optional[Callable[[str], str]]) -> dict[str, list[int]]:
    """The layers (by index) that run together from cold caches, by group: ``group_of``'s, or
    each layer alone (:attr:`RepeatMode.LAYER`) or all of them (:attr:`RepeatMode.NETWORK`)."""
    if group_of is None:
        group_of = (lambda _: "the network") if options.repeat_mode is RepeatMode.NETWORK else (lambda layer: layer)
    groups: dict[str, list[int]] = {}
    for index, layer in enumerate(names):
        groups.setdefault(group_of(layer), []).append(index)
    return groups


def _layer_works(profile: HardwareProfile, traffic: Iterable[LayerTraffic], view: CoreView, options: RunOptions,
                 name: str, progress: Callable[[str], None],
                 group_of: Optional[Callable[[str], str]] = None) -> list[LayerWork]:
    """Each group's layers (:func:`_groups`) in order from cold caches, the whole group ``repeat``
    times; the last run's tile work, in the layers' order. A layer meets what its group's other
    layers left in the caches between two of its calls, and nothing of another group's."""
    traffic = list(traffic)
    works: list[Optional[LayerWork]] = [None] * len(traffic)
    for group, members in _groups([t.layer.name for t in traffic], options, group_of).items():
        progress(f"{name}: cache model, {group}")
        hierarchy = cache_hierarchy(profile, view.cores)    # cold at the start of each group
        for _ in range(options.repeat - 1):
            for t in (traffic[i] for i in members):
                hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints)
        for i in members:
            t = traffic[i]
            works[i] = layer_work(t, hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints), profile)
    return [w for w in works if w is not None]


def benchmark_works(profile: HardwareProfile, workload: Workload, fmt: VariantLike, options: RunOptions,
                    progress: Callable[[str], None] = lambda _: None,
                    group_of: Optional[Callable[[str], str]] = None) -> list[LayerWork]:
    """The tile work of the last of ``repeat`` runs: each layer alone from cold caches, or the
    whole workload in order, as ``options.repeat_mode`` says, or the layers of each group that
    ``group_of`` (layer name -> group name) gives, in order (:func:`_layer_works`: a benchmark
    of several independent networks, each run sample after sample).

    The result depends on the profile's cache geometry and cores only, not on its rates, so
    calibration can re-time it under other rates with :func:`simulator.engine.core.simulate` alone.
    """
    expect(progress, 2 + len(_groups([l.name for l in workload.layers], options, group_of)))
    traffic, view = _traffic(profile, workload, fmt, options, progress)
    return _layer_works(profile, traffic, view, options, variant_name(fmt, options), progress, group_of)


def _timed(profile: HardwareProfile, workload: Workload, traffic: Iterable[LayerTraffic], view: CoreView,
           options: RunOptions, result: VariantResult, progress: Callable[[str], None]) -> VariantResult:
    """Run ``traffic`` through the caches and the engine as ``options`` say; ``result`` named and
    filled in with the layers and total.

    The last inference streams: the cache model runs each layer's trace in a thread of its own as
    soon as the trace is there, and hands the layer's work on to the engine, which times it while
    the caches run the next layer (the compiled stages release the GIL, so on two cores their
    times overlap rather than add up). The order of everything is that of one stage after the
    other, so the results are too."""
    name = result.name
    if options.repeat_mode is RepeatMode.LAYER:
        layers: list[LayerResult] = []
        for work in _layer_works(profile, traffic, view, options, name, progress):
            (timed,) = simulate(profile, [work])
            start = layers[-1].start_s + layers[-1].time_s if layers else 0.0
            layers.append(replace(timed, start_s=start))
        return replace(result, total_s=max((l.start_s + l.time_s for l in layers), default=0.0), layers=layers)
    expect(progress, options.repeat + 1)
    hierarchy = cache_hierarchy(profile, view.cores)
    if options.repeat > 1:
        traffic = list(traffic)
    for repetition in range(options.repeat - 1):    # the inferences before the timed one warm the caches
        progress(f"{name}: cache model, inference {repetition + 1}/{options.repeat}")
        for t in traffic:
            hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints)
    progress(f"{name}: cache model, inference {options.repeat}/{options.repeat}")
    works = in_background((layer_work(t, hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints), profile)
                           for t in traffic), f"{name}: cache model")
    progress(f"{name}: discrete-event engine")
    layers = simulate(profile, works, host_copies(profile, workload, options))
    result = replace(result, total_s=max((l.start_s + l.time_s for l in layers), default=0.0), layers=layers)
    # device memory; weights that do not fit stream over the link
    return inference_memory(profile, workload, result, options.batch, options.host_copies)


def simulate_variant(profile: HardwareProfile, workload: Workload, fmt: VariantLike,
                     options: RunOptions, progress: Callable[[str], None] = lambda _: None) -> VariantResult:
    """Compress, trace, run the caches ``repeat`` times, and time the last run."""
    variant = as_variant(fmt)
    if profile.sparse_engine is not None:
        return _sparse_engine_variant(profile, workload, options, progress)
    if profile.tiled_engine is not None:
        return _tiled_engine_variant(profile, workload, options, progress)
    expect(progress, 2)
    traffic, view = _traffic_layers(profile, workload, variant, options, progress)
    result = VariantResult(variant_name(variant, options), variant.spec, 0.0,
                           dense_layers=_dense_layers(workload, variant, options))
    # the traces are built in a thread of their own, ahead of the cache model (see _timed)
    return _timed(profile, workload, in_background(traffic, f"{result.name}: traffic"), view, options, result,
                  progress)


def _dense_layers(workload: Workload, variant: Variant, options: RunOptions) -> list[str]:
    """The weighted layers a sparse variant stores dense, nothing of them being pruned."""
    if not variant.is_sparse or variant.structure is Structure.NM:
        return []
    if options.density is not None:
        workload = workload.with_density(options.density)
    return [l.name for l in workload.layers if l.kind.has_weights and not is_pruned(workload, l)]


def refusal(profile: HardwareProfile, workload: Workload, variant: Variant) -> Optional[OptionError]:
    """Why the cache path cannot run ``variant`` of ``workload`` (already at the run's density) on
    ``profile``, as the one-line error to raise, or None: a type the profile cannot run, a
    structure not encoded yet, CSC with a pruned convolution, a block that does not divide a layer."""
    try:
        plan_precision(profile, variant, workload.dtype)
    except OptionError as err:
        return err
    if variant.structure is Structure.AUTO:
        if variant.precision is not None:
            return OptionError("format", f"{variant.spec}: auto chooses among the variants given with it; give "
                               "the typed variants it should choose from (auto,dense,dense@int8)")
        return None
    if not structure_available(variant):
        return OptionError("format", f"{variant.spec}: {variant.structure.value} storage is not modelled yet "
                           "(dense, csr and csc are)")
    fmt = storage_format(variant)
    layer = unsupported_sparse_layer(workload, fmt) if fmt is not None else None
    if layer is not None:
        return OptionError("format", f"{variant.spec} is modelled for FC layers only, and "
                           f"{workload.name}'s {layer.name} is a pruned {layer.kind.value} layer; use {{format}} "
                           "csr (CSR covers convolutions)")
    try:
        check_variant(workload, variant)     # the structure's own limits: a block that does not divide, N > M
    except OptionError as err:
        return err
    return None


def check_formats(profile: HardwareProfile, workload: Workload, options: RunOptions) -> None:
    """Refuse, before any simulation, a variant the cache path cannot run on this workload (a type
    the profile has no peak for, ``--format csc`` with a pruned convolution)."""
    if profile.sparse_engine is not None or profile.tiled_engine is not None or options.mode is Mode.TRAIN:
        return      # these run their own formats
    if options.density is not None:
        workload = workload.with_density(options.density)
    for variant in options.variants:
        err = refusal(profile, workload, variant)
        if err is not None:
            raise err


def auto_candidates(profile: HardwareProfile, workload: Workload, options: RunOptions) -> tuple[Variant, ...]:
    """What ``auto`` chooses from: the other variants of the list, or, when it stands alone, every
    variant of :data:`~simulator.compress.variants.AUTO_CANDIDATES` the profile runs on this workload."""
    others = tuple(v for v in options.variants if v.structure is not Structure.AUTO)
    if others:
        return others
    if options.density is not None:
        workload = workload.with_density(options.density)
    group = next((v.group_size for v in options.variants), DEFAULT_GROUP_SIZE)
    candidates = (parse_variant(spec, group) for spec in AUTO_CANDIDATES)
    return tuple(v for v in candidates if refusal(profile, workload, v) is None)


def _auto_choices(workload: Workload, candidates: Sequence[Variant], results: Sequence[VariantResult]
                  ) -> dict[str, Variant]:
    """Per layer, the candidate whose whole-network run gave it the least time; a layer without
    weights runs in the variant of the layer it reads (its activations' type), the first one in
    the fastest variant."""
    times = [{l.name: l.time_s for l in r.layers} for r in results]
    chosen: dict[str, Variant] = {}
    for layer in workload.layers:
        preds = workload.predecessors(layer.name)
        if layer.kind.has_weights or not preds:
            best = min(range(len(candidates)), key=lambda i: times[i].get(layer.name, float("inf")))
            chosen[layer.name] = candidates[best]
        else:
            chosen[layer.name] = chosen[preds[0]]
    return chosen


def _auto_variant(profile: HardwareProfile, workload: Workload, options: RunOptions, candidates: Sequence[Variant],
                  results: Sequence[VariantResult], progress: Callable[[str], None]) -> VariantResult:
    """``auto``: each layer in the candidate fastest for it (:func:`_auto_choices`), then the whole
    network re-simulated with those per-layer encodings, so the caches see the mixed network (a
    layer's time depends on what the one before left in the caches)."""
    choices = _auto_choices(workload, candidates, results)
    picked = {l.name: choices[l.name].spec for l in workload.layers if l.kind.has_weights}
    if len(set(choices.values())) == 1:     # one variant everywhere: its run is the auto network
        only = results[list(candidates).index(next(iter(choices.values())))]
        return replace(only, name="auto", format="auto", choices=picked, dense_layers=[])
    progress("auto: compressing the chosen variants")
    sources = {v: prepared_workload(profile, workload, v, options) for v in dict.fromkeys(choices.values())}
    view = CoreView.of(profile, options.threads)
    space = AddressSpace()
    traffic = []
    for layer in workload.layers:
        variant = choices[layer.name]
        prepared, plan, encodings = sources[variant]
        one = workload_layer_traffic(prepared, prepared.layer(layer.name), encodings.get(layer.name), options.batch,
                                     space, view)
        traffic.append(_precise(one, variant, plan, options.batch))
    result = VariantResult("auto", "auto", 0.0, choices=picked)
    return _timed(profile, workload, traffic, view, options, result, progress)


def _sparse_engine_variant(profile: HardwareProfile, workload: Workload, options: RunOptions,
                           progress: Callable[[str], None]) -> VariantResult:
    """An EIE-style engine: weights resident in its SRAM, each layer timed by the PE-array model."""
    from .engine.accelerator import column_batches, eie_works

    engine = profile.sparse_engine
    assert engine is not None, "simulate_variant sends only sparse-engine profiles here"
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
        streams = column_batches(profile, engine, timing, workload.path)
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
        layers: list[LayerResult] = []
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


def _variants_side_by_side(profile: HardwareProfile, workload: Workload, formats: Sequence[Variant],
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

    def one(fmt: Variant) -> tuple[VariantResult, list]:
        if outer is None:
            return simulate_variant(profile, workload, fmt, options, steps), []
        with recording() as calls:
            return simulate_variant(profile, workload, fmt, options, steps), calls

    pool = ThreadPoolExecutor(max_workers=min(len(formats), os.cpu_count() or 1))
    try:
        done = results([pool.submit(one, fmt) for fmt in formats])
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
    formats = _engine_variants(profile, workload, options)
    auto = Variant(Structure.AUTO)
    if auto in formats:
        candidates = auto_candidates(profile, workload, options)
        runs = [simulate_variant(profile, workload, fmt, options, progress) for fmt in candidates] \
            if len(candidates) == 1 or (os.cpu_count() or 1) == 1 else \
            _variants_side_by_side(profile, workload, candidates, options, progress)
        by_spec = {v.format: v for v in runs}
        by_spec["auto"] = _auto_variant(profile, workload, options, candidates, runs, progress)
        shown = formats if len(formats) > 1 else tuple(v for v in candidates[:1] if v.spec == "dense") + formats
        variants = [by_spec[v.spec] for v in shown]
    elif len(formats) > 1 and (os.cpu_count() or 1) > 1:
        variants = _variants_side_by_side(profile, workload, formats, options, progress)
    else:
        variants = [simulate_variant(profile, workload, fmt, options, progress) for fmt in formats]
    return RunResult(profile=profile.name, profile_path=profile.path, workload=workload.name,
                     workload_path=workload.path, batch=options.batch, repeat=options.repeat,
                     seed=options.seed, variants=variants, repeat_mode=options.repeat_mode.value,
                     notes=[note for v in variants for note in v.notes],
                     static_power_w=_static_power_w(profile))


def _engine_variants(profile: HardwareProfile, workload: Workload, options: RunOptions) -> tuple[Variant, ...]:
    """The variants a profile with an engine of its own runs (the cache path runs them all)."""
    formats = options.variants
    if profile.sparse_engine is None and profile.tiled_engine is None:
        return formats
    for variant in formats:
        plan_precision(profile, variant, workload.dtype)     # a type: refused, the engine has its own
    dense = Variant(Structure.DENSE)
    if profile.sparse_engine is not None:
        if formats == (dense,):
            raise OptionError("format", f"{profile.name} runs compressed weights only")
        return formats[-1:]    # one variant: its own compressed format
    if dense not in formats:
        raise OptionError("format", f"{profile.name} computes dense weights only (its array "
                          "does not skip zeros); use {format} dense")
    return (dense,)


def _static_power_w(profile: HardwareProfile) -> Optional[float]:
    return profile.energy.static_power_w if profile.energy is not None else None


def _train(profile: HardwareProfile, workload: Workload, options: RunOptions,
           progress: Callable[[str], None]) -> RunResult:
    """One training step per variant: base(p) and the requested offload policy (dense weights)."""
    if len(options.variants) == 1 and options.variants[0] != Variant(Structure.DENSE):
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
