"""Sweeps: value syntax, validation before running, the cache-size path, results files,
resuming, failures, backends (in-process, process pool, Dask) and the command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.base.units import UnitError
from simulator.commands.options import flag_of
from simulator.compress.compression import StorageFormat
from simulator.studies.sweep import Backend, BackendChoice, parse_values, plan_sweep, run_sweep
from simulator.studies.sweepstore import ResultStore

TEGRA = "hwprofiles/tegra.yaml"
I7 = "hwprofiles/i7-5930k.yaml"
TITAN = "hwprofiles/titan-x.yaml"
INLINE = BackendChoice(Backend.INLINE)


@pytest.fixture(autouse=True)
def sim_cache(tmp_path_factory, monkeypatch):
    """One encoding cache for the module (the tiny workload is pruned once, then read back)."""
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sweep-sim-cache"))


@pytest.fixture
def at_root(repo_root, monkeypatch):
    """Run from the repository root, where the profiles are."""
    monkeypatch.chdir(repo_root)


def _run(plan, out=None, backend=INLINE, progress=lambda *_: None):
    store = ResultStore(out, plan)
    summary = run_sweep(plan, store, backend, progress)
    return store, summary


def _key(row):
    return (row.point, row.variant, row.layer)


def _sorted(rows):
    return sorted(rows, key=_key)


# --- values -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, values", [
    ("5GB/s,10GB/s,20GB/s", ["5GB/s", "10GB/s", "20GB/s"]),
    ("4, 8", [4, 8]),
    ("0.5", [0.5]),
    ("64KiB..512KiB:x2", ["65536 B", "131072 B", "262144 B", "524288 B"]),
    ("1..8:x2", [1, 2, 4, 8]),
    ("1..10:*3", [1, 3, 9]),
    ("0.04..0.1:+0.02", [0.04, 0.06, 0.08, 0.1]),
    ("128KiB..512KiB:+128KiB", ["131072 B", "262144 B", "393216 B", "524288 B"]),
    ("1GB/s..4GB/s:x2", ["1000000000 B/s", "2000000000 B/s", "4000000000 B/s"]),
    ("8..2:+-2", [8, 6, 4, 2]),
])
def test_values(text, values):
    assert parse_values(text) == values


@pytest.mark.parametrize("text, message", [
    ("1..8:x1", "factor other than 1"),
    ("8..1:x2", "never gets"),
    ("0.1..0.5:+-0.1", "never gets"),
    ("1..2", "a range is"),
    ("1,,2", "empty value"),
    ("", "empty value"),
    ("64KiB..1GB/s:x2", "different kinds"),
    ("1..2:+1furlong", "neither a number nor a quantity"),
    ("0..1e9:+1e-9", "more than"),
])
def test_bad_values(text, message):
    with pytest.raises(UnitError, match=message):
        parse_values(text)


# --- planning: every point validated before any runs -------------------------------------------

def test_plan_builds_every_point_with_base_unit_columns(at_root, tiny_workload_path):
    plan = plan_sweep(TEGRA, ["memory.caches.L2.size=128KiB,256KiB", "density=0.1,0.2,0.3"], tiny_workload_path)
    assert [a.column for a in plan.axes] == ["memory.caches.L2.size_bytes", "density"]
    assert len(plan.points) == 6
    assert plan.points[5].settings == (("memory.caches.L2.size_bytes", 262144), ("density", 0.3))
    assert plan.points[5].profile.caches[1].size_bytes == 262144
    assert plan.points[5].options.density == 0.3
    assert plan.cache_level is None          # two fields: full runs
    assert plan.columns[:3] == ["point", "memory.caches.L2.size_bytes", "density"]
    assert {"L1_hit_rate", "L2_hit_rate", "time_s", "dram_bytes", "bound", "error"} <= set(plan.columns)


def test_cache_path_applies_to_the_last_level_only(at_root, tiny_workload_path):
    assert plan_sweep(TEGRA, ["memory.caches.L2.size=128KiB,256KiB"], tiny_workload_path).cache_level == 1
    assert plan_sweep(TEGRA, ["memory.caches.L1.size=16KiB,32KiB"], tiny_workload_path).cache_level is None
    assert plan_sweep(TEGRA, ["memory.caches.L2.size=128KiB,256KiB"], tiny_workload_path,
                      use_cache_path=False).cache_level is None


@pytest.mark.parametrize("sets, message", [
    (["memory.caches.L3.size=1MiB"], "'memory.caches.L3.size' is not a field of hwprofiles/tegra.yaml; did you mean"),
    (["memory.dram.bandwidth=5GB/s"], "did you mean memory.dram.peak_bandwidth, memory.dram.sustained_bandwidth"),
    (["memory.caches.L2=1MiB"], "is not a field"),
    (["memory.caches.L1.size=64B"], "set memory.caches.L1.size=64 B: memory.caches.L1.size: 64 B is not a whole "
                                    "number of sets"),
    (["memory.caches.L2.size=128KiB,8KiB"], "set memory.caches.L2.size=8.0 KiB: memory.caches.L2.size: L2"),
    (["memory.dram.sustained_bandwidth=10GB/s,20GB/s"], "memory.dram.sustained_bandwidth: exceeds"),
    (["compute.efficiency.spmv=0.5,2"], "compute.efficiency.spmv"),
    (["density=0.1,1.5"], "density 1.5 is not a number in (0, 1]"),
    (["batch=0.5"], "batch 0.5 is not a positive integer"),
    (["link.bandwidth=1GB/s"], "has no link"),
    (["density=0.1", "density=0.2"], "density is set twice"),
    (["memory.caches.L2.size"], "expected FIELD=VALUES"),
    (["memory.caches.L2.size=1..2"], "a range is"),
])
def test_invalid_points_are_rejected_before_running(at_root, tiny_workload_path, sets, message):
    with pytest.raises(ConfigError) as err:
        plan_sweep(TEGRA, sets, tiny_workload_path)
    assert str(err.value).startswith("options: set ")      # the library names the option ...
    assert message in str(err.value)
    assert err.value.spelled(flag_of).startswith("command line: --set ")   # ... the command line its flag


def test_batch_flag_and_axis_conflict(at_root, tiny_workload_path):
    with pytest.raises(ConfigError, match="batch: conflicts with set batch=") as err:
        plan_sweep(TEGRA, ["batch=1,2"], tiny_workload_path, batch=4)
    assert err.value.spelled(flag_of) == "command line: --batch: conflicts with --set batch=..."


# --- the cache-size path is the full pipeline, computed with less work -------------------------

@pytest.mark.parametrize("profile, sets", [
    (TEGRA, ["memory.caches.L2.size=128KiB,192KiB,1MiB"]),          # 192 KiB: 96 sets, not a power of two
    (I7, ["memory.caches.L3.size=2560KiB,5MiB,15MiB"]),             # private L1 / L2 on 6 cores above
    (TITAN, ["memory.caches.L2.size=1536KiB,3MiB"]),                # host-link copies around the network
])
def test_cache_path_rows_equal_full_runs(at_root, tiny_workload_path, profile, sets):
    fast = plan_sweep(profile, sets, tiny_workload_path, repeat=2)
    full = plan_sweep(profile, sets, tiny_workload_path, repeat=2, use_cache_path=False)
    assert fast.cache_level is not None and full.cache_level is None
    fast_rows = _sorted(_run(fast)[0].rows())
    full_rows = _sorted(_run(full)[0].rows())
    assert fast_rows == full_rows
    assert len(fast_rows) == len(fast.points) * 2 * (len(fast_rows) // len(fast.points) // 2)
    assert all(not r.error for r in fast_rows)


def test_rows_per_point_variant_and_layer(at_root, tiny_workload_path):
    plan = plan_sweep(TEGRA, ["memory.dram.sustained_bandwidth=5GB/s,10GB/s", "density=0.1,0.5"], tiny_workload_path)
    rows = _run(plan)[0].rows()
    assert len(rows) == 4 * 2 * 5                    # points x variants x (4 layers + total)
    slow = [r for r in rows if r.layer == "fc1" and r.variant == "dense"
            and r.settings["memory.dram.sustained_bandwidth_bytes_per_s"] == 5e9]
    fast = [r for r in rows if r.layer == "fc1" and r.variant == "dense"
            and r.settings["memory.dram.sustained_bandwidth_bytes_per_s"] == 10e9]
    assert slow[0].time_s > fast[0].time_s         # a DRAM-bound GEMV gets faster with bandwidth
    pruned = {r.settings["density"]: r.weight_bytes for r in rows if r.layer == "fc1" and r.variant == "pruned"}
    assert pruned[0.1] < pruned[0.5]


# --- failures, results files, resuming ----------------------------------------------------------

def test_a_failing_point_is_recorded_and_the_sweep_goes_on(at_root, tiny_workload_path, monkeypatch):
    import simulator.studies.sweep as sweep

    real_run = sweep.run

    def flaky(profile, workload, options):
        if profile.dram.sustained_bandwidth_bytes_per_s == 7e9:
            raise RuntimeError("the simulated machine caught fire")
        return real_run(profile, workload, options)

    monkeypatch.setattr(sweep, "run", flaky)
    plan = plan_sweep(TEGRA, ["memory.dram.sustained_bandwidth=5GB/s,7GB/s,9GB/s"], tiny_workload_path)
    store, summary = _run(plan)
    assert summary.failed == 1 and summary.ran == 3
    errors = [r for r in store.rows() if r.error]
    assert len(errors) == 1 and errors[0].error == "RuntimeError: the simulated machine caught fire"
    assert errors[0].settings == {"memory.dram.sustained_bandwidth_bytes_per_s": 7e9}


def test_a_format_a_layer_cannot_use_is_refused_before_any_point(at_root, tiny_workload_path):
    # CSC storage is modelled for FC layers only: the plan is refused, naming the flag and the layer
    with pytest.raises(ConfigError, match=r"format: csc is modelled for FC layers only.*conv1"):
        plan_sweep(TEGRA, ["memory.caches.L2.size=128KiB,256KiB"], tiny_workload_path, formats=(StorageFormat.CSC,))
    # at density 1.0 the convolution is not pruned, so it runs dense and CSC applies to the FC layers
    plan = plan_sweep(TEGRA, ["density=1.0"], tiny_workload_path, formats=(StorageFormat.CSC,))
    store, summary = _run(plan)
    assert summary.failed == 0 and summary.ran == 1


def test_results_are_appended_per_point_and_a_sweep_resumes(at_root, tiny_workload_path, tmp_path):
    out = tmp_path / "sweep.csv"
    plan = plan_sweep(TEGRA, ["memory.dram.sustained_bandwidth=4GB/s,6GB/s,8GB/s,10GB/s"], tiny_workload_path)

    def interrupt_after_two(result, done, total):
        with out.open(encoding="utf-8") as handle:          # written as it goes
            assert sum(1 for _ in handle) == 1 + done * 10
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(plan, out, progress=interrupt_after_two)
    ran = []
    store, summary = _run(plan, out, progress=lambda result, *_: ran.append(result.index))
    assert (summary.resumed, summary.ran) == (2, 2)
    assert sorted(ran) == [2, 3]
    fresh = _run(plan)[0].rows()
    assert _sorted(store.rows()) == _sorted(fresh)
    assert _sorted(ResultStore(out, plan).rows()) == _sorted(fresh)      # read back from the file
    with out.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 40 and records[0]["memory.dram.sustained_bandwidth_bytes_per_s"] in ("4000000000.0",
                                                                                               "6000000000.0")
    assert json.loads((tmp_path / "sweep.csv.sweep.json").read_text())["fields"] == ["memory.dram.sustained_bandwidth"]


def test_a_point_cut_short_runs_again(at_root, tiny_workload_path, tmp_path):
    out = tmp_path / "sweep.csv"
    plan = plan_sweep(TEGRA, ["memory.dram.sustained_bandwidth=4GB/s,6GB/s"], tiny_workload_path)
    _run(plan, out)
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:20], encoding="utf-8")   # a crash mid-point
    store, summary = _run(plan, out)
    assert (summary.resumed, summary.ran) == (1, 1)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 21


def test_a_results_file_of_another_sweep_is_refused(at_root, tiny_workload_path, tmp_path):
    out = tmp_path / "sweep.csv"
    _run(plan_sweep(TEGRA, ["memory.dram.sustained_bandwidth=4GB/s"], tiny_workload_path), out)
    other = plan_sweep(TEGRA, ["memory.dram.latency=100ns,200ns"], tiny_workload_path)
    with pytest.raises(ConfigError, match="holds a different sweep .fields differ"):
        ResultStore(out, other)
    stray = tmp_path / "stray.csv"
    stray.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="was not written by a sweep"):
        ResultStore(stray, other)
    with pytest.raises(ConfigError, match="use a .csv or .parquet"):
        ResultStore(tmp_path / "x.xlsx", other)


def test_parquet_results(at_root, tiny_workload_path, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "sweep.parquet"
    plan = plan_sweep(TEGRA, ["memory.caches.L2.size=128KiB,256KiB"], tiny_workload_path)
    store, _ = _run(plan, out)
    table = pq.read_table(out)
    assert table.column_names == plan.columns and table.num_rows == 20
    assert not (tmp_path / "sweep.parquet.partial.csv").exists()
    assert _sorted(ResultStore(out, plan).rows()) == _sorted(store.rows())
    assert _run(plan, out)[1].ran == 0


def test_dask_gives_the_same_rows(at_root, tiny_workload_path):
    from dask.distributed import LocalCluster

    sets = ["memory.caches.L2.size=128KiB,256KiB"]
    for cache_path in (True, False):
        plan = plan_sweep(TEGRA, sets, tiny_workload_path, use_cache_path=cache_path)
        local = _sorted(_run(plan)[0].rows())
        with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, protocol="tcp",
                          dashboard_address=None) as cluster:
            remote = _sorted(_run(plan, backend=BackendChoice(Backend.DASK, address=cluster.scheduler_address))[0]
                             .rows())
        assert remote == local


# --- the command line ---------------------------------------------------------------------------

def test_cli_sweep_prints_a_table_writes_rows_and_a_plot(at_root, tiny_workload_path, tmp_path, capsys):
    out, plot = tmp_path / "l2.csv", tmp_path / "l2.png"
    status = cli.main(["sweep", TEGRA, "--workload", str(tiny_workload_path), "--set",
                       "memory.caches.L2.size=128KiB..512KiB:x2", "--workers", "1", "--out", str(out),
                       "--plot", str(plot)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["memory.caches.L2.size", "dense", "time", "pruned", "time", "speed-up"]
    assert lines[2].split()[:2] == ["128.0", "KiB"] and lines[2].endswith("x")
    assert "3 points: 3 run" in captured.out and f"plot: {plot}" in captured.out
    assert plot.stat().st_size > 10_000 and out.exists()
    assert "[3/3] point " in captured.err and "(memory.caches.L2.size=" in captured.err   # plain lines, no tty


@pytest.mark.parametrize("args, message", [
    (["--set", "memory.caches.L1.size=64B"], "error: command line: --set memory.caches.L1.size=64 B: "),
    (["--set", "nonsense=1"], "error: command line: --set nonsense=1: 'nonsense' is not a field"),
    (["--set", "density=0.1", "--plot", "x.bmp"], "error: command line: --plot: x.bmp: a plot is written as"),
    (["--set", "density=0.1", "--dask", "localhost"], "error: command line: --dask: 'localhost' is not a scheduler"),
    (["--set", "density=0.1", "--out", "/nonexistent/x.csv"], "error: command line: --out: /nonexistent/x.csv: "
                                                              "directory /nonexistent does not exist"),
])
def test_cli_errors_are_one_line_with_status_2(at_root, tiny_workload_path, capsys, args, message):
    assert cli.main(["sweep", TEGRA, "--workload", str(tiny_workload_path)] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_process_pool_matches_in_process(repo_root, tiny_workload_path, tmp_path):
    """Two worker processes (a subprocess, so the pool forks from a clean process)."""
    env = {**os.environ, "SIMULATOR_CACHE_DIR": os.environ["SIMULATOR_CACHE_DIR"]}
    sets = ["--set", "memory.dram.latency=200ns,400ns,800ns"]
    outs = []
    for workers in ("2", "1"):
        out = tmp_path / f"w{workers}.csv"
        done = subprocess.run([sys.executable, "-m", "simulator", "sweep", TEGRA, "--workload",
                               str(tiny_workload_path), *sets, "--workers", workers, "--out", str(out)],
                              cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with out.open(newline="", encoding="utf-8") as handle:
            outs.append(sorted(tuple(r.values()) for r in csv.DictReader(handle)))
    assert outs[0] == outs[1]


def test_replacement_is_an_axis_and_runs_in_full(at_root, tiny_workload_path):
    plan = plan_sweep(I7, ["memory.caches.L3.replacement=lru,dip,random"], tiny_workload_path, repeat=2)
    assert plan.cache_level is None
    assert [p.profile.caches[2].replacement.value for p in plan.points] == ["lru", "dip", "random"]
    assert all(not r.error for r in _run(plan)[0].rows())
    with pytest.raises(ConfigError, match="replacement: 'plru': Input should be 'lru', 'random', 'bip' or 'dip'"):
        plan_sweep(I7, ["memory.caches.L3.replacement=plru"], tiny_workload_path)


def test_a_size_sweep_of_a_non_lru_level_runs_in_full(at_root):
    from simulator.hardware.profile import Replacement, load_profile
    from simulator.studies.cachesweep import applies

    profile = load_profile(I7)
    assert applies(profile, "L3")
    caches = list(profile.memory.caches)
    caches[2] = caches[2].model_copy(update={"replacement": Replacement.DIP})
    dip = profile.model_copy(update={"memory": profile.memory.model_copy(update={"caches": tuple(caches)})})
    assert not applies(dip, "L3")


def test_cache_path_with_other_policies_above_equals_full_runs(at_root, tiny_workload_path, tmp_path):
    text = open(I7, encoding="utf-8").read()
    # L1 random, L2 DIP, L3 (swept) LRU: the one-pass path applies and still equals full runs
    text = text.replace("      latency: 1.14 ns", "      replacement: random\n      latency: 1.14 ns", 1)
    text = text.replace("      latency: 3.4 ns", "      replacement: dip\n      latency: 3.4 ns", 1)
    profile = tmp_path / "i7-policies.yaml"
    profile.write_text(text, encoding="utf-8")
    sets = ["memory.caches.L3.size=2560KiB,5MiB"]
    fast = plan_sweep(str(profile), sets, tiny_workload_path, repeat=2)
    full = plan_sweep(str(profile), sets, tiny_workload_path, repeat=2, use_cache_path=False)
    assert fast.cache_level == 2 and full.cache_level is None
    assert [c.replacement.value for c in fast.points[0].profile.caches] == ["random", "dip", "lru"]
    assert _sorted(_run(fast)[0].rows()) == _sorted(_run(full)[0].rows())


def test_results_as_a_dataframe(at_root, tiny_workload_path, tmp_path):
    import pandas

    out = tmp_path / "sweep.csv"
    plan = plan_sweep(TEGRA, ["memory.dram.sustained_bandwidth=4GB/s,8GB/s"], tiny_workload_path)
    store, _ = _run(plan, out)
    frame = store.to_dataframe()
    assert list(frame.columns) == plan.columns and len(frame) == len(store.rows())
    # the same table as the file, read back by pandas itself
    on_disk = pandas.read_csv(out)
    key = ["point", "variant", "layer"]
    pandas.testing.assert_frame_equal(frame.sort_values(key).reset_index(drop=True)[["time_s", "dram_bytes"]],
                                      on_disk.sort_values(key).reset_index(drop=True)[["time_s", "dram_bytes"]],
                                      check_dtype=False)
    totals = frame[frame.layer == "total"].set_index(["memory.dram.sustained_bandwidth_bytes_per_s", "variant"]).time_s
    assert totals[(4e9, "dense")] > totals[(8e9, "dense")]
