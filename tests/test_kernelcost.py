"""The kernel cost model's mechanisms, asserted as a researcher would probe them: which parameter
moves which answer, and only that one (sensitivity as tests)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from simulator.compress.compression import StorageFormat
from simulator.engine.kernelcost import dense_seconds, issue_time, sparse_seconds
from simulator.hardware.profile import KernelKind, load_profile
from simulator.memory.kernelshape import KernelShape
from simulator.model.workload import DType, load_workload
from simulator.pipeline import RunOptions, run
from simulator.studies.validation import with_values

CPU_GPU = ("i7-5930k", "raspberry-pi-5", "titan-x", "tegra", "jetson-orin-nano", "jetson-orin-nano-super",
           "jetson-agx-orin", "a100-sxm4")


pytestmark = pytest.mark.usefixtures("isolated_cache")


def _profile(name: str):
    return load_profile(f"hwprofiles/{name}.yaml")


def _fc(write_yaml, in_features: int, out_features: int, density: float = 0.1):
    return load_workload(write_yaml("fc.yaml", {
        "schema_version": 1, "name": "fc", "source": "tests", "input_shape": [in_features],
        "layers": [{"name": "fc", "kind": "fc", "in_features": in_features, "out_features": out_features,
                    "density": density}]}))


def _layer(profile, workload, fmt=StorageFormat.DENSE, batch=1, density=None):
    result = run(profile, workload, RunOptions(batch=batch, formats=(fmt,), density=density, host_copies=False))
    return result.variants[0].layers[0]


def _i7_with(path: str, value):
    """The i7 profile as shipped with one field (a dotted YAML path) set to ``value``."""
    from simulator.base.yamlio import read_yaml_mapping
    from simulator.hardware.fieldpaths import assign
    from simulator.hardware.profile import profile_from_mapping

    data = read_yaml_mapping("hwprofiles/i7-5930k.yaml")
    assign(data, path, value)
    return profile_from_mapping(data, "i7")


def _scaled_bandwidth(profile, factor: float):
    dram = profile.dram
    return with_values(profile, {
        "memory.dram.sustained_bandwidth_bytes_per_s": dram.sustained_bandwidth_bytes_per_s * factor,
        "memory.dram.peak_bandwidth_bytes_per_s": dram.peak_bandwidth_bytes_per_s * factor})


@pytest.mark.parametrize("name", ["raspberry-pi-5", "titan-x", "tegra", "jetson-orin-nano"])
def test_doubling_dram_bandwidth_speeds_up_a_gemv_that_misses_the_caches(name, write_yaml):
    profile = _profile(name)
    llc = max(c.size_bytes for c in profile.caches)
    # weights four times the largest cache, and two tasks for every core (all of them stream)
    tasks = 2 * profile.compute.cores * profile.compute.rows_per_task.of(KernelKind.GEMV)
    rows = max(tasks, 4 * llc // (4 * 4096))
    workload = _fc(write_yaml, 4096, rows)
    before = _layer(profile, workload)
    after = _layer(_scaled_bandwidth(profile, 2.0), workload)
    assert before.bound == "dram-bandwidth"
    assert before.time_s / after.time_s >= 1.6


def test_doubling_dram_bandwidth_does_not_speed_up_a_compute_bound_gemm(write_yaml):
    profile = _profile("titan-x")
    workload = _fc(write_yaml, 4096, 4096)
    before = _layer(profile, workload, batch=64)
    after = _layer(_scaled_bandwidth(profile, 2.0), workload, batch=64)
    assert before.bound == "compute"
    assert before.time_s / after.time_s < 1.05


@pytest.mark.parametrize("name", CPU_GPU)
def test_no_profile_reports_a_batch_1_dense_fc_layer_as_compute_bound(name):
    profile = _profile(name)
    workload = load_workload("workloads/eie.yaml")
    result = run(profile, workload, RunOptions(formats=(StorageFormat.DENSE,), host_copies=False))
    for layer in result.variants[0].layers:
        assert layer.bound != "compute", (name, layer.name, layer.bound)


@pytest.mark.parametrize("name, in_features", [("i7-5930k", 1 << 17), ("tegra", 512)])
def test_csr_speed_up_is_not_a_constant_over_density(name, in_features, write_yaml):
    """With one efficiency per kernel kind the speed-up was ``constant / density`` to the digit;
    here its product with the density must vary. What makes it vary differs by device: on the
    i7 an input vector in the L3 turns sparse gathers into demand misses once non-zeros stop
    sharing lines; on the Tegra a warp per row idles most lanes on short rows."""
    profile = _profile(name)
    workload = _fc(write_yaml, in_features, 128 if in_features > 4096 else 2048)
    dense = _layer(profile, workload).time_s
    products = []
    for density in (0.02, 0.05, 0.1, 0.2, 0.5):
        sparse = _layer(profile, workload, StorageFormat.CSR, density=density).time_s
        products.append(dense / sparse * density)
    assert max(products) / min(products) > 1.2, products


def test_dram_latency_moves_a_layer_only_when_its_gathers_miss(write_yaml):
    tegra = _profile("tegra")
    slower = with_values(tegra, {"memory.dram.latency_s": tegra.dram.latency_s * 2})
    # dense GEMV: prefetched streams, bandwidth bound: latency does not matter
    gemv = _fc(write_yaml, 4096, 1024)
    assert _layer(slower, gemv).time_s == pytest.approx(_layer(tegra, gemv).time_s, rel=0.02)
    # CSR at batch 4 (one gather request per non-zero): an input that fits the L2, no change...
    hits = _fc(write_yaml, 4096, 1024, density=0.05)
    assert _layer(slower, hits, StorageFormat.CSR, batch=4).time_s == pytest.approx(
        _layer(tegra, hits, StorageFormat.CSR, batch=4).time_s, rel=0.02)
    # ...an input far beyond the L2: its gathers miss to DRAM and wait for it
    misses = _fc(write_yaml, 1 << 20, 64, density=0.01)
    base, slow = (_layer(p, misses, StorageFormat.CSR, batch=4) for p in (tegra, slower))
    assert base.bound == "gather-latency"
    assert slow.time_s / base.time_s > 1.5


def test_a_gather_within_the_tlb_reach_waits_no_page_walk(write_yaml):
    """``memory.tlb``: the levels' latencies are random accesses' beyond the TLBs' reach. A
    gather-bound CSR layer whose input fits the reach waits a walk less per gather below the
    first level; one whose input does not is timed as without a TLB; a dense GEMV (streams)
    never changes."""
    from simulator.hardware.profile import Tlb

    i7 = _profile("i7-5930k")
    tlb = Tlb(reach=f"{64 << 20} B", miss_latency=f"{i7.caches[2].latency_s * 0.5:.4g} s")
    within = i7.model_copy(update={"memory": i7.memory.model_copy(update={"tlb": tlb})})
    outside = within.model_copy(update={"memory": within.memory.model_copy(
        update={"tlb": tlb.model_copy(update={"reach_bytes": 1 << 20})})})
    misses = _fc(write_yaml, 1 << 22, 64, density=0.01)             # a 64 MiB input at batch 4: L3 and DRAM
    base, fast, far = (_layer(p, misses, StorageFormat.CSR, batch=4) for p in (i7, within, outside))
    assert base.bound == "gather-latency"
    assert fast.time_s < 0.9 * base.time_s
    assert far.time_s == pytest.approx(base.time_s, rel=1e-9)
    gemv = _fc(write_yaml, 4096, 1024)
    assert _layer(within, gemv).time_s == pytest.approx(_layer(i7, gemv).time_s, rel=1e-9)


def test_beyond_the_tlb_reach_an_spmm_operand_row_walks_once_for_its_lines(write_yaml):
    """At batch 64 an SpMM gathers each non-zero's operand row, 64 fp32 (256 B: 4 lines of one
    page). Beyond the TLBs' reach the row walks once, so each of its lines waits a quarter of the
    walk; within the reach none; at batch 16 (64 B, one line) each gather walks, as the levels'
    latencies say."""
    from simulator.engine.core import _gather_latencies, _latencies
    from simulator.hardware.profile import Tlb
    from simulator.pipeline import RepeatMode, benchmark_works

    i7 = _profile("i7-5930k")
    miss_s = i7.caches[2].latency_s * 0.5
    tlb = Tlb(reach=f"{256 << 10} B", miss_latency=f"{miss_s:.4g} s")
    small_reach = i7.model_copy(update={"memory": i7.memory.model_copy(update={"tlb": tlb})})
    layer = _fc(write_yaml, 8192, 256, density=0.05)              # 2 MiB of input at batch 64, 512 KiB at 16
    levels = _latencies(i7, streams=False)

    def gathers(batch: int):
        options = RunOptions(batch=batch, formats=(StorageFormat.CSR,), host_copies=False,
                             repeat_mode=RepeatMode.LAYER)
        (work,) = benchmark_works(small_reach, layer, StorageFormat.CSR, options)
        return _gather_latencies(small_reach, work)
    floor = i7.caches[0].latency_s
    assert gathers(64) == pytest.approx(np.maximum(levels - 0.75 * miss_s, floor), rel=1e-12)
    assert gathers(16) == pytest.approx(levels, rel=1e-12)
    wide = small_reach.model_copy(update={"memory": small_reach.memory.model_copy(
        update={"tlb": tlb.model_copy(update={"reach_bytes": 64 << 20})})})
    options = RunOptions(batch=64, formats=(StorageFormat.CSR,), host_copies=False, repeat_mode=RepeatMode.LAYER)
    (work,) = benchmark_works(wide, layer, StorageFormat.CSR, options)
    assert _gather_latencies(wide, work) == pytest.approx(np.maximum(levels - miss_s, floor), rel=1e-12)


def test_dense_tiles_pay_for_partial_tiles_and_idle_cores_in_the_last_wave():
    profile = _profile("titan-x")           # 24 SMs, 128-row tasks
    full = KernelShape(KernelKind.GEMM, DType.FP32, rows=24 * 128, columns=64, depth=1024)
    one_more = KernelShape(KernelKind.GEMM, DType.FP32, rows=24 * 128 + 1, columns=64, depth=1024)
    # one extra row is one extra task: a second wave of one tile
    assert dense_seconds(profile, one_more, 24).seconds == pytest.approx(2 * dense_seconds(profile, full, 24).seconds)
    # a layer of 8 tasks leaves 16 SMs idle: a third of the rate of a full wave
    eight = KernelShape(KernelKind.GEMM, DType.FP32, rows=8 * 128, columns=64, depth=1024)
    rate = lambda s: s.dense_macs / dense_seconds(profile, s, 24).seconds   # noqa: E731
    assert rate(eight) == pytest.approx(rate(full) / 3)


def test_sparse_issue_counts_steps_per_row_and_column_groups():
    profile = _profile("i7-5930k")
    kernel = profile.compute.kernels.spmv
    shape = KernelShape(KernelKind.SPMV, DType.FP32, rows=100, columns=1, depth=1000, nonzeros=5000, row_steps=5000)
    expected = (5000 * kernel.cycles_per_nonzero + 100 * kernel.cycles_per_row) / profile.compute.clock_hz
    assert sparse_seconds(profile, shape, 1).seconds == pytest.approx(expected)
    # spmm: one step per non-zero and group of columns_per_step dense columns
    spmm = profile.compute.kernels.spmm
    wide = KernelShape(KernelKind.SPMM, DType.FP32, rows=100, columns=64, depth=1000, nonzeros=5000, row_steps=5000)
    groups = math.ceil(64 / spmm.columns_per_step)
    assert sparse_seconds(profile, wide, 1).seconds == pytest.approx(
        groups * (5000 * spmm.cycles_per_nonzero + 100 * spmm.cycles_per_row) / profile.compute.clock_hz)


def test_warp_per_row_steps_come_from_the_real_row_lengths(write_yaml):
    """On a GPU with 32 lanes per row, short rows cost a whole warp step each."""
    from simulator.compress.compression import compress_workload
    from simulator.memory.kernelshape import kernel_shape

    workload = _fc(write_yaml, 256, 512, density=0.05)      # ~13 non-zeros per row: one step each
    enc = compress_workload(workload, StorageFormat.CSR, 0)["fc"]
    shape = kernel_shape(workload.layers[0], enc, 1, KernelKind.SPMV, lanes_per_row=32)
    assert shape.row_steps == 512
    scalar = kernel_shape(workload.layers[0], enc, 1, KernelKind.SPMV, lanes_per_row=1)
    assert scalar.row_steps == enc.nnz


def test_sparse_convolution_break_even_differs_by_device(write_yaml):
    """The density at which a pruned convolution matches the dense one comes out of each device's
    mechanisms (direct sparse convolution on the CPU, im2col + sparse product on the GPU)."""
    workload = load_workload(write_yaml("conv.yaml", {
        "schema_version": 1, "name": "conv", "source": "tests", "input_shape": [64, 28, 28],
        "layers": [{"name": "conv", "kind": "conv", "in_channels": 64, "out_channels": 64, "kernel": 3,
                    "padding": 1, "density": 0.5}]}))
    break_even = {}
    for name in ("i7-5930k", "titan-x"):
        profile = _profile(name)
        dense = _layer(profile, workload).time_s
        ratios = [(d, _layer(profile, workload, StorageFormat.CSR, density=d).time_s / dense)
                  for d in (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)]
        assert ratios[0][1] < ratios[-1][1]
        below = [d for d, r in ratios if r <= 1.0]
        break_even[name] = max(below) if below else 0.0
    assert break_even["i7-5930k"] != break_even["titan-x"], break_even


def test_issue_time_refuses_a_profile_without_kernel_costs():
    profile = _profile("eie")
    with pytest.raises(ValueError, match="compute.kernels"):
        issue_time(profile, KernelShape(KernelKind.GEMV, DType.FP32, rows=1, columns=1, depth=1), 1)


# --- the format kernels (bsr, n:m, bitmask, codebook) --------------------------------------------------

from simulator.base.errors import ConfigError  # noqa: E402
from simulator.engine.kernelcost import bitmask_seconds, bsr_seconds, codebook_seconds, nm_seconds  # noqa: E402


def _nm_shape(dtype, columns=64, rows=512, depth=1024):
    return KernelShape(KernelKind.NM, dtype, rows=rows, columns=columns, depth=depth, nonzeros=rows * depth // 2)


def test_nm_on_sparse_tensor_cores_does_the_math_twice_as_fast_as_dense():
    base = _profile("jetson-orin-nano")
    orin = with_values(base, {"compute.peak_flops.fp16": 10e12, "compute.structured_sparse_peak_flops.fp16": 20e12,
                              "compute.kernels.gemm.tile_columns": 8,
                              "compute.kernels.nm.library_efficiency": base.compute.kernels.gemm.library_efficiency})
    dense = dense_seconds(orin, KernelShape(KernelKind.GEMM, DType.FP16, rows=512, columns=64, depth=1024), 8).seconds
    sparse = nm_seconds(orin, _nm_shape(DType.FP16), 8)
    assert sparse.mechanism == "sparse-tensor-core"
    assert dense / sparse.seconds == pytest.approx(2.0)       # 20 sparse vs 10 dense TFLOP/s, same tiles
    # a GEMV pads the sparse MMA's 8 columns: no faster per column than a batch of 8
    assert nm_seconds(orin, _nm_shape(DType.FP16, columns=1), 8).seconds == pytest.approx(
        nm_seconds(orin, _nm_shape(DType.FP16, columns=8), 8).seconds)


def test_nm_without_sparse_tensor_cores_is_a_compressed_format():
    orin = _profile("jetson-orin-nano")
    fp32 = nm_seconds(orin, _nm_shape(DType.FP32), 8)          # no fp32 structured-sparse rate
    assert fp32.mechanism in ("nonzeros", "rows")
    slower = with_values(orin, {"compute.kernels.spmm.cycles_per_nonzero": 2.0})
    assert nm_seconds(slower, _nm_shape(DType.FP32), 8).seconds > 1.5 * fp32.seconds
    i7 = _profile("i7-5930k")
    assert nm_seconds(i7, _nm_shape(DType.FP16), 6).mechanism == "nonzeros"


def test_bitmask_costs_per_mask_word_and_per_value():
    i7 = _profile("i7-5930k")
    sparse = KernelShape(KernelKind.BITMASK, DType.FP32, rows=1024, columns=1, depth=4096, nonzeros=1024 * 41,
                         mask_bits=1024 * 4096)
    base = bitmask_seconds(i7, sparse, 1)
    assert base.mechanism == "mask-words"                  # 1 % dense: the mask dominates
    narrow = with_values(i7, {"compute.kernels.bitmask.word_bits": 32})
    wordy = with_values(i7, {"compute.kernels.bitmask.cycles_per_word": 4.0})
    words = 1024 * 4096 / 64
    assert bitmask_seconds(narrow, sparse, 1).seconds - base.seconds == pytest.approx(words * 2.0 / 3.5e9)
    assert bitmask_seconds(wordy, sparse, 1).seconds - base.seconds == pytest.approx(words * 2.0 / 3.5e9)


def test_bsr_blocks_narrower_than_the_vector_waste_lanes_and_pay_per_block():
    i7 = with_values(_profile("i7-5930k"), {"compute.kernels.bsr.cycles_per_block": 0.0,
                                           "compute.kernels.bsr.cycles_per_row": 0.0})
    def shape(block, columns=1):
        return KernelShape(KernelKind.BSR, DType.FP32, rows=1024, columns=columns, depth=1024, nonzeros=65536,
                           blocks=65536 // (block[0] * block[1]), block=block, row_steps=1024 // block[0])
    assert bsr_seconds(i7, shape((8, 4)), 1).seconds == pytest.approx(2 * bsr_seconds(i7, shape((4, 8)), 1).seconds)
    # with enough columns the kernel vectorises along them instead
    assert bsr_seconds(i7, shape((8, 4), 64), 1).seconds == pytest.approx(bsr_seconds(i7, shape((4, 8), 64), 1).seconds)
    costly = with_values(i7, {"compute.kernels.bsr.cycles_per_block": 3.0})
    assert bsr_seconds(costly, shape((4, 8)), 1).seconds - bsr_seconds(i7, shape((4, 8)), 1).seconds == \
        pytest.approx(2048 * 3.0 / 3.5e9)


def test_codebook_costs_every_entry_padding_included():
    i7 = _profile("i7-5930k")
    shape = KernelShape(KernelKind.CODEBOOK, DType.FP32, rows=4096, columns=1, depth=4096, nonzeros=100_000,
                        pointer_reads=64 * 4096)
    padded = KernelShape(KernelKind.CODEBOOK, DType.FP32, rows=4096, columns=1, depth=4096, nonzeros=150_000,
                         pointer_reads=64 * 4096)
    assert codebook_seconds(i7, padded, 1).seconds - codebook_seconds(i7, shape, 1).seconds == \
        pytest.approx(50_000 * 4.0 / 3.5e9)


def test_a_profile_without_a_format_kernel_cannot_run_that_format():
    bare = with_values(_profile("i7-5930k"), {"compute.kernels.bitmask": None})
    shape = KernelShape(KernelKind.BITMASK, DType.FP32, rows=8, columns=1, depth=8, nonzeros=8, mask_bits=64)
    with pytest.raises(ConfigError, match="compute.kernels.bitmask"):
        issue_time(bare, shape, 1)


def test_every_format_runs_end_to_end_on_every_cpu_and_gpu_profile(write_yaml):
    from simulator.compress.compression import encode_variant
    from simulator.compress.variants import parse_variant
    from simulator.engine.core import layer_work, simulate
    from simulator.memory.traffic import CoreView, workload_traffic
    from simulator.pipeline import cache_hierarchy

    workload = _fc(write_yaml, 1024, 512, density=0.1)
    for name in CPU_GPU:
        profile = _profile(name)
        view = CoreView.of(profile)
        times = {}
        for spec in ("dense", "csr", "bsr4x4", "2:4", "bitmask", "eie"):
            traffic = workload_traffic(workload, encode_variant(workload, parse_variant(spec)), 1, view)
            hierarchy = cache_hierarchy(profile, view.cores)
            works = [layer_work(t, hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints), profile)
                     for t in traffic]
            (layer,) = simulate(profile, works)
            times[spec] = layer.time_s
        assert all(t > 0 for t in times.values()), (name, times)
        assert times["csr"] < times["dense"], (name, times)     # 10 % dense, batch 1: fewer bytes win


def test_a_lower_stream_latency_speeds_streams_served_by_that_level(write_yaml):
    """A cache level's ``stream_latency`` is what a prefetched stream's line waits there (a random
    load, a gather, still waits ``latency``): an L3-resident GEMV on one i7 core speeds up."""
    i7 = _profile("i7-5930k")
    l3 = i7.caches[-1]
    faster = with_values(i7, {"memory.caches": tuple(i7.caches[:-1]) + (
        l3.model_copy(update={"stream_latency_s": l3.latency_s / 3}),)})
    gemv = _fc(write_yaml, 4096, 512)                   # 8 MiB of weights: the L3 when repeated
    options = RunOptions(formats=(StorageFormat.DENSE,), repeat=2, host_copies=False)
    base = run(i7, gemv, options).variants[0].layers[0]
    quick = run(faster, gemv, options).variants[0].layers[0]
    assert base.bound == "stream-latency" and quick.time_s < 0.8 * base.time_s
    assert l3.streamed_latency_s == l3.latency_s and faster.caches[-1].streamed_latency_s == l3.latency_s / 3


def test_im2col_lowering_is_the_slower_of_bandwidth_and_the_librarys_copy_rate():
    """A library's ``F.unfold`` can copy far below the bandwidth of the level holding the lowered
    matrix: the im2col kernel's lowering costs the slower of the two."""
    profile = _profile("titan-x")                       # its spconv is im2col
    shape = KernelShape(KernelKind.SPCONV, DType.FP32, rows=64, columns=1024, depth=576, nonzeros=64 * 57,
                        row_steps=64 * 57, lowered_bytes=1024 * 576 * 4)
    base = sparse_seconds(profile, shape, 24).seconds
    slow = with_values(profile, {"compute.kernels.spconv.lowering_cycles_per_element": 50.0})
    elements = 1024 * 576
    lowered = elements * 50.0 / (profile.compute.clock_hz * 24)
    assert sparse_seconds(slow, shape, 24).seconds == pytest.approx(base - _lowering(profile, shape) + lowered)
    assert sparse_seconds(slow, shape, 24).mechanism in ("lowering", "nonzeros", "rows")


def _lowering(profile, shape):
    from simulator.engine.kernelcost import pass_seconds
    return pass_seconds(profile, shape.lowered_bytes, 24)


def test_a_gemv_loop_slower_than_the_memory_is_issue_bound_and_bandwidth_does_not_move_it(write_yaml):
    """The GEMV loop's measured cycles per vector, per type: where a type's loop issues slower than
    its bytes stream (as torch's bf16 GEMV on an x86 CPU does), the layer is bound by the
    loop, more bandwidth does not speed it up, and the type's half-size weights no longer halve the time."""
    from simulator.compress.variants import parse_variant

    pi = _profile("raspberry-pi-5")
    lanes, clock = pi.compute.vector_lanes, pi.compute.clock_hz
    # fp16 (the Pi's A76 computes it natively) at four cycles a weight: 2.4 G weights/s on 4 cores
    # at 2.4 GHz, a third of what its 17 GB/s streams
    slow = with_values(pi, {"compute.kernels.gemv.cycles_per_vector.fp16": 4.0 * lanes})
    workload = _fc(write_yaml, 4096, 8192)

    def layer(profile, spec):
        result = run(profile, workload, RunOptions(formats=(parse_variant(spec),), host_copies=False))
        return result.variants[0].layers[0]

    fp16, fp32 = layer(slow, "dense@fp16"), layer(slow, "dense")
    assert fp16.bound == "compute" and fp32.bound == "dram-bandwidth"
    assert fp16.time_s == pytest.approx(4 * 4096 * 8192 / (clock * pi.compute.cores), rel=0.05)
    assert layer(_scaled_bandwidth(slow, 2.0), "dense@fp16").time_s == pytest.approx(fp16.time_s, rel=0.02)
    # without the measured loop the same fp16 layer streams its half-size weights: twice fp32's speed
    assert layer(pi, "dense@fp16").time_s == pytest.approx(fp32.time_s / 2, rel=0.1)


def test_a_gemv_loop_with_a_cost_a_row_runs_the_same_weights_faster_in_longer_rows():
    """``cycles_per_row``: a loop that ends each row's dot product at a cost of its own (torch's bf16
    GEMV reduces and stores each row's accumulators) issues the same weights faster in fewer, longer
    rows; without it the rows' shape does not matter. Other types keep theirs."""
    pi = _profile("raspberry-pi-5")
    clock, cores = pi.compute.clock_hz, pi.compute.cores
    loop = with_values(pi, {"compute.kernels.gemv.cycles_per_vector.bf16": 2.0})
    rowed = with_values(loop, {"compute.kernels.gemv.cycles_per_row.bf16": 40.0})

    def issue(profile, rows, depth, dtype=DType.BF16):
        shape = KernelShape(KernelKind.GEMV, dtype, rows=rows, columns=1, depth=depth)
        return dense_seconds(profile, shape, cores)
    short, long_ = (4096, 512), (128, 16384)                 # the same 2 M weights
    assert issue(loop, *short).seconds == pytest.approx(issue(loop, *long_).seconds, rel=1e-3)
    assert issue(rowed, *short).mechanism == "vector-loop"
    extra = issue(rowed, *short).seconds - issue(loop, *short).seconds
    assert extra == pytest.approx(4096 * 40.0 / (clock * cores), rel=0.05)
    assert issue(rowed, *long_).seconds - issue(loop, *long_).seconds == pytest.approx(extra / 32, rel=0.05)
    assert issue(rowed, *short, dtype=DType.FP32).seconds == issue(loop, *short, dtype=DType.FP32).seconds


def test_a_gemm_that_packs_its_weights_is_affine_in_its_batch_and_only_gemms_pay_it():
    """``pack_cycles_per_vector``: a GEMM that copies its weights into the library's layout at every
    call pays that copy once per call, whatever the batch (the intercept of its time over the batch),
    shared by its cores; its multiply-adds still scale with the batch (the slope). A GEMV (its own
    loop) and a type the profile gives no packing for pay nothing."""
    pi = _profile("raspberry-pi-5")
    lanes, clock, cores = pi.compute.vector_lanes, pi.compute.clock_hz, pi.compute.cores
    packing = with_values(pi, {"compute.kernels.gemm.pack_cycles_per_vector.fp32": 8.0})

    def gemm(profile, batch, rows=2048, depth=2048, dtype=DType.FP32):
        shape = KernelShape(KernelKind.GEMM, dtype, rows=rows, columns=batch, depth=depth)
        return dense_seconds(profile, shape, cores).seconds

    pack_s = 2048 * 2048 / lanes * 8.0 / (clock * cores)
    for batch in (64, 128, 256):
        assert gemm(packing, batch) - gemm(pi, batch) == pytest.approx(pack_s)
    # affine: the slope is the FMAs', the intercept the packing (twice the weights, twice the intercept)
    assert gemm(packing, 256) - gemm(packing, 128) == pytest.approx(gemm(pi, 256) - gemm(pi, 128))
    assert gemm(packing, 64, rows=4096) - gemm(pi, 64, rows=4096) == pytest.approx(2 * pack_s)
    assert gemm(packing, 64, dtype=DType.FP16) == gemm(pi, 64, dtype=DType.FP16)
    gemv = KernelShape(KernelKind.GEMV, DType.FP32, rows=2048, columns=1, depth=2048)
    assert dense_seconds(packing, gemv, cores) == dense_seconds(pi, gemv, cores)
    # where the copy is longer than the multiply-adds, the copy is what bounds the kernel
    slow = with_values(pi, {"compute.kernels.gemm.pack_cycles_per_vector.fp32": 1e4})
    assert dense_seconds(slow, KernelShape(KernelKind.GEMM, DType.FP32, rows=2048, columns=2, depth=2048),
                         cores).mechanism == "packing"


def test_a_gemm_that_packs_its_weights_takes_its_memory_time_on_top_of_its_arithmetic(write_yaml):
    """A GEMM that packs its weights at every call reads them before it multiplies them: with its
    weights in DRAM its time is the memory's plus the arithmetic's, where a kernel that streams
    its weights while it computes takes the larger of the two."""
    pi = _profile("raspberry-pi-5")
    llc = max(c.size_bytes for c in pi.caches)
    workload = _fc(write_yaml, 4096, 4 * llc // (4 * 4096))      # weights four times the last level
    tiny = with_values(pi, {"compute.kernels.gemm.pack_cycles_per_vector.fp32": 1e-3})   # the copy itself ~free
    streams, packs = _layer(pi, workload, batch=16), _layer(tiny, workload, batch=16)
    memory_s = max(v for k, v in streams.busy_s.items() if k.startswith("dram"))
    compute_s = streams.busy_s["compute"]
    assert streams.time_s == pytest.approx(max(memory_s, compute_s), rel=0.1)
    assert min(memory_s, compute_s) > 0.3 * max(memory_s, compute_s)    # both matter
    assert packs.time_s == pytest.approx(memory_s + compute_s, rel=0.1)


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_a_sparse_kernel_takes_the_part_of_its_loop_its_loads_do_not_run_under_on_top(write_yaml, overlap):
    """``load_overlap``: a CSR kernel whose weight loads run under only that share of its loop takes
    the rest of its issue time on top of the larger of issue and streaming (memory-bound here):
    the sum where they wait for it (0), half the issue more at 0.5, the larger where they run ahead."""
    pi = _profile("raspberry-pi-5")
    llc = max(c.size_bytes for c in pi.caches)
    workload = _fc(write_yaml, 4096, 4 * llc // (4 * 4096) * 4, density=0.25)   # stored bytes beyond the last level
    ahead = with_values(pi, {"compute.kernels.spmv.cycles_per_nonzero": 1.2})
    partly = with_values(ahead, {"compute.kernels.spmv.load_overlap": overlap})
    runs, waits = _layer(ahead, workload, StorageFormat.CSR), _layer(partly, workload, StorageFormat.CSR)
    memory_s = max(v for k, v in runs.busy_s.items() if k not in ("launch", "compute"))   # the busiest memory resource
    issue_s = runs.busy_s["compute"]
    assert memory_s > issue_s > 0.3 * memory_s    # both matter
    assert runs.time_s == pytest.approx(memory_s, rel=0.1)
    assert waits.time_s == pytest.approx(memory_s + (1 - overlap) * issue_s, rel=0.1)
    assert waits.busy_s["compute"] == pytest.approx(issue_s)


def test_a_gemv_whose_loads_run_under_half_its_loop_takes_the_other_half_on_top_beyond_the_caches(write_yaml):
    """A dense GEMV's ``load_overlap`` for its type: bound by its loop (each weight converted as it is
    loaded), with its weights in DRAM it takes half its loop on top of its streaming time at 0.5
    (torch's bf16 GEMV on a Zen 3 guest), the larger of the two at 1. Another type's share changes
    nothing."""
    pi = with_values(_profile("raspberry-pi-5"), {"compute.kernels.gemv.cycles_per_vector.fp32": 1.0})
    llc = max(c.size_bytes for c in pi.caches)
    beyond = _fc(write_yaml, 4096, 4 * llc // (4 * 4096))
    runs = _layer(pi, beyond)
    memory_s = max(v for k, v in runs.busy_s.items() if k.startswith("dram"))
    slow = with_values(pi, {"compute.kernels.gemv.cycles_per_vector.fp32":
                            pi.compute.kernels.gemv.cycles_per_vector.fp32 * 1.5 * memory_s / runs.busy_s["compute"]})
    runs = _layer(slow, beyond)
    issue_s = runs.busy_s["compute"]
    assert issue_s == pytest.approx(1.5 * memory_s, rel=0.01) and runs.time_s == pytest.approx(issue_s, rel=0.1)
    half = with_values(slow, {"compute.kernels.gemv.load_overlap.fp32": 0.5})
    waits = _layer(half, beyond)
    assert waits.time_s == pytest.approx(memory_s + 0.5 * issue_s, rel=0.1)
    assert waits.busy_s["compute"] == pytest.approx(issue_s)
    other = with_values(slow, {"compute.kernels.gemv.load_overlap.bf16": 0.0})
    assert _layer(other, beyond).time_s == pytest.approx(runs.time_s, rel=1e-6)


def test_a_dense_gemvs_load_overlap_holds_for_its_loads_from_dram_only(write_yaml):
    """A dense kernel's ``load_overlap`` is measured far beyond the caches, and where a cache serves
    its weights its loop keeps up (torch's fp32 GEMV on the Zen 3 guest: the loop's own rate from
    the L3, far below the DRAM's from DRAM): repeated, a layer the last level holds times the same at
    share 0 as at 1; the same layer's first, cold call waits for its loop."""
    i7 = _profile("i7-5930k")
    resident = _fc(write_yaml, 4096, 512)                   # 8 MiB of weights: the 15 MiB L3 when repeated
    cold = _layer(i7, resident)
    memory_s = max(v for k, v in cold.busy_s.items() if k.startswith("dram") or k.endswith("latency"))
    i7 = with_values(i7, {"compute.kernels.gemv.cycles_per_vector.fp32": 1.0})
    i7 = with_values(i7, {"compute.kernels.gemv.cycles_per_vector.fp32":   # a loop as long as the cold memory
                          memory_s / _layer(i7, resident).busy_s["compute"]})
    waiting = with_values(i7, {"compute.kernels.gemv.load_overlap.fp32": 0.0})
    for repeat in (1, 2):                   # the second inference is the one reported
        options = RunOptions(formats=(StorageFormat.DENSE,), repeat=repeat, host_copies=False)
        runs, waits = (run(p, resident, options).variants[0].layers[0] for p in (i7, waiting))
        if repeat == 1:                     # cold: its weights from DRAM, its loads wait for its loop
            assert runs.dram_read_bytes >= resident.layers[0].weight_count * 4
            assert waits.time_s > 1.05 * runs.time_s
        else:                               # from the L3: its loop keeps up
            assert runs.dram_read_bytes == 0
            assert waits.time_s == pytest.approx(runs.time_s, rel=1e-6)


def test_a_sparse_kernels_load_overlap_holds_for_its_loads_from_dram_only(write_yaml):
    """So does a sparse kernel's: measured on an SpMV beyond the caches, it does not hold where the
    L3 serves the matrix (torch's SpMV over int32 indices on the Zen 3 guest: 1.65 cycles a non-zero
    a core over 8 MiB in the L3, its in-cache issue cost, where issue plus the L3's time would be
    about twice that): repeated, a CSR layer the last level holds times the same at share 0 as at
    1; its first, cold call waits for its loop."""
    i7 = _profile("i7-5930k")
    resident = _fc(write_yaml, 4096, 1024, density=0.25)    # 1 M non-zeros, 8 MiB: the 15 MiB L3 when repeated
    cold = _layer(i7, resident, StorageFormat.CSR)
    memory_s = max(v for k, v in cold.busy_s.items() if k.startswith("dram") or k.endswith("latency"))
    cycles = i7.compute.kernels.spmv.cycles_per_nonzero * memory_s / cold.busy_s["compute"]
    i7 = with_values(i7, {"compute.kernels.spmv.cycles_per_nonzero": cycles})   # a loop as long as the cold memory
    waiting = with_values(i7, {"compute.kernels.spmv.load_overlap": 0.0})
    for repeat in (1, 2):
        options = RunOptions(formats=(StorageFormat.CSR,), repeat=repeat, host_copies=False)
        runs, waits = (run(p, resident, options).variants[0].layers[0] for p in (i7, waiting))
        if repeat == 1:
            assert runs.dram_read_bytes > 0
            assert waits.time_s > 1.05 * runs.time_s
        else:
            assert runs.dram_read_bytes == 0
            assert waits.time_s == pytest.approx(runs.time_s, rel=1e-6)


def test_a_library_that_copies_its_indices_pays_the_copy_and_its_fresh_pages_at_every_call(write_yaml):
    """``kernel_index_bits``: a library storing 64-bit indices whose kernel reads 32-bit ones (torch's
    CPU CSR product over MKL's LP64 interface) copies the indices at every call: the copy's lines
    move through the memory system on top of the kernel's, and a copy above the allocator's
    threshold faults its pages in first, each call (here above 1 MiB, so a 4 MiB copy does)."""
    from simulator.hardware.profile import FreshPages

    pi = with_values(_profile("raspberry-pi-5"), {"compute.kernels.index_bits": 64,
                                                  "memory.fresh_pages": FreshPages(above="1 MiB", bandwidth="2 GB/s")})
    workload = _fc(write_yaml, 4096, 4096, density=1 / 16)
    copies = with_values(pi, {"compute.kernels.kernel_index_bits": 32})
    plain, copied = _layer(pi, workload, StorageFormat.CSR), _layer(copies, workload, StorageFormat.CSR)
    nonzeros = (copied.weight_bytes - 8 * 4097) // 12      # stored: fp32 values, 64-bit indices and pointers
    assert copied.weight_bytes == plain.weight_bytes and nonzeros * 4 > 1 << 20 > 4 * 4097
    assert copied.busy_s["page-faults"] == pytest.approx(4 * nonzeros / 2e9) and not plain.busy_s.get("page-faults")
    assert copied.accesses > plain.accesses
    # beyond the caches: 12 bytes a non-zero become 8 read + 4 written (and written back) + 4 read + 4
    assert copied.dram_bytes > 1.5 * plain.dram_bytes
    assert copied.time_s > plain.time_s + copied.busy_s["page-faults"]


def _conv_shape(in_channels: int, out_channels: int, side: int = 13, window: int = 9, batch: int = 1):
    """A dense convolution's kernel shape as :func:`kernel_shape` builds it (fp32, padding keeps the side)."""
    pixels = side * side
    return KernelShape(KernelKind.CONV, DType.FP32, rows=out_channels, columns=batch * pixels,
                       depth=in_channels * window, nonzeros=out_channels * in_channels * window,
                       input_bytes=4 * batch * in_channels * pixels, output_bytes=4 * batch * out_channels * pixels,
                       window=window, convolution=True, batch=batch)


def test_a_small_batch_1_convolution_runs_the_frameworks_own_kernel_without_the_librarys_set_up():
    """``conv.native_max_input_elements``: an fp32 batch-1 convolution of at most 3 x 3 whose input
    has at most that many elements runs lowered (im2col + the GEMM, no channel blocks) and pays
    none of the direct library's ``call_overhead``; a larger input, batch 2, a 5 x 5 window or bf16
    goes to the direct library and pays its set-up once a call, whatever the batch."""
    from simulator.engine.kernelcost import call_overhead_s, lowered_convolution, native_convolution

    pi = with_values(_profile("raspberry-pi-5"), {"compute.kernels.conv.channel_block": 16,
                                                  "compute.kernels.conv.call_overhead.fp32": 70e-6})
    native = with_values(pi, {"compute.kernels.conv.native_max_input_elements": 20480})
    cores = pi.compute.cores
    thinned_conv3 = _conv_shape(73, 134)                      # 12,337 input elements at batch 1
    thinned_conv4 = _conv_shape(134, 95)                      # 22,646: over the limit
    assert native_convolution(native, thinned_conv3) and lowered_convolution(native, thinned_conv3)
    assert not native_convolution(pi, thinned_conv3)
    for direct in (thinned_conv4, _conv_shape(73, 134, batch=2), _conv_shape(73, 134, window=25),
                   replace(thinned_conv3, dtype=DType.BF16)):
        assert not native_convolution(native, direct)
        assert call_overhead_s(native, direct) == pytest.approx(70e-6 if direct.dtype is DType.FP32 else 0.0)
    assert call_overhead_s(native, thinned_conv3) == 0.0 and call_overhead_s(pi, thinned_conv3) == 70e-6
    gemm = dense_seconds(native, replace(thinned_conv3, kind=KernelKind.GEMM, convolution=False, window=1),
                         cores).seconds
    assert dense_seconds(native, thinned_conv3, cores).seconds > gemm           # plus its im2col
    assert dense_seconds(pi, thinned_conv3, cores).mechanism != "lowering"
    # the set-up is a call's: AlexNet's conv3 (its input over the limit) pays it once at batch 1 and once
    # for a batch of 64
    workload = load_workload("workloads/alexnet.yaml")
    per_call = {}
    for profile in (pi, with_values(pi, {"compute.kernels.conv.call_overhead.fp32": 0.0})):
        per_call[profile.compute.kernels.conv.call_overhead.seconds("fp32")] = [
            run(profile, workload, RunOptions(batch=batch, formats=(StorageFormat.DENSE,), host_copies=False))
            .variants[0].layers[4].time_s for batch in (1, 64)]
    assert per_call[70e-6][0] - per_call[0.0][0] == pytest.approx(70e-6, rel=0.02)
    assert per_call[70e-6][1] - per_call[0.0][1] == pytest.approx(70e-6, rel=0.02)


def test_a_channel_blocked_convolution_computes_whole_blocks_and_reorders_its_activations():
    """``channel_block``: a direct convolution in blocks of 16 channels (oneDNN's nChw16c) costs a
    73 -> 134 channel layer the multiply-adds of 80 -> 144, so thinning 80 filters to 73 saves
    nothing; a first layer's 3 input channels are not blocked (nor is its input reordered); the
    output (and a blocked input) is reordered at every call, a pass at the bandwidth of the level
    that holds it. A block of 1 (an implicit GEMM, every shipped profile) changes nothing."""
    from simulator.engine.kernelcost import channel_blocks, pass_seconds

    pi = _profile("raspberry-pi-5")
    blocked = with_values(pi, {"compute.kernels.conv.channel_block": 16})
    cores = pi.compute.cores

    def fma_s(profile, shape):
        return dense_seconds(profile, shape, cores).seconds - pass_seconds(
            profile, sum(channel_blocks(shape, profile.compute.kernels.conv.channel_block)[1]), cores)

    thinned, whole = _conv_shape(73, 134), _conv_shape(80, 144)
    assert fma_s(blocked, thinned) == pytest.approx(fma_s(blocked, whole))
    assert fma_s(pi, thinned) == pytest.approx(fma_s(pi, whole) * (73 * 134) / (80 * 144), rel=1e-3)
    assert dense_seconds(pi, thinned, cores).seconds == pytest.approx(fma_s(pi, thinned))
    # the reorders: input and output of a blocked layer, the output alone of a first layer
    padded, moved = channel_blocks(thinned, 16)
    assert (padded.rows, padded.depth, moved) == (144, 80 * 9, (thinned.output_bytes, thinned.input_bytes))
    first = _conv_shape(3, 54, side=55, window=121)
    padded, moved = channel_blocks(first, 16)
    assert (padded.rows, padded.depth, moved) == (64, 3 * 121, (first.output_bytes,))
    # in all: the whole blocks' multiply-adds, then one pass over the layer's own input and output
    reorders_s = pass_seconds(pi, thinned.input_bytes + thinned.output_bytes, cores)
    assert reorders_s > 0
    assert dense_seconds(blocked, thinned, cores).seconds == pytest.approx(
        dense_seconds(pi, whole, cores).seconds + reorders_s)
    # GEMMs are not convolutions: no blocks
    gemm = KernelShape(KernelKind.GEMM, DType.FP32, rows=73, columns=64, depth=134)
    assert channel_blocks(gemm, 16) == (gemm, ())


def test_thinning_a_convolution_below_a_whole_block_saves_nothing_on_a_blocked_profile(write_yaml):
    """End to end through ``run``: removing 7 of 80 filters (to 73) of a convolution takes as long as
    the 80 on a profile whose conv kernel computes 16-channel blocks, and less without blocks."""
    def conv(filters: int):
        return load_workload(write_yaml(f"conv{filters}.yaml", {
            "schema_version": 1, "name": "conv", "source": "tests", "input_shape": [96, 13, 13],
            "layers": [{"name": "conv", "kind": "conv", "in_channels": 96, "out_channels": filters, "kernel": 3,
                        "padding": 1}]}))
    pi = _profile("raspberry-pi-5")
    blocked = with_values(pi, {"compute.kernels.conv.channel_block": 16})
    assert _layer(blocked, conv(73)).time_s == pytest.approx(_layer(blocked, conv(80)).time_s, rel=0.02)
    assert _layer(pi, conv(73)).time_s < 0.97 * _layer(pi, conv(80)).time_s


def test_a_gemv_that_walks_its_rows_pays_each_row_start_from_dram_and_short_rows_pay_more(write_yaml):
    """``gemv.row_start``: the same 64 MiB of fp32 weights in rows of 1024 and of 16384 columns, from
    DRAM: the short rows' layer is slower by their 16x as many starts at the profile's cost a row on
    one core, shared by the cores; the long rows' is nearly the bytes alone. Without a row cost both
    take their bytes' time, and a layer that stays in the caches, or a type without a row cost,
    pays none."""
    from simulator.compress.variants import parse_variant

    pi = _profile("raspberry-pi-5")
    start_s, cores = 200e-9, pi.compute.cores
    walking = with_values(pi, {"compute.kernels.gemv.row_start.fp32": start_s})
    short, long_ = _fc(write_yaml, 1024, 16384), _fc(write_yaml, 16384, 1024)
    plain = [_layer(pi, w).time_s for w in (short, long_)]
    assert plain[0] == pytest.approx(plain[1], rel=0.05)
    short_s, long_s = (_layer(walking, w) for w in (short, long_))
    assert short_s.time_s - plain[0] == pytest.approx(16384 * start_s / cores, rel=0.1)
    assert long_s.time_s - plain[1] == pytest.approx(1024 * start_s / cores, rel=0.25)
    assert short_s.bound in ("dram-bandwidth", "dram-row-starts")
    # fp16 has no row cost in this profile: its rows start free
    fp16 = RunOptions(formats=(parse_variant("dense@fp16"),), host_copies=False)
    assert (run(walking, short, fp16).variants[0].layers[0].time_s
            == pytest.approx(run(pi, short, fp16).variants[0].layers[0].time_s, rel=1e-6))
    # a small layer repeated stays in the caches: no row comes from DRAM on the second inference
    small = _fc(write_yaml, 1024, 256)
    warm = RunOptions(formats=(StorageFormat.DENSE,), host_copies=False, repeat=2)
    assert (run(walking, small, warm).variants[0].layers[-1].time_s
            == pytest.approx(run(pi, small, warm).variants[0].layers[-1].time_s, rel=1e-6))


def test_a_packed_int8_gemv_is_one_stream_but_each_tile_of_a_partial_depth_block_starts_one(write_yaml):
    """``gemv.packed_tiles``: fbgemm keeps int8 weights in 512-deep x 8-row tiles, tile after tile, so
    a GEMV from DRAM is one stream, and a depth of whole blocks (1024) pays no start; at a depth of
    768 the last block's tiles are runs with gaps, each a stream: rows / 8 starts at ``row_start``
    for int8, shared by the cores. Without the tile the same start is paid a row, as fp32's is."""
    from simulator.base.yamlio import read_yaml_mapping
    from simulator.compress.variants import parse_variant
    from simulator.hardware.fieldpaths import assign
    from simulator.hardware.profile import profile_from_mapping

    def pi_with(values: dict):
        data = read_yaml_mapping("hwprofiles/raspberry-pi-5.yaml")
        for path, value in values.items():
            assign(data, path, value)
        return profile_from_mapping(data, "pi")

    pi = _profile("raspberry-pi-5")
    start_s, cores, rows = 150e-9, pi.compute.cores, 32768
    by_row = pi_with({"compute.kernels.gemv.row_start.int8": "150 ns"})
    tiled = pi_with({"compute.kernels.gemv.row_start.int8": "150 ns",
                     "compute.kernels.gemv.packed_tiles.int8.depth": 512,
                     "compute.kernels.gemv.packed_tiles.int8.rows": 8})
    int8 = RunOptions(formats=(parse_variant("dense@int8"),), host_copies=False)

    def seconds(profile, depth: int) -> float:
        return run(profile, _fc(write_yaml, depth, rows), int8).variants[0].layers[0].time_s
    for depth in (768, 1024):
        plain = seconds(pi, depth)
        tiles = rows // 8 if depth % 512 else 0
        assert seconds(tiled, depth) - plain == pytest.approx(tiles * start_s / cores, rel=0.1, abs=1e-7)
        assert seconds(by_row, depth) - plain == pytest.approx(rows * start_s / cores, rel=0.1)


def test_packed_int8_tiles_a_cache_level_serves_start_at_that_levels_cost(write_yaml):
    """``gemv.cached_row_start`` for a packed type: 6 MiB of int8 weights at a depth of 768, repeated
    on the i7 (15 MiB L3), come from the L3 on the second inference; its hold grows by a start for
    each tile of the partial last block (rows / 8), shared by the cores, and by none at 1024."""
    from simulator.base.yamlio import read_yaml_mapping
    from simulator.compress.variants import parse_variant
    from simulator.hardware.fieldpaths import assign
    from simulator.hardware.profile import profile_from_mapping

    data = read_yaml_mapping("hwprofiles/i7-5930k.yaml")
    assign(data, "compute.peak_flops.int8", "1344 GFLOP/s")    # AVX2's int8 pairs: twice fp32's
    i7 = profile_from_mapping(data, "i7")
    for path, value in (("compute.kernels.gemv.cached_row_start.L3.int8", "300 ns"),
                        ("compute.kernels.gemv.packed_tiles.int8.depth", 512),
                        ("compute.kernels.gemv.packed_tiles.int8.rows", 8)):
        assign(data, path, value)
    tiled = profile_from_mapping(data, "i7")
    warm = RunOptions(formats=(parse_variant("dense@int8"),), host_copies=False, repeat=2)
    rows = 8192
    for depth in (768, 1024):
        layer = _fc(write_yaml, depth, rows)
        plain, started = (run(p, layer, warm).variants[0].layers[-1] for p in (i7, tiled))
        tiles = rows // 8 if depth % 512 else 0
        assert started.busy_s["L3"] - plain.busy_s["L3"] == pytest.approx(tiles * 300e-9 / started.cores_used,
                                                                          rel=0.15, abs=1e-9)


def test_rows_a_cache_level_serves_pay_that_levels_row_start_and_only_those(write_yaml):
    """``gemv.cached_row_start``: 8 MiB of fp32 weights repeated on the i7 (15 MiB L3) come from the
    L3 on the second inference. Its hold grows by each row's start there on one core, shared by the
    cores, so rows of 1024 columns pay 16x what rows of 16384 pay; a layer read from DRAM (cold, far
    beyond the L3) pays none of it, and a start for a level the profile lacks is refused by name."""
    from simulator.base.yamlio import read_yaml_mapping
    from simulator.hardware.fieldpaths import assign
    from simulator.hardware.profile import profile_from_mapping

    def starting(level: str):
        data = read_yaml_mapping("hwprofiles/i7-5930k.yaml")
        assign(data, f"compute.kernels.gemv.cached_row_start.{level}.fp32", "500 ns")
        return profile_from_mapping(data, "i7")

    i7, walking = _profile("i7-5930k"), starting("L3")
    start_s = 500e-9
    warm = RunOptions(formats=(StorageFormat.DENSE,), host_copies=False, repeat=2)
    for in_features, rows in ((1024, 2048), (16384, 128)):
        layer = _fc(write_yaml, in_features, rows)
        plain, walked = (run(p, layer, warm).variants[0].layers[-1] for p in (i7, walking))
        # (the rows are the bytes the level serves over a row's: the input vector's re-reads count too)
        assert walked.busy_s["L3"] - plain.busy_s["L3"] == pytest.approx(rows * start_s / walked.cores_used,
                                                                          rel=0.15)
        assert walked.time_s >= plain.time_s
    short = _fc(write_yaml, 1024, 2048)
    cores_used = run(i7, short, warm).variants[0].layers[-1].cores_used
    slower = [run(p, short, warm).variants[0].layers[-1].time_s for p in (i7, walking)]
    assert slower[1] > slower[0] + 0.5 * 2048 * start_s / cores_used
    cold = _fc(write_yaml, 1024, 16384)
    assert _layer(walking, cold).time_s == pytest.approx(_layer(i7, cold).time_s, rel=1e-6)
    with pytest.raises(ConfigError, match=r"cached_row_start\.L4.*names no cache level"):
        starting("L4")


def test_a_sparse_loop_that_waits_on_its_gathers_waits_for_those_beyond_the_private_caches(write_yaml):
    """``gathers_in_flight_per_core``: a CSR product at batch 64 on the i7 whose input (2 MiB) lives
    in the L3 holds its cores after its issue for each gather the L3 or DRAM serves, that level's
    latency less the L2's, that many at a time per core (``gather-wait``); half as many in flight
    wait twice as long; an input the L2s hold waits almost nothing; a kernel without the field
    runs its gathers beside its loop, as before."""
    from simulator.engine.core import _latencies, simulate
    from simulator.pipeline import RepeatMode, benchmark_works

    def waiting(in_flight: float):
        return _i7_with("compute.kernels.spmm.gathers_in_flight_per_core", in_flight)

    i7 = _profile("i7-5930k")
    options = RunOptions(batch=64, formats=(StorageFormat.CSR,), host_copies=False, repeat=2,
                         repeat_mode=RepeatMode.LAYER)
    far, near = _fc(write_yaml, 8192, 1024, density=0.05), _fc(write_yaml, 256, 1024, density=0.5)
    (work,) = benchmark_works(i7, far, StorageFormat.CSR, options)
    assert work.traffic.shape.kind is KernelKind.SPMM
    # by hand: the requests each level below the L2 serves, at its latency less the L2's
    l2 = i7.caches[1].latency_s
    extra_s = _latencies(i7, streams=False, footprint_bytes=work.traffic.shape.input_bytes)[1:] - l2
    beyond = work.gather_requests[:, 2:].sum(axis=0)
    assert beyond.sum() > 0.5 * work.gather_requests.sum()        # most gathers come from the L3
    expected_s = float(beyond @ extra_s) / (4 * work.traffic.cores_used)
    (plain,) = simulate(i7, [work])
    (four,) = simulate(waiting(4), [work])
    (two,) = simulate(waiting(2), [work])
    assert "gather-wait" not in plain.busy_s
    assert four.busy_s["gather-wait"] == pytest.approx(expected_s, rel=1e-9)
    assert two.busy_s["gather-wait"] == pytest.approx(2 * expected_s, rel=1e-9)
    assert four.busy_s["compute"] == pytest.approx(plain.busy_s["compute"], rel=1e-9)
    assert two.time_s > four.time_s > plain.time_s
    assert two.time_s >= two.busy_s["compute"] + two.busy_s["gather-wait"]   # after the issue, not beside it
    # an input the L2s hold: next to nothing to wait for
    at_home = _layer(waiting(2), near, StorageFormat.CSR, batch=64)
    assert at_home.busy_s.get("gather-wait", 0.0) < 0.02 * at_home.busy_s["compute"]
    # a batch-1 product (spmv) is another kernel: its gathers run beside its loop
    spmv = _layer(waiting(2), far, StorageFormat.CSR, batch=1)
    assert "gather-wait" not in spmv.busy_s


def test_a_sparse_loop_pays_the_fill_of_each_gathered_line_its_first_level_does_not_hold(write_yaml):
    """``cycles_per_gather_fill``: a CSR SpMV on the i7 whose input (128 KiB) the L1 cannot hold and
    the L2 can spends that many cycles of its loop on each gathered line a level below the L1
    served, shared by its cores, on top of its issue (its ``compute`` grows by exactly that);
    twice the cycles, twice the growth. The same non-zeros gathering over an input the L1 holds
    (8 KiB) pay next to nothing, and a profile without the field times both as before."""
    from simulator.engine.core import simulate
    from simulator.pipeline import RepeatMode, benchmark_works

    def filling(cycles: float):
        return _i7_with("compute.kernels.spmv.cycles_per_gather_fill", cycles)

    i7 = _profile("i7-5930k")
    options = RunOptions(batch=1, formats=(StorageFormat.CSR,), host_copies=False, repeat=2,
                         repeat_mode=RepeatMode.LAYER)
    far, near = _fc(write_yaml, 32768, 512, density=0.05), _fc(write_yaml, 2048, 8192, density=0.05)
    (work,) = benchmark_works(i7, far, StorageFormat.CSR, options)
    assert work.traffic.shape.kind is KernelKind.SPMV
    filled = float(work.gather_requests[:, 1:].sum())
    assert filled > 0.5 * work.traffic.shape.row_steps          # most gathers miss the L1
    per_cycle_s = filled / (i7.compute.clock_hz * work.traffic.cores_used)
    (plain,) = simulate(i7, [work])
    (two,) = simulate(filling(2.0), [work])
    (four,) = simulate(filling(4.0), [work])
    assert two.busy_s["compute"] - plain.busy_s["compute"] == pytest.approx(2 * per_cycle_s, rel=1e-9)
    assert four.busy_s["compute"] - plain.busy_s["compute"] == pytest.approx(4 * per_cycle_s, rel=1e-9)
    assert four.time_s > two.time_s > plain.time_s
    (home,) = benchmark_works(i7, near, StorageFormat.CSR, options)
    assert float(home.gather_requests[:, 1:].sum()) < 0.01 * home.traffic.shape.row_steps
    (home_plain,) = simulate(i7, [home])
    (home_four,) = simulate(filling(4.0), [home])
    assert home_four.busy_s["compute"] < 1.01 * home_plain.busy_s["compute"]


def test_a_line_written_back_holds_dram_for_its_writeback_cost_of_a_line_read(write_yaml):
    """``memory.dram.writeback_cost``: an FC at batch 64 whose 16 MiB output the i7's 15 MiB L3
    cannot keep writes most of it back; DRAM's bandwidth hold is the bytes read plus the cost x
    the bytes written back, over the sustained bandwidth (1: as a read, the default; 0.5: half),
    and the layer, bound by DRAM, gets faster by what the cheaper write-backs take off. A layer
    that writes nothing back is timed the same whatever the cost."""
    from simulator.engine.core import simulate
    from simulator.pipeline import RepeatMode, benchmark_works

    i7 = _profile("i7-5930k")
    assert i7.dram.writeback_cost == 1.0
    half = with_values(i7, {"memory.dram.writeback_cost": 0.5})
    options = RunOptions(batch=64, formats=(StorageFormat.DENSE,), host_copies=False, repeat=2,
                         repeat_mode=RepeatMode.LAYER)
    (work,) = benchmark_works(i7, _fc(write_yaml, 64, 65536), StorageFormat.DENSE, options)
    read, written = float(work.dram_read_bytes.sum()), float(work.dram_write_bytes.sum())
    assert written > 0.5 * 64 * 65536 * 4
    bandwidth = i7.dram.sustained_bandwidth_bytes_per_s
    (full,) = simulate(i7, [work])
    (cheap,) = simulate(half, [work])
    dram_s = {name: sum(v for k, v in r.busy_s.items() if k.startswith("dram")) for name, r in
              (("full", full), ("cheap", cheap))}
    assert dram_s["full"] == pytest.approx((read + written) / bandwidth, rel=1e-6)
    assert dram_s["cheap"] == pytest.approx((read + 0.5 * written) / bandwidth, rel=1e-6)
    assert cheap.time_s < full.time_s
    (reads_only,) = benchmark_works(i7, _fc(write_yaml, 65536, 64), StorageFormat.DENSE,
                                    replace(options, batch=1))
    assert float(reads_only.dram_write_bytes.sum()) < 1e-4 * float(reads_only.dram_read_bytes.sum())
    assert simulate(half, [reads_only])[0].time_s == pytest.approx(simulate(i7, [reads_only])[0].time_s, rel=1e-3)


def test_a_call_faults_in_the_fresh_pages_of_its_buffers_above_the_allocators_threshold(write_yaml):
    """``memory.fresh_pages``: a buffer above the threshold is mapped afresh at every call and its
    pages fault in at the OS's rate: a convolution's output and, channel-blocked, its blocked copy
    (and a blocked input's); smaller buffers are reused and cost nothing; no block, no faults. In
    the engine the faults hold the cores before the kernel's tiles, so a layer's time grows by
    exactly their time, and a layer they dominate is bound by ``page-faults``."""
    from simulator.engine.kernelcost import fresh_page_seconds
    from simulator.hardware.profile import FreshPages

    pi = _profile("raspberry-pi-5")
    mib = 1 << 20
    fresh = with_values(pi, {"memory.fresh_pages": FreshPages(above="32 MiB", bandwidth="2 GB/s")})
    big = _conv_shape(3, 96, side=55, window=121, batch=64)        # AlexNet's conv1 at batch 64: 74 MB out
    small = _conv_shape(3, 96, side=55, window=121, batch=8)       # 9 MB: reused
    assert big.output_bytes > 32 * mib > small.output_bytes
    assert fresh_page_seconds(pi, big) == 0.0
    assert fresh_page_seconds(fresh, small) == 0.0
    assert fresh_page_seconds(fresh, big) == pytest.approx(big.output_bytes / 2e9)
    blocked = with_values(fresh, {"compute.kernels.conv.channel_block": 16})
    assert fresh_page_seconds(blocked, big) == pytest.approx(2 * big.output_bytes / 2e9)   # + its blocked copy
    wide = _conv_shape(96, 256, side=27, window=25, batch=64)      # conv2: 48 MB out, an 18 MB input
    assert fresh_page_seconds(blocked, wide) == pytest.approx(2 * wide.output_bytes / 2e9)  # the input is reused
    pool = KernelShape(KernelKind.POOL, DType.FP32, elements=9 * big.output_bytes // 4, output_bytes=big.output_bytes)
    assert fresh_page_seconds(fresh, pool) == pytest.approx(big.output_bytes / 2e9)   # a pooling's output too
    # end to end: an FC layer whose batch-512 output is 64 MiB
    workload = _fc(write_yaml, 1024, 32768, density=1.0)
    before, after = (run(p, workload, RunOptions(batch=512, formats=(StorageFormat.DENSE,), host_copies=False))
                     .variants[0].layers[0] for p in (pi, fresh))
    faults_s = 512 * 32768 * 4 / 2e9
    assert after.busy_s["page-faults"] == pytest.approx(faults_s)
    assert after.time_s == pytest.approx(before.time_s + faults_s, rel=1e-6)
    slow = with_values(pi, {"memory.fresh_pages": FreshPages(above="32 MiB", bandwidth="0.01 GB/s")})
    assert run(slow, workload, RunOptions(batch=512, formats=(StorageFormat.DENSE,), host_copies=False)) \
        .variants[0].layers[0].bound == "page-faults"
    at_64 = [run(p, workload, RunOptions(batch=64, formats=(StorageFormat.DENSE,), host_copies=False))
             .variants[0].layers[0].time_s for p in (pi, fresh)]        # 8 MiB out: reused
    assert at_64[0] == at_64[1]


def test_a_convolution_wider_than_the_direct_kernel_runs_lowered():
    """``conv.direct_max_kernel``: a window wider than the library's direct convolution takes is
    lowered (im2col, its depth x columns elements written and read back at the bandwidth of the
    level that holds them, and packed by the GEMM as it packs weights) and multiplied by the GEMM
    kernel, without the direct kernel's channel blocks; a window within it, and every window on a
    profile without the field, stays direct."""
    from dataclasses import replace

    from simulator.engine.kernelcost import lowered_convolution, pass_seconds

    pi = with_values(_profile("raspberry-pi-5"), {"compute.kernels.conv.channel_block": 16,
                                                  "compute.kernels.conv.library_efficiency": 0.9,
                                                  "compute.kernels.gemm.library_efficiency": 0.5})
    lowers = with_values(pi, {"compute.kernels.conv.direct_max_kernel": 7})
    cores = pi.compute.cores
    conv1 = _conv_shape(3, 64, side=55, window=121)             # AlexNet's 11 x 11 first layer
    conv3 = _conv_shape(64, 64, side=28)
    assert conv1.kernel_width == 11 and conv3.kernel_width == 3
    assert lowered_convolution(lowers, conv1) and not lowered_convolution(lowers, conv3)
    assert not lowered_convolution(pi, conv1)
    assert dense_seconds(lowers, conv3, cores) == dense_seconds(pi, conv3, cores)
    gemm = dense_seconds(lowers, replace(conv1, kind=KernelKind.GEMM, convolution=False, window=1), cores).seconds
    lowering = pass_seconds(pi, 4 * conv1.depth * conv1.columns, cores)
    assert lowering > 0
    assert dense_seconds(lowers, conv1, cores).seconds == pytest.approx(gemm + lowering)
    # a GEMM that packs its operands packs the lowered matrix too: the large one here
    packs = with_values(lowers, {"compute.kernels.gemm.pack_cycles_per_vector.fp32": 16.0})
    gemm_packed = dense_seconds(packs, replace(conv1, kind=KernelKind.GEMM, convolution=False, window=1),
                                cores).seconds
    packed = math.ceil(conv1.depth * conv1.columns / pi.compute.vector_lanes) * 16.0 / (pi.compute.clock_hz * cores)
    assert dense_seconds(packs, conv1, cores).seconds == pytest.approx(gemm_packed + lowering + packed)
    # the GEMM's efficiency now times it, not the direct convolution's
    assert dense_seconds(lowers, conv1, cores).seconds > dense_seconds(pi, conv1, cores).seconds
