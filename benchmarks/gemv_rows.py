"""A batch-1 GEMV's bandwidth beyond the caches against its rows' length: the mechanism behind
``compute.kernels.gemv.row_start`` (docs/profiles.md), measured.

    .venv/bin/python benchmarks/gemv_rows.py [--mib 128] [--threads 2] [--rounds 2]

Times ``F.linear`` at batch 1 (as ``bench`` and ``calibrate`` run it: fp32, bf16, and torch's int8
dynamic quantization) over the same bytes of weights in rows of 512 ... 16384 columns, each the
best of 7 calls, and prints GB/s of weights per type and row length, for each round. A library
that walks its weights row by row starts a stream at every row: where short rows stream slower
than long ones for the same bytes, each row costs a start on top of its bytes. Nothing here is
asserted; the figures are the machine's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.measure.bench import time_calls  # noqa: E402
from simulator.measure.calibrate import TYPE_BYTES, _type_gemm_call  # noqa: E402

COLUMNS = (512, 1024, 4096, 16384)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="weights per GEMV, MiB (beyond the last level)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    size = args.mib << 20
    print(f"batch-1 F.linear over {args.mib} MiB of weights, {args.threads} thread(s): GB/s by row length (columns)")
    print("round  type  " + "  ".join(f"{c:>6}" for c in COLUMNS))
    with torch.inference_mode():
        for r in range(args.rounds):
            for dtype in ("fp32", "bf16", "int8"):
                rates = []
                for cols in COLUMNS:
                    call = _type_gemm_call(dtype, size // TYPE_BYTES[dtype] // cols, cols, 1)
                    rates.append(size / min(time_calls(call, 7, warmup=1)) / 1e9)
                print(f"{r + 1:>5}  {dtype:<4}  " + "  ".join(f"{rate:6.1f}" for rate in rates))


if __name__ == "__main__":
    main()
