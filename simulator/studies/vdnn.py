"""vDNN's published figures against the training-step model: ``python -m simulator.studies.vdnn``.

Simulates one training step of each network vDNN studied (``reference/vdnn.md``: AlexNet,
OverFeat and GoogLeNet at batch 128, VGG-16 at 64, 128 and 256; the batches are [U]) on the
Titan X profile under every static policy with both convolution algorithms and under dyn,
and prints the markdown tables of ``docs/validation.md`` (vDNN section): average memory
reduction against the published 89% / 91% / 95%, and VGG-16's memory demand, fit in 12 GB
and slowdown against the published 28 GB and 18%.

The reduction is given against three bases, because what vDNN's figure divides by is not
confirmed: base(p) under this simulator's layer-wise allocator; a network-wide allocation
(every buffer of the step held for the whole step, as 2016 frameworks kept each layer's
buffers, and as vDNN's baseline is recalled to do [U]); and the same network-wide base
counting feature maps, gradient maps and workspace only (the memory vDNN manages; weights,
weight gradients and momentum stay on the device under every policy).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..base.errors import OptionError, SimulatorError
from ..base.paths import HWPROFILES_DIR, WORKLOADS_DIR
from ..base.units import format_bytes
from ..engine.device_memory import Placement, network_wide
from ..engine.offload import OffloadPolicy, PrefetchWindow, StepOutcome, simulate_step
from ..engine.results import VariantResult
from ..engine.training import Optimizer, TrainConfig, device_dram, forward_timing, search_dyn, training_plan, uniform
from ..hardware.profile import ConvAlgorithm, HardwareProfile, load_profile
from ..model.workload import Workload, load_workload

PROFILE = "titan-x.yaml"
NETWORKS = (("AlexNet", "alexnet.yaml", 128), ("OverFeat", "overfeat.yaml", 128), ("GoogLeNet", "googlenet.yaml", 128),
            ("VGG-16", "vgg16.yaml", 64), ("VGG-16", "vgg16.yaml", 128), ("VGG-16", "vgg16.yaml", 256))
PUBLISHED_REDUCTION = {"AlexNet": 0.89, "OverFeat": 0.91, "GoogLeNet": 0.95}   # "up to", vDNN abstract [C-abs]
PUBLISHED_VGG_BYTES = 28e9          # VGG-16 (256) under the baseline, vDNN abstract [C-abs]
PUBLISHED_SLOWDOWN = 0.18           # vDNN on VGG-16 (256) against an oracle GPU, vDNN abstract [C-abs]
STATIC = tuple((policy, algorithm) for policy in (OffloadPolicy.BASE, OffloadPolicy.CONV, OffloadPolicy.ALL)
               for algorithm in (ConvAlgorithm.PERFORMANCE_OPTIMAL, ConvAlgorithm.MEMORY_OPTIMAL))
WEIGHT_KINDS = ("weights", "weight-gradients", "optimizer-state")


@dataclass(frozen=True)
class ConfigRun:
    """One configuration of one network: its memory and time."""

    label: str
    total_s: float
    peak_bytes: int
    footprint_bytes: int
    avg_bytes: float
    avg_activation_bytes: float       # feature maps, gradient maps, workspace
    stall_s: float
    h2d_bytes: int
    d2h_bytes: int
    fits: bool
    slowdown: float                   # against base(p)


@dataclass(frozen=True)
class NetworkRun:
    """Every configuration of one network at one batch, and dyn's choice."""

    network: str
    batch: int
    network_wide_bytes: int
    network_wide_activation_bytes: int
    configs: list[ConfigRun]
    dyn: ConfigRun
    dyn_search: list[str] = field(default_factory=list)
    trainable: bool = True

    def config(self, label: str) -> ConfigRun:
        """One configuration by vDNN's label (``all(m)``)."""
        return next(c for c in self.configs if c.label == label)

    @property
    def base(self) -> ConfigRun:
        """base(p): no offload, performance-optimal convolutions (vDNN's oracle)."""
        return self.config("base(p)")

    def best_reduction(self, against: str) -> tuple[str, float]:
        """The largest average-memory reduction of a vDNN policy (all, conv, dyn): (label, share).

        ``against``: ``layer-wise`` (base(p)'s average), ``network-wide`` (everything held), or
        ``activations`` (network-wide, feature maps, gradient maps and workspace only)."""
        best = ("", -1.0)
        for run in [c for c in self.configs if not c.label.startswith("base")] + [self.dyn]:
            if against == "layer-wise":
                share = 1 - run.avg_bytes / self.base.avg_bytes
            elif against == "network-wide":
                share = 1 - run.avg_bytes / self.network_wide_bytes
            else:
                share = 1 - run.avg_activation_bytes / self.network_wide_activation_bytes
            if share > best[1]:
                best = (run.label, share)
        return best


def _config_run(label: str, outcome: StepOutcome, base_s: float) -> ConfigRun:
    memory = outcome.memory
    activations = sum(v for k, v in memory.avg_by_kind.items() if k not in WEIGHT_KINDS)
    return ConfigRun(label, outcome.total_s, memory.peak_bytes, memory.footprint_bytes, memory.avg_bytes, activations,
                     outcome.stall_s, outcome.h2d_bytes, outcome.d2h_bytes, memory.fits,
                     outcome.total_s / base_s - 1 if base_s else 0.0)


def simulate_network(profile: HardwareProfile, workload: Workload, name: str, batch: int,
                     simulate_at: Callable[[int], VariantResult], optimizer: Optimizer = Optimizer.MOMENTUM,
                     window: PrefetchWindow = PrefetchWindow.NEXT, placement: Placement = Placement.BEST_FIT
                     ) -> NetworkRun:
    """Every static configuration and dyn for one network at one batch."""
    timing, _ = forward_timing(workload, batch, simulate_at)

    def run(config: TrainConfig) -> StepOutcome:
        plan = training_plan(profile, workload, batch, timing, config, True, optimizer)
        return simulate_step(plan, profile.link, device_dram(profile).capacity_bytes, window=window,
                             placement=placement)

    outcomes = {}
    for policy, algorithm in STATIC:
        config = uniform(workload, policy, algorithm)
        outcomes[config.label] = run(config)
    base_s = outcomes["base(p)"].total_s
    plan = training_plan(profile, workload, batch, timing, uniform(workload, OffloadPolicy.BASE,
                                                                    ConvAlgorithm.PERFORMANCE_OPTIMAL), True, optimizer)
    whole = network_wide(plan.tensors.values())
    activations = sum(v for k, v in whole.items() if k not in WEIGHT_KINDS)
    config, outcome, log, trainable = search_dyn(workload, run)
    dyn = _config_run(f"dyn: {config.label}", outcome, base_s)
    return NetworkRun(name, batch, sum(whole.values()), activations,
                      [_config_run(label, o, base_s) for label, o in outcomes.items()], dyn, log, trainable)


@dataclass(frozen=True)
class Change:
    """One unconfirmed choice of the model, changed for the sensitivity table."""

    label: str
    optimizer: Optimizer = Optimizer.MOMENTUM
    window: PrefetchWindow = PrefetchWindow.NEXT
    placement: Placement = Placement.BEST_FIT
    workspace_per_input: Optional[float] = None    # performance-optimal workspace (None: the profile's)

    def profile(self, profile: HardwareProfile) -> HardwareProfile:
        """``profile`` with this change's workspace, if it has one."""
        if self.workspace_per_input is None or profile.conv_algorithms is None:
            return profile
        algorithms = profile.conv_algorithms
        fast = algorithms.performance_optimal.model_copy(update={"workspace_per_input": self.workspace_per_input})
        faster = algorithms.model_copy(update={"performance_optimal": fast})
        return profile.model_copy(update={"conv_algorithms": faster})


SENSITIVITY = (Change("plain SGD (no momentum buffer)", optimizer=Optimizer.SGD),
               Change("prefetch window: the closest kernel that reads offloaded data", window=PrefetchWindow.CLOSEST),
               Change("paged allocator (no fragmentation)", placement=Placement.PAGED),
               Change("performance-optimal workspace 1x the input (not 2x)", workspace_per_input=1.0))


def compare(profile: HardwareProfile, root: Optional[Path] = None, networks: Sequence[tuple[str, str, int]] = NETWORKS,
            optimizer: Optimizer = Optimizer.MOMENTUM, progress: Callable[[str], None] = lambda _: None
            ) -> tuple[list[NetworkRun], list[tuple[str, NetworkRun]]]:
    """Simulate every network of ``networks`` (name, workload file in ``root/workloads``, default the
    shipped ones, batch) on ``profile``; then
    VGG-16 (256) again with each :data:`SENSITIVITY` change (unconfirmed choices of the model)."""
    from ..compress.compression import StorageFormat
    from ..pipeline import RunOptions, simulate_variant

    out = []
    sensitivity = []
    cache: dict[tuple[str, int], VariantResult] = {}    # the forward timing batches, shared across batches
    for name, filename, batch in networks:
        workload = load_workload((root / "workloads" if root is not None else WORKLOADS_DIR) / filename)

        def simulate_at(b: int, workload: Workload = workload, filename: str = filename) -> VariantResult:
            if (filename, b) not in cache:
                progress(f"vdnn: {workload.name} forward at batch {b}")
                options = RunOptions(batch=b, formats=(StorageFormat.DENSE,), host_copies=False)
                cache[(filename, b)] = simulate_variant(profile, workload, StorageFormat.DENSE, options)
            return cache[(filename, b)]

        progress(f"vdnn: {name} ({batch})")
        out.append(simulate_network(profile, workload, name, batch, simulate_at, optimizer))
        if name == "VGG-16" and batch == 256:
            for change in SENSITIVITY:
                sensitivity.append((change.label, simulate_network(change.profile(profile), workload, name, batch,
                                                                   simulate_at, change.optimizer, change.window,
                                                                   change.placement)))
    return out, sensitivity


def _pct(share: Optional[float]) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB ({format_bytes(n_bytes)})"


def render(runs: Sequence[NetworkRun], capacity_bytes: int,
           sensitivity: Sequence[tuple[str, NetworkRun]] = ()) -> str:
    """The markdown tables of the vDNN section of ``docs/validation.md``."""
    lines = ["Average device memory reduction, the best vDNN policy (all, conv or dyn, m or p) against three "
             "bases:", "",
             "| network (batch) | base(p) avg, layer-wise | network-wide base | best vs layer-wise "
             "| best vs network-wide | activations vs network-wide | published (up to) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        published = PUBLISHED_REDUCTION.get(run.network) if run.batch == 128 else None
        cells = [f"{run.network} ({run.batch})", format_bytes(run.base.avg_bytes), format_bytes(run.network_wide_bytes)]
        for against in ("layer-wise", "network-wide", "activations"):
            label, share = run.best_reduction(against)
            cells.append(f"{_pct(share)} ({label})")
        cells.append(_pct(published))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Every configuration: peak / average device memory, step time against base(p), stall; "
              f"out of {format_bytes(capacity_bytes)} (`*`: does not fit):", "",
              "| network (batch) | " + " | ".join(c.label for c in runs[0].configs) + " | dyn |",
              "| --- |" + " --- |" * (len(runs[0].configs) + 1)]
    for run in runs:
        cells = [f"{run.network} ({run.batch})"]
        for c in run.configs + [run.dyn]:
            mark = "" if c.fits else "*"
            cells.append(f"{format_bytes(c.peak_bytes)}{mark} / {format_bytes(c.avg_bytes)}, {100 * c.slowdown:+.0f}%, "
                         f"stall {c.stall_s * 1e3:.0f} ms")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "dyn's search per network:", ""]
    for run in runs:
        lines.append(f"- {run.network} ({run.batch}): " + "; ".join(run.dyn_search)
                     + ("" if run.trainable else "; not trainable on this device"))
    vgg = next((r for r in runs if r.network == "VGG-16" and r.batch == 256), None)
    if vgg is not None:
        lean = vgg.config("all(m)")
        lines += ["", "VGG-16 (256) against the published figures:", "",
                  "| figure | published | simulated |", "| --- | --- | --- |",
                  f"| memory under base | about 28 GB | layer-wise peak {_gb(vgg.base.peak_bytes)}; network-wide "
                  f"{_gb(vgg.network_wide_bytes)} |",
                  f"| fits 12 GB with vDNN | yes | {'yes' if vgg.trainable else 'no'}: leanest configuration all(m) "
                  f"peaks at {format_bytes(lean.peak_bytes)} ({format_bytes(lean.footprint_bytes)} with the best-fit "
                  f"pool's fragmentation) of {format_bytes(capacity_bytes)} |",
                  "| slowdown of vDNN (dyn) | 18% | "
                  f"{_pct(vgg.dyn.slowdown) if vgg.trainable else 'n/a (not trainable)'}"
                  f"; all(p) {_pct(vgg.config('all(p)').slowdown)}, conv(p) {_pct(vgg.config('conv(p)').slowdown)}, "
                  f"all(m) {_pct(lean.slowdown)} |"]
    if sensitivity:
        lines += ["", "VGG-16 (256) with one unconfirmed choice of the model changed:", "",
                  "| change | all(m) peak (footprint) | fits | dyn takes | dyn slowdown |",
                  "| --- | --- | --- | --- | --- |"]
        for label, run in sensitivity:
            lean = run.config("all(m)")
            lines.append(f"| {label} | {format_bytes(lean.peak_bytes)} ({format_bytes(lean.footprint_bytes)}) | "
                         f"{'yes' if run.trainable else 'no'} | {run.dyn.label.removeprefix('dyn: ')} | "
                         f"{_pct(run.dyn.slowdown) if run.trainable else 'n/a'} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m simulator.studies.vdnn [--optimizer momentum|sgd] [--json FILE]``: print the tables."""
    from ..base.console import progress
    from ..output.report import write_json_document

    parser = argparse.ArgumentParser(prog="python -m simulator.studies.vdnn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizer", choices=["momentum", "sgd"], default="momentum")
    parser.add_argument("--json", metavar="FILE", help="also write every configuration as JSON")
    args = parser.parse_args(argv)
    try:
        if args.json and not Path(args.json).resolve().parent.is_dir():
            raise OptionError("json", f"{args.json}: its directory does not exist")
        profile = load_profile(HWPROFILES_DIR / PROFILE)
        runs, sensitivity = compare(profile, optimizer=Optimizer(args.optimizer), progress=progress)
        progress("")
        print(render(runs, device_dram(profile).capacity_bytes, sensitivity))
        if args.json:
            write_json_document({"runs": [asdict(r) for r in runs],
                                 "sensitivity": [{"change": label, **asdict(r)} for label, r in sensitivity]},
                                args.json, "json")
    except SimulatorError as err:
        # this module's own command line: its one option, json, is the flag --json
        print(f"error: {err.spelled(lambda option: '--' + option) if isinstance(err, OptionError) else err}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
