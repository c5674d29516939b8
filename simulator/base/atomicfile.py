"""Writing output files atomically: a failed or interrupted write leaves no half file behind.

Imports only the project's errors, so every stage that writes a file can use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from .errors import OptionError


def write_atomically(path: str | Path, option: str, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it into place.

    Errors (a missing directory, no permission, a full disk) become one :class:`OptionError`
    naming the ``option`` that gave the file (``json``; the command line shows its flag) and the
    file. The file gets the usual permissions (0666 less the umask), not the private ones of a
    temporary file.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OptionError(option, f"{path}: directory {directory} does not exist")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        handle: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise OptionError(option, f"{path}: cannot write ({err.strerror or err})") from None
