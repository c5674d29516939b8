"""Timelines as Chrome / Perfetto trace-event JSON: the simulated one and the measured one.

A *timeline* is what happened when, on which resource (the project's glossary,
docs/architecture.md); "trace-event" is only the name of the file format here.

``run --timeline FILE`` writes the simulated timeline: one process per variant (dense, pruned),
one thread per resource (layer, launch, compute, each cache level, DRAM, link), one complete
event ("ph": "X") per busy interval the engine recorded. ``bench --timeline FILE`` writes what
``torch.profiler`` saw in the same format, so both open in https://ui.perfetto.dev or
chrome://tracing side by side.

The format (the "JSON Object Format" of the Trace Event Format document): a top-level object
with a ``traceEvents`` list; times in microseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..base.errors import ConfigError, OptionError
from ..base.version import document_header
from ..engine.core import Interval
from ..engine.results import RunResult

# Thread order in the viewer: the layer row first, then from the core outwards to memory.
_FIXED_ORDER = ["layer", "launch", "page-faults", "compute", "row-latency", "gather-wait"]
_TAIL_ORDER = ["dram-bandwidth", "dram-latency", "dram-row-starts", "dram-channel", "stream-latency", "gather-latency",
               "link"]


def _thread_ids(resources: Sequence[str]) -> dict[str, int]:
    middle = [r for r in resources if r not in _FIXED_ORDER and r not in _TAIL_ORDER]
    ordered = [r for r in _FIXED_ORDER if r in resources] + middle + [r for r in _TAIL_ORDER if r in resources]
    return {name: i + 1 for i, name in enumerate(ordered)}


def assign_calls(result: RunResult, calls: list[list[Interval]]) -> list[tuple[int, float, list[Interval]]]:
    """(variant index, time offset, intervals) per recorded engine call.

    The pipeline simulates variants in order, each in one engine call (network mode) or one call
    per layer (layer mode), and shifts layer-mode layers to follow each other; the offset puts a
    call's intervals at the start its layers have in ``result``.
    """
    out = []
    variant = 0
    seen: set[str] = set()
    for intervals in calls:
        if variant >= len(result.variants):
            break
        layers = {l.name: l for l in result.variants[variant].layers}
        marks = [i for i in intervals if i.resource == "layer"]
        offset = 0.0
        if marks and marks[0].layer in layers:
            offset = layers[marks[0].layer].start_s - marks[0].start_s
        out.append((variant, offset, intervals))
        seen.update(m.layer for m in marks)
        if len(seen) >= len(layers):
            variant += 1
            seen = set()
    return out


def simulated_timeline(result: RunResult, calls: list[list[Interval]]) -> dict[str, Any]:
    """The timeline document of a simulated run (``calls`` from :func:`simulator.engine.core.recording`)."""
    events: list[dict[str, Any]] = []
    placed = assign_calls(result, calls)
    for index, variant in enumerate(result.variants):
        pid = index + 1
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": f"simulated {variant.name} ({variant.format}) on {result.profile}"}})
        resources = sorted({i.resource for v, _, intervals in placed if v == index for i in intervals})
        tids = _thread_ids(resources)
        for name, tid in tids.items():
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                           "args": {"sort_index": tid}})
        for v, offset, intervals in placed:
            if v != index:
                continue
            for i in intervals:
                name = i.layer if i.resource == "layer" else f"{i.resource}: {i.layer}"
                events.append({"name": name, "cat": i.resource, "ph": "X", "pid": pid, "tid": tids[i.resource],
                               "ts": max(0.0, (i.start_s + offset) * 1e6),   # float rounding can dip below 0
                               "dur": max(0.0, i.end_s - i.start_s) * 1e6,
                               "args": {"layer": i.layer}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"source": "simulator run", "profile": result.profile, "workload": result.workload,
                          "batch": result.batch, "repeat": result.repeat, "repeat_mode": result.repeat_mode}}


def check_timeline(doc: Any, source: str = "timeline") -> None:
    """Raise :class:`ConfigError` unless ``doc`` is valid trace-event JSON (object format): every
    event has a name, a phase, numeric pid / tid, a non-negative ``ts``, and complete events a
    non-negative ``dur``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise ConfigError(source, "traceEvents", "missing: not a trace-event JSON object")
    for n, event in enumerate(doc["traceEvents"]):
        where = f"traceEvents[{n}]"
        if not isinstance(event, dict):
            raise ConfigError(source, where, "is not an object")
        if not isinstance(event.get("ph"), str) or "name" not in event:
            raise ConfigError(source, where, "needs a name and a phase (ph)")
        for key in ("pid", "tid"):
            if key in event and not isinstance(event[key], (int, str)):
                raise ConfigError(source, f"{where}.{key}", f"{event[key]!r} is not an id")
        if event["ph"] == "M":
            continue
        ts = event.get("ts")
        if not isinstance(ts, (int, float)) or ts < 0:
            raise ConfigError(source, f"{where}.ts", f"{ts!r} is not a non-negative number of microseconds")
        if event["ph"] == "X":
            dur = event.get("dur")
            if not isinstance(dur, (int, float)) or dur < 0:
                raise ConfigError(source, f"{where}.dur", f"{dur!r} is not a non-negative duration")


def write_timeline(doc: dict[str, Any], path: str | Path, option: str = "timeline") -> None:
    """Check and write a timeline document (trace-event JSON)."""
    target = Path(path)
    if not target.resolve().parent.is_dir():
        raise OptionError(option, f"{path}: its directory does not exist")
    check_timeline(doc, str(path))
    # otherData: the trace-event format's place for metadata (Perfetto shows it)
    doc = {**doc, "otherData": {**document_header(), **doc.get("otherData", {})}}
    target.write_text(json.dumps(doc), encoding="utf-8")
