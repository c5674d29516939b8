"""``python -m simulator bench``: real timings of a workload's layers on this CPU with torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..base.console import progress
from ..base.errors import ConfigError
from ..base.paths import WORKLOADS_DIR, find_workload
from ..base.version import with_header
from .options import positive_int

DEFAULT_WORKLOAD = WORKLOADS_DIR / "eie.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    cmd = subparsers.add_parser(
        "bench", help="time a workload's layers for real on this CPU (torch), in the simulator's benchmark mode",
        description="Run each layer of the workload alone, repeated (the simulator's layer mode), with the "
                    "simulator's own weights (dense, or its pruned CSR encoding); report per-frame medians "
                    "and spread, and a torch.profiler per-operator breakdown of one pass.")
    cmd.add_argument("--workload", default=str(DEFAULT_WORKLOAD), help="workload YAML (default workloads/eie.yaml)")
    cmd.add_argument("--format", choices=["dense", "csr"], default="dense", help="weights dense or pruned CSR")
    cmd.add_argument("--batch", type=positive_int("--batch"), default=1, help="samples per call (default 1)")
    cmd.add_argument("--threads", type=positive_int("--threads"), help="torch threads (default: every CPU)")
    cmd.add_argument("--repeat", type=positive_int("--repeat"), default=20,
                     help="timed calls per layer after 3 warm-up calls (default 20)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the weights, as in `run --seed` (default 0)")
    cmd.add_argument("--out", metavar="FILE", help="write the timings as JSON (what `crosscheck` reads)")
    cmd.add_argument("--trace", metavar="FILE", help="write the torch.profiler timeline as Chrome/Perfetto JSON")
    cmd.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    import os

    for flag in ("out", "trace"):
        target = getattr(args, flag)
        if target and not Path(target).resolve().parent.is_dir():
            raise ConfigError("command line", f"--{flag}", f"{target}: its directory does not exist")
    if args.threads and args.threads > (os.cpu_count() or 1):
        raise ConfigError("command line", "--threads", f"{args.threads} is more than this machine's "
                          f"{os.cpu_count()} CPUs")
    from ..model.workload import load_workload

    workload = load_workload(find_workload(args.workload))
    from ..compress.compression import StorageFormat
    from ..measure.bench import bench, render

    result = bench(workload, StorageFormat(args.format), args.batch, args.threads, args.repeat, args.seed,
                   progress, trace_path=args.trace)
    print(render(result))
    if args.trace:
        from ..output.trace import check_trace

        check_trace(json.loads(Path(args.trace).read_text(encoding="utf-8")), args.trace)
    if args.out:
        Path(args.out).write_text(json.dumps(with_header(result.to_json()), indent=1), encoding="utf-8")
    return 0
