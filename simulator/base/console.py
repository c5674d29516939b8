"""Progress on stderr: one-line messages and bars with a total (tqdm), shown only on a terminal
and never with ``--quiet`` (:func:`set_quiet`), so that logs and pipes get the results alone.

Long work takes a ``progress(message)`` callback and calls it once per step; before a loop it
announces how many steps are coming with :func:`expect`, so that a :class:`Bar` can show a total
(a plain callable ignores the announcement).
"""

from __future__ import annotations

import shutil
import sys
from typing import Any, Callable, Optional

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress at all, even on a terminal."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether ``--quiet`` was given."""
    return _quiet


def showing() -> bool:
    """Whether progress is shown: stderr is a terminal and ``--quiet`` was not given."""
    return not _quiet and sys.stderr.isatty()


def progress(message: str) -> None:
    """Show a one-line progress message on a terminal (nothing when stderr is redirected)."""
    if showing():
        sys.stderr.write(f"\r\033[K{message}")
        sys.stderr.flush()


def end_progress() -> None:
    """Clear a progress line before an error or the results are printed."""
    progress("")


def expect(callback: Callable[[str], None], steps: int) -> None:
    """Tell a progress callback that ``steps`` more calls are coming (a no-op unless it is a :class:`Bar`)."""
    announce = getattr(callback, "expect", None)
    if announce is not None:
        announce(steps)


class Bar:
    """A tqdm bar with a total, advanced by one per call; its message says what is being done.
    Nothing is shown when stderr is not a terminal or with ``--quiet``."""

    def __init__(self, unit: str = "step", total: int = 0) -> None:
        self.bar: Optional[Any] = None
        if showing():
            from tqdm import tqdm

            tqdm.monitor_interval = 0   # no monitor thread: work may fork worker processes
            width = shutil.get_terminal_size((0, 0)).columns   # some ptys report no width
            self.bar = tqdm(total=total or None, file=sys.stderr, unit=unit, dynamic_ncols=width > 0,
                            ncols=None if width > 0 else 80, leave=False)

    def expect(self, steps: int) -> None:
        """Raise the total by ``steps``."""
        if self.bar is not None:
            self.bar.total = (self.bar.total or 0) + steps
            self.bar.refresh()

    def __call__(self, message: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(message[:70], refresh=False)
            self.bar.update(1)

    def write(self, line: str) -> None:
        """A line above the bar (or on stderr when no bar is shown)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
