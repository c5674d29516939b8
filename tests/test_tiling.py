"""Scratchpad accelerators: tiled loop nests, the tiling rule, double buffering, the Zynq profile."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator.base.errors import ConfigError
from simulator.cli import main
from simulator.compress.compression import StorageFormat
from simulator.engine.core import simulate
from simulator.engine.tiling import (
    BUFFERS,
    MAX_ENGINE_TILES,
    TIME_TOLERANCE,
    LoopNest,
    LoopOrder,
    choose_tiling,
    evaluate_tiling,
    tile_steps,
    tiled_layer_work,
)
from simulator.hardware.profile import load_profile, profile_from_mapping
from simulator.model.workload import DType, Layer, LayerKind, load_workload
from simulator.pipeline import RepeatMode, RunOptions, run

ROOT = Path(__file__).resolve().parent.parent
ZYNQ = ROOT / "hwprofiles" / "zynq-7045.yaml"
VGG16_SVD = ROOT / "workloads" / "vgg16-svd.yaml"
B = 2   # int16

ORDERS = (LoopOrder.OUTPUT_STATIONARY, LoopOrder.WEIGHT_STATIONARY, LoopOrder.INPUT_STATIONARY)


@pytest.fixture(scope="module")
def zynq():
    return load_profile(ZYNQ)


@pytest.fixture(scope="module")
def zynq_data():
    return yaml.safe_load(ZYNQ.read_text())


@pytest.fixture(scope="module")
def vgg16_svd_run(zynq):
    return run(zynq, load_workload(VGG16_SVD)).variant("dense")


def conv(n, m, hw, k=3, stride=1, padding=1, groups=1):
    out = (hw + 2 * padding - k) // stride + 1
    return Layer("conv", LayerKind.CONV, "conv", (n, hw, hw), (m, out, out), DType.INT16, kernel_hw=k, stride=stride,
                 padding=padding, groups=groups)


def fc(n, m):
    return Layer("fc", LayerKind.FC, "fc", (n,), (m,), DType.INT16)


def pool(c, hw):
    return Layer("pool", LayerKind.MAXPOOL, "pool", (c, hw, hw), (c, hw // 2, hw // 2), DType.INT16, kernel_hw=2,
                 stride=2)


def with_buffers(data, input_kib=None, weights_kib=None, output_kib=None):
    data = yaml.safe_load(yaml.safe_dump(data))
    for pad, kib in zip(data["memory"]["scratchpads"], (input_kib, weights_kib, output_kib)):
        if kib is not None:
            pad["size"] = f"{kib} KiB"
    return profile_from_mapping(data, "zynq.yaml")


# --- the loop nest and its traffic ---------------------------------------------------------------

def test_a_layer_that_fits_moves_each_operand_once(zynq):
    layer = conv(16, 32, 8)
    whole = evaluate_tiling(layer, zynq, LoopOrder.OUTPUT_STATIONARY, (32, 16, 8, 8))
    assert whole.tiles == 1 and whole.fits
    assert whole.dram_read_bytes == (16 * 8 * 8 + 32 * 16 * 9) * B
    assert whole.dram_write_bytes == 32 * 8 * 8 * B
    # the rule cuts it into tiles anyway, to overlap loads with compute, at no extra traffic
    chosen = choose_tiling(layer, zynq)
    assert chosen.tiles > 1 and chosen.estimate_s < whole.estimate_s
    assert (chosen.dram_read_bytes, chosen.dram_write_bytes) == (whole.dram_read_bytes, whole.dram_write_bytes)


def test_output_stationary_writes_once_and_rereads_per_tile(zynq):
    layer = conv(64, 8, 16)                        # N = 64: two input-channel tiles of 32
    t = evaluate_tiling(layer, zynq, LoopOrder.OUTPUT_STATIONARY, (4, 32, 8, 16))
    inputs = 64 * (9 + 9) * 16 * B                 # two row tiles of 8, each with one halo row (padding is not loaded)
    weights = 8 * 64 * 9 * B
    assert t.dram_read_bytes == 2 * inputs + 2 * weights     # input per output tile (2), weights per row tile (2)
    assert t.dram_write_bytes == 8 * 16 * 16 * B
    assert t.tiles == 2 * 2 * 2


def test_weight_stationary_reads_weights_once_and_moves_partial_sums(zynq):
    layer = conv(64, 8, 16)
    t = evaluate_tiling(layer, zynq, LoopOrder.WEIGHT_STATIONARY, (8, 32, 8, 16))
    out = 8 * 16 * 16 * B
    assert t.dram_write_bytes == 2 * out                    # once per input-channel tile
    assert t.dram_read_bytes == 64 * 18 * 16 * B + 8 * 64 * 9 * B + out   # partial sums read back once


def test_input_stationary_reads_input_once(zynq):
    layer = conv(64, 8, 16)
    t = evaluate_tiling(layer, zynq, LoopOrder.INPUT_STATIONARY, (4, 32, 8, 16))
    out = 8 * 16 * 16 * B
    assert t.dram_read_bytes == 64 * 18 * 16 * B + 2 * (8 * 64 * 9 * B) + out
    assert t.dram_write_bytes == 2 * out


def test_fc_batch_streams_the_weights_once(zynq):
    layer = fc(4096, 1000)
    t = choose_tiling(layer, zynq, batch=4)
    assert t.dram_read_bytes == pytest.approx((4096 * 1000 + 4096 * 4) * B, rel=0.01)
    assert t.dram_write_bytes == 1000 * 4 * B


@pytest.mark.parametrize("seed", range(12))
def test_totals_are_the_sums_over_the_tile_steps(zynq, seed):
    rng = np.random.default_rng(seed)
    layer = [conv(int(rng.integers(1, 90)) * 2, int(rng.integers(1, 60)) * 2, int(rng.integers(5, 30)),
                  k=int(rng.choice([1, 3, 5])), stride=int(rng.choice([1, 2])), padding=int(rng.integers(0, 2)),
                  groups=int(rng.choice([1, 2]))),
             fc(int(rng.integers(1, 3000)), int(rng.integers(1, 600))),
             pool(int(rng.integers(1, 300)), int(rng.integers(2, 40)))][seed % 3]
    batch = int(rng.choice([1, 3]))
    nest = LoopNest.of(layer, batch)
    tile = tuple(int(rng.integers(1, n + 1)) for n in (nest.out_channels, nest.in_channels, nest.out_rows,
                                                        nest.out_cols))
    for order in ((LoopOrder.STREAMING,) if nest.depthwise else ORDERS):
        t = evaluate_tiling(layer, zynq, order, tile, batch)
        steps = tile_steps(layer, t, zynq, batch)
        assert steps.cycles.size == t.tiles
        assert (steps.input_bytes + steps.weight_bytes + steps.partial_read_bytes).sum() == pytest.approx(
            t.dram_read_bytes)
        assert steps.write_bytes.sum() == pytest.approx(t.dram_write_bytes)
        assert (steps.read_bursts + steps.write_bursts).sum() == pytest.approx(t.bursts)
        assert steps.cycles.sum() == pytest.approx(t.cycles)
        assert steps.flops.sum() == pytest.approx(layer.flops(batch))


def test_line_buffer_streams_the_padded_tile(zynq):
    # one 3x3 pass over a 14x14 tile with padding 1 streams 16 x 16 pixels per lane group
    layer = conv(43, 2, 14)
    t = evaluate_tiling(layer, zynq, LoopOrder.OUTPUT_STATIONARY, (2, 43, 14, 14))
    assert t.cycles == 16 * 16


def test_short_runs_cost_more_bursts(zynq):
    layer = conv(32, 8, 64)
    full_width = evaluate_tiling(layer, zynq, LoopOrder.OUTPUT_STATIONARY, (8, 32, 8, 64))
    narrow = evaluate_tiling(layer, zynq, LoopOrder.OUTPUT_STATIONARY, (8, 32, 64, 8))
    assert narrow.bursts > 2 * full_width.bursts


# --- the tiling rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [conv(64, 64, 56), conv(512, 512, 14), conv(3, 64, 112), fc(25088, 500)],
                         ids=["conv-56", "conv-14", "conv-3ch", "fc"])
def test_the_rule_takes_the_least_traffic_among_the_fastest(zynq, layer):
    chosen = choose_tiling(layer, zynq)
    assert chosen.fits
    nest = LoopNest.of(layer, 1)
    rng = np.random.default_rng(0)
    for _ in range(150):
        tile = tuple(int(rng.integers(1, n + 1)) for n in (nest.out_channels, nest.in_channels, nest.out_rows,
                                                            nest.out_cols))
        for order in ORDERS:
            other = evaluate_tiling(layer, zynq, order, tile)
            if not other.fits:
                continue
            assert other.estimate_s >= chosen.estimate_s / (1 + TIME_TOLERANCE) * (1 - 1e-12)
            if other.estimate_s <= chosen.estimate_s:
                assert other.dram_read_bytes + other.dram_write_bytes >= (
                    chosen.dram_read_bytes + chosen.dram_write_bytes)


def test_chosen_tiles_fit_half_of_each_buffer(zynq):
    half = {p.name: p.size_bytes / BUFFERS for p in zynq.memory.scratchpads}
    for layer in load_workload(VGG16_SVD).layers:
        t = choose_tiling(layer, zynq)
        nest = LoopNest.of(layer, 1)
        rows_in = min((t.tile_rows - 1) * nest.stride + nest.kernel_hw, nest.in_rows)
        cols_in = min((t.tile_cols - 1) * nest.stride + nest.kernel_hw, nest.in_cols)
        assert t.tile_in_channels * rows_in * cols_in * B <= half["input"]
        weights = 0 if nest.depthwise else t.tile_out_channels * t.tile_in_channels * nest.kernel_hw ** 2 * B
        assert weights <= half["weights"]
        assert t.tile_out_channels * t.tile_rows * t.tile_cols * B <= half["output"]


def test_channel_tiles_are_whole_lane_groups(zynq):
    t = choose_tiling(conv(512, 512, 28), zynq)
    assert t.tile_out_channels % 2 == 0 and t.tile_in_channels % 43 == 0


def test_a_buffer_too_small_for_any_tile_is_named(zynq_data):
    small = with_buffers(zynq_data, weights_kib=1)
    with pytest.raises(ConfigError) as err:
        choose_tiling(conv(64, 64, 14), small)
    assert err.value.field == "memory.scratchpads.weights.size" and "double buffering" in err.value.message


# --- the engine: double buffering, bounds, merging ----------------------------------------------------

def without_channel_limit(data):
    data = yaml.safe_load(yaml.safe_dump(data))
    del data["tiled_engine"]["dma_channel_bandwidth"]
    return data


def test_double_buffering_overlaps_dram_and_compute(zynq_data):
    small = with_buffers(without_channel_limit(zynq_data), 128, 128, 128)
    layer = conv(86, 8, 56)                       # DRAM and compute time about equal, a dozen tiles
    work = tiled_layer_work(layer, choose_tiling(layer, small), small)
    assert work.prefetch_tiles == BUFFERS
    (double,) = simulate(small, [work])
    (single,) = simulate(small, [dataclasses.replace(work, prefetch_tiles=1)])
    compute, dram = double.busy_s["compute"], double.busy_s["dram-bandwidth"]
    assert max(compute, dram) <= double.time_s < 0.7 * (compute + dram)
    assert single.time_s == pytest.approx(compute + dram, rel=0.05)     # one buffer: load, then compute


def test_conv_is_compute_bound_and_fc_bound_by_its_dma_channel(vgg16_svd_run):
    for layer in vgg16_svd_run.layers:
        expected = {"conv": "compute", "fc": "dram-channel", "maxpool": "dram-channel"}[layer.kind]
        assert layer.bound == expected, layer.name


def test_one_stream_moves_at_its_channel_rate_not_the_drams(zynq, zynq_data):
    # an FC layer at batch 1 is one stream of weights: 1.2 GB/s through its channel, 4.2 GB/s without
    layer = fc(4096, 4096)
    weight_bytes = 4096 * 4096 * B
    limited = simulate(zynq, [tiled_layer_work(layer, choose_tiling(layer, zynq), zynq)])[0]
    free = profile_from_mapping(without_channel_limit(zynq_data), "zynq.yaml")
    unlimited = simulate(free, [tiled_layer_work(layer, choose_tiling(layer, free), free)])[0]
    assert limited.time_s == pytest.approx(weight_bytes / 1.2e9, rel=0.02) and limited.bound == "dram-channel"
    assert unlimited.time_s == pytest.approx(weight_bytes / 4.2e9, rel=0.02) and unlimited.bound == "dram-bandwidth"


def test_engine_time_is_near_the_rules_estimate(zynq, vgg16_svd_run):
    for layer in load_workload(VGG16_SVD).layers:
        estimate = choose_tiling(layer, zynq).estimate_s
        assert vgg16_svd_run.layer(layer.name).time_s == pytest.approx(estimate, rel=0.05), layer.name


def test_many_tile_steps_are_merged_and_conserved(zynq_data):
    small = with_buffers(zynq_data, input_kib=16, weights_kib=16, output_kib=16)
    layer = conv(128, 128, 56)
    t = choose_tiling(layer, small)
    assert t.tiles > MAX_ENGINE_TILES
    work = tiled_layer_work(layer, t, small)
    assert work.tiles == MAX_ENGINE_TILES + BUFFERS
    assert work.dram_read_bytes.sum() == pytest.approx(t.dram_read_bytes)
    assert work.dram_write_bytes.sum() == pytest.approx(t.dram_write_bytes)
    assert work.compute_s.sum() == pytest.approx(t.cycles / small.compute.clock_hz)
    assert work.compute_s[-BUFFERS:].sum() == 0 < work.dram_write_bytes[-1]     # the last writes drain


# --- profile and workload --------------------------------------------------------------------------------

def test_zynq_profile(zynq):
    assert zynq.tiled_engine.macs_per_cycle == 774 and zynq.caches == ()
    assert zynq.peak_flops_per_s == pytest.approx(232.2e9)
    assert zynq.ridge_flop_per_byte == pytest.approx(232.2 / 4.26, rel=1e-3)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["tiled_engine"].update(input_buffer="bram"), "tiled_engine.input_buffer"),
    (lambda d: d["tiled_engine"].update(output_buffer="weights"), "tiled_engine.output_buffer"),
    (lambda d: d["tiled_engine"].update(input_lanes=64), "compute.peak_flops"),
    (lambda d: d["tiled_engine"].update(dma_burst=128), "tiled_engine.dma_burst"),
    (lambda d: d["memory"].update(caches=[{"name": "L1", "size": "32 KiB", "line": "64 B", "ways": 8,
                                           "shared": False, "latency": "1 ns", "bandwidth": "10 GB/s"}]),
     "memory.caches"),
    (lambda d: d["sources"].update({"tiled_engine.lanes": "x"}), "sources.tiled_engine.lanes"),
])
def test_tiled_engine_errors_name_the_field(zynq_data, edit, field):
    data = yaml.safe_load(yaml.safe_dump(zynq_data))
    edit(data)
    with pytest.raises(ConfigError) as err:
        profile_from_mapping(data, "zynq.yaml")
    assert err.value.field == field


def test_vgg16_svd_workload():
    wl = load_workload(VGG16_SVD)
    assert wl.dtype is DType.INT16 and len(wl.layers) == 22
    a, b = wl.layer("fc6_a"), wl.layer("fc6_b")
    assert a.weight_shape == (500, 25088) and not a.relu and b.weight_shape == (4096, 500)
    assert a.weight_count + b.weight_count == 14_592_000               # 7.04x fewer than FC6's 102.76 M
    assert sum(l.flops(1) for l in wl.layers if l.kind is LayerKind.CONV) == pytest.approx(30.69e9, rel=1e-3)
    fc_ops = sum(l.flops(1) for l in wl.layers if l.kind is LayerKind.FC)
    assert fc_ops == pytest.approx(0.071e9, rel=0.01)


def test_qiu_fpga16_figures(vgg16_svd_run):
    conv = [l for l in vgg16_svd_run.layers if l.kind == "conv"]
    conv_gops = sum(l.flops for l in conv) / sum(l.time_s for l in conv) / 1e9
    assert conv_gops == pytest.approx(187.8, rel=0.15)                  # Qiu: 187.8 GOP/s on CONV
    assert 1 / vgg16_svd_run.total_s == pytest.approx(4.45, rel=0.15)   # Qiu: 4.45 frames/s


# --- pipeline and command line ---------------------------------------------------------------------------

def test_run_reports_the_tiling_in_json(zynq, tmp_path, capsys):
    out = tmp_path / "zynq.json"
    assert main(["run", str(ZYNQ), "--workload", str(VGG16_SVD), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frames/s" in text and "output-stationary" in text and "GOP/s" in text
    doc = json.loads(out.read_text())
    (variant,) = doc["variants"]
    assert variant["name"] == "dense"
    assert variant["layers"][0]["tiling"].startswith(("output-", "weight-", "input-"))


@pytest.mark.parametrize("flags, message", [
    (["--format", "csr"], "dense weights only"),
    (["--density", "0.1"], "dense weights"),
])
def test_run_refuses_what_the_array_cannot_do(flags, message, capsys):
    assert main(["run", str(ZYNQ), "--workload", str(VGG16_SVD)] + flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_float_workload_names_the_dtype(zynq, tiny_workload_path):
    with pytest.raises(ConfigError) as err:
        run(zynq, load_workload(tiny_workload_path), RunOptions(formats=(StorageFormat.DENSE,)))
    assert err.value.field == "dtype" and "int16" in err.value.message


def test_layer_mode_gives_the_same_layers(zynq):
    wl = load_workload(VGG16_SVD)
    network = run(zynq, wl).variant("dense")
    alone = run(zynq, wl, RunOptions(repeat_mode=RepeatMode.LAYER))
    for a, b in zip(network.layers, alone.variant("dense").layers):
        assert a.time_s == pytest.approx(b.time_s)
