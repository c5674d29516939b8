"""Plots: the knee rule, and that every sweep gets a plot that reads (files are written)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.base.errors import ConfigError
from simulator.output.plots import check_plot_path, knee, sweep_plot
from simulator.studies.sweep import Backend, BackendChoice, SweepRow, plan_sweep, run_sweep
from simulator.studies.sweepstore import ResultStore

TEGRA = "hwprofiles/tegra.yaml"
SIZES = [2.0 ** k for k in range(10, 18)]


def test_knee_of_a_falling_curve_is_where_it_flattens():
    latency = [10, 9.8, 9.5, 9.0, 2.0, 1.9, 1.9, 1.9]
    assert knee(SIZES, latency) == 4


def test_knee_of_a_rising_curve_is_where_it_levels_off():
    hits = [0.1, 0.5, 0.8, 0.9, 0.92, 0.93, 0.93, 0.93]
    assert knee(SIZES, hits) == 2


@pytest.mark.parametrize("latency", [[5.0] * 8, [5.0, 5.01, 5.0, 5.02, 5.0, 5.0, 5.01, 5.0], [1.0, 2.0]])
def test_flat_or_short_curves_have_no_knee(latency):
    assert knee(SIZES[: len(latency)], latency) is None


def test_plot_files_are_checked_before_any_work(tmp_path):
    assert check_plot_path(tmp_path / "a.svg", "--plot").name == "a.svg"
    with pytest.raises(ConfigError, match="--plot: .*a plot is written as .png, .pdf, .svg"):
        check_plot_path(tmp_path / "a.jpg", "--plot")
    with pytest.raises(ConfigError, match="does not exist"):
        check_plot_path(tmp_path / "absent" / "a.png", "--plot")


@pytest.mark.parametrize("sets, shows", [
    (["memory.caches.L2.size=128KiB,256KiB,512KiB"], "latency per layer against L2 size"),
    (["density=0.1,0.3,0.5"], "speed-up of pruned over dense against density"),
    (["memory.dram.sustained_bandwidth=4GB/s,8GB/s"], "roofline per point"),
    (["memory.dram.latency=100ns,400ns"], "latency per layer against memory.dram.latency"),
    (["memory.dram.latency=100ns,400ns", "density=0.1,0.3"], "whole-network latency against the first"),
])
def test_every_sweep_gets_its_plot(repo_root, monkeypatch, tmp_path, tmp_path_factory, tiny_workload_path, sets,
                                   shows):
    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "plots-sim-cache"))
    plan = plan_sweep(TEGRA, sets, tiny_workload_path)
    store = ResultStore(None, plan)
    run_sweep(plan, store, BackendChoice(Backend.INLINE))
    path = tmp_path / "plot.png"
    assert shows in sweep_plot(plan, store.rows(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_nothing_to_plot_when_every_point_failed(repo_root, monkeypatch, tiny_workload_path, tmp_path):
    monkeypatch.chdir(repo_root)
    plan = plan_sweep(TEGRA, ["density=0.1"], tiny_workload_path)
    rows = [SweepRow(point=0, settings={"density": 0.1}, error="boom")]
    with pytest.raises(ConfigError, match="no point of the sweep succeeded"):
        sweep_plot(plan, rows, tmp_path / "x.png")


def test_density_bars(tmp_path):
    from simulator.compress.sparsity import SparsityRow, SparsitySummary
    from simulator.output.plots import density_bars

    rows = [SparsityRow(name, (4, 4), 16, nnz, 0, 0, 0, 0, 0, 100 * (1 - nnz / 16), 0, 0, 0)
            for name, nnz in (("fc1.weight", 4), ("fc2.weight", 8))]
    path = density_bars(SparsitySummary(rows, 32, 12), tmp_path / "out" / "density.png", "tiny")
    assert path == tmp_path / "out" / "density.png" and path.stat().st_size > 5_000
    assert np.isclose(rows[0].density, 0.25)


def test_plots_leave_the_backend_and_pyplot_alone(tmp_path):
    """A notebook's backend and open figures survive a plot: no matplotlib.use, no pyplot."""
    import subprocess
    import sys

    code = ("import sys, matplotlib, numpy as np; matplotlib.use('pdf');"
            "from simulator.output.plots import weight_matrices;"
            f"weight_matrices({{'fc': np.eye(8)}}, r'{tmp_path / 'd.png'}');"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["pdf", "False"]
    assert (tmp_path / "d.png").stat().st_size > 1000
