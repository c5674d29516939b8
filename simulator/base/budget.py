"""The memory a piece of work may use, and the check made BEFORE it allocates anything.

A run estimates its memory from shapes, batch and repeats (weights drawn and encoded, the
per-line access traces and the cache model's per-access state); a trace or a checkpoint from its
declared sizes. Work whose estimate exceeds the limit is refused with one line giving the
estimate, rather than swapping the machine to a halt or dying with a MemoryError. The limit is
the memory available now (``MemAvailable`` on Linux, physical memory elsewhere), or less when
``--max-memory`` sets it (:func:`set_max_memory`).
"""

from __future__ import annotations

import os
from typing import Optional

from .errors import ConfigError
from .units import format_bytes

_max_memory_bytes: Optional[int] = None


def set_max_memory(limit_bytes: Optional[int]) -> None:
    """Cap the memory any one piece of work may plan to use (``--max-memory``; None: the machine's)."""
    global _max_memory_bytes
    _max_memory_bytes = limit_bytes


def available_memory_bytes() -> Optional[int]:
    """Memory this process could use now: ``MemAvailable`` (Linux), else physical memory; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_limit() -> tuple[Optional[int], str]:
    """The limit in bytes (None: unknown) and how to name it in a message."""
    available = available_memory_bytes()
    if _max_memory_bytes is not None and (available is None or _max_memory_bytes <= available):
        return _max_memory_bytes, f"--max-memory {format_bytes(_max_memory_bytes)}"
    if available is None:
        return None, ""
    return available, f"the {format_bytes(available)} of memory available"


def check_memory(need_bytes: float, what: str, source: str, field: str, hint: str = "") -> None:
    """Refuse (:class:`ConfigError` naming ``source`` and ``field``) work whose estimate
    ``need_bytes`` exceeds the memory limit; ``what`` says what needs it."""
    limit, name = memory_limit()
    if limit is not None and need_bytes > limit:
        tail = f"; {hint}" if hint else ""
        raise ConfigError(source, field, f"{what} needs about {readable_bytes(need_bytes)}, more than {name}{tail}")


def readable_bytes(n_bytes: float) -> str:
    """``format_bytes``, and plain exponent notation past a PiB (a hostile shape can ask for 10^30)."""
    return format_bytes(n_bytes) if n_bytes < 2**50 else f"{n_bytes:.3g} bytes"
