"""Reports of the device-memory model: the link-level timeline (a training
step's compute, offload and prefetch streams and its stalls, or an inference's weight stream,
with allocated device memory as a counter), and the lines an inference report adds when its
weights had to stream or did not fit.

The events follow :mod:`simulator.output.timeline` (Chrome / Perfetto trace-event JSON, object format,
times in microseconds), which checks and writes the document: one process per variant, one
thread per stream.
"""

from __future__ import annotations

from typing import Any

from ..engine.results import RunResult, VariantResult

# Thread order in the viewer: what computes, what it waited for, then the two link directions.
TRACKS = ("compute", "stall", "offload (d2h)", "prefetch (h2d)", "weights (h2d)")


def variant_events(variant: VariantResult, pid: int, label: str) -> list[dict[str, Any]]:
    """The events of one variant's timeline under process ``pid`` (empty without a timeline)."""
    if not variant.timeline:
        return []
    events: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": label}}]
    used = [t for t in TRACKS if any(e.track == t for e in variant.timeline)]
    used += sorted({e.track for e in variant.timeline} - set(used))
    tids = {track: 100 + i for i, track in enumerate(used)}   # clear of the engine timeline's resource threads
    for track, tid in tids.items():
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": track}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    for e in variant.timeline:
        events.append({"name": e.name, "cat": e.track, "ph": "X", "pid": pid, "tid": tids[e.track],
                       "ts": max(0.0, e.start_s * 1e6), "dur": max(0.0, e.duration_s * 1e6), "args": dict(e.args)})
    for time_s, size in variant.memory_timeline:
        events.append({"name": "device memory", "ph": "C", "pid": pid, "ts": max(0.0, time_s * 1e6),
                       "args": {"allocated GiB": size / 2**30}})
    return events


def step_timeline(result: RunResult) -> dict[str, Any]:
    """The timeline document of a training run: one process per variant."""
    events: list[dict[str, Any]] = []
    for index, variant in enumerate(result.variants):
        events += variant_events(variant, index + 1, f"{variant.name} training step on {result.profile}")
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"source": "simulator run --mode train", "profile": result.profile,
                          "workload": result.workload, "batch": result.batch}}


def memory_lines(result: RunResult) -> list[str]:
    """Lines for an inference's text report where the device memory mattered: weights streamed
    over the link, or an allocation that did not fit (nothing when everything was resident)."""
    from ..base.units import format_bytes, format_seconds

    lines = []
    for v in result.variants:
        memory = v.memory
        if memory is None:
            continue
        if v.streaming is not None and v.stall_s is not None:     # offload.inference_memory sets both
            s = v.streaming
            lines.append(f"{v.name}: weights do not fit {format_bytes(memory.capacity_bytes)} beside the activations; "
                         f"{format_bytes(s.streamed_bytes)} streamed over the link into a "
                         f"{format_bytes(s.buffer_bytes)} buffer at an effective "
                         f"{s.effective_bandwidth_bytes_per_s / 1e9:.3g} GB/s, stalling {format_seconds(v.stall_s)}")
        if memory.out_of_memory is not None:
            oom = memory.out_of_memory
            lines.append(f"{v.name}: out of device memory: {oom.tensor} ({format_bytes(oom.requested_bytes)}) does "
                         f"not fit beside {format_bytes(oom.live_bytes)}; the run needs "
                         f"{format_bytes(oom.over_bytes)} more than {format_bytes(memory.capacity_bytes)}")
    return ([""] + lines) if lines else []
