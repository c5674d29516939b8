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
from typing import Any, Generator, Mapping, Optional, Sequence

import simpy

from ..hardware.profile import HardwareProfile, Link
from ..model.workload import Workload
from .device_memory import (
    DeviceAllocator,
    Lifetime,
    Phase,
    Placement,
    Task,
    Tensor,
    TensorKind,
    inference_tasks,
    lifetimes,
    sinks,
)
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
             name: str) -> Generator[simpy.Event, Any, None]:
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
    memory_timeline: tuple[tuple[float, int], ...] = field(repr=False, default=())

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
    life = lifetimes(plan.tasks, plan.persistent)
    for name in plan.offload:
        if not life[name].backward_reads or life[name].forward_last is None:
            raise ValueError(f"{name}: only a feature map read in forward and again in backward is offloaded")
    return _Step(plan, link, capacity_bytes, stream_buffer_bytes, window, placement, life).run()


class _Step:
    """One run of :func:`simulate_step`: the shared state, and the SimPy processes as methods
    (:meth:`compute`, :meth:`streamer`, the copies started by :meth:`prefetch` and :meth:`offload`)."""

    def __init__(self, plan: StepPlan, link: Optional[Link], capacity_bytes: int,
                 stream_buffer_bytes: Optional[int], window: PrefetchWindow, placement: Placement,
                 life: Mapping[str, Lifetime]) -> None:
        self.plan = plan
        self.env = simpy.Environment()
        self.allocator = DeviceAllocator(capacity_bytes, placement)
        self.streams = LinkStreams(self.env, link) if link is not None else None
        self.life = life
        self.events: list[TimelineEvent] = []
        self.arrival: dict[str, simpy.Event] = {}      # tensors on their way to the device
        self.offloaded: dict[str, simpy.Event] = {}    # d2h copies in flight or done
        self.timings: list[TaskTiming] = []
        self.stall_s = 0.0
        self.copies_s = [0.0, 0.0]                     # copy_in before, copy_out after the tasks
        self.first_forward = _first_forward_reads(plan.tasks)
        self.fetch_groups = _prefetch_groups(plan.tasks, plan.offload, life, window)
        self.issued: set[str] = set()                  # offloaded tensors whose copy back was started
        self.started_bytes = 0                         # link bytes started during the current task
        self.budget: Optional[simpy.Container] = None  # the weight-stream buffer
        if plan.streamed:
            largest = max(plan.tensors[n].size_bytes for n in plan.streamed)
            # a buffer smaller than one layer's weights still streams that layer alone (the allocator
            # then records the out-of-memory)
            size = max(stream_buffer_bytes or 0, largest)
            self.budget = simpy.Container(self.env, capacity=size, init=size)
            for name in plan.streamed:
                self.arrival[name] = self.env.event()

    def run(self) -> StepOutcome:
        """Simulate to the end and collect the outcome."""
        self.env.process(self.compute())
        self.env.run()
        total = float(self.env.now)
        streams = self.streams
        return StepOutcome(
            total_s=total, memory=self.allocator.result(total),
            h2d_bytes=streams.bytes[Direction.H2D] if streams else 0,
            d2h_bytes=streams.bytes[Direction.D2H] if streams else 0,
            stall_s=self.stall_s, link_busy_s=streams.busy_s if streams else 0.0, tasks=tuple(self.timings),
            copies_s=(self.copies_s[0], self.copies_s[1]),
            timeline=tuple(sorted(self.events, key=lambda e: (e.start_s, e.track))),
            memory_timeline=tuple(self.allocator.live_bytes_timeline))

    def allocate(self, name: str, task: str) -> None:
        """Place ``name`` on the device now, on behalf of ``task``."""
        self.allocator.allocate(self.plan.tensors[name], float(self.env.now), task)

    def release(self, name: str) -> None:
        """Free ``name`` if the device holds it."""
        if self.allocator.holds(name):
            self.allocator.release(name, float(self.env.now))

    def _copy(self, direction: Direction, size_bytes: int, track: str, name: str) -> simpy.Process:
        assert self.streams is not None
        return self.env.process(self.streams.copy(direction, size_bytes, self.events, track, name))

    def _copy_then(self, done: simpy.Event, direction: Direction, size_bytes: int, track: str,
                   name: str) -> Generator[simpy.Event, Any, None]:
        yield self._copy(direction, size_bytes, track, name)
        done.succeed()

    def prefetch(self, name: str, why: str) -> None:
        """Allocate ``name`` now and copy it back h2d."""
        self.issued.add(name)
        self.allocate(name, why)
        done = self.env.event()
        self.arrival[name] = done
        size = self.plan.tensors[name].size_bytes
        self.started_bytes += size
        self.env.process(self._copy_then(done, Direction.H2D, size, "prefetch (h2d)", name))

    def offload(self, name: str) -> None:
        """Start moving ``name`` to the host (nothing to move if the host already has it)."""
        done = self.env.event()
        self.offloaded[name] = done
        tensor = self.plan.tensors[name]
        if tensor.on_host:
            done.succeed()
            return
        self.started_bytes += tensor.size_bytes
        self.env.process(self._copy_then(done, Direction.D2H, tensor.size_bytes, "offload (d2h)", name))

    def streamer(self) -> Generator[simpy.Event, Any, None]:
        """Copy the streamed weights h2d in the order of their first reader, as the buffer allows."""
        assert self.budget is not None
        for name in self.plan.streamed:
            size = self.plan.tensors[name].size_bytes
            yield self.budget.get(size)
            self.allocate(name, "weight stream")
            yield self._copy(Direction.H2D, size, "weights (h2d)", name)
            self.arrival[name].succeed()

    def compute(self) -> Generator[simpy.Event, Any, None]:
        """The compute stream: set-up and input copies, every task in order, the output copies."""
        plan = self.plan
        for name in plan.persistent + plan.preloaded:
            self.allocate(name, "set-up")
        begin = float(self.env.now)
        for name in plan.copy_in:
            self.allocate(name, "input copy")
            yield self._copy(Direction.H2D, plan.tensors[name].size_bytes, "prefetch (h2d)", f"input {name}")
        self.copies_s[0] = float(self.env.now) - begin
        if plan.streamed:
            self.env.process(self.streamer())
        for i, task in enumerate(plan.tasks):
            yield from self.task(i, task)
        begin = float(self.env.now)
        for name in plan.copy_out:
            yield self._copy(Direction.D2H, plan.tensors[name].size_bytes, "offload (d2h)", f"output {name}")
            self.release(name)
        self.copies_s[1] = float(self.env.now) - begin

    def task(self, i: int, task: Task) -> Generator[simpy.Event, Any, None]:
        """Task ``i``: wait for its inputs, start offloads and prefetches, run it, free what it ends."""
        due = float(self.env.now)
        self.started_bytes = 0
        yield from self._wait_for_inputs(i, task)
        waited = float(self.env.now) - due
        start = float(self.env.now)
        yield self.env.timeout(task.duration_s)
        self.events.append(TimelineEvent("compute", task.name, start, task.duration_s,
                                         {"phase": task.phase.value, "flops": task.flops}))
        for name in task.scratch:
            self.release(name)
        sync_from = float(self.env.now)
        yield from self._release_after(i, task)
        synced = float(self.env.now) - sync_from
        if waited > 0:
            self.events.append(TimelineEvent("stall", f"wait: {task.name}", due, waited, {}))
        if synced > 0:
            self.events.append(TimelineEvent("stall", f"offload sync: {task.name}", sync_from, synced, {}))
        self.stall_s += waited + synced
        self.timings.append(TaskTiming(task, due, float(self.env.now), waited + synced, self.started_bytes))

    def _wait_for_inputs(self, i: int, task: Task) -> Generator[simpy.Event, Any, None]:
        plan, allocator = self.plan, self.allocator
        if task.phase is Phase.BACKWARD:
            for name in task.reads:          # late: needed now, not yet asked for
                if name in plan.offload and name not in self.issued and not allocator.holds(name):
                    self.prefetch(name, f"prefetch for {task.name}")
        waiting = [self.arrival[n] for n in task.reads if n in self.arrival and not self.arrival[n].triggered]
        if waiting:
            yield simpy.AllOf(self.env, waiting)
        for name in self.first_forward.get(i, ()):
            if name in plan.offload:
                self.offload(name)
        for name in task.writes + task.scratch:
            if not allocator.holds(name):
                self.allocate(name, task.name)
        # the kernel's own buffers first, then the copy for the layer ahead, overlapping the kernel
        for name in self.fetch_groups.get(i, ()):
            if name not in self.issued:
                self.prefetch(name, f"prefetch during {task.name}")
        for name in task.reads:
            if not allocator.holds(name):
                raise AssertionError(f"{task.name} reads {name}, which is not on the device")

    def _release_after(self, i: int, task: Task) -> Generator[simpy.Event, Any, None]:
        plan, life = self.plan, self.life
        for name in task.reads:
            if name in plan.offload and life[name].forward_last == i:
                yield self.offloaded[name]        # vDNN waits for the offload before freeing
                self.release(name)
        for name in dict.fromkeys(task.reads + task.writes):   # ordered: placement must not vary
            if life[name].last == i and name not in plan.persistent and name not in plan.copy_out:
                self.release(name)
                if self.budget is not None and name in plan.streamed:
                    yield self.budget.put(plan.tensors[name].size_bytes)


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
                   streaming=streaming, timeline=outcome.timeline, memory_timeline=outcome.memory_timeline)
