"""Validation against EIE Table IV, and the calibration of a profile's rates on part of it.

The published cells (``simulator/data/eie_table4.csv``): nine FC / LSTM layers, dense (MKL or
cuBLAS GEMV / GEMM) and CSR (CSRMV / CSRMM), batch 1 and 64, on a Core i7-5930K and a Titan X,
in microseconds per frame. The benchmark's protocol is reproduced (Deep Compression, Table 8's
caption: "the time spent on each layer for 4096 input samples", averaged per sample): each
network's layers in order (:func:`network_of`), the network run twice back to back (the first run
warms the caches, the second is timed), so a layer meets the caches its network's other layers
left; time per frame = the timed run's time over the batch, no host-device copies.

Calibration may change, per profile, only named mechanism parameters within physical bounds
(:func:`fit_parameters`): the sustained DRAM bandwidth (50-100% of peak), the DRAM latency
(within 2x of the datasheet value), the requests in flight per core of prefetched streams and
of gathers (within 4x), the sparse kernels' cycles per non-zero and per row, and the dense
GEMM's library efficiency. It fits them
on the AlexNet and VGG-16 layers (24 of 36 cells per platform, two thirds) and reports the
NeuralTalk layers as held out. Because those rates do not change what the caches do, the cache
model runs once per cell; each trial of the optimiser only re-times the tiles in the engine.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional

import numpy as np

from ..base.console import expect
from ..base.errors import ConfigError
from ..base.paths import DATA_DIR
from ..compress.compression import StorageFormat
from ..engine.core import LayerWork, simulate
from ..hardware.profile import HardwareProfile
from ..model.workload import Workload
from ..pipeline import RunOptions, benchmark_works

if TYPE_CHECKING:
    import pandas

DATA = DATA_DIR
TABLE = DATA / "eie_table4.csv"
BENCHMARK_REPEATS = 2   # one run to warm the caches, one measured
HELD_OUT_PREFIX = "NT_"                # NeuralTalk layers: never used for fitting
PLATFORM_PROFILES = {"CPU_Core_i7-5930K": "i7-5930k.yaml", "GPU_Titan_X": "titan-x.yaml"}
EIE_PLATFORM = "EIE_64PE_800MHz"
EIE_PROFILE = "eie.yaml"
EIE_ROWS = ("compressed_theoretical", "compressed_actual")
FORMATS = {"dense": StorageFormat.DENSE, "sparse": StorageFormat.CSR}


@dataclass(frozen=True)
class Cell:
    """One published measurement."""

    platform: str
    batch: int
    format: str          # "dense" or "sparse" (CSR)
    layer: str
    published_s: float   # per frame
    kernel: str          # as the paper names it

    @property
    def held_out(self) -> bool:
        """True for cells never used to fit (the NeuralTalk layers, and every EIE row: nothing
        of the EIE profile is fitted)."""
        return self.layer.startswith(HELD_OUT_PREFIX) or self.platform == EIE_PLATFORM

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"platform": self.platform, "batch": self.batch, "format": self.format, "layer": self.layer,
                "published_s": self.published_s, "kernel": self.kernel, "held_out": self.held_out}

    @property
    def key(self) -> tuple[str, int, str, str]:
        """(platform, batch, format, layer)."""
        return (self.platform, self.batch, self.format, self.layer)


@dataclass(frozen=True)
class CellResult:
    """A cell with the simulator's prediction."""

    cell: Cell
    predicted_s: float
    bound: str
    energy_j: float = 0.0       # per frame, as the profile's energies give it

    @property
    def power_w(self) -> float:
        """Average power while the layer runs."""
        return self.energy_j / self.predicted_s if self.predicted_s > 0 else 0.0

    @property
    def error(self) -> float:
        """Relative error, predicted / published - 1."""
        return self.predicted_s / self.cell.published_s - 1.0


@dataclass(frozen=True)
class Summary:
    """Error statistics of a group of cells."""

    name: str
    cells: int
    median_abs_error: float
    within_10: float
    within_25: float
    worst: Optional[CellResult]
    winners_right: int
    winners_total: int


def load_cells(path: Path = TABLE, platforms: Iterable[str] = tuple(PLATFORM_PROFILES)) -> list[Cell]:
    """The cells of EIE Table IV for ``platforms`` (default: the CPU and the GPU)."""
    cells = []
    platforms = set(platforms)
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["platform"] in platforms:
                cells.append(Cell(row["platform"], int(row["batch"]), row["format"], row["layer"],
                                  float(row["us"]) * 1e-6, row["kernel"]))
    return cells


def network_of(layer_name: str) -> str:
    """The network a benchmark layer belongs to: its name up to the first underscore
    (``AlexNet_FC6`` -> ``AlexNet``, ``NT_LSTM`` -> ``NT``)."""
    return layer_name.split("_", 1)[0]


def _group_works(profile: HardwareProfile, workload: Workload, batch: int, fmt: str) -> list[LayerWork]:
    """The benchmark's protocol (DC Table 8's caption: "the time spent on each layer for 4096
    input samples", averaged per sample): each network's layers in order, sample after sample, so
    a layer meets the caches its network's other layers left, not its own last call."""
    options = RunOptions(batch=batch, repeat=BENCHMARK_REPEATS, host_copies=False)
    return [w.without_trace() for w in benchmark_works(profile, workload, FORMATS[fmt], options, group_of=network_of)]


def cell_works(profile: HardwareProfile, workload: Workload, cells: Iterable[Cell],
               progress: Callable[[str], None] = lambda _: None, workers: Optional[int] = None
               ) -> dict[tuple, LayerWork]:
    """Run the cache model once per (batch, format) for every layer: tile work per cell key.

    The (batch, format) groups are independent, so they run in a process pool (one process per
    core by default; ``workers=1`` runs them here)."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from ..base.workers import init_worker, result, stop_pool, worker_initargs

    groups = sorted({(c.platform, c.batch, c.format) for c in cells})
    workers = workers or min(len(groups), os.cpu_count() or 1)
    works: dict[tuple, LayerWork] = {}
    expect(progress, len(groups))
    results: Iterator[list[LayerWork]]
    if workers <= 1:
        results = (_group_works(profile, workload, batch, fmt) for _, batch, fmt in groups)
    else:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=init_worker, initargs=worker_initargs())
        results = map(result, [pool.submit(_group_works, profile, workload, batch, fmt) for _, batch, fmt in groups])
    interrupted = True
    try:
        for (platform, batch, fmt), group in zip(groups, results):
            progress(f"{platform}: {fmt} batch {batch} done")
            for work in group:
                works[(platform, batch, fmt, work.traffic.layer.name)] = work
        interrupted = False
    finally:
        if workers > 1:
            stop_pool(pool, interrupted)
    return works


def predict(profile: HardwareProfile, cells: Iterable[Cell], works: dict[tuple, LayerWork]) -> list[CellResult]:
    """Time every cell's layer alone in the engine; per-frame time = layer time / batch. A cell
    whose kernel names one of the profile's CSR libraries (a measured cell's backend) is timed with
    that library's costs (:meth:`HardwareProfile.with_sparse_library`; its work must be too)."""
    out = []
    libraries: dict[str, HardwareProfile] = {}
    for cell in cells:
        if cell.kernel not in libraries:
            libraries[cell.kernel] = profile.with_sparse_library(cell.kernel)
        (layer,) = simulate(libraries[cell.kernel], [works[cell.key]])
        out.append(CellResult(cell, layer.time_s / cell.batch, layer.bound, layer.energy_j / cell.batch))
    return out


def summarize(name: str, results: list[CellResult]) -> Summary:
    """Median |error|, shares within 10% / 25%, the worst cell, and dense-vs-CSR winners."""
    if not results:
        return Summary(name, 0, math.nan, math.nan, math.nan, None, 0, 0)
    errors = [abs(r.error) for r in results]
    worst = max(results, key=lambda r: abs(math.log(r.predicted_s / r.cell.published_s)))
    by_case: dict[tuple, dict[str, CellResult]] = {}
    for r in results:
        by_case.setdefault((r.cell.platform, r.cell.batch, r.cell.layer), {})[r.cell.format] = r
    right = total = 0   # plain ints (numpy bools would leak into the JSON)
    for pair in by_case.values():
        if len(pair) == 2:
            total += 1
            published = pair["sparse"].cell.published_s < pair["dense"].cell.published_s
            predicted = pair["sparse"].predicted_s < pair["dense"].predicted_s
            right += int(published == predicted)
    return Summary(name, len(results), float(statistics.median(errors)), float(np.mean([e <= 0.10 for e in errors])),
                   float(np.mean([e <= 0.25 for e in errors])), worst, right, total)


# --- calibration -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitParameter:
    """A profile field calibration may move, within physical bounds (``path``: attribute names
    from the profile down, as :func:`with_values` takes them)."""

    path: str
    lower: float
    upper: float
    integer: bool = False
    yaml: str = ""        # how the profile file writes it (``memory.dram.latency``)
    unit: float = 1.0     # divide by this to write it in the profile's unit
    suffix: str = ""      # the unit written after the value


def fit_parameters(profile: HardwareProfile) -> list[FitParameter]:
    """What calibration may change on ``profile``, each within a range around the profile's own
    (datasheet-based) value or a physical range: the DRAM's sustained bandwidth (50-100% of peak),
    its latency (within 2x), the prefetched streams' and the gathers' requests in flight (within
    4x), the sparse kernels' cycles per non-zero and per row (within 8x), and the dense GEMM's
    library efficiency. A fit that wants to leave these ranges is pointing at a missing
    mechanism, not at a better number."""
    dram = profile.dram
    if dram is None:
        raise ConfigError(profile.path, "memory.dram", "missing: the fit adjusts the DRAM's bandwidth and latency")
    kernels = profile.compute.kernels
    out = [FitParameter("memory.dram.sustained_bandwidth_bytes_per_s", 0.5 * dram.peak_bandwidth_bytes_per_s,
                        dram.peak_bandwidth_bytes_per_s, yaml="memory.dram.sustained_bandwidth", unit=1e9,
                        suffix=" GB/s"),
           FitParameter("memory.dram.latency_s", dram.latency_s / 2, dram.latency_s * 2, yaml="memory.dram.latency",
                        unit=1e-9, suffix=" ns"),
           _around("memory.dram.outstanding_requests_per_core", dram.outstanding_requests_per_core, 4, True),
           _around("compute.outstanding_gathers_per_core", profile.compute.outstanding_gathers_per_core, 4, True),
           FitParameter("compute.kernels.gemm.library_efficiency", 0.05, 1.0)]
    for kind in ("spmv", "spmm"):
        kernel = getattr(kernels, kind)
        out.append(_around(f"compute.kernels.{kind}.cycles_per_nonzero", kernel.cycles_per_nonzero, 8))
        out.append(_around(f"compute.kernels.{kind}.cycles_per_row", max(kernel.cycles_per_row, 1.0), 8))
        if kernel.rows_in_flight_per_core is not None:
            out.append(_around(f"compute.kernels.{kind}.rows_in_flight_per_core", kernel.rows_in_flight_per_core,
                               4, True))
    return out


def _around(path: str, value: float, factor: float, integer: bool = False) -> FitParameter:
    return FitParameter(path, max(1.0, value / factor) if integer else value / factor, value * factor, integer)


def value_at(model, path: str):
    """The value at a dotted attribute path of a (nested) pydantic model."""
    for part in path.split("."):
        model = getattr(model, part)
    return model


def with_values(profile: HardwareProfile, values: dict[str, float]) -> HardwareProfile:
    """A copy of ``profile`` with the fields at the given dotted attribute paths replaced."""
    def put(model, parts: list[str], value):
        if len(parts) == 1:
            return model.model_copy(update={parts[0]: value})
        return model.model_copy(update={parts[0]: put(getattr(model, parts[0]), parts[1:], value)})

    for path, value in values.items():
        profile = put(profile, path.split("."), value)
    return profile


@dataclass
class Rates:
    """Values of the fit parameters (see :func:`fit_parameters`), by attribute path."""

    values: dict[str, float]
    parameters: list[FitParameter] = field(default_factory=list)
    history: list[float] = field(default_factory=list)

    @staticmethod
    def of(profile: HardwareProfile) -> Rates:
        """The profile's current values of its fit parameters."""
        parameters = fit_parameters(profile)
        return Rates({p.path: float(value_at(profile, p.path)) for p in parameters}, parameters)

    def apply(self, profile: HardwareProfile) -> HardwareProfile:
        """A copy of ``profile`` with these values."""
        kinds = {p.path: p.integer for p in self.parameters}
        return with_values(profile, {k: int(round(v)) if kinds.get(k) else v for k, v in self.values.items()})

    def to_json(self) -> dict:
        """The values by attribute path (base units)."""
        return dict(self.values)

    def as_yaml(self) -> str:
        """The fitted values as the profile file writes them, one ``field: value`` line each."""
        lines = []
        for p in self.parameters or [FitParameter(k, 0, 0) for k in self.values]:
            value = self.values[p.path]
            shown = f"{int(round(value))}" if p.integer else f"{value / p.unit:.4g}"
            lines.append(f"{p.yaml or p.path}: {shown}{p.suffix}")
        return "\n".join(lines)


def _loss(results: list[CellResult]) -> float:
    """Mean |log error|: symmetric in over- and under-prediction, robust to one bad cell."""
    return float(np.mean([abs(math.log(r.predicted_s / r.cell.published_s)) for r in results]))


FIT_EVALUATIONS = 400   # per starting point of the search
PRIOR_WEIGHT = 0.002    # of the mean squared log-distance from the profile's values, added to the loss


def fit(profile: HardwareProfile, cells: list[Cell], works: dict[tuple, LayerWork],
        progress: Callable[[str], None] = lambda _: None) -> Rates:
    """Fit the parameters on ``cells`` (Powell's method on log-parameters within their bounds),
    from the profile's values and from the middle of the bounds; the better end wins."""
    from scipy.optimize import minimize

    start = Rates.of(profile)
    parameters = start.parameters
    lower = np.log([p.lower for p in parameters])
    upper = np.log([p.upper for p in parameters])
    here = np.clip(np.log([start.values[p.path] for p in parameters]), lower, upper)
    starts = [here, (lower + upper) / 2]

    def rates(x: np.ndarray) -> Rates:
        v = np.exp(np.clip(x, lower, upper))
        return Rates({p.path: float(round(val) if p.integer else val) for p, val in zip(parameters, v)}, parameters)

    history: list[float] = []
    expect(progress, len(starts) * FIT_EVALUATIONS // 25)    # at most: a search may converge sooner

    def objective(x: np.ndarray) -> float:
        # a weak pull towards the profile's own (datasheet-based) values: a parameter no cell binds
        # stays where the datasheet put it instead of drifting to a bound along a flat direction
        loss = _loss(predict(rates(x).apply(profile), cells, works)) + PRIOR_WEIGHT * float(np.mean((x - here) ** 2))
        history.append(loss)
        if len(history) % 25 == 0:
            progress(f"fitting {profile.name}: trial {len(history)}, mean |log error| {min(history):.3f}")
        return loss

    # Powell: line searches along each parameter, within the bounds; it copes with the flat
    # directions of parameters that do not bind on any cell better than a simplex does
    bounds = list(zip(lower, upper))
    best = min((minimize(objective, x0, method="Powell", bounds=bounds,
                         options={"maxfev": FIT_EVALUATIONS, "xtol": 1e-3, "ftol": 1e-4})
                for x0 in starts), key=lambda r: r.fun)
    fitted = rates(best.x)
    fitted.history = history
    return fitted


# --- the whole comparison ----------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """Every cell's prediction and the summaries ``validate eie`` prints."""

    results: list[CellResult]
    summaries: list[Summary]
    fitted: dict[str, Rates]          # profile name -> rates fitted now (empty unless --fit)
    fit_on_all: bool = False          # the rates were fitted on every cell (a diagnostic)

    def to_dataframe(self) -> pandas.DataFrame:
        """Every cell (published, predicted, error, set, bound) as a table, for notebooks."""
        import pandas

        return pandas.DataFrame(self.to_json()["cells"])

    def to_json(self) -> dict:
        """The ``--json`` document."""
        def summary(s: Summary) -> dict:
            return {"name": s.name, "cells": s.cells, "median_abs_error": s.median_abs_error,
                    "within_10": s.within_10, "within_25": s.within_25,
                    "worst": None if s.worst is None else {**s.worst.cell.to_json(), "predicted_s": s.worst.predicted_s,
                                                           "error": s.worst.error},
                    "winners_right": int(s.winners_right), "winners_total": int(s.winners_total)}
        return {
            "source": "EIE arXiv:1602.01528v2 Table IV (CPU i7-5930K, GPU Titan X)",
            "mode": "each network's layers in order, 2 back-to-back runs, time of the second per frame; no host copies",
            "cells": [{**r.cell.to_json(), "predicted_s": r.predicted_s, "error": r.error, "bound": r.bound,
                       "energy_j": r.energy_j,
                       "set": "held-out" if r.cell.held_out else "fitted"} for r in self.results],
            "summaries": [summary(s) for s in self.summaries],
            "power": [{**p.cell.to_json(), "published_w": p.published_w, "predicted_w": p.predicted_w}
                      for p in power_rows(self.results)],
            "fitted_on": ("all cells" if self.fit_on_all else "fitted cells") if self.fitted else None,
            "fitted_now": {name: rates.to_json() for name, rates in self.fitted.items()},
        }


def eie_rows(profile: HardwareProfile, workload: Workload) -> list[CellResult]:
    """EIE's theoretical and actual rows: the PE-array model's even-spread and simulated times."""
    from ..engine.accelerator import eie_works

    published = {c.key: c for c in load_cells(platforms=[EIE_PLATFORM])}
    out = []
    for work, timing in eie_works(profile, workload, seed=0):
        (layer,) = simulate(profile, [work])
        name = work.traffic.layer.name
        theoretical = published[(EIE_PLATFORM, 1, "compressed_theoretical", name)]
        actual = published[(EIE_PLATFORM, 1, "compressed_actual", name)]
        out.append(CellResult(theoretical, timing.theoretical_cycles / profile.compute.clock_hz, "even spread"))
        out.append(CellResult(actual, layer.time_s, layer.bound, layer.energy_j))
    return out


def compare(profiles: dict[str, HardwareProfile], workload: Workload, do_fit: bool = False,
            progress: Callable[[str], None] = lambda _: None,
            eie_profile: Optional[HardwareProfile] = None, fit_on_all: bool = False) -> Comparison:
    """Simulate every CPU and GPU cell; with ``do_fit``, first fit each profile's rates on the
    fitted cells (on every cell with ``fit_on_all``: a diagnostic of how well the allowed rates
    can do at all, which is then no validation). With ``eie_profile``, also the EIE accelerator's
    theoretical and actual rows."""
    cells = load_cells()
    results: list[CellResult] = []
    fitted: dict[str, Rates] = {}
    for platform, profile in profiles.items():
        mine = [c for c in cells if c.platform == platform]
        works = cell_works(profile, workload, mine, progress)
        if do_fit:
            rates = fit(profile, [c for c in mine if fit_on_all or not c.held_out], works, progress)
            fitted[profile.name] = rates
            profile = rates.apply(profile)
        results.extend(predict(profile, mine, works))
    summaries = [summarize("fitted", [r for r in results if not r.cell.held_out]),
                 summarize("held-out", [r for r in results if r.cell.held_out]),
                 summarize("all", results)]
    for platform in profiles:
        summaries.append(summarize(platform, [r for r in results if r.cell.platform == platform]))
    if eie_profile is not None:
        expect(progress, 1)
        progress("EIE: PE-array model")
        rows = eie_rows(eie_profile, workload)
        results.extend(rows)
        for kind in EIE_ROWS:
            summaries.append(summarize(f"EIE {kind.split('_')[1]}", [r for r in rows if r.cell.format == kind]))
    return Comparison(results, summaries, fitted, fit_on_all=do_fit and fit_on_all)


POWER_TABLE = DATA / "eie_power_deepcompression.csv"


@dataclass(frozen=True)
class PowerRow:
    """Deep Compression Table 9: measured power of a layer vs the model's dynamic power."""

    cell: Cell
    published_w: float
    predicted_w: float


def power_rows(results: list[CellResult]) -> list[PowerRow]:
    """Join the predictions with the measured per-layer power (CPU: pcm-power, GPU: nvidia-smi)."""
    by_key = {r.cell.key: r for r in results}
    out = []
    with open(POWER_TABLE, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["platform"], int(row["batch"]), row["format"], row["layer"])
            if key in by_key:
                out.append(PowerRow(by_key[key].cell, float(row["watts"]), by_key[key].power_w))
    return out


def energy_argument(results: list[CellResult], layer: str = "AlexNet_FC7") -> list[tuple[str, float]]:
    """Energy per frame of one layer at batch 1 on every platform, dense and compressed."""
    picks = []
    for r in results:
        c = r.cell
        if c.layer == layer and c.batch == 1 and c.format in ("dense", "sparse", "compressed_actual"):
            name = "CSR" if c.format == "sparse" else c.format.replace("compressed_actual", "compressed")
            picks.append((f"{c.platform} {name}", r.energy_j))
    return picks


def render(comparison: Comparison) -> str:
    """The per-cell table and the summaries as text."""
    from ..base.units import format_seconds

    lines = ["EIE Table IV vs the simulator: each network's layers in order, repeated; time per frame; "
             "GPU without copies",
             *(["Rates fitted now on EVERY cell: the held-out rows were in the fit (a diagnostic of what the "
                "allowed rates can do, not a validation)"] if comparison.fit_on_all else []),
             "", f"{'platform':18s} {'batch':>5s}  {'format':6s} {'layer':12s} {'published':>10s} "
             f"{'predicted':>10s} {'error':>7s}  {'set':8s}  bound"]
    for r in comparison.results:
        c = r.cell
        fmt = {"sparse": "csr", "compressed_theoretical": "theory", "compressed_actual": "eie"}.get(c.format, c.format)
        lines.append(f"{c.platform:18s} {c.batch:5d}  {fmt:6s} {c.layer:12s} "
                     f"{format_seconds(c.published_s):>10s} {format_seconds(r.predicted_s):>10s} "
                     f"{100 * r.error:+6.0f}%  "
                     f"{'held-out' if c.held_out else 'fitted':8s}  {r.bound}")
    lines += ["", f"{'cells':18s} {'n':>3s}  {'median |err|':>12s}  {'within 10%':>10s}  {'within 25%':>10s}  "
                  f"{'winner right':>12s}  worst cell"]
    for s in comparison.summaries:
        worst = "-" if s.worst is None else (f"{s.worst.cell.platform} b{s.worst.cell.batch} {s.worst.cell.format} "
                                             f"{s.worst.cell.layer} {100 * s.worst.error:+.0f}%")
        lines.append(f"{s.name:18s} {s.cells:3d}  {100 * s.median_abs_error:11.1f}%  {100 * s.within_10:9.0f}%  "
                     f"{100 * s.within_25:9.0f}%  {s.winners_right:>5d} of {s.winners_total:<3d}  {worst}")
    power = power_rows(comparison.results)
    if power:
        ratios = [p.predicted_w / p.published_w for p in power]
        lines += ["", "Power, Deep Compression Table 9 (measured) vs the model's dynamic power "
                      "(operations and bytes moved; no static power known for these chips):"]
        for platform in sorted({p.cell.platform for p in power}):
            mine = [p for p in power if p.cell.platform == platform]
            lines.append(f"  {platform:18s} measured {min(p.published_w for p in mine):.0f}-"
                         f"{max(p.published_w for p in mine):.0f} W, modelled "
                         f"{min(p.predicted_w for p in mine):.1f}-{max(p.predicted_w for p in mine):.1f} W")
        lines.append(f"  median modelled / measured: {statistics.median(ratios):.3f}")
    argument = energy_argument(comparison.results)
    eie = next((e for name, e in argument if "compressed" in name), 0.0)
    if argument and eie > 0:
        lines += ["", "EIE's energy argument, AlexNet_FC7 at batch 1 (energy per frame, dynamic):"]
        for name, energy in argument:
            lines.append(f"  {name:40s} {energy * 1e6:10.2f} uJ  {energy / eie:8.0f}x EIE")
    for name, rates in comparison.fitted.items():
        how = ("on every cell (do not paste: a profile is fitted on the fitted cells only)" if comparison.fit_on_all
               else "(paste into its profile, with a `fitted:` note)")
        lines += ["", f"fitted now for {name} {how}:", rates.as_yaml()]
    return "\n".join(lines)


def plot(comparison: Comparison, path: str | Path) -> None:
    """Predicted vs published, log-log, with the +-25% band; one marker per platform,
    filled for fitted cells and open for held-out ones."""
    from ..output.plots import subplots

    fig, ax = subplots(figsize=(6.4, 6.0))
    values = [v for r in comparison.results for v in (r.cell.published_s, r.predicted_s)]
    lo, hi = min(values) * 1e6 / 1.5, max(values) * 1e6 * 1.5
    line = np.geomspace(lo, hi, 50)
    ax.fill_between(line, line / 1.25, line * 1.25, color="0.9", label="±25%")
    ax.plot(line, line, color="0.5", lw=0.8)
    markers = {"CPU_Core_i7-5930K": ("s", "tab:blue"), "GPU_Titan_X": ("o", "tab:green"),
               EIE_PLATFORM: ("^", "tab:red")}
    for platform, (marker, colour) in markers.items():
        for held, face in ((False, colour), (True, "none")):
            pts = [r for r in comparison.results if r.cell.platform == platform and r.cell.held_out == held]
            if pts:
                ax.scatter([r.cell.published_s * 1e6 for r in pts], [r.predicted_s * 1e6 for r in pts],
                           marker=marker, facecolors=face, edgecolors=colour, s=28,
                           label=(f"{platform.split('_', 1)[1]} ({'held out' if held else 'fitted'})"
                                  if platform != EIE_PLATFORM else "EIE (not fitted)"))
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="published (µs per frame)",
           ylabel="simulated (µs per frame)", title="EIE Table IV: simulated vs published")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
