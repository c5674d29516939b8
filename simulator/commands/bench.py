"""``python -m simulator bench``: real timings of a workload's layers on this CPU with torch (or of
sparse convolutions, ``--sparse-conv``, or of a decoder LLM's prefill and decode, ``--llm``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..base.console import progress
from ..base.errors import ConfigError
from ..base.paths import WORKLOADS_DIR, find_workload
from ..base.version import with_header
from .options import add_command, add_timeline_flag, positive_int

DEFAULT_WORKLOAD = WORKLOADS_DIR / "eie.yaml"
DEFAULT_PROMPT, DEFAULT_CONTEXT, DEFAULT_TOKENS = 128, 256, 32     # bench --llm
LLM_FLAGS = ("prompt", "context", "tokens", "weights")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    cmd = add_command(subparsers, "bench", _bench,
                      "time a workload's layers for real on this CPU (torch), in the simulator's benchmark mode")
    cmd.add_argument("--workload", help="workload YAML (default workloads/eie.yaml)")
    cmd.add_argument("--format", metavar="LIST",
                     help="dense or csr (default dense); or a comma-separated list of variants STRUCTURE[@TYPE] "
                          "timed side by side, each layer's variants interleaved in rounds: dense, thinned (each "
                          "@fp32, @bf16 or @int8), csr, bsr<R>x<C> (e.g. dense,dense@bf16,dense@int8,csr,bsr4x4,"
                          "thinned); see docs/bench.md")
    cmd.add_argument("--batch", type=positive_int("--batch"), default=1, help="samples per call (default 1)")
    cmd.add_argument("--threads", type=positive_int("--threads"), help="torch threads (default: every CPU)")
    cmd.add_argument("--repeat", type=positive_int("--repeat"),
                     help="timed calls per layer after the warm-up calls (3 or more; default 20); with --sparse-conv, "
                          "round-robin rounds, each kernel's best call counts (default 7); with --llm, rounds of "
                          "prefill and decode after one warm-up round, each figure's best counts (default 3)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the weights, as in `run --seed` (default 0)")
    cmd.add_argument("--out", metavar="FILE", help="write the timings as JSON (what `crosscheck` reads)")
    add_timeline_flag(cmd, "write the torch.profiler timeline as Chrome/Perfetto JSON")
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
    group = cmd.add_argument_group("decoder LLM", "a real decoder built with torch from a model's config.json "
                                   "(seeded random weights): time to first token and decode tokens per second")
    group.add_argument("--llm", metavar="CONFIG", help="a decoder model's config.json (e.g. workloads/llm/"
                       "Qwen2.5-0.5B.json, or a shipped config's name); measure it instead of a workload's layers")
    group.add_argument("--prompt", type=positive_int("--prompt"),
                       help=f"with --llm: prompt tokens of the prefill (default {DEFAULT_PROMPT})")
    group.add_argument("--context", type=positive_int("--context"),
                       help=f"with --llm: tokens in the KV cache before decoding (default {DEFAULT_CONTEXT})")
    group.add_argument("--tokens", type=positive_int("--tokens"),
                       help=f"with --llm: decode steps timed (default {DEFAULT_TOKENS})")
    group.add_argument("--weights", type=_weight_types,
                       help="with --llm: comma-separated weight types of fp32, bf16, int8 (int8: torch dynamic "
                            "quantization of every linear layer) (default fp32,bf16,int8)")


def _weight_types(text: str):
    from ..measure.llmbench import parse_weight_types

    try:
        return parse_weight_types(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
    """Run each layer of the workload alone, repeated (the simulator's layer mode), with the simulator's own weights
    (dense, or its pruned CSR encoding); report per-frame medians and spread, and a torch.profiler per-operator
    breakdown of one pass."""
    import os

    for flag in ("out", "timeline"):
        target = getattr(args, flag)
        if target and not Path(target).resolve().parent.is_dir():
            raise ConfigError("command line", f"--{flag}", f"{target}: its directory does not exist")
    if args.threads and args.threads > (os.cpu_count() or 1):
        raise ConfigError("command line", "--threads", f"{args.threads} is more than this machine's "
                          f"{os.cpu_count()} CPUs")
    from ..model.workload import load_workload

    if args.llm is None:
        for flag in LLM_FLAGS:
            if getattr(args, flag) is not None:
                raise ConfigError("command line", f"--{flag}", "only applies with --llm")
    if args.llm is not None:
        result = _llm(args)
    elif args.sparse_conv:
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
                           args.repeat or 20, args.seed, progress, timeline_path=args.timeline)
    from ..measure.bench import render

    print(render(result))
    if args.timeline:
        from ..output.timeline import check_timeline

        check_timeline(json.loads(Path(args.timeline).read_text(encoding="utf-8")), args.timeline)
    if args.out:
        Path(args.out).write_text(json.dumps(with_header(result.to_json()), indent=1), encoding="utf-8")
    return 0


def _sparse_conv(args: argparse.Namespace):
    """``bench --sparse-conv``: the default layers, or --workload's convolutions."""
    from ..measure.bench import bench_sparse_conv
    from ..measure.sparseconv import DEFAULT_DENSITIES, DEFAULT_ROUNDS, default_shapes, workload_shapes
    from ..model.workload import load_workload

    for flag in ("format", "timeline"):
        if getattr(args, flag) is not None:
            raise ConfigError("command line", f"--{flag}", "does not apply with --sparse-conv")
    if args.layers is not None and args.workload is None:
        raise ConfigError("command line", "--layers", "names layers of --workload; give the workload too")
    shapes = (workload_shapes(load_workload(find_workload(args.workload)), args.layers) if args.workload
              else default_shapes())
    return bench_sparse_conv(shapes, args.densities or DEFAULT_DENSITIES, args.batch, args.threads,
                             args.repeat or DEFAULT_ROUNDS, args.seed, progress, args.workload or "")


def find_llm_config(arg: str) -> Path:
    """A ``--llm`` argument: a path, or a shipped config's name (``Qwen2.5-0.5B``, in ``workloads/llm/``)."""
    path = Path(arg)
    if path.exists() or len(path.parts) != 1:
        return path
    candidate = WORKLOADS_DIR / "llm" / (arg if arg.endswith(".json") else f"{arg}.json")
    return candidate if candidate.is_file() else path


def _llm(args: argparse.Namespace):
    """``bench --llm``: the decoder's prefill and decode, each weight type."""
    from ..measure.bench import bench_llm
    from ..measure.llmbench import DEFAULT_LLM_ROUNDS, WeightType, dims_of
    from ..model.llm import Phase, load_llm_config, step_of

    if args.sparse_conv:
        raise ConfigError("command line", "--llm", "measure either --llm or --sparse-conv, not both")
    for flag in ("workload", "format", "timeline", "layers", "densities"):
        if getattr(args, flag) is not None:
            raise ConfigError("command line", f"--{flag}", "does not apply with --llm")
    path = find_llm_config(args.llm)
    config = load_llm_config(path)
    prompt = args.prompt or DEFAULT_PROMPT
    context = args.context or DEFAULT_CONTEXT
    tokens = args.tokens or DEFAULT_TOKENS
    step_of(config, Phase.PREFILL, prompt, 0, args.batch)                   # within the model's maximum
    step_of(config, Phase.DECODE, 1, context + tokens - 1, args.batch)
    return bench_llm(dims_of(config), str(path), args.weights or tuple(WeightType), prompt, context, tokens,
                     args.batch, args.threads, args.repeat or DEFAULT_LLM_ROUNDS, args.seed, progress)
def _variants(args: argparse.Namespace, workload):
    """``bench --format LIST``: every variant of the list, layer by layer
    (:mod:`simulator.measure.variantbench`)."""
    from ..measure.variantbench import bench_variants, parse_bench_variants

    if args.timeline is not None:
        raise ConfigError("command line", "--timeline", "applies to a dense or csr bench, not to a list of variants")
    variants = parse_bench_variants(args.format, workload)
    return bench_variants(workload, variants, args.batch, args.threads, args.repeat or 20, args.seed, progress)
