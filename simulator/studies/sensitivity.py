"""Which parameter moves which answer: ``python -m simulator.studies.sensitivity``.

For the default run (AlexNet, batch 1, one cold inference, dense and CSR) on every shipped CPU and
GPU profile, each named mechanism parameter is doubled alone and the change of the dense and the
pruned network's time is printed, with the layers whose bound changed. A parameter that moves
nothing is not what limits that device; a parameter that moves everything is. It is the table of
``docs/validation.md`` ("Sensitivity"), and the tests assert the same mechanisms on small layers
(``tests/test_kernelcost.py``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..base.paths import HWPROFILES_DIR, WORKLOADS_DIR
from ..engine.results import RunResult
from ..hardware.profile import HardwareProfile, load_profile
from ..model.workload import Workload, load_workload
from ..pipeline import RunOptions, run
from .validation import value_at, with_values

PROFILES = ("i7-5930k", "raspberry-pi-5", "titan-x", "tegra", "jetson-orin-nano")


@dataclass(frozen=True)
class Knob:
    """A parameter the study doubles (or halves, for an efficiency that cannot exceed 1)."""

    label: str
    paths: tuple[str, ...]     # attribute paths moved together (a bandwidth's peak with its sustained rate)
    factor: float = 2.0


KNOBS = (
    Knob("DRAM bandwidth x2",
         ("memory.dram.sustained_bandwidth_bytes_per_s", "memory.dram.peak_bandwidth_bytes_per_s")),
    Knob("DRAM latency x2", ("memory.dram.latency_s",)),
    Knob("stream requests in flight x2", ("memory.dram.outstanding_requests_per_core",)),
    Knob("gather requests in flight x2", ("compute.outstanding_gathers_per_core",)),
    Knob("clock x2 (FMA and issue rate)", ("compute.clock_hz", "compute.peak_flops.fp32")),
    Knob("GEMM/conv library efficiency /2", ("compute.kernels.gemm.library_efficiency",
                                            "compute.kernels.conv.library_efficiency"), 0.5),
    Knob("sparse cycles per non-zero x2", ("compute.kernels.spmv.cycles_per_nonzero",
                                          "compute.kernels.spmm.cycles_per_nonzero",
                                          "compute.kernels.spconv.cycles_per_nonzero")),
    Knob("last cache level x2", ("LLC",)),
)


@dataclass(frozen=True)
class Row:
    """One profile under one knob: the change of each variant's total time and the bounds that moved."""

    profile: str
    knob: str
    dense_change: float
    pruned_change: float
    moved_bounds: tuple[str, ...]


def perturbed(profile: HardwareProfile, knob: Knob) -> HardwareProfile:
    """``profile`` with the knob's parameters scaled by its factor (integers rounded, sizes kept whole sets)."""
    values = {}
    for path in knob.paths:
        if path == "LLC":
            return _bigger_llc(profile, knob.factor)
        value = value_at(profile, path)
        if value is None:
            continue
        scaled = value * knob.factor
        values[path] = int(round(scaled)) if isinstance(value, int) else scaled
    return with_values(profile, values)


def _bigger_llc(profile: HardwareProfile, factor: float) -> HardwareProfile:
    caches = list(profile.memory.caches)
    last = caches[-1]
    caches[-1] = last.model_copy(update={"size_bytes": int(last.size_bytes * factor)})
    return profile.model_copy(update={"memory": profile.memory.model_copy(update={"caches": tuple(caches)})})


def _totals(result: RunResult) -> tuple[float, float, dict[tuple[str, str], str]]:
    dense, pruned = result.variants[0], result.variants[-1]
    bounds = {(v.name, layer.name): layer.bound for v in (dense, pruned) for layer in v.layers}
    return dense.total_s, pruned.total_s, bounds


def study(profiles: Sequence[str] = PROFILES, workload: Optional[Workload] = None,
          progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    """Every knob on every profile (a baseline run per profile, one run per knob)."""
    workload = workload or load_workload(WORKLOADS_DIR / "alexnet.yaml")
    options = RunOptions()
    rows = []
    for name in profiles:
        profile = load_profile(HWPROFILES_DIR / f"{name}.yaml")
        progress(f"{name}: baseline")
        base_dense, base_pruned, base_bounds = _totals(run(profile, workload, options))
        for knob in KNOBS:
            progress(f"{name}: {knob.label}")
            dense, pruned, bounds = _totals(run(perturbed(profile, knob), workload, options))
            moved = tuple(sorted(f"{v} {layer} {base_bounds[(v, layer)]}->{bounds[(v, layer)]}"
                                 for (v, layer) in base_bounds if bounds.get((v, layer)) != base_bounds[(v, layer)]))
            rows.append(Row(name, knob.label, dense / base_dense - 1, pruned / base_pruned - 1, moved))
    return rows


def render(rows: Sequence[Row]) -> str:
    """A markdown table: profile, knob, dense and pruned change, how many layer bounds moved."""
    lines = ["| profile | parameter | dense time | pruned time | layer bounds that moved |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        moved = f"{len(r.moved_bounds)} ({', '.join(r.moved_bounds[:3])}{', ...' if len(r.moved_bounds) > 3 else ''})" \
            if r.moved_bounds else "none"
        lines.append(f"| {r.profile} | {r.knob} | {r.dense_change:+.0%} | {r.pruned_change:+.0%} | {moved} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the sensitivity table (markdown)."""
    parser = argparse.ArgumentParser(prog="python -m simulator.studies.sensitivity", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", action="append", choices=PROFILES, help="only this profile (repeatable)")
    args = parser.parse_args(argv)
    print(render(study(args.profile or PROFILES, progress=lambda m: print(m, file=sys.stderr) if m else None)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
