"""The EIE-style sparse engine: padding entries, the PE-array cycle model, the profile."""

import numpy as np
import pytest
import yaml

from simulator.base.errors import ConfigError, OptionError
from simulator.compress.compression import StorageFormat, encode_mask
from simulator.engine.accelerator import entries_per_pe_column, pe_array_cycles
from simulator.hardware.profile import SparseEngine, load_profile, profile_from_mapping
from simulator.model.workload import load_workload
from simulator.pipeline import RunOptions, run


def engine(pes=1, index_bits=4):
    return SparseEngine(pes=pes, fifo_depth=8, index_bits=index_bits, codebook_bits=4, pointer_bits=16,
                        weights_scratchpad="spmat", pointers_scratchpad="ptr")


def test_padding_follows_the_papers_example():
    # EIE Fig. 2/3: column [1, 2, 0 x 18, 3, ...] stores v=[1,2,0,3], z=[0,0,15,2] with 4-bit indices
    mask = np.zeros((22, 1), bool)
    mask[[0, 1, 20], 0] = True
    entries, padding = entries_per_pe_column(encode_mask("w", mask, StorageFormat.CSC, 4), engine())
    assert padding == 1 and entries.tolist() == [[4]]


def test_rows_interleave_over_pes_and_gaps_are_local():
    mask = np.zeros((8, 2), bool)
    mask[[0, 2, 4, 6], 0] = True       # all on PE 0 of 2, local rows 0..3: no gaps
    mask[[1, 7], 1] = True             # PE 1, local rows 0 and 3: a gap of 2
    entries, padding = entries_per_pe_column(encode_mask("w", mask, StorageFormat.CSC, 4), engine(pes=2, index_bits=1))
    # 1-bit index: a gap g costs g // 2 padding entries
    assert entries.tolist() == [[4, 0], [0, 3]] and padding == 1


def test_balanced_work_takes_its_cycles():
    work = np.full((10, 4), 3)
    assert pe_array_cycles(work, fifo_depth=8) == pytest.approx(30)


def test_an_empty_slice_still_costs_the_pointer_read():
    assert pe_array_cycles(np.zeros((5, 2), int), fifo_depth=8) == pytest.approx(5)


def test_a_deeper_fifo_absorbs_imbalance():
    rng = np.random.default_rng(0)
    work = rng.poisson(2.0, size=(400, 16))
    shallow, deep = pe_array_cycles(work, 1), pe_array_cycles(work, 8)
    ideal = work.sum(axis=0).max()
    assert ideal <= deep <= shallow


def test_eie_profile_loads_with_scratchpads():
    eie = load_profile("hwprofiles/eie.yaml")
    # the DRAM is only where layers that overflow the SRAM reload from (an assumption, cited as such)
    assert eie.dram is not None and eie.sources["memory.dram"].startswith("[U]") and eie.sparse_engine.pes == 64
    assert {p.name for p in eie.memory.scratchpads} == {"spmat", "ptr", "act"}
    assert eie.peak_flops_per_s == pytest.approx(102.4e9)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["sparse_engine"].update(pes=32), "sparse_engine.pes"),
    (lambda d: d["sparse_engine"].update(weights_scratchpad="nope"), "sparse_engine.weights_scratchpad"),
    (lambda d: d["memory"].pop("dram") and d["memory"].update(caches=[{"name": "L1", "size": "32 KiB", "line": "64 B",
                                                                       "ways": 8, "shared": False, "latency": "1 ns",
                                                                       "bandwidth": "10 GB/s"}]),
     "memory.dram"),
])
def test_sparse_engine_errors_name_the_field(edit, field):
    data = yaml.safe_load(open("hwprofiles/eie.yaml"))
    edit(data)
    with pytest.raises(ConfigError) as err:
        profile_from_mapping(data, "eie.yaml")
    assert err.value.field == field


@pytest.fixture
def fc_only(workload_from_text):
    return workload_from_text(
        "  - {name: fc1, kind: fc, in_features: 512, out_features: 256, density: 0.1, activation_density: 0.5}\n",
        [512])


def test_eie_runs_from_sram_at_or_above_its_theoretical_time(fc_only):
    from simulator.engine.accelerator import eie_timing

    eie = load_profile("hwprofiles/eie.yaml")
    result = run(eie, fc_only, RunOptions())
    (variant,) = result.variants
    layer = variant.layer("fc1")
    assert variant.format == "eie" and layer.dram_bytes == 0
    timing = eie_timing(fc_only.layer("fc1"), eie.sparse_engine, 0)
    assert layer.time_s >= timing.theoretical_cycles / eie.compute.clock_hz
    assert timing.active_columns.size == 256


def test_eie_refuses_batches_and_convolutions(fc_only, workload_from_text):
    eie = load_profile("hwprofiles/eie.yaml")
    with pytest.raises(OptionError, match="use batch 1") as err:
        run(eie, fc_only, RunOptions(batch=4))
    assert err.value.option == "batch"
    conv = workload_from_text("  - {name: c, kind: conv, in_channels: 3, out_channels: 4, kernel: 3, density: 0.5}\n",
                              [3, 8, 8])
    with pytest.raises(ConfigError, match="fully-connected"):
        run(eie, conv, RunOptions())


def test_a_layer_whose_pointers_overflow_the_sram_streams_column_batches_from_dram(repo_root, monkeypatch):
    from simulator.engine.accelerator import column_batches, eie_timing

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    profile = load_profile(repo_root / "hwprofiles/eie.yaml")
    engine = profile.sparse_engine
    layers = {l.name: l for l in load_workload(repo_root / "workloads/eie.yaml").layers}
    # AlexNet_FC6: 9,217 pointers x 2 B = 18 KiB per PE fit the 32 KiB pointer SRAM
    fits = column_batches(profile, engine, eie_timing(layers["AlexNet_FC6"], engine, 0), "w.yaml")
    assert (fits.batches, fits.dram_bytes) == (1, 0.0)
    # VGG16_FC6: 25,089 x 2 B = 49 KiB per PE: batches of at most half the SRAM, all pointers reloaded
    vgg = column_batches(profile, engine, eie_timing(layers["VGG16_FC6"], engine, 0), "w.yaml")
    assert vgg.batches == -(-25089 * 2 // (32 * 1024 // 2)) == 4
    assert vgg.streamed_entry_bytes == 0 and vgg.streamed_pointer_bytes == 64 * (25088 + 4) * 2
    # the run charges them to DRAM and says so under the table
    result = run(profile, load_workload(repo_root / "workloads/eie.yaml"), RunOptions())
    (variant,) = result.variants
    assert variant.layer("VGG16_FC6").dram_read_bytes == pytest.approx(vgg.dram_bytes, abs=16)
    assert variant.layer("AlexNet_FC6").dram_read_bytes == 0
    assert any(n.startswith("VGG16_FC6: its column pointers do not fit") for n in result.notes)


def test_without_a_dram_to_reload_from_an_overflowing_layer_is_one_line(repo_root, monkeypatch):
    from dataclasses import replace

    from simulator.engine.accelerator import eie_works

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    data = yaml.safe_load((repo_root / "hwprofiles/eie.yaml").read_text())
    del data["memory"]["dram"], data["energy"]["per_byte"]["dram"]
    data["sources"] = {k: v for k, v in data["sources"].items() if "dram" not in k}
    profile = profile_from_mapping(data, "eie-no-dram.yaml")
    workload = load_workload(repo_root / "workloads/eie.yaml")
    vgg = replace(workload, layers=tuple(l for l in workload.layers if l.name == "VGG16_FC6"))
    with pytest.raises(ConfigError, match=r"layers.VGG16_FC6: its column pointers need 49.0 KiB per PE, more than "
                                          r".*32.0 KiB of SRAM.*no memory.dram"):
        eie_works(profile, vgg, 0)
