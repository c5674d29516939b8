"""Hardware profiles: the shipped ones load with their headline figures; every bad field is
one ConfigError line ``<file>: <field path>: <message>``."""

from __future__ import annotations

import pydantic
import pytest
import yaml

from simulator.base.errors import ConfigError, SimulatorError
from simulator.hardware.profile import DeviceKind, KernelKind, load_profile

KIB = 1024
GIB = 1024**3


@pytest.fixture
def tegra(repo_root):
    return load_profile(repo_root / "hwprofiles" / "tegra.yaml")


@pytest.fixture
def titan(repo_root):
    return load_profile(repo_root / "hwprofiles" / "titan-x.yaml")


@pytest.fixture
def i7(repo_root):
    return load_profile(repo_root / "hwprofiles" / "i7-5930k.yaml")


@pytest.fixture
def tegra_data(repo_root):
    """The Tegra profile as a plain mapping, to break one field of."""
    return yaml.safe_load((repo_root / "hwprofiles" / "tegra.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def load_error(load_error_of):
    """``load_error(data)`` writes ``data`` and returns the ConfigError loading it raises."""
    return load_error_of("profile.yaml", load_profile)


# --- shipped profiles ------------------------------------------------------------------------

def test_tegra_headline_figures(tegra):
    assert tegra.kind is DeviceKind.GPU
    assert tegra.compute.cores == 1
    assert tegra.peak_flops_per_s == pytest.approx(327e9)
    assert tegra.compute.clock_hz == pytest.approx(852e6)
    assert tegra.dram.peak_bandwidth_bytes_per_s == pytest.approx(14.9e9)
    assert tegra.dram.capacity_bytes == 2 * GIB
    assert tegra.link is None


def test_tegra_caches(tegra):
    assert [c.name for c in tegra.caches] == ["L1", "L2"]
    l2 = tegra.caches[1]
    assert l2.size_bytes == 128 * KIB
    assert l2.line_bytes == 128
    assert l2.ways == 16
    assert l2.shared is True
    assert l2.latency_s == pytest.approx(250e-9)


def test_titan_x_has_a_link_and_12_gib(titan):
    assert titan.link is not None
    assert titan.link.bandwidth_bytes_per_s == pytest.approx(15.75e9)
    assert titan.link.copy_engines == 2
    assert titan.dram.capacity_bytes == 12 * GIB
    assert titan.compute.cores == 24


def test_i7_has_three_cache_levels(i7):
    assert i7.kind is DeviceKind.CPU
    assert [c.name for c in i7.caches] == ["L1", "L2", "L3"]
    assert [c.shared for c in i7.caches] == [False, False, True]
    assert i7.caches[2].size_bytes == 15 * 2**20


def test_ridge_point_is_peak_flops_over_peak_bandwidth(tegra, titan):
    assert tegra.ridge_flop_per_byte == pytest.approx(327e9 / 14.9e9)
    assert titan.ridge_flop_per_byte == pytest.approx(6.6e12 / 336.5e9)


def test_issue_costs_of_each_kernel_kind(tegra):
    kernels = tegra.compute.kernels
    assert kernels.dense(KernelKind.GEMM) is kernels.gemm
    assert kernels.sparse(KernelKind.SPMV) is kernels.spmv
    dense_kinds = (KernelKind.GEMV, KernelKind.GEMM, KernelKind.CONV)
    assert all(0 < kernels.dense(k).library_efficiency <= 1 for k in dense_kinds)
    assert all(kernels.sparse(k).cycles_per_nonzero > 0 for k in (KernelKind.SPMV, KernelKind.SPMM, KernelKind.SPCONV))


def test_loader_records_the_path(repo_root):
    path = repo_root / "hwprofiles" / "tegra.yaml"
    assert load_profile(path).path == str(path)


def test_profile_is_immutable(tegra):
    with pytest.raises(pydantic.ValidationError):
        tegra.name = "other"


def test_unchanged_copy_loads(tegra_data, write_yaml):
    assert load_profile(write_yaml("profile.yaml", tegra_data)).name == "NVIDIA Tegra K1 (Jetson TK1)"


def test_config_error_is_a_simulator_error():
    assert issubclass(ConfigError, SimulatorError)


# --- keys ---------------------------------------------------------------------------------------

def test_unknown_top_level_key_lists_allowed_keys(tegra_data, load_error):
    tegra_data["colour"] = "green"
    err = load_error(tegra_data)
    assert err.field == "colour"
    assert err.message.startswith("unknown key (allowed: ")
    for key in ("schema_version", "name", "kind", "compute", "memory", "link", "sources"):
        assert key in err.message


def test_allowed_keys_do_not_offer_path(tegra_data, load_error):
    tegra_data["colour"] = "green"
    allowed = load_error(tegra_data).message.split("allowed: ", 1)[1].rstrip(")").split(", ")
    assert "path" not in allowed


def test_unknown_key_in_a_cache_level(tegra_data, load_error):
    tegra_data["memory"]["caches"][1]["foo"] = 1
    err = load_error(tegra_data)
    assert err.field == "memory.caches.L2.foo"
    assert "allowed: name, size, line, ways, shared, latency, bandwidth" in err.message


def test_missing_field(tegra_data, load_error):
    del tegra_data["compute"]["clock"]
    err = load_error(tegra_data)
    assert (err.field, err.message) == ("compute.clock", "missing required field")


def test_path_key_in_the_file(tegra_data, load_error):
    tegra_data["path"] = "elsewhere.yaml"
    err = load_error(tegra_data)
    assert err.field == "path"
    assert "set by the loader" in err.message


# --- units and values --------------------------------------------------------------------------

@pytest.mark.parametrize("size", ["16 KiB/s", "16", "sixteen KiB", 16])
def test_malformed_unit(tegra_data, load_error, size):
    tegra_data["memory"]["caches"][0]["size"] = size
    err = load_error(tegra_data)
    assert err.field == "memory.caches.L1.size"
    assert repr(size) in err.message


def test_wrong_kind_of_unit(tegra_data, load_error):
    tegra_data["memory"]["dram"]["peak_bandwidth"] = "14.9 GHz"
    err = load_error(tegra_data)
    assert err.field == "memory.dram.peak_bandwidth"
    assert "'14.9 GHz'" in err.message


@pytest.mark.parametrize("size", ["0 B", "-16 KiB"])
def test_size_must_be_positive(tegra_data, load_error, size):
    tegra_data["memory"]["caches"][0]["size"] = size
    err = load_error(tegra_data)
    assert err.field == "memory.caches.L1.size"
    assert "greater than 0" in err.message


@pytest.mark.parametrize("section, key, value", [
    ("dram", "peak_bandwidth", "0 GB/s"),
    ("dram", "peak_bandwidth", "-14.9 GB/s"),
    ("dram", "capacity", "0 GiB"),
])
def test_dram_rates_and_capacity_must_be_positive(tegra_data, load_error, section, key, value):
    tegra_data["memory"][section][key] = value
    err = load_error(tegra_data)
    assert err.field == f"memory.{section}.{key}"
    assert "greater than 0" in err.message


def test_cache_bandwidth_must_be_positive(tegra_data, load_error):
    tegra_data["memory"]["caches"][1]["bandwidth"] = "-5 GB/s"
    assert load_error(tegra_data).field == "memory.caches.L2.bandwidth"


def test_negative_latency(tegra_data, load_error):
    tegra_data["memory"]["dram"]["latency"] = "-1 ns"
    err = load_error(tegra_data)
    assert err.field == "memory.dram.latency"
    assert "greater than or equal to 0" in err.message


def test_zero_cores(tegra_data, load_error):
    tegra_data["compute"]["cores"] = 0
    assert load_error(tegra_data).field == "compute.cores"


@pytest.mark.parametrize("value", [1.5, 0, -0.1])
def test_library_efficiency_must_be_in_zero_one(tegra_data, load_error, value):
    tegra_data["compute"]["kernels"]["gemm"]["library_efficiency"] = value
    err = load_error(tegra_data)
    assert err.field == "compute.kernels.gemm.library_efficiency"
    assert repr(value) in err.message


def test_library_efficiency_of_one_is_allowed(tegra_data, write_yaml):
    tegra_data["compute"]["kernels"]["gemm"]["library_efficiency"] = 1
    assert load_profile(write_yaml("profile.yaml", tegra_data)).compute.kernels.gemm.library_efficiency == 1.0


@pytest.mark.parametrize("value", [0, -1, 1e9])
def test_cycles_per_nonzero_out_of_range(tegra_data, load_error, value):
    tegra_data["compute"]["kernels"]["spmv"]["cycles_per_nonzero"] = value
    assert load_error(tegra_data).field == "compute.kernels.spmv.cycles_per_nonzero"


def test_the_old_efficiency_block_is_refused_by_name(tegra_data, load_error):
    tegra_data["compute"]["efficiency"] = {"gemv": 0.5}
    err = load_error(tegra_data)
    assert err.field == "compute.efficiency" and "compute.kernels" in err.message


@pytest.mark.parametrize("library", [None, "torch"])
def test_serial_loads_is_refused_by_name_for_load_overlap(tegra_data, load_error, library):
    """A profile an older ``calibrate`` wrote says ``serial_loads: true``: one line naming it and
    what replaced it, for the profile's own kernels or a library's."""
    kernels = tegra_data["compute"]["kernels"]
    spmv = {**kernels["spmv"], "serial_loads": True}
    if library is None:
        kernels["spmv"] = spmv
    else:
        kernels["libraries"] = {library: {"spmv": spmv, "spmm": kernels["spmm"]}}
    err = load_error(tegra_data)
    at = "compute.kernels" if library is None else f"compute.kernels.libraries.{library}"
    assert err.field == f"{at}.spmv.serial_loads" and "load_overlap" in err.message


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_load_overlap_is_a_share(tegra_data, load_error, value):
    tegra_data["compute"]["kernels"]["spmv"]["load_overlap"] = value
    assert load_error(tegra_data).field == "compute.kernels.spmv.load_overlap"


def test_a_cpu_or_gpu_profile_needs_kernel_costs(tegra_data, load_error):
    del tegra_data["compute"]["kernels"]
    assert load_error(tegra_data).field == "compute.kernels"


def test_unknown_sparse_convolution_algorithm(tegra_data, load_error):
    tegra_data["compute"]["kernels"]["spconv"]["algorithm"] = "winograd"
    assert load_error(tegra_data).field == "compute.kernels.spconv.algorithm"


def test_unknown_device_kind(tegra_data, load_error):
    tegra_data["kind"] = "tpu"
    assert load_error(tegra_data).field == "kind"



def test_lanes_per_row_only_for_sparse_kernels(tegra_data, load_error):
    tegra_data["compute"]["lanes_per_row"] = {"gemv": 32}   # a dense kernel has no rows of its own length
    assert load_error(tegra_data).field == "compute.lanes_per_row.gemv"
    tegra_data["compute"]["lanes_per_row"] = {"spmv": 0}
    assert load_error(tegra_data).field == "compute.lanes_per_row.spmv"

# --- cache geometry and hierarchy ----------------------------------------------------------------

def test_line_must_be_a_power_of_two(tegra_data, load_error):
    level = tegra_data["memory"]["caches"][1]
    level["line"] = "48 B"
    level["size"] = "96 KiB"    # 98304 B = 128 sets of 16 ways x 48 B: only the power-of-two rule fails
    err = load_error(tegra_data)
    assert str(err).endswith("memory.caches.L2.line: 48 B is not a power of two")


@pytest.mark.parametrize("path, value, field, words", [
    pytest.param(("memory", "caches", 1, "size"), "129 KiB", "memory.caches.L2.size", "whole number of sets",
                 id="size-not-whole-sets"),     # not a multiple of 16 ways x 128 B
    pytest.param(("memory", "caches", 1, "line"), "64 B", "memory.caches.L2.line", "smaller than L1's 128 B",
                 id="line-shrinks-towards-memory"),
    pytest.param(("memory", "caches", 1, "size"), "8 KiB", "memory.caches.L2.size", "smaller than L1",
                 id="level-smaller-than-the-level-above"),
    pytest.param(("memory", "dram", "capacity"), "64 KiB", "memory.caches.L2.size",
                 "is larger than memory.dram.capacity", id="last-level-larger-than-dram"),
    pytest.param(("memory", "caches", 1, "name"), "L1", "memory.caches.L1.name", "", id="duplicate-level-name"),
    pytest.param(("memory", "caches", 1, "write_allocate"), "write-around", "memory.caches.L2.write_allocate",
                 "no-fetch", id="unknown-write-allocate-policy"),   # the message lists fetch and no-fetch
    pytest.param(("memory", "caches", 0, "caches_streams"), "sometimes", "memory.caches.L1.caches_streams", "",
                 id="caches-streams-not-a-bool"),
    pytest.param(("memory", "caches", 1, "caches_streams"), False, "memory.caches.L2.caches_streams", "last level",
                 id="last-level-must-cache-streams"),
    pytest.param(("memory", "dram", "sustained_bandwidth"), "20 GB/s", "memory.dram.sustained_bandwidth",
                 "exceeds memory.dram.peak_bandwidth", id="sustained-bandwidth-above-peak"),
])
def test_a_bad_cache_or_dram_field(tegra_data, load_error, path, value, field, words):
    *parents, key = path
    target = tegra_data
    for step in parents:
        target = target[step]
    target[key] = value
    err = load_error(tegra_data)
    assert err.field == field
    assert words in err.message


def test_private_level_sizes_count_every_core(repo_root, load_error):
    # i7: 6 private 256 KiB L2s = 1.5 MiB; a 1 MiB shared L3 is smaller than that in all.
    data = yaml.safe_load((repo_root / "hwprofiles" / "i7-5930k.yaml").read_text(encoding="utf-8"))
    data["memory"]["caches"][2]["size"] = "1 MiB"
    data["memory"]["caches"][2]["ways"] = 16
    err = load_error(data)
    assert err.field == "memory.caches.L3.size"
    assert "smaller than L2" in err.message


def test_private_level_below_shared_level(tegra_data, load_error):
    tegra_data["memory"]["caches"][0]["shared"] = True
    tegra_data["memory"]["caches"][1]["shared"] = False
    assert load_error(tegra_data).field == "memory.caches.L2.shared"


def test_gpu_levels_allocate_stores_without_fetching_and_kepler_l1_keeps_only_gathers(tegra, i7):
    assert [(c.write_allocate.value, c.caches_streams) for c in tegra.caches] == [("no-fetch", False),
                                                                                 ("no-fetch", True)]
    assert all(c.write_allocate.value == "fetch" and c.caches_streams for c in i7.caches)


# --- sources and version -------------------------------------------------------------------------

def test_source_citing_a_missing_field(tegra_data, load_error):
    tegra_data["sources"]["compute.turbo"] = "a datasheet"
    err = load_error(tegra_data)
    assert err.field == "sources.compute.turbo"
    assert "does not exist" in err.message


def test_source_citing_the_link_of_a_profile_without_one(tegra_data, load_error):
    tegra_data["sources"]["link.bandwidth"] = "a datasheet"
    assert load_error(tegra_data).field == "sources.link.bandwidth"


def test_unsupported_schema_version(tegra_data, load_error):
    tegra_data["schema_version"] = 2
    err = load_error(tegra_data)
    assert err.field == "schema_version"
    assert "2 is not supported" in err.message


def test_missing_schema_version(tegra_data, load_error):
    del tegra_data["schema_version"]
    assert load_error(tegra_data).field == "schema_version"


# --- the file itself ------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_profile(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, expected a YAML file"


@pytest.mark.parametrize("text, field, message", [
    pytest.param("schema_version: 1\nname: x\nkind: [gpu\n  compute: {}\n", "line 4", "not valid YAML",
                 id="invalid-yaml-names-the-line"),
    pytest.param("schema_version: 1\nname: x\n  kind: gpu\n", "line 3", "not valid YAML",
                 id="invalid-yaml-line-number"),
    pytest.param("- 1\n- 2\n", "", "expected a YAML mapping at the top, got list", id="top-level-list"),
    pytest.param("just words\n", "", "expected a YAML mapping at the top, got str", id="top-level-str"),
    # a tag that would run code on an unsafe load is a YAML error, not a call
    pytest.param("schema_version: !!python/object/apply:os.getcwd []\n", "line 1", "not valid YAML",
                 id="yaml-tags-are-not-executed"),
])
def test_a_file_that_is_no_yaml_mapping(tmp_path, text, field, message):
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    err = info.value
    assert err.field == field
    assert err.message.startswith(message)
    assert str(err).startswith(f"{path}: ")
