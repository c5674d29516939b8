"""Command line: ``python -m simulator COMMAND [options]`` (commands live in ``simulator.commands``).

Every user error (a bad file, field or flag) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Optional, Sequence

from .base.console import progress
from .base.errors import OptionError, SimulatorError
from .base.version import TOOL_NAME, __version__
from .commands import COMMANDS
from .commands.options import flag_of


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (each registered by a module in ``commands``)."""
    parser = _Parser(prog="python -m simulator",
                     description="Simulated memory hierarchy for compressed (pruned) DNN inference.")
    parser.add_argument("--version", action="version", version=f"{TOOL_NAME} {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SimulatorError as err:
        progress("")
        print(f"error: {err.spelled(flag_of) if isinstance(err, OptionError) else err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (head, less) went away: not an error of ours
        sys.stderr.close()
        return 0
