"""Result objects of a run: plain dataclasses with units in their names.

This module imports nothing from the project, so every stage and every report can use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True)
class LayerResult:
    """Simulated time and traffic of one layer (or one host-link copy) in one variant."""

    name: str
    kind: str                       # conv, fc, maxpool, avgpool, copy
    kernel: Optional[str]           # gemv, gemm, spmv, ... (None for copies)
    time_s: float
    start_s: float
    flops: float
    weight_bytes: int               # encoded footprint: values + indices + pointers
    dram_read_bytes: int
    dram_write_bytes: int
    link_bytes: int
    accesses: int                   # line accesses issued
    hits: dict[str, int]            # accesses served per cache level
    hit_rate: dict[str, float]      # local hit rate per level: hits / accesses reaching it
    busy_s: dict[str, float]        # busy time per resource within the layer
    bound: str                      # the resource that decided the time
    cores_used: int = 1
    energy_j: float = 0.0           # dynamic (operations + bytes moved) + static power x time
    dram_energy_j: float = 0.0      # the DRAM part of energy_j
    tiling: str = ""                # a scratchpad engine's tiling and loop order ("" on the cache path)

    @property
    def dram_bytes(self) -> int:
        """Bytes moved between the last cache level and DRAM, both ways."""
        return self.dram_read_bytes + self.dram_write_bytes

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (adds ``dram_bytes``)."""
        out = asdict(self)
        out["dram_bytes"] = self.dram_bytes
        return out

    def to_row(self) -> dict[str, Any]:
        """One flat row (a table's columns): ``layer`` (the name), the other scalar fields,
        ``dram_bytes``, and one column per cache level or resource: ``<level>_hits``,
        ``<level>_hit_rate``, ``<resource>_busy_s``."""
        fields = asdict(self)
        row = {"layer": fields.pop("name")}
        row.update({name: value for name, value in fields.items() if not isinstance(value, dict)})
        row["dram_bytes"] = self.dram_bytes
        row.update({f"{level}_hits": n for level, n in self.hits.items()})
        row.update({f"{level}_hit_rate": r for level, r in self.hit_rate.items()})
        row.update({f"{resource}_busy_s": t for resource, t in self.busy_s.items()})
        return row


@dataclass(frozen=True)
class OutOfMemory:
    """The first allocation the device could not hold: which tensor, and by how much the run is over.

    The run goes on past it (the allocator lends itself the missing memory), so the rest of the
    result says how much the run would need."""

    tensor: str
    tensor_kind: str                # feature-map, gradient-map, workspace, weights, ...
    task: str                       # the kernel or transfer that asked for it
    time_s: float
    requested_bytes: int
    live_bytes: int                 # already allocated at that moment
    capacity_bytes: int
    over_bytes: int                 # the run's peak footprint minus the capacity

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class DeviceMemory:
    """Device memory over one run: what the allocator held, at the peak and on average."""

    capacity_bytes: int
    peak_bytes: int                 # the most bytes allocated at once
    avg_bytes: float                # allocated bytes averaged over the run's time
    footprint_bytes: int            # the allocator's high-water mark (fragmentation included)
    peak_by_kind: dict[str, int] = field(default_factory=dict)     # what was allocated at the peak
    avg_by_kind: dict[str, float] = field(default_factory=dict)
    out_of_memory: Optional[OutOfMemory] = None

    @property
    def fits(self) -> bool:
        """True when every allocation found room within the capacity."""
        return self.out_of_memory is None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (adds ``fits``)."""
        out = asdict(self)
        out["fits"] = self.fits
        return out


@dataclass(frozen=True)
class TimelineEvent:
    """One slice of a run's timeline on one stream (for the Chrome / Perfetto timeline file)."""

    track: str                      # compute, stall, offload (d2h), prefetch (h2d), weights (h2d)
    name: str
    start_s: float
    duration_s: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingInfo:
    """How one training step was run, and what it cost against the base policy."""

    policy: str                     # base, all, conv, dyn
    conv_algorithm: str             # performance, memory, or mixed (dyn moved some layers)
    memory_optimal_layers: list[str]
    offloaded_tensors: list[str]
    forward_s: float                # compute-stream time of each phase, stalls included
    backward_s: float
    update_s: float
    trainable: bool                 # False: even the leanest configuration does not fit
    slowdown: Optional[float] = None   # total_s / base total_s - 1 (None for base itself)
    search: list[str] = field(default_factory=list)   # dyn: the configurations tried, in order
    timing_batches: list[int] = field(default_factory=list)   # batches the forward was simulated at
    optimizer: str = "momentum"     # momentum or sgd
    # what a framework that holds every buffer for the whole step needs (vDNN's baseline, see docs/train.md)
    network_wide_bytes: Optional[int] = None
    network_wide_by_kind: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class WeightStreaming:
    """Inference with weights that do not fit the device: each layer's (encoded) weights cross the
    host link ahead of its kernel."""

    streamed_bytes: int
    buffer_bytes: int               # device memory left for weights after the activations
    effective_bandwidth_bytes_per_s: float   # streamed bytes / total time
    link_busy_s: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class VariantResult:
    """One way of storing the network (dense, or pruned in a sparse format)."""

    name: str                       # "dense" / "pruned" (run's default dense,csr), else the spec
    format: str                     # the variant's spec: dense, csr, csc, dense@int8, 2:4, auto ...
    total_s: float
    layers: list[LayerResult] = field(default_factory=list)
    # device memory and the host link (None where the profile has no device memory to model)
    memory: Optional[DeviceMemory] = None
    pcie_h2d_bytes: Optional[int] = None
    pcie_d2h_bytes: Optional[int] = None
    stall_s: Optional[float] = None      # compute waiting on host-link transfers
    training: Optional[TrainingInfo] = None
    streaming: Optional[WeightStreaming] = None
    timeline: tuple[TimelineEvent, ...] = field(default=(), compare=False, repr=False)
    # layers of a sparse variant that ran dense: nothing of them was pruned (density 1.0)
    dense_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)      # what the variant's engine had to do, one line each
    memory_timeline: tuple[tuple[float, int], ...] = field(default=(), compare=False, repr=False)  # (s, bytes)
    choices: dict[str, str] = field(default_factory=dict)  # auto: layer -> the spec it ran in

    @property
    def peak_device_memory_bytes(self) -> Optional[int]:
        """The most device memory allocated at once (None when not modelled)."""
        return self.memory.peak_bytes if self.memory is not None else None

    @property
    def avg_device_memory_bytes(self) -> Optional[float]:
        """Device memory allocated, averaged over the run's time (None when not modelled)."""
        return self.memory.avg_bytes if self.memory is not None else None

    @property
    def dram_bytes(self) -> int:
        """DRAM traffic of the whole inference."""
        return sum(l.dram_bytes for l in self.layers)

    @property
    def weight_bytes(self) -> int:
        """Encoded weight footprint of the whole network."""
        return sum(l.weight_bytes for l in self.layers)

    @property
    def energy_j(self) -> float:
        """Energy of the whole inference (0 when the profile gives no energies)."""
        return sum(l.energy_j for l in self.layers)

    @property
    def dram_energy_j(self) -> float:
        """The DRAM part of :attr:`energy_j`."""
        return sum(l.dram_energy_j for l in self.layers)

    def layer(self, name: str) -> LayerResult:
        """Look a layer up by name."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = {"name": self.name, "format": self.format, "total_s": self.total_s,
               "peak_device_memory_bytes": self.peak_device_memory_bytes,
               "avg_device_memory_bytes": self.avg_device_memory_bytes,
               "pcie_h2d_bytes": self.pcie_h2d_bytes, "pcie_d2h_bytes": self.pcie_d2h_bytes, "stall_s": self.stall_s,
               "dram_bytes": self.dram_bytes, "weight_bytes": self.weight_bytes,
               "energy_j": self.energy_j, "dram_energy_j": self.dram_energy_j, "dense_layers": self.dense_layers}
        if self.choices:
            out["choices"] = self.choices
        for name in ("memory", "training", "streaming"):
            value = getattr(self, name)
            if value is not None:
                out["device_memory" if name == "memory" else name] = value.to_json()
        out["layers"] = [l.to_json() for l in self.layers]
        return out


@dataclass(frozen=True)
class RunResult:
    """Everything one ``simulator run`` computed."""

    profile: str
    profile_path: str
    workload: str
    workload_path: str
    batch: int
    repeat: int
    seed: int
    variants: list[VariantResult] = field(default_factory=list)
    repeat_mode: str = "network"
    mode: str = "infer"             # infer, or train (one training step per variant)
    notes: list[str] = field(default_factory=list)     # one line each, printed under the table
    # the profile's static power (0: unknown, energies are dynamic only; None: no energy model)
    static_power_w: Optional[float] = None

    def static_energy_j(self, variant: VariantResult) -> float:
        """The static part of ``variant.energy_j``: static power over each layer's time."""
        return (self.static_power_w or 0.0) * sum(l.time_s for l in variant.layers)

    def variant(self, name: str) -> VariantResult:
        """Look a variant up by name (``dense`` / ``pruned``)."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per variant and layer, for notebooks: ``profile``, ``workload``, ``batch``,
        ``variant``, ``format`` and every column of :meth:`LayerResult.to_row` (a level a layer
        did not reach, such as a copy's caches, is NaN)."""
        import pandas

        rows = [{"profile": self.profile, "workload": self.workload, "batch": self.batch, "variant": variant.name,
                 "format": variant.format, **layer.to_row()}
                for variant in self.variants for layer in variant.layers]
        return pandas.DataFrame(rows)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"profile": self.profile, "profile_path": self.profile_path, "workload": self.workload,
                "workload_path": self.workload_path, "batch": self.batch, "repeat": self.repeat,
                "repeat_mode": self.repeat_mode, "mode": self.mode, "seed": self.seed,
                "static_power_w": self.static_power_w, "notes": self.notes,
                # energy_j of a variant is dynamic + static_energy_j
                "variants": [{**v.to_json(), "static_energy_j": self.static_energy_j(v)} for v in self.variants]}
