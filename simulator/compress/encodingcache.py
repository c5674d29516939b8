"""The on-disk cache of pruned encodings: where it is, how big it may grow, and what is in it.

Each entry is one ``.npz`` file (a layer's index arrays and the key it was built for). Reading
an entry refreshes its modification time, so when the cache outgrows its bound the least
recently used files go first. The folder is ``$SIMULATOR_CACHE_DIR`` (an empty string disables
the cache), else ``$XDG_CACHE_HOME/compressed-inference-simulator``, else
``~/.cache/compressed-inference-simulator``; the bound is ``$SIMULATOR_CACHE_MAX`` (a byte size
such as ``500 MiB`` or ``2 GB``; ``0`` keeps nothing), default 2 GB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..base.errors import ConfigError
from ..base.units import UnitError, parse_bytes

DEFAULT_MAX_BYTES = 2_000_000_000
MAX_ENV = "SIMULATOR_CACHE_MAX"
DIR_ENV = "SIMULATOR_CACHE_DIR"
_SUFFIX = ".npz"


def cache_dir() -> Optional[Path]:
    """The cache folder, or None when caching is switched off."""
    setting = os.environ.get(DIR_ENV)
    if setting == "":
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "compressed-inference-simulator"


def max_bytes() -> int:
    """The size bound from ``$SIMULATOR_CACHE_MAX`` (default 2 GB)."""
    setting = os.environ.get(MAX_ENV, "").strip()
    if not setting:
        return DEFAULT_MAX_BYTES
    try:
        return parse_bytes(setting if not setting.isdigit() else f"{setting} B")
    except UnitError as err:
        raise ConfigError("environment", MAX_ENV, str(err)) from None


def _entries(directory: Path) -> list[tuple[float, int, Path]]:
    """(modification time, size, path) of every entry, oldest first; vanished files skipped."""
    out = []
    for path in directory.glob(f"*{_SUFFIX}"):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((stat.st_mtime, stat.st_size, path))
    return sorted(out)


def load(name: str, key: str) -> Optional[dict[str, np.ndarray]]:
    """The arrays stored under ``name`` if the entry exists and was built for ``key``."""
    directory = cache_dir()
    if directory is None:
        return None
    path = directory / f"{name}{_SUFFIX}"
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            arrays = {k: data[k] for k in data.files if k != "key"}
        os.utime(path)   # recently used: evicted last
        return arrays
    except (OSError, ValueError, KeyError):
        return None      # missing or damaged: the caller rebuilds it


def store(name: str, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write an entry (atomically), then evict least recently used entries beyond the bound.
    Failures are ignored: caching is an optimisation only."""
    directory = cache_dir()
    if directory is None:
        return
    bound = max_bytes()
    path = directory / f"{name}{_SUFFIX}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{name}.{os.getpid()}.tmp{_SUFFIX}"
        # numpy's stub types **kwds beside the allow_pickle flag; the entry's array names never take it
        np.savez(tmp, key=np.array(key), **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError:
        return
    evict(directory, bound)


def evict(directory: Path, bound: int) -> int:
    """Delete the least recently used entries until the folder holds at most ``bound`` bytes;
    returns how many were deleted."""
    entries = _entries(directory)
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in entries:
        if total <= bound:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
    return removed


@dataclass(frozen=True)
class CacheInfo:
    """What the cache holds."""

    directory: Optional[Path]
    entries: int
    size_bytes: int
    max_bytes: int


def info() -> CacheInfo:
    """The cache's folder, entry count, total size and bound."""
    directory = cache_dir()
    entries = _entries(directory) if directory is not None and directory.is_dir() else []
    return CacheInfo(directory, len(entries), sum(size for _, size, _ in entries), max_bytes())


def clear() -> int:
    """Delete every entry; returns how many were deleted."""
    directory = cache_dir()
    if directory is None or not directory.is_dir():
        return 0
    return evict(directory, -1)
