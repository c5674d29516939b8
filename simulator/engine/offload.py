"""The host link at work: vDNN's offload and prefetch of feature maps, and weight streaming.

One SimPy model serves both uses (:func:`simulate_step`). Its processes:

* the **compute stream** runs a run's :class:`~simulator.engine.device_memory.Task` s in order, each for its
  duration (from the engine's per-layer simulation); before a task starts, every tensor it
  reads must be on the device, and waiting for one is *stall*;
* the **link** (:class:`LinkStreams`) moves tensors host-to-device (h2d) and device-to-host
  (d2h), one transfer at a time per direction: with two or more copy engines the directions
  run at once (full duplex, as on GeForce/Tesla GPUs), with one they share it. A transfer
  takes the link's latency plus bytes over its per-direction bandwidth;
* **offload** (vDNN, Rhu et al. 2016): a feature map chosen by the policy starts its d2h copy
  when its first forward reader starts, overlapping that layer's compute; when its last
  forward reader ends, compute waits for the copy (vDNN's synchronisation) and the device
  copy is freed. A network input already lives on the host, so it is dropped without a copy;
* **prefetch**: when a backward kernel starts, the offloaded feature maps the next kernel
  reads are copied back h2d, into memory allocated when the copy is issued (vDNN's one-layer
  sliding window; each kernel counts as a layer, a ReLU's backward too, as in the frameworks
  vDNN ran on; :class:`PrefetchWindow`); a kernel that finds its data still in flight, or
  never asked for, stalls;
* **weight streaming** (inference with weights that do not fit): a streamer process copies
  each layer's (encoded) weights h2d in layer order, as far ahead as a weight buffer of
  ``stream_buffer_bytes`` allows; a layer's weights are freed after its kernel.

Every allocation and release goes through one :class:`~simulator.engine.device_memory.DeviceAllocator`,
so peak and average device memory and an out-of-memory are results of the run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping, Optional, Sequence

import simpy

from .device_memory import (DeviceAllocator, Lifetime, Phase, Placement, Task, Tensor, TensorKind, inference_tasks,
                     lifetimes, sinks)
from ..hardware.profile import HardwareProfile, Link
from ..model.workload import Workload
from .results import DeviceMemory, TimelineEvent, VariantResult, WeightStreaming


class OffloadPolicy(str, enum.Enum):
    """Which feature maps a training step moves to host memory (vDNN's policies)."""

    BASE = "base"      # everything stays on the device
    ALL = "all"        # every layer's input feature maps that backward needs
    CONV = "conv"      # the input feature maps of convolutions only
    DYN = "dyn"        # chosen per network by vDNN's search (see simulator.engine.training)


class PrefetchWindow(str, enum.Enum):
    """When a backward kernel starts, whose offloaded feature maps to copy back."""

    NEXT = "next"          # the next kernel's: vDNN's one-layer sliding window (the default)
    CLOSEST = "closest"    # the closest kernel ahead that reads any: earlier copies, more memory held


class Direction(str, enum.Enum):
    """Direction of a host-link transfer."""

    H2D = "h2d"
    D2H = "d2h"


class LinkStreams:
    """The host link as copy streams: one per direction with two or more copy engines, else one."""

    def __init__(self, env: simpy.Environment, link: Link) -> None:
        self.env = env
        self.link = link
        h2d = simpy.Resource(env, capacity=1)
        d2h = simpy.Resource(env, capacity=1) if link.copy_engines >= 2 else h2d
        self._streams = {Direction.H2D: h2d, Direction.D2H: d2h}
        self.busy_s = 0.0
        self.bytes = {Direction.H2D: 0, Direction.D2H: 0}

    def seconds(self, size_bytes: int) -> float:
        """Duration of one transfer: latency plus bytes over the per-direction bandwidth."""
        return self.link.latency_s + size_bytes / self.link.bandwidth_bytes_per_s

    def copy(self, direction: Direction, size_bytes: int, events: list[TimelineEvent], track: str,
             name: str) -> Iterator[simpy.Event]:
        """Move ``size_bytes`` in ``direction`` (waits its turn on the stream); records the slice."""
        with self._streams[direction].request() as request:
            yield request
            start = float(self.env.now)
            seconds = self.seconds(size_bytes)
            yield self.env.timeout(seconds)
        self.busy_s += seconds
        self.bytes[direction] += size_bytes
        events.append(TimelineEvent(track, name, start, seconds, {"bytes": size_bytes}))


@dataclass(frozen=True)
class StepPlan:
    """What :func:`simulate_step` runs: the tasks, their tensors and what the link does with them."""

    tasks: tuple[Task, ...]
    tensors: Mapping[str, Tensor]
    persistent: tuple[str, ...] = ()      # allocated before the first task, kept to the end
    offload: frozenset[str] = frozenset()  # feature maps moved to the host after their last forward read
    copy_in: tuple[str, ...] = ()         # copied h2d before the first task (the network inputs)
    preloaded: tuple[str, ...] = ()       # on the device at the start without a copy, freed after their last use
    copy_out: tuple[str, ...] = ()        # copied d2h after the last task (an inference's outputs)
    streamed: tuple[str, ...] = ()        # streamed h2d ahead of their first reader, freed after the last


@dataclass(frozen=True)
class TaskTiming:
    """When one task ran: ``start_s`` is when it was due, ``stall_s`` how long it waited for the link."""

    task: Task
    start_s: float
    end_s: float
    stall_s: float
    link_bytes: int = 0                   # bytes of the transfers this task started


@dataclass(frozen=True)
class StepOutcome:
    """What one simulated run did."""

    total_s: float
    memory: DeviceMemory
    h2d_bytes: int
    d2h_bytes: int
    stall_s: float
    link_busy_s: float
    tasks: tuple[TaskTiming, ...]
    copies_s: tuple[float, float]         # time spent on copy_in before, and copy_out after, the tasks
    timeline: tuple[TimelineEvent, ...] = field(repr=False, default=())
    memory_trace: tuple[tuple[float, int], ...] = field(repr=False, default=())

    @property
    def fits(self) -> bool:
        """True when no allocation overflowed the device."""
        return self.memory.fits

    def phase_s(self, phase: Phase) -> float:
        """Compute-stream time of one phase, stalls included."""
        return sum(t.end_s - t.start_s for t in self.tasks if t.task.phase is phase)


def simulate_step(plan: StepPlan, link: Optional[Link], capacity_bytes: int,
                  stream_buffer_bytes: Optional[int] = None, window: PrefetchWindow = PrefetchWindow.NEXT,
                  placement: Placement = Placement.BEST_FIT) -> StepOutcome:
    """Run ``plan`` on a device of ``capacity_bytes`` with ``link`` (see the module docstring).

    Offloading, prefetching, copies and streaming need a link; without one the plan may use
    none of them.
    """
    if link is None and (plan.offload or plan.copy_in or plan.copy_out or plan.streamed):
        raise ValueError("offload, copies and streaming need a host link")
    env = simpy.Environment()
    allocator = DeviceAllocator(capacity_bytes, placement)
    streams = LinkStreams(env, link) if link is not None else None
    tasks = plan.tasks
    life = lifetimes(tasks, plan.persistent)
    for name in plan.offload:
        if not life[name].backward_reads or life[name].forward_last is None:
            raise ValueError(f"{name}: only a feature map read in forward and again in backward is offloaded")
    events: list[TimelineEvent] = []
    arrival: dict[str, simpy.Event] = {}          # tensors on their way to the device
    offloaded: dict[str, simpy.Event] = {}        # d2h copies in flight or done
    timings: list[TaskTiming] = []
    stall = [0.0]
    copies = [0.0, 0.0]
    first_forward = _first_forward_reads(tasks)
    fetch_groups = _prefetch_groups(tasks, plan.offload, life, window)
    issued: set[str] = set()
    started_bytes = [0]

    def allocate(name: str, task: str) -> None:
        allocator.allocate(plan.tensors[name], float(env.now), task)

    def release(name: str) -> None:
        if allocator.holds(name):
            allocator.release(name, float(env.now))

    def prefetch(name: str, why: str) -> None:
        """Allocate ``name`` now and copy it back h2d."""
        issued.add(name)
        allocate(name, why)
        done = env.event()
        arrival[name] = done
        started_bytes[0] += plan.tensors[name].size_bytes

        def run() -> Iterator[simpy.Event]:
            yield env.process(streams.copy(Direction.H2D, plan.tensors[name].size_bytes, events,
                                           "prefetch (h2d)", name))
            done.succeed()

        env.process(run())

    def offload(name: str) -> None:
        """Start moving ``name`` to the host (nothing to move if the host already has it)."""
        done = env.event()
        offloaded[name] = done
        tensor = plan.tensors[name]
        if tensor.on_host:
            done.succeed()
            return
        started_bytes[0] += tensor.size_bytes

        def run() -> Iterator[simpy.Event]:
            yield env.process(streams.copy(Direction.D2H, tensor.size_bytes, events, "offload (d2h)", name))
            done.succeed()

        env.process(run())

    budget = None
    if plan.streamed:
        largest = max(plan.tensors[n].size_bytes for n in plan.streamed)
        # a buffer smaller than one layer's weights still streams that layer alone (the allocator
        # then records the out-of-memory)
        budget = simpy.Container(env, capacity=max(stream_buffer_bytes or 0, largest),
                                 init=max(stream_buffer_bytes or 0, largest))
        for name in plan.streamed:
            arrival[name] = env.event()

    def streamer() -> Iterator[simpy.Event]:
        for name in plan.streamed:      # in the order of their first reader
            size = plan.tensors[name].size_bytes
            yield budget.get(size)
            allocate(name, "weight stream")
            yield env.process(streams.copy(Direction.H2D, size, events, "weights (h2d)", name))
            arrival[name].succeed()

    def compute() -> Iterator[simpy.Event]:
        for name in plan.persistent + plan.preloaded:
            allocate(name, "set-up")
        begin = float(env.now)
        for name in plan.copy_in:
            allocate(name, "input copy")
            yield env.process(streams.copy(Direction.H2D, plan.tensors[name].size_bytes, events, "prefetch (h2d)",
                                           f"input {name}"))
        copies[0] = float(env.now) - begin
        if plan.streamed:
            env.process(streamer())
        for i, task in enumerate(tasks):
            due = float(env.now)
            started_bytes[0] = 0
            if task.phase is Phase.BACKWARD:
                for name in task.reads:          # late: needed now, not yet asked for
                    if name in plan.offload and name not in issued and not allocator.holds(name):
                        prefetch(name, f"prefetch for {task.name}")
            waiting = [arrival[n] for n in task.reads if n in arrival and not arrival[n].triggered]
            if waiting:
                yield simpy.AllOf(env, waiting)
            for name in first_forward.get(i, ()):
                if name in plan.offload:
                    offload(name)
            for name in task.writes + task.scratch:
                if not allocator.holds(name):
                    allocate(name, task.name)
            # the kernel's own buffers first, then the copy for the layer ahead, overlapping the kernel
            for name in fetch_groups.get(i, ()):
                if name not in issued:
                    prefetch(name, f"prefetch during {task.name}")
            for name in task.reads:
                if not allocator.holds(name):
                    raise AssertionError(f"{task.name} reads {name}, which is not on the device")
            waited = float(env.now) - due
            start = float(env.now)
            yield env.timeout(task.duration_s)
            events.append(TimelineEvent("compute", task.name, start, task.duration_s,
                                        {"phase": task.phase.value, "flops": task.flops}))
            for name in task.scratch:
                release(name)
            sync_from = float(env.now)
            for name in task.reads:
                if name in plan.offload and life[name].forward_last == i:
                    yield offloaded[name]        # vDNN waits for the offload before freeing
                    release(name)
            synced = float(env.now) - sync_from
            for name in dict.fromkeys(task.reads + task.writes):   # ordered: placement must not vary
                if life[name].last == i and name not in plan.persistent and name not in plan.copy_out:
                    release(name)
                    if budget is not None and name in plan.streamed:
                        yield budget.put(plan.tensors[name].size_bytes)
            if waited > 0:
                events.append(TimelineEvent("stall", f"wait: {task.name}", due, waited, {}))
            if synced > 0:
                events.append(TimelineEvent("stall", f"offload sync: {task.name}", sync_from, synced, {}))
            stall[0] += waited + synced
            timings.append(TaskTiming(task, due, float(env.now), waited + synced, started_bytes[0]))
        begin = float(env.now)
        for name in plan.copy_out:
            yield env.process(streams.copy(Direction.D2H, plan.tensors[name].size_bytes, events, "offload (d2h)",
                                           f"output {name}"))
            release(name)
        copies[1] = float(env.now) - begin

    env.process(compute())
    env.run()
    total = float(env.now)
    memory = allocator.result(total)
    return StepOutcome(
        total_s=total, memory=memory,
        h2d_bytes=streams.bytes[Direction.H2D] if streams else 0,
        d2h_bytes=streams.bytes[Direction.D2H] if streams else 0,
        stall_s=stall[0], link_busy_s=streams.busy_s if streams else 0.0, tasks=tuple(timings),
        copies_s=(copies[0], copies[1]), timeline=tuple(sorted(events, key=lambda e: (e.start_s, e.track))),
        memory_trace=tuple(allocator.trace))


def _first_forward_reads(tasks: Sequence[Task]) -> dict[int, list[str]]:
    """Task index -> tensors that task is the first forward reader of (where offloads start)."""
    seen: set[str] = set()
    out: dict[int, list[str]] = {}
    for i, task in enumerate(tasks):
        if task.phase is not Phase.FORWARD:
            continue
        for name in task.reads:
            if name not in seen:
                seen.add(name)
                out.setdefault(i, []).append(name)
    return out


def _prefetch_groups(tasks: Sequence[Task], offload: frozenset[str], life: Mapping[str, Lifetime],
                     window: PrefetchWindow) -> dict[int, list[str]]:
    """Backward task index -> offloaded tensors to prefetch when it starts (see :class:`PrefetchWindow`).

    Each backward task is a layer of the window, as each is a layer of its own in the frameworks
    vDNN ran on (a ReLU's backward too).
    """
    backward = [i for i, task in enumerate(tasks) if task.phase is Phase.BACKWARD]
    first_reads: list[list[str]] = []                 # per backward task: offloaded tensors it reads first
    for i in backward:
        first_reads.append([name for name in dict.fromkeys(tasks[i].reads)
                            if name in offload and life[name].backward_reads[:1] == (i,)])
    out: dict[int, list[str]] = {}
    for position, i in enumerate(backward):
        ahead = first_reads[position + 1:]
        if window is PrefetchWindow.CLOSEST:
            ahead = [group for group in ahead if group]
        if ahead and ahead[0]:
            out[i] = list(ahead[0])
    return out


# --- inference ------------------------------------------------------------------------------------

def inference_memory(profile: HardwareProfile, workload: Workload, variant: VariantResult, batch: int,
                     host_copies: bool) -> VariantResult:
    """``variant`` (an inference timed by the engine) with its device memory, re-timed with its
    weights streamed over the link if they do not fit beside the activations.

    Resident weights are on the device before the inference starts (as the engine assumes); an
    activation lives from its layer to its last reader (a network output until its copy to the
    host). When that does not fit and the device has a host link, each layer's encoded weights
    stream h2d ahead of its kernel, into the memory the activations leave free (their peak), and
    the layers are re-timed by :func:`simulate_step`. Kernel times are the engine's: the DMA's
    writes into device DRAM (a few percent of its bandwidth) are not charged to them.
    """
    if profile.dram is None:
        return variant
    layers = [l for l in variant.layers if l.kind != "copy"]
    weight_bytes = {l.name: l.weight_bytes for l in layers}
    tasks, tensors = inference_tasks(workload, layers, batch, weight_bytes)
    weight_names = tuple(n for n, t in tensors.items() if t.kind is TensorKind.WEIGHTS)
    link = profile.link if host_copies else None
    inputs = tuple(n for n, t in tensors.items() if t.on_host and t.kind is TensorKind.FEATURE_MAP)
    copy_in, preloaded = (inputs, ()) if link else ((), inputs)
    copy_out = tuple(f"y:{name}" for name in sinks(workload)) if link else ()
    capacity = profile.dram.capacity_bytes
    resident = StepPlan(tuple(tasks), tensors, persistent=weight_names, copy_in=copy_in, copy_out=copy_out,
                        preloaded=preloaded)
    outcome = simulate_step(resident, link, capacity)
    if outcome.fits or profile.link is None:
        return replace(variant, memory=outcome.memory, pcie_h2d_bytes=outcome.h2d_bytes,
                       pcie_d2h_bytes=outcome.d2h_bytes, stall_s=0.0)
    # the activations alone: what the weight buffer must leave room for
    bare = tuple(replace(t, reads=tuple(r for r in t.reads if r not in weight_names)) for t in tasks)
    activations = simulate_step(StepPlan(bare, tensors, copy_in=copy_in, copy_out=copy_out, preloaded=preloaded),
                                link, capacity)
    buffer_bytes = max(0, capacity - activations.memory.peak_bytes)
    order = dict.fromkeys(name for task in tasks for name in task.reads if name in weight_names)
    streamed = StepPlan(tuple(tasks), tensors, copy_in=copy_in, copy_out=copy_out, preloaded=preloaded,
                        streamed=tuple(order))
    outcome = simulate_step(streamed, profile.link, capacity, stream_buffer_bytes=buffer_bytes)
    by_layer = {t.task.layer: t for t in outcome.tasks}
    rows = []
    for layer in variant.layers:
        if layer.kind == "copy":
            start = 0.0 if layer.name.startswith("input") else outcome.total_s - outcome.copies_s[1]
            rows.append(replace(layer, start_s=start))
            continue
        timed = by_layer[layer.name]
        bound = "link" if timed.stall_s > timed.task.duration_s else layer.bound
        rows.append(replace(layer, start_s=timed.start_s, time_s=timed.end_s - timed.start_s,
                            busy_s={**layer.busy_s, "stall": timed.stall_s}, bound=bound,
                            link_bytes=weight_bytes.get(layer.name, 0)))
    streamed_bytes = sum(tensors[n].size_bytes for n in streamed.streamed)
    streaming = WeightStreaming(streamed_bytes=streamed_bytes, buffer_bytes=buffer_bytes,
                                effective_bandwidth_bytes_per_s=streamed_bytes / outcome.total_s,
                                link_busy_s=outcome.link_busy_s)
    return replace(variant, total_s=outcome.total_s, layers=rows, memory=outcome.memory,
                   pcie_h2d_bytes=outcome.h2d_bytes, pcie_d2h_bytes=outcome.d2h_bytes, stall_s=outcome.stall_s,
                   streaming=streaming, timeline=outcome.timeline, memory_trace=outcome.memory_trace)
