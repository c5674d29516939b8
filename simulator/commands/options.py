"""What the commands share: their registration, argparse types whose errors name the flag, and
output-folder checks."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Callable

from ..base.errors import ConfigError


def add_command(subparsers: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int],
                summary: str) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` and return its parser for the flags: ``summary`` is its line in
    ``python -m simulator --help``, the handler's docstring its description (``name --help``), and
    the handler what runs it (its return value is the exit status)."""
    command = subparsers.add_parser(name, help=summary, description=inspect.getdoc(handler))
    command.set_defaults(handler=handler)
    return command


def positive_int(flag: str, least: int = 1):
    """argparse type: an integer of at least ``least`` (1: positive, 0: a count), the error naming ``flag``."""
    kind = "a positive integer" if least == 1 else f"an integer of at least {least}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be {kind}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{flag} must be {kind}, got {text!r}")
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


def check_output_dirs(args: argparse.Namespace, *flags: str) -> None:
    """Refuse, before any work, an output file (``--json``, ``--plot`` ...) whose folder is missing."""
    for flag in flags:
        target = getattr(args, flag, None)
        if target and Path(target).is_dir():
            raise ConfigError("command line", f"--{flag.replace('_', '-')}", f"{target}: is a directory, expected "
                                                                             "a file name")
        if target and not Path(target).resolve().parent.is_dir():
            raise ConfigError("command line", f"--{flag.replace('_', '-')}", f"{target}: its directory does not exist")


def flag_of(option: str) -> str:
    """The command-line flag of a library option name: ``input_shape`` -> ``--input-shape``.

    The one place where the library's option names (:class:`~simulator.base.errors.OptionError`)
    meet the flags; every command's flag is ``--`` and the option name with dashes.
    """
    return "--" + option.replace("_", "-")


class _OldName(argparse.Action):
    """A flag's former name, hidden from ``--help``: it stores into the new flag's place and says
    once on stderr what the flag is called now, so a script that uses it keeps working."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is now called {self.new} (the old name still works)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_timeline_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--timeline FILE``, plus ``--trace FILE``, its name before "trace" came to mean only the
    address traces of ``--dump-trace`` and ``cachesim`` (docs/architecture.md, glossary)."""
    parser.add_argument("--timeline", metavar="FILE", help=help_text)
    parser.add_argument("--trace", dest="timeline", metavar="FILE", action=_OldName, new="--timeline",
                        help=argparse.SUPPRESS)
