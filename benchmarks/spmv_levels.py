"""The CSR SpMV loops ``bench`` picks from, by where their matrix lives: a non-zero's cost in the
caches and beyond them, and what torch's copy of its int64 indices adds (``load_overlap`` and
``kernel_index_bits``, docs/calibrate.md).

    .venv/bin/python benchmarks/spmv_levels.py [--threads 2] [--rounds 5] [--sizes 0.5,8,32,64]

Each size is a matrix of 2048 columns whose values and int32 indices take that many MiB (one matrix,
called again and again: the caches keep what they can of it), its non-zeros spread evenly over
rows of 256. Every matrix is timed with scipy (one thread: its loop is serial), torch over int32
indices (what MKL's LP64 interface reads) and torch over int64 indices (what ``bench`` builds:
torch copies them to int32 at every call), and the copy alone (``Tensor.to(torch.int32)`` of the
indices and pointers), in interleaved rounds, the median call of each. Printed per size: each
loop's nanoseconds a non-zero on one thread (time x threads / non-zeros) and its bytes a second;
a loop whose matrix the L3 holds runs at the same rate a non-zero as one whose matrix comes from
DRAM when its loads run under the whole of its loop. Nothing here is asserted; the figures are the
machine's.
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

COLUMNS = 2048
PER_ROW = 256
SIZES_MIB = (0.5, 8.0, 32.0, 64.0)
CALLS = 20           # timed calls a round, after as many untimed ones


def median_call(call: Callable[[], Any]) -> float:
    """Seconds of the median of :data:`CALLS` calls after as many untimed ones."""
    for _ in range(CALLS):
        call()
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loops(size_mib: float, threads: int) -> dict[str, tuple[Callable[[], Any], int]]:
    """Each loop over a matrix of ``size_mib`` MiB of values and int32 indices: (call, threads)."""
    import scipy.sparse as sp
    import torch

    nonzeros = int(size_mib * (1 << 20) / 8)
    ptr, idx, val = csr_with_rows(max(1, nonzeros // PER_ROW), COLUMNS, nonzeros)
    shape = (ptr.size - 1, COLUMNS)
    x = np.random.default_rng(1).random(COLUMNS, dtype=np.float32)
    xt = torch.from_numpy(x)
    scipy_matrix = sp.csr_matrix((val, idx, ptr), shape=shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "sparse CSR support is in beta"
        narrow = torch.sparse_csr_tensor(torch.from_numpy(ptr), torch.from_numpy(idx), torch.from_numpy(val),
                                         size=shape)
        wide = torch.sparse_csr_tensor(narrow.crow_indices().long(), narrow.col_indices().long(), narrow.values(),
                                       size=shape)
    col64, crow64 = wide.col_indices(), wide.crow_indices()
    return {"scipy": (lambda: scipy_matrix @ x, 1),
            "torch int32": (lambda: torch.mv(narrow, xt), threads),
            "torch int64": (lambda: torch.mv(wide, xt), threads),
            "copy alone": (lambda: (col64.to(torch.int32), crow64.to(torch.int32)), threads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MIB)), help="MiB of values and int32 indices")
    args = parser.parse_args()
    try:
        sizes = [float(s) for s in args.sizes.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) <= 0 or args.threads < 1 or args.rounds < 1:
        parser.error("--sizes takes positive MiB, --threads and --rounds positive counts")
    import torch

    print(f"CSR SpMV, {COLUMNS} columns, {PER_ROW} non-zeros a row; torch on {args.threads} thread(s), scipy on "
          f"one; median call of {CALLS}, best of {args.rounds} interleaved rounds")
    print("   MiB  non-zeros  loop          ms      ns a non-zero a thread   GB/s (values + its indices)")
    for size in sizes:
        calls = loops(size, args.threads)
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, (call, threads) in calls.items():
                torch.set_num_threads(threads)
                best[name] = min(best.get(name, float("inf")), median_call(call))
        nonzeros = int(size * (1 << 20) / 8) // PER_ROW * PER_ROW
        for name, (_, threads) in calls.items():
            moved = nonzeros * (12 if name == "torch int64" else 8)
            per = f"{best[name] * threads / nonzeros * 1e9:22.3f}" if name != "copy alone" else f"{'-':>22}"
            print(f"{size:6g}  {nonzeros:9d}  {name:12}  {best[name] * 1e3:7.3f}  {per}   "
                  f"{moved / best[name] / 1e9 if name != 'copy alone' else nonzeros * 12 / best[name] / 1e9:5.1f}")


if __name__ == "__main__":
    main()
