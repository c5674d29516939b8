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
    cmd.add_argument("--workload", help="workload YAML (default workloads/eie.yaml)")
    cmd.add_argument("--format", metavar="LIST",
                     help="dense or csr (default dense); or a comma-separated list of variants STRUCTURE[@TYPE] "
                          "timed side by side, each layer's variants interleaved in rounds: dense, thinned (each "
                          "@fp32, @bf16 or @int8), csr, bsr<R>x<C> (e.g. dense,dense@bf16,dense@int8,csr,bsr4x4,"
                          "thinned); see docs/bench.md")
    cmd.add_argument("--batch", type=positive_int("--batch"), default=1, help="samples per call (default 1)")
    cmd.add_argument("--threads", type=positive_int("--threads"), help="torch threads (default: every CPU)")
    cmd.add_argument("--repeat", type=positive_int("--repeat"),
                     help="timed calls per layer after 3 warm-up calls (default 20); with --sparse-conv, "
                          "round-robin rounds, each kernel's best call counts (default 7)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the weights, as in `run --seed` (default 0)")
    cmd.add_argument("--out", metavar="FILE", help="write the timings as JSON (what `crosscheck` reads)")
    cmd.add_argument("--trace", metavar="FILE", help="write the torch.profiler timeline as Chrome/Perfetto JSON")
    group = cmd.add_argument_group("sparse convolution", "dense F.conv2d against real sparse convolutions at "
                                   "several weight densities; the break-even density per layer")
    group.add_argument("--sparse-conv", action="store_true",
                       help="measure sparse convolution instead of the workload's layers: AlexNet conv2-conv5 and "
                            "ResNet-20 layer2.1.conv1, or the convolutions of --workload when given")
    group.add_argument("--layers", type=_names, help="with --sparse-conv and --workload: comma-separated "
                       "convolution names (default: every convolution with groups = 1)")
    group.add_argument("--densities", type=_densities,
                       help="with --sparse-conv: comma-separated weight densities in (0, 1] "
                            "(default 0.05,0.1,0.2,0.3,0.4,0.5,0.7)")
    cmd.set_defaults(handler=_bench)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"--layers must name at least one layer, got {text!r}")
    return names


def _densities(text: str) -> tuple[float, ...]:
    """argparse type: two or more distinct densities in (0, 1], ascending."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--densities must be comma-separated numbers, got {text!r}") from None
    if any(not 0.0 < v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"--densities must be in (0, 1], got {text!r}")
    if len(set(values)) < 2:
        raise argparse.ArgumentTypeError(f"--densities needs two or more different densities, got {text!r}")
    return tuple(sorted(set(values)))


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

    if args.sparse_conv:
        result = _sparse_conv(args)
    else:
        for flag in ("layers", "densities"):
            if getattr(args, flag) is not None:
                raise ConfigError("command line", f"--{flag}", "only applies with --sparse-conv")
        workload = load_workload(find_workload(args.workload) if args.workload else DEFAULT_WORKLOAD)
        if args.format not in (None, "dense", "csr"):
            result = _variants(args, workload)
        else:
            from ..compress.compression import StorageFormat
            from ..measure.bench import bench

            result = bench(workload, StorageFormat(args.format or "dense"), args.batch, args.threads,
                           args.repeat or 20, args.seed, progress, trace_path=args.trace)
    from ..measure.bench import render

    print(render(result))
    if args.trace:
        from ..output.trace import check_trace

        check_trace(json.loads(Path(args.trace).read_text(encoding="utf-8")), args.trace)
    if args.out:
        Path(args.out).write_text(json.dumps(with_header(result.to_json()), indent=1), encoding="utf-8")
    return 0


def _sparse_conv(args: argparse.Namespace):
    """``bench --sparse-conv``: the default layers, or --workload's convolutions."""
    from ..measure.bench import bench_sparse_conv
    from ..measure.sparseconv import DEFAULT_DENSITIES, DEFAULT_ROUNDS, default_shapes, workload_shapes
    from ..model.workload import load_workload

    for flag in ("format", "trace"):
        if getattr(args, flag) is not None:
            raise ConfigError("command line", f"--{flag}", "does not apply with --sparse-conv")
    if args.layers is not None and args.workload is None:
        raise ConfigError("command line", "--layers", "names layers of --workload; give the workload too")
    shapes = workload_shapes(load_workload(find_workload(args.workload)), args.layers) if args.workload else default_shapes()
    return bench_sparse_conv(shapes, args.densities or DEFAULT_DENSITIES, args.batch, args.threads,
                             args.repeat or DEFAULT_ROUNDS, args.seed, progress, args.workload or "")


def _variants(args: argparse.Namespace, workload):
    """``bench --format LIST``: every variant of the list, layer by layer
    (:mod:`simulator.measure.variantbench`)."""
    from ..measure.variantbench import bench_variants, parse_bench_variants

    if args.trace is not None:
        raise ConfigError("command line", "--trace", "applies to a dense or csr bench, not to a list of variants")
    variants = parse_bench_variants(args.format, workload)
    return bench_variants(workload, variants, args.batch, args.threads, args.repeat or 20, args.seed, progress)
