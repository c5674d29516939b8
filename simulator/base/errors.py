"""User-facing errors.

Anything a user can get wrong (a profile, a workload, a flag) raises a subclass of
:class:`SimulatorError`. The CLI prints its message as one line on stderr and exits with
status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

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
            opening, closing = {list: "[]", tuple: "()", dict: "{}"}.get(type(item), "[]")
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

    ``str(err)`` reads ``hwprofiles/x.yaml: memory.caches[1].line: 48 B is not a power of two``.
    The message is clipped to one line of :data:`MAX_MESSAGE_CHARS`.
    """

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = str(source)
        self.field = field
        self.message = message
        where = f"{self.source}: {field}" if field else self.source
        super().__init__(clip(f"{where}: {message}"))
