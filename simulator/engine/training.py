"""One training step (``run --mode train``): forward, backward and weight update on a device whose
memory holds only so much, with vDNN's offload policies (Rhu et al., MICRO 2016).

**Timing.** Forward layers are timed by the pipeline's own per-layer simulation (traffic, exact
caches, SimPy engine). Tracing a whole batch-256 step line by line would take minutes, so the
forward pass is simulated at :data:`TIMING_BATCHES` (2 and 3 samples) and each layer's busy
time per resource (compute, each cache level, DRAM) is extended to the step's batch along the
straight line through those two points: compute grows with the batch exactly, memory traffic
is a fixed part (weights) plus a part per sample (activations). The layer then takes its launch
overhead, plus the fixed pipeline fill seen at the larger timing batch, plus its busiest
resource. A batch no larger than the timing batches is simulated directly.

**Backward rule** (derived from the same per-layer timing and profile rates, not fitted):

* conv and FC: the data gradient and the weight gradient are each a GEMM of the forward's
  shape and FLOPs, so each takes the forward layer's time; a layer that reads the network input
  computes no data gradient (1x forward), every other one 2x;
* the convolution algorithm (:class:`~simulator.hardware.profile.ConvAlgorithm`) divides the compute
  part of all three convolution kernels by its ``speed`` and adds its workspace
  (``workspace_per_input`` x the layer's input bytes) for the kernel's duration;
* max pooling: 2x forward (it reads the input, the output and the output gradient and writes
  the input gradient, twice the bytes of the forward); average pooling, add and concat: 1x;
* a ReLU after a conv, FC or add layer: its backward is its own element-wise kernel, run in
  place on the output gradient before the layer's backward: launch + 3 x output bytes over
  sustained DRAM bandwidth (reads the output and its gradient, writes the gradient);
* the loss: launch + 2 x output bytes over DRAM bandwidth; the update per weighted layer
  (:class:`Optimizer`): SGD with momentum, as AlexNet and VGG were trained, launch + 5 x weight
  bytes (reads W, dW, V, writes V, W); plain SGD launch + 3 x weight bytes.

**Memory** (:mod:`simulator.engine.device_memory`): weights, weight gradients and the momentum velocity live
for the whole step (as in Torch and Caffe, which keep them between steps); a feature map lives
from its layer's forward to its last use in backward (its readers' weight gradients, its own
ReLU and max-pool backward); a gradient map from its first writer to its layer's backward; a
workspace for one kernel. **Policies** (:class:`~simulator.engine.offload.OffloadPolicy`): base keeps
everything; all offloads every layer input that backward reads again; conv only the inputs of
convolutions; dyn searches as vDNN does (:func:`search_dyn`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Sequence

from ..base.errors import ConfigError, OptionError
from ..base.texttable import format_table
from ..base.units import format_bytes, format_seconds
from ..hardware.profile import ConvAlgorithm, ConvAlgorithms, Dram, HardwareProfile
from ..model.workload import Layer, LayerKind, Workload
from .device_memory import (
    Phase,
    Task,
    Tensor,
    TensorKind,
    feature_map,
    is_relu_layer,
    layer_inputs,
    network_wide,
    sinks,
    weights,
)
from .offload import OffloadPolicy, StepOutcome, StepPlan, simulate_step
from .results import DeviceMemory, LayerResult, RunResult, TrainingInfo, VariantResult

TIMING_BATCHES = (2, 3)   # forward simulated at these batches, then extended to the step's batch
RELU_BACKWARD_PASSES = 3  # element-wise passes over the output: read Y and dY, write dY
LOSS_PASSES = 2           # read the output, write its gradient


class Optimizer(str, enum.Enum):
    """The weight update: the state it keeps on the device and its passes over the weights."""

    MOMENTUM = "momentum"   # V = mu V + dW, W -= lr V (AlexNet's and VGG's recipe): one velocity per weight
    SGD = "sgd"             # W -= lr dW: no state

    @property
    def passes(self) -> int:
        """Element-wise passes over the weights: momentum reads W, dW, V and writes V, W; SGD reads
        W, dW and writes W."""
        return 5 if self is Optimizer.MOMENTUM else 3

    @property
    def keeps_state(self) -> bool:
        """True when the optimiser keeps a buffer the size of the weights."""
        return self is Optimizer.MOMENTUM


class Mode(str, enum.Enum):
    """What ``run`` simulates."""

    INFER = "infer"       # inferences (the default)
    TRAIN = "train"       # one training step: forward, backward, weight update


@dataclass(frozen=True)
class LayerTiming:
    """A forward layer's time at the step's batch, by resource, so that a faster algorithm can
    shrink its compute part alone."""

    launch_s: float
    fill_s: float                  # pipeline fill and latency: time beyond the busiest resource
    busy_s: Mapping[str, float]    # compute and each memory resource (DRAM merged)
    kernel: Optional[str]

    def time_s(self, speed: float = 1.0) -> float:
        """The layer's time with its compute ``speed`` times faster."""
        busiest = max(((v / speed if k == "compute" else v) for k, v in self.busy_s.items()), default=0.0)
        return self.launch_s + self.fill_s + busiest

    def bound(self, speed: float = 1.0) -> str:
        """The busiest resource."""
        if not self.busy_s:
            return "launch"
        return max(self.busy_s, key=lambda k: self.busy_s[k] / speed if k == "compute" else self.busy_s[k])


#: Holds of the compute unit before a kernel's tiles, which nothing overlaps: its launch, and the
#: faults of its fresh output pages.
_SERIAL = ("launch", "page-faults")


def _busy(layer: LayerResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, seconds in layer.busy_s.items():
        if name in _SERIAL or name == "link":
            continue
        key = "dram" if name.startswith("dram") else name
        out[key] = out.get(key, 0.0) + seconds
    return out


def _timing(layer: LayerResult) -> LayerTiming:
    busy = _busy(layer)
    launch = sum(layer.busy_s.get(name, 0.0) for name in _SERIAL)
    fill = max(0.0, layer.time_s - launch - max(busy.values(), default=0.0))
    return LayerTiming(launch, fill, busy, layer.kernel)


def _extend(small: LayerResult, large: LayerResult, b_small: int, b_large: int, batch: int) -> LayerTiming:
    """The layer at ``batch`` from the straight line through its busy times at two batches."""
    low, high = _busy(small), _busy(large)
    busy = {}
    for key in sorted(high.keys() | low.keys()):          # sorted: a tie for the bound breaks the same way
        a, b = low.get(key, 0.0), high.get(key, 0.0)
        slope = (b - a) / (b_large - b_small)
        busy[key] = max(b, b + slope * (batch - b_large))    # never less than at the larger timing batch
    base = _timing(large)
    return LayerTiming(base.launch_s, base.fill_s, busy, large.kernel)


def forward_timing(workload: Workload, batch: int, simulate_at: Callable[[int], VariantResult]
                   ) -> tuple[dict[str, LayerTiming], list[int]]:
    """Each layer's forward timing at ``batch`` and the batches actually simulated."""
    if batch <= TIMING_BATCHES[-1]:
        result = simulate_at(batch)
        return {l.name: _timing(l) for l in result.layers if l.kind != "copy"}, [batch]
    small, large = (simulate_at(b) for b in TIMING_BATCHES)
    out = {}
    for layer in workload.layers:
        out[layer.name] = _extend(small.layer(layer.name), large.layer(layer.name), *TIMING_BATCHES, batch)
    return out, list(TIMING_BATCHES)


@dataclass(frozen=True)
class TrainConfig:
    """A static configuration: what to offload and each convolution's algorithm."""

    policy: OffloadPolicy               # base, all or conv (dyn resolves to one of these)
    algorithms: Mapping[str, ConvAlgorithm] = field(default_factory=dict)   # conv layer -> algorithm

    @property
    def memory_optimal_layers(self) -> list[str]:
        """Convolutions running the memory-optimal algorithm."""
        return [name for name, a in self.algorithms.items() if a is ConvAlgorithm.MEMORY_OPTIMAL]

    @property
    def label(self) -> str:
        """vDNN's notation: ``all(m)``, ``base(p)``; a mix says how many layers are memory-optimal."""
        kinds = set(self.algorithms.values())
        if kinds <= {ConvAlgorithm.PERFORMANCE_OPTIMAL}:
            return f"{self.policy.value}(p)"
        if kinds == {ConvAlgorithm.MEMORY_OPTIMAL}:
            return f"{self.policy.value}(m)"
        return f"{self.policy.value}(p, {len(self.memory_optimal_layers)} layers m)"

    @property
    def conv_algorithm(self) -> str:
        """``performance``, ``memory`` or ``mixed``."""
        kinds = set(self.algorithms.values())
        return kinds.pop().value if len(kinds) == 1 else ("mixed" if kinds else "performance")


def uniform(workload: Workload, policy: OffloadPolicy, algorithm: ConvAlgorithm) -> TrainConfig:
    """Every convolution on one algorithm."""
    return TrainConfig(policy, {l.name: algorithm for l in workload.layers if l.kind is LayerKind.CONV})


# --- the task list of one step ---------------------------------------------------------------------

def _grad(tensor: str) -> str:
    return f"g:{tensor}"


def _needs_forward(layer: Layer, inputs: list[str], output: str) -> list[str]:
    """Feature maps a layer's own backward reads (its ReLU's is a separate task)."""
    if layer.kind.has_weights:
        return inputs                      # the weight gradient needs the input
    if layer.kind is LayerKind.MAXPOOL:
        return inputs + [output]           # where the maxima were
    return []                              # average pooling, add, concat: only the gradient


def training_plan(profile: HardwareProfile, workload: Workload, batch: int, timing: Mapping[str, LayerTiming],
                  config: TrainConfig, host_copies: bool, optimizer: Optimizer = Optimizer.MOMENTUM) -> StepPlan:
    """The tasks and tensors of one step under ``config`` (see the module docstring for the rules)."""
    dram_rate = device_dram(profile).sustained_bandwidth_bytes_per_s
    launch = profile.compute.launch_overhead_s
    tensors: dict[str, Tensor] = {}
    persistent: list[str] = []
    forward: list[Task] = []
    backward: list[list[Task]] = []
    update: list[Task] = []

    def add(tensor: Tensor) -> str:
        tensors[tensor.name] = tensor
        return tensor.name

    for layer in workload.layers:
        inputs = [add(t) for t in layer_inputs(workload, layer.name, batch)]
        output = add(feature_map(workload, layer.name, batch))
        reads = list(inputs)
        w = weights(workload, layer.name)          # None exactly when the layer has no weights
        if w is not None:
            state = [(f"v:{layer.name}", TensorKind.OPTIMIZER_STATE)] if optimizer.keeps_state else []
            for name, kind in [(w.name, TensorKind.WEIGHTS), (f"dw:{layer.name}", TensorKind.WEIGHT_GRADIENTS)] + state:
                persistent.append(add(Tensor(name, kind, w.size_bytes, layer.name)))
            reads.append(w.name)
        speed = 1.0
        fwd_scratch: tuple[str, ...] = ()
        bwd_scratch: tuple[str, ...] = ()
        if layer.kind is LayerKind.CONV:
            cost = _conv_algorithms(profile).of(config.algorithms.get(layer.name, ConvAlgorithm.PERFORMANCE_OPTIMAL))
            speed = cost.speed
            workspace = int(cost.workspace_per_input * layer.in_bytes(batch))
            if workspace > 0:
                fwd_scratch = (add(Tensor(f"ws:{layer.name}:fwd", TensorKind.WORKSPACE, workspace, layer.name)),)
                bwd_scratch = (add(Tensor(f"ws:{layer.name}:bwd", TensorKind.WORKSPACE, workspace, layer.name)),)
        t = timing[layer.name]
        fwd_s = t.time_s(speed)
        forward.append(Task(f"{layer.name} fwd", layer.name, layer.kind.value, Phase.FORWARD, fwd_s,
                            reads=tuple(reads), writes=(output,), scratch=fwd_scratch,
                            flops=layer.flops(batch), kernel=t.kernel, bound=t.bound(speed)))
        # backward, built in forward order and reversed below
        preds = workload.predecessors(layer.name)
        tasks: list[Task] = []
        if is_relu_layer(layer.kind, layer.relu):
            size = layer.out_bytes(batch)
            tasks.append(Task(f"{layer.name} relu-bwd", layer.name, layer.kind.value, Phase.BACKWARD,
                              launch + RELU_BACKWARD_PASSES * size / dram_rate, reads=(output, _grad(output)),
                              kernel="pool", bound="dram-bandwidth"))
        input_grads = []
        for name in inputs:
            if name.startswith("y:"):       # a network input needs no gradient
                input_grads.append(add(Tensor(_grad(name), TensorKind.GRADIENT_MAP, tensors[name].size_bytes,
                                              name[2:])))
        if layer.kind.has_weights:
            kernels = 1 + (1 if preds else 0)       # weight gradient, and the data gradient unless at the input
            bwd_s = kernels * fwd_s
            writes = input_grads + [f"dw:{layer.name}"]
            bwd_reads = [_grad(output)] + inputs + [f"w:{layer.name}"]
            flops = kernels * layer.flops(batch)
        else:
            bwd_s = (2.0 if layer.kind is LayerKind.MAXPOOL else 1.0) * fwd_s
            writes = input_grads
            bwd_reads = [_grad(output)] + _needs_forward(layer, inputs, output)
            flops = 0.0
        tasks.append(Task(f"{layer.name} bwd", layer.name, layer.kind.value, Phase.BACKWARD, bwd_s,
                          reads=tuple(bwd_reads), writes=tuple(writes), scratch=bwd_scratch, flops=flops,
                          kernel=t.kernel, bound=t.bound(speed)))
        add(Tensor(_grad(output), TensorKind.GRADIENT_MAP, layer.out_bytes(batch), layer.name))
        backward.append(tasks)
        if layer.kind.has_weights:
            update.append(Task(f"{layer.name} update", layer.name, layer.kind.value, Phase.UPDATE,
                               launch + optimizer.passes * layer.weight_bytes() / dram_rate,
                               reads=(f"w:{layer.name}", f"dw:{layer.name}")
                               + ((f"v:{layer.name}",) if optimizer.keeps_state else ()), kernel="pool",
                               bound="dram-bandwidth"))
    outputs = [f"y:{name}" for name in sinks(workload)]
    out_bytes = sum(tensors[name].size_bytes for name in outputs)
    loss = Task("loss", "loss", "loss", Phase.BACKWARD, launch + LOSS_PASSES * out_bytes / dram_rate,
                reads=tuple(outputs), writes=tuple(_grad(name) for name in outputs), kernel="pool",
                bound="dram-bandwidth")
    ordered = forward + [loss] + [task for tasks in reversed(backward) for task in tasks] + update
    network_inputs = tuple(name for name, t in tensors.items() if t.on_host)
    copied = host_copies and profile.link is not None
    plan = StepPlan(tasks=tuple(ordered), tensors=tensors, persistent=tuple(persistent),
                    copy_in=network_inputs if copied else (), preloaded=() if copied else network_inputs)
    return replace(plan, offload=offload_set(plan, config.policy))


def offload_set(plan: StepPlan, policy: OffloadPolicy) -> frozenset[str]:
    """The feature maps ``policy`` moves to the host: layer inputs that backward reads again
    (all), or those among them that a convolution reads (conv)."""
    if policy is OffloadPolicy.BASE:
        return frozenset()
    read_forward: dict[str, set[str]] = {}
    read_backward: set[str] = set()
    for task in plan.tasks:
        for name in task.reads:
            if plan.tensors[name].kind is not TensorKind.FEATURE_MAP:
                continue
            if task.phase is Phase.FORWARD:
                read_forward.setdefault(name, set()).add(task.layer_kind)
            elif task.phase is Phase.BACKWARD:
                read_backward.add(name)
    chosen = {name for name, kinds in read_forward.items() if name in read_backward
              and (policy is OffloadPolicy.ALL or LayerKind.CONV.value in kinds)}
    return frozenset(chosen)


# --- policies --------------------------------------------------------------------------------------

def _verdict(outcome: StepOutcome) -> str:
    memory = outcome.memory
    oom = memory.out_of_memory
    if oom is None:                         # memory.fits
        return f"fits (peak {format_bytes(memory.peak_bytes)}, {format_seconds(outcome.total_s)})"
    return f"out of memory at {oom.tensor} ({oom.task}), over by {format_bytes(oom.over_bytes)}"


def search_dyn(workload: Workload, run_config: Callable[[TrainConfig], StepOutcome]
               ) -> tuple[TrainConfig, StepOutcome, list[str], bool]:
    """vDNN_dyn's search (``reference/vdnn.md``), returning the configuration taken, its run, the
    log of what was tried, and whether the network is trainable at all:

    1. all(m): offload everything, memory-optimal convolutions; if even that does not fit, the
       network cannot be trained on this device (this configuration is returned, out of memory);
    2. base(p): no offload, performance-optimal; taken if it fits;
    3. all(p): if it fits, 4. conv(p), which moves less over the link, is taken if it fits too,
       else all(p) (the summary lists all(p) then conv(p); conv(p) never fits where all(p) does not);
    5. otherwise from all(p), convolutions move to memory-optimal one at a time, the largest
       workspace (input) first, until the step fits.
    """
    log: list[str] = []

    def attempt(config: TrainConfig) -> StepOutcome:
        outcome = run_config(config)
        log.append(f"{config.label}: {_verdict(outcome)}")
        return outcome

    lean = uniform(workload, OffloadPolicy.ALL, ConvAlgorithm.MEMORY_OPTIMAL)
    lean_outcome = attempt(lean)
    if not lean_outcome.fits:
        return lean, lean_outcome, log, False
    base = uniform(workload, OffloadPolicy.BASE, ConvAlgorithm.PERFORMANCE_OPTIMAL)
    outcome = attempt(base)
    if outcome.fits:
        return base, outcome, log, True
    everything = uniform(workload, OffloadPolicy.ALL, ConvAlgorithm.PERFORMANCE_OPTIMAL)
    all_outcome = attempt(everything)
    if all_outcome.fits:
        convs = uniform(workload, OffloadPolicy.CONV, ConvAlgorithm.PERFORMANCE_OPTIMAL)
        outcome = attempt(convs)
        if outcome.fits:
            return convs, outcome, log, True
        return everything, all_outcome, log, True
    # the largest input first: the workspace is a multiple of it (ties in file order)
    order = sorted((l for l in workload.layers if l.kind is LayerKind.CONV), key=lambda l: -l.in_bytes(1))
    algorithms = dict(everything.algorithms)
    for layer in order:
        algorithms[layer.name] = ConvAlgorithm.MEMORY_OPTIMAL
        config = TrainConfig(OffloadPolicy.ALL, dict(algorithms))
        outcome = attempt(config)
        if outcome.fits:
            return config, outcome, log, True
    return lean, lean_outcome, log, True     # every layer memory-optimal is all(m), which fits


def check_training(profile: HardwareProfile, workload: Workload, policy: OffloadPolicy) -> None:
    """User errors of a training run, as one line naming the option or the profile field."""
    if profile.sparse_engine is not None or profile.tiled_engine is not None:
        raise OptionError("mode", f"{profile.name} is an inference engine; train runs on the "
                          "cache path (CPU / GPU profiles)")
    device_dram(profile)
    if policy is not OffloadPolicy.BASE and profile.link is None:
        raise OptionError("offload", f"{policy.value} moves feature maps over a host link; "
                          f"{profile.name} has none ({profile.path}: link)")
    if any(l.kind is LayerKind.CONV for l in workload.layers):
        _conv_algorithms(profile)


def device_dram(profile: HardwareProfile) -> Dram:
    """The profile's device memory, which a training run needs (its capacity and bandwidth); one
    :class:`ConfigError` naming the field when the profile has none."""
    if profile.dram is None:
        raise ConfigError(profile.path, "memory.dram", "missing: a training run needs a device memory capacity")
    return profile.dram


def _conv_algorithms(profile: HardwareProfile) -> ConvAlgorithms:
    """The profile's convolution algorithms, which a training run with convolutions needs."""
    if profile.conv_algorithms is None:
        raise ConfigError(profile.path, "conv_algorithms", "missing: a training run needs the convolution "
                          "algorithms' workspace and speed (see docs/train.md)")
    return profile.conv_algorithms


def train(profile: HardwareProfile, workload: Workload, batch: int, policy: OffloadPolicy,
          algorithm: ConvAlgorithm, simulate_at: Callable[[int], VariantResult], host_copies: bool = True,
          progress: Callable[[str], None] = lambda _: None,
          optimizer: Optimizer = Optimizer.MOMENTUM) -> list[VariantResult]:
    """The variants of a training run: base(p), vDNN's oracle with enough memory, then the
    requested policy (with ``algorithm`` for a static one; dyn picks its own)."""
    check_training(profile, workload, policy)
    progress("train: forward timing")
    timing, batches = forward_timing(workload, batch, simulate_at)
    capacity = device_dram(profile).capacity_bytes
    plans: dict[str, StepPlan] = {}

    def run_config(config: TrainConfig) -> StepOutcome:
        progress(f"train: {config.label}")
        plan = training_plan(profile, workload, batch, timing, config, host_copies, optimizer)
        plans[config.label] = plan
        return simulate_step(plan, profile.link, capacity)

    def variant(name: str, config: TrainConfig, outcome: StepOutcome, base_s: Optional[float],
                search: Sequence[str] = (), trainable: bool = True) -> VariantResult:
        info = TrainingInfo(policy=policy.value if name == "dyn" else config.policy.value,
                            conv_algorithm=config.conv_algorithm, memory_optimal_layers=config.memory_optimal_layers,
                            offloaded_tensors=sorted(plans[config.label].offload),
                            forward_s=outcome.phase_s(Phase.FORWARD), backward_s=outcome.phase_s(Phase.BACKWARD),
                            update_s=outcome.phase_s(Phase.UPDATE), trainable=trainable,
                            slowdown=None if base_s is None else outcome.total_s / base_s - 1.0, search=list(search),
                            timing_batches=batches, optimizer=optimizer.value)
        return step_variant(name, plans[config.label], outcome, info)

    reference = uniform(workload, OffloadPolicy.BASE, ConvAlgorithm.PERFORMANCE_OPTIMAL)
    base_outcome = run_config(reference)
    variants = [variant(reference.label, reference, base_outcome, None)]
    if policy is OffloadPolicy.DYN:
        config, outcome, log, trainable = search_dyn(workload, run_config)
        log.append(f"taken: {config.label}" if trainable else "not trainable on this device: even all(m) "
                   "runs out of memory")
        variants.append(variant("dyn", config, outcome, base_outcome.total_s, log, trainable))
    else:
        config = uniform(workload, policy, algorithm)
        if config.label != reference.label:
            outcome = run_config(config)
            variants.append(variant(config.label, config, outcome, base_outcome.total_s, trainable=outcome.fits))
    return variants


def step_variant(name: str, plan: StepPlan, outcome: StepOutcome, info: TrainingInfo) -> VariantResult:
    """A simulated step as a variant: one row per task (and the input copy), stalls included."""
    rows = []
    if outcome.copies_s[0] > 0:
        copied = sum(plan.tensors[n].size_bytes for n in plan.copy_in)
        rows.append(LayerResult("input (h2d)", "copy", None, outcome.copies_s[0], 0.0, 0.0, 0, 0, 0, copied, 0, {}, {},
                                {"link": outcome.copies_s[0]}, "link"))
    for timed in outcome.tasks:
        task = timed.task
        weights_read = sum(plan.tensors[n].size_bytes for n in task.reads if plan.tensors[n].kind is TensorKind.WEIGHTS)
        rows.append(LayerResult(task.name, task.layer_kind, task.kernel, timed.end_s - timed.start_s, timed.start_s,
                                task.flops, weights_read, 0, 0, timed.link_bytes, 0, {}, {},
                                {"compute": task.duration_s, "stall": timed.stall_s},
                                "link" if timed.stall_s > task.duration_s else task.bound))
    whole = network_wide(plan.tensors.values())
    info = replace(info, network_wide_bytes=sum(whole.values()), network_wide_by_kind=whole)
    return VariantResult(name, "dense", outcome.total_s, rows, memory=outcome.memory, pcie_h2d_bytes=outcome.h2d_bytes,
                         pcie_d2h_bytes=outcome.d2h_bytes, stall_s=outcome.stall_s, training=info,
                         timeline=outcome.timeline, memory_timeline=outcome.memory_timeline)


# --- report ----------------------------------------------------------------------------------------

def _step_parts(v: VariantResult) -> tuple[TrainingInfo, DeviceMemory]:
    """A training variant's step and device memory, which :func:`step_variant` always sets."""
    if v.training is None or v.memory is None:
        raise ValueError(f"variant {v.name} is not a simulated training step")
    return v.training, v.memory


def _link_columns(v: VariantResult) -> list[str]:
    """A training variant's host-link bytes each way and its stall, which :func:`step_variant` always sets."""
    if v.pcie_h2d_bytes is None or v.pcie_d2h_bytes is None or v.stall_s is None:
        raise ValueError(f"variant {v.name} is not a simulated training step")
    return [format_bytes(v.pcie_h2d_bytes), format_bytes(v.pcie_d2h_bytes), format_seconds(v.stall_s)]


def render_training(result: RunResult) -> str:
    """The text report of a training run: one row per variant, then each one's phases, what it
    held at its peak, and what dyn tried."""
    header = ["variant", "conv algorithms", "step", "slowdown", "peak memory", "avg memory", "PCIe h2d",
              "PCIe d2h", "stall", "fits"]
    rows = []
    for v in result.variants:
        info, memory = _step_parts(v)
        slowdown = "-" if info.slowdown is None else f"{100 * info.slowdown:+.1f}%"
        oom = memory.out_of_memory
        fits = "yes" if oom is None else f"no: over by {format_bytes(oom.over_bytes)}"
        rows.append([v.name, info.conv_algorithm, format_seconds(v.total_s), slowdown, format_bytes(memory.peak_bytes),
                     format_bytes(memory.avg_bytes), *_link_columns(v), fits])
    first_info, first_memory = _step_parts(result.variants[0])
    lines = [f"{result.workload} on {result.profile}: one training step, batch {result.batch}, "
             f"{first_info.optimizer} (device memory {format_bytes(first_memory.capacity_bytes)})", "",
             format_table(header, rows, right=range(2, 9))]
    for v in result.variants:
        info, memory = _step_parts(v)
        held = sorted(memory.peak_by_kind.items(), key=lambda kv: -kv[1])
        lines += ["", f"{v.name}: forward {format_seconds(info.forward_s)}, backward "
                      f"{format_seconds(info.backward_s)}, update {format_seconds(info.update_s)}; at the peak: "
                      + ", ".join(f"{kind} {format_bytes(size)}" for kind, size in held)]
        if memory.out_of_memory is not None:
            oom = memory.out_of_memory
            lines.append(f"  out of memory first at {oom.tensor} ({oom.tensor_kind}, "
                         f"{format_bytes(oom.requested_bytes)}) in {oom.task}, with {format_bytes(oom.live_bytes)} "
                         "already allocated")
        if info.conv_algorithm == "mixed":
            lines.append(f"  memory-optimal: {', '.join(info.memory_optimal_layers)}")
        lines += [f"  dyn: {step}" for step in info.search]
    return "\n".join(lines)
