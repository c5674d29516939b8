"""Predicted against measured time of every compression variant (``crosscheck`` of a
``bench --format LIST`` file).

Each measured (layer, batch, variant) is simulated in the same case as plain ``crosscheck``'s
cells: the variant's spec through :func:`simulator.pipeline.benchmark_works` (its encoding, its
precision plan on the profile, thinning for ``thinned``), the layer alone and repeated (two
back-to-back runs from cold caches, the second timed), on the threads the real kernel ran on
(scipy's CSR runs on one), timed by the engine. Nothing is fitted here: this checks whatever
rates the profile carries (``calibrate`` fits the fp32, bf16 and int8 GEMM rates and the CSR costs
of this machine).

Two figures per workload, issue #14's targets for this machine:

* per variant, the median |error| over its layers (predicted / measured - 1);
* per pair of variants, in how many (layer, batch) cases the simulator names the faster of the
  two as the measurement does.

A variant the profile cannot run (no int8 peak, no ``compute.kernels.bsr``) is reported as
skipped, with the profile's one-line reason, and the others are still compared.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..base.errors import SimulatorError
from ..compress.variants import Structure, parse_variant
from ..engine.core import simulate
from ..engine.kernelcost import fresh_bytes
from ..hardware.profile import HardwareProfile
from ..model.workload import Workload
from ..pipeline import RepeatMode, RunOptions, benchmark_works
from ..studies.validation import BENCHMARK_REPEATS
from .bench import LayerTiming
from .variantbench import VariantBackend, block_layers, layers_alone

TARGET_MEDIAN_ERROR = 0.15     # issue #14: median |error| per variant
TARGET_WINNERS = 0.90          # issue #14: the faster of each pair right in this share of layers


@dataclass(frozen=True)
class VariantCell:
    """One measured layer in one variant, with the simulator's time for the same case."""

    measured: LayerTiming
    predicted_s: float       # per frame
    bound: str
    fresh_bytes: int = 0     # what the model maps afresh a call (``memory.fresh_pages``)

    @property
    def error(self) -> float:
        """Predicted / measured - 1."""
        return self.predicted_s / self.measured.median_s - 1.0

    @property
    def key(self) -> tuple[str, int]:
        """(layer, batch)."""
        return self.measured.layer, self.measured.batch


@dataclass(frozen=True)
class PairCount:
    """How often the simulator names the faster of two variants right."""

    first: str
    second: str
    right: int
    total: int
    wrong: tuple[str, ...] = ()       # ``layer b<batch>`` of the cases it got wrong

    @property
    def share(self) -> float:
        """Right / total (1 when there is nothing to compare)."""
        return self.right / self.total if self.total else 1.0


@dataclass(frozen=True)
class VariantSummary:
    """One variant's cells: how many, their median |error|, the worst."""

    variant: str
    cells: int
    median_abs_error: float
    worst: Optional[VariantCell]


@dataclass
class VariantCheck:
    """Every measured variant cell predicted, and what could not be."""

    profile: str
    cells: list[VariantCell]
    skipped: dict[str, str] = field(default_factory=dict)     # variant spec -> why the profile cannot run it
    notes: list[str] = field(default_factory=list)            # the bench runs' notes

    @property
    def variants(self) -> list[str]:
        """The variants compared, in the order measured."""
        return list(dict.fromkeys(c.measured.format for c in self.cells))

    def summaries(self) -> list[VariantSummary]:
        """Per variant: the median |error| and the worst cell."""
        out = []
        for spec in self.variants:
            cells = [c for c in self.cells if c.measured.format == spec]
            worst = max(cells, key=lambda c: abs(c.error))
            out.append(VariantSummary(spec, len(cells), statistics.median(abs(c.error) for c in cells), worst))
        return out

    def pairs(self) -> list[PairCount]:
        """Every pair of variants: in how many (layer, batch) cases both were measured, and in how many
        the simulator's faster one is the measured faster one."""
        times = {(c.measured.format, c.key): c for c in self.cells}
        out = []
        for first, second in itertools.combinations(self.variants, 2):
            right, wrong = 0, []
            keys = [k for (spec, k) in times if spec == first and (second, k) in times]
            for key in keys:
                a, b = times[(first, key)], times[(second, key)]
                if (a.measured.median_s < b.measured.median_s) == (a.predicted_s < b.predicted_s):
                    right += 1
                else:
                    wrong.append(f"{key[0]} b{key[1]}")
            out.append(PairCount(first, second, right, len(keys), tuple(wrong)))
        return out

    def winners(self) -> tuple[int, int]:
        """(right, total) over every pair and case."""
        pairs = self.pairs()
        return sum(p.right for p in pairs), sum(p.total for p in pairs)

    def to_json(self) -> dict[str, Any]:
        """The ``variants`` part of ``crosscheck --json``."""
        right, total = self.winners()
        return {
            "profile": self.profile,
            "mode": "each layer alone, repeated; simulated: 2 back-to-back runs, the second timed; per frame",
            "targets": {"median_abs_error": TARGET_MEDIAN_ERROR, "winners_right": TARGET_WINNERS},
            "cells": [{"layer": c.measured.layer, "batch": c.measured.batch, "variant": c.measured.format,
                       "kernel": c.measured.kernel, "backend": c.measured.backend, "threads": c.measured.threads,
                       "measured_s": c.measured.median_s, "measured_spread": c.measured.spread,
                       "predicted_s": c.predicted_s, "error": c.error, "bound": c.bound,
                       "measured_faulted_bytes": c.measured.faulted_bytes, "predicted_fresh_bytes": c.fresh_bytes}
                      for c in self.cells],
            "variants": [{"variant": s.variant, "cells": s.cells, "median_abs_error": s.median_abs_error,
                          "worst": None if s.worst is None else {"layer": s.worst.measured.layer,
                                                                 "batch": s.worst.measured.batch,
                                                                 "error": s.worst.error}}
                         for s in self.summaries()],
            "pairs": [{"first": p.first, "second": p.second, "right": p.right, "total": p.total,
                       "wrong": list(p.wrong)} for p in self.pairs()],
            "winners_right": right, "winners_total": total,
            "skipped": self.skipped, "notes": self.notes,
        }


def merge_runs(timings: Sequence[LayerTiming]) -> list[LayerTiming]:
    """The same (layer, batch, variant) measured in several runs: the fastest run's timing (other
    processes only ever slow a run down), in the order first measured."""
    best: dict[tuple[str, int, str], LayerTiming] = {}
    for t in timings:
        key = (t.layer, t.batch, t.format)
        if key not in best or t.median_s < best[key].median_s:
            best[key] = t
    return list(best.values())


#: The CSR library whose index arrays a variant backend's sparse tensors hold: torch's BSR tensors
#: store int64 indices and pointers, and hand MKL int32 copies, as its CSR ones do.
INDEX_LIBRARY = {VariantBackend.BSR.value: "torch"}


def _predict_group(profile: HardwareProfile, workload: Workload, spec: str, batch: int, threads: int, seed: int,
                   backend: str = "") -> dict[str, tuple[float, str, int]]:
    """Per layer name: (simulated time per frame, bound, bytes mapped afresh a call) of ``spec`` at
    ``batch`` on ``threads``, with the profile's CSR library ``backend`` where it has one of that
    name (:meth:`HardwareProfile.with_sparse_library`; a BSR cell, torch's: its index widths)."""
    profile = profile.with_sparse_library(INDEX_LIBRARY.get(backend, backend))
    variant = parse_variant(spec)
    if variant.structure is Structure.BSR:     # the layers the block divides (bench skipped the others)
        workload = layers_alone(workload, block_layers(workload, variant))
    options = RunOptions(batch=batch, repeat=BENCHMARK_REPEATS, repeat_mode=RepeatMode.LAYER, host_copies=False,
                         threads=min(threads, profile.compute.cores), formats=(variant,), seed=seed)
    out = {}
    for work in benchmark_works(profile, workload, variant, options):
        (result,) = simulate(profile, [work])
        shape = work.traffic.shape
        out[work.traffic.layer.name] = (result.time_s / batch, result.bound,
                                        fresh_bytes(profile, shape) if shape is not None else 0)
    return out


def predict(profile: HardwareProfile, workload: Workload, timings: Sequence[tuple[LayerTiming, int]],
            notes: Sequence[str] = (), progress: Callable[[str], None] = lambda _: None) -> VariantCheck:
    """Simulate every measured (layer, batch, variant) cell (``timings``: each with its bench run's
    seed); a variant the profile refuses is skipped with its reason."""
    by_seed: dict[int, list[LayerTiming]] = {}
    for timing, seed in timings:
        by_seed.setdefault(seed, []).append(timing)
    cells, skipped = [], {}
    for seed, group in by_seed.items():
        merged = merge_runs(group)
        for case in dict.fromkeys((t.format, t.batch, t.threads, t.backend) for t in merged):
            spec, batch, threads, backend = case
            if spec in skipped:
                continue
            progress(f"crosscheck: {spec} batch {batch} on {threads} thread(s) ({backend})")
            try:
                predicted = _predict_group(profile, workload, spec, batch, threads, seed, backend)
            except SimulatorError as err:
                skipped[spec] = str(err)
                continue
            for t in merged:
                if (t.format, t.batch, t.threads, t.backend) == case and t.layer in predicted:
                    cells.append(VariantCell(t, *predicted[t.layer]))
    return VariantCheck(profile.name, cells, skipped, list(dict.fromkeys(notes)))


def render(check: VariantCheck) -> str:
    """The per-cell table, the per-variant summary and the pair counts, as text."""
    from ..base.units import format_seconds

    lines = [f"{check.profile} vs measured on this machine, every variant: each layer alone, repeated; time per "
             "frame", "",
             f"{'layer':14s} {'batch':>5s} {'variant':12s} {'backend':18s} {'thr':>3s} {'measured':>10s} "
             f"{'spread':>6s} {'predicted':>10s} {'error':>7s}  bound"]
    for c in sorted(check.cells, key=lambda c: (c.measured.batch, c.measured.layer)):
        m = c.measured
        lines.append(f"{m.layer:14s} {m.batch:5d} {m.format:12s} {m.backend:18s} {m.threads:3d} "
                     f"{format_seconds(m.median_s):>10s} {100 * m.spread:5.0f}% {format_seconds(c.predicted_s):>10s} "
                     f"{100 * c.error:+6.0f}%  {c.bound}")
    lines += ["", f"per variant (target: median |error| <= {100 * TARGET_MEDIAN_ERROR:g}%)", "",
              f"{'variant':12s} {'n':>3s}  {'median |err|':>12s}  worst"]
    for s in check.summaries():
        worst = f"{s.worst.measured.layer} b{s.worst.measured.batch} {100 * s.worst.error:+.0f}%" if s.worst else "-"
        mark = "" if s.median_abs_error <= TARGET_MEDIAN_ERROR else "  (above target)"
        lines.append(f"{s.variant:12s} {s.cells:3d}  {100 * s.median_abs_error:11.1f}%  {worst}{mark}")
    right, total = check.winners()
    lines += ["", f"faster of each pair named right (target: >= {100 * TARGET_WINNERS:g}% of layers)", ""]
    for p in check.pairs():
        wrong = f"  wrong: {', '.join(p.wrong)}" if p.wrong else ""
        lines.append(f"{p.first + ' vs ' + p.second:28s} {p.right:3d} of {p.total:<3d} ({100 * p.share:3.0f}%){wrong}")
    if total:
        lines.append(f"{'all pairs':28s} {right:3d} of {total:<3d} ({100 * right / total:3.0f}%)")
    lines += _fault_lines(check.cells)
    lines += [f"skipped {spec}: {why}" for spec, why in check.skipped.items()]
    lines += [f"note (bench): {n}" for n in check.notes]
    return "\n".join(lines)


#: Pages faulted a call below which a measured cell is not listed (the allocator's own churn).
FAULT_FLOOR_BYTES = 1 << 20


def _fault_lines(cells: Sequence[VariantCell]) -> list[str]:
    """The cells that faulted in a MiB or more a call, or that the model maps afresh: measured
    against predicted MiB (``memory.fresh_pages``), so the mechanism is checked by a count."""
    listed = [c for c in cells if c.measured.faulted_bytes >= FAULT_FLOOR_BYTES or c.fresh_bytes]
    if not listed:
        return []
    mib = float(1 << 20)
    return ["", "pages faulted a call, MiB: measured (bench) / mapped afresh (memory.fresh_pages)", ""] + [
        f"{c.measured.layer:14s} {c.measured.batch:5d} {c.measured.format:12s} "
        f"{c.measured.faulted_bytes / mib:8.1f} / {c.fresh_bytes / mib:.1f}"
        for c in sorted(listed, key=lambda c: (c.measured.batch, c.measured.layer))]


def plot(check: VariantCheck, path: str | Path) -> None:
    """Simulated against measured time per frame, one marker per variant, log-log, with the
    diagonal and the target band."""
    import numpy as np

    from ..output.plots import subplots

    fig, axes = subplots(1, 1, figsize=(5.5, 5.0), squeeze=False)
    ax = axes[0, 0]
    markers = itertools.cycle("osD^v<>pX*")
    for spec in check.variants:
        cells = [c for c in check.cells if c.measured.format == spec]
        ax.loglog([c.measured.median_s * 1e6 for c in cells], [c.predicted_s * 1e6 for c in cells], next(markers),
                  label=spec, alpha=0.8)
    every = [c.measured.median_s * 1e6 for c in check.cells] + [c.predicted_s * 1e6 for c in check.cells]
    if every:
        span = np.array([min(every) / 1.5, max(every) * 1.5])
        ax.plot(span, span, color="grey", lw=0.8)
        for factor in (1 - TARGET_MEDIAN_ERROR, 1 + TARGET_MEDIAN_ERROR):
            ax.plot(span, span * factor, color="grey", lw=0.5, ls="--")
    ax.set(xlabel="measured µs per frame", ylabel="simulated µs per frame")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"{check.profile}: every variant, simulated vs measured", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
