"""``python -m simulator sweep PROFILE --set FIELD=VALUES [...]``: what-if studies over a grid."""

from __future__ import annotations

import argparse
import shutil
import sys

from ..base.console import is_quiet, progress, showing
from ..base.errors import ConfigError
from ..base.paths import find_profile, find_workload
from ..compress.variants import DEFAULT_GROUP_SIZE
from .options import add_command, positive_int
from .run import DEFAULT_WORKLOAD


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand."""
    sweep = add_command(subparsers, "sweep", _sweep,
                        "run a grid of what-if points over profile, run and compression fields")
    sweep.add_argument("profile", help="hardware profile: a YAML file, or a shipped profile's name (tegra)")
    sweep.add_argument("--set", dest="sets", action="append", required=True, metavar="FIELD=VALUES",
                       help="a field and its values: a list (5GB/s,10GB/s), a geometric range (64KiB..8MiB:x2) "
                            "or an arithmetic range (0.04..0.5:+0.02); repeat for a grid")
    sweep.add_argument("--workload", help="workload YAML, or a shipped workload's name (default: alexnet)")
    sweep.add_argument("--format", metavar="SPEC[,SPEC...]",
                       help="the variants at every point, each STRUCTURE[@TYPE] as run takes them (dense,csr,"
                            "dense@int8, ...; default: dense,csr); see docs/compression.md")
    sweep.add_argument("--group-size", type=positive_int("--group-size"), default=DEFAULT_GROUP_SIZE,
                       help=f"weights per fp16 scale of @w8 / @w4 (default {DEFAULT_GROUP_SIZE})")
    sweep.add_argument("--batch", type=positive_int("--batch"), default=1, help="samples per inference (default 1)")
    sweep.add_argument("--repeat", type=positive_int("--repeat"), default=1,
                       help="back-to-back inferences per point; the last (warm caches) is reported")
    sweep.add_argument("--out", metavar="FILE", help="results file, .csv or .parquet; appended as points finish, "
                                                     "and resumed from if it exists")
    sweep.add_argument("--plot", metavar="FILE", help="also plot the sweep (.png, .pdf or .svg)")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int("--workers"),
                       help="local worker processes (default: one per CPU core; 1 runs in this process)")
    where.add_argument("--dask", metavar="tcp://HOST:PORT", help="run the points on this Dask scheduler's cluster")
    sweep.add_argument("--full-runs", action="store_true",
                       help="run the whole pipeline at every point even for a last-level cache-size sweep "
                            "(slower; the results are identical)")


def _sweep(args: argparse.Namespace) -> int:
    """Run a workload at every point of a grid over profile fields (memory.caches.L2.size,
    memory.dram.sustained_bandwidth, compute.kernels.spmv.cycles_per_nonzero, ...) and run fields (density, batch).
    Every point's profile is checked by the same rules as a profile file before any point runs. One row per point,
    variant and layer, written as points finish; an interrupted sweep resumes from --out."""
    from ..output.plots import check_plot_path, sweep_plot
    from ..studies.sweep import Backend, BackendChoice, plan_sweep, run_sweep
    from ..studies.sweepstore import ResultStore

    if args.dask is not None and "://" not in args.dask:
        raise ConfigError("command line", "--dask", f"{args.dask!r} is not a scheduler address such as "
                                                    "tcp://10.0.0.5:8786")
    plot = check_plot_path(args.plot, "plot") if args.plot else None
    formats = _formats(args.format, args.group_size)
    workload = find_workload(args.workload) if args.workload else DEFAULT_WORKLOAD
    plan = plan_sweep(find_profile(args.profile), args.sets, workload, formats, args.batch, args.repeat,
                      use_cache_path=not args.full_runs)
    store = ResultStore(args.out, plan)
    if args.dask:
        backend = BackendChoice(Backend.DASK, address=args.dask)
    elif args.workers == 1:
        backend = BackendChoice(Backend.INLINE)
    else:
        backend = BackendChoice(Backend.PROCESSES, workers=args.workers or 0)
    todo = len(plan.points) - len(store.finished() & {p.key for p in plan.points})
    how = "one cache pass, then one stack pass per point" if plan.cache_level is not None else "full runs"
    print(f"{len(plan.points)} points ({todo} to run, {how}) on {backend.label()}", file=sys.stderr)
    report = _Progress(todo, {p.index: p.label for p in plan.points})
    try:
        summary = run_sweep(plan, store, backend, report)
    finally:
        report.close()
    rows = store.plan_rows()
    print(_summary_table(plan, rows))
    failed = f", {summary.failed} failed" if summary.failed else ""
    resumed = f", {summary.resumed} already in {args.out}" if summary.resumed else ""
    print(f"\n{summary.points} points: {summary.ran} run{resumed}{failed} in {summary.seconds:.1f} s"
          + (f"; rows in {args.out}" if args.out else ""))
    if plot is not None:
        what = sweep_plot(plan, rows, plot)
        print(f"plot: {plot} ({what})")
    return 1 if summary.failed else 0


class _Progress:
    """A tqdm bar on a terminal; a plain line per finished point otherwise."""

    def __init__(self, total: int, labels: dict[int, str]) -> None:
        self.labels = labels
        self.bar = None
        self.quiet = is_quiet()
        if showing() and total:
            from tqdm import tqdm

            tqdm.monitor_interval = 0   # no monitor thread: the sweep may fork worker processes
            # a terminal that reports no width (some ptys) would get an empty bar
            width = shutil.get_terminal_size((0, 0)).columns
            self.bar = tqdm(total=total, file=sys.stderr, unit="point", dynamic_ncols=width > 0,
                            ncols=None if width > 0 else 80)

    def __call__(self, result, done: int, total: int) -> None:
        status = f"failed: {result.error}" if result.error else f"{result.seconds:.2f} s"
        line = f"point {result.index} ({self.labels.get(result.index, '')}): {status}"
        if self.bar is not None:
            self.bar.update(1)
            if result.error:
                self.bar.write(line)
        elif not self.quiet or result.error:    # off a terminal, a log line per point (--quiet: failures only)
            print(f"[{done}/{total}] {line}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        progress("")


def _formats(text, group_size: int) -> tuple:
    """``--format``'s variants; a list of plain storage formats stays one (the single-pass cache-size
    path traces those)."""
    from ..compress.compression import StorageFormat
    from ..compress.variants import is_legacy, parse_variants, storage_format

    if not text:
        return (StorageFormat.DENSE, StorageFormat.CSR)
    variants = parse_variants(text, group_size)
    return tuple(storage_format(v) for v in variants) if is_legacy(variants) else variants


def _summary_table(plan, rows) -> str:
    """Whole-network time per point and variant (and each variant's speed-up over dense)."""
    from ..base.texttable import format_table
    from ..base.units import format_seconds

    totals = {}
    errors = {}
    for r in rows:
        key = tuple(r.settings[a.column] for a in plan.axes)
        if r.error:
            errors[key] = r.error
        elif r.layer == "total":
            totals[(key, r.variant)] = r.time_s
    variants = list(dict.fromkeys(r.variant for r in rows if not r.error and r.layer == "total"))
    faster = [v for v in variants if v != "dense"] if "dense" in variants else []
    header = [a.field for a in plan.axes] + [f"{v} time" for v in variants]
    header += ["speed-up"] if variants == ["dense", "pruned"] else [f"{v} speed-up" for v in faster]
    body = []
    for point in plan.points:
        key = tuple(value for _, value in point.settings)
        cells = [a.readable(v) for a, v in zip(plan.axes, key)]
        if key in errors:
            body.append(cells + [f"failed: {errors[key]}"])
            continue
        if not any((key, v) in totals for v in variants):
            body.append(cells + ["(not run)"])
            continue
        times = [totals.get((key, v)) for v in variants]
        cells += [format_seconds(t) if t is not None else "-" for t in times]
        dense = totals.get((key, "dense"))
        for v in faster:
            t = totals.get((key, v))
            cells.append(f"{dense / t:.2f}x" if dense is not None and t else "-")
        body.append(cells)
    return format_table(header, body, right=True)
