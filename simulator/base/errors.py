"""User-facing errors.

Anything a user can get wrong (a profile, a workload, a flag) raises a subclass of
:class:`SimulatorError`. The CLI prints its message as one line on stderr and exits with
status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Any, Callable

#: the longest error line printed; a hostile value must never become a megabyte of stderr
MAX_MESSAGE_CHARS = 600
#: how much of a bad value an error quotes
QUOTE_CHARS = 60


class SimulatorError(Exception):
    """Base class of errors caused by user input (exit status 2, no traceback)."""


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, but at most about ``limit`` characters, and built without ever
    formatting the whole of a huge (or alias-shared, exponentially large) value."""
    out: list[str] = []
    budget = [limit]

    def emit(text: str) -> bool:
        out.append(text[: max(budget[0], 0)])
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(item: Any, depth: int) -> bool:
        if isinstance(item, (list, tuple, dict)) and depth < 20:
            opening, closing = {list: ("[", "]"), tuple: ("(", ")"), dict: ("{", "}")}.get(type(item), ("[", "]"))
            if not emit(opening):
                return False
            pairs = item.items() if isinstance(item, dict) else ((None, v) for v in item)
            for index, (key, sub) in enumerate(pairs):
                if index and not emit(", "):
                    return False
                if key is not None and not (walk(key, depth + 1) and emit(": ")):
                    return False
                if not walk(sub, depth + 1):
                    return False
            return emit(closing)
        if isinstance(item, str) and len(item) > limit:
            item = item[: limit + 1]     # the repr of a prefix is enough to fill the budget
            return emit(repr(item)[:-1])
        return emit(repr(item) if not isinstance(item, (list, tuple, dict)) else "...")

    complete = walk(value, 0)
    text = "".join(out)
    return text if complete and budget[0] >= 0 else text + "..."


def clip(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line of at most ``limit`` characters (newlines become spaces)."""
    message = message.replace("\r", " ").replace("\n", " ")
    return message if len(message) <= limit else message[: limit - 3] + "..."


class ConfigError(SimulatorError):
    """A bad input file or option, located by the file and the field path.

    ``str(err)`` reads ``hwprofiles/x.yaml: memory.caches.L2.line: 48 B is not a power of two``.
    The message is clipped to one line of :data:`MAX_MESSAGE_CHARS`.
    """

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = str(source)
        self.field = field
        self.message = message
        where = f"{self.source}: {field}" if field else self.source
        super().__init__(clip(f"{where}: {message}"))


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
