"""calibrate: parsing canned sysfs / lscpu data, the LLC fit, and profile writing.

Nothing here measures this machine: the measurements are made-up numbers, so the tests do not
depend on how fast (or how busy) the machine running them is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.hardware.profile import load_profile, profile_from_mapping
from simulator.measure.calibrate import (
    CacheKind,
    ChasePoint,
    Measurements,
    WorkingSetPoint,
    build_profile,
    cyclic_chain,
    effective_llc_bytes,
    fit_llc,
    parse_cpu_info,
    parse_cpu_list,
    parse_size,
    read_sysfs_caches,
    write_profile,
)

DATA = Path(__file__).resolve().parent / "data" / "sysfs_epyc_vm"
MiB = 1 << 20


@pytest.fixture(scope="module")
def caches():
    return read_sysfs_caches(DATA / "cache")


@pytest.fixture(scope="module")
def cpu():
    return parse_cpu_info(*(DATA.joinpath(n).read_text() for n in ("lscpu.txt", "cpuinfo.txt", "meminfo.txt")))


def _curve():
    """Design notes, section 3: ~50 GB/s to 8 MB, 34 at 16 MB, 25 at 24 MB, ~20 from 32 MB up."""
    points = {0.25: 40, 1: 48, 2: 50, 4: 50, 8: 50, 16: 34, 24: 25, 32: 20, 64: 20, 128: 20}
    return [WorkingSetPoint(int(s * MiB), g * 1e9) for s, g in points.items()]


@pytest.fixture
def measurements():
    return Measurements(threads=2, versions={"torch": "9.9", "numpy": "1.0"}, launch_overhead_s=2e-6,
                        stream_read_bytes_per_s=22e9, stream_triad_bytes_per_s=24e9, working_set=_curve(),
                        cache_latency_s={1: 1.5e-9, 2: 4e-9, 3: 15e-9}, dram_latency_s=110e-9,
                        chases=[ChasePoint(1, 0.6e9), ChasePoint(8, 4e9), ChasePoint(16, 5e9)],
                        gemm_flops_per_s=80e9, gemv_flops_per_s=25e9, spmv_flops_per_s=2e9,
                        spmm_flops_per_s=4e9, sparse_backend="scipy", sparse_threads=1,
                        spmm_backend="scipy", spmm_threads=1)


def test_sizes_and_cpu_lists():
    assert parse_size("32K") == 32768 and parse_size("32768K") == 32 * MiB and parse_size("1 MiB") == MiB
    assert parse_cpu_list("0-1") == 2 and parse_cpu_list("0") == 1 and parse_cpu_list("0-3,8,10-11") == 7
    with pytest.raises(ValueError):
        parse_size("lots")


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
    assert cpu.clock_hz == pytest.approx(2445.43e6)
    assert cpu.lanes_per_core == 16            # AVX2 + FMA: 8 lanes x 2 FMA ports
    assert cpu.memory_bytes == 24684092 * 1024


def test_effective_llc_is_where_the_curve_crosses_the_middle():
    size, in_cache, dram = effective_llc_bytes(_curve(), 32 * MiB, floor_bytes=2 * MiB, granule_bytes=1024)
    assert in_cache == pytest.approx(50e9) and dram == pytest.approx(20e9)
    # sqrt(50 x 20) = 31.6 GB/s is crossed between 16 MiB (34) and 24 MiB (25): below the nominal 32 MiB
    assert 16 * MiB < size < 24 * MiB and size % 1024 == 0
    flat = [WorkingSetPoint(p.size_bytes, 30e9) for p in _curve()]
    assert effective_llc_bytes(flat, 32 * MiB, 2 * MiB, 1024)[0] == 32 * MiB   # no fall-off: nominal


def test_llc_policy_fit_follows_the_shape_of_the_fall_off():
    from simulator.hardware.profile import Replacement

    # The design notes' curve falls off gradually from 8 to 32 MiB: random replacement (part of a
    # too-large loop stays) reproduces it far better than an LRU step anywhere.
    gradual = fit_llc(_curve(), 32 * MiB, 2 * MiB, 1024, 16)
    assert gradual.replacement is Replacement.RANDOM
    assert gradual.losses[Replacement.RANDOM][1] < gradual.losses[Replacement.LRU][1] / 2
    assert 8 * MiB < gradual.size_bytes < 24 * MiB and gradual.size_bytes % 1024 == 0
    # A sharp step at 16-20 MiB is an LRU cache, at the crossing rule's size.
    step = [WorkingSetPoint(p.size_bytes, (50e9 if p.size_bytes <= 16 * MiB else 20e9)) for p in _curve()]
    step += [WorkingSetPoint(12 * MiB, 50e9), WorkingSetPoint(20 * MiB, 20e9)]
    sharp = fit_llc(step, 32 * MiB, 2 * MiB, 1024, 16)
    assert sharp.replacement is Replacement.LRU
    assert sharp.size_bytes == effective_llc_bytes(step, 32 * MiB, 2 * MiB, 1024)[0]


def test_cyclic_chain_visits_every_line_once():
    chain = cyclic_chain(64 * 100, 64, seed=3)
    stride = 8
    p, seen = 0, set()
    for _ in range(100):
        seen.add(p)
        p = int(chain[p])
    assert p == 0 and len(seen) == 100 and all(s % stride == 0 for s in seen)


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
    assert "sysfs says 32768 KiB" in profile.fitted.get("memory.caches.L3.size", "")
    assert "lru " in profile.fitted["memory.caches.L3.size"] and "memory.caches.L3.replacement" in profile.fitted
    dram = profile.dram
    assert dram.sustained_bandwidth_bytes_per_s == pytest.approx(20e9, rel=1e-3)
    assert dram.latency_s == pytest.approx(110e-9, rel=1e-3)
    # Little's law: 5 GB/s x 110 ns / 64 B = 8.6 lines in flight
    assert dram.outstanding_requests_per_core == 9
    peak = 2 * 16 * 2 * 2445.43e6
    assert profile.peak_flops_per_s == pytest.approx(peak, rel=1e-3)
    assert profile.compute.efficiency.gemm == pytest.approx(80e9 / peak, rel=1e-3)
    # scipy ran on one of the two cores: its efficiency is relative to one core's peak
    assert profile.compute.efficiency.spmv == pytest.approx(2e9 / (peak / 2), rel=1e-3)
    assert all("calibrate" in profile.fitted[k] for k in ("compute.efficiency.gemv", "memory.dram.sustained_bandwidth"))
    assert path.read_text().startswith("# Measured on this machine")


def test_default_llc_is_an_lru_step_with_the_other_fits_recorded(caches, cpu, measurements):
    mapping = build_profile(caches, cpu, measurements)
    l3 = mapping["memory"]["caches"][-1]
    assert l3["replacement"] == "lru"
    assert 16 * MiB < int(l3["size"].split()[0]) < 24 * MiB      # the crossing, as in the test above
    note = mapping["fitted"]["memory.caches.L3.size"]
    assert "--llc-policy lru" in note and "random " in note and "dip " in note
    assert "memory.caches.L3.replacement" not in mapping["fitted"]


def test_write_profile_refuses_an_invalid_mapping(caches, cpu, measurements, tmp_path):
    mapping = build_profile(caches, cpu, measurements)
    mapping["memory"]["caches"][0]["line"] = "48 B"
    with pytest.raises(ConfigError, match="power of two"):
        write_profile(mapping, tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()
    profile_from_mapping(build_profile(caches, cpu, measurements), "again")


def test_cli_out_in_missing_directory(tmp_path, capsys):
    assert cli.main(["calibrate", "--out", str(tmp_path / "no" / "host.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]


def test_prefetched_stream_raises_requests_in_flight(caches, cpu, measurements):
    from dataclasses import replace

    # one thread reading 14 GB/s sequentially at 110 ns keeps 24 lines in flight: more than the chases
    mapping = build_profile(caches, cpu, replace(measurements, stream_read_one_thread_bytes_per_s=14e9))
    dram = profile_from_mapping(mapping, "x").dram
    assert dram.outstanding_requests_per_core == 24
    assert "sequential read" in mapping["sources"]["memory.dram.outstanding_requests_per_core"]
