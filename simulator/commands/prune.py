"""``python -m simulator prune --schedule S (--workload W | --checkpoint C) --out F``:
apply a Distiller compression schedule and write a Distiller-layout checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..base.console import Bar
from ..base.errors import ConfigError
from ..base.paths import find_workload
from .options import add_command, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prune`` subcommand."""
    prune = add_command(subparsers, "prune", _prune,
                        "apply a Distiller compression schedule to a workload's or a checkpoint's weights")
    prune.add_argument("--schedule", required=True, metavar="FILE", help="Distiller schedule YAML")
    source = prune.add_mutually_exclusive_group(required=True)
    source.add_argument("--workload", metavar="FILE",
                        help="prune a workload's seeded synthetic weights (no checkpoint)")
    source.add_argument("--checkpoint", metavar="FILE", help="prune a Distiller / torch checkpoint's weights")
    prune.add_argument("--epochs", type=positive_int("--epochs"),
                       help="run epochs 0 .. N-1 (default: through the schedule's last pruning epoch)")
    prune.add_argument("--out", required=True, metavar="FILE", help="the pruned checkpoint to write (.pth.tar)")
    prune.add_argument("--seed", type=int, default=0, help="seed of a workload's synthetic weights (default 0)")
    prune.add_argument("--plot", metavar="DIR", help="also write DIR/density.png: per-layer density bars")


def _prune(args: argparse.Namespace) -> int:
    """Apply a Distiller compression schedule (version-1 YAML: pruners and policies, Distiller's epoch rule and AGP
    formula) with torch.nn.utils.prune, print Distiller's sparsity summary and write the pruned model as a Distiller
    checkpoint. Nothing is trained: weights change only by masking. A thinning extension (net_thinner:
    FilterRemover / ChannelRemover) removes the all-zero filters or channels at its epoch, through the workload's
    graph, and the checkpoint holds the smaller tensors."""
    from torch.nn.utils import prune as torch_prune

    from ..compress.schedule import apply_schedule, load_schedule
    from ..compress.sparsity import render_summary, weights_sparsity_summary
    from ..compress.thinning import StateThinner
    from ..model.checkpoint import load_checkpoint, save_checkpoint
    from ..model.parameters import ParameterTree, workload_parameters
    from ..model.workload import load_workload

    out_dir = Path(args.out).parent
    if not out_dir.is_dir():
        raise ConfigError("command line", "--out", f"{args.out}: directory {out_dir} does not exist")
    if args.plot and not Path(args.plot).is_dir():
        raise ConfigError("command line", "--plot", f"{args.plot}: not an existing directory")
    schedule = load_schedule(args.schedule)
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, arch, state = args.checkpoint, ckpt.arch, dict(ckpt.state_dict)
        tree = ParameterTree(ckpt.parameters())
        for name, mask in ckpt.masks.items():   # Distiller resumes with the checkpoint's masks
            if name in tree.names:
                module, attribute = tree.module_of(name)
                torch_prune.custom_from_mask(module, attribute, mask)
    else:
        workload_path = find_workload(args.workload)
        workload = load_workload(workload_path)
        from ..memory.estimate import check_weight_memory

        check_weight_memory(workload)    # before a weight is drawn
        model, arch = args.workload, workload_path.stem   # file name = Distiller's arch name
        tree = ParameterTree(workload_parameters(workload, args.seed))
        state = {}
    thinner = None
    if schedule.thinnings:
        from ..model.checkpoint import checkpoint_workload

        thinner = StateThinner(checkpoint_workload(ckpt) if args.checkpoint else workload)
    with Bar("step") as bar:
        result = apply_schedule(schedule, tree, model, args.epochs, progress=bar,
                                thin=_thin_step(thinner) if thinner is not None else None)
    warning = schedule.warning(thinning_applied=True)   # after the schedule applied: an error stays one line
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if thinner is not None:
        state = thinner.apply(state)       # batch-norm running statistics, cut as the parameters were
    state.update(result.tensors)
    save_checkpoint(args.out, state, result.masks, tree.names, arch, result.epochs - 1)
    summary = weights_sparsity_summary(state)
    print(render_summary(summary))
    print(f"\n{model}: epochs 0-{result.epochs - 1} of {args.schedule}, {len(result.steps)} masking steps on "
          f"{len(result.masks)} parameters; wrote {args.out}")
    if thinner is not None:
        _report_thinning(thinner)
    if args.plot:
        from ..output.plots import density_bars

        path = density_bars(summary, Path(args.plot) / "density.png", Path(args.out).name)
        print(f"wrote {path}")
    return 0


def _thin_step(thinner):
    """The ``thin`` callback of :func:`~simulator.compress.schedule.apply_schedule`: Distiller's
    thinning function name -> what :class:`~simulator.compress.thinning.StateThinner` removes."""
    from ..compress.schedule import ThinningFunction
    from ..compress.thinning import Removal

    removal = {ThinningFunction.FILTERS: Removal.FILTERS, ThinningFunction.CHANNELS: Removal.CHANNELS}

    def step(function, epoch, weights, masks):
        return thinner(removal[function], weights, masks)

    return step


def _report_thinning(thinner) -> None:
    """What each thinning step removed, and the compute before and after (Distiller's MACs)."""
    for _, record in thinner.steps:
        print(f"\nthinning: {record.macs_before:,} -> {record.macs_after:,} MACs per sample")
        for line in record.lines():
            print(f"  {line}")
