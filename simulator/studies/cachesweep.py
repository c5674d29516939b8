"""A sweep over the size of the last cache level, from one pass of the levels above.

The result of every point equals :func:`simulator.pipeline.run` on that point's profile (the
sweep tests compare them row for row); it is only computed with less work:

* **Traffic once.** A layer's trace depends on the profile only through the
  :class:`~simulator.memory.traffic.CoreView` fields its kernel reads (a sparse convolution blocks
  for the cache share of a core, an FC layer does not). The base traces are built once with a
  view that records which fields each layer reads; a point rebuilds a layer only when one of
  those fields has a different value (same buffers, same addresses).
* **The levels above once.** The levels above the swept one never depend on it, so the
  references reaching it are computed once per layer (:class:`simulator.memory.mrc.LevelFilter`),
  with the filter's state saved after every layer. A point re-runs the filter only from its
  first rebuilt layer, and only until the state is again exactly the saved one.
* **The swept level per point.** One LRU stack pass per point over the references that reach
  the swept level (:func:`simulator.memory.mrc.level_outcome`: hits and dirty evictions), then the
  per-access outcome goes through the same engine as a run.

It applies when the swept level is the last cache level (its misses and write-backs go to
DRAM) and replaces LRU (stack distances are an LRU property); :func:`applies` says so. Levels
below a swept middle level would need their own simulation per point, and the sweep then runs the full pipeline instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..compress.compression import EncodedWeights, StorageFormat, compress_workload
from ..engine.core import layer_work, simulate
from ..engine.results import RunResult, VariantResult
from ..hardware.profile import HardwareProfile, Replacement
from ..memory.cache import AccessOutcome, CacheGeometry
from ..memory.mrc import LevelFilter, LevelStream, LruStacks, level_outcome
from ..memory.traffic import AddressSpace, CoreView, LayerTraffic, workload_layer_traffic
from ..model.workload import Workload
from ..pipeline import RepeatMode, RunOptions, cache_hierarchy, host_copies, variant_name

_VIEW_FIELDS = frozenset(f.name for f in fields(CoreView))


@dataclass(frozen=True)
class _TrackedView(CoreView):
    """A CoreView that records which of its fields are read (what a layer's trace depends on)."""

    reads: set = field(default_factory=set, compare=False, repr=False)

    def __getattribute__(self, name: str) -> Any:
        if name in _VIEW_FIELDS:
            object.__getattribute__(self, "reads").add(name)
        return object.__getattribute__(self, name)


def applies(profile: HardwareProfile, level_name: str) -> bool:
    """True when sweeping ``level_name``'s size can use this module: it is the last level, and an
    LRU one (the stack pass is an LRU model; the levels above may replace as they like)."""
    return (bool(profile.caches) and profile.caches[-1].name == level_name
            and profile.caches[-1].replacement is Replacement.LRU)


def _geometries(profile: HardwareProfile, cores: int) -> tuple[CacheGeometry, ...]:
    return cache_hierarchy(profile, cores).levels


@dataclass
class _Base:
    """One storage format at the base point: traces, their view dependencies, filter output."""

    fmt: StorageFormat
    encodings: dict[str, EncodedWeights]
    space: AddressSpace
    traffic: list[LayerTraffic]
    depends_on: list[dict[str, Any]]    # per layer: the view fields its trace read, and their values
    streams: list[LevelStream]          # per (repetition, layer): references reaching the swept level
    # filter state (lines, recency, clock) before each (repetition, layer), and at the end
    snapshots: list[tuple[np.ndarray, np.ndarray, np.ndarray]]


class CacheSizeSweep:
    """Shared, picklable state of a last-level size sweep; :meth:`run_point` evaluates one point.

    ``profile`` and ``options`` are the base point's; every point must differ from it only
    in the size of cache level ``level`` (the last one).
    """

    def __init__(self, profile: HardwareProfile, workload: Workload, options: RunOptions, level: int) -> None:
        if level != len(profile.caches) - 1:
            raise ValueError("the swept level must be the last cache level")
        if options.repeat_mode is not RepeatMode.NETWORK:
            raise ValueError("a cache-size sweep repeats whole inferences (repeat_mode network)")
        if options.density is not None:
            workload = workload.with_density(options.density)
        # the single-pass path traces plain storage formats (sweep.py takes it only for those)
        self.formats = tuple(f for f in options.formats if isinstance(f, StorageFormat))
        if len(self.formats) != len(options.formats):
            raise ValueError("a cache-size sweep runs plain storage formats (dense, csr, csc)")
        self.workload = workload
        self.options = options
        self.level = level
        view = CoreView.of(profile, options.threads)
        self.cores = view.cores
        geometries = _geometries(profile, view.cores)
        self._bases = {fmt: self._base(fmt, view, geometries) for fmt in self.formats}

    def _base(self, fmt: StorageFormat, view: CoreView, geometries: tuple[CacheGeometry, ...]) -> _Base:
        encodings = compress_workload(self.workload, fmt, self.options.seed)
        space = AddressSpace()
        traffic, depends_on = [], []
        for layer in self.workload.layers:
            tracked = _TrackedView(**asdict(view))
            traffic.append(workload_layer_traffic(self.workload, layer, encodings.get(layer.name), self.options.batch,
                                                  space, tracked))
            depends_on.append({name: getattr(view, name) for name in tracked.reads})
        level_filter = LevelFilter(geometries, view.cores, self.level)
        streams, snapshots = [], [level_filter.snapshot()]
        for _ in range(self.options.repeat):
            for t in traffic:
                streams.append(level_filter.run(t.addresses, t.is_write, t.core, t.hints))
                snapshots.append(level_filter.snapshot())
        return _Base(fmt, encodings, space, traffic, depends_on, streams, snapshots)

    def _traffic(self, base: _Base, view: CoreView) -> list[LayerTraffic]:
        """The point's traces: the base trace where the fields it read are unchanged."""
        out = []
        for j, layer in enumerate(self.workload.layers):
            if all(getattr(view, name) == value for name, value in base.depends_on[j].items()):
                out.append(base.traffic[j])
            else:
                # every buffer is already allocated in the base space: same addresses
                out.append(workload_layer_traffic(self.workload, layer, base.encodings.get(layer.name),
                                                  self.options.batch, base.space, view))
        return out

    def run_point(self, profile: HardwareProfile) -> RunResult:
        """Simulate every format of the base options on ``profile`` (a point of the sweep)."""
        view = CoreView.of(profile, self.options.threads)
        geometries = _geometries(profile, view.cores)
        swept = geometries[self.level]
        variants = []
        for fmt in self.formats:
            base = self._bases[fmt]
            traffic = self._traffic(base, view)
            level_filter = LevelFilter(geometries, view.cores, self.level)
            stacks = LruStacks(swept.sets, 1 if swept.shared else view.cores, swept.ways, (swept.ways,))
            in_sync = True   # the filter state equals the base state at this point of the trace
            outcomes: list[AccessOutcome] = []
            for repetition in range(self.options.repeat):
                outcomes = []
                for j, t in enumerate(traffic):
                    s = repetition * len(traffic) + j
                    if in_sync and t is base.traffic[j]:
                        stream = base.streams[s]
                    else:
                        if in_sync:
                            level_filter.restore(base.snapshots[s])
                        stream = level_filter.run(t.addresses, t.is_write, t.core, t.hints)
                        in_sync = level_filter.same_state(base.snapshots[s + 1])
                    outcomes.append(level_outcome(stream, swept, view.cores, stacks))
            works = [layer_work(t, o, profile) for t, o in zip(traffic, outcomes)]
            layers = simulate(profile, works, host_copies(profile, self.workload, self.options))
            total = max((l.start_s + l.time_s for l in layers), default=0.0)
            variants.append(VariantResult(variant_name(fmt), fmt.value, total, layers))
        return RunResult(profile=profile.name, profile_path=profile.path, workload=self.workload.name,
                         workload_path=self.workload.path, batch=self.options.batch, repeat=self.options.repeat,
                         seed=self.options.seed, variants=variants, repeat_mode=self.options.repeat_mode.value)
