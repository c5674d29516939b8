"""Device memory: the tensors of a run, when each is live, and the allocator that places them.

A run on a device is a sequence of :class:`Task` s (kernels on the compute stream, in order).
Each task names the tensors it reads, the tensors it writes (created by their first writer)
and its scratch workspace. What is live when follows from that list alone:

* a tensor is allocated by the task that first writes it (or, persistent, before the first
  task: weights and optimiser state) and released after the last task that touches it;
* a scratch tensor (a convolution's workspace) lives for its one task.

The task lists themselves come from the layer DAG (:mod:`simulator.engine.training` for a training
step, :func:`inference_tasks` here for an inference), so a tensor with several consumers stays
live until the last, and in training a forward feature map stays live until its last backward
use unless a policy moves it to the host (:mod:`simulator.engine.offload`).

:class:`DeviceAllocator` places tensors in one device heap by best fit with coalescing, the
way cnmem (vDNN's pool) does. An allocation that finds no room within the capacity is not an
error: the first one is recorded as the run's :class:`~simulator.engine.results.OutOfMemory` (which
tensor, how much) and the allocator lends itself the memory past the end of the heap, so the
run goes on and its peak says how much it would need.
"""

from __future__ import annotations

import enum
from bisect import insort
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from ..model.workload import LayerKind, Workload
from .results import DeviceMemory, LayerResult, OutOfMemory

ALIGNMENT_BYTES = 256        # cudaMalloc and cnmem hand out 256 B aligned blocks


class TensorKind(str, enum.Enum):
    """What a tensor holds (device memory is reported by kind)."""

    WEIGHTS = "weights"
    WEIGHT_GRADIENTS = "weight-gradients"
    OPTIMIZER_STATE = "optimizer-state"      # SGD momentum
    FEATURE_MAP = "feature-map"              # a layer's output, or a network input (vDNN's X / Y)
    GRADIENT_MAP = "gradient-map"            # the loss gradient of a feature map (vDNN's dX / dY)
    WORKSPACE = "workspace"                  # a convolution algorithm's scratch memory


class Placement(str, enum.Enum):
    """How the allocator places blocks in device memory."""

    BEST_FIT = "best-fit"   # one contiguous pool, best fit, coalescing (cnmem, vDNN's pool): holes strand memory
    PAGED = "paged"         # blocks mapped page by page (CUDA virtual memory): whatever the free bytes hold fits


class Phase(str, enum.Enum):
    """Which part of a run a task belongs to."""

    FORWARD = "forward"
    BACKWARD = "backward"
    UPDATE = "update"


@dataclass(frozen=True)
class Tensor:
    """One device buffer."""

    name: str
    kind: TensorKind
    size_bytes: int
    layer: str = ""                  # the layer it belongs to
    on_host: bool = False            # a copy already lives in host memory (a network input, streamed weights)


@dataclass(frozen=True)
class Task:
    """One kernel on the compute stream."""

    name: str                        # "conv1 fwd", "conv1 relu-bwd", "conv1 bwd", "conv1 update", "loss"
    layer: str
    layer_kind: str                  # conv, fc, ..., or loss
    phase: Phase
    duration_s: float
    reads: tuple[str, ...] = ()      # must be on the device when the task starts
    writes: tuple[str, ...] = ()     # created by their first writer (gradients accumulate)
    scratch: tuple[str, ...] = ()    # live for this task only
    flops: float = 0.0
    kernel: Optional[str] = None     # the kernel kind of a layer (conv, gemm, pool), for reports
    bound: str = "compute"           # the resource that decides its duration, for reports


@dataclass(frozen=True)
class Lifetime:
    """When a tensor is used, by task index."""

    first: int                       # first task that writes or reads it (-1: persistent)
    last: int                        # last task that touches it (len(tasks): persistent)
    forward_last: Optional[int]      # last forward task that reads it (None: no forward reader)
    backward_reads: tuple[int, ...]  # backward tasks that read it, in order


def lifetimes(tasks: Sequence[Task], persistent: Iterable[str] = ()) -> dict[str, Lifetime]:
    """Each tensor's first and last use in ``tasks`` (persistent tensors span the whole run)."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    forward_last: dict[str, int] = {}
    backward: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        for name in task.reads + task.writes + task.scratch:
            first.setdefault(name, i)
            last[name] = i
        for name in task.reads:
            if task.phase is Phase.FORWARD:
                forward_last[name] = i
            elif task.phase is Phase.BACKWARD:
                backward.setdefault(name, []).append(i)
    out = {name: Lifetime(first[name], last[name], forward_last.get(name), tuple(backward.get(name, ())))
           for name in first}
    for name in persistent:
        old = out.get(name)
        out[name] = Lifetime(-1, len(tasks), old.forward_last if old else None, old.backward_reads if old else ())
    return out


def network_wide(tensors: Iterable[Tensor]) -> dict[str, int]:
    """Bytes by kind that a network-wide allocation holds: every tensor for the whole run, as
    frameworks that keep each layer's buffers between steps do, with one shared workspace the
    size of the largest."""
    out: dict[str, int] = {}
    largest_workspace = 0
    for tensor in tensors:
        if tensor.kind is TensorKind.WORKSPACE:
            largest_workspace = max(largest_workspace, tensor.size_bytes)
        else:
            out[tensor.kind.value] = out.get(tensor.kind.value, 0) + tensor.size_bytes
    if largest_workspace:
        out[TensorKind.WORKSPACE.value] = largest_workspace
    return out


def _aligned(size_bytes: int) -> int:
    return max(ALIGNMENT_BYTES, -(-size_bytes // ALIGNMENT_BYTES) * ALIGNMENT_BYTES)


class DeviceAllocator:
    """Best-fit placement of tensors in one device heap, with coalescing of freed blocks.

    The heap is unbounded past ``capacity_bytes``: a block that only fits there is an
    out-of-memory (the first is recorded) but is placed all the same. Allocated bytes are
    integrated over time for the average, and sampled for the timeline. With
    :attr:`Placement.PAGED` there are no holes: a block is out of memory only when the
    allocated bytes would exceed the capacity.
    """

    def __init__(self, capacity_bytes: int, placement: Placement = Placement.BEST_FIT) -> None:
        self.capacity_bytes = int(capacity_bytes)
        self.placement = placement
        self._free: list[tuple[int, int]] = [(0, -1)]     # (offset, size) sorted; size -1: to infinity
        self._blocks: dict[str, tuple[int, int, Tensor]] = {}
        self.live_bytes = 0
        self._by_kind = {kind: 0 for kind in TensorKind}
        self.peak_bytes = 0
        self.peak_by_kind: dict[str, int] = {}
        self.footprint_bytes = 0
        self.out_of_memory: Optional[OutOfMemory] = None
        self._first_oom: Optional[tuple[Tensor, str, float, int]] = None
        self._clock = 0.0
        self._area = 0.0
        self._area_by_kind = {kind: 0.0 for kind in TensorKind}
        self.live_bytes_timeline: list[tuple[float, int]] = [(0.0, 0)]

    def holds(self, name: str) -> bool:
        """True while ``name`` is allocated."""
        return name in self._blocks

    def _advance(self, now: float) -> None:
        span = now - self._clock
        if span > 0:
            self._area += self.live_bytes * span
            for kind, size in self._by_kind.items():
                self._area_by_kind[kind] += size * span
            self._clock = now

    def allocate(self, tensor: Tensor, now: float, task: str) -> None:
        """Place ``tensor`` (best fit within the capacity, else past it: an out-of-memory)."""
        if tensor.name in self._blocks:
            raise ValueError(f"{tensor.name} is already allocated")
        self._advance(now)
        size = _aligned(tensor.size_bytes)
        if self.placement is Placement.PAGED:
            self._place(tensor, self.live_bytes, size, now, task)   # packed: the end is the bytes allocated
            return
        # room of each hole within the capacity (the unbounded tail counts up to the capacity)
        inside = [(room, off) for off, s in self._free
                  for room in [min(self.capacity_bytes, off + s if s >= 0 else self.capacity_bytes) - off]
                  if room >= size]
        if inside:
            _, offset = min(inside)                       # smallest hole that fits, then lowest address
        else:
            # nothing fits within the capacity: the lowest block (maybe the unbounded tail) that fits
            offset = next(off for off, s in self._free if s < 0 or s >= size)
        index = next(i for i, (off, _) in enumerate(self._free) if off == offset)
        block_size = self._free[index][1]
        del self._free[index]
        if block_size < 0:
            insort(self._free, (offset + size, -1))
        elif block_size > size:
            insort(self._free, (offset + size, block_size - size))
        self._place(tensor, offset, size, now, task)

    def _place(self, tensor: Tensor, offset: int, size: int, now: float, task: str) -> None:
        self._blocks[tensor.name] = (offset, size, tensor)
        self.live_bytes += size
        self._by_kind[tensor.kind] += size
        self.footprint_bytes = max(self.footprint_bytes, offset + size)
        if offset + size > self.capacity_bytes and self._first_oom is None:
            self._first_oom = (tensor, task, now, self.live_bytes - size)
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
            self.peak_by_kind = {k.value: v for k, v in self._by_kind.items() if v}
        self.live_bytes_timeline.append((now, self.live_bytes))

    def release(self, name: str, now: float) -> None:
        """Free ``name``'s block and merge it with free neighbours."""
        self._advance(now)
        offset, size, tensor = self._blocks.pop(name)
        self.live_bytes -= size
        self._by_kind[tensor.kind] -= size
        if self.placement is Placement.PAGED:
            self.live_bytes_timeline.append((now, self.live_bytes))
            return
        insort(self._free, (offset, size))
        merged: list[tuple[int, int]] = []
        for off, s in self._free:
            if merged and merged[-1][1] >= 0 and merged[-1][0] + merged[-1][1] == off:
                start, prev = merged.pop()
                merged.append((start, -1 if s < 0 else prev + s))
            else:
                merged.append((off, s))
        self._free = merged
        self.live_bytes_timeline.append((now, self.live_bytes))

    def result(self, end_s: float) -> DeviceMemory:
        """Peak, time-averaged use and the first out-of-memory, over [0, ``end_s``]."""
        self._advance(end_s)
        span = end_s if end_s > 0 else 1.0
        oom = None
        if self._first_oom is not None:
            tensor, task, when, live = self._first_oom
            oom = OutOfMemory(tensor=tensor.name, tensor_kind=tensor.kind.value, task=task, time_s=when,
                              requested_bytes=tensor.size_bytes, live_bytes=live, capacity_bytes=self.capacity_bytes,
                              over_bytes=self.footprint_bytes - self.capacity_bytes)
        return DeviceMemory(capacity_bytes=self.capacity_bytes, peak_bytes=self.peak_bytes,
                            avg_bytes=self._area / span, footprint_bytes=self.footprint_bytes,
                            peak_by_kind=dict(self.peak_by_kind),
                            avg_by_kind={k.value: v / span for k, v in self._area_by_kind.items() if v},
                            out_of_memory=oom)


# --- inference ------------------------------------------------------------------------------------

def feature_map(workload: Workload, name: str, batch: int) -> Tensor:
    """The output of layer ``name`` at ``batch``."""
    return Tensor(f"y:{name}", TensorKind.FEATURE_MAP, workload.layer(name).out_bytes(batch), name)


def layer_inputs(workload: Workload, name: str, batch: int) -> list[Tensor]:
    """The feature maps layer ``name`` reads: its predecessors' outputs, or its own network input."""
    preds = workload.predecessors(name)
    if preds:
        return [feature_map(workload, p, batch) for p in preds]
    layer = workload.layer(name)
    return [Tensor(f"x:{name}", TensorKind.FEATURE_MAP, layer.in_bytes(batch), name, on_host=True)]


def weights(workload: Workload, name: str, size_bytes: Optional[int] = None) -> Optional[Tensor]:
    """Layer ``name``'s weights (``size_bytes``: their encoded size; default dense), or None."""
    layer = workload.layer(name)
    if not layer.kind.has_weights:
        return None
    size = layer.weight_bytes() if size_bytes is None else size_bytes
    return Tensor(f"w:{name}", TensorKind.WEIGHTS, size, name, on_host=True)


def sinks(workload: Workload) -> list[str]:
    """Layers whose output nothing reads: the network's outputs."""
    return workload.sinks()


def inference_tasks(workload: Workload, variant_layers: Sequence[LayerResult], batch: int,
                    weight_bytes: dict[str, int]) -> tuple[list[Task], dict[str, Tensor]]:
    """The compute-stream tasks of one inference, timed by the engine's per-layer results, and
    every tensor they use (weights at their encoded size)."""
    tensors: dict[str, Tensor] = {}
    tasks = []
    by_name = {l.name: l for l in variant_layers}
    for layer in workload.layers:
        inputs = layer_inputs(workload, layer.name, batch)
        output = feature_map(workload, layer.name, batch)
        w = weights(workload, layer.name, weight_bytes.get(layer.name))
        reads = [t.name for t in inputs] + ([w.name] if w else [])
        for t in inputs + [output] + ([w] if w else []):
            tensors[t.name] = t
        result = by_name[layer.name]
        tasks.append(Task(f"{layer.name}", layer.name, layer.kind.value, Phase.FORWARD, result.time_s,
                          reads=tuple(reads), writes=(output.name,), flops=result.flops, kernel=result.kernel))
    return tasks, tensors


def is_relu_layer(kind: LayerKind, relu: bool) -> bool:
    """True for a layer followed by a ReLU (conv, FC, add with ``relu`` set; see the workload docs)."""
    return relu and (kind.has_weights or kind is LayerKind.ADD)
