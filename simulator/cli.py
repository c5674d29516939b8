"""Command line: ``python -m simulator run PROFILE [options]``.

Every user error (a bad file, field or flag) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from .errors import ConfigError, SimulatorError

DEFAULT_WORKLOAD = Path(__file__).resolve().parent.parent / "workloads" / "alexnet.yaml"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {text!r}")
        return value
    return parse


def _density(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--density must be a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--density must be in (0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="python -m simulator",
                     description="Simulated memory hierarchy for compressed (pruned) DNN inference.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    run = commands.add_parser("run", help="simulate a workload on a hardware profile, dense vs pruned",
                              description="Simulate a workload on a hardware profile: per layer, dense vs pruned "
                                          "time, DRAM bytes, cache hit rates and what bounds it.")
    run.add_argument("profile", help="hardware profile YAML (hwprofiles/*.yaml)")
    run.add_argument("--workload", help="workload YAML (default: workloads/alexnet.yaml)")
    run.add_argument("--batch", type=_positive_int("--batch"), default=1, help="samples per inference (default 1)")
    run.add_argument("--format", choices=["dense", "csr", "csc"],
                     help="simulate one variant only: dense (unpruned) or pruned in csr / csc "
                          "(default: dense and pruned CSR side by side)")
    run.add_argument("--density", type=_density,
                     help="prune every weighted layer to this density instead of the workload's")
    run.add_argument("--repeat", type=_positive_int("--repeat"), default=1,
                     help="back-to-back inferences; the last (steady state, warm caches) is reported")
    run.add_argument("--threads", type=_positive_int("--threads"),
                     help="cores to use (default: all of the profile's)")
    run.add_argument("--seed", type=int, default=0, help="seed of the synthetic weights (default 0)")
    run.add_argument("--no-host-copies", action="store_true",
                     help="leave out the input / output copies over a discrete device's host link")
    run.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    run.set_defaults(handler=_cmd_run)
    return parser


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{message}")
        sys.stderr.flush()


def _cmd_run(args: argparse.Namespace) -> int:
    from .compression import StorageFormat
    from .pipeline import RunOptions, run
    from .profile import load_profile
    from .report import render, write_json
    from .workload import load_workload

    profile = load_profile(args.profile)
    workload = load_workload(args.workload or DEFAULT_WORKLOAD)
    if args.json:
        json_dir = Path(args.json).parent
        if not json_dir.is_dir():
            raise ConfigError("command line", "--json", f"{args.json}: directory {json_dir} does not exist")
    if args.format:
        formats = (StorageFormat(args.format),)
    else:
        formats = (StorageFormat.DENSE, StorageFormat.CSR)
    options = RunOptions(batch=args.batch, repeat=args.repeat, formats=formats, density=args.density,
                         seed=args.seed, threads=args.threads, host_copies=not args.no_host_copies)
    result = run(profile, workload, options, progress=_progress)
    _progress("")
    print(render(result))
    if args.json:
        write_json(result, args.json)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SimulatorError as err:
        _progress("")
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (head, less) went away: not an error of ours
        sys.stderr.close()
        return 0
