"""What a sparse loop pays for a gathered line the first level does not hold, and what a line
written back costs DRAM (``cycles_per_gather_fill``, ``memory.dram.writeback_cost``; docs/architecture.md).

    .venv/bin/python benchmarks/gather_fills.py [--threads 2] [--rounds 5] [--operands 8,32,128,256,1024]

Part one: one CSR matrix of 262,144 non-zeros on 1024 rows (256 a row, at sorted random columns,
as ``calibrate``'s fit matrices), in cache, times a dense vector of each size in KiB: torch over
int32 indices (MKL's loop) on the given threads and scipy on one, in interleaved rounds, the median
call of each. Printed: nanoseconds a non-zero on one thread (time x threads / non-zeros). Where the
vector outgrows the first level each non-zero's gather is a line from the level below (its columns
a line apart or more), and the loop's time a non-zero rises by that line's fill.

Part two: a read (``torch.sum``), a fill (``fill_``: each line read for ownership, then written
back) and a fill of one float a line (which must fetch its line) over 64 MiB pushed out of the
caches before each call: the fill over the read, less one, is what a write-back costs against a
read; a one-float fill as slow as the whole-line fill says the whole-line fill fetches its lines
too. Nothing here is asserted; the figures are the machine's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.measure.calibrate import csr_with_rows  # noqa: E402

ROWS = 1024
NONZEROS = 1 << 18
OPERANDS_KIB = (8, 32, 128, 256, 1024)
CALLS = 20                 # timed calls a round, after as many untimed ones
STREAM_MIB = 64
FLUSH_MIB = 96             # what a call's buffers are pushed out of the caches by


def median_call(call: Callable[[], Any], before: Callable[[], Any] = lambda: None) -> float:
    """Seconds of the median of :data:`CALLS` calls after as many untimed ones (``before`` each)."""
    for _ in range(CALLS):
        call()
    times = []
    for _ in range(CALLS):
        before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def products(operand_kib: int, threads: int) -> dict[str, tuple[Callable[[], Any], int]]:
    """The two loops over the matrix times an operand of ``operand_kib`` KiB: (call, threads)."""
    import scipy.sparse as sp
    import torch

    columns = operand_kib * 1024 // 4
    ptr, idx, val = csr_with_rows(ROWS, columns, NONZEROS)
    x = np.random.default_rng(1).random(columns, dtype=np.float32)
    xt = torch.from_numpy(x)
    matrix = sp.csr_matrix((val, idx, ptr), shape=(ROWS, columns))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "sparse CSR support is in beta"
        narrow = torch.sparse_csr_tensor(torch.from_numpy(ptr), torch.from_numpy(idx), torch.from_numpy(val),
                                         size=(ROWS, columns))
    return {"torch int32": (lambda: torch.mv(narrow, xt), threads), "scipy": (lambda: matrix @ x, 1)}


def gathers(operands: list[int], threads: int, rounds: int) -> None:
    """Part one: each loop's nanoseconds a non-zero a thread at each operand size."""
    import torch

    calls = {size: products(size, threads) for size in operands}
    best: dict[tuple[int, str], float] = {}
    for _ in range(rounds):
        for size, loops in calls.items():
            for name, (call, loop_threads) in loops.items():
                torch.set_num_threads(loop_threads)
                key = (size, name)
                best[key] = min(best.get(key, float("inf")), median_call(call))
    print(f"CSR SpMV, {NONZEROS} non-zeros on {ROWS} rows, in cache; torch on {threads} thread(s), scipy on one; "
          f"median call of {CALLS}, best of {rounds} interleaved rounds")
    print("operand KiB  loop          us      ns a non-zero a thread")
    for size in operands:
        for name, (_, loop_threads) in calls[size].items():
            seconds = best[(size, name)]
            print(f"{size:11d}  {name:12}  {seconds * 1e6:7.1f}  {seconds * loop_threads / NONZEROS * 1e9:10.3f}")


def writebacks(threads: int, rounds: int) -> None:
    """Part two: read, fill and one-float-a-line fill over :data:`STREAM_MIB` MiB from DRAM."""
    import torch

    torch.set_num_threads(threads)
    n = STREAM_MIB * (1 << 20) // 4
    buffer = torch.ones(n)
    flush = torch.zeros(FLUSH_MIB * (1 << 20) // 4)
    calls = {"read": lambda: buffer.sum(), "fill": lambda: buffer.fill_(2.0),
             "fill one float a line": lambda: buffer[::16].fill_(3.0)}
    best = {name: min(median_call(call, lambda: flush.add_(1.0)) for _ in range(rounds))
            for name, call in calls.items()}
    print(f"\n{STREAM_MIB} MiB from DRAM on {threads} thread(s), the caches flushed before each call")
    for name, seconds in best.items():
        print(f"{name:22}  {seconds * 1e3:7.3f} ms  {STREAM_MIB * (1 << 20) / seconds / 1e9:5.1f} GB/s of the buffer")
    print(f"a write-back against a read (fill / read - 1): {best['fill'] / best['read'] - 1:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--operands", default=",".join(map(str, OPERANDS_KIB)), help="KiB of the dense vector")
    args = parser.parse_args()
    try:
        operands = [int(s) for s in args.operands.split(",")]
    except ValueError:
        operands = []
    if not operands or min(operands) < 1 or args.threads < 1 or args.rounds < 1:
        parser.error("--operands takes positive whole KiB, --threads and --rounds positive counts")
    gathers(operands, args.threads, args.rounds)
    writebacks(args.threads, args.rounds)


if __name__ == "__main__":
    main()
