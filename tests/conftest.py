"""Shared fixtures: the repository root, a YAML writer for tmp_path, and a tiny workload."""

from __future__ import annotations

import copy
import signal
from pathlib import Path

import pytest
import yaml

_TINY_WORKLOAD = {
    "schema_version": 1,
    "name": "Tiny",
    "source": "tests",
    "input_shape": [3, 16, 16],
    "layers": [
        # 3x16x16 -> conv k3 p1 -> 8x16x16 -> maxpool k2 -> 8x8x8 = 512 -> 64 -> 10
        {"name": "conv1", "kind": "conv", "in_channels": 3, "out_channels": 8, "kernel": 3, "padding": 1,
         "density": 0.5},
        {"name": "pool1", "kind": "maxpool", "kernel": 2},
        {"name": "fc1", "kind": "fc", "in_features": 8 * 8 * 8, "out_features": 64, "density": 0.1},
        {"name": "fc2", "kind": "fc", "in_features": 64, "out_features": 10, "density": 0.25, "relu": False},
    ],
}


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An encoding cache of the test's own (``pytestmark = pytest.mark.usefixtures("isolated_cache")``)."""
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding simulator/, hwprofiles/, workloads/)."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def write_yaml(tmp_path):
    """``write_yaml(name, data)`` dumps ``data`` to ``tmp_path/name`` and returns the path."""

    def write(name: str, data) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    return write


@pytest.fixture
def load_error_of(write_yaml):
    """``load_error_of(name, loader)(data)`` writes ``data`` to ``name``, loads it with ``loader`` and
    returns the ConfigError that raises, after checking it names the file in its one line."""
    from simulator.base.errors import ConfigError

    def factory(name: str, loader):
        def load(data) -> ConfigError:
            path = write_yaml(name, data)
            with pytest.raises(ConfigError) as info:
                loader(path)
            err = info.value
            assert err.source == str(path)
            assert str(err) == f"{path}: {err.field}: {err.message}"
            return err

        return load

    return factory


@pytest.fixture
def tiny_workload_data():
    """A fresh copy of the tiny four-layer workload mapping (safe to edit)."""
    return copy.deepcopy(_TINY_WORKLOAD)


@pytest.fixture
def tiny_workload_path(write_yaml, tiny_workload_data) -> Path:
    """The tiny workload written to tmp_path."""
    return write_yaml("tiny.yaml", tiny_workload_data)


@pytest.fixture(scope="session")
def tiny_workload_file(tmp_path_factory) -> Path:
    """The tiny workload written once per session (for module-scoped fixtures); do not edit it."""
    path = tmp_path_factory.mktemp("tiny-workload") / "tiny.yaml"
    path.write_text(yaml.safe_dump(_TINY_WORKLOAD, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def workload_from_text(tmp_path, monkeypatch):
    """``workload_from_text(layers, input_shape)`` writes a workload whose ``layers:`` block is the
    given YAML text, loads it, and keeps its pruned encodings under tmp_path."""
    from simulator.model.workload import load_workload

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))

    def make(layers: str, input_shape) -> object:
        path = tmp_path / "workload.yaml"
        path.write_text(f"schema_version: 1\nname: test\nsource: tests\ninput_shape: {list(input_shape)}\n"
                        f"layers:\n{layers}")
        return load_workload(path)

    return make


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt here, and a child this test starts takes it by default: a
    shell that starts the suite in the background (``make test &``) hands it SIGINT ignored, which
    Python keeps and every child inherits, so the Ctrl-C tests would test nothing but that."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
