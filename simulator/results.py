"""Result objects of a run: plain dataclasses with units in their names.

This module imports nothing from the project, so every stage and every report can use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional


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


@dataclass(frozen=True)
class VariantResult:
    """One way of storing the network (dense, or pruned in a sparse format)."""

    name: str                       # "dense" or "pruned"
    format: str                     # dense, csr, csc
    total_s: float
    layers: list[LayerResult] = field(default_factory=list)

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
        return {"name": self.name, "format": self.format, "total_s": self.total_s,
                "dram_bytes": self.dram_bytes, "weight_bytes": self.weight_bytes,
                "energy_j": self.energy_j, "dram_energy_j": self.dram_energy_j,
                "layers": [l.to_json() for l in self.layers]}


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

    def variant(self, name: str) -> VariantResult:
        """Look a variant up by name (``dense`` / ``pruned``)."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"profile": self.profile, "profile_path": self.profile_path, "workload": self.workload,
                "workload_path": self.workload_path, "batch": self.batch, "repeat": self.repeat,
                "repeat_mode": self.repeat_mode, "seed": self.seed, "variants": [v.to_json() for v in self.variants]}
