"""``python -m simulator digits [--out DIR] [--epochs N] ...``: the seed's loop on real data.

Train a small CNN on scikit-learn's digits, prune it with an AGP schedule while fine-tuning,
and report accuracy vs sparsity vs simulated latency on each profile, with a check that the
model still works from every stored format (see docs/digits.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..base.console import progress
from ..base.errors import ConfigError
from ..base.paths import find_profile
from .options import add_command, positive_int


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sensitivity-step must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"--sensitivity-step must be in (0, 1), got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``digits`` subcommand."""
    digits = add_command(subparsers, "digits", _digits,
                         "train, AGP-prune and fine-tune a CNN on scikit-learn's digits; accuracy vs sparsity vs "
                         "simulated latency")
    digits.add_argument("--out", default="out/digits", metavar="DIR",
                        help="directory for the results (created if missing; default out/digits)")
    digits.add_argument("--schedule", metavar="FILE",
                        help="Distiller compression schedule (default: the shipped examples/digits.schedule_agp.yaml)")
    digits.add_argument("--pretrain-epochs", type=positive_int("--pretrain-epochs"), default=15, metavar="N",
                        help="dense training epochs before pruning (default 15)")
    digits.add_argument("--epochs", type=positive_int("--epochs"), metavar="N",
                        help="epochs of the pruning run: the schedule acts at the start of each, fine-tuning "
                             "follows (default: the last pruning epoch + 5)")
    digits.add_argument("--profile", action="append", metavar="FILE",
                        help="hardware profile to simulate on, a file or a shipped name "
                             "(repeatable; default every shipped one)")
    digits.add_argument("--batch", type=positive_int("--batch"), default=1, metavar="N",
                        help="samples per simulated inference (default 1)")
    digits.add_argument("--sensitivity-step", type=_fraction, default=0.05, metavar="S",
                        help="sparsity step of the sensitivity analysis (default 0.05: 0, 5, ... 90%%)")
    digits.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the split, the initial weights and the minibatch order (default 0)")


def _digits(args: argparse.Namespace) -> int:
    """Train a small CNN on scikit-learn's bundled digits (no download), prune it with a Distiller AGP schedule
    while fine-tuning, simulate every recorded model on each hardware profile, and check that the model still works
    from every stored format (max |difference| of its outputs). Writes the pruned checkpoint, a JSON report,
    Distiller's sensitivity CSV and plots into --out."""
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError("command line", "--out", f"{out}: exists and is not a directory") from None
    except OSError as err:
        raise ConfigError("command line", "--out", f"{out}: cannot create it ({err.strerror or err})") from None
    # inputs first: a bad schedule or profile is reported before minutes of training
    from ..compress.schedule import load_schedule
    from ..hardware.profile import load_profile
    from ..studies.digits import DEFAULT_SCHEDULE, DigitsOptions, render_report, run_digits, write_outputs

    schedule = Path(args.schedule) if args.schedule else DEFAULT_SCHEDULE
    load_schedule(schedule)
    profiles = [find_profile(p) for p in args.profile or []]
    for path in profiles:
        load_profile(path)
    options = DigitsOptions(schedule=schedule, pretrain_epochs=args.pretrain_epochs, epochs=args.epochs,
                            profiles=profiles, sim_batch=args.batch, sensitivity_step=args.sensitivity_step,
                            seed=args.seed)
    report = run_digits(options, progress=progress)
    progress("")
    written = write_outputs(report, out)
    print(render_report(report))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0
