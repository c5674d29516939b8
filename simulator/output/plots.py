"""Every plot of the project, in one place (matplotlib's object API: each plot builds its own
``matplotlib.figure.Figure`` and saves it; no pyplot state, no backend switch, so calling these
from a notebook leaves its backend and its open figures alone).

* :func:`latency_vs_cache_size`: per layer, latency against the swept cache size, each
  curve's knee marked; with dense and pruned, a panel of the speed-up too.
* :func:`speedup_vs_density`: pruned-vs-dense speed-up against density, with the density
  where pruning starts to pay.
* :func:`roofline`: per profile, the roof (peak FLOP/s, DRAM bandwidth) with each layer
  placed by arithmetic intensity and achieved FLOP/s, dense and pruned.
* :func:`break_even_vs_density`: speed-up over dense against density, a line per variant
  (``sweep --set density=... --format dense,csr,...``), each one's break-even density marked.
* :func:`layer_times_by_variant`: one run's per-layer time, a bar per variant (``run --plot``).
* :func:`latency_vs_value`: the fallback for any other swept field.
* :func:`miss_ratio_curves`: miss ratio against cache size, per level.
* :func:`density_bars`: per-tensor density of a pruned model (``prune --plot``).
* :func:`weight_matrices`: each layer's weight matrix, zeros white (a spy plot with magnitudes).
* :func:`sensitivity_curves`: top-1 against sparsity, one weight pruned at a time (Distiller's
  ``sensitivities_to_png``).
* :func:`accuracy_sparsity_latency`: accuracy and simulated latency against sparsity along a
  pruning run, per profile (``digits``).

:func:`sweep_plot` picks the plot that answers a sweep's question. The knee of a curve is the
point farthest below the chord between its ends (above it, for a rising curve), with size on
a log scale and both axes scaled to [0, 1] (the "Kneedle" rule): past it, growing the cache
buys little. A curve whose latency changes by less than :data:`FLAT` of its largest value
has no knee.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..base.errors import OptionError
from ..base.units import format_bytes, format_seconds

if TYPE_CHECKING:  # pragma: no cover
    from ..compress.sensitivity import SensitivityRow
    from ..compress.sparsity import SparsitySummary
    from ..engine.results import RunResult
    from ..hardware.profile import HardwareProfile
    from ..memory.mrc import MissRatioCurve
    from ..studies.sweep import SweepPlan, SweepRow

#: File types a plot can be written as.
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
#: Relative change below which a curve counts as flat (no knee).
FLAT = 0.02

_DPI = 120


def check_plot_path(path: str | Path, option: str) -> Path:
    """The plot file an option names, checked before any work (suffix and directory)."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise OptionError(option, f"{path}: a plot is written as {', '.join(PLOT_SUFFIXES)}")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OptionError(option, f"{path}: directory {directory} does not exist")
    return path


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8), **kwargs: Any):
    """``(Figure, axes)`` like ``pyplot.subplots``, but a free-standing Figure that pyplot never
    sees: it is garbage-collected when dropped and never shown."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def _save(fig, path: str | Path, legend: bool = False) -> None:
    """Write the figure; ``legend``: one legend for all panels, at the right."""
    if legend:
        seen: dict[str, object] = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(label, handle)
        fig.legend(list(seen.values()), list(seen), loc="center right", fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1 - 1.3 / fig.get_figwidth(), 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


def knee(x: ArrayLike, y: ArrayLike, log_x: bool = True) -> Optional[int]:
    """Index of the knee of a curve (see the module docstring), or None when it is flat."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.size < 3 or not np.all(np.isfinite(ys)):
        return None
    top = np.max(np.abs(ys))
    if top == 0 or (ys.max() - ys.min()) / top < FLAT:
        return None
    u = np.log2(xs) if log_x else xs
    u = (u - u[0]) / (u[-1] - u[0]) if u[-1] != u[0] else np.zeros_like(u)
    v = (ys - ys.min()) / (ys.max() - ys.min())
    chord = v[0] + (v[-1] - v[0]) * u
    # A falling curve flattens where it lies farthest below its chord; a rising one, above.
    gap = chord - v if v[-1] <= v[0] else v - chord
    best = int(np.argmax(gap))
    return best if gap[best] > 0 else None


# --- sweeps -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Series:
    x: np.ndarray
    y: np.ndarray


def _series(rows: Sequence[SweepRow], column: str, variant: str, layer: str, value: str = "time_s") -> _Series:
    pairs = sorted((r.settings[column], getattr(r, value)) for r in rows
                   if r.variant == variant and r.layer == layer and getattr(r, value) is not None)
    return _Series(np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs], dtype=float))


def _layers(rows: Sequence[SweepRow]) -> list[str]:
    """Layer names in network order (the order of first appearance), copies left out."""
    seen: dict[str, None] = {}
    for r in rows:
        if r.layer and r.layer != "total" and r.kind != "copy":
            seen.setdefault(r.layer)
    return list(seen)


def _weighted(rows: Sequence[SweepRow]) -> list[str]:
    """Layers whose kernel changes with pruning (the ones a speed-up is about)."""
    kernels: dict[str, set[str]] = {}
    for r in rows:
        if r.layer and r.layer != "total" and r.kernel:
            kernels.setdefault(r.layer, set()).add(r.kernel)
    return [layer for layer in _layers(rows) if len(kernels.get(layer, ())) > 1]


def _variants(rows: Sequence[SweepRow]) -> list[str]:
    """Variant names in the order they first appear (``dense``, ``pruned``; or the specs)."""
    return list(dict.fromkeys(r.variant for r in rows if r.variant))


def _bytes_axis(ax, values: np.ndarray) -> None:
    ax.set_xscale("log", base=2)
    ticks = values if values.size <= 9 else values[:: int(np.ceil(values.size / 9))]
    ax.set_xticks(ticks)
    ax.set_xticklabels([format_bytes(v).replace(".0 ", " ") for v in ticks], rotation=30, ha="right")
    ax.minorticks_off()


def _time_axis(ax) -> None:
    """Log-scale latency, ticks at 1, 2 and 5 per decade labelled with units (``20 us``)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_seconds(v)))


def _value_axis(ax, readable: Optional[Callable[[float], str]]) -> None:
    """Label the x ticks of a swept value in its unit."""
    if readable is not None:
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: readable(v)))


def latency_vs_cache_size(rows: Sequence[SweepRow], column: str, level: str, path: str | Path,
                          title: str = "") -> None:
    """Latency per layer against cache size, one panel per variant, knees marked; plus speed-up."""
    variants = _variants(rows)
    layers = _layers(rows)
    pair = variants == ["dense", "pruned"]
    panels = len(variants) + (1 if pair else 0)
    fig, axes = subplots(1, panels, figsize=(6.2 * panels, 5.2), squeeze=False)
    colours = _cmap("tab20")(np.linspace(0, 1, max(len(layers), 1)))
    for ax, variant in zip(axes[0], variants):
        for colour, layer in zip(colours, layers):
            s = _series(rows, column, variant, layer)
            if s.x.size == 0:
                continue
            ax.plot(s.x, s.y, "-", color=colour, lw=1.4, label=layer)
            k = knee(s.x, s.y)
            if k is not None:
                ax.plot(s.x[k], s.y[k], "o", ms=8, mfc="none", mec=colour, mew=2)
        total = _series(rows, column, variant, "total")
        if total.x.size:
            ax.plot(total.x, total.y, "k--", lw=2, label="whole network")
            k = knee(total.x, total.y)
            if k is not None:
                ax.plot(total.x[k], total.y[k], "kD", ms=8)
                ax.annotate(f"knee {format_bytes(total.x[k])}", (total.x[k], total.y[k]), xytext=(8, 8),
                            textcoords="offset points", fontsize=9)
        if total.x.size:
            _bytes_axis(ax, total.x)
        _time_axis(ax)
        ax.set_xlabel(f"{level} size")
        ax.set_ylabel("latency")
        ax.set_title(f"{variant}: latency per layer (circles: knees)", fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
    if pair:
        _speedup_panel(axes[0][-1], rows, column, layers, colours, log_x=True)
        axes[0][-1].set_xlabel(f"{level} size")
        total = _series(rows, column, "dense", "total")
        if total.x.size:
            _bytes_axis(axes[0][-1], total.x)
    if title:
        fig.suptitle(title, fontsize=12)
    _save(fig, path, legend=True)


def _speedup_panel(ax, rows, column, layers, colours, log_x: bool) -> Optional[float]:
    """Dense time over pruned time per weighted layer and in total; returns the break-even x."""
    weighted = set(_weighted(rows))
    for colour, layer in zip(colours, layers):
        d, p = _series(rows, column, "dense", layer), _series(rows, column, "pruned", layer)
        if layer in weighted and d.x.size and d.x.size == p.x.size:
            ax.plot(d.x, d.y / p.y, "-", color=colour, lw=1.2, label=layer)
    d, p = _series(rows, column, "dense", "total"), _series(rows, column, "pruned", "total")
    crossing = None
    if d.x.size and d.x.size == p.x.size:
        speedup = d.y / p.y
        ax.plot(d.x, speedup, "k--", lw=2.2, label="whole network")
        crossing = _crossing(d.x, speedup, log_x)
    ax.axhline(1.0, color="grey", lw=1)
    ax.set_yscale("log")
    ax.set_ylabel("speed-up of pruned over dense (x)")
    ax.set_title("pruned vs dense: above 1, pruning pays", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    return crossing


def _crossing(x: np.ndarray, y: np.ndarray, log_x: bool) -> Optional[float]:
    """First x where y crosses 1 (linear interpolation), or None."""
    above = y >= 1.0
    for i in range(1, x.size):
        if above[i] != above[i - 1]:
            u0, u1 = (np.log(x[i - 1]), np.log(x[i])) if log_x else (x[i - 1], x[i])
            t = (1.0 - y[i - 1]) / (y[i] - y[i - 1])
            u = u0 + t * (u1 - u0)
            return float(np.exp(u) if log_x else u)
    return None


def speedup_vs_density(rows: Sequence[SweepRow], column: str, path: str | Path, title: str = "") -> None:
    """Speed-up of pruned over dense against density; marks where pruning starts to pay."""
    layers = _layers(rows)
    fig, ax = subplots(figsize=(7.5, 5.2))
    colours = _cmap("tab20")(np.linspace(0, 1, max(len(layers), 1)))
    variants = _variants(rows)
    if variants != ["dense", "pruned"]:
        if "dense" in variants and len(variants) > 1:
            break_even_vs_density(rows, column, path, title)
        else:
            latency_vs_value(rows, column, path, title, "density")
        return
    crossing = _speedup_panel(ax, rows, column, layers, colours, log_x=False)
    if crossing is not None:
        ax.axvline(crossing, color="tab:red", lw=1.5, ls=":")
        ax.annotate(f"break-even at density {crossing:.3g}", (crossing, 1.0), xytext=(8, -18),
                    textcoords="offset points", color="tab:red", fontsize=9,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_xlabel("weight density (kept fraction)")
    if title:
        ax.set_title(f"{title}: pruned vs dense (above 1, pruning pays)", fontsize=11)
    _save(fig, path, legend=True)


def break_even_vs_density(rows: Sequence[SweepRow], column: str, path: str | Path, title: str = "") -> None:
    """Whole-network speed-up over ``dense`` against density, one line per other variant, each
    variant's break-even density (where it starts to beat dense) marked."""
    fig, ax = subplots(figsize=(7.5, 5.2))
    others = [v for v in _variants(rows) if v != "dense"]
    colours = _cmap("tab10")(np.linspace(0, 1, 10))
    dense = _series(rows, column, "dense", "total")
    for i, variant in enumerate(others):
        s = _series(rows, column, variant, "total")
        if not (s.x.size and s.x.size == dense.x.size):
            continue
        colour = colours[i % 10]
        speedup = dense.y / s.y
        ax.plot(s.x, speedup, "o-", color=colour, ms=4, lw=1.8, label=variant)
        crossing = _crossing(s.x, speedup, log_x=False)
        if crossing is not None:
            ax.axvline(crossing, color=colour, lw=1, ls=":")
            ax.annotate(f"{crossing:.3g}", (crossing, 1.0), xytext=(4, 6 + 12 * i), textcoords="offset points",
                        color=colour, fontsize=8)
    from matplotlib.ticker import FuncFormatter

    ax.axhline(1.0, color="grey", lw=1)
    ax.set_yscale("log")
    for axis_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("weight density (kept fraction)")
    ax.set_ylabel("speed-up over dense")
    ax.set_title((f"{title}: " if title else "") + "speed-up over dense (above 1 the variant pays;\n"
                 "dotted: its break-even density)", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    _save(fig, path, legend=True)


def layer_times_by_variant(result: RunResult, path: str | Path, title: str = "") -> Path:
    """One run's per-layer time, a bar per variant side by side (log scale), ``auto``'s bars
    labelled with the variant it chose for the layer."""
    variants = result.variants
    layers = [l.name for l in variants[0].layers if l.kind != "copy"]
    fig, ax = subplots(figsize=(max(7.0, 0.55 * len(layers) * max(1, len(variants)) ** 0.5 + 3), 5.2))
    width = 0.8 / max(1, len(variants))
    colours = _cmap("tab10")(np.linspace(0, 1, 10))
    x = np.arange(len(layers))
    for i, variant in enumerate(variants):
        times = [variant.layer(name).time_s for name in layers]
        bars = ax.bar(x + (i - (len(variants) - 1) / 2) * width, times, width, color=colours[i % 10],
                      label=f"{variant.name} ({format_seconds(variant.total_s)})")
        for bar, name in zip(bars, layers):
            if name in variant.choices:
                ax.annotate(variant.choices[name], (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            xytext=(0, 2), textcoords="offset points", rotation=90, ha="center", va="bottom",
                            fontsize=6)
    _time_axis(ax)
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("latency")
    ax.set_title(title or f"{result.workload} on {result.profile}: time per layer by variant", fontsize=11)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    _save(fig, path, legend=True)
    return Path(path)


def latency_vs_value(rows: Sequence[SweepRow], column: str, path: str | Path, title: str = "",
                     label: str = "", readable: Optional[Callable[[float], str]] = None) -> None:
    """Latency per layer against any swept value, one panel per variant (``readable`` labels x)."""
    variants = _variants(rows) or [""]
    layers = _layers(rows)
    fig, axes = subplots(1, len(variants), figsize=(6.2 * len(variants), 5.2), squeeze=False)
    colours = _cmap("tab20")(np.linspace(0, 1, max(len(layers), 1)))
    for ax, variant in zip(axes[0], variants):
        for colour, layer in zip(colours, layers):
            s = _series(rows, column, variant, layer)
            if s.x.size:
                ax.plot(s.x, s.y, "o-", color=colour, ms=3, lw=1.2, label=layer)
        s = _series(rows, column, variant, "total")
        if s.x.size:
            ax.plot(s.x, s.y, "kD--", ms=4, lw=2, label="whole network")
        _time_axis(ax)
        _value_axis(ax, readable)
        ax.set_xlabel(label or column)
        ax.set_ylabel("latency")
        ax.set_title(f"{variant}: latency per layer" if variant else "latency per layer", fontsize=11)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=12)
    _save(fig, path, legend=True)


def totals_vs_first_axis(rows: Sequence[SweepRow], columns: Sequence[str], path: str | Path, title: str = "",
                         labels: Sequence[str] = (),
                         readables: Sequence[Optional[Callable[[float], str]]] = ()) -> None:
    """Several swept fields: whole-network latency against the first, a line per other combination.

    ``labels`` name the fields and ``readables`` format their values (default: the columns, ``%g``).
    """
    variants = _variants(rows)
    fig, axes = subplots(1, len(variants), figsize=(6.2 * len(variants), 5.2), squeeze=False)
    first, others = columns[0], list(columns[1:])
    labels = list(labels) or list(columns)
    readables = list(readables) or [None] * len(columns)
    for ax, variant in zip(axes[0], variants):
        totals = [r for r in rows if r.variant == variant and r.layer == "total"]
        combos = sorted({tuple(r.settings[c] for c in others) for r in totals})
        for combo in combos:
            pick = sorted((r.settings[first], r.time_s) for r in totals
                          if tuple(r.settings[c] for c in others) == combo)
            label = ", ".join(f"{name}={fmt(v) if fmt else f'{v:g}'}"
                              for name, fmt, v in zip(labels[1:], readables[1:], combo))
            ax.plot([p[0] for p in pick], [p[1] for p in pick], "o-", ms=3, label=label)
        _time_axis(ax)
        _value_axis(ax, readables[0])
        ax.set_xlabel(labels[0])
        ax.set_ylabel("whole-network latency")
        ax.set_title(variant, fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=12)
    _save(fig, path)


# --- roofline -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RooflinePoint:
    """One layer of one variant, placed on a roofline."""

    layer: str
    variant: str
    flops: float
    dram_bytes: float
    time_s: float

    @property
    def intensity_flop_per_byte(self) -> float:
        """FLOPs per byte moved to or from DRAM."""
        return self.flops / self.dram_bytes

    @property
    def achieved_flops_per_s(self) -> float:
        """FLOPs over the layer's simulated time."""
        return self.flops / self.time_s


@dataclass(frozen=True)
class Roof:
    """One profile's roof and the layers run on it."""

    label: str
    peak_flops_per_s: float
    peak_bandwidth_bytes_per_s: float
    sustained_bandwidth_bytes_per_s: float
    points: tuple[RooflinePoint, ...]


def roof_of(profile: HardwareProfile, points: Sequence[RooflinePoint], label: str = "") -> Roof:
    """A profile's roof with the given layers."""
    dram = profile.dram
    if dram is None:
        raise ValueError(f"{profile.name} has no DRAM: a roofline needs its bandwidth")
    return Roof(label or profile.name, profile.peak_flops_per_s, dram.peak_bandwidth_bytes_per_s,
                dram.sustained_bandwidth_bytes_per_s, tuple(points))


def run_points(result: RunResult) -> list[RooflinePoint]:
    """Roofline points of a run: every layer with FLOPs and DRAM traffic, dense and pruned."""
    return [RooflinePoint(l.name, v.name, l.flops, l.dram_bytes, l.time_s) for v in result.variants
            for l in v.layers if l.flops > 0 and l.dram_bytes > 0 and l.time_s > 0]


def roofline(roofs: Sequence[Roof], path: str | Path, title: str = "") -> None:
    """Roofs (peak DRAM bandwidth solid, sustained dashed) with each layer placed, dense and pruned."""
    fig, ax = subplots(figsize=(8.5, 6))
    colours = _cmap("tab10")(np.arange(max(len(roofs), 1)) % 10)
    intensities = [p.intensity_flop_per_byte for r in roofs for p in r.points] or [1.0]
    lo, hi = min(intensities) / 4, max(max(intensities) * 4, max(r.peak_flops_per_s / r.peak_bandwidth_bytes_per_s
                                                                    for r in roofs) * 4)
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    markers = {"dense": "o", "pruned": "^"}
    for colour, roof in zip(colours, roofs):
        ax.plot(x, np.minimum(roof.peak_flops_per_s, roof.peak_bandwidth_bytes_per_s * x), "-", color=colour,
                lw=2, label=f"{roof.label}: roof")
        ax.plot(x, np.minimum(roof.peak_flops_per_s, roof.sustained_bandwidth_bytes_per_s * x), "--",
                color=colour, lw=1, alpha=0.7)
        for variant, marker in markers.items():
            pts = [p for p in roof.points if p.variant == variant]
            if not pts:
                continue
            ax.scatter([p.intensity_flop_per_byte for p in pts], [p.achieved_flops_per_s for p in pts],
                       marker=marker, s=42, facecolors=colour if variant == "dense" else "none",
                       edgecolors=colour, label=f"{roof.label}: {variant} layers" if len(roofs) > 1 else
                       f"{variant} layers")
            if len(roofs) == 1:
                for p in pts:
                    ax.annotate(p.layer, (p.intensity_flop_per_byte, p.achieved_flops_per_s), xytext=(4, 3),
                                textcoords="offset points", fontsize=7, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(title or "roofline: peak DRAM bandwidth (solid), sustained (dashed)", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


# --- miss-ratio curves --------------------------------------------------------------------------

def miss_ratio_curves(curves: Sequence[MissRatioCurve], sizes_now: dict[str, int], path: str | Path,
                      title: str = "") -> None:
    """Miss ratio against size per level: set-associative (markers) and fully associative (line)."""
    from ..memory.mrc import Associativity

    fig, ax = subplots(figsize=(8, 5.2))
    colours = _cmap("tab10")(np.arange(max(len(curves), 1)) % 10)
    all_sizes = []
    for colour, curve in zip(colours, curves):
        sa = curve.of(Associativity.SET_ASSOCIATIVE)
        fa = curve.of(Associativity.FULLY_ASSOCIATIVE)
        if fa:
            ax.plot([p.size_bytes for p in fa], [p.miss_ratio for p in fa], "-", color=colour, lw=1.2, alpha=0.8,
                    label=f"{curve.level}: fully associative")
        if sa:
            ax.plot([p.size_bytes for p in sa], [p.miss_ratio for p in sa], "o--", color=colour, ms=5, lw=1,
                    label=f"{curve.level}: {curve.ways}-way")
            all_sizes += [p.size_bytes for p in sa]
        if curve.level in sizes_now:
            ax.axvline(sizes_now[curve.level], color=colour, lw=1, ls=":")
            ax.annotate(f"{curve.level} now", (sizes_now[curve.level], 0.0), xytext=(3, 4),
                        textcoords="offset points", fontsize=8, color=colour)
    if all_sizes:
        _bytes_axis(ax, np.unique(np.array(all_sizes, dtype=float)))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("cache size (each level fed by the levels above it, as in the profile)")
    ax.set_ylabel("miss ratio (demand misses / demand references)")
    ax.set_title(title or "miss-ratio curves (dotted: the profile's sizes)", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


# --- choosing the plot of a sweep ---------------------------------------------------------------

_ROOFLINE_FIELDS = ("memory.dram.peak_bandwidth", "memory.dram.sustained_bandwidth", "compute.peak_flops.",
                    "compute.clock", "compute.kernels.")


def sweep_plot(plan: SweepPlan, rows: Sequence[SweepRow], path: str | Path) -> str:
    """Write the plot that answers the sweep's question; returns what it shows.

    One cache-size field: latency against size with knees (and the speed-up). ``density``:
    speed-up against density with the break-even point. A DRAM-bandwidth or compute field:
    a roofline per point's profile. Any other single field: latency against it. Several
    fields: whole-network latency against the first, a line per combination of the others.
    """
    rows = [r for r in rows if not r.error]
    if not rows:
        raise OptionError("plot", "no point of the sweep succeeded: nothing to plot")
    axes = plan.axes
    title = f"{Path(plan.workload_path).stem} on {Path(plan.profile_path).stem}"
    if len(axes) > 1:
        totals_vs_first_axis(rows, [a.column for a in axes], path, title, [a.field for a in axes],
                             [a.readable for a in axes])
        return "whole-network latency against the first swept field"
    axis = axes[0]
    parts = axis.field.split(".")
    if len(parts) == 4 and parts[:2] == ["memory", "caches"] and parts[3] == "size":
        latency_vs_cache_size(rows, axis.column, parts[2], path, title)
        return f"latency per layer against {parts[2]} size, knees marked"
    if axis.field == "density":
        speedup_vs_density(rows, axis.column, path, title)
        variants = _variants(rows)
        if variants != ["dense", "pruned"] and "dense" in variants and len(variants) > 1:
            return "speed-up over dense against density, a line per variant, break-even densities marked"
        return "speed-up of pruned over dense against density"
    if any(axis.field == f or (f.endswith(".") and axis.field.startswith(f)) for f in _ROOFLINE_FIELDS):
        roofs = []
        for point in plan.points:
            pts = [RooflinePoint(r.layer, r.variant, r.flops, r.dram_bytes, r.time_s) for r in rows
                   if r.layer != "total" and r.flops and r.dram_bytes and r.time_s
                   and plan.key_of(r) == point.key]
            if pts:
                roofs.append(roof_of(point.profile, pts, axis.readable(dict(point.settings)[axis.column])))
        roofline(roofs, path, f"{title}, {axis.field} swept: roofline per point\n"
                              "(solid: peak DRAM bandwidth, dashed: sustained)")
        return "roofline per point, each layer placed dense and pruned"
    latency_vs_value(rows, axis.column, path, title, axis.field, axis.readable)
    return f"latency per layer against {axis.field}"


# --- pruning ------------------------------------------------------------------------------------

def density_bars(summary: SparsitySummary, path: str | Path, title: str = "") -> Path:
    """Bars of each summarised tensor's density (non-zeros over elements); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = summary.rows
    fig, ax = subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.8))
    positions = np.arange(len(rows))
    ax.bar(positions, [100 * r.density for r in rows], color="tab:blue")
    ax.set_xticks(positions)
    ax.set_xticklabels([r.name for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("density (% of weights kept)")
    total = 100 - summary.total_sparsity_pct
    ax.axhline(total, color="tab:red", ls="--", lw=1)
    ax.annotate(f"whole model {total:.1f}%", (positions[-1] if rows else 0, total), xytext=(0, 4),
                textcoords="offset points", ha="right", color="tab:red", fontsize=9,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.5))   # readable over a bar
    ax.set_title(title or "density per tensor", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    _save(fig, path)
    return path


def weight_matrices(weights: Mapping[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """One panel per layer: the weight as the matrix its kernel multiplies (rows = outputs,
    columns = inputs x the k x k window), coloured by magnitude on the layer's own scale, zeros
    white, so the pruning pattern reads as a spy plot; returns the path."""
    from matplotlib import colormaps

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(weights)
    cols = min(len(names), 3) or 1
    rows = -(-len(names) // cols) or 1
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows + 0.6), squeeze=False)
    cmap = colormaps["viridis"].with_extremes(bad="white")       # masked (zero) weights show white
    for ax, name in zip(axes.flat, names):
        w = np.asarray(weights[name], dtype=np.float32)
        matrix = np.abs(w.reshape(w.shape[0], -1))
        zero = 100.0 * (1 - np.count_nonzero(matrix) / matrix.size)
        top = float(matrix.max()) if matrix.size and matrix.max() > 0 else 1.0
        image = ax.imshow(np.ma.masked_equal(matrix, 0), cmap=cmap, vmin=0, vmax=top, aspect="auto",
                          interpolation="nearest")
        ax.set_title(f"{name}: {matrix.shape[0]} x {matrix.shape[1]}, {zero:.0f}% zero", fontsize=10)
        ax.set_ylabel("output", fontsize=8)
        ax.set_xlabel("input" + (" x window" if w.ndim == 4 else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        bar.ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle((title + "\n" if title else "") + "colour: |weight|, white: zero", fontsize=11)
    _save(fig, path)
    return path


def sensitivity_curves(rows: Sequence[SensitivityRow], path: str | Path, title: str = "") -> Path:
    """Top-1 accuracy against sparsity, one line per weight pruned alone; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(r.parameter for r in rows))
    fig, ax = subplots(figsize=(7.5, 4.6))
    for name in names:
        mine = [r for r in rows if r.parameter == name]
        ax.plot([100 * r.sparsity for r in mine], [r.top1_pct for r in mine], marker="o", ms=3.5, lw=1.4,
                label=name)
    ax.set_xlabel("sparsity of that weight alone (% of it pruned by magnitude)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xlim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "pruning sensitivity", fontsize=11)
    _save(fig, path, legend=True)
    return path


def accuracy_sparsity_latency(sparsity_pct: Sequence[float], top1_pct: Sequence[float],
                              pruned_s: Mapping[str, Sequence[float]],
                              dense_s: Mapping[str, Optional[float]], path: str | Path, title: str = "") -> Path:
    """Two panels along a pruning run, both against the model's sparsity: top-1 accuracy, and
    each profile's simulated latency with the model's non-zeros stored sparse (solid) against
    the same model stored dense (dashed line); a profile without one of them (an empty
    sequence, None) shows the other alone; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(sparsity_pct, dtype=float)
    fig, (acc, lat) = subplots(1, 2, figsize=(14, 4.6))
    acc.plot(x, top1_pct, marker="o", ms=4, color="black", lw=1.2)
    acc.set_xlabel("weight sparsity (% of conv / fc weights zero)")
    acc.set_ylabel("top-1 accuracy on the test set (%)")
    low = min(top1_pct) if len(top1_pct) else 0.0
    acc.set_ylim(max(0.0, low - 2 * max(1.0, 100 - low)), 100.5)
    acc.grid(True, alpha=0.3)
    acc.set_title("accuracy", fontsize=10)
    from matplotlib import rcParams

    colours = rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, times) in enumerate(pruned_s.items()):
        colour = colours[i % len(colours)]
        if len(times):
            lat.plot(x, np.asarray(times) * 1e6, marker="o", ms=3.5, color=colour, label=name)
        dense = dense_s.get(name)
        if dense is not None:
            lat.axhline(dense * 1e6, color=colour, ls="--", lw=1,
                        label=None if len(times) else f"{name} (dense only)")
    lat.set_yscale("log")
    lat.set_xlabel("weight sparsity (% of conv / fc weights zero)")
    lat.set_ylabel("simulated latency (us)")
    lat.grid(True, which="both", alpha=0.3)
    lat.set_title("latency per profile", fontsize=10)
    from matplotlib.lines import Line2D

    handles, labels = lat.get_legend_handles_labels()
    handles += [Line2D([], [], color="grey", marker="o", ms=3.5), Line2D([], [], color="grey", ls="--")]
    labels += ["non-zeros stored CSR", "same model stored dense"]
    lat.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    for ax in (acc, lat):
        ax.set_xlim(-2, 100)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return path
