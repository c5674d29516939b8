"""``python -m simulator calibrate [--out FILE] [--threads N]``: a profile of this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..base.console import progress
from ..base.errors import ConfigError
from .options import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` subcommand."""
    cmd = subparsers.add_parser(
        "calibrate", help="measure this machine and write a hardware profile for it",
        description="Read the cache geometry (sysfs, lscpu), measure DRAM bandwidth (STREAM-like), latency "
                    "(pointer chase) and memory-level parallelism, bandwidth vs working-set size (the LLC "
                    "share a VM really gets), and GEMM / GEMV / CSR SpMV throughput with torch; write a "
                    "profile that says it was measured, when, on how many threads, with which libraries. "
                    "About a minute.")
    cmd.add_argument("--out", default="hwprofiles/host.yaml", metavar="FILE",
                     help="profile to write (default hwprofiles/host.yaml; machine-specific, do not commit)")
    cmd.add_argument("--threads", type=positive_int("--threads"),
                     help="torch threads to measure with (default: every CPU)")
    cmd.add_argument("--name", help="profile name (default: the CPU model and thread count)")
    cmd.add_argument("--llc-policy", choices=["lru", "fit"], default="lru",
                     help="the last level: an LRU step at the measured size (default), or the replacement policy "
                          "(lru, random, dip) and size whose curve in the cache model best matches the working-set "
                          "sweep")
    cmd.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    import os

    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        raise ConfigError("command line", "--out", f"{args.out}: its directory does not exist")
    from ..measure.calibrate import build_profile, measure, read_cpu_info, read_sysfs_caches, write_profile

    caches = read_sysfs_caches()
    cpu = read_cpu_info()
    threads = args.threads or os.cpu_count() or 1
    if threads > cpu.cores:
        raise ConfigError("command line", "--threads", f"{threads} is more than this machine's {cpu.cores} CPUs")
    measured = measure(threads, caches, progress)
    mapping = build_profile(caches, cpu, measured, name=args.name or "", fit_llc_policy=args.llc_policy == "fit")
    write_profile(mapping, out)
    progress("")
    memory = mapping["memory"]
    llc = memory["caches"][-1]
    print(f"wrote {out}: {mapping['name']}")
    print(f"  peak {mapping['compute']['peak_flops']['fp32']}, efficiency "
          + ", ".join(f"{k} {v:.3g}" for k, v in mapping["compute"]["efficiency"].items()))
    print(f"  {llc['name']} effective {int(llc['size'].split()[0]) / 2**20:.3g} MiB ({llc['replacement']}) at "
          f"{llc['bandwidth']}; "
          f"DRAM sustained {memory['dram']['sustained_bandwidth']}, peak {memory['dram']['peak_bandwidth']}, "
          f"latency {memory['dram']['latency']}, {memory['dram']['outstanding_requests_per_core']} requests in "
          f"flight per core; per-call overhead {mapping['compute']['launch_overhead']}")
    return 0
