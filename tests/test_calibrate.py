"""calibrate: parsing canned sysfs / lscpu data, settling, the fits, the plausibility checks, and
profile writing.

Nothing here times this machine except one short run of the per-call overhead step: the
measurements are made-up numbers (the sparse timings generated from known issue costs), so the
tests do not depend on how fast (or how busy) the machine running them is.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.base.units import Quantity, format_quantity, parse
from simulator.engine.kernelcost import sparse_seconds
from simulator.hardware.profile import KernelKind, Replacement, load_profile, profile_from_mapping
from simulator.measure import calibrate as cal
from simulator.measure.calibrate import (
    CHECKS,
    STEPS,
    CacheKind,
    ChasePoint,
    Implausible,
    Measurements,
    Settled,
    SparseTiming,
    WorkingSetPoint,
    build_profile,
    csr_with_rows,
    cyclic_chain,
    effective_llc_bytes,
    fit_llc,
    fit_sparse,
    keep_timing,
    parse_cpu_info,
    parse_cpu_list,
    parse_size,
    read_sysfs_caches,
    settle,
    settled,
    working_set_sizes,
    write_profile,
)
from simulator.memory.kernelshape import KernelShape
from simulator.model.workload import DType

DATA = Path(__file__).resolve().parent / "data" / "sysfs_epyc_vm"
MiB = 1 << 20
CLOCK_HZ = 2445.43e6
OVERHEAD_S = 2e-6
FLOOR = 2 * 32768 + 2 * 512 * 1024        # the EPYC VM's private levels on both cores


@pytest.fixture(scope="module")
def caches():
    return read_sysfs_caches(DATA / "cache")


@pytest.fixture(scope="module")
def cpu():
    return parse_cpu_info(*(DATA.joinpath(n).read_text() for n in ("lscpu.txt", "cpuinfo.txt", "meminfo.txt")))


def _curve(scale: float = 1.0):
    """Design notes, section 3: ~50 GB/s to 8 MB, 34 at 16 MB, 25 at 24 MB, ~20 from 32 MB up."""
    points = {0.25: 40, 1: 48, 2: 50, 4: 50, 8: 50, 16: 34, 24: 25, 32: 20, 64: 20, 128: 20}
    return [WorkingSetPoint(int(s * MiB), scale * g * 1e9) for s, g in points.items()]


def sparse_timings(kind, per_nonzero, per_row, width, threads, batches, backend="scipy", call_s=0.0):
    """Timings a kernel with these issue costs (and ``call_s`` of set-up a call) would give on the
    calibration matrices (what the cost model says, plus the per-call overhead); an SpMV also on
    the few-non-zero matrix, as calibrate times it."""
    shapes = [(rows, cal.SPARSE_NONZEROS) for rows in cal.SPARSE_ROWS]
    if kind == "spmv":
        shapes.append((cal.SPARSE_ROWS[1], cal.SPMV_FEW_NONZEROS))
    out = []
    for rows, nonzeros in shapes:
        ptr, _, _ = csr_with_rows(rows, cal.SPARSE_COLUMNS, nonzeros)
        nnz = int(ptr[-1])
        for batch in batches:
            cycles = math.ceil(batch / width) * (nnz * per_nonzero + rows * per_row)
            out.append(SparseTiming(kind, rows, cal.SPARSE_COLUMNS, batch, nnz, nnz,
                                    OVERHEAD_S + call_s + cycles / (CLOCK_HZ * threads), backend, threads))
    return out


@pytest.fixture
def measurements():
    sparse = (sparse_timings("spmv", 3.0, 10.0, 1, 1, (1,))
              + sparse_timings("spmm", 1.5, 20.0, 8, 2, (4, 64), backend="torch"))
    return Measurements(threads=2, versions={"torch": "9.9", "numpy": "1.0"}, load_average=(0.4, 0.5),
                        launch_overhead_s=OVERHEAD_S, small_gemv_s=10e-6, small_gemv_one_thread_s=8e-6,
                        stream_read_bytes_per_s=22e9, stream_triad_bytes_per_s=24e9,
                        stream_read_one_thread_bytes_per_s=14e9, working_set=_curve(),
                        cache_latency_s={1: 1.5e-9, 2: 4e-9, 3: 15e-9}, beyond_latency_s={1: 4e-9, 2: 14e-9},
                        dram_latency_s=110e-9,
                        chases=[ChasePoint(1, 0.6e9), ChasePoint(8, 4e9), ChasePoint(16, 5e9)],
                        gemm_flops_per_s=80e9, sparse=sparse)


def test_sizes_and_cpu_lists():
    assert parse_size("32K") == 32768 and parse_size("32768K") == 32 * MiB and parse_size("1 MiB") == MiB
    assert parse_cpu_list("0-1") == 2 and parse_cpu_list("0") == 1 and parse_cpu_list("0-3,8,10-11") == 7
    with pytest.raises(ValueError):
        parse_size("lots")


def test_quantities_written_read_back():
    for value, quantity in ((52.6e9, Quantity.BYTES_PER_S), (2445.43e6, Quantity.HZ), (1.733e-6, Quantity.SECONDS),
                            (156.5e9, Quantity.FLOP_PER_S), (110e-9, Quantity.SECONDS)):
        assert parse(format_quantity(value, quantity), quantity) == pytest.approx(value, rel=1e-3)
    assert format_quantity(18860032, Quantity.BYTES) == "18418 KiB" and format_quantity(48, Quantity.BYTES) == "48 B"


def test_sysfs_levels_skip_instruction_cache(caches):
    assert [(c.level, c.kind) for c in caches] == [(1, CacheKind.DATA), (2, CacheKind.UNIFIED), (3, CacheKind.UNIFIED)]
    l1, l2, l3 = caches
    assert (l1.size_bytes, l1.ways, l1.line_bytes, l1.sharing_cpus) == (32768, 8, 64, 1)
    assert (l2.size_bytes, l3.size_bytes, l3.ways, l3.sharing_cpus) == (512 * 1024, 32 * MiB, 16, 2)


def test_missing_sysfs_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no cache description"):
        read_sysfs_caches(tmp_path / "nothing")


def test_cpu_info(cpu):
    assert cpu.model == "AMD EPYC" and cpu.cores == 2
    assert cpu.clock_hz == pytest.approx(CLOCK_HZ)
    assert cpu.lanes_per_core == 16            # AVX2 + FMA: 8 lanes x 2 FMA ports
    assert cpu.vector_lanes == 8
    assert cpu.memory_bytes == 24684092 * 1024
    assert replace(cpu, flags=frozenset({"avx512f", "avx2"})).vector_lanes == 16
    assert replace(cpu, flags=frozenset({"asimd"})).vector_lanes == 4
    assert (cpu.vendor, cpu.family) == ("AuthenticAMD", 0)      # the canned lscpu gives no family


def test_zen4_runs_avx512_on_256_bit_pipes(cpu):
    """AMD Zen 4 (family 25) decodes AVX-512 but splits it over two 256-bit FMA pipes: AVX2's FMA
    rate with AVX-512's vector width; Zen 5 and Intel's AVX-512 cores have 512-bit pipes."""
    avx512 = frozenset({"avx512f", "avx2", "fma"})
    zen4 = replace(cpu, flags=avx512, family=25)
    assert zen4.splits_512_bit and (zen4.lanes_per_core, zen4.vector_lanes) == (16, 16)
    assert replace(zen4, family=26).lanes_per_core == 32
    assert replace(zen4, vendor="GenuineIntel", family=6).lanes_per_core == 32
    assert replace(cpu, family=25).lanes_per_core == 16 and not replace(cpu, family=25).splits_512_bit
    assert zen4.peak_flops_per_s == pytest.approx(cpu.cores * 16 * 2 * cpu.clock_hz)


# --- settling -----------------------------------------------------------------------------------

def test_a_measurement_settles_once_its_best_round_is_reproduced():
    assert settled([1.3, 1.0, 1.04]).stable and settled([1.3, 1.0, 1.04]).value == 1.0
    assert not settled([1.0]).stable and not settled([1.0, 1.2]).stable
    figures = {"quiet": iter([1.0, 1.02, 9.0]), "busy": iter([1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])}
    got = settle({k: (lambda it=it: next(it)) for k, it in figures.items()}, max_rounds=6)
    assert got["quiet"].stable and got["quiet"].rounds == 2          # stopped as soon as it agreed
    assert not got["busy"].stable and got["busy"].rounds == 6 and got["busy"].value == 1.0
    assert "NOT settled" in got["busy"].describe() and "NOT" not in got["quiet"].describe()


def test_a_later_look_keeps_each_measurement_at_its_best_look(caches, cpu):
    """A burst on the host can outlast a measurement's rounds, which then agree on the slow figure:
    ``calibrate`` passes over its steps again and keeps each measurement at its faster look, and the
    figures a step derives come from the kept ones."""
    slow_then_fast = {"conv": iter([2.0, 2.02, 1.0, 1.01]), "gemm": iter([1.0, 1.01, 1.2, 1.21])}
    timings = {"conv": [], "gemm": []}

    def step(s):
        got = s.record(settle({k: (lambda it=it: next(it)) for k, it in slow_then_fast.items()}))
        s.m.conv_flops_per_s, s.m.gemm_flops_per_s = 1 / got["conv"], 1 / got["gemm"]
        keep_timing(s.m.sparse, SparseTiming("spmv", 8, 8, 1, 8, 8, got["conv"], "torch", 1))
        timings["conv"].append(s.look)
    m = cal.measure(1, caches, cpu, steps=(cal.Step("both", step),), looks=2)
    assert timings["conv"] == [1, 2]
    assert (m.conv_flops_per_s, m.gemm_flops_per_s) == (1.0, 1.0)        # each its faster look
    assert [t.seconds for t in m.sparse] == [1.0]                          # replaced, not added
    conv, gemm = m.settled["conv"], m.settled["gemm"]
    assert conv.looks == (2.0, 1.0) and conv.rounds == 4 and conv.looks_apart == pytest.approx(1.0)
    assert conv.describe().startswith("best of 2 looks (1e+02% apart), 4 rounds")
    assert gemm.looks_apart == pytest.approx(0.2) and m.moved_between_looks() == ["conv", "gemm"]
    assert m.moved_between_looks(0.5) == ["conv"]
    assert settled([1.0, 1.01]).describe() == "best of 2 rounds (1% apart)"          # one look says none
    unsettled_later = Settled(1.0, 6, 0.2, False).best_of(Settled(1.5, 2, 0.01, True))
    assert not unsettled_later.stable and unsettled_later.value == 1.0      # the kept look's agreement


def test_steps_run_and_record_how_they_settled(caches, cpu):
    """The real per-call overhead step, on one thread (short)."""
    m = cal.measure(1, caches, cpu, steps=(STEPS[1],))
    assert 0 < m.launch_overhead_s < 1e-2 and m.small_gemv_one_thread_s > 0
    assert {"per-call overhead", "256 x 256 GEMV", "256 x 256 GEMV, one thread"} <= set(m.settled)
    assert all(s.rounds >= 2 for s in m.settled.values())
    assert [step.label for step in STEPS][:3] == ["clock (dependent ALU chain)", "per-call overhead",
                                                  "STREAM-like read and triad"]


def test_a_step_that_measures_implausible_figures_stops_the_run(caches, cpu):
    ran = []

    def busy(s):
        s.m.launch_overhead_s = 5e-3
    steps = (cal.Step("busy", busy, ("per-call overhead",)), cal.Step("next", lambda s: ran.append(1)))
    with pytest.raises(Implausible, match="per-call overhead check failed: a 16 x 16 torch.mv takes 5 ms"):
        cal.measure(1, caches, cpu, steps=steps)
    assert not ran
    named = {name for step in STEPS for name in step.checks}
    assert named <= {name for name, _ in CHECKS} and "threads" in named


# --- the last level -----------------------------------------------------------------------------

def test_working_set_sweep_measures_beyond_what_sysfs_claims():
    plain = working_set_sizes(32 * MiB, 24 << 30)
    assert plain[-1] == 128 * MiB                    # 2 x 32 MiB is already swept
    big = working_set_sizes(480 * MiB, 24 << 30)     # the VM of issue #16
    assert big[-1] == 1920 * MiB and 960 * MiB < big[-2] < 1920 * MiB
    # no gap wider than sqrt(2) beyond the fixed sizes: the fall to DRAM is sampled wherever it lies
    assert all(b / a <= 1.42 for a, b in zip(big[15:], big[16:]))
    assert working_set_sizes(480 * MiB, 2 << 30)[-1] == 512 * MiB       # a quarter of the memory at most


def test_effective_llc_is_where_the_curve_crosses_the_middle():
    size, in_cache, dram = effective_llc_bytes(_curve(), floor_bytes=FLOOR, granule_bytes=1024)
    assert in_cache == pytest.approx(50e9) and dram == pytest.approx(20e9)
    # sqrt(50 x 20) = 31.6 GB/s is crossed between 16 MiB (34) and 24 MiB (25)
    assert 16 * MiB < size < 24 * MiB and size % 1024 == 0
    flat = [WorkingSetPoint(p.size_bytes, 30e9) for p in _curve()]
    assert effective_llc_bytes(flat, FLOOR, 1024)[0] == 0            # no fall-off: no size, never sysfs's


def test_plateaus_do_not_depend_on_a_claimed_size():
    # a 16 MiB step swept to 1920 MiB: the DRAM plateau is the far points whatever sysfs claims
    points = [WorkingSetPoint(int(s * MiB), (50e9 if s <= 12 else 20e9))
              for s in (2, 4, 8, 12, 16, 24, 32, 64, 128, 960, 1920)]
    size, in_cache, dram = effective_llc_bytes(points, FLOOR, 1024)
    assert (in_cache, dram) == (pytest.approx(50e9), pytest.approx(20e9)) and 12 * MiB < size < 16 * MiB


def test_llc_policy_fit_follows_the_shape_of_the_fall_off():
    # The design notes' curve falls off gradually from 8 to 32 MiB: random replacement (part of a
    # too-large loop stays) reproduces it far better than an LRU step anywhere.
    gradual = fit_llc(_curve(), FLOOR, 1024, 16)
    assert gradual.replacement is Replacement.RANDOM
    assert gradual.losses[Replacement.RANDOM][1] < gradual.losses[Replacement.LRU][1] / 2
    assert 8 * MiB < gradual.size_bytes < 24 * MiB and gradual.size_bytes % 1024 == 0
    # A sharp step at 16-20 MiB is an LRU cache, at the crossing rule's size.
    step = [WorkingSetPoint(p.size_bytes, (50e9 if p.size_bytes <= 16 * MiB else 20e9)) for p in _curve()]
    step += [WorkingSetPoint(12 * MiB, 50e9), WorkingSetPoint(20 * MiB, 20e9)]
    sharp = fit_llc(step, FLOOR, 1024, 16)
    assert sharp.replacement is Replacement.LRU
    assert sharp.size_bytes == effective_llc_bytes(step, FLOOR, 1024)[0]


def test_cyclic_chain_visits_every_line_once():
    chain = cyclic_chain(64 * 100, 64, seed=3)
    stride = 8
    p, seen = 0, set()
    for _ in range(100):
        seen.add(p)
        p = int(chain[p])
    assert p == 0 and len(seen) == 100 and all(s % stride == 0 for s in seen)


# --- the sparse kernels -------------------------------------------------------------------------

def test_calibration_matrices_have_the_same_nonzeros_on_different_rows():
    for rows in cal.SPARSE_ROWS:
        ptr, idx, val = csr_with_rows(rows, cal.SPARSE_COLUMNS, cal.SPARSE_NONZEROS)
        assert ptr[-1] == cal.SPARSE_NONZEROS == idx.size == val.size and ptr.size == rows + 1
        per_row = idx.reshape(rows, -1)
        assert (np.diff(per_row, axis=1) > 0).all() and per_row.max() < cal.SPARSE_COLUMNS   # distinct, sorted


def test_sparse_fit_recovers_the_issue_costs():
    spmv = fit_sparse(sparse_timings("spmv", 3.0, 10.0, 1, 1, (1,)), OVERHEAD_S, CLOCK_HZ)
    assert (spmv.cycles_per_nonzero, spmv.cycles_per_row) == (pytest.approx(3.0), pytest.approx(10.0))
    assert spmv.columns_per_step == 1 and spmv.error < 1e-6
    # vectorised over 8 columns: batch 4 costs as much as batch 8, so width 1 cannot fit both batches
    timings = sparse_timings("spmm", 1.5, 20.0, 8, 2, (4, 64))
    spmm = fit_sparse(timings, OVERHEAD_S, CLOCK_HZ, widths=(1, 8))
    assert spmm.columns_per_step == 8 and spmm.cycles_per_nonzero == pytest.approx(1.5)
    assert spmm.errors[1] > 0.2 > spmm.errors[8]
    scalar = fit_sparse(sparse_timings("spmm", 0.5, 4.0, 1, 2, (4, 64)), OVERHEAD_S, CLOCK_HZ, widths=(1, 8))
    assert scalar.columns_per_step == 1 and scalar.cycles_per_nonzero == pytest.approx(0.5)
    # costs never fall below the floor (a row cost the timings do not show)
    no_rows = fit_sparse(sparse_timings("spmv", 3.0, 0.0, 1, 1, (1,)), OVERHEAD_S, CLOCK_HZ)
    assert no_rows.cycles_per_row == cal.MIN_CYCLES


def test_a_librarys_set_up_per_call_is_told_from_its_cost_per_nonzero(caches, cpu, measurements):
    """A library that spends 10 us setting up every call (torch's CSR product: a new MKL handle and a
    fork and join): at two non-zero counts the fit gives the set-up and the true cost per non-zero.
    Without the per-call unknown the set-up is spread over the calibration's non-zeros, and a layer
    with a million of them would pay it a hundred times over. The library's SpMM takes its SpMV's
    set-up, and the profile carries it as ``call_overhead``."""
    timings = sparse_timings("spmv", 2.0, 5.0, 1, 2, (1,), backend="torch", call_s=10e-6)
    fit = fit_sparse(timings, OVERHEAD_S, CLOCK_HZ, per_call=True)
    assert fit.call_overhead_s == pytest.approx(10e-6, rel=1e-3)
    assert (fit.cycles_per_nonzero, fit.cycles_per_row) == (pytest.approx(2.0, rel=1e-3), pytest.approx(5.0, rel=1e-2))
    folded = fit_sparse([t for t in timings if t.nonzeros == cal.SPARSE_NONZEROS], OVERHEAD_S, CLOCK_HZ, per_call=True)
    assert folded.call_overhead_s == 0.0 and folded.cycles_per_nonzero > 2.5     # one count: nothing to tell it by
    spmm = sparse_timings("spmm", 1.5, 20.0, 8, 2, (4, 64), backend="torch", call_s=10e-6)
    fits = cal.fit_measurements(caches, cpu, replace(measurements, sparse=timings + spmm))
    assert fits.spmm.call_overhead_s == fits.spmv.call_overhead_s == pytest.approx(10e-6, rel=1e-3)
    assert fits.spmm.cycles_per_nonzero == pytest.approx(1.5, rel=1e-2)
    t = timings[0]
    two_looks = Settled(t.seconds, 5, 0.01, True, (t.seconds * 1.4, t.seconds))
    looked = {cal._sparse_label("spmv", "torch", (t.rows, t.nonzeros, t.columns)): two_looks}
    both = replace(measurements, sparse=timings + spmm, settled=looked)
    profile = profile_from_mapping(build_profile(caches, cpu, both), "host")
    assert profile.compute.kernels.spmv.call_overhead_s == pytest.approx(10e-6, rel=1e-3)
    note = profile.fitted["compute.kernels.spmv.cycles_per_nonzero"]
    assert "set-up per call" in note
    assert f"{t.rows} rows, {t.nonzeros} non-zeros at batch 1 (torch) best of 2 looks (40% apart)" in note


def test_the_engine_charges_a_sparse_kernels_set_up_once_per_call(caches, cpu, measurements, write_yaml):
    """A CSR layer on a profile whose SpMV sets up for 40 us a call takes 40 us longer than on the
    same profile without it, whatever its size: the set-up is paid once, like the launch."""
    from simulator.compress.variants import parse_variant
    from simulator.hardware.profile import profile_from_mapping as load
    from simulator.model.workload import load_workload
    from simulator.pipeline import RunOptions, run

    mapping = build_profile(caches, cpu, measurements)
    with_set_up = copy.deepcopy(mapping)
    with_set_up["compute"]["kernels"]["spmv"]["call_overhead"] = "40 us"
    times = []
    for out in (256, 4096):
        workload = load_workload(write_yaml(f"fc{out}.yaml", {
            "schema_version": 1, "name": "fc", "source": "tests", "input_shape": [1024],
            "layers": [{"name": "fc", "kind": "fc", "in_features": 1024, "out_features": out, "density": 0.1}]}))
        times.append([run(load(m, "host"), workload, RunOptions(formats=(parse_variant("csr"),), host_copies=False))
                      .variants[0].layers[0].time_s for m in (mapping, with_set_up)])
    for plain, set_up in times:
        assert set_up - plain == pytest.approx(40e-6, rel=0.02)


def test_a_measured_clock_replaces_the_listed_one(caches, cpu, measurements):
    # a VM lists its host's base clock; at the 3.2 GHz the core really ran at, GEMM's 180 GFLOP/s on
    # two AVX2 cores is under the peak (at the listed 2.445 GHz it would be above it)
    fast = replace(measurements, gemm_flops_per_s=180e9)
    with pytest.raises(Implausible, match="beats the peak"):
        build_profile(caches, cpu, fast)
    mapping = build_profile(caches, cpu, replace(fast, clock_hz=3.2e9))
    profile = profile_from_mapping(mapping, "x")
    assert profile.compute.clock_hz == pytest.approx(3.2e9) and profile.peak_flops_per_s == pytest.approx(204.8e9)
    assert profile.compute.kernels.gemm.library_efficiency == pytest.approx(180 / 204.8, rel=1e-3)
    assert "lscpu / cpuinfo say 2.445 GHz" in mapping["sources"]["compute.clock"]
    # the sparse costs are cycles at the real clock: the same timings are more cycles
    assert profile.compute.kernels.spmv.cycles_per_nonzero == pytest.approx(3.0 * 3.2e9 / CLOCK_HZ, rel=1e-3)


def test_fitted_costs_reproduce_the_timings_through_the_cost_model(caches, cpu, measurements):
    profile = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    for t in measurements.sparse:
        kind = KernelKind.SPMV if t.kind == "spmv" else KernelKind.SPMM
        shape = KernelShape(kind, DType.FP32, rows=t.rows, columns=t.columns, depth=t.depth, nonzeros=t.nonzeros,
                            row_steps=t.row_steps)
        cores = profile.compute.threads.of(kind) or profile.compute.cores
        assert cores == t.threads
        predicted = sparse_seconds(profile, shape, cores).seconds + profile.compute.launch_overhead_s
        assert predicted == pytest.approx(t.seconds, rel=2e-3)


# --- the profile --------------------------------------------------------------------------------

def test_profile_is_valid_and_says_it_was_measured(caches, cpu, measurements, tmp_path):
    when = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
    mapping = build_profile(caches, cpu, measurements, when=when, fit_llc_policy=True)
    path = tmp_path / "host.yaml"
    write_profile(mapping, path)
    profile = load_profile(path)
    assert "Measured" in profile.description and "2026-01-02 03:04 UTC" in profile.description
    assert "2 thread(s)" in profile.description and "torch 9.9" in profile.description
    l3 = profile.caches[-1]
    # the gradual fall-off of the design notes' curve: random replacement at its best size
    assert l3.replacement.value == "random" and all(c.replacement.value == "lru" for c in profile.caches[:-1])
    assert 8 * MiB < l3.size_bytes < 24 * MiB and l3.shared and l3.bandwidth_bytes_per_s == pytest.approx(50e9)
    assert "sysfs says 32768 KiB, not used" in profile.fitted["memory.caches.L3.size"]
    assert "lru " in profile.fitted["memory.caches.L3.size"] and "memory.caches.L3.replacement" in profile.fitted
    assert "confirmed" in profile.sources["memory.caches.L2.size"]
    dram = profile.dram
    assert dram.sustained_bandwidth_bytes_per_s == pytest.approx(20e9, rel=1e-3)
    assert dram.latency_s == pytest.approx(110e-9, rel=1e-3)
    peak = 2 * 16 * 2 * CLOCK_HZ
    compute = profile.compute
    assert profile.peak_flops_per_s == pytest.approx(peak, rel=1e-3) and compute.vector_lanes == 8
    kernels = compute.kernels
    assert kernels.gemm.library_efficiency == pytest.approx(80e9 / peak, rel=1e-3)
    assert kernels.conv.library_efficiency == kernels.gemm.library_efficiency
    assert kernels.gemv.library_efficiency == 1.0                 # left to the traffic
    assert (kernels.spmv.cycles_per_nonzero, kernels.spmv.cycles_per_row) == (pytest.approx(3.0), pytest.approx(10.0))
    assert kernels.spmm.columns_per_step == 8 and kernels.spmm.cycles_per_nonzero == pytest.approx(1.5)
    assert kernels.spconv.algorithm.value == "im2col"
    assert (kernels.spconv.cycles_per_nonzero, kernels.spconv.columns_per_step) == (1.5, 8)
    # scipy's SpMV ran on one thread; torch's SpMM on both
    assert compute.threads.spmv == 1 and compute.threads.spmm is None and compute.threads.spconv is None
    for key in ("compute.kernels.gemm.library_efficiency", "compute.kernels.spmv.cycles_per_nonzero",
                "compute.kernels.spmm.columns_per_step", "memory.dram.sustained_bandwidth"):
        assert "calibrate" in profile.fitted[key], key
    for key in ("compute.vector_lanes", "compute.outstanding_gathers_per_core", "compute.kernels.spconv",
                "compute.threads", "memory.dram.outstanding_requests_per_core"):
        assert key in profile.sources, key
    assert path.read_text().startswith("# Measured on this machine")


def test_streams_and_gathers_have_their_own_requests_in_flight(caches, cpu, measurements):
    mapping = build_profile(caches, cpu, measurements)
    profile = profile_from_mapping(mapping, "x")
    # one thread reading 14 GB/s sequentially at 110 ns keeps 24 lines in flight (prefetched stream);
    # the interleaved chases' best 5 GB/s at 110 ns is 8.6 demand misses
    assert profile.dram.outstanding_requests_per_core == 24
    assert profile.compute.outstanding_gathers_per_core == 9
    assert "sequential read" in mapping["sources"]["memory.dram.outstanding_requests_per_core"]
    assert "pointer chases" in mapping["sources"]["compute.outstanding_gathers_per_core"]
    slow_stream = profile_from_mapping(build_profile(
        caches, cpu, replace(measurements, stream_read_one_thread_bytes_per_s=2e9)), "y")
    assert slow_stream.dram.outstanding_requests_per_core == 3 and slow_stream.compute.outstanding_gathers_per_core == 9


def test_default_llc_is_an_lru_step_with_the_other_fits_recorded(caches, cpu, measurements):
    mapping = build_profile(caches, cpu, measurements)
    l3 = mapping["memory"]["caches"][-1]
    assert l3["replacement"] == "lru"
    size = profile_from_mapping(mapping, "x").caches[-1].size_bytes
    assert 16 * MiB < size < 24 * MiB      # the crossing, as in the test above
    note = mapping["fitted"]["memory.caches.L3.size"]
    assert "--llc-policy lru" in note and "random " in note and "dip " in note
    assert "memory.caches.L3.replacement" not in mapping["fitted"]


def test_unsettled_measurements_are_said(caches, cpu, measurements):
    measurements.settled = {"DRAM latency": cal.Settled(110e-9, 6, 0.3, False),
                            "STREAM read": cal.Settled(0.01, 2, 0.01, True)}
    mapping = build_profile(caches, cpu, measurements)
    assert "Did not settle" in mapping["description"] and "DRAM latency" in mapping["description"]
    assert "NOT settled" in mapping["sources"]["memory.dram.latency"]
    assert "NOT" not in mapping["sources"]["memory.dram.peak_bandwidth"]


def test_write_profile_refuses_an_invalid_mapping(caches, cpu, measurements, tmp_path):
    mapping = build_profile(caches, cpu, measurements)
    mapping["memory"]["caches"][0]["line"] = "48 B"
    with pytest.raises(ConfigError, match="power of two"):
        write_profile(mapping, tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()
    profile_from_mapping(build_profile(caches, cpu, measurements), "again")


# --- plausibility -------------------------------------------------------------------------------

def _busy_curve():
    """Issue #16: the small working sets slowed by another process, the big ones not."""
    points = {2: 3.9, 4: 4.0, 8: 3.97, 16: 4.1, 32: 12.8, 64: 12.8, 128: 12.9}
    return [WorkingSetPoint(int(s * MiB), g * 1e9) for s, g in points.items()]


IMPLAUSIBLE = {
    "per-call overhead": {"launch_overhead_s": 300e-6},
    "threads": {"small_gemv_s": 3.8e-3, "small_gemv_one_thread_s": 20e-6},
    "private cache sizes": {"beyond_latency_s": {1: 4e-9, 2: 4.2e-9}},
    "working-set curve": {"working_set": _busy_curve()},
    "last-level size": {"working_set": [WorkingSetPoint(p.size_bytes, 30e9) for p in _curve()]},
    "latency order": {"dram_latency_s": 10e-9},
    "kernel rates": {"gemm_flops_per_s": 200e9},
    "cache order": {"working_set": _curve(scale=4.0)},      # a 200 GB/s L3 under a 156 GB/s pair of L2s
}


@pytest.mark.parametrize("check", sorted(IMPLAUSIBLE))
def test_each_plausibility_check_refuses(caches, cpu, measurements, check):
    with pytest.raises(Implausible) as err:
        build_profile(caches, cpu, replace(measurements, **IMPLAUSIBLE[check]))
    assert err.value.check == check
    line = str(err.value)
    assert "\n" not in line and f"the {check} check failed" in line and "no profile written" in line
    assert "load average 0.40 before, 0.50 after" in line
    assert set(IMPLAUSIBLE) == {name for name, _ in CHECKS} | {"cache order"}


def test_a_gemm_slope_within_its_noise_above_the_peak_is_kept_at_efficiency_one(caches, cpu, measurements):
    # the slope is a difference of two settled times: 5% above the peak is its noise, 15% is not
    peak = replace(measurements, clock_hz=3.2e9)
    at_peak = 2 * 2 * 8 * 2 * 3.2e9        # 2 cores x 2 FMA ports x 8 lanes x 2 FLOP x clock
    mapping = build_profile(caches, cpu, replace(peak, gemm_flops_per_s=1.05 * at_peak))
    profile = profile_from_mapping(mapping, "x")
    assert profile.compute.kernels.gemm.library_efficiency == 1.0
    assert "above the peak by less than its noise" in profile.fitted["compute.kernels.gemm.library_efficiency"]
    with pytest.raises(Implausible, match="beats the peak"):
        build_profile(caches, cpu, replace(peak, gemm_flops_per_s=1.15 * at_peak))


def test_refusals_say_why(caches, cpu, measurements):
    def why(**changes):
        with pytest.raises(Implausible) as err:
            build_profile(caches, cpu, replace(measurements, **changes))
        return err.value.why
    assert "3.8 ms on 2 threads against 20 us on one" in why(small_gemv_s=3.8e-3, small_gemv_one_thread_s=20e-6)
    assert "the 2 threads got 67% of 2 cores' time" in why(cpu_share=0.67)      # another process holds a core
    assert "other processes busy" in why(small_gemv_s=3.8e-3, small_gemv_one_thread_s=20e-6)
    assert "on 2 threads against" in why(stream_read_bytes_per_s=8e9)              # threads, streaming
    assert "32 MiB (12.8 GB/s) is faster than over 2 MiB (3.9 GB/s)" in why(working_set=_busy_curve())
    assert "sysfs claims 32 MiB" in why(working_set=[WorkingSetPoint(p.size_bytes, 30e9) for p in _curve()])
    too_fast = sparse_timings("spmm", 0.2, 1.0, 8, 2, (4, 64), "torch")
    assert "spmm's fit costs 0.2 cycles" in why(sparse=measurements.sparse_of("spmv") + too_fast)
    assert "beats the peak" in why(gemm_flops_per_s=200e9)


def test_cli_refusal_is_one_line_and_exit_2(caches, cpu, measurements, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cal, "read_sysfs_caches", lambda: caches)
    monkeypatch.setattr(cal, "read_cpu_info", lambda: cpu)
    busy = replace(measurements, working_set=_busy_curve())
    monkeypatch.setattr(cal, "measure", lambda threads, c, p, progress, looks: busy)
    out = tmp_path / "host.yaml"
    assert cli.main(["calibrate", "--out", str(out), "--threads", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "working-set curve check failed" in err[0] and not out.exists()
    looked = []
    monkeypatch.setattr(cal, "measure", lambda threads, c, p, progress, looks: looked.append(looks) or measurements)
    assert cli.main(["calibrate", "--out", str(out), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "spmm 1.5 cycles per non-zero" in printed and "24 stream lines, 9 gathers" in printed
    assert load_profile(out).compute.kernels.spmm.columns_per_step == 8
    assert looked == [cal.LOOKS] and "apart between the" not in printed    # the canned figures have one look
    two_looks = cal.Settled(1e-3, 4, 0.01, True, (1.4e-3, 1e-3))
    moved = replace(measurements, settled={"GEMM 512 x 512 at batch 64": two_looks})
    monkeypatch.setattr(cal, "measure", lambda threads, c, p, progress, looks: looked.append(looks) or moved)
    assert cli.main(["calibrate", "--out", str(out), "--threads", "2", "--looks", "3"]) == 0 and looked[-1] == 3
    assert "1 of 1 measurements came out more than 10% apart between the 3 looks" in capsys.readouterr().out
    for bad in ("0", "9", "two"):
        with pytest.raises(SystemExit) as stopped:
            cli.main(["calibrate", "--out", str(out), "--looks", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert stopped.value.code == 2
        assert len(err) == 1 and "--looks" in err[0]


def test_cli_out_in_missing_directory(tmp_path, capsys):
    assert cli.main(["calibrate", "--out", str(tmp_path / "no" / "host.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]


def test_type_gemm_rates_become_effective_peaks_the_cost_model_reproduces(caches, cpu, measurements):
    from simulator.compress.precision import plan_precision
    from simulator.compress.variants import parse_variant
    from simulator.engine.kernelcost import core_flops_per_s

    typed = replace(measurements, type_gemm_flops_per_s={"bf16": 160e9, "int8": 240e9})
    profile = profile_from_mapping(build_profile(caches, cpu, typed), "host")
    compute = profile.compute
    for dtype, rate in (("bf16", 160e9), ("int8", 240e9)):
        assert compute.peak_flops.of(dtype) == pytest.approx(compute.peak_flops.fp32 * rate / 80e9, rel=1e-3)
        # a type's peak x the GEMM efficiency on the threads measured = the rate torch reached
        reached = core_flops_per_s(profile, DType(dtype)) * compute.kernels.gemm.library_efficiency * typed.threads
        assert reached == pytest.approx(rate, rel=2e-3)
        assert "calibrate" in profile.fitted[f"compute.peak_flops.{dtype}"]
    assert plan_precision(profile, parse_variant("dense@int8"), DType.FP32).arithmetic is DType.INT8
    assert plan_precision(profile, parse_variant("dense@bf16"), DType.FP32).emulated is None
    bsr = compute.kernels.bsr
    assert bsr.library_efficiency == compute.kernels.gemm.library_efficiency
    assert bsr.cycles_per_block == pytest.approx(3.0) and bsr.columns_per_step == 8
    assert "not fitted" in profile.sources["compute.kernels.bsr"]
    # nothing measured in a type: no peak for it (bf16 is then emulated, int8 refused)
    plain = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    assert plain.compute.peak_flops.of("int8") is None and plain.compute.peak_flops.of("bf16") is None


def test_the_last_levels_stream_latency_follows_its_streaming_rate():
    """Little's law: 2 threads x 31 lines x 64 B at 66.5 GB/s is 59.7 ns, below a 110 ns chase (the
    host of docs/validation.md); a chase already fast enough for the rate gives no stream latency."""
    m = Measurements(threads=2, versions={}, stream_read_one_thread_bytes_per_s=18e9, dram_latency_s=110.5e-9)
    notes = cal.Notes("test")
    at = notes.under("memory.caches.L3")
    assert cal._llc_stream_latency(m, 64, 66.5e9, 110.5e-9, at) == pytest.approx(2 * 31 * 64 / 66.5e9)
    assert "memory.caches.L3.stream_latency" in notes.fitted
    assert cal._llc_stream_latency(m, 64, 66.5e9, 40e-9, at) is None


def test_the_lowering_copy_rate_is_cycles_per_element_written():
    """``F.unfold`` timed at two widths: (seconds - per-call overhead) x clock x threads / elements."""
    timed = [(elements, 1e-6 + elements * 4 / (4e9 * 2)) for elements in (1440 * 100, 1440 * 324)]
    m = Measurements(threads=2, versions={}, launch_overhead_s=1e-6, lowering=timed)
    assert cal.lowering_cycles(m, 4e9) == pytest.approx(4.0)


def test_gemv_loop_rates_become_cycles_per_vector_the_cost_model_reproduces(caches, cpu, measurements):
    """A cache-resident GEMV's weights per second per type: the profile's gemv cycles per vector,
    and the cost model's issue time of the same GEMV on the threads measured is the measured time."""
    from simulator.engine.kernelcost import dense_seconds
    from simulator.memory.kernelshape import KernelShape

    rates = {"fp32": 20e9, "bf16": 10e9, "int8": 40e9}
    profile = profile_from_mapping(build_profile(caches, cpu, replace(measurements, gemv_weights_per_s=rates)), "host")
    loop = profile.compute.kernels.gemv.cycles_per_vector
    assert loop.bf16 == pytest.approx(2 * loop.fp32, rel=1e-3) and loop.int8 == pytest.approx(loop.fp32 / 2, rel=1e-3)
    for dtype, rate in rates.items():
        shape = KernelShape(KernelKind.GEMV, DType(dtype), rows=512, columns=1, depth=1024)
        issued = dense_seconds(profile, shape, measurements.threads)
        assert issued.mechanism == "vector-loop"
        assert issued.seconds == pytest.approx(512 * 1024 / rate, rel=0.01)
        assert "calibrate" in profile.fitted[f"compute.kernels.gemv.cycles_per_vector.{dtype}"]
    # nothing measured: no loop rate, a GEMV is timed by its FMAs
    plain = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    assert plain.compute.kernels.gemv.cycles_per_vector.of("bf16") is None


def test_a_type_whose_gemv_beyond_the_caches_takes_more_than_the_larger_gets_the_share_its_loads_ran_under(
        caches, cpu, measurements):
    """bf16 at 27 G weights/s in cache (0.62 ms of loop over 32 MiB) and fp32 streaming the same bytes in
    0.62 ms: bf16 measured at 1.24 ms is the sum (its loads waited for its loop: 0), at 0.93 ms half
    its loop on top of the larger (0.5); int8 at the larger of its loop and the memory streams (1,
    nothing written)."""
    loop_s = 16 * MiB / 27e9
    typed = replace(measurements, gemv_weights_per_s={"fp32": 40e9, "bf16": 27e9, "int8": 188e9},
                    gemv_beyond_s={"fp32": 0.62e-3, "bf16": loop_s + 0.62e-3, "int8": 0.62e-3})
    profile = profile_from_mapping(build_profile(caches, cpu, typed), "host")
    gemv = profile.compute.kernels.gemv
    assert gemv.load_overlap.bf16 == pytest.approx(0.0, abs=1e-3) and gemv.load_overlap.of("int8") is None
    assert "1241 us" in profile.sources["compute.kernels.gemv.load_overlap"]
    half = replace(typed, gemv_beyond_s={"fp32": 0.62e-3, "bf16": 0.62e-3 + loop_s / 2, "int8": 0.62e-3})
    assert profile_from_mapping(build_profile(caches, cpu, half), "host").compute.kernels.gemv.load_overlap.bf16 \
        == pytest.approx(0.5, abs=1e-3)
    # a loop with a cost a row: its rows of 1024 over the 32 MiB add half its weights' time to the loop
    rowed = replace(half, gemv_row_s={"bf16": loop_s / 2 / (16 * MiB // 1024)})
    assert cal.gemv_load_overlaps(rowed)["bf16"].loop_s == pytest.approx(1.5 * loop_s)
    assert cal.gemv_load_overlaps(rowed)["bf16"].overlap == pytest.approx(1 / 1.5, abs=1e-3)


def _row_probe(bandwidth: float, row_start_s: float, size: int = 64 * MiB) -> dict[tuple[str, int], float]:
    """fp32 GEMV times of the row probe: the bytes at ``bandwidth`` plus ``row_start_s`` a row."""
    return {("fp32", cols): size / bandwidth + size / (4 * cols) * row_start_s for cols in cal.ROW_PROBE_COLUMNS}


def test_the_row_probe_splits_a_gemv_beyond_the_caches_into_bytes_and_row_starts():
    """fp32 GEMVs over the same bytes in short and long rows (1000 and 16000 columns: no multiple of a
    page, whose rows start cheaper): the short rows' extra time is a cost per row; what is left is the
    bandwidth. No extra time, or only noise: no row cost."""
    m = Measurements(threads=2, versions={}, gemv_rows_bytes=64 * MiB, gemv_rows_s=_row_probe(24e9, 72e-9))
    rows = cal.row_streams(m)
    assert rows is not None
    assert rows.bandwidth_bytes_per_s == pytest.approx(24e9) and rows.row_start_s == pytest.approx(72e-9)
    assert cal.row_streams(replace(m, gemv_rows_s=_row_probe(24e9, 0.0))) is None
    assert cal.row_streams(replace(m, gemv_rows_bytes=0)) is None and cal.row_streams(Measurements(2, {})) is None
    long_row = cal.ROW_PROBE_COLUMNS[-1] * 4               # the probe's sizes are whole long rows of fp32

    def whole(size: int) -> int:
        return size // long_row * long_row
    assert cal.row_probe_bytes(16 * MiB, 24 << 30) == whole(64 * MiB)    # four times the claimed last level
    assert cal.row_probe_bytes(32 * MiB, 512 * MiB) == whole(64 * MiB)   # an eighth of the memory
    assert cal.row_probe_bytes(480 * MiB, 24 << 30) == whole(cal.ROW_PROBE_MAX_BYTES)
    assert cal.row_probe_bytes(1 * MiB, 0) == whole(cal.GEMV_BEYOND_BYTES)
    assert all(4 * c % 4096 for c in cal.ROW_PROBE_COLUMNS)               # no row a whole number of pages


def test_the_dram_streams_at_the_lightest_loops_rate_and_fp32_waits_for_part_of_its_own(caches, cpu, measurements):
    """Beyond the caches fp32's GEMV may stream slower than the DRAM can (on the Zen 3 guest its
    loop holds its loads back: 18-21 GB/s where int8's GEMV of the same bytes streams 26-33): the
    DRAM's sustained bandwidth is the faster of fp32's fit and int8's long rows, and fp32's own
    ``load_overlap`` is the share of its loop its loads ran under at that rate, its row starts
    paid; an int8 stream no faster than fp32's fit leaves both as they were."""
    size, start_s = 64 * MiB, 72e-9
    probe = _row_probe(20e9, start_s, size)
    short, long_ = cal.ROW_PROBE_COLUMNS
    loop = {"fp32": 10e9, "bf16": 20e9, "int8": 160e9}
    loop_s = size / 4 / loop["fp32"]
    starts_s = size // (4 * long_) * start_s
    probe[("int8", long_)] = size / 30e9                                   # the DRAM's own rate
    probe[("fp32", long_)] = size / 30e9 + starts_s + 0.75 * loop_s       # a quarter of its loop under its loads
    probe[("fp32", short)] = probe[("fp32", long_)] + (size // (4 * short) - size // (4 * long_)) * start_s
    m = replace(measurements, gemv_weights_per_s=loop, gemv_rows_bytes=size, gemv_rows_s=probe)
    rows = cal.row_streams(m)
    assert rows is not None and rows.streamed_by == "int8"
    assert rows.bandwidth_bytes_per_s == pytest.approx(30e9) and rows.row_start_s == pytest.approx(start_s, rel=1e-3)
    assert rows.fitted_bytes_per_s < 30e9
    fp32 = cal.gemv_load_overlaps(m)["fp32"]
    assert fp32.overlap == pytest.approx(0.25, abs=2e-3)
    assert fp32.memory_s == pytest.approx(size / 30e9 + starts_s)
    profile = profile_from_mapping(build_profile(caches, cpu, m), "host")
    assert profile.dram.sustained_bandwidth_bytes_per_s == pytest.approx(30e9, rel=1e-3)
    assert profile.compute.kernels.gemv.load_overlap.fp32 == pytest.approx(0.25, abs=2e-3)
    assert "int8's GEMV" in profile.fitted["memory.dram.sustained_bandwidth"]
    # int8 no faster than fp32's fit: the fit's bandwidth, and fp32 at the larger of its loop and memory
    slow = replace(m, gemv_rows_s={**_row_probe(20e9, start_s, size), ("int8", long_): size / 18e9})
    rows = cal.row_streams(slow)
    assert rows is not None and rows.streamed_by == "fp32" and rows.bandwidth_bytes_per_s == pytest.approx(20e9)
    assert cal.gemv_load_overlaps(slow)["fp32"].overlap == 1.0


def test_the_row_probe_writes_the_row_start_the_bandwidth_and_which_types_take_turns(caches, cpu, measurements):
    """The fit's bandwidth is the DRAM's sustained one (the curve's plateau, in rows of 4000 B, paid their
    starts), the row cost on one core is the machine's times its threads, and a type's GEMV over the
    probe's bytes is judged against its loop and those bytes at that bandwidth: bf16 at the sum waits
    for its loop (load_overlap 0), int8 at the larger streams."""
    size = 64 * MiB
    probe = _row_probe(24e9, 72e-9, size)
    loop = {"fp32": 14e9, "bf16": 20e9, "int8": 160e9}
    memory_s = size / 24e9
    short = cal.ROW_PROBE_COLUMNS[0]
    probe[("bf16", short)] = memory_s + size / 2 / loop["bf16"]
    probe[("int8", short)] = memory_s
    typed = replace(measurements, gemv_weights_per_s=loop, gemv_rows_bytes=size, gemv_rows_s=probe)
    profile = profile_from_mapping(build_profile(caches, cpu, typed), "host")
    gemv = profile.compute.kernels.gemv
    assert gemv.row_start.fp32 == pytest.approx(2 * 72e-9, rel=1e-3) and gemv.row_start.of("bf16") is None
    assert profile.dram.sustained_bandwidth_bytes_per_s == pytest.approx(24e9, rel=1e-3)
    assert gemv.load_overlap.bf16 == 0.0 and gemv.load_overlap.of("int8") is None
    assert "row start" in profile.fitted["compute.kernels.gemv.row_start.fp32"]
    assert "row probe" in profile.fitted["memory.dram.sustained_bandwidth"]
    # no probe: the curve's plateau, no row cost
    plain = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    assert plain.compute.kernels.gemv.row_start.of("fp32") is None
    assert plain.dram.sustained_bandwidth_bytes_per_s != pytest.approx(24e9, rel=0.01)


def test_fbgemm_packs_int8_in_tiles_and_each_tile_of_a_partial_depth_block_starts_a_stream(caches, cpu,
                                                                                           measurements):
    """fbgemm's int8 tile follows the instruction set it picks (PackingTraits: AVX2 512 x 8, AVX-512
    256 x 32, VNNI 512 x 48), and only where torch's engine is fbgemm's. Over the row probe's bytes,
    int8 at a depth whose last block is half full (768) has rows / 8 tiles that each start a stream,
    the long rows (16000 columns, last block 128 deep) far fewer: the two times give a start a tile,
    which the profile writes as int8's ``row_start`` on one core beside the tile, and the long rows'
    bandwidth (the DRAM's own) is their bytes' time without those starts; the same probe inside the
    last level gives that level's start a tile (``cached_row_start``). No slower: no start."""
    avx2 = frozenset({"avx", "avx2", "fma"})
    avx512 = avx2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
    assert cal.fbgemm_int8_tile(avx2, "x86") == (512, 8) and cal.fbgemm_int8_tile(avx2, "fbgemm") == (512, 8)
    assert cal.fbgemm_int8_tile(avx512, "x86") == (256, 32)
    assert cal.fbgemm_int8_tile(avx512 | {"avx512_vnni"}, "x86") == (512, 48)
    assert cal.fbgemm_int8_tile(avx2, "qnnpack") is None and cal.fbgemm_int8_tile(frozenset({"neon"}), "x86") is None
    tile, size, start_s, bandwidth = (512, 8), 64 * MiB, 70e-9, 30e9
    depth, long_ = cal.partial_tile_depth(tile), cal.ROW_PROBE_COLUMNS[-1]
    assert depth == 768
    assert cal.packed_streams(tile, size, depth) == -(-(size // 768) // 8)
    assert cal.packed_streams(tile, size, 1024) == 0 and cal.packed_streams(None, size, depth) == 0
    # int8's short rows (its load overlap's probe) are whole tiles: no start in them
    assert cal.short_columns("int8", tile) == 1024 and cal.short_columns("int8", (256, 32)) == 1024
    assert cal.short_columns("int8", None) == cal.short_columns("bf16", tile) == cal.ROW_PROBE_COLUMNS[0]
    probe = _row_probe(20e9, 72e-9, size)
    for cols in (depth, long_):
        probe[("int8", cols)] = size / bandwidth + cal.packed_streams(tile, size, cols) * start_s
    m = replace(measurements, gemv_rows_bytes=size, gemv_rows_s=probe, int8_tile=tile,
                gemv_weights_per_s={"fp32": 14e9, "bf16": 20e9, "int8": 160e9})
    packed = cal.packed_starts(m)
    assert packed is not None and packed.start_s == pytest.approx(start_s) and packed.depth == depth
    rows = cal.row_streams(m)
    assert rows is not None and rows.streamed_by == "int8" and rows.bandwidth_bytes_per_s == pytest.approx(bandwidth)
    profile = profile_from_mapping(build_profile(caches, cpu, m), "host")
    gemv = profile.compute.kernels.gemv
    assert gemv.row_start.int8 == pytest.approx(m.threads * start_s, rel=1e-3)
    packed_tile = gemv.packed_tile("int8")
    assert packed_tile is not None and (packed_tile.depth, packed_tile.rows) == tile
    assert "tiles" in profile.fitted["compute.kernels.gemv.row_start.int8"]
    assert "PackingTraits" in profile.sources["compute.kernels.gemv.packed_tiles.int8"]
    # the same probe inside the last level: the tiles' start from there, beside fp32's rows'
    inside_size, inside_s = 4608 * 1024, 20e-9
    inside_times = {cols: inside_size / 60e9 + cal.packed_streams(tile, inside_size, cols) * inside_s
                    for cols in (depth, long_)}
    inside = replace(m, gemv_cached_rows_bytes=inside_size, gemv_cached_rows_level=f"L{caches[-1].level}",
                     gemv_cached_int8_s=inside_times)
    inside_profile = profile_from_mapping(build_profile(caches, cpu, inside), "host")
    level_starts = inside_profile.compute.kernels.gemv.cached_row_start
    assert level_starts[f"L{caches[-1].level}"].int8 == pytest.approx(m.threads * inside_s, rel=1e-3)
    assert level_starts[f"L{caches[-1].level}"].of("fp32") is None
    from simulator.commands.calibrate import summary

    said = summary(build_profile(caches, cpu, inside), Path("host.yaml"))
    assert f"an int8 tile of a partial 512-deep block in 140 ns from DRAM, 40 ns from L{caches[-1].level}; " in said
    # a start from the last level dearer than from DRAM is not physical (a probe beside another
    # process's threads read 11.3 us a tile there): not written
    disturbed = replace(inside, gemv_cached_int8_s={cols: t * (200 if cols == depth else 1)
                                                    for cols, t in inside_times.items()})
    assert cal.solve_packed_starts(disturbed.gemv_cached_int8_s, tile, inside_size).start_s > start_s
    assert cal.cached_packed_starts(disturbed) is None
    disturbed_profile = profile_from_mapping(build_profile(caches, cpu, disturbed), "host")
    assert disturbed_profile.compute.kernels.gemv.cached_row_start == {}
    # the partial probe no slower than the long rows: no start; no tile: neither
    flat = replace(m, gemv_rows_s={**probe, ("int8", depth): probe[("int8", long_)]})
    assert cal.packed_starts(flat) is None
    flat_profile = profile_from_mapping(build_profile(caches, cpu, flat), "host")
    assert flat_profile.compute.kernels.gemv.row_start.of("int8") is None
    assert cal.packed_starts(replace(m, int8_tile=None)) is None


def test_the_gemv_loop_spans_the_same_bytes_in_every_type():
    """Every type's two loop GEMVs hold the same bytes (int8 four times fp32's rows), so a type with a
    large per-call set-up (int8 quantizes its input) still spans four times its smaller call's
    weights; the line through them gives the loop's rate and the call's own time."""
    assert cal.gemv_loop_rows("fp32") == (128, 512) and cal.gemv_loop_rows("bf16") == (256, 1024)
    assert cal.gemv_loop_rows("int8") == (512, 2048)
    rate, call_s = 40e9, 20e-6
    line = cal.loop_line({w: call_s + w / rate for w in (512 * 1024, 2048 * 1024)})
    assert line is not None
    assert line.weights_per_s == pytest.approx(rate) and line.call_s == pytest.approx(call_s)
    assert cal.loop_line({1024: 2e-5, 2048: 1e-5}) is None           # no positive slope: nothing written
    assert cal.loop_line({1024: 2e-5}) is None


def test_the_loop_probe_tells_a_cost_a_row_from_the_weights_by_rows_of_two_lengths(caches, cpu, measurements):
    """bf16's loop GEMVs in rows of 1024 and, the larger one's bytes again, of 256 and 16000 columns
    (fp32's only in rows of 1024: its rows start in the level it streams from): the fit through them
    gives the rate a weight, the cost a row and the call's own time; rows that cost nothing (or
    less: noise) leave the line through the short rows. The profile gets cycles a row on a core."""
    assert cal.gemv_loop_shapes("fp32") == [(128, 1024), (512, 1024)]
    assert cal.gemv_loop_shapes("bf16") == [(256, 1024), (1024, 1024), (4096, 256), (65, 16000)]
    rate, row_s, call_s = 10.6e9, 18.6e-9, 4e-6
    points = {(r, c): call_s + r * row_s + r * c / rate for r, c in cal.gemv_loop_shapes("bf16")}
    fit = cal.loop_plane(points)
    assert fit is not None
    assert fit.weights_per_s == pytest.approx(rate) and fit.row_s == pytest.approx(row_s)
    assert fit.call_s == pytest.approx(call_s)
    flat = cal.loop_plane({(r, c): call_s + r * c / rate + (3e-6 if c == 16000 else -3e-6 if c == 256 else 0)
                            for r, c in points})
    assert flat is not None and flat.row_s == 0.0
    assert flat.weights_per_s == pytest.approx(rate) and flat.call_s == pytest.approx(call_s)
    typed = replace(measurements, gemv_weights_per_s={"fp32": 14e9, "bf16": rate}, gemv_row_s={"bf16": row_s})
    profile = profile_from_mapping(build_profile(caches, cpu, typed), "host")
    gemv = profile.compute.kernels.gemv
    assert gemv.cycles_per_row.bf16 == pytest.approx(row_s * cpu.clock_hz * measurements.threads, rel=1e-3)
    assert gemv.cycles_per_row.of("fp32") is None
    assert "ns a row" in profile.fitted["compute.kernels.gemv.cycles_per_row"]


def test_the_real_row_probes_time_each_type_and_the_rows_inside_the_last_level(caches, cpu, monkeypatch):
    """The real steps, on one thread, over 4 and 1 MiB (the probes' shapes, not their sizes: quick);
    with fbgemm's int8 (an x86 CPU), int8 also at a depth whose last block is half full."""
    monkeypatch.setattr(cal, "row_probe_bytes", lambda claimed, memory: 4 * MiB)
    monkeypatch.setattr(cal, "cached_row_probe_bytes", lambda private, llc: 1 * MiB)
    steps = tuple(s for s in STEPS if s.label.startswith("GEMV rows"))
    assert len(steps) == 2
    m = cal.measure(1, caches, cpu, steps=steps)
    assert m.gemv_rows_bytes == 4 * MiB
    short, long_ = cal.ROW_PROBE_COLUMNS
    partial = {("int8", cal.partial_tile_depth(m.int8_tile))} if m.int8_tile is not None else set()
    int8_short = ("int8", cal.short_columns("int8", m.int8_tile))
    assert set(m.gemv_rows_s) == {("fp32", short), ("fp32", long_), ("bf16", short), int8_short, ("int8", long_),
                                  *partial}
    assert all(t > 0 for t in m.gemv_rows_s.values())
    assert m.gemv_cached_rows_bytes == 1 * MiB and m.gemv_cached_rows_level == f"L{caches[-1].level}"
    assert set(m.gemv_cached_int8_s) == {cols for _, cols in partial} | ({long_} if partial else set())
    assert set(m.gemv_cached_rows_s) == set(cal.ROW_PROBE_COLUMNS) and all(t > 0 for t in m.gemv_cached_rows_s.values())


def test_the_row_probe_inside_the_last_level_gives_its_row_start_and_its_bandwidth(caches, cpu, measurements):
    """The same split over 4.5 MiB inside the L3: the row start from there on one core (the machine's
    x threads) is written for that level, and the level's bandwidth is the working-set curve's
    plateau less the starts its rows of 1024 columns paid. The probe runs between twice the private
    levels and half the level's measured share, or nowhere when there is no room between them."""
    size = 4608 * 1024
    probe = {cols: size / 60e9 + size / (4 * cols) * 12e-9 for cols in cal.ROW_PROBE_COLUMNS}
    inside = replace(measurements, gemv_cached_rows_s=probe, gemv_cached_rows_bytes=size,
                     gemv_cached_rows_level=f"L{caches[-1].level}", gemv_weights_per_s={"fp32": 14e9})
    rows = cal.cached_row_streams(inside)
    assert rows is not None and rows.bandwidth_bytes_per_s == pytest.approx(60e9) \
        and rows.row_start_s == pytest.approx(12e-9)
    profile = profile_from_mapping(build_profile(caches, cpu, inside), "host")
    plain = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    level, plateau = profile.caches[-1], plain.caches[-1].bandwidth_bytes_per_s
    assert profile.compute.kernels.gemv.cached_row_start[level.name].fp32 == pytest.approx(2 * 12e-9, rel=1e-3)
    assert 1 / level.bandwidth_bytes_per_s == pytest.approx(1 / plateau - 12e-9 / 4096, rel=1e-3)
    assert "less their starts" in profile.fitted[f"memory.caches.{level.name}.bandwidth"]
    assert "row start" in profile.fitted[f"compute.kernels.gemv.cached_row_start.{level.name}.fp32"]
    assert plain.compute.kernels.gemv.cached_row_start == {}
    assert "less their starts" not in plain.fitted[f"memory.caches.{level.name}.bandwidth"]
    # a row that starts dearer inside the level than from DRAM (a disturbed probe): neither the
    # start nor the bandwidth it would take off the plateau
    dram_start = 30e-9
    beyond = replace(inside, gemv_rows_bytes=64 * MiB, gemv_rows_s=_row_probe(20e9, dram_start, 64 * MiB))
    assert cal.cached_row_streams(beyond) is not None
    dear = replace(beyond, gemv_cached_rows_s={cols: size / 60e9 + size / (4 * cols) * 10 * dram_start
                                               for cols in cal.ROW_PROBE_COLUMNS})
    assert cal.cached_row_streams(dear) is None
    dear_profile = profile_from_mapping(build_profile(caches, cpu, dear), "host")
    assert dear_profile.compute.kernels.gemv.cached_row_start == {}
    assert "less their starts" not in dear_profile.fitted[f"memory.caches.{level.name}.bandwidth"]
    # calibrate's summary says where a row starts, per core
    from simulator.commands.calibrate import summary

    said = summary(build_profile(caches, cpu, inside), Path("host.yaml"))
    assert f"a GEMV row starts in 24 ns from {level.name} a core; " in said
    assert "a GEMV row starts" not in summary(build_profile(caches, cpu, measurements), Path("host.yaml"))
    assert cal.cached_row_probe_bytes(1088 * 1024, 24 * MiB) == 82 * 64000     # sqrt(2.1 x 12 MiB), in long rows
    assert cal.cached_row_probe_bytes(1 * MiB, 4 * MiB) == 0
    assert cal.cached_row_probe_bytes(0, 24 * MiB) == 0


def test_tiny_decoder_steps_become_block_dispatch_the_llm_model_charges_per_block(caches, cpu, measurements):
    """A tiny block's step less what the model charges it apart (15 launches, 7 linear calls) is the
    dispatch, charged once per block of every step."""
    from simulator.model.llm import load_llm_config
    from simulator.studies.llm import LlmOptions, simulate_llm

    typed = replace(measurements, block_dispatch_s={"fp32": 200e-6, "bf16": 400e-6}, gemv_call_s={"bf16": 20e-6})
    profile = profile_from_mapping(build_profile(caches, cpu, typed), "host")
    dispatch = profile.compute.block_dispatch
    launches = cal.DISPATCH_OPERATORS * OVERHEAD_S
    assert dispatch.of("bf16") == pytest.approx(400e-6 - launches - 7 * 20e-6, rel=1e-3)
    assert dispatch.seconds("w4", fallback="fp32") == pytest.approx(200e-6 - launches, rel=1e-3)   # not measured
    assert "hidden size 64" in profile.sources["compute.block_dispatch"]
    config = load_llm_config("workloads/llm/qwen2.5-0.5b.json")
    options = LlmOptions(formats=("dense@fp32", "dense@bf16"), context=64)
    plain = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    with_dispatch, without = simulate_llm(profile, config, options), simulate_llm(plain, config, options)
    for a, b, dtype in zip(with_dispatch.variants, without.variants, ("fp32", "bf16")):
        assert a.step_s - b.step_s == pytest.approx(config.num_hidden_layers * dispatch.seconds(dtype), rel=1e-3)
        assert a.operators[-1].operator == "dispatch"


def test_dispatch_counts_the_operators_the_model_gives_a_llama_block():
    from simulator.model.llm import Phase, llm_workload, load_llm_config

    workload = llm_workload(load_llm_config("workloads/llm/llama-3.2-1b.json"), Phase.DECODE, 1, 16, 1, None,
                            blocks=1)
    block = [layer for layer in workload.layers if layer.name.startswith("b0.")]
    assert len(block) == cal.DISPATCH_OPERATORS
    assert sum(layer.kind.value == "fc" for layer in block) == cal.DISPATCH_LINEARS


def test_the_gemv_lines_intercept_is_a_per_call_overhead_the_engine_charges(caches, cpu, measurements, write_yaml):
    from simulator.compress.variants import parse_variant
    from simulator.model.workload import load_workload
    from simulator.pipeline import RunOptions, run

    rates = {"fp32": 20e9, "bf16": 10e9}
    calls = {"fp32": 0.0, "bf16": 25e-6}
    profile = profile_from_mapping(build_profile(caches, cpu, replace(
        measurements, gemv_weights_per_s=rates, gemv_call_s=calls, type_gemm_flops_per_s={"bf16": 160e9})), "host")
    gemv = profile.compute.kernels.gemv
    assert gemv.call_overhead.of("bf16") == pytest.approx(25e-6, rel=1e-3) and gemv.call_overhead.fp32 is None
    workload = load_workload(write_yaml("fc.yaml", {
        "schema_version": 1, "name": "fc", "source": "tests", "input_shape": [64],
        "layers": [{"name": "fc", "kind": "fc", "in_features": 64, "out_features": 64}]}))
    bf16, fp32 = (run(profile, workload, RunOptions(formats=(parse_variant(v),), host_copies=False)).variants[0]
                  .layers[0].time_s for v in ("dense@bf16", "dense"))
    assert bf16 - fp32 == pytest.approx(25e-6, rel=0.05)      # a tiny layer: the call's set-up is its time


def test_element_wise_rate_becomes_the_element_kernels_cycles(caches, cpu, measurements):
    """Element-wise ops at 8 G elements/s on 2 threads: clock x 2 x lanes / 8e9 cycles per vector,
    and the cost model's element kernel over that many elements takes the measured time."""
    from simulator.engine.kernelcost import element_seconds
    from simulator.memory.kernelshape import KernelShape

    profile = profile_from_mapping(build_profile(caches, cpu, replace(measurements, elementwise_per_s=8e9)), "host")
    per_vector = profile.compute.kernels.pool.cycles_per_element
    assert per_vector == pytest.approx(profile.compute.clock_hz * 2 * profile.compute.vector_lanes / 8e9, rel=1e-3)
    shape = KernelShape(KernelKind.POOL, DType.FP32, elements=1 << 20)
    assert element_seconds(profile, shape, 2) == pytest.approx((1 << 20) / 8e9, rel=1e-3)
    assert "silu" in profile.fitted["compute.kernels.pool.cycles_per_element"]
    # nothing measured: the default, one cycle per vector
    plain = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    assert plain.compute.kernels.pool.cycles_per_element == 1.0


def test_bsr_per_block_costs_fitted_on_each_path(caches, cpu, measurements):
    """torch's BSR: 0.2 us a block through mv (batch 1), 0.017 us a block at 64 columns. The profile
    keeps both paths; the cost model charges a batch-1 product the vector path's cost per block."""
    from simulator.engine.kernelcost import bsr_seconds
    from simulator.memory.kernelshape import KernelShape

    typed = replace(measurements, bsr_block_s={1: 0.2e-6, 64: 0.017e-6})
    profile = profile_from_mapping(build_profile(caches, cpu, typed), "host")
    bsr = profile.compute.kernels.bsr
    clock = profile.compute.clock_hz
    assert bsr.vector_cycles_per_block == pytest.approx(0.2e-6 * clock * 2, rel=1e-3)
    assert 0 < bsr.cycles_per_block < 0.017e-6 * clock * 2       # less the blocks' multiply-adds, per group
    assert "per block fitted" in profile.sources["compute.kernels.bsr"]
    assert "torch.mv" in profile.fitted["compute.kernels.bsr.vector_cycles_per_block"]
    shape = KernelShape(KernelKind.BSR, DType.FP32, rows=1024, columns=1, depth=2048, nonzeros=16 * 10000,
                        blocks=10000, block=(4, 4), row_steps=256)
    one = bsr_seconds(profile, shape, 2)
    # 10,000 blocks x 0.2 us of two threads' time, over the two threads
    assert one.mechanism == "blocks" and one.seconds == pytest.approx(10000 * 0.2e-6, rel=0.05)
    # not measured: derived as before, no vector path
    plain = profile_from_mapping(build_profile(caches, cpu, measurements), "host")
    assert plain.compute.kernels.bsr.vector_cycles_per_block is None


def test_the_gemm_line_separates_the_packing_from_the_multiply_adds(caches, cpu, measurements):
    """GEMMs whose time is the weights' packing plus multiply-adds at a rate, at two batches: the
    line through them gives the rate back (not the narrow batch's rate, which the packing drags
    down), the packing per weight becomes ``pack_cycles_per_vector``, and the cost model then
    reproduces a batch neither calibrate nor the fit ran (a 128-token prefill)."""
    from simulator.engine.kernelcost import dense_seconds

    rate, pack_per_weight = 120e9, 0.4e-9

    def time_s(rows, cols, batch):
        return OVERHEAD_S + pack_per_weight * rows * cols + 2.0 * rows * cols * batch / rate

    times = {shape: time_s(*shape) for shape in cal.gemm_shapes()}
    line = cal.gemm_line(times, OVERHEAD_S)
    assert line.flops_per_s == pytest.approx(rate) and line.pack_s_per_weight == pytest.approx(pack_per_weight)
    narrow = cal.GEMM_SHAPES[0]
    assert 2.0 * narrow[0] * narrow[1] * narrow[2] / times[narrow] < 0.8 * rate
    # a shape whose wider batch came out faster (noise) gives no slope; the others still do
    noisy = {**times, (*narrow[:2], cal.GEMM_WIDE_BATCH): times[narrow] * 0.9}
    assert cal.gemm_line(noisy, OVERHEAD_S).flops_per_s == pytest.approx(rate)
    only_narrow = {shape: t for shape, t in times.items() if shape in cal.GEMM_SHAPES}
    assert cal.gemm_line(only_narrow).pack_s_per_weight == 0.0

    measured = replace(measurements, gemm_flops_per_s=line.flops_per_s,
                       gemm_pack_s_per_weight={"fp32": line.pack_s_per_weight})
    profile = profile_from_mapping(build_profile(caches, cpu, measured), "host")
    gemm = profile.compute.kernels.gemm
    assert gemm.pack_cycles_per_vector.fp32 == pytest.approx(
        pack_per_weight * profile.compute.clock_hz * 2 * profile.compute.vector_lanes, rel=1e-3)
    assert profile.compute.kernels.conv.pack_cycles_per_vector == gemm.pack_cycles_per_vector
    assert "intercept" in profile.fitted["compute.kernels.gemm.pack_cycles_per_vector"]
    prefill = KernelShape(KernelKind.GEMM, DType.FP32, rows=2048, columns=128, depth=2048)
    assert dense_seconds(profile, prefill, 2).seconds == pytest.approx(time_s(2048, 2048, 128) - OVERHEAD_S, rel=0.03)


@pytest.mark.parametrize("overlap", [0.0, 0.4, 1.0])
def test_the_share_of_a_sparse_kernels_loop_its_loads_run_under_is_read_off_the_spmv_beyond_the_caches(
        caches, cpu, measurements, overlap):
    """The SpMV beyond the private caches, memory-bound: measured at its bytes' streaming time plus
    the part of its in-cache issue time its loads did not run under, ``load_overlap`` is that
    share: 0 for the sum (its loads wait for its loop), 1 for the larger (they run ahead, and
    nothing is written). The index width is the backend's (torch's CSR tensors from bench: int64)."""
    spmv = sparse_timings("spmv", 3.0, 10.0, 1, 2, (1,), backend="torch")
    rows, nnz = cal.SPARSE_BEYOND_ROWS, cal.GEMV_BEYOND_BYTES // 12
    issue_s = (3.0 * nnz + 10.0 * rows) / (CLOCK_HZ * 2)
    probe_s = 2e-3                                   # fp32's GEMV over the same 32 MiB
    memory_s = probe_s * (nnz * 12 + (rows + 1) * 8) / cal.GEMV_BEYOND_BYTES
    assert memory_s > issue_s
    beyond = SparseTiming("spmv", rows, cal.SPARSE_COLUMNS, 1, nnz, nnz,
                          OVERHEAD_S + memory_s + (1 - overlap) * issue_s, "torch", 2)
    m = replace(measurements, sparse=spmv + measurements.sparse_of("spmm"), sparse_beyond=[beyond],
                gemv_beyond_s={"fp32": probe_s})
    profile = profile_from_mapping(build_profile(caches, cpu, m), "host")
    kernels = profile.compute.kernels
    assert kernels.spmv.load_overlap == pytest.approx(overlap, abs=0.01) and kernels.spmm.load_overlap == 1.0
    assert kernels.index_bits == 64
    assert ("compute.kernels.spmv.load_overlap" in profile.sources) is (overlap < 1)
    # nothing measured beyond the caches: the loads are taken to run ahead, as before
    plain = profile_from_mapping(build_profile(caches, cpu, replace(m, sparse_beyond=[])), "host")
    assert plain.compute.kernels.spmv.load_overlap == 1.0


@pytest.mark.parametrize("faulted_bits, copied", [(32.0, 32), (35.0, 32), (17.0, 16), (0.0, None), (48.0, None)])
def test_a_library_that_copies_its_indices_is_told_by_the_pages_one_call_faults_in(caches, cpu, measurements,
                                                                                  faulted_bits, copied):
    """torch's CSR product over int64 indices copies them into int32 arrays at every call (MKL's
    LP64 interface): one call of the SpMV beyond the caches faults in about 32 bits a non-zero, a
    copy above glibc's largest mmap threshold. That count is ``kernel_index_bits``; the copy's
    faults come off the measured time and its bytes add to the memory time, so a SpMV that took them plus
    the larger of issue and memory is not taken for one whose loads wait. No faults, or a count
    near no narrower width: no copy (and faults nothing explains count as waiting loads)."""
    spmv = sparse_timings("spmv", 3.0, 10.0, 1, 2, (1,), backend="torch")
    rows, nnz = cal.SPARSE_BEYOND_ROWS, 11 * (1 << 20)
    rate = 3e9
    fills = {16 * MiB: (0.2e-3, 0.25e-3), 64 * MiB: (2e-3, 2e-3 + 64 * MiB / rate)}
    issue_s = (3.0 * nnz + 10.0 * rows) / (CLOCK_HZ * 2)
    probe_s = 2e-3
    width = copied or 0
    memory_s = probe_s * (nnz * 12 + (rows + 1) * 8 + 2 * (nnz + rows + 1) * width // 8) / cal.GEMV_BEYOND_BYTES
    faulted = faulted_bits * nnz / 8
    seconds = OVERHEAD_S + faulted / rate + max(issue_s, memory_s)
    beyond = SparseTiming("spmv", rows, cal.SPARSE_COLUMNS, 1, nnz, nnz, seconds, "torch", 2, faulted)
    m = replace(measurements, sparse=spmv + measurements.sparse_of("spmm"), sparse_beyond=[beyond],
                gemv_beyond_s={"fp32": probe_s}, fresh_fill_s=fills)
    assert cal.copied_index_bits(m, "torch") == copied and cal.fault_rate(m) == pytest.approx(rate)
    mapping = build_profile(caches, cpu, m)
    kernels = profile_from_mapping(mapping, "host").compute.kernels
    assert kernels.kernel_index_bits == copied and kernels.index_bits == 64
    assert (kernels.spmv.load_overlap < 1) is (faulted_bits > 0 and copied is None)   # unexplained faults: waits
    if copied:
        assert "bits a non-zero" in profile_from_mapping(mapping, "host").sources["compute.kernels.kernel_index_bits"]
    scipy = replace(beyond, backend="scipy", faulted_bytes=4.0 * nnz)     # stores 32-bit indices: nothing narrower
    assert cal.copied_index_bits(replace(m, sparse_beyond=[scipy]), "scipy") is None


def test_a_copying_librarys_overlap_is_read_off_its_call_over_the_copys_width(caches, cpu, measurements):
    """Where the library copies its indices (``kernel_index_bits``) and its SpMV beyond the caches
    was also timed over indices of the copy's width, ``load_overlap`` comes from that call: its
    kernel alone, its bytes at 32 bits, nothing taken off for faults. The stored-width call's
    faults (16 ms here, more than its product) would otherwise decide the share: taken off at a
    fault rate read 25% fast, the same kernel reads as waiting for its loop."""
    spmv = sparse_timings("spmv", 3.0, 10.0, 1, 2, (1,), backend="torch")
    rows, nnz = cal.SPARSE_BEYOND_ROWS, 11 * (1 << 20)
    rate, probe_s = 3e9, 4e-3      # its kernel's bytes stream longer than its issue
    fills = {16 * MiB: (0.2e-3, 0.25e-3), 64 * MiB: (2e-3, 2e-3 + 64 * MiB / (1.25 * rate))}   # a rate read 25% fast
    issue_s = (3.0 * nnz + 10.0 * rows) / (CLOCK_HZ * 2)
    narrow_s = OVERHEAD_S + max(issue_s, probe_s * (nnz * 8 + (rows + 1) * 4) / cal.GEMV_BEYOND_BYTES)
    wide_memory_s = probe_s * (nnz * 12 + (rows + 1) * 8 + 2 * (nnz + rows + 1) * 4) / cal.GEMV_BEYOND_BYTES
    faulted = 4.0 * nnz
    wide = SparseTiming("spmv", rows, cal.SPARSE_COLUMNS, 1, nnz, nnz,
                        OVERHEAD_S + faulted / rate + max(issue_s, wide_memory_s), "torch", 2, faulted)
    narrow = SparseTiming("spmv", rows, cal.SPARSE_COLUMNS, 1, nnz, nnz, narrow_s, "torch", 2, 0.0, 32)
    m = replace(measurements, sparse=spmv + measurements.sparse_of("spmm"), sparse_beyond=[wide, narrow],
                gemv_beyond_s={"fp32": probe_s}, fresh_fill_s=fills)
    assert m.beyond_of("torch") is wide and m.beyond_of("torch", 32) is narrow
    profile = profile_from_mapping(build_profile(caches, cpu, m), "host")
    assert profile.compute.kernels.kernel_index_bits == 32
    assert profile.compute.kernels.spmv.load_overlap == 1.0         # the larger of issue and memory: all of it
    alone = profile_from_mapping(build_profile(caches, cpu, replace(m, sparse_beyond=[wide])), "host")
    assert alone.compute.kernels.kernel_index_bits == 32 and alone.compute.kernels.spmv.load_overlap < 0.75
    assert "page faults" in alone.sources["compute.kernels.spmv.load_overlap"]


def test_every_sparse_backend_timed_becomes_a_library_of_the_profile(caches, cpu, measurements):
    """calibrate times each CSR backend bench may pick; ``spmv`` / ``spmm`` are the ones bench
    picks on the middle matrix (here scipy for SpMV, torch for SpMM), and each backend is a
    library with its own fitted costs, index width, loads' overlap and threads."""
    sparse = (sparse_timings("spmv", 5.0, 20.0, 1, 1, (1,), backend="scipy")
              + sparse_timings("spmv", 3.0, 10.0, 1, 2, (1,), backend="torch")
              + sparse_timings("spmm", 4.0, 30.0, 1, 1, (4, 64), backend="scipy")
              + sparse_timings("spmm", 1.5, 20.0, 8, 2, (4, 64), backend="torch"))
    rows, nnz = cal.SPARSE_BEYOND_ROWS, cal.GEMV_BEYOND_BYTES // 12
    probe_s = 2e-3     # torch's bytes: its stored arrays, and the int32 copy of its indices written and read
    memory_s = probe_s * (nnz * 12 + (rows + 1) * 8 + 2 * (nnz + rows + 1) * 4) / cal.GEMV_BEYOND_BYTES
    serial_torch = OVERHEAD_S + (3.0 * nnz + 10.0 * rows) / (CLOCK_HZ * 2) + memory_s    # waits for its loop
    beyond = [SparseTiming("spmv", rows, cal.SPARSE_COLUMNS, 1, nnz, nnz, serial_torch, "torch", 2, 4.0 * nnz)]
    m = replace(measurements, sparse=sparse, sparse_backends={"spmv": "scipy", "spmm": "torch"},
                sparse_beyond=beyond, gemv_beyond_s={"fp32": probe_s})
    mapping = build_profile(caches, cpu, m)
    profile = profile_from_mapping(mapping, "host")
    kernels = profile.compute.kernels
    assert kernels.spmv.cycles_per_nonzero == pytest.approx(5.0, rel=0.02) and kernels.index_bits == 32
    from simulator.commands.calibrate import summary
    assert "CSR libraries (bench picks per layer): scipy: spmv 5 / spmm 4 cycles per non-zero, 32-bit" \
        in summary(mapping, Path("host.yaml"))
    assert "64-bit indices copied to 32 bits a call, loads under 0 of its loop" in summary(mapping, Path("host.yaml"))
    assert kernels.spmm.cycles_per_nonzero == pytest.approx(1.5, rel=0.02)
    assert profile.compute.threads.spmv == 1 and profile.compute.threads.spmm is None
    scipy, torch = kernels.libraries["scipy"], kernels.libraries["torch"]
    assert scipy.spmv.cycles_per_nonzero == pytest.approx(5.0, rel=0.02) and scipy.threads == 1
    assert scipy.spmm.cycles_per_nonzero == pytest.approx(4.0, rel=0.02) and scipy.index_bits == 32
    assert torch.spmv.cycles_per_nonzero == pytest.approx(3.0, rel=0.02) and torch.threads is None
    assert torch.index_bits == 64 and torch.spmv.load_overlap == 0.0 and scipy.spmv.load_overlap == 1.0
    assert torch.kernel_index_bits == 32 and scipy.kernel_index_bits is None and kernels.kernel_index_bits is None
    on_torch = profile.with_sparse_library("torch")
    assert on_torch.compute.threads.spmv is None and on_torch.compute.kernels.spmv == torch.spmv
    assert on_torch.compute.kernels.kernel_index_bits == 32
    assert "compute.kernels.libraries.torch.spmv.load_overlap" in profile.sources
    assert "scipy on 1 thread(s)" in profile.fitted["compute.kernels.libraries.scipy.spmv"]
    # one backend timed: no libraries (the profile's own kernels are that backend's)
    assert not profile_from_mapping(build_profile(caches, cpu, measurements), "host").compute.kernels.libraries


def test_each_spmm_library_gets_the_gathers_its_own_loop_keeps_in_flight(caches, cpu, measurements):
    """Two libraries' SpMMs, each with its own far and near calls: torch (2 threads) waits on 5
    gathers a core, scipy (1 thread) on 3. Each library's ``spmm`` says its own; the profile's
    ``spmm``, torch's (the SpMM bench picks); the summary names both."""
    sparse = (sparse_timings("spmv", 5.0, 20.0, 1, 1, (1,), backend="scipy")
              + sparse_timings("spmv", 3.0, 10.0, 1, 2, (1,), backend="torch")
              + sparse_timings("spmm", 4.0, 30.0, 1, 1, (4, 64), backend="scipy")
              + sparse_timings("spmm", 1.5, 20.0, 8, 2, (4, 64), backend="torch"))
    lines = cal.SPARSE_NONZEROS * 4 * (1 - 512 / 4096)

    def probe(backend: str, threads: int, in_flight: float) -> cal.GatherProbe:
        return cal.GatherProbe(backend, 1024, cal.SPARSE_NONZEROS, 1024, 16384, 1e-3,
                               1e-3 + lines * 11e-9 / (threads * in_flight), threads)
    m = replace(measurements, sparse=sparse, sparse_backends={"spmv": "scipy", "spmm": "torch"},
                spmm_gathers=[probe("torch", 2, 5.0), probe("scipy", 1, 3.0)])
    mapping = build_profile(caches, cpu, m)
    kernels = profile_from_mapping(mapping, "host").compute.kernels
    assert kernels.libraries["torch"].spmm.gathers_in_flight_per_core == pytest.approx(5.0)
    assert kernels.libraries["scipy"].spmm.gathers_in_flight_per_core == pytest.approx(3.0)
    assert kernels.spmm.gathers_in_flight_per_core == pytest.approx(5.0)
    assert all(lib.spmv.gathers_in_flight_per_core is None for lib in kernels.libraries.values())
    from simulator.commands.calibrate import summary

    said = summary(mapping, Path("host.yaml"))
    assert "its spmm waits on 5 gathers a core" in said and "its spmm waits on 3 gathers a core" in said


def test_each_spmv_library_pays_the_gathered_line_fill_its_own_probe_measured(caches, cpu, measurements):
    """Two libraries' SpMVs, each timed gathering over the fit's 8 KiB operand and over eight times
    the first level (one line a non-zero from the L2): torch (2 threads) spends 1.3 cycles on each
    such line, scipy (1 thread) 0.2. Each library's ``spmv`` says its own, the profile's ``spmv`` is
    torch's (the one bench picks), its sources say how, and the summary names it. A far call no
    slower than the near one gives no cost."""
    far = cal.spmv_far_columns(caches)
    assert far * 4 == min(8 * caches[0].size_bytes, cal.last_private(caches).size_bytes // 2)
    sparse = (sparse_timings("spmv", 5.0, 20.0, 1, 1, (1,), backend="scipy")
              + sparse_timings("spmv", 3.0, 10.0, 1, 2, (1,), backend="torch")
              + sparse_timings("spmm", 4.0, 30.0, 1, 1, (4, 64), backend="scipy")
              + sparse_timings("spmm", 1.5, 20.0, 8, 2, (4, 64), backend="torch"))

    def probe(backend: str, threads: int, cycles: float) -> cal.GatherProbe:
        return cal.GatherProbe(backend, cal.SPARSE_ROWS[0], cal.SPARSE_NONZEROS, cal.SPARSE_COLUMNS, far, 1e-4,
                               1e-4 + cal.SPARSE_NONZEROS * cycles / (cpu.clock_hz * threads), threads)
    m = replace(measurements, sparse=sparse, sparse_backends={"spmv": "torch", "spmm": "torch"},
                spmv_gathers=[probe("torch", 2, 1.3), probe("scipy", 1, 0.2)])
    mapping = build_profile(caches, cpu, m)
    profile = profile_from_mapping(mapping, "host")
    kernels = profile.compute.kernels
    assert kernels.libraries["torch"].spmv.cycles_per_gather_fill == pytest.approx(1.3)
    assert kernels.libraries["scipy"].spmv.cycles_per_gather_fill == pytest.approx(0.2)
    assert kernels.spmv.cycles_per_gather_fill == pytest.approx(1.3)
    assert kernels.spmm.cycles_per_gather_fill is None
    source = profile.sources["compute.kernels.libraries.torch.spmv.cycles_per_gather_fill"]
    assert "gathering over 65536 columns" in source
    from simulator.commands.calibrate import summary

    assert "1.3 cycles a gathered line from below the first level" in summary(mapping, Path("host.yaml"))
    slow = probe("torch", 2, 1.3)
    assert cal.gather_fill(caches, replace(slow, far_s=slow.near_s), cpu.clock_hz) is None


def test_a_write_back_costs_dram_the_fill_over_the_read_less_one(caches, cpu, measurements):
    """``memory.dram.writeback_cost`` from the STREAM-like fill (a read for ownership and a write-back
    a line) against the read of the same bytes: a fill 1.48 times the read gives 0.48, in the
    profile with its source; unmeasured, the profile keeps the default (a write-back costs a read);
    the figure stays within [0, 2] whatever the two rates."""
    m = replace(measurements, stream_fill_bytes_per_s=measurements.stream_read_bytes_per_s / 1.48)
    profile = profile_from_mapping(build_profile(caches, cpu, m), "host")
    assert profile.dram.writeback_cost == pytest.approx(0.48)
    assert "STREAM-like fill" in profile.sources["memory.dram.writeback_cost"]
    assert profile_from_mapping(build_profile(caches, cpu, measurements), "host").dram.writeback_cost == 1.0
    assert cal.writeback_cost(replace(m, stream_fill_bytes_per_s=30e9)) == 0.0
    assert cal.writeback_cost(replace(m, stream_fill_bytes_per_s=5e9)) == 2.0


def test_the_real_spmv_gather_probe_times_each_library_near_and_far(caches, cpu, monkeypatch):
    """The real SpMV steps, on one thread, the far operand at 16384 columns (64 KiB, twice the first
    level, not the probe's size: quick): each library timed gathering over the fit's columns and
    over the far ones, on the fit's widest rows and its non-zeros."""
    monkeypatch.setattr(cal, "spmv_far_columns", lambda caches: 16384)
    steps = tuple(s for s in STEPS if s.label in ("CSR SpMV / SpMM", "CSR SpMV gathering from below the first level"))
    assert len(steps) == 2
    m = cal.measure(1, caches, cpu, steps=steps)
    rows = cal.SPARSE_ROWS[0]
    assert {(p.backend, p.near_columns, p.far_columns, p.rows) for p in m.spmv_gathers} == {
        ("torch", cal.SPARSE_COLUMNS, 16384, rows), ("scipy", cal.SPARSE_COLUMNS, 16384, rows)}
    assert all(p.near_s > 0 and p.far_s > 0 and p.nonzeros == cal.SPARSE_NONZEROS for p in m.spmv_gathers)


def test_the_sparse_steps_time_every_csr_backend(caches, cpu):
    """The real CSR steps, on one thread: each backend bench picks from, timed in and beyond the
    caches, and the one it picks noted per kind."""
    steps = tuple(s for s in STEPS if s.label.startswith("CSR"))
    m = cal.measure(1, caches, cpu, steps=steps)
    assert m.sparse_libraries() == ["torch", "scipy"]
    assert set(m.sparse_backends) == {"spmv", "spmm"} and set(m.sparse_backends.values()) <= {"torch", "scipy"}
    assert {t.backend for t in m.sparse_beyond} == {"torch", "scipy"}
    assert {t.threads for t in m.sparse_of("spmv", "scipy")} == {1}


def test_the_real_spmm_gather_probe_times_each_library_near_and_far(caches, cpu, monkeypatch):
    """The real SpMM steps, on one thread, the far operand at 4096 columns (1 MiB at batch 64, not the
    probe's size: quick): each library timed gathering over the fit's columns and over the far ones.
    The fit's columns keep the operand within half a core's L2 (512 KiB here: 1024 columns)."""
    monkeypatch.setattr(cal, "spmm_far_columns", lambda private, llc: 4096)
    steps = tuple(s for s in STEPS if s.label in ("CSR SpMV / SpMM", "CSR SpMM gathering from the last level"))
    assert len(steps) == 2
    m = cal.measure(1, caches, cpu, steps=steps)
    assert {t.depth for t in m.sparse_of("spmm", "torch")} == {1024} == {cal.spmm_columns(caches)}
    assert {t.depth for t in m.sparse_of("spmv", "torch")} == {cal.SPARSE_COLUMNS}
    assert {(p.backend, p.near_columns, p.far_columns) for p in m.spmm_gathers} == {("torch", 1024, 4096),
                                                                                    ("scipy", 1024, 4096)}
    assert all(p.near_s > 0 and p.far_s > 0 and p.nonzeros == cal.SPARSE_NONZEROS for p in m.spmm_gathers)


def test_the_spmm_columns_keep_its_operand_in_half_the_last_private_level(caches):
    small = [replace(c, size_bytes=256 * 1024) if c.level == 2 else c for c in caches]
    assert cal.spmm_columns(caches) == 1024 and cal.spmm_columns(small) == 512
    assert cal.spmm_columns(caches[-1:]) == cal.SPARSE_COLUMNS           # no private level below the last
    # the far operand: between twice the private levels and half the last level's share, or none
    assert cal.spmm_far_columns(1 * MiB, 16 * MiB) == cal.cached_row_probe_bytes(1 * MiB, 16 * MiB) // 256 > 1024
    assert cal.spmm_far_columns(1 * MiB, 4 * MiB) == 0


def test_an_spmm_that_waits_on_its_gathers_gets_the_gathers_it_keeps_in_flight(caches, cpu, measurements):
    """The far call (16384 columns: 4 MiB at batch 64) takes longer than the near one (1024) by
    the lines it gathers beyond the 512 KiB L2 (7/8 of each non-zero's 4 lines), each 11 ns later
    (L3 15 ns, L2 4 ns), over 4 in flight on each of 2 threads: the profile's torch SpMM waits on
    4 gathers a core. A far call no slower, or one that would need more in flight than the core's
    demand-miss slots (Little's law on the chases: 8.6 here), leaves the field out."""
    lines = cal.SPARSE_NONZEROS * 4 * (1 - 512 / 4096)
    near_s = 1e-3
    far_s = near_s + lines * 11e-9 / (2 * 4)
    probe = cal.GatherProbe("torch", 1024, cal.SPARSE_NONZEROS, 1024, 16384, near_s, far_s, 2)
    m = replace(measurements, spmm_gathers=[probe])
    wait = cal.gather_wait(caches, m, probe)
    assert wait is not None and wait.in_flight == pytest.approx(4.0) and wait.lines == pytest.approx(lines)
    assert wait.slots == pytest.approx(5e9 * 110e-9 / 64)
    mapping = build_profile(caches, cpu, m)
    profile = profile_from_mapping(mapping, "host")
    assert profile.compute.kernels.spmm.gathers_in_flight_per_core == pytest.approx(4.0)
    assert profile.compute.kernels.spmv.gathers_in_flight_per_core is None
    assert profile.compute.kernels.spconv.gathers_in_flight_per_core == pytest.approx(4.0)   # spconv is spmm's
    assert "in flight a core" in profile.sources["compute.kernels.spmm.gathers_in_flight_per_core"]
    from simulator.commands.calibrate import summary

    assert "waits on its gathers beyond the private caches, 4 in flight a core" in summary(mapping, Path("host.yaml"))
    no_slower = replace(probe, far_s=near_s * 0.99)
    too_many = replace(probe, far_s=near_s + lines * 11e-9 / (2 * 9))
    for other in (no_slower, too_many):
        assert cal.gather_wait(caches, replace(m, spmm_gathers=[other]), other) is None
        plain = profile_from_mapping(build_profile(caches, cpu, replace(m, spmm_gathers=[other])), "host")
        assert plain.compute.kernels.spmm.gathers_in_flight_per_core is None


def test_the_gathers_latency_beyond_the_tlb_reach_walks_once_a_row(caches, cpu, measurements):
    """With a TLB knee (reach about 1.25 MiB, a walk of 80 ns): a far operand of 4 MiB lies beyond
    the reach, and each non-zero's row of 4 lines walks once, as the engine charges it: a line
    waits 120 - 3/4 x 80 = 60 ns from the L3, 56 more than from the L2. An operand within the
    reach (1 MiB) waits no walk: 40 ns, 36 more."""
    base = 2 * caches[-2].size_bytes
    curve = {f: (40e-9 if f <= base else 120e-9) for f in cal.reach_footprints(caches, 64 * MiB)}
    m = replace(measurements, beyond_latency_s={1: 4e-9, 2: 40e-9}, cache_latency_s={1: 1.5e-9, 2: 4e-9, 3: 120e-9},
                reach_latency_s=curve)
    assert 1 * MiB < cal.tlb_fit(caches, m).reach_bytes < 4 * MiB
    for far_columns, extra_s in ((16384, 56e-9), (4096, 36e-9)):
        lines = cal.SPARSE_NONZEROS * 4 * (1 - 512 / (far_columns // 4))
        probe = cal.GatherProbe("torch", 1024, cal.SPARSE_NONZEROS, 1024, far_columns, 1e-3,
                                1e-3 + lines * extra_s / (2 * 4), 2)
        wait = cal.gather_wait(caches, replace(m, spmm_gathers=[probe]), probe)
        assert wait is not None and wait.extra_latency_s == pytest.approx(extra_s)
        assert wait.in_flight == pytest.approx(4.0)


def test_a_one_thread_backend_streams_at_one_threads_share(caches, cpu, measurements):
    """scipy's CSR product runs on one thread: beyond the caches its bytes stream at the one-thread
    share of the GEMV's rate (STREAM read, one thread over all), so a one-thread SpMV whose loads
    overlap its loop at that rate is not taken for one whose loads wait."""
    rows, nnz = cal.SPARSE_BEYOND_ROWS, cal.GEMV_BEYOND_BYTES // 12
    probe_s = 2e-3
    share = measurements.stream_read_one_thread_bytes_per_s / measurements.stream_read_bytes_per_s
    assert cal.stream_share(measurements, 1) == pytest.approx(share) and cal.stream_share(measurements, 2) == 1.0
    memory_one_s = probe_s * (nnz * 8 + (rows + 1) * 4) / cal.GEMV_BEYOND_BYTES / share
    issue_s = 0.2 * memory_one_s
    fit = cal.SparseFit(issue_s * CLOCK_HZ / nnz, 0.0, 1, {1: 0.0})
    overlapped = SparseTiming("spmv", rows, cal.SPARSE_COLUMNS, 1, nnz, nnz, OVERHEAD_S + memory_one_s, "scipy", 1)
    waiting = replace(overlapped, seconds=OVERHEAD_S + memory_one_s + issue_s)
    m = replace(measurements, gemv_beyond_s={"fp32": probe_s})
    assert cal.sparse_overlap(replace(m, sparse_beyond=[overlapped]), fit, CLOCK_HZ, "scipy").share == 1.0
    waits = cal.sparse_overlap(replace(m, sparse_beyond=[waiting]), fit, CLOCK_HZ, "scipy")
    assert waits.share == 0.0 and "on 1 thread(s)" in waits.how


def test_with_the_row_probe_a_sparse_kernel_streams_at_the_rows_bandwidth(caches, cpu, measurements):
    """Where the GEMV row probe ran, an SpMV beyond the caches (over the probe's bytes: a 32 MiB
    matrix may still sit in a 32 MiB last level, where its loads overlap) is judged against its
    stored bytes at the probe's bandwidth (the profile's sustained one), not against fp32's 32 MiB
    GEMV: scipy at issue + bytes / 24 GB/s waits for its loop (an overlap of 0); at the larger of
    the two it does not (1)."""
    size, rows, nnz = 128 * MiB, cal.SPARSE_BEYOND_ROWS, 128 * MiB // 12
    m = replace(measurements, gemv_rows_bytes=size, gemv_rows_s=_row_probe(24e9, 72e-9, size),
                gemv_beyond_s={"fp32": 0.5e-3})
    share = cal.stream_share(m, 1)
    memory_s = (nnz * 8 + (rows + 1) * 4) / (24e9 * share)
    issue_s = 0.6 * memory_s
    fit = cal.SparseFit(issue_s * CLOCK_HZ / nnz, 0.0, 1, {1: 0.0})
    waiting = SparseTiming("spmv", rows, cal.SPARSE_COLUMNS, 1, nnz, nnz, OVERHEAD_S + memory_s + issue_s, "scipy", 1)
    waits = cal.sparse_overlap(replace(m, sparse_beyond=[waiting]), fit, CLOCK_HZ, "scipy")
    assert waits.share == 0.0 and "the bytes at 24 GB/s" in waits.how
    overlapped = replace(waiting, seconds=OVERHEAD_S + memory_s)
    assert cal.sparse_overlap(replace(m, sparse_beyond=[overlapped]), fit, CLOCK_HZ, "scipy").share == 1.0


@pytest.mark.parametrize("knee", [True, False])
def test_the_tlb_reach_is_where_random_accesses_start_paying_a_page_walk(caches, cpu, measurements, knee):
    """Chases beyond the private caches: up to the reach they take the last level's hit latency
    (the chase over twice the last private level), beyond it a page walk more; the profile's
    ``memory.tlb`` holds the knee (between the last chase below the middle and the first above)
    and the walk. Without a knee, no ``memory.tlb``."""
    base = 2 * caches[-2].size_bytes
    assert cal.reach_footprints(caches, 64 * MiB) == [int(base * k) for k in cal.REACH_STEPS]
    walk = 80e-9 if knee else 5e-9
    curve = {f: (40e-9 if f <= 2 * base else 40e-9 + walk) for f in cal.reach_footprints(caches, 64 * MiB)}
    m = replace(measurements, beyond_latency_s={1: 4e-9, 2: 40e-9}, cache_latency_s={1: 1.5e-9, 2: 4e-9,
                                                                                    3: 40e-9 + walk},
                reach_latency_s=curve)
    profile = profile_from_mapping(build_profile(caches, cpu, m), "host")
    if not knee:
        assert profile.memory.tlb is None and cal.tlb_fit(caches, m) is None
        return
    tlb = profile.memory.tlb
    assert tlb is not None
    assert tlb.reach_bytes == pytest.approx(math.sqrt(2 * base * 3 * base), rel=0.01)
    assert tlb.miss_latency_s == pytest.approx(80e-9, rel=0.01)
    assert "the knee between" in profile.sources["memory.tlb.reach"]


def test_the_knee_may_fall_between_the_last_reach_chase_and_the_last_levels_own(caches, cpu, measurements):
    """A shared last level whose share shrank between the working-set curve and the chases: every
    reach chase stays at the hit latency, and only the chase over half the last level's measured
    share steps up. The knee lies between the last reach chase and that one, so a gather within
    it is not charged the step (before: no knee, and every hit of the level was)."""
    base = 2 * caches[-2].size_bytes
    footprints = cal.reach_footprints(caches, 64 * MiB)
    m = replace(measurements, beyond_latency_s={1: 4e-9, 2: 18e-9}, cache_latency_s={1: 1.5e-9, 2: 4e-9, 3: 116e-9},
                reach_latency_s={f: 20e-9 for f in footprints}, llc_chase_bytes=32 * MiB)
    assert max(footprints) < 32 * MiB and base < max(footprints)
    fit = cal.tlb_fit(caches, m)
    assert fit is not None and fit.reach_bytes == pytest.approx(math.sqrt(max(footprints) * 32 * MiB), rel=0.01)
    assert fit.miss_latency_s == pytest.approx(98e-9)
    assert cal.tlb_fit(caches, replace(m, llc_chase_bytes=0)) is None     # not recorded: as before


def test_the_direct_convolution_gets_its_own_rate_reorder_and_channel_blocks(caches, cpu, measurements):
    """Where ``_measure_conv`` ran, ``kernels.conv`` has the convolution's own rate over the peak and,
    when the probe one channel past whole blocks took as long as the whole blocks, ``channel_block``
    = the vector's lanes; the GEMM keeps its own rate, and both the GEMM's packing. A probe that
    took the plain channels' square ratio gives no blocks; nothing measured, conv is the GEMM's."""
    lanes = cpu.vector_lanes
    conv = replace(measurements, conv_flops_per_s=40e9, gemm_pack_s_per_weight={"fp32": 0.5e-9},
                   conv_block_ratio=0.99)
    profile = profile_from_mapping(build_profile(caches, cpu, conv), "host")
    kernels, peak = profile.compute.kernels, float(profile.compute.peak_flops.fp32)
    assert kernels.conv.library_efficiency == pytest.approx(40e9 / peak, rel=1e-3)
    assert kernels.gemm.library_efficiency == pytest.approx(80e9 / peak, rel=1e-3)
    assert kernels.conv.pack_cycles_per_vector == kernels.gemm.pack_cycles_per_vector
    assert kernels.conv.pack_cycles_per_vector.fp32 == pytest.approx(
        0.5e-9 * profile.compute.clock_hz * 2 * lanes, rel=1e-3)
    assert kernels.conv.channel_block == lanes
    assert "whole blocks" in profile.sources["compute.kernels.conv.channel_block"]
    plain = (cal.conv_block_short(lanes) / cal.CONV_BLOCK_PROBE) ** 2
    assert cal.blocked_channels(0.97, lanes) and not cal.blocked_channels(plain * 1.03, lanes)
    unblocked = replace(conv, conv_block_ratio=plain)
    assert profile_from_mapping(build_profile(caches, cpu, unblocked), "host").compute.kernels.conv.channel_block == 1
    gemm_only = profile_from_mapping(build_profile(caches, cpu, measurements), "host").compute.kernels
    assert gemm_only.conv.library_efficiency == gemm_only.gemm.library_efficiency
    assert gemm_only.conv.channel_block == 1


ONEDNN_LOG = """onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)
WINDOW 3
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:blk,undef,src:f32::blocked:abcd::f0,,,1x16x32x32,5.1
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,src:f32:a:blocked:aBcd8b::f0,,,mb1_ic16oc16,0.1
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:blk,undef,src:f32::blocked:aBcd8b::f0,,,1x16x32x32,0.1
WINDOW 5
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,src:f32:a:blocked:aBcd8b::f0,,,mb1_ic16oc16,0.1
WINDOW 7
onednn_verbose,v1,primitive,exec,cpu,convolution,x64:gemm:jit,forward_training,src:f32:a:blocked:abcd::f0,,,mb1_ic16oc16,0.2
WINDOW 9
onednn_verbose,v1,primitive,exec,cpu,convolution,x64:gemm:jit,forward_training,src:f32:a:blocked:abcd::f0,,,mb1_ic16oc16,0.2
WINDOW 11
"""


def test_the_convolutions_onednn_lowers_come_from_its_verbose_log(caches, cpu, measurements):
    """Each window's implementation is the last convolution the log names before its marker (torch
    ran the 3 x 3 without oneDNN: none); the direct kernel's widest window is the one before the
    first im2col + GEMM one, and lands in ``kernels.conv.direct_max_kernel`` with its source."""
    found = cal.conv_implementations(ONEDNN_LOG)
    assert found == {5: "jit:avx2", 7: "jit:avx2", 9: "x64:gemm:jit", 11: "x64:gemm:jit"}
    assert cal.direct_max_kernel(found) == 7
    assert cal.direct_max_kernel({3: "jit:avx2", 11: "jit:avx512_core"}) is None
    assert cal.direct_max_kernel({}) is None and cal.direct_max_kernel({3: "x64:gemm:jit"}) is None
    conv = replace(measurements, conv_flops_per_s=40e9, conv_block_ratio=0.99, conv_implementations=found)
    profile = profile_from_mapping(build_profile(caches, cpu, conv), "host")
    assert profile.compute.kernels.conv.direct_max_kernel == 7
    assert "9 x 9: x64:gemm:jit" in profile.sources["compute.kernels.conv.direct_max_kernel"]
    plain = profile_from_mapping(build_profile(caches, cpu, replace(conv, conv_implementations={})), "host")
    assert plain.compute.kernels.conv.direct_max_kernel is None


NATIVE_LOG = ONEDNN_LOG.replace("WINDOW 11", """onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,,,,,mb1,0.1
WINDOW 11""") + """INPUT 10240
INPUT 20480
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:blk,undef,src:f32::blocked:abcd::f0,,,1x5x64x65,5.1
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,,,,mb1_ic5oc5,0.1
INPUT 20800
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,,,,mb1_ic5oc5,0.1
INPUT 40960
"""


def test_torchs_own_small_convolutions_and_onednns_set_up_land_in_the_conv_block(caches, cpu, measurements):
    """The batch-1 input probes: oneDNN ran a probe where the log names a convolution since the
    last marker (the 11 x 11 window's before its own marker, not the first probe's); the largest
    probe kept from it below those it ran is ``native_max_input_elements``, and no step (all ran,
    none ran, kept after ran) gives none. The set-up probe's call less the per-call overhead is the
    convolution's ``call_overhead``; a probe no slower than the launch gives none."""
    found = cal.onednn_inputs(NATIVE_LOG)
    assert found == {10240: False, 20480: False, 20800: True, 40960: True}
    assert cal.conv_implementations(NATIVE_LOG)[11] == "jit:avx2"
    assert cal.native_max_input_elements(found) == 20480
    assert cal.native_max_input_elements({10240: True, 20480: True}) is None
    assert cal.native_max_input_elements({10240: False, 20480: False}) is None
    assert cal.native_max_input_elements({10240: True, 20480: False, 40960: True}) is None
    assert cal.native_max_input_elements({}) is None
    conv = replace(measurements, conv_flops_per_s=40e9, conv_block_ratio=0.99, conv_onednn_inputs=found,
                   conv_call_s=OVERHEAD_S + 70e-6)
    profile = profile_from_mapping(build_profile(caches, cpu, conv), "host")
    kernels = profile.compute.kernels
    assert kernels.conv.native_max_input_elements == 20480
    assert "20480: not oneDNN, 20800: oneDNN" in profile.sources["compute.kernels.conv.native_max_input_elements"]
    assert kernels.conv.call_overhead.seconds("fp32") == pytest.approx(70e-6, rel=1e-3)
    assert "8 -> 8 channels on 4 x 4 at batch 2" in profile.sources["compute.kernels.conv.call_overhead"]
    assert kernels.gemm.call_overhead.seconds("fp32") == 0.0
    none = profile_from_mapping(build_profile(caches, cpu, replace(conv, conv_call_s=OVERHEAD_S / 2,
                                                                   conv_onednn_inputs={})), "host")
    assert none.compute.kernels.conv.call_overhead.seconds("fp32") == 0.0
    assert none.compute.kernels.conv.native_max_input_elements is None


def test_the_lowering_step_reads_a_real_onednn_log(caches, cpu):
    """The real step in a child interpreter: every window it names is one it ran, and the rule gives
    a window of the list or none (which windows oneDNN lowers depends on its build and the ISA)."""
    steps = tuple(s for s in STEPS if s.label.startswith("convolutions oneDNN lowers"))
    m = cal.measure(1, caches, cpu, steps=steps)
    assert set(m.conv_implementations) <= set(cal.CONV_WINDOWS)
    assert all(isinstance(name, str) and name for name in m.conv_implementations.values())
    assert cal.direct_max_kernel(m.conv_implementations) in (None, *cal.CONV_WINDOWS)
    if m.conv_implementations:              # oneDNN is there: every batch-1 probe has its answer
        assert set(m.conv_onednn_inputs) == set(cal.CONV_NATIVE_PROBES)
        assert m.conv_onednn_inputs[max(cal.CONV_NATIVE_PROBES)]


def test_the_convolution_step_times_f_conv2d_and_the_channel_block_probe(caches, cpu):
    """The real convolution step, on one thread: a positive rate from the batch lines and a probe
    ratio between the plain channels' square ratio and a little above 1 (whatever the library does)."""
    steps = tuple(s for s in STEPS if s.label.startswith("direct convolution"))
    m = cal.measure(1, caches, cpu, steps=steps)
    assert m.conv_flops_per_s > 0
    plain = (cal.conv_block_short(cpu.vector_lanes) / cal.CONV_BLOCK_PROBE) ** 2
    assert 0.5 * plain < m.conv_block_ratio < 1.5
    assert any(name.startswith("convolution 64 -> 128 channels") for name in m.settled)
    assert m.conv_call_s > 0 and cal._conv_label(cal.CONV_CALL_PROBE) in m.settled


def test_fresh_pages_are_written_where_the_large_buffer_faults_and_the_small_one_is_reused(
        caches, cpu, measurements, monkeypatch):
    """A 64 MiB buffer filled fresh at every call against one that exists: the difference is its
    pages faulting in, written as ``memory.fresh_pages`` above glibc's 32 MiB ceiling. Not where the
    16 MiB buffer faults as much per byte (not glibc's reuse), where the large one does not fault,
    or where the C library is not glibc."""
    monkeypatch.setattr(cal.platform, "libc_ver", lambda: ("glibc", "2.39"))
    fill = {16 * MiB: (0.2e-3, 0.25e-3), 64 * MiB: (2e-3, 2e-3 + 64 * MiB / 2.5e9)}
    profile = profile_from_mapping(build_profile(caches, cpu, replace(measurements, fresh_fill_s=fill)), "host")
    fresh = profile.memory.fresh_pages
    assert fresh is not None
    assert fresh.above_bytes == 32 * MiB and fresh.bandwidth_bytes_per_s == pytest.approx(2.5e9, rel=1e-3)
    assert "fault in" in profile.sources["memory.fresh_pages.bandwidth"]

    def written(fills):
        return profile_from_mapping(build_profile(caches, cpu, replace(measurements, fresh_fill_s=fills)),
                                    "host").memory.fresh_pages is not None
    assert not written({16 * MiB: (0.2e-3, 0.2e-3 + 16 * MiB / 2.5e9), 64 * MiB: fill[64 * MiB]})
    assert not written({16 * MiB: fill[16 * MiB], 64 * MiB: (2e-3, 2.2e-3)})
    assert not written({})
    monkeypatch.setattr(cal.platform, "libc_ver", lambda: ("", ""))
    assert not written(fill)


def test_counted_faults_decide_fresh_pages_where_the_times_are_noisy(caches, cpu, measurements, monkeypatch):
    """Where the OS counts page faults, they decide: a large buffer that faulted in its pages and a
    small one that did not is written even when a burst of load slowed the small buffer's fresh fill
    (its times alone would refuse it), and a large buffer the heap served (no faults) is not written
    even when its fresh fill happened to be slower."""
    monkeypatch.setattr(cal.platform, "libc_ver", lambda: ("glibc", "2.39"))
    noisy = {16 * MiB: (0.15e-3, 4e-3), 64 * MiB: (2e-3, 2e-3 + 64 * MiB / 2.5e9)}

    def fresh(fills, faulted):
        mapping = build_profile(caches, cpu, replace(measurements, fresh_fill_s=fills, fresh_faulted=faulted))
        return profile_from_mapping(mapping, "host").memory.fresh_pages
    assert fresh(noisy, {}) is None
    got = fresh(noisy, {16 * MiB: 0, 64 * MiB: 64 * MiB + 4096})
    assert got is not None and got.bandwidth_bytes_per_s == pytest.approx(2.5e9, rel=1e-3)
    assert fresh(noisy, {16 * MiB: 0, 64 * MiB: 0}) is None
    assert fresh(noisy, {16 * MiB: 16 * MiB, 64 * MiB: 64 * MiB}) is None


def test_the_real_fresh_page_step_fills_both_buffers_both_ways(caches, cpu):
    steps = tuple(s for s in STEPS if s.label.startswith("fresh pages"))
    m = cal.measure(1, caches, cpu, steps=steps)
    assert set(m.fresh_fill_s) == set(cal.FRESH_PAGE_BYTES)
    assert all(kept > 0 and fresh > 0 for kept, fresh in m.fresh_fill_s.values())
    if m.fresh_faulted and cal.platform.libc_ver()[0] == "glibc":
        assert m.fresh_faulted[64 * MiB] >= 32 * MiB       # above the ceiling: mapped afresh at every call
