"""The on-disk encoding cache: entries round-trip, the size bound evicts the least recently used
file first, a bad bound is one line, and `simulator cache info|clear` report and empty it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from simulator.base.errors import ConfigError
from simulator.cli import main
from simulator.compress import encodingcache


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(path))
    monkeypatch.delenv("SIMULATOR_CACHE_MAX", raising=False)
    return path


def _arrays(n: int) -> dict[str, np.ndarray]:
    return {"indices": np.arange(n, dtype=np.int32)}


def test_an_entry_round_trips_and_a_different_key_misses(folder):
    encodingcache.store("a", "key-a", _arrays(10))
    assert np.array_equal(encodingcache.load("a", "key-a")["indices"], np.arange(10))
    assert encodingcache.load("a", "other key") is None
    assert encodingcache.load("b", "key-b") is None


def test_the_bound_evicts_the_least_recently_used_entry_first(folder, monkeypatch):
    for age, name in enumerate(["old1", "used", "new1"]):
        encodingcache.store(name, name, _arrays(1000))
        os.utime(folder / f"{name}.npz", (1000 + age, 1000 + age))
    assert encodingcache.load("old1", "old1") is not None     # reading refreshes: "used" is now the oldest
    entry = (folder / "new1.npz").stat().st_size
    monkeypatch.setenv("SIMULATOR_CACHE_MAX", f"{3 * entry + entry // 2} B")
    encodingcache.store("new2", "new2", _arrays(1000))
    assert sorted(p.stem for p in folder.glob("*.npz")) == ["new1", "new2", "old1"]


def test_a_zero_bound_keeps_nothing_and_the_empty_dir_setting_disables(folder, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_MAX", "0")
    encodingcache.store("a", "a", _arrays(10))
    assert list(folder.glob("*.npz")) == []
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    assert encodingcache.cache_dir() is None and encodingcache.info().directory is None


def test_a_bad_bound_names_the_variable(folder, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_MAX", "lots")
    with pytest.raises(ConfigError, match="SIMULATOR_CACHE_MAX"):
        encodingcache.max_bytes()
    assert main(["cache", "info"]) == 2


def test_cache_info_and_clear_commands(folder, monkeypatch, capsys):
    monkeypatch.setenv("SIMULATOR_CACHE_MAX", "500 MiB")
    encodingcache.store("a", "a", _arrays(10))
    encodingcache.store("b", "b", _arrays(10))
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(folder) in out and "entries: 2" in out and "500.0 MiB" in out
    assert main(["cache", "clear"]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert encodingcache.info().entries == 0


def test_entries_read_back_exactly_whatever_their_layout(folder):
    """The one-read-per-array reader gives what np.load gives (shapes, types, order, writable); an entry
    with compressed members is read by numpy's reader; a truncated or foreign file is a miss."""
    arrays = {"pointers": np.arange(7, dtype=np.int64), "meta": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16).T,
              "empty": np.zeros(0, dtype=np.int32), "mask": np.array([True, False, True])}
    encodingcache.store("a", "key-a", arrays)
    back = encodingcache.load("a", "key-a")
    assert back.keys() == arrays.keys()
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        assert np.array_equal(back[name], array) and back[name].flags.writeable
    np.savez_compressed(folder / "z.npz", key=np.array("key-z"), indices=np.arange(5))
    assert np.array_equal(encodingcache.load("z", "key-z")["indices"], np.arange(5))
    whole = (folder / "a.npz").read_bytes()
    (folder / "a.npz").write_bytes(whole[: len(whole) // 2])
    assert encodingcache.load("a", "key-a") is None
    (folder / "b.npz").write_bytes(b"not a zip file")
    assert encodingcache.load("b", "key-b") is None


def test_an_entry_whose_header_claims_more_than_it_holds_is_a_miss_before_any_allocation(folder):
    """A damaged header claiming 10**12 elements is refused from the member's size, not by
    allocating 8 TB (a damaged entry is a miss; numpy's reader, which would allocate first, is not tried)."""
    encodingcache.store("c", "key-c", {"values": np.arange(4, dtype=np.int64)})
    path = folder / "c.npz"
    whole = path.read_bytes()
    at = whole.index(b"'shape': (4,)")
    header = whole[at:whole.index(b"\n", at)]
    claimed = header.replace(b"(4,), }", b"(1000000000000,), }")
    path.write_bytes(whole[:at] + claimed[:len(header)] + whole[at + len(header):])   # the header's padding shrinks
    assert encodingcache.load("c", "key-c") is None
