"""User-facing errors.

Anything a user can get wrong (a profile, a workload, a flag) raises a subclass of
:class:`SimulatorError`. The CLI prints its message as one line on stderr and exits with
status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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
