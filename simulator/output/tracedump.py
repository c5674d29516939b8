"""``run --dump-trace DIR``: the address traces a run sent through the caches, as files that
``cachesim`` reads (docs/cachesim.md).

Each file is a NumPy ``(N, 4)`` int64 array, columns address, is_write, core and hints (the cache
model's hint bits: which accesses belong to streams and which stores overwrite whole sectors, so
a GPU profile's stream bypass and no-fetch stores act on the file as in the run), one row per
cache-line access in issue order: ``DIR/<variant>.npy`` holds one whole inference (the layers
one after the other, as the pipeline runs them through one hierarchy), and
``DIR/<variant>-<NN>-<layer>.npy`` each layer alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..base.errors import ConfigError
from ..memory.traffic import LayerTraffic


def check_trace_dir(folder: str | Path, flag: str = "--dump-trace") -> Path:
    """The folder to write traces into, created if missing; refused before any work if it
    cannot be (its parent missing, or a file in the way)."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ConfigError("command line", flag, f"{folder}: exists and is not a directory")
    if not path.exists():
        if not path.resolve().parent.is_dir():
            raise ConfigError("command line", flag, f"{folder}: its parent directory does not exist")
        try:
            path.mkdir()
        except OSError as err:
            raise ConfigError("command line", flag, f"{folder}: cannot create it ({err.strerror or err})") from None
    return path


def _columns(traffic: Sequence[LayerTraffic]) -> np.ndarray:
    if not traffic:
        return np.zeros((0, 4), np.int64)
    return np.stack([np.concatenate([t.addresses for t in traffic]).astype(np.int64),
                     np.concatenate([t.is_write for t in traffic]).astype(np.int64),
                     np.concatenate([t.core for t in traffic]).astype(np.int64),
                     np.concatenate([t.hints for t in traffic]).astype(np.int64)], axis=1)


def _safe(name: str) -> str:
    """A layer name as a file name (``inception_3a/1x1`` -> ``inception_3a_1x1``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_traces(folder: Path, variant: str, traffic: Sequence[LayerTraffic]) -> list[Path]:
    """Write one variant's whole-inference trace and its per-layer traces; returns the paths."""
    written = []
    whole = folder / f"{variant}.npy"
    np.save(whole, _columns(traffic), allow_pickle=False)
    written.append(whole)
    width = len(str(len(traffic)))
    for index, t in enumerate(traffic):
        if t.accesses == 0:
            continue
        path = folder / f"{variant}-{index:0{width}d}-{_safe(t.layer.name)}.npy"
        np.save(path, _columns([t]), allow_pickle=False)
        written.append(path)
    return written
