"""``python -m simulator run PROFILE [options]``: dense vs pruned, per layer."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import density, positive_int, progress
from ..errors import ConfigError

DEFAULT_WORKLOAD = Path(__file__).resolve().parent.parent.parent / "workloads" / "alexnet.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    run = subparsers.add_parser("run", help="simulate a workload on a hardware profile, dense vs pruned",
                                description="Simulate a workload on a hardware profile: per layer, dense vs "
                                            "pruned time, DRAM bytes, cache hit rates and what bounds it.")
    run.add_argument("profile", help="hardware profile YAML (hwprofiles/*.yaml)")
    run.add_argument("--workload", help="workload YAML (default: workloads/alexnet.yaml; with --checkpoint, "
                                        "the shipped workloads/<arch>.yaml of the checkpoint's arch)")
    run.add_argument("--checkpoint", metavar="FILE",
                     help="simulate a Distiller / torch checkpoint's own weights (.pth.tar): its shapes, and its "
                          "zeros and masks as the sparsity; loaded without running code from the file")
    run.add_argument("--batch", type=positive_int("--batch"), default=1, help="samples per inference (default 1)")
    run.add_argument("--format", choices=["dense", "csr", "csc"],
                     help="simulate one variant only: dense (unpruned) or pruned in csr / csc "
                          "(default: dense and pruned CSR side by side)")
    run.add_argument("--density", type=density,
                     help="prune every weighted layer to this density instead of the workload's")
    run.add_argument("--repeat", type=positive_int("--repeat"), default=1,
                     help="back-to-back runs; the last (steady state, warm caches) is reported")
    run.add_argument("--repeat-mode", choices=["network", "layer"], default="network",
                     help="network: whole inferences back to back (default); layer: each layer alone, "
                          "repeated --repeat times from cold caches, the EIE paper's benchmark mode "
                          "(no host copies)")
    run.add_argument("--threads", type=positive_int("--threads"),
                     help="cores to use (default: all of the profile's)")
    run.add_argument("--seed", type=int, default=0, help="seed of the synthetic weights (default 0)")
    run.add_argument("--no-host-copies", action="store_true",
                     help="leave out the input / output copies over a discrete device's host link")
    run.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..profile import load_profile
    from ..workload import load_workload

    # inputs first: a bad file is reported before the heavier stages are even imported
    profile = load_profile(args.profile)
    if args.checkpoint:
        if args.density is not None:
            raise ConfigError("command line", "--density", "does not apply with --checkpoint (the checkpoint's "
                              "own zeros are the sparsity)")
        from ..checkpoint import checkpoint_workload, load_checkpoint

        workload = checkpoint_workload(load_checkpoint(args.checkpoint), args.workload)
    else:
        workload = load_workload(args.workload or DEFAULT_WORKLOAD)

    from ..compression import StorageFormat
    from ..pipeline import RepeatMode, RunOptions, run
    from ..report import render, write_json

    if args.json:
        json_dir = Path(args.json).parent
        if not json_dir.is_dir():
            raise ConfigError("command line", "--json", f"{args.json}: directory {json_dir} does not exist")
    formats = (StorageFormat(args.format),) if args.format else (StorageFormat.DENSE, StorageFormat.CSR)
    options = RunOptions(batch=args.batch, repeat=args.repeat, formats=formats, density=args.density,
                         seed=args.seed, threads=args.threads, host_copies=not args.no_host_copies,
                         repeat_mode=RepeatMode(args.repeat_mode))
    result = run(profile, workload, options, progress=progress)
    progress("")
    print(render(result))
    if args.json:
        write_json(result, args.json)
    return 0
