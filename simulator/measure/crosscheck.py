"""The simulator against real timings of this machine (``python -m simulator crosscheck``).

Each measured layer (a ``bench --out`` file: one format, one batch) becomes a cell of the same
kind as a published EIE cell (:class:`simulator.studies.validation.Cell`, the measurement in place of
the published figure), simulated in the same case: the same batch and format, the layer alone
and repeated (two back-to-back runs, the second timed: steady state, as the warmed-up real
calls are), on as many cores as the real kernel ran on (scipy's CSR runs on one thread).
The cache model runs once per (batch, format, threads) group through
:func:`simulator.pipeline.benchmark_works`; timing, statistics and the optional fit are
:mod:`simulator.studies.validation`'s ``predict``, ``summarize`` and ``fit``.

With ``fit``, the profile's rates (kernel efficiencies, sustained DRAM bandwidth, DRAM
latency, requests in flight) are fitted on the cells that are not held out and the held-out
cells are reported separately. Held out: the NeuralTalk layers (``NT_``) of the EIE workload
as in ``validate eie``; for other workloads, every third layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..base.errors import ConfigError
from ..compress.compression import StorageFormat
from ..engine.core import LayerWork
from ..hardware.profile import HardwareProfile
from ..model.workload import Workload
from ..pipeline import RepeatMode, RunOptions, benchmark_works
from ..studies.validation import (
    BENCHMARK_REPEATS,
    HELD_OUT_PREFIX,
    Cell,
    CellResult,
    Rates,
    Summary,
    fit,
    predict,
    summarize,
)
from .bench import BenchResult

PLATFORM = "this machine"
_FORMAT_NAMES = {"dense": "dense", "csr": "sparse"}   # bench format -> validation cell format


@dataclass(frozen=True)
class MeasuredCell:
    """A measured layer as a validation cell, with the threads its kernel ran on."""

    cell: Cell
    threads: int
    backend: str
    spread: float            # (p90 - p10) / median of the real timings
    held_out: bool


@dataclass(frozen=True)
class CrossCheck:
    """Predicted vs measured for every cell, the summaries, and the fitted rates (if fitted)."""

    profile: str
    cells: list[MeasuredCell]
    results: list[CellResult]          # in the order of ``cells``
    summaries: list[Summary]
    fitted: Optional[Rates] = None

    def to_json(self) -> dict:
        """The ``--json`` document."""
        def summary(s: Summary) -> dict:
            return {"name": s.name, "cells": s.cells, "median_abs_error": s.median_abs_error,
                    "within_25": s.within_25, "winners_right": s.winners_right, "winners_total": s.winners_total,
                    "worst": None if s.worst is None else {"layer": s.worst.cell.layer, "batch": s.worst.cell.batch,
                                                           "format": s.worst.cell.format, "error": s.worst.error}}
        return {
            "profile": self.profile,
            "mode": "each layer alone, repeated; simulated: 2 back-to-back runs, the second timed; per frame",
            "cells": [{"layer": m.cell.layer, "batch": m.cell.batch, "format": m.cell.format, "kernel": m.cell.kernel,
                       "backend": m.backend, "threads": m.threads, "measured_s": m.cell.published_s,
                       "measured_spread": m.spread, "predicted_s": r.predicted_s, "error": r.error, "bound": r.bound,
                       "set": "held-out" if m.held_out else "fitted"}
                      for m, r in zip(self.cells, self.results)],
            "summaries": [summary(s) for s in self.summaries],
            "fitted": None if self.fitted is None else self.fitted.to_json(),
        }


def measured_cells(benches: Sequence[BenchResult], workload: Workload, source: str = "measured") -> list[MeasuredCell]:
    """Validation cells of every measured weighted layer (layers without weights are left out:
    their time is the per-call overhead and a copy, not the memory model's subject)."""
    weighted = {l.name for l in workload.layers if l.kind.has_weights}
    every_third = not any(name.startswith(HELD_OUT_PREFIX) for name in weighted)
    order = [l.name for l in workload.layers if l.kind.has_weights]
    # The same case measured in several runs (repeated bench runs on a shared machine): keep the
    # fastest run's median, with its backend and threads. Other processes only ever slow a run
    # down, so the fastest run is the least disturbed one, the counterpart of calibrate's best call.
    cases: dict[tuple, list] = {}
    for bench in benches:
        if bench.repeat_mode != RepeatMode.LAYER.value:
            raise ConfigError(source, "repeat_mode", f"{bench.repeat_mode!r}: only layer mode is cross-checked")
        for timing in bench.layers:
            cases.setdefault((timing.layer, timing.batch, timing.format), []).append(timing)
    chosen = []
    for runs in cases.values():
        runs = sorted(runs, key=lambda t: t.median_s)
        chosen.append(runs[0])
    out = []
    for timing in chosen:
        if timing.layer not in weighted:
            if timing.layer not in {l.name for l in workload.layers}:
                raise ConfigError(source, f"layers.{timing.layer}", f"is not a layer of {workload.path}")
            continue
        if timing.format not in _FORMAT_NAMES:
            raise ConfigError(source, f"layers.{timing.layer}.format", f"{timing.format!r} is not dense or csr")
        cell = Cell(PLATFORM, timing.batch, _FORMAT_NAMES[timing.format], timing.layer, timing.median_s,
                    timing.backend)
        held = cell.held_out if not every_third else order.index(timing.layer) % 3 == 2
        out.append(MeasuredCell(cell, timing.threads, timing.backend, (timing.p90_s - timing.p10_s) / timing.median_s,
                                held))
    return out


def _library(m: MeasuredCell) -> str:
    """The profile's CSR library a cell ran on: its backend for a CSR cell (a name the profile may
    not have: then its own ``spmv`` / ``spmm``), none for a dense one."""
    return m.backend if m.cell.format == "sparse" else ""


def cell_works(profile: HardwareProfile, workload: Workload, cells: Sequence[MeasuredCell],
               progress: Callable[[str], None] = lambda _: None) -> dict[tuple, LayerWork]:
    """The cache model once per (batch, format, threads, library): tile work per cell key (the
    threads decide how the rows split among cores and which private caches see them; a CSR
    library's index width, the bytes its matrices take)."""
    works: dict[tuple, LayerWork] = {}
    groups = sorted({(m.cell.batch, m.cell.format, m.threads, _library(m)) for m in cells})
    for batch, fmt, threads, library in groups:
        options = RunOptions(batch=batch, repeat=BENCHMARK_REPEATS, repeat_mode=RepeatMode.LAYER, host_copies=False,
                             threads=min(threads, profile.compute.cores),
                             formats=(StorageFormat.CSR if fmt == "sparse" else StorageFormat.DENSE,))
        progress(f"crosscheck: cache model, {fmt} batch {batch} on {threads} thread(s)"
                 + (f" ({library})" if library else ""))
        for work in benchmark_works(profile.with_sparse_library(library), workload, options.formats[0], options):
            key = (PLATFORM, batch, fmt, work.traffic.layer.name)
            works[key + (threads, library)] = work.without_trace()
    return works


def crosscheck(profile: HardwareProfile, workload: Workload, benches: Sequence[BenchResult], do_fit: bool = False,
               progress: Callable[[str], None] = lambda _: None, source: str = "measured") -> CrossCheck:
    """Simulate every measured cell; with ``do_fit``, first fit the profile's rates on the
    cells that are not held out."""
    cells = measured_cells(benches, workload, source)
    if not cells:
        raise ConfigError(source, "layers", "no measured layer with weights to compare")
    raw = cell_works(profile, workload, cells, progress)
    # validation.predict looks works up by the cell's key; threads are part of this case
    works = {m.cell.key: raw[m.cell.key + (m.threads, _library(m))] for m in cells}
    fitted = None
    if do_fit:
        fit_on = [m.cell for m in cells if not m.held_out]
        if not fit_on:
            raise ConfigError(source, "layers", "every cell is held out: nothing to fit on")
        fitted = fit(profile, fit_on, works, progress)
        profile = fitted.apply(profile)
    results = predict(profile, [m.cell for m in cells], works)
    held = {m.cell.key for m in cells if m.held_out}
    summaries = [summarize("all", results)]
    if do_fit:
        summaries += [summarize("fitted", [r for r in results if r.cell.key not in held]),
                      summarize("held-out", [r for r in results if r.cell.key in held])]
    for batch in sorted({m.cell.batch for m in cells}):
        for fmt in ("dense", "sparse"):
            group = [r for r in results if r.cell.batch == batch and r.cell.format == fmt]
            if group:
                summaries.append(summarize(f"{'csr' if fmt == 'sparse' else fmt} batch {batch}", group))
    return CrossCheck(profile.name, cells, results, summaries, fitted)


def render(check: CrossCheck) -> str:
    """The per-cell table and the summaries as text."""
    from ..base.units import format_seconds

    lines = [f"{check.profile} vs measured on this machine: each layer alone, repeated; time per frame", "",
             f"{'layer':14s} {'batch':>5s} {'format':6s} {'backend':11s} {'thr':>3s} {'measured':>10s} "
             f"{'spread':>6s} {'predicted':>10s} {'error':>7s}  {'set':8s}  bound"]
    for m, r in zip(check.cells, check.results):
        c = m.cell
        lines.append(f"{c.layer:14s} {c.batch:5d} {'csr' if c.format == 'sparse' else c.format:6s} {m.backend:11s} "
                     f"{m.threads:3d} {format_seconds(c.published_s):>10s} {100 * m.spread:5.0f}% "
                     f"{format_seconds(r.predicted_s):>10s} {100 * r.error:+6.0f}%  "
                     f"{'held-out' if m.held_out else 'fitted':8s}  {r.bound}")
    lines += ["", f"{'cells':16s} {'n':>3s}  {'median |err|':>12s}  {'within 25%':>10s}  {'winner right':>12s}  worst"]
    for s in check.summaries:
        worst = "-" if s.worst is None else (f"{s.worst.cell.layer} b{s.worst.cell.batch} "
                                             f"{'csr' if s.worst.cell.format == 'sparse' else 'dense'} "
                                             f"{100 * s.worst.error:+.0f}%")
        winners = f"{s.winners_right:>5d} of {s.winners_total:<3d}" if s.winners_total else f"{'-':>12s}"
        lines.append(f"{s.name:16s} {s.cells:3d}  {100 * s.median_abs_error:11.1f}%  {100 * s.within_25:9.0f}%  "
                     f"{winners}  {worst}")
    if check.fitted is not None:
        lines += ["", "fitted rates (apply them to the profile by hand if they hold up on the held-out cells):",
                  check.fitted.as_yaml()]
    return "\n".join(lines)


def plot(check: CrossCheck, path: str | Path) -> None:
    """Per layer, measured and predicted time side by side (log scale), one panel per
    (batch, format); measured bars carry their p10-p90 spread."""
    import numpy as np

    from ..output.plots import subplots

    groups = sorted({(m.cell.batch, m.cell.format) for m in check.cells})
    fig, axes = subplots(len(groups), 1, figsize=(8.0, 2.6 * len(groups)), squeeze=False)
    for ax, (batch, fmt) in zip(axes[:, 0], groups):
        pairs = [(m, r) for m, r in zip(check.cells, check.results) if (m.cell.batch, m.cell.format) == (batch, fmt)]
        x = np.arange(len(pairs))
        measured = np.array([m.cell.published_s for m, _ in pairs]) * 1e6
        predicted = np.array([r.predicted_s for _, r in pairs]) * 1e6
        spread = np.array([m.spread for m, _ in pairs]) * measured / 2
        ax.bar(x - 0.2, measured, 0.4, yerr=spread, label="measured (median, p10-p90)", color="tab:blue")
        ax.bar(x + 0.2, predicted, 0.4, label="simulated", color="tab:orange")
        ax.set_xticks(x, [m.cell.layer for m, _ in pairs], rotation=30, fontsize=7, ha="right")
        ax.set(yscale="log", ylabel="µs per frame",
               title=f"{'CSR' if fmt == 'sparse' else 'dense'}, batch {batch}")
        ax.grid(True, axis="y", which="both", lw=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{check.profile}: simulated vs measured", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

