"""What a buffer above the allocator's mmap ceiling costs a call: the mechanism behind
``memory.fresh_pages`` (docs/profiles.md), measured.

    .venv/bin/python benchmarks/fresh_pages.py [--threads 2] [--calls 5] [--prefill TOKENS]

Runs the same timings twice, each in a fresh process: with glibc's defaults, and with glibc told
never to hand a request to mmap nor to give memory back (``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_``, read at start-up), so that every buffer is reused. Each timing is the
best of ``--calls`` calls after one warm-up:

* ``torch.empty(n).fill_`` of 16 and 64 MiB (a kernel's fresh output) against ``fill_`` of a
  buffer that exists;
* ``workloads/alexnet.yaml``'s conv1 (torchvision's: 3 -> 64 channels, 11 x 11, stride 4, a 47 MiB
  output at batch 64) and conv2 (64 -> 192, 5 x 5, 34 MiB) at batch 64 and 8 (6 and 4 MiB, below
  the ceiling), ``F.conv2d`` as ``bench`` runs them;
* with ``--prefill TOKENS``, a prefill of Qwen2.5-0.5B in fp32 on ``bench --llm``'s decoder (best of
  two): eager attention's score tensors, four a block, are above the ceiling from about 600 tokens.

Each timing also counts the process's minor page faults a call (``getrusage``), as MiB of 4 KiB
pages: the count the engine's ``fresh_page_seconds`` charges (a convolution's output and its
channel-blocked copy above 32 MiB) is exact where the times are noisy. Where the defaults are
slower only for the buffers above 32 MiB, the difference is the OS faulting in fresh pages.
Nothing here is asserted; the figures are the machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1 << 20
FILLS_MIB = (16, 64)
PREFILL_MODEL = "qwen2.5-0.5b"
NEVER_UNMAP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 40), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def measure(threads: int, calls: int, prefill: int) -> dict[str, tuple[float, float]]:
    """Seconds of each timing in this process (its allocator as the environment set it), and the
    MiB of pages it faulted in a call."""
    import torch
    import torch.nn.functional as F

    from simulator.measure.bench import time_calls_faulted

    torch.set_num_threads(threads)

    def best(call, repeat: int = calls) -> tuple[float, float]:
        times, faulted = time_calls_faulted(call, repeat, warmup=1)
        return min(times), faulted / MiB

    out: dict[str, tuple[float, float]] = {}
    with torch.inference_mode():
        for mib in FILLS_MIB:
            n = mib * MiB // 4
            kept = torch.empty(n)
            out[f"fill of an existing {mib} MiB buffer"] = best(lambda kept=kept: kept.fill_(1.0))
            out[f"fill of a fresh {mib} MiB buffer"] = best(lambda n=n: torch.empty(n).fill_(1.0))
        gen = torch.Generator().manual_seed(0)
        for batch in (64, 8):
            for name, (cin, cout, side, k, stride, pad) in {"conv1": (3, 64, 224, 11, 4, 2),
                                                            "conv2": (64, 192, 27, 5, 1, 2)}.items():
                x = torch.rand((batch, cin, side, side), generator=gen)
                w = torch.rand((cout, cin, k, k), generator=gen)
                out[f"AlexNet {name} at batch {batch}"] = best(
                    lambda x=x, w=w, stride=stride, pad=pad: F.conv2d(x, w, stride=stride, padding=pad))
        if prefill:
            out[f"{PREFILL_MODEL} fp32 prefill of {prefill} tokens"] = best(_prefill_call(prefill),
                                                                             repeat=min(calls, 2))
    return out


def _prefill_call(tokens: int):
    """A prefill of ``tokens`` on ``bench --llm``'s decoder (seeded weights, fp32), as a call."""
    import torch

    from simulator.measure.llmbench import KvCache, WeightType, build_decoder, dims_of
    from simulator.model.llm import load_llm_config

    dims = dims_of(load_llm_config(ROOT / "workloads" / "llm" / f"{PREFILL_MODEL}.json"))
    model = build_decoder(dims, WeightType.FP32, tokens)
    ids = torch.randint(0, dims.vocab_size, (1, tokens), generator=torch.Generator().manual_seed(0))
    cache = KvCache(dims, 1, tokens, torch.float32)

    def call() -> None:
        cache.length = 0
        model(ids, cache)
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--prefill", type=int, default=0, help="also time a prefill of this many tokens")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.threads, args.calls, args.prefill)))
        return
    command = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--calls", str(args.calls),
               "--prefill", str(args.prefill)]
    runs = [json.loads(subprocess.run(command, env={**os.environ, **extra}, check=True, capture_output=True,
                                      text=True).stdout) for extra in ({}, NEVER_UNMAP)]
    print(f"{args.threads} thread(s), best of {args.calls} calls, ms, and MiB of pages faulted in a call: "
          "glibc's defaults, and never unmapping")
    width = max(len(name) for name in runs[0])
    print(f"{'':<{width}}  {'defaults':>9}  {'faulted':>8}  {'reused':>9}  {'faulted':>8}")
    for name in runs[0]:
        (t0, f0), (t1, f1) = runs[0][name], runs[1][name]
        print(f"{name:<{width}}  {t0 * 1e3:9.2f}  {f0:8.1f}  {t1 * 1e3:9.2f}  {f1:8.1f}")


if __name__ == "__main__":
    main()
