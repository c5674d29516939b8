"""User-facing errors.

Anything a user can get wrong (a profile, a workload, a flag) raises a subclass of
:class:`SimulatorError`. The CLI prints its message as one line on stderr and exits with
status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Callable


class SimulatorError(Exception):
    """Base class of errors caused by user input (exit status 2, no traceback)."""


class ConfigError(SimulatorError):
    """A bad input file or option, located by the file and the field path.

    ``str(err)`` reads ``hwprofiles/x.yaml: memory.caches.L2.line: 48 B is not a power of two``.
    """

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = str(source)
        self.field = field
        self.message = message
        where = f"{self.source}: {field}" if field else self.source
        super().__init__(f"{where}: {message}")


class OptionError(ConfigError):
    """A bad option of a run or a study, named as the library names it (``RunOptions.format`` is
    ``format``), never by a command-line flag: the library can be called without one.

    A message refers to other options as ``{name}``. ``str(err)`` spells them as option names
    (``options: format: ... use {format} dense`` reads ``use format dense``); the command line
    spells them as its flags (:meth:`spelled` with ``simulator.commands.options.flag_of``).
    ``value`` is the offending setting when it belongs next to the option (``set L2.size=1``).
    """

    SOURCE = "options"

    def __init__(self, option: str, message: str, value: str = "") -> None:
        self.option = option
        self.template = message
        self.value = value
        where = f"{option} {_spell(value, str)}" if value else option
        super().__init__(self.SOURCE, where, _spell(message, str))

    def spelled(self, name_of: Callable[[str], str], source: str = "command line") -> str:
        """The one-line message with every option written as ``name_of`` spells it (a flag)."""
        option = name_of(self.option)
        where = f"{option} {_spell(self.value, name_of)}" if self.value else option
        return f"{source}: {where}: {_spell(self.template, name_of)}"


_REFERENCE = re.compile(r"\{([a-z][a-z_]*)\}")


def _spell(template: str, name_of: Callable[[str], str]) -> str:
    return _REFERENCE.sub(lambda m: name_of(m.group(1)), template)
