"""An fp32 GEMM's rate against its weights' row count, and a decoder's own GEMMs against the line
``calibrate`` fits: what keeps the model's fp32 prefill fast on this machine, measured.

    .venv/bin/python benchmarks/gemm_rows.py [--threads 2] [--rounds 3] [--batch 128]
        [--llm workloads/llm/llama-3.2-1b.json]

Part 1 times ``F.linear`` (fp32, as ``bench`` and ``calibrate`` run it) at ``--batch`` rows of
activations for weights of 512 ... 16384 rows (the layer's outputs) at two depths (its inputs),
and prints GFLOP/s per shape. Part 2 (with ``--llm``) builds that decoder in fp32 as ``bench``
does and, in each round, times ``calibrate``'s GEMM shapes at their two batches, every distinct
linear of the decoder alone (repeated calls on one matrix, as calibrate times its shapes) and a
prefill of ``--batch`` tokens with each linear timed in place (hooks); it prints each decoder
shape's time, alone and in the prefill, over what calibrate's line (slope and per-weight
intercept, :func:`simulator.measure.calibrate.gemm_line`) gives it, and the FLOP-weighted ratios
over the decoder's linears. Every figure is the fastest over all rounds; the rounds interleave
the shapes, so a slow phase of the host slows all of them alike. Nothing here is asserted; the
figures are the machine's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.base.errors import ConfigError  # noqa: E402
from simulator.measure.bench import time_calls  # noqa: E402
from simulator.measure.calibrate import GEMM_SHAPES, GEMM_WIDE_BATCH, _type_gemm_call, gemm_line  # noqa: E402
from simulator.model.llm import Phase, llm_workload, load_llm_config  # noqa: E402
from simulator.model.workload import LayerKind  # noqa: E402

ROWS = (512, 1024, 2048, 4096, 8192, 16384)
DEPTHS = (256, 2048)


def decoder_linears(path: str) -> Counter[tuple[int, int]]:
    """(rows, columns) of every weight matrix the decoder's blocks multiply, as the simulator's
    workload of the model lays them out (:func:`simulator.model.llm.llm_workload`; the LM head,
    which prefill runs on one token, left out)."""
    workload = llm_workload(load_llm_config(path), Phase.DECODE, 1, 1)
    return Counter((layer.out_shape[0], layer.in_shape[0]) for layer in workload.layers
                   if layer.kind is LayerKind.FC and layer.name != "lm_head")


def fastest(calls: dict, rounds: int, also: Callable[[], dict] = dict) -> dict:
    """Each call's fastest time over ``rounds`` rounds of all of them in turn, and of each time
    ``also`` reports once a round."""
    best: dict = {key: float("inf") for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            best[key] = min(best[key], min(time_calls(call, 3, warmup=1)))
        for key, seconds in also().items():
            best[key] = min(best.get(key, float("inf")), seconds)
    return best


def prefill_timer(path: str, batch: int) -> Callable[[], dict]:
    """A prefill of ``batch`` tokens through the decoder of ``path`` in fp32 (built as ``bench``
    builds it), returning the seconds of each shape of linear summed over the decoder's blocks."""
    import torch

    from simulator.measure.llmbench import KvCache, WeightType, build_decoder, dims_of

    dims = dims_of(load_llm_config(path))
    model = build_decoder(dims, WeightType.FP32, batch)
    ids = torch.randint(0, dims.vocab_size, (1, batch), generator=torch.Generator().manual_seed(0))
    cache = KvCache(dims, 1, batch, torch.float32)
    spent: dict = {}
    started: dict = {}

    def begin(module, _inputs) -> None:
        started[module] = time.perf_counter()

    def end(module, _inputs, _output) -> None:
        key = ("prefill", tuple(module.weight.shape))
        spent[key] = spent.get(key, 0.0) + time.perf_counter() - started[module]

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            module.register_forward_pre_hook(begin)
            module.register_forward_hook(end)

    def run() -> dict:
        spent.clear()
        cache.length = 0
        model(ids, cache)
        return dict(spent)
    run()                                  # untimed: the allocator and the library warm up
    return run


def rows_sweep(batch: int, rounds: int) -> None:
    calls = {(r, d): _type_gemm_call("fp32", r, d, batch) for d in DEPTHS for r in ROWS}
    best = fastest(calls, rounds)
    print(f"fp32 F.linear at batch {batch}: GFLOP/s by the weights' rows (outputs) and columns (inputs)")
    print("columns  " + "  ".join(f"{r:>6}" for r in ROWS))
    for d in DEPTHS:
        print(f"{d:>7}  " + "  ".join(f"{2 * batch * r * d / best[(r, d)] / 1e9:6.0f}" for r in ROWS))


def against_line(path: str, batch: int, rounds: int) -> None:
    linears = decoder_linears(path)
    line_shapes = [*GEMM_SHAPES, *((r, c, GEMM_WIDE_BATCH) for r, c, _ in GEMM_SHAPES)]
    calls: dict[tuple[str, tuple[int, ...]], Callable[[], object]] = {
        ("line", s): _type_gemm_call("fp32", *s) for s in line_shapes}
    calls.update({("alone", s): _type_gemm_call("fp32", *s, batch) for s in linears})
    best = fastest(calls, rounds, prefill_timer(path, batch))
    line = gemm_line({s: best[("line", s)] for s in line_shapes})
    print(f"\ncalibrate's line from its shapes, in the same rounds: {line.flops_per_s / 1e9:.0f} GFLOP/s, "
          f"{line.pack_s_per_weight * 1e12:.0f} ps a weight")
    print(f"{path} linears at batch {batch}: measured over the line")
    print("  rows x columns  matrices  alone GFLOP/s  alone / line  in prefill / line")
    alone = in_prefill = on_line = 0.0
    for (rows, cols), n in sorted(linears.items()):
        weights = rows * cols
        predicted = weights * line.pack_s_per_weight + 2.0 * batch * weights / line.flops_per_s
        one, placed = best[("alone", (rows, cols))], best[("prefill", (rows, cols))] / n
        alone, in_prefill, on_line = alone + n * one, in_prefill + n * placed, on_line + n * predicted
        print(f"  {rows:>5} x {cols:<6}  {n:>8}  {2 * batch * weights / one / 1e9:13.0f}  {one / predicted:12.2f}"
              f"  {placed / predicted:16.2f}")
    print(f"  all linears: alone / line {alone / on_line:.2f}, in prefill / line {in_prefill / on_line:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128, help="activation rows (a prefill's tokens)")
    parser.add_argument("--llm", help="a decoder's config.json: its linears against calibrate's line")
    args = parser.parse_args()
    if min(args.threads, args.rounds, args.batch) < 1:
        parser.error("--threads, --rounds and --batch take positive integers")
    if args.llm:
        try:
            load_llm_config(args.llm)
        except ConfigError as err:
            parser.error(str(err))
    import torch

    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        rows_sweep(args.batch, args.rounds)
        if args.llm:
            against_line(args.llm, args.batch, args.rounds)


if __name__ == "__main__":
    main()
