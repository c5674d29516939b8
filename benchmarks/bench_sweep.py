"""Time a 64-point L2-size sweep of pruned AlexNet on the Tegra K1 profile, and the cache model's compiled loops.

    .venv/bin/python benchmarks/bench_sweep.py [--points N] [--workers N] [--check K]

Prints the wall time of the whole sweep (planning and validating every point, building the
shared cache-path state, every point, writing the CSV) next to one full ``run`` of the same
variant, then the speed of the compiled loops on AlexNet's trace: the exact cache hierarchy
(what ``cachesim`` runs), the filter of the levels above L2, one L2 stack pass, and the
fully-associative stack distances. ``--check K`` re-runs K points through the full pipeline
and requires identical rows. The target (issue 7): under 30 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.compress.compression import StorageFormat, compress_workload  # noqa: E402
from simulator.hardware.profile import load_profile  # noqa: E402
from simulator.memory.mrc import LevelFilter, LruStacks, fully_associative_distances  # noqa: E402
from simulator.memory.traffic import CoreView, workload_traffic  # noqa: E402
from simulator.model.workload import load_workload  # noqa: E402
from simulator.pipeline import RunOptions, cache_hierarchy, run  # noqa: E402
from simulator.studies.sweep import Backend, BackendChoice, plan_sweep, run_sweep  # noqa: E402
from simulator.studies.sweepstore import ResultStore  # noqa: E402

PROFILE = ROOT / "hwprofiles" / "tegra.yaml"
WORKLOAD = ROOT / "workloads" / "alexnet.yaml"


def _rate(seconds: list[float], items: int) -> str:
    best = min(seconds)
    return f"{best:.3f} s, {items / best / 1e6:.1f} M/s"


def compiled_loops(repeats: int) -> None:
    """Accesses per second of the cache model's compiled loops on pruned AlexNet's whole trace."""
    profile = load_profile(PROFILE)
    workload = load_workload(WORKLOAD)
    view = CoreView.of(profile)
    traffic = workload_traffic(workload, compress_workload(workload, StorageFormat.CSR), 1, view)
    a = np.concatenate([t.addresses for t in traffic])
    w = np.concatenate([t.is_write for t in traffic])
    c = np.concatenate([t.core for t in traffic]).astype(np.int64)
    levels = cache_hierarchy(profile, view.cores).levels
    l2 = levels[-1]
    cache_hierarchy(profile, view.cores).access(a[:1], w[:1], c[:1])          # load the compiled loops
    LevelFilter(levels, view.cores, 1).run(a[:1], w[:1], c[:1])
    timings: dict[str, list[float]] = {"cache": [], "filter": [], "stack": [], "fa": []}
    stream = None
    for _ in range(repeats):
        hierarchy = cache_hierarchy(profile, view.cores)
        t = time.perf_counter()
        hierarchy.access(a, w, c)
        timings["cache"].append(time.perf_counter() - t)
        t = time.perf_counter()
        stream = LevelFilter(levels, view.cores, 1).run(a, w, c)
        timings["filter"].append(time.perf_counter() - t)
        stacks = LruStacks(l2.sets, 1, l2.ways, (l2.ways,))
        t = time.perf_counter()
        stacks.run(stream.line, None, stream.dirtying)
        timings["stack"].append(time.perf_counter() - t)
        t = time.perf_counter()
        fully_associative_distances(stream.line)
        timings["fa"].append(time.perf_counter() - t)
    assert stream is not None
    print(f"compiled loops on pruned AlexNet's trace ({a.size / 1e6:.1f} M accesses; {stream.references / 1e6:.1f} M "
          f"reach L2), best of {repeats}:")
    print(f"  exact hierarchy (cachesim, run):     {_rate(timings['cache'], a.size)} accesses")
    print(f"  filter of the levels above L2:       {_rate(timings['filter'], a.size)} accesses")
    print(f"  L2 stack pass (one sweep point):     {_rate(timings['stack'], stream.references)} references")
    print(f"  fully-associative stack distances:   {_rate(timings['fa'], stream.references)} references")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=64, help="L2 sizes: 128 KiB steps from 128 KiB (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    parser.add_argument("--check", type=int, default=0, help="points to re-run through the full pipeline")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the compiled loops' timings")
    args = parser.parse_args()

    profile = load_profile(PROFILE)
    workload = load_workload(WORKLOAD)
    t = time.perf_counter()
    compress_workload(workload, StorageFormat.CSR)
    print(f"pruned AlexNet encodings (from the on-disk cache if there): {time.perf_counter() - t:.2f} s")
    options = RunOptions(formats=(StorageFormat.CSR,))
    t = time.perf_counter()
    run(profile, workload, options)
    one_run = time.perf_counter() - t

    sets = [f"memory.caches.L2.size=128KiB..{128 * args.points}KiB:+128KiB"]
    backend = (BackendChoice(Backend.INLINE) if args.workers == 1
               else BackendChoice(Backend.PROCESSES, workers=args.workers))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "sweep.csv"
        t = time.perf_counter()
        plan = plan_sweep(PROFILE, sets, WORKLOAD, formats=(StorageFormat.CSR,))
        store = ResultStore(out, plan)
        seconds: list[float] = []
        summary = run_sweep(plan, store, backend, lambda result, *_: seconds.append(result.seconds))
        wall = time.perf_counter() - t
        rows = store.rows()
    assert summary.failed == 0 and summary.ran == args.points
    print(f"{args.points}-point L2-size sweep (128 KiB .. {args.points * 128} KiB) of pruned AlexNet on "
          f"{profile.name}, {backend.label()}:")
    print(f"  whole sweep:                          {wall:.1f} s (target: under 30 s)")
    print(f"  per point, in a worker:               median {statistics.median(seconds):.3f} s")
    print(f"  one full run of the same variant:     {one_run:.2f} s "
          f"({one_run * args.points:.0f} s for {args.points} of them, one after the other)")
    if args.check:
        full = plan_sweep(PROFILE, sets, WORKLOAD, formats=(StorageFormat.CSR,), use_cache_path=False)
        picks = [full.points[i] for i in np.linspace(0, len(full.points) - 1, args.check).astype(int)]
        from simulator.studies.sweep import result_rows

        for point in picks:
            expected = result_rows(point.index, dict(point.settings), run(point.profile, workload, point.options))
            got = sorted((r for r in rows if r.point == point.index), key=lambda r: r.layer)
            assert got == sorted(expected, key=lambda r: r.layer), f"point {point.index} differs"
        print(f"  checked {args.check} points against full runs: identical rows")
    compiled_loops(args.repeats)


if __name__ == "__main__":
    main()
