"""The one-line progress message long work shows on a terminal."""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    """Show a one-line progress message on a terminal (nothing when stderr is redirected)."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{message}")
        sys.stderr.flush()
