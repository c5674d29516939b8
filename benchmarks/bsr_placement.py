"""torch's BSR matrix-vector product against where its input and output vectors lie, and against
when it runs: why the same ``bsr4x4`` layer times ~9.5 ns a block in one ``bench`` and ~15.5 in
the next, measured.

    .venv/bin/python benchmarks/bsr_placement.py [--threads 2] [--rows 4096] [--cols 4096]
        [--density 0.04] [--placements 64] [--passes 3] [--calls 30] [--seed 0]

Builds one ``torch.sparse_bsr_tensor`` of 4 x 4 blocks (kept at random at ``--density``, as
``bench``'s BSR variant keeps the simulator's blocks) and times ``torch.mv(matrix, x, out=y)`` with
the same blocks while ``x`` and then ``y`` move through ``--placements`` offsets inside one larger
buffer, 64 B apart (the other vector stays put). Each offset is timed as ``bench`` times a call:
warm-up, then the median of ``--calls`` back-to-back calls; ``--passes`` passes visit the offsets
each in its own random order, so an offset that is slow in every pass is slow for where it lies,
and one slow in one pass only was slow for when it ran (a sweep in address order, as this script's
first version made, cannot tell the two apart: a phase of the host shows up as a band of
neighbouring offsets). It prints every offset's ns a block per pass (with the address modulo a
4 KiB page of the three buffers), then, over the offsets' medians of their passes, a histogram and
the fastest, median, mean and slowest, and how far apart an offset's passes came. Nothing here is
asserted; the figures are the machine's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.measure.bench import time_calls  # noqa: E402

BLOCK = 4
LINE_BYTES = 64
PAGE_BYTES = 4096
FLOAT_BYTES = 4


def bsr_matrix(rows: int, cols: int, density: float, seed: int):
    """A ``rows x cols`` BSR tensor of ``BLOCK x BLOCK`` blocks, each kept with probability ``density``."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    mask = rng.random((rows // BLOCK, cols // BLOCK)) < density
    dense = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    dense *= torch.from_numpy(np.kron(mask, np.ones((BLOCK, BLOCK)))).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "sparse BSR support is in beta"
        return dense.to_sparse_bsr((BLOCK, BLOCK))


def ns_per_block(matrix, x, y, calls: int) -> float:
    """The median of ``calls`` back-to-back products into ``y``, in ns a stored block."""
    import torch

    seconds = time_calls(lambda: torch.mv(matrix, x, out=y), calls)
    return statistics.median(seconds) * 1e9 / matrix.values().shape[0]


def page_offset(tensor) -> int:
    """The tensor's first byte's offset within its 4 KiB page."""
    return tensor.data_ptr() % PAGE_BYTES


def sweep(matrix, placements: int, passes: int, calls: int, moving: str, seed: int) -> list[list[float]]:
    """Per offset (``placements`` of them, 64 B apart) of ``moving`` ("x" or "y", the other fixed),
    its ns a block in each of ``passes`` passes, each pass visiting the offsets in a random order."""
    import numpy as np
    import torch

    rows, cols = matrix.shape
    step = LINE_BYTES // FLOAT_BYTES
    spare = placements * step
    x_buffer, y_buffer = torch.randn(cols + spare), torch.empty(rows + spare)
    values = page_offset(matrix.values())
    rng = np.random.default_rng(seed)

    def placed(index: int):
        """``x`` and ``y`` with ``moving`` at offset ``index``."""
        shift = index * step
        x = x_buffer[shift:shift + cols] if moving == "x" else x_buffer[:cols]
        y = y_buffer[shift:shift + rows] if moving == "y" else y_buffer[:rows]
        return x, y

    times: list[list[float]] = [[] for _ in range(placements)]
    for _ in range(passes):
        for index in rng.permutation(placements):
            x, y = placed(int(index))
            times[index].append(ns_per_block(matrix, x, y, calls))
    for index, ns in enumerate(times):
        x, y = placed(index)
        print(f"{moving} moved {index * LINE_BYTES:5d} B   x {page_offset(x):4d}  y {page_offset(y):4d}  "
              f"values {values:4d}   " + " ".join(f"{t:5.1f}" for t in ns) + " ns a block", flush=True)
    return times


def histogram(times: list[float], width_ns: float = 1.0) -> list[str]:
    """Lines of a text histogram of ``times`` in ``width_ns`` bins."""
    low = int(min(times) // width_ns)
    bins: dict[int, int] = {}
    for t in times:
        bins[int(t // width_ns)] = bins.get(int(t // width_ns), 0) + 1
    return [f"  {b * width_ns:5.1f}-{(b + 1) * width_ns:5.1f} ns  {'#' * bins.get(b, 0)}"
            for b in range(low, max(bins) + 1)]


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--density", type=float, default=0.04, help="share of blocks kept (VGG16_FC7's 0.04)")
    parser.add_argument("--placements", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3, help="passes over the offsets, each in a random order")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows % BLOCK or args.cols % BLOCK:
        parser.error(f"--rows and --cols must be multiples of {BLOCK}")
    torch.set_num_threads(args.threads)
    matrix = bsr_matrix(args.rows, args.cols, args.density, args.seed)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rows} x {args.cols}, "
          f"{matrix.values().shape[0]} blocks of {BLOCK} x {BLOCK}")
    for moving in ("x", "y"):
        passes = sweep(matrix, args.placements, args.passes, args.calls, moving, args.seed)
        times = [statistics.median(p) for p in passes]
        apart = [max(p) / min(p) - 1.0 for p in passes]
        print(f"\n{moving} at {len(times)} placements, each the median of its {args.passes} passes: fastest "
              f"{min(times):.1f}, median {statistics.median(times):.1f}, mean {statistics.fmean(times):.1f}, "
              f"slowest {max(times):.1f} ns a block", *histogram(times),
              f"an offset's passes apart: median {100 * statistics.median(apart):.0f}%, "
              f"largest {100 * max(apart):.0f}%", "", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
