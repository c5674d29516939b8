"""torch's int8 GEMV (fbgemm) beyond the caches by the depth of its weights: what a partly full last
depth block costs, a tile at a time (``compute.kernels.gemv.packed_tiles``, docs/profiles.md).

    .venv/bin/python benchmarks/int8_tiles.py [--rows 16384] [--threads 2] [--rounds 5]
        [--depths 512,520,544,576,640,768,896,960,992,1008,1024,1536,1600]

fbgemm packs int8 weights in tiles of a depth block by a few rows (512 x 8 on AVX2), each tile a
whole block's bytes even in a last block that is only partly full: that block's tiles are runs with
a gap after each. Times a batch-1 int8 ``F.linear`` (dynamic quantization, as ``bench`` runs it) of
``--rows`` rows at each depth, each call on weights no cache holds (cycling through copies of at
least 256 MiB, the median call), in interleaved rounds; fits ``call + bytes / bandwidth`` through
the depths that are whole blocks and prints, per depth, the time above that line over the number of
partial tiles (rows / 8 on AVX2): the cost of one tile's start, all threads together. Nothing here
is asserted; the figures are the machine's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gemv_rows import cold_calls, cold_time  # noqa: E402

from simulator.measure.calibrate import fbgemm_int8_tile, read_cpu_info  # noqa: E402

DEPTHS = (512, 520, 544, 576, 640, 768, 896, 960, 992, 1008, 1024, 1536, 1600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)), help="depths (columns), comma-separated")
    args = parser.parse_args()
    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        depths = []
    if not depths or min(depths) < 1 or args.rows < 1 or args.rounds < 1:
        parser.error("--depths takes positive integers, --rows and --rounds positive counts")
    import torch

    torch.set_num_threads(args.threads)
    tile = fbgemm_int8_tile(read_cpu_info().flags, torch.backends.quantized.engine)
    if tile is None:
        parser.error(f"torch's int8 GEMV here is not fbgemm's (engine {torch.backends.quantized.engine}): no tiles")
    whole = [d for d in depths if d % tile[0] == 0]
    if len(whole) < 2:
        parser.error(f"--depths needs two whole numbers of {tile[0]}-deep blocks for the line")
    calls = {d: cold_calls("int8", args.rows, d, args.rows * d) for d in depths}
    times: dict[int, list[float]] = {d: [] for d in depths}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for d in depths:
                times[d].append(cold_time(calls[d]))
    median = {d: statistics.median(t) for d, t in times.items()}
    (call_s, per_byte), *_ = np.linalg.lstsq(np.array([[1.0, args.rows * d] for d in whole]),
                                             np.array([median[d] for d in whole]), rcond=None)
    print(f"int8 F.linear, {args.rows} rows, {args.threads} thread(s), median of cold calls over {args.rounds} "
          f"rounds; fbgemm tile {tile[0]} deep x {tile[1]} rows; whole blocks: {call_s * 1e6:.1f} us + "
          f"{1 / per_byte / 1e9:.1f} GB/s")
    print(" depth  last  gap B  time us   GB/s  above line us  partial tiles  ns a tile")
    for d in depths:
        last = d % tile[0]
        tiles = -(-args.rows // tile[1]) if last else 0
        above = median[d] - (call_s + per_byte * args.rows * d)
        per_tile = f"{above / tiles * 1e9:9.1f}" if tiles else "        -"
        print(f"{d:6d}  {last:4d}  {(tile[0] - last) * tile[1] if last else 0:5d}  {median[d] * 1e6:7.1f}  "
              f"{args.rows * d / median[d] / 1e9:5.1f}  {above * 1e6:13.1f}  {tiles:13d}  {per_tile}")


if __name__ == "__main__":
    main()
