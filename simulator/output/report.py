"""Text and JSON output of a run. Plotting, when it comes, lives beside this module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..base.atomicfile import write_atomically
from ..base.texttable import format_table
from ..base.units import format_bytes, format_seconds
from ..base.version import with_header
from ..engine.results import LayerResult, RunResult, VariantResult


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _speedup(dense_s: float, pruned_s: float) -> str:
    return f"{dense_s / pruned_s:.2f}x" if pruned_s > 0 else "-"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """The rows, the last one (the total) under a second rule."""
    return format_table(header, rows[:-1], right, footer=rows[-1:])


def _levels(result: RunResult) -> list[str]:
    for variant in result.variants:
        for layer in variant.layers:
            if layer.hit_rate:
                return list(layer.hit_rate)
    return []


def _title(result: RunResult) -> str:
    formats = ", ".join(f"{v.name} = {v.format.upper()}" for v in result.variants if v.name != v.format)
    if result.repeat_mode == "layer":
        mode = f"each layer alone, steady state after {result.repeat} back-to-back runs"
    elif result.repeat > 1:
        mode = f"steady state after {result.repeat} inferences"
    else:
        mode = "one cold inference"
    return (f"{result.workload} on {result.profile}: batch {result.batch}, {mode}"
            + (f" ({formats})" if formats else ""))


def comparison_table(result: RunResult) -> str:
    """Dense and pruned side by side, one row per layer, totals last."""
    dense, pruned = result.variant("dense"), result.variant("pruned")
    levels = _levels(result)
    header = (["layer", "kernel", "dense", "pruned", "speed-up", "DRAM dense", "DRAM pruned"]
              + [f"{n} hit d/p" for n in levels] + ["bound dense / pruned"])
    rows = []
    for d in dense.layers:
        p = pruned.layer(d.name)
        kernel = d.kernel if d.kernel == p.kernel else f"{d.kernel}/{p.kernel}"
        rows.append([_marked(d.name, pruned), kernel or d.kind, format_seconds(d.time_s), format_seconds(p.time_s),
                     _speedup(d.time_s, p.time_s), format_bytes(d.dram_bytes), format_bytes(p.dram_bytes)]
                    + [_hit_pair(d, p, n) for n in levels] + [f"{d.bound} / {p.bound}"])
    rows.append(["total", "", format_seconds(dense.total_s), format_seconds(pruned.total_s),
                 _speedup(dense.total_s, pruned.total_s), format_bytes(dense.dram_bytes),
                 format_bytes(pruned.dram_bytes)] + [""] * len(levels) + [""])
    right = set(range(2, 7 + len(levels)))
    weights = (f"weights: dense {format_bytes(dense.weight_bytes)}, pruned {pruned.format.upper()} "
               f"{format_bytes(pruned.weight_bytes)} (values + indices + pointers)")
    lines = [_title(result), "", _table(header, rows, right), "", weights]
    lines += _energy_lines(result, [dense, pruned])
    return "\n".join(lines + _dense_note(pruned))


def _marked(name: str, variant: VariantResult) -> str:
    """A layer's name, with ``*`` where a sparse variant ran it dense (see :func:`_dense_note`)."""
    return f"{name} *" if name in variant.dense_layers else name


def _dense_note(variant: VariantResult) -> list[str]:
    if not variant.dense_layers:
        return []
    return [f"* density 1.0 (nothing pruned): run dense in the {variant.format.upper()} variant too"]


def format_joules(joules: float) -> str:
    """Energy with a unit that keeps three significant figures: ``4.2 mJ``."""
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6)):
        if joules >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules / 1e-9:.3g} nJ"


def _energy_lines(result: RunResult, variants: list[VariantResult]) -> list[str]:
    """Energy per inference, labelled by what it holds: dynamic only (operations and bytes moved)
    where the profile's static power is unknown (0), else dynamic + static = total."""
    if result.static_power_w is None or not any(v.energy_j > 0 for v in variants):
        return []
    parts = []
    for v in variants:
        static_j = result.static_energy_j(v)
        dynamic_j = v.energy_j - static_j
        share = v.dram_energy_j / dynamic_j if dynamic_j > 0 else 0.0
        text = f"{format_joules(dynamic_j)} ({100 * share:.0f}% DRAM)"
        if result.static_power_w > 0:
            text += f" + static {format_joules(static_j)} = {format_joules(v.energy_j)}"
        parts.append(text if len(variants) == 1 else f"{v.name} {text}")
    if result.static_power_w > 0:
        return [f"energy per inference, dynamic + static ({result.static_power_w:g} W) = total: " + ", ".join(parts)]
    return ["dynamic energy per inference (operations and bytes moved; static power unknown, not included): "
            + ", ".join(parts)]


def _hit_pair(d: LayerResult, p: LayerResult, level: str) -> str:
    if d.kind == "copy":
        return ""
    return f"{_pct(d.hit_rate.get(level))}/{_pct(p.hit_rate.get(level))}"


def variant_table(result: RunResult, variant: VariantResult) -> str:
    """One variant alone (``--format``)."""
    levels = _levels(result)
    header = ["layer", "kernel", "time", "FLOPs", "DRAM", "weights"] + [f"{n} hit" for n in levels] + ["bound"]
    rows = []
    for layer in variant.layers:
        rows.append([_marked(layer.name, variant), layer.kernel or layer.kind, format_seconds(layer.time_s),
                     f"{layer.flops:.3g}",
                     format_bytes(layer.dram_bytes), format_bytes(layer.weight_bytes)]
                    + ["" if layer.kind == "copy" else _pct(layer.hit_rate.get(n)) for n in levels] + [layer.bound])
    rows.append(["total", "", format_seconds(variant.total_s), f"{sum(l.flops for l in variant.layers):.3g}",
                 format_bytes(variant.dram_bytes), format_bytes(variant.weight_bytes)] + [""] * len(levels) + [""])
    lines = [_title(result), "", _table(header, rows, set(range(2, 6 + len(levels))))]
    energy = _energy_lines(result, [variant])
    if energy:
        lines += [""] + energy
    return "\n".join(lines + _dense_note(variant))


def _giga_per_s(flops: float, seconds: float) -> str:
    return f"{flops / seconds / 1e9:.1f}" if seconds > 0 else "-"


def tiled_table(result: RunResult, variant: VariantResult) -> str:
    """A scratchpad accelerator's run: per layer its time, throughput, DRAM traffic, bound and the
    tiling the rule chose; then frames per second and the convolutions' throughput."""
    header = ["layer", "kernel", "time", "GOP/s", "DRAM", "weights", "bound",
              "tiling (loop order, tile M x N, rows x cols)"]
    rows = [[l.name, l.kernel or l.kind, format_seconds(l.time_s), _giga_per_s(l.flops, l.time_s),
             format_bytes(l.dram_bytes), format_bytes(l.weight_bytes), l.bound, l.tiling] for l in variant.layers]
    flops = sum(l.flops for l in variant.layers)
    rows.append(["total", "", format_seconds(variant.total_s), _giga_per_s(flops, variant.total_s),
                 format_bytes(variant.dram_bytes), format_bytes(variant.weight_bytes), "", ""])
    conv = [l for l in variant.layers if l.kind == "conv"]
    conv_s = sum(l.time_s for l in conv)
    summary = (f"{result.batch / variant.total_s:.2f} frames/s; " if variant.total_s > 0 else "") + (
        f"convolutions {_giga_per_s(sum(l.flops for l in conv), conv_s)} GOP/s over {format_seconds(conv_s)}, "
        if conv else "") + f"whole network {_giga_per_s(flops, variant.total_s)} GOP/s (1 MAC = 2 operations)"
    lines = [_title(result), "", _table(header, rows, {2, 3, 4, 5}), "", summary]
    lines += _energy_lines(result, [variant])
    return "\n".join(lines)


def baseline(result: RunResult) -> VariantResult:
    """The variant speed-ups are measured against: dense in the workload's type (spec ``dense``),
    else dense fp32, else the first variant."""
    for spec in ("dense", "dense@fp32"):
        for variant in result.variants:
            if variant.format == spec:
                return variant
    return result.variants[0]


def variants_table(result: RunResult) -> str:
    """Three or more variants (or two that are not dense and pruned): per layer, each variant's time
    and speed-up over the baseline (:func:`baseline`), then each one's DRAM bytes and bound; a
    variant that chose per layer (``auto``) shows its choices."""
    base = baseline(result)
    variants = result.variants
    names = [v.name for v in variants]
    chosen = [v for v in variants if v.choices]
    header = ["layer"] + names + [f"{v.name} picks" for v in chosen]
    rows = []
    for b in base.layers:
        row = [_marked(b.name, next((v for v in variants if v.dense_layers), base))]
        for v in variants:
            layer = v.layer(b.name)
            row.append(f"{format_seconds(layer.time_s)} {_speedup(b.time_s, layer.time_s)}")
        rows.append(row + [v.choices.get(b.name, "") for v in chosen])
    rows.append(["total"] + [f"{format_seconds(v.total_s)} {_speedup(base.total_s, v.total_s)}" for v in variants]
                + [""] * len(chosen))
    traffic_rows = [[b.name] + [cell for v in variants
                                for cell in (format_bytes(v.layer(b.name).dram_bytes), v.layer(b.name).bound)]
                    for b in base.layers]
    traffic_rows.append(["total"] + [cell for v in variants for cell in (format_bytes(v.dram_bytes), "")])
    traffic_header = ["layer"] + [cell for name in names for cell in (f"{name} DRAM", "bound")]
    weights = "weights: " + ", ".join(f"{v.name} {format_bytes(v.weight_bytes)}" for v in variants)
    lines = [_title(result), "", f"time per layer and speed-up over {base.name}", "",
             _table(header, rows, set(range(1, len(variants) + 1))), "", "DRAM bytes and bound per layer", "",
             _table(traffic_header, traffic_rows, set(range(1, 2 * len(variants), 2))), "",
             weights + " (values + indices + pointers + scales)"]
    lines += _energy_lines(result, list(variants))
    for v in variants:
        lines += _dense_note(v)
    return "\n".join(lines)


def render(result: RunResult) -> str:
    """The default text output of ``run``."""
    names = {v.name for v in result.variants}
    if names == {"dense", "pruned"}:
        text = comparison_table(result)
    elif len(result.variants) >= 2 and not any(l.tiling for v in result.variants for l in v.layers):
        text = variants_table(result)
    else:
        text = "\n\n".join(tiled_table(result, v) if any(l.tiling for l in v.layers) else variant_table(result, v)
                           for v in result.variants)
    return "\n".join([text] + result.notes)


def write_json(result: RunResult, path: str | Path) -> None:
    """Write the ``--json`` document atomically (a failed write leaves no half file)."""
    write_json_document(result.to_json(), path, "json")


def write_json_document(document: Any, path: str | Path, option: str) -> None:
    """Write any JSON document atomically, the tool's version and the document schema's first
    (:func:`simulator.base.version.with_header`); errors name the option and the file."""
    def dump(handle) -> None:
        json.dump(with_header(document), handle, indent=1)
        handle.write("\n")

    write_atomically(path, option, dump)
