"""``python -m simulator run PROFILE [options]``: dense vs pruned, per layer."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..base.console import Bar, progress
from ..base.errors import ConfigError
from ..base.paths import WORKLOADS_DIR, find_profile, find_workload
from ..compress.variants import DEFAULT_GROUP_SIZE
from .options import add_command, add_timeline_flag, check_output_dirs, density, positive_int

if TYPE_CHECKING:   # the heavy stages are imported only when a run needs them
    from ..hardware.profile import HardwareProfile
    from ..model.workload import Workload
    from ..pipeline import RunOptions

DEFAULT_WORKLOAD = WORKLOADS_DIR / "alexnet.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    run = add_command(subparsers, "run", _run, "simulate a workload on a hardware profile, dense vs pruned")
    run.add_argument("profile",
                     help="hardware profile: a YAML file, or a shipped profile's name (tegra; see `profiles`)")
    run.add_argument("--workload", help="workload YAML, or a shipped workload's name (vgg16) (default: alexnet; with "
                                        "--checkpoint, the shipped workloads/<arch>.yaml of the checkpoint's arch); "
                                        "or a decoder's Hugging Face config.json (workloads/llm/*.json), "
                                        "see docs/llm.md")
    run.add_argument("--checkpoint", metavar="FILE",
                     help="simulate a Distiller / torch checkpoint's own weights (.pth.tar): its shapes, and its "
                          "zeros and masks as the sparsity; loaded without running code from the file")
    run.add_argument("--model", metavar="PACKAGE.MODULE:FACTORY",
                     help="simulate a torch model: import the (installed or PYTHONPATH) module, call FACTORY() for "
                          "an nn.Module or (module, example input), capture its graph with torch.fx; its own non-zero "
                          "weights are the sparsity (with --checkpoint: the checkpoint's weights loaded into it)")
    run.add_argument("--input-shape", metavar="C,H,W",
                     help="with --model: the shape of one input sample, when FACTORY returns no example input")
    run.add_argument("--batch", type=positive_int("--batch"), default=1, help="samples per inference (default 1)")
    run.add_argument("--format", metavar="SPEC[,SPEC...]",
                     help="the variants to simulate side by side, each STRUCTURE[@TYPE]: dense, thinned, csr, "
                          "csc, bsr<R>x<C>, <N>:<M>, bitmask, eie, or auto (per layer the fastest of the others); "
                          "TYPE fp32, fp16, bf16, int8 (dynamic quantization), w8 or w4 (weight-only), default "
                          "the workload's (default: dense,csr); see docs/compression.md")
    run.add_argument("--group-size", type=positive_int("--group-size"), default=DEFAULT_GROUP_SIZE,
                     help=f"weights per fp16 scale of @w8 / @w4 (default {DEFAULT_GROUP_SIZE})")
    run.add_argument("--low-rank", metavar="SPEC", action="append",
                     help="factor layers into two thinner ones by SVD before the run (repeatable): LAYERS:VALUE, "
                          "LAYERS a layer name, all-fc, all-conv or all; VALUE a fraction of the full rank "
                          "(fc6:0.25), a rank (fc6:500) or energy=F of the seeded weights' singular values "
                          "(fc6:energy=0.9)")
    run.add_argument("--density", type=density,
                     help="prune every weighted layer to this density instead of the workload's")
    run.add_argument("--repeat", type=positive_int("--repeat"), default=1,
                     help="back-to-back runs; the last (steady state, warm caches) is reported")
    run.add_argument("--repeat-mode", choices=["network", "layer"], default="network",
                     help="network: whole inferences back to back (default); layer: each layer alone, "
                          "repeated --repeat times from cold caches, `bench`'s mode (no host copies)")
    run.add_argument("--threads", type=positive_int("--threads"),
                     help="cores to use (default: all of the profile's)")
    run.add_argument("--seed", type=int, default=0, help="seed of the synthetic weights (default 0)")
    run.add_argument("--no-host-copies", action="store_true",
                     help="leave out the input / output copies over a discrete device's host link")
    run.add_argument("--mode", choices=["infer", "train"], default="infer",
                     help="infer: inferences (default); train: one training step (forward, backward, SGD update) "
                          "of the dense network against the device's memory capacity, see docs/train.md")
    run.add_argument("--offload", choices=["base", "all", "conv", "dyn"], default="base",
                     help="with --mode train, vDNN's policy: base keeps every feature map on the device; all "
                          "offloads every layer input backward needs; conv those of convolutions; dyn searches "
                          "(default base; base(p) is always simulated as the reference)")
    run.add_argument("--conv-algorithm", choices=["performance", "memory"], default="performance",
                     help="with --mode train and a static --offload: performance-optimal (workspace, faster) or "
                          "memory-optimal (no workspace) convolutions, from the profile's conv_algorithms")
    run.add_argument("--optimizer", choices=["momentum", "sgd"], default="momentum",
                     help="with --mode train, the weight update: SGD with momentum (a velocity buffer per weight, "
                          "default) or plain SGD (no state)")
    run.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    run.add_argument("--plot", metavar="FILE", help="also plot each layer's time, a bar per variant "
                                                    "(.png, .pdf or .svg)")
    run.add_argument("--dump-trace", metavar="DIR",
                     help="also write the address traces the caches saw, per variant (DIR/dense.npy, "
                          "DIR/pruned.npy) and per layer, as the .npy files `cachesim` reads")
    add_timeline_flag(run, "also write the simulated timeline (compute, each cache level, DRAM, link) as "
                           "Chrome / Perfetto trace-event JSON")
    from .llmrun import add_arguments

    add_arguments(run)


def _inputs(args: argparse.Namespace) -> tuple[HardwareProfile, Workload, Optional[float]]:
    """The profile, the workload (a file, a checkpoint or a model's captured graph) and the density the run
    applies (None where the workload's own weights carry the sparsity)."""
    from ..hardware.profile import load_profile
    from ..model.workload import load_workload

    check_output_dirs(args, "json", "timeline")
    # inputs first: a bad file is reported before the heavier stages are even imported
    profile = load_profile(find_profile(args.profile))
    from .llmrun import check_llm_flags

    check_llm_flags(args)
    run_density = args.density
    if args.input_shape and not args.model:
        raise ConfigError("command line", "--input-shape", "applies with --model only")
    if args.model:
        if args.workload:
            raise ConfigError("command line", "--workload", "does not apply with --model (the captured model is the "
                              "layer graph)")
        from ..model.torchgraph import load_checkpoint_weights, load_model, parse_input_shape, workload_from_module

        shape = parse_input_shape(args.input_shape) if args.input_shape else None
        model = load_model(args.model, shape)
        name = type(model.module).__name__
        if args.checkpoint:
            from ..model.checkpoint import load_checkpoint

            load_checkpoint_weights(model.module, load_checkpoint(args.checkpoint))
            name = f"{name}, {Path(args.checkpoint).name}"
        # --density prunes the model's own weights by magnitude (its masks then carry the sparsity)
        workload = workload_from_module(model.module, model.example_input, name=name, source=args.model,
                                        density=args.density)
        run_density = None
    elif args.checkpoint:
        if args.density is not None:
            raise ConfigError("command line", "--density", "does not apply with --checkpoint (the checkpoint's "
                              "own zeros are the sparsity)")
        from ..model.checkpoint import checkpoint_workload, load_checkpoint

        workload = checkpoint_workload(load_checkpoint(args.checkpoint),
                                       find_workload(args.workload) if args.workload else None)
    else:
        workload = load_workload(find_workload(args.workload) if args.workload else DEFAULT_WORKLOAD)
    if args.low_rank:
        from ..compress.lowrank import apply_low_rank

        workload = apply_low_rank(workload, args.low_rank, args.seed)
    return profile, workload, run_density

def _run(args: argparse.Namespace) -> int:
    """Simulate a workload on a hardware profile: per layer, dense vs pruned time, DRAM bytes, cache hit rates and
    what bounds it."""
    from ..model.llm import looks_like_llm_config

    if args.workload and looks_like_llm_config(args.workload):   # a decoder's config.json: prefill / decode
        from ..hardware.profile import load_profile
        from .llmrun import run_llm

        check_output_dirs(args, "json", "timeline")
        return run_llm(load_profile(find_profile(args.profile)), Path(args.workload), args)
    # inputs first: a bad file is reported before the heavier stages are even imported
    profile, workload, run_density = _inputs(args)
    from ..compress.compression import StorageFormat
    from ..output.report import render, write_json
    from ..pipeline import RepeatMode, RunOptions, VariantLike, run

    if args.json:
        json_dir = Path(args.json).parent
        if not json_dir.is_dir():
            raise ConfigError("command line", "--json", f"{args.json}: directory {json_dir} does not exist")
    from ..compress.variants import parse_variants

    formats: tuple[VariantLike, ...] = (parse_variants(args.format, args.group_size) if args.format
                                        else (StorageFormat.DENSE, StorageFormat.CSR))
    from ..engine.offload import OffloadPolicy
    from ..engine.training import Mode, Optimizer
    from ..hardware.profile import ConvAlgorithm

    mode = Mode(args.mode)
    if mode is Mode.INFER:
        for flag, value, default in (("--offload", args.offload, "base"),
                                     ("--conv-algorithm", args.conv_algorithm, "performance"),
                                     ("--optimizer", args.optimizer, "momentum")):
            if value != default:
                raise ConfigError("command line", flag, "applies with --mode train only")
    elif args.format is None:
        formats = (StorageFormat.DENSE,)      # training updates dense weights
    notes = _nothing_to_prune(profile, workload, run_density, args.format) if mode is Mode.INFER else []
    if notes and args.format is None:
        formats = (StorageFormat.DENSE,)
    options = RunOptions(batch=args.batch, repeat=args.repeat, formats=formats, density=run_density,
                         seed=args.seed, threads=args.threads, host_copies=not args.no_host_copies,
                         repeat_mode=RepeatMode(args.repeat_mode), mode=mode, offload=OffloadPolicy(args.offload),
                         conv_algorithm=ConvAlgorithm(args.conv_algorithm), optimizer=Optimizer(args.optimizer))
    if mode is Mode.TRAIN:
        return _train(profile, workload, options, args)
    if args.timeline and not Path(args.timeline).resolve().parent.is_dir():
        raise ConfigError("command line", "--timeline", f"{args.timeline}: its directory does not exist")
    plot = None
    if args.plot:
        from ..output.plots import check_plot_path

        plot = check_plot_path(args.plot, "plot")
    dump_dir = _trace_dir(profile, args.dump_trace) if args.dump_trace else None
    if args.timeline:
        from ..engine.core import recording

        with recording() as calls, Bar() as bar:
            result = run(profile, workload, options, progress=bar)
    else:
        with Bar() as bar:
            result = run(profile, workload, options, progress=bar)
    result = replace(result, notes=result.notes + notes)
    print(render(result))
    from ..output.steptimeline import memory_lines, variant_events

    for line in memory_lines(result):    # weights streamed, or a device too small: said under the table
        print(line)
    if args.json:
        write_json(result, args.json)
    if plot is not None:
        from ..output.plots import layer_times_by_variant

        layer_times_by_variant(result, plot)
        print(f"plot: {plot} (time per layer, a bar per variant)")
    if dump_dir is not None:
        _dump_traces(profile, workload, options, result, dump_dir)
    if args.timeline:
        from ..output.timeline import simulated_timeline, write_timeline

        doc = simulated_timeline(result, calls)
        for index, variant in enumerate(result.variants):    # the weight stream beside the engine's threads
            doc["traceEvents"] += variant_events(variant, index + 1, "")[1:]
        write_timeline(doc, args.timeline)
    return 0


def _nothing_to_prune(profile: HardwareProfile, workload: Workload, density, fmt) -> list[str]:
    """The line that says a workload gives nothing to prune (no densities, no masks), or none."""
    from ..compress.compression import prunes_anything

    if profile.sparse_engine is not None or density is not None or prunes_anything(workload):
        return []
    variant = "dense only" if fmt is None else f"every layer runs dense in the {fmt} variant"
    return [f"{workload.name} gives no layer densities, so nothing is pruned: {variant} "
            "(--density D, or a pruned --checkpoint from `prune`, says what to prune)"]


def _trace_dir(profile: HardwareProfile, folder: str) -> Path:
    """``--dump-trace``'s folder, checked (and created) before any work."""
    from ..output.tracedump import check_trace_dir

    if profile.sparse_engine is not None or profile.tiled_engine is not None:
        raise ConfigError("command line", "--dump-trace", f"{profile.name} has no caches: its engine moves "
                          "whole buffers, so there is no address trace to dump")
    return check_trace_dir(folder)


def _dump_traces(profile: HardwareProfile, workload: Workload, options: RunOptions, result, folder: Path) -> None:
    """``--dump-trace``: rebuild each variant's traces (the same seeded encodings, so the same
    addresses the run used) and write them for ``cachesim``."""
    from ..output.tracedump import write_traces
    from ..pipeline import variant_traffic

    written = []
    by_spec = {v.spec: v for v in options.variants}
    for variant in result.variants:
        progress(f"{variant.name}: writing traces")
        traffic = variant_traffic(profile, workload, by_spec[variant.format], options)
        written += write_traces(folder, variant.name, traffic)
    progress("")
    whole = ", ".join(str(folder / f"{v.name}.npy") for v in result.variants)
    print(f"traces for cachesim: {whole} (whole inference) and {len(written) - len(result.variants)} "
          f"per-layer files in {folder}")


def _train(profile: HardwareProfile, workload: Workload, options: RunOptions, args: argparse.Namespace) -> int:
    """``--mode train``: one training step per variant; its own table, JSON and timeline."""
    from ..engine.training import render_training
    from ..output.report import write_json
    from ..output.steptimeline import step_timeline
    from ..pipeline import run

    if args.timeline and not Path(args.timeline).resolve().parent.is_dir():
        raise ConfigError("command line", "--timeline", f"{args.timeline}: its directory does not exist")
    with Bar() as bar:
        result = run(profile, workload, options, progress=bar)
    print(render_training(result))
    if args.json:
        write_json(result, args.json)
    if args.timeline:
        from ..output.timeline import write_timeline

        write_timeline(step_timeline(result), args.timeline)
    return 0
