"""Command line: ``python -m simulator COMMAND [options]`` (commands live in ``simulator.commands``).

Every user error (a bad file, field or flag) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Optional, Sequence

from .commands import COMMANDS
from .errors import SimulatorError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(flag: str):
    """argparse type: an integer of at least 1, the error naming ``flag``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {text!r}")
        return value
    return parse


def density(text: str) -> float:
    """argparse type: a density in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--density must be a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--density must be in (0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (each registered by a module in ``commands``)."""
    parser = _Parser(prog="python -m simulator",
                     description="Simulated memory hierarchy for compressed (pruned) DNN inference.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(subparsers)
    return parser


def check_output_dirs(args: argparse.Namespace, *flags: str) -> None:
    """Refuse, before any work, an output file (``--json``, ``--plot`` ...) whose folder is missing."""
    from pathlib import Path

    from .errors import ConfigError

    for flag in flags:
        target = getattr(args, flag, None)
        if target and not Path(target).resolve().parent.is_dir():
            raise ConfigError("command line", f"--{flag}", f"{target}: its directory does not exist")


def progress(message: str) -> None:
    """Show a one-line progress message on a terminal (nothing when stderr is redirected)."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{message}")
        sys.stderr.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SimulatorError as err:
        progress("")
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (head, less) went away: not an error of ours
        sys.stderr.close()
        return 0
