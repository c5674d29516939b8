"""bench and crosscheck plumbing on tiny layers (no assertion on how fast anything runs)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.compress.compression import StorageFormat, pruned_encoding
from simulator.hardware.profile import HardwareProfile, load_profile
from simulator.measure.bench import SparseBackend, bench, layer_operator, load_bench, sparse_operator
from simulator.measure.crosscheck import crosscheck, measured_cells, plot, render
from simulator.model.weights import magnitude_mask, synthetic_weights
from simulator.model.workload import load_workload

I7 = "hwprofiles/i7-5930k.yaml"


@pytest.fixture
def tiny(tiny_workload_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    return load_workload(tiny_workload_path)


@pytest.fixture
def measured(tiny):
    return {(fmt, batch): bench(tiny, StorageFormat(fmt), batch, threads=1, repeat=2, profile_operators=False)
            for fmt in ("dense", "csr") for batch in (1, 4)}


@pytest.mark.parametrize("backend", [SparseBackend.TORCH, SparseBackend.SCIPY])
def test_csr_layer_computes_the_simulators_pruned_weights(tiny, backend):
    fc1 = tiny.layer("fc1")
    weights = synthetic_weights(fc1, 0).reshape(fc1.weight_matrix_shape)
    pruned = weights * magnitude_mask(weights, fc1.density)
    encoded = pruned_encoding(fc1, StorageFormat.CSR, 0)
    x = np.random.default_rng(1).random((fc1.weight_matrix_shape[1], 3), dtype=np.float32)
    rows = np.repeat(np.arange(fc1.weight_matrix_shape[0]), np.diff(encoded.pointers))
    values = weights.numpy()[rows, encoded.indices]
    out = sparse_operator(backend, encoded.pointers, encoded.indices, values, fc1.weight_matrix_shape, x)()
    out = out.numpy() if isinstance(out, torch.Tensor) else out
    np.testing.assert_allclose(out, pruned.numpy() @ x, rtol=1e-5, atol=1e-6)


def test_bench_times_every_layer(measured, tiny):
    result = measured[("csr", 4)]
    assert [t.layer for t in result.layers] == [l.name for l in tiny.layers]
    fc1 = next(t for t in result.layers if t.layer == "fc1")
    assert fc1.kernel == "spmm" and fc1.backend in ("torch", "scipy") and fc1.calls == 2
    assert 0 < fc1.p10_s <= fc1.median_s <= fc1.p90_s
    nnz = pruned_encoding(tiny.layer("fc1"), StorageFormat.CSR, 0).nnz
    assert fc1.weight_bytes == nnz * 8 + (64 + 1) * 4          # fp32 values, int32 indices and pointers
    assert next(t for t in measured[("dense", 1)].layers if t.layer == "fc2").kernel == "gemv"
    assert next(t for t in measured[("dense", 4)].layers if t.layer == "conv1").kernel == "conv"


def test_conv_operators_run(tiny):
    for fmt in (StorageFormat.DENSE, StorageFormat.CSR):
        op = layer_operator(tiny.layer("conv1"), fmt, 2, 0, 1)
        assert op.call() is not None


def test_json_round_trip_and_errors(measured, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(measured[("dense", 1)].to_json()))
    again = load_bench(path)
    assert again == measured[("dense", 1)]
    path.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ConfigError, match="schema"):
        load_bench(path)
    doc = measured[("dense", 1)].to_json()
    doc["layers"][0]["median_s"] = 0
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"layers\[0\].median_s"):
        load_bench(path)


def test_crosscheck_simulates_the_same_cases(measured, tiny, tmp_path):
    check = crosscheck(load_profile(I7), tiny, list(measured.values()))
    cells = {(m.cell.layer, m.cell.batch, m.cell.format): m for m in check.cells}
    assert len(check.cells) == 2 * 2 * 3            # conv1, fc1, fc2 x dense/csr x batch 1/4 (no pool)
    for m, r in zip(check.cells, check.results):
        assert r.cell is m.cell and r.predicted_s > 0
    assert cells[("fc1", 1, "sparse")].threads in (1,)
    summary = check.summaries[0]
    assert summary.name == "all" and summary.cells == 12 and summary.winners_total == 6
    text = render(check)
    assert "median |err|" in text and "fc1" in text
    plot(check, tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 0
    assert len(check.to_json()["cells"]) == 12


def test_crosscheck_fit_reports_held_out_cells(measured, tiny):
    check = crosscheck(load_profile(I7), tiny, [measured[("dense", 1)], measured[("csr", 1)]], do_fit=True)
    names = [s.name for s in check.summaries]
    assert "fitted" in names and "held-out" in names and check.fitted is not None
    held = {m.cell.layer for m in check.cells if m.held_out}
    assert held == {"fc2"}                          # every third weighted layer


def test_crosscheck_rejects_other_repeat_modes(measured, tiny):
    from dataclasses import replace

    with pytest.raises(ConfigError, match="repeat_mode"):
        measured_cells([replace(measured[("dense", 1)], repeat_mode="network")], tiny)


def test_cli_bench_then_crosscheck(tiny_workload_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "m.json"
    assert cli.main(["bench", "--workload", str(tiny_workload_path), "--format", "csr", "--repeat", "2",
                     "--threads", "1", "--out", str(out)]) == 0
    assert "fc1" in capsys.readouterr().out
    assert cli.main(["crosscheck", I7, str(out), "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["summaries"][0]["cells"] == 3
    assert cli.main(["crosscheck", I7, str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.json" in err[0]


def test_repeated_runs_take_the_fastest_run(measured, tiny):
    from dataclasses import replace

    base = measured[("dense", 1)]
    runs = [replace(base, layers=[replace(t, median_s=t.median_s * k) for t in base.layers]) for k in (1, 3, 2)]
    cells = measured_cells(runs, tiny)
    assert len(cells) == 3
    fc1 = next(t for t in base.layers if t.layer == "fc1")
    assert next(c for c in cells if c.cell.layer == "fc1").cell.published_s == pytest.approx(fc1.median_s)


def _with_libraries(libraries: dict) -> HardwareProfile:
    from simulator.base.yamlio import read_yaml_mapping
    from simulator.hardware.profile import profile_from_mapping

    data = read_yaml_mapping(I7)
    data["compute"]["kernels"]["libraries"] = libraries
    return profile_from_mapping(data, I7)


def test_each_csr_cell_is_timed_with_the_library_that_ran_it(measured, tiny):
    """bench picks torch or scipy per layer; the profile's ``libraries`` hold each one's costs, and
    a cell is timed with its own: a library four times as costly per non-zero slows its cells
    (and only them) by about that much where they are issue-bound; its index width changes the
    bytes its cells' matrices take."""
    from dataclasses import replace

    csr = measured[("csr", 1)]
    ran = [replace(csr, layers=[replace(t, backend="scipy" if t.layer == "fc1" else "torch") for t in csr.layers])]
    plain = crosscheck(load_profile(I7), tiny, ran)
    i7 = load_profile(I7).compute.kernels
    costly = {"spmv": {"cycles_per_nonzero": 4 * i7.spmv.cycles_per_nonzero, "cycles_per_row": i7.spmv.cycles_per_row},
              "spmm": {"cycles_per_nonzero": 4 * i7.spmm.cycles_per_nonzero, "cycles_per_row": i7.spmm.cycles_per_row},
              "index_bits": 32}
    same = {"spmv": i7.spmv.model_dump(by_alias=True), "spmm": i7.spmm.model_dump(by_alias=True), "index_bits": 32}
    check = crosscheck(_with_libraries({"scipy": costly, "torch": same}), tiny, ran)
    before = {r.cell.layer: r for r in plain.results}
    after = {r.cell.layer: r for r in check.results}
    assert after["fc2"].predicted_s == pytest.approx(before["fc2"].predicted_s)
    assert after["conv1"].predicted_s == pytest.approx(before["conv1"].predicted_s)
    assert after["fc1"].predicted_s > 2 * before["fc1"].predicted_s
    # torch's int64 indices: its cells' matrices take more bytes than with the profile's 32 bits
    wide = crosscheck(_with_libraries({"scipy": costly, "torch": {**same, "index_bits": 64}}), tiny, ran)
    assert {r.cell.layer: r for r in wide.results}["fc2"].predicted_s >= after["fc2"].predicted_s


def test_a_profile_puts_a_named_library_in_place_of_its_own():
    profile = _with_libraries({"scipy": {"spmv": {"cycles_per_nonzero": 7.0, "load_overlap": 0.25},
                                         "spmm": {"cycles_per_nonzero": 5.0, "columns_per_step": 8},
                                         "index_bits": 16, "threads": 1}})
    scipy = profile.with_sparse_library("scipy")
    kernels = scipy.compute.kernels
    assert kernels.spmv.cycles_per_nonzero == 7.0 and kernels.spmv.load_overlap == 0.25
    assert kernels.spmm.columns_per_step == 8 and kernels.index_bits == 16
    assert scipy.compute.threads.spmv == 1 and scipy.compute.threads.gemv == profile.compute.threads.gemv
    assert kernels.gemm == profile.compute.kernels.gemm and kernels.libraries == profile.compute.kernels.libraries
    assert profile.with_sparse_library("torch") is profile and profile.with_sparse_library("") is profile
    assert profile.compute.kernels.spmv.cycles_per_nonzero != 7.0       # the profile itself is unchanged


class _Clock:
    """A stand-in for the ``time`` module whose clock only moves when a fake call runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _calls_taking(clock: _Clock, seconds: list[float]):
    """A call whose n-th run takes ``seconds[n]`` (the last figure from then on); the runs made."""
    made: list[int] = []

    def call() -> None:
        clock.now += seconds[min(len(made), len(seconds) - 1)]
        made.append(1)
    return call, made


def test_warm_up_runs_until_the_caches_stop_filling(monkeypatch):
    # NT_LSTM's calls after its other variants, as measured on the Zen 3 guest: faster for four
    # passes while its lines come back into the L3, then steady (two calls that gain nothing)
    from simulator.measure import bench as bench_module

    clock = _Clock()
    monkeypatch.setattr(bench_module, "time", clock)
    call, made = _calls_taking(clock, [650e-6, 500e-6, 340e-6, 270e-6, 250e-6, 249e-6, 249e-6])
    assert bench_module.warm_up(call, 1) == 7 == len(made)
    # a refill whose second pass gains less than the tolerance is not over: the same layer, another round
    call, made = _calls_taking(clock, [696e-6, 664e-6, 470e-6, 359e-6, 284e-6, 252e-6, 246e-6, 252e-6, 246e-6])
    assert bench_module.warm_up(call, 1) == 8
    # a noisy call that gains nothing does not end it while the one after it gains
    call, made = _calls_taking(clock, [600e-6, 400e-6, 420e-6, 300e-6, 300e-6, 301e-6])
    assert bench_module.warm_up(call, 1) == 6
    # a layer from DRAM is no faster the second time: three calls, and never fewer than asked
    call, made = _calls_taking(clock, [1e-3])
    assert bench_module.warm_up(call, 1) == 3
    assert bench_module.warm_up(call, 5) == 5
    # a call that keeps speeding up stops at the cap
    call, made = _calls_taking(clock, [0.5 ** n for n in range(30)])
    assert bench_module.warm_up(call, 1) == bench_module.WARMUP_MAX_CALLS


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc_trim and its mmap threshold")
def test_free_heap_pages_go_back_so_an_allocation_faults_wherever_it_comes_from():
    """With glibc's mmap threshold raised, a 40 MB array comes from the heap, and once freed the
    next one reuses its pages without a fault (what hid torch's index copy from ``calibrate`` when
    an earlier step had left such a chunk); after ``release_free_pages`` it faults them in again."""
    script = textwrap.dedent("""
        import ctypes
        from simulator.measure.bench import PAGE_BYTES, minor_faults, release_free_pages
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        libc.mallopt(-3, 1 << 30)                             # M_MMAP_THRESHOLD: the heap serves it
        libc.mallopt(-1, 1 << 30)                             # M_TRIM_THRESHOLD: free keeps it there
        size = 40 << 20
        def faulted(release):
            if release:
                release_free_pages()
            before = minor_faults()
            block = libc.malloc(size)
            ctypes.memset(block, 1, size)                     # written, as a copy writes it
            libc.free(block)
            return (minor_faults() - before) * PAGE_BYTES / size
        faulted(False)
        print(faulted(False), faulted(True), faulted(False), faulted(True))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    reused, released, reused_again, released_again = (float(v) for v in done.stdout.split())
    assert reused < 0.1 and reused_again < 0.1
    assert released > 0.9 and released_again > 0.9


def test_spmv_levels_benchmark_times_every_loop_at_every_size():
    """``benchmarks/spmv_levels.py`` (the figures behind a sparse kernel's ``load_overlap`` from the
    L3) prints each loop at each size; bad sizes are one line, exit 2."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "spmv_levels.py"
    done = subprocess.run([sys.executable, str(script), "--sizes", "0.05,0.1", "--rounds", "1", "--threads", "1"],
                          capture_output=True, text=True, check=True)
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["0.05"] * 4 + ["0.1"] * 4
    assert [r[2] for r in rows[:4]] == ["scipy", "torch", "torch", "copy"] and rows[1][3] == "int32"
    assert all(float(r[-1]) > 0 for r in rows)            # every loop moved its bytes in a positive time
    bad = subprocess.run([sys.executable, str(script), "--sizes", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--sizes" in bad.stderr.splitlines()[-1]


def test_gather_fills_benchmark_times_both_loops_at_every_operand_and_the_write_backs():
    """``benchmarks/gather_fills.py`` (the figures behind ``cycles_per_gather_fill`` and
    ``writeback_cost``) prints both loops at each operand size and the three DRAM calls; bad
    operand sizes are one line, exit 2."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gather_fills.py"
    done = subprocess.run([sys.executable, str(script), "--operands", "8,64", "--rounds", "1", "--threads", "1"],
                          capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    rows = [line.split() for line in lines[2:6]]
    assert [(r[0], r[1]) for r in rows] == [("8", "torch"), ("8", "scipy"), ("64", "torch"), ("64", "scipy")]
    assert all(float(r[-1]) > 0 for r in rows)
    assert sum(line.startswith(("read ", "fill ")) for line in lines) == 3
    assert "a write-back against a read" in lines[-1]
    bad = subprocess.run([sys.executable, str(script), "--operands", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--operands" in bad.stderr.splitlines()[-1]
