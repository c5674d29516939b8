"""Profile field paths have one spelling: errors name cache levels as `sweep --set` and
`sources` do (memory.caches.L2.size), and the paths come from the models, not a list."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from simulator.base.errors import ConfigError
from simulator.base.yamlio import read_yaml_mapping
from simulator.hardware.fieldpaths import assign, field_paths, leaf_paths, navigate, spell
from simulator.hardware.profile import load_profile, profile_from_mapping

TEGRA = Path(__file__).resolve().parent.parent / "hwprofiles" / "tegra.yaml"


@pytest.fixture
def tegra():
    return load_profile(TEGRA)


@pytest.fixture
def tegra_data():
    return read_yaml_mapping(TEGRA)


def test_spell_names_levels_and_keeps_the_position_of_a_nameless_one():
    data = {"memory": {"caches": [{"name": "L1"}, {"size": "1 KiB"}]}}
    assert spell(("memory", "caches", 0, "line"), data) == "memory.caches.L1.line"
    assert spell(("memory", "caches", 1, "name"), data) == "memory.caches[1].name"
    assert spell(("memory", "caches", 5), data) == "memory.caches[5]"


def test_a_validation_error_uses_the_spelling_sweep_accepts(tegra, tegra_data):
    tegra_data["memory"]["caches"][1]["bandwidth"] = "fast"
    with pytest.raises(ConfigError) as err:
        profile_from_mapping(tegra_data, "t.yaml")
    assert err.value.field == "memory.caches.L2.bandwidth"
    assert err.value.field in leaf_paths(tegra)


def test_paths_follow_the_models(tegra):
    paths = field_paths(tegra)
    assert {"memory.caches.L1.size", "memory.caches.L2.replacement", "compute.clock", "link.bandwidth",
            "compute.rows_per_task.spmv", "energy.flop"} <= paths
    assert "compute.rows_per_task.conv" not in paths          # not a field of RowsPerTask
    assert "memory.caches.L1.name" not in leaf_paths(tegra)  # a level's name is its address
    assert not any(p.startswith(("sources", "fitted", "path")) for p in paths)


def test_navigate_and_assign_round_trip(tegra, tegra_data):
    assert navigate(tegra, "memory.caches.L2.size") == ("size_bytes", 128 * 1024)
    data = copy.deepcopy(tegra_data)
    assign(data, "memory.caches.L2.size", "256 KiB")
    assert profile_from_mapping(data, "t.yaml").caches[1].size_bytes == 256 * 1024


def test_a_mapping_of_sections_is_addressed_by_its_keys(tegra_data):
    """``compute.kernels.libraries`` maps a CSR library's name to its costs: its paths run through
    the name, sources may cite them, ``sweep --set`` can vary them, and an error names them."""
    data = copy.deepcopy(tegra_data)
    data["compute"]["kernels"]["libraries"] = {"scipy": {"spmv": {"cycles_per_nonzero": 3.0},
                                                         "spmm": {"cycles_per_nonzero": 2.0}, "threads": 1}}
    data["sources"]["compute.kernels.libraries.scipy.threads"] = "one thread"
    profile = profile_from_mapping(data, "t.yaml")
    assert {"compute.kernels.libraries.scipy", "compute.kernels.libraries.scipy.spmv.cycles_per_nonzero"} \
        <= set(leaf_paths(profile)) | field_paths(profile)
    assert "compute.kernels.libraries.scipy" not in leaf_paths(profile)
    assert navigate(profile, "compute.kernels.libraries.scipy.spmv.cycles_per_nonzero") == ("cycles_per_nonzero", 3.0)
    assign(data, "compute.kernels.libraries.scipy.spmv.cycles_per_nonzero", 6.0)
    assert profile_from_mapping(data, "t.yaml").compute.kernels.libraries["scipy"].spmv.cycles_per_nonzero == 6.0
    data["compute"]["kernels"]["libraries"]["scipy"]["spmv"]["cycles_per_nonzero"] = -1
    with pytest.raises(ConfigError) as err:
        profile_from_mapping(data, "t.yaml")
    assert err.value.field == "compute.kernels.libraries.scipy.spmv.cycles_per_nonzero"
