"""A batch-1 GEMV's bandwidth beyond the caches against its rows' length: the mechanism behind
``compute.kernels.gemv.row_start`` (docs/profiles.md), measured.

    .venv/bin/python benchmarks/gemv_rows.py [--mib 128] [--threads 2] [--rounds 2]
        [--columns 512,1024,4096,16384] [--types fp32,bf16,int8] [--cold] [--packed]

Times ``F.linear`` at batch 1 (as ``bench`` and ``calibrate`` run it: fp32, bf16, and torch's int8
dynamic quantization) over the same bytes of weights in rows of 512 ... 16384 columns, each the
best of 7 calls, and prints GB/s of weights per type and row length, for each round. A library
that walks its weights row by row starts a stream at every row: where short rows stream slower
than long ones for the same bytes, each row costs a start on top of its bytes. Nothing here is
asserted; the figures are the machine's.

``--mib 16 --cold --columns 768,896,1000,1024,2048 --types int8`` shows what no row count explains
in torch's int8 GEMV (fbgemm): called cold, as an LLM's decode calls each layer, rows of 896 columns
(Qwen2.5-0.5B's hidden size; any depth whose last block of 512 is at most seven eighths full)
streamed 15-30% slower than rows of 1000, 1024 or 2048 (docs/validation.md, "2026-12-06, near
midnight"): fbgemm's packed tiles, each of a partly full last block a stream of its own
(``benchmarks/int8_tiles.py``, "2026-12-07"); ``--packed`` prints how much memory the packed int8
weights take per weight (glibc's heap before and after packing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.measure.bench import time_calls  # noqa: E402
from simulator.measure.calibrate import TYPE_BYTES, _type_gemm_call  # noqa: E402

COLUMNS = (512, 1024, 4096, 16384)
MiB = 1 << 20
#: ``--cold``: the weights cycled through, well beyond any last level here.
COLD_MIB = 256


def cold_time(calls: list) -> float:
    """The median call over one pass through ``calls``, each on its own weights: none is in the
    caches when it runs, as in an LLM's decode step."""
    times = []
    for call in calls:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cold_calls(dtype: str, rows: int, cols: int, size: int) -> list:
    """Batch-1 GEMVs of ``rows`` x ``cols`` in ``dtype``, on as many copies of weights of ``size``
    bytes as :data:`COLD_MIB` takes, for :func:`cold_time`."""
    return [_type_gemm_call(dtype, rows, cols, 1) for _ in range(max(1, -(-COLD_MIB * MiB // size)))]


def packed_bytes(rows: int, cols: int, copies: int = 10) -> Optional[float]:
    """Bytes glibc's heap grew by per int8 weight matrix torch packs (``dynamic_int8``: fbgemm's
    layout), over ``copies`` copies; None off glibc."""
    import ctypes
    import gc

    import torch

    from simulator.measure.variantbench import dynamic_int8

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return None

    def used() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd
    source = torch.rand(rows, cols)
    gc.collect()
    before = used()
    kept = [dynamic_int8(source) for _ in range(copies)]
    gc.collect()
    grown = used() - before
    del kept
    return grown / copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=128, help="weights per GEMV, MiB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--columns", default=",".join(map(str, COLUMNS)), help="row lengths, comma-separated")
    parser.add_argument("--types", default="fp32,bf16,int8", help="weight types, comma-separated")
    parser.add_argument("--packed", action="store_true",
                        help="also print the bytes torch's packed int8 weights take per column count")
    parser.add_argument("--cold", action="store_true",
                        help=f"cycle through copies of the weights (at least {COLD_MIB} MiB) and take the median "
                             "call, each cold, instead of the fastest of 7 calls on one matrix")
    args = parser.parse_args()
    try:
        columns = [int(c) for c in args.columns.split(",")]
    except ValueError:
        columns = []
    dtypes = [t for t in args.types.split(",") if t]
    if not columns or min(columns) < 1 or not dtypes or any(t not in TYPE_BYTES for t in dtypes) or args.mib <= 0:
        parser.error(f"--columns takes positive integers, --types some of {', '.join(TYPE_BYTES)}, --mib a size")
    import torch

    torch.set_num_threads(args.threads)
    size = int(args.mib * MiB)
    rows = {(dtype, cols): max(1, size // TYPE_BYTES[dtype] // cols) for dtype in dtypes for cols in columns}
    calls = {key: cold_calls(key[0], n, key[1], size) if args.cold else [_type_gemm_call(key[0], n, key[1], 1)]
             for key, n in rows.items()}
    how = f"median of {len(next(iter(calls.values())))} cold calls" if args.cold else "fastest of 7 calls"
    if args.packed:
        packed = {cols: grown for cols in columns if (grown := packed_bytes(4096, cols)) is not None}
        if len(packed) == len(set(columns)):
            print("int8 packed bytes over rows x columns: " + "  ".join(
                f"{cols}: {grown / (4096 * cols):.3f}" for cols, grown in packed.items()))
    print(f"batch-1 F.linear over {args.mib:g} MiB of weights, {args.threads} thread(s), {how}: "
          "GB/s by row length (columns)")
    print("round  type  " + "  ".join(f"{c:>6}" for c in columns))
    with torch.inference_mode():
        for r in range(args.rounds):
            for dtype in dtypes:
                rates = []
                for cols in columns:
                    timed = calls[(dtype, cols)]
                    seconds = cold_time(timed) if args.cold else min(time_calls(timed[0], 7, warmup=1))
                    rates.append(rows[(dtype, cols)] * cols * TYPE_BYTES[dtype] / seconds / 1e9)
                print(f"{r + 1:>5}  {dtype:<4}  " + "  ".join(f"{rate:6.1f}" for rate in rates))


if __name__ == "__main__":
    main()
