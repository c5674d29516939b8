"""Command line: ``python -m simulator COMMAND [options]`` (commands live in ``simulator.commands``).

Every user error (a bad file, field or flag) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from typing import NoReturn, Optional, Sequence

from .base.budget import set_max_memory
from .base.console import end_progress, set_quiet
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
    # the global flags, accepted before the command and after it
    _global_flags(parser, argparse.SUPPRESS)
    for command in subparsers.choices.values():
        _global_flags(command, argparse.SUPPRESS)
    return parser


def _max_memory(text: str) -> int:
    from .base.units import UnitError, parse_bytes

    try:
        value = parse_bytes(text)
    except UnitError as err:
        raise argparse.ArgumentTypeError(f"--max-memory: {err}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--max-memory must be a positive size such as '4 GiB', got {text!r}")
    return value


def _global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", default=default,
                        help="no progress bars or messages on stderr (they are off anyway when stderr is not a "
                             "terminal); errors are still printed")
    parser.add_argument("--max-memory", metavar="SIZE", type=_max_memory, default=default,
                        help="refuse work estimated to need more memory than SIZE (e.g. '4 GiB'); default: the "
                             "memory available now")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (2: bad input, 130: interrupted by Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
        set_quiet(getattr(args, "quiet", False))
        set_max_memory(getattr(args, "max_memory", None))
        return args.handler(args)
    except SimulatorError as err:
        end_progress()
        print(f"error: {err.spelled(flag_of) if isinstance(err, OptionError) else err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # worker processes ignore SIGINT; the pools were shut down on the way here
        end_progress()
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (head, less) went away: not an error of ours
        sys.stderr.close()
        return 0
    finally:
        set_quiet(False)
        set_max_memory(None)


#: The cyclic garbage collector's thresholds for one command (see :func:`console`).
GC_THRESHOLDS = (700, 10, 1000)


def console() -> NoReturn:
    """The ``simulator`` command and ``python -m simulator``: :func:`main`, then :func:`exit_now`.

    Speed trick, kept and labelled: a command collects cyclic garbage in the young generations as
    usual (every 700 and 7000 allocations) but almost never traverses the oldest one, whose objects
    (hundreds of thousands: modules, numba's and pydantic's tables, loaded at start) all live to the
    end of the process. Python's default thresholds made two full collections and 22 middle ones in
    a warm ``run`` (VGG-16 on the Tegra profile): about 0.08 s, out of 0.12 s of collecting, with
    the GIL held and every worker thread waiting, for nothing.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    exit_now(main())


def exit_now(status: int) -> NoReturn:
    """End the process with ``status`` without the interpreter's teardown.

    Speed trick, kept and labelled: once numba is loaded, a normal exit spends about 0.1 s (a tenth
    of a warm ``run``, issue #16) destroying numba's and LLVM's objects, which the operating system
    frees anyway. Nothing is lost by skipping it: every file a command writes is closed by its writer
    before the command returns, its worker pools are shut down, and the standard streams are flushed
    here. ``main`` itself returns normally (tests and callers in the same process keep running).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)
