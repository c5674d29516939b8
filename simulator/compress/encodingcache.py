"""The on-disk cache of pruned encodings: where it is, how big it may grow, and what is in it.

Each entry is one ``.npz`` file (a layer's index arrays and the key it was built for). Reading
an entry refreshes its modification time, so when the cache outgrows its bound the least
recently used files go first. The folder is ``$SIMULATOR_CACHE_DIR`` (an empty string disables
the cache), else ``$XDG_CACHE_HOME/compressed-inference-simulator``, else
``~/.cache/compressed-inference-simulator``; the bound is ``$SIMULATOR_CACHE_MAX`` (a byte size
such as ``500 MiB`` or ``2 GB``; ``0`` keeps nothing), default 2 GB.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

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
        try:
            arrays = _read_stored(path)
        except OtherLayout:     # not laid out as store writes it: numpy's own reader
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        if str(arrays.pop("key")) != key:
            return None
        os.utime(path)   # recently used: evicted last
        return arrays
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None      # missing or damaged: the caller rebuilds it


class OtherLayout(ValueError):
    """An ``.npz`` that is not laid out as :func:`store` writes it (numpy's reader reads it)."""


#: Bytes of a zip member's local header before its file name and extra field.
_LOCAL_HEADER_BYTES = 30


def _read_stored(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` whose members are stored uncompressed (as ``np.savez`` writes
    them), each read by one call straight into its buffer; :class:`OtherLayout` for any other
    layout, ValueError for a damaged entry.

    Speed trick, kept and labelled: ``np.load`` reads a zip member through ``zipfile`` in 256 KiB
    chunks, each a Python call that gives up the GIL and takes it back. While the other variant's
    thread holds the GIL (numba loading its compiler, a trace being built), a warm VGG-16 ``run``
    waited 0.1-0.2 s for the 40 MB of its CSR encodings (0.04 s of CPU; this reader takes 0.01 s).
    """
    arrays = {}
    with open(path, "rb") as file:
        with zipfile.ZipFile(file) as archive:
            members = archive.infolist()
        for member in members:
            if member.compress_type != zipfile.ZIP_STORED or not member.filename.endswith(".npy"):
                raise OtherLayout(f"{member.filename}: not an uncompressed .npy")
            file.seek(member.header_offset)
            header = file.read(_LOCAL_HEADER_BYTES)
            if len(header) != _LOCAL_HEADER_BYTES or header[:4] != b"PK\x03\x04":
                raise ValueError(f"{member.filename}: no local header")
            name_bytes, extra_bytes = struct.unpack("<HH", header[26:30])
            file.seek(member.header_offset + _LOCAL_HEADER_BYTES + name_bytes + extra_bytes)
            arrays[member.filename[: -len(".npy")]] = _read_npy(file, member.file_size)
    return arrays


def _read_npy(file: BinaryIO, member_bytes: int) -> np.ndarray:
    """The ``.npy`` array at the file's position (format version 1 or 2, no Python objects), whose
    zip member holds ``member_bytes``: a header claiming more data than that is refused before
    anything is allocated."""
    start = file.tell()
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
    else:
        raise ValueError(f".npy format version {version}")
    if dtype.hasobject:
        raise ValueError("an array of Python objects")
    count = math.prod(shape)
    if count * dtype.itemsize > member_bytes - (file.tell() - start):
        raise ValueError("the header claims more data than the member holds")
    array = np.fromfile(file, dtype=dtype, count=count)
    if array.size != count:
        raise ValueError("truncated")
    return array.reshape(shape, order="F" if fortran else "C")


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
