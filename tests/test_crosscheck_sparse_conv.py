"""bench --sparse-conv and its crosscheck: break-even interpolation, the kernels, the measured file,
the predicted-vs-measured report (tiny shapes, mock timings; no assertion on how fast anything runs)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.hardware.profile import load_profile
from simulator.measure.bench import bench_sparse_conv, load_bench
from simulator.measure.sparseconv import (
    BreakEven,
    ConvShape,
    Crossing,
    SparseConvAlgorithm,
    SparseConvLayer,
    SparseConvPoint,
    break_even,
    csr_weights,
    sparse_conv_call,
)
from simulator.measure.sparseconv_check import (
    SparseConvPrediction,
    merge_runs,
    predict_all,
    predict_layer,
    render,
    to_json,
)
from simulator.model.weights import magnitude_mask, synthetic_weights
from simulator.pipeline import RepeatMode, RunOptions, run

I7 = "hwprofiles/i7-5930k.yaml"
SMALL = ConvShape("small", "tests", 4, 9, 9, 6, 3, 1, 1)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))


# --- break-even interpolation -------------------------------------------------------------------

def test_break_even_is_log_linear_between_the_measured_densities():
    even = break_even([0.1, 0.2, 0.4], [0.5, 0.8, 2.0])
    share = -math.log(0.8) / (math.log(2.0) - math.log(0.8))
    assert even.crossing is Crossing.IN_RANGE
    assert even.density == pytest.approx(0.2 + share * 0.2)
    # unsorted input gives the same; a ratio of exactly 1 at a measured density is that density
    assert break_even([0.4, 0.1, 0.2], [2.0, 0.5, 0.8]) == even
    assert break_even([0.1, 0.3], [0.5, 1.0]).density == pytest.approx(0.3)


def test_break_even_out_of_range_and_noise():
    assert break_even([0.1, 0.2], [1.1, 3.0]) == BreakEven(Crossing.BELOW)
    assert break_even([0.1, 0.2], [0.2, 0.9]) == BreakEven(Crossing.ABOVE)
    # a noisy dip after the crossing: the first density where sparse stops winning counts
    even = break_even([0.1, 0.2, 0.3, 0.4], [0.5, 2.0, 0.9, 3.0])
    assert 0.1 < even.density < 0.2
    assert even.describe([0.1, 0.4]) == f"{even.density:.3f}"
    assert BreakEven(Crossing.ABOVE).describe([0.05, 0.7]) == "> 0.7"
    assert BreakEven(Crossing.BELOW).describe([0.05, 0.7]) == "< 0.05"


# --- kernels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (5, 1, 2), (3, 2, 1), (1, 2, 0)])
@pytest.mark.parametrize("algorithm", list(SparseConvAlgorithm))
def test_sparse_convolutions_compute_the_simulators_pruned_layer(algorithm, kernel, stride, padding):
    shape = ConvShape("k", "tests", 5, 11, 9, 7, kernel, stride, padding)
    layer = shape.layer(0.4)
    weights = synthetic_weights(layer, 0)
    pruned = weights * magnitude_mask(weights, 0.4)
    x = torch.rand((2, 5, 11, 9), generator=torch.Generator().manual_seed(3))
    out = sparse_conv_call(algorithm, layer, csr_weights(layer, 0), x)()
    expected = F.conv2d(x, pruned, stride=stride, padding=padding).numpy()
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


# --- the measured file --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def measured_small(tmp_path_factory):
    import os

    os.environ.setdefault("SIMULATOR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    return bench_sparse_conv([SMALL], (0.2, 0.6), threads=1, rounds=1)


def test_measured_file_round_trip(measured_small, tmp_path):
    (layer,) = measured_small.sparse_conv
    assert layer.densities == [0.2, 0.6] and layer.algorithms == [a.value for a in SparseConvAlgorithm]
    assert all(p.best_s > 0 and p.best_s <= p.median_s for p in layer.points)
    nnz = {p.density: p.nnz for p in layer.points}
    assert nnz[0.2] < nnz[0.6] <= SMALL.layer().weight_count
    path = tmp_path / "m.json"
    path.write_text(json.dumps(measured_small.to_json()))
    assert load_bench(path) == measured_small
    # a file written before --sparse-conv existed still loads
    doc = measured_small.to_json()
    del doc["sparse_conv"]
    path.write_text(json.dumps(doc))
    assert load_bench(path).sparse_conv == []


@pytest.mark.parametrize("edit,field", [
    (lambda e: e.pop("dense_best_s"), r"sparse_conv\[0\].dense_best_s: missing"),
    (lambda e: e.update(dense_best_s=-1.0), r"sparse_conv\[0\].dense_best_s"),
    (lambda e: e["points"][0].update(algorithm="magic"), r"sparse_conv\[0\].points\[0\].algorithm"),
    (lambda e: e["points"].pop(), r"sparse_conv\[0\].points: .* every density"),
    (lambda e: e["shape"].update(colour=1), r"sparse_conv\[0\]: malformed"),
])
def test_bad_measured_entries_name_the_field(measured_small, tmp_path, edit, field):
    doc = measured_small.to_json()
    edit(doc["sparse_conv"][0])
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=field):
        load_bench(path)


# --- the report ---------------------------------------------------------------------------------

def _synthetic(ratios: dict[str, list[float]], densities=(0.1, 0.2, 0.4), dense_s=1e-3) -> SparseConvLayer:
    points = [SparseConvPoint(a, d, 1, r * dense_s, r * dense_s) for a, rs in ratios.items()
              for d, r in zip(densities, rs)]
    return SparseConvLayer(SMALL, 1, 2, 3, dense_s, dense_s, points)


def test_error_and_tolerance_against_a_known_prediction():
    measured = _synthetic({"direct-numba": [0.5, 0.8, 2.0], "im2col+torch-csr": [1.5, 3.0, 6.0]})
    # predicted: crossing between 0.2 and 0.4 at a known density
    prediction = SparseConvPrediction(measured, 1.0, [0.6, 0.9, 1.8], ["compute"] * 3)
    expected = break_even([0.1, 0.2, 0.4], [0.6, 0.9, 1.8]).density
    assert prediction.predicted.density == pytest.approx(expected)
    assert prediction.error("direct-numba") == pytest.approx(expected - measured.break_even("direct-numba").density)
    assert prediction.within("direct-numba") is True
    # measured below 0.1, predicted at ~0.23: more than 0.05 apart, whatever the exact value
    assert prediction.error("im2col+torch-csr") is None and prediction.within("im2col+torch-csr") is False
    above = [0.2, 0.3, 0.9]                                          # predicted above 0.4
    # measured ~0.25, predicted > 0.4: at least 0.15 apart
    assert SparseConvPrediction(measured, 1.0, above, ["c"] * 3).within("direct-numba") is False
    near_top = _synthetic({"direct-numba": [0.5, 0.6, 1.05]})        # measured ~0.39: undecided
    assert 0.35 < near_top.break_even("direct-numba").density < 0.4
    assert SparseConvPrediction(near_top, 1.0, above, ["c"] * 3).within("direct-numba") is None
    # both below the lowest density, itself within the tolerance: within
    below = _synthetic({"direct-numba": [1.2, 2.0, 4.0]}, densities=(0.05, 0.2, 0.4))
    assert SparseConvPrediction(below, 1.0, [1.5, 3.0, 6.0], ["c"] * 3).within("direct-numba") is True
    assert SparseConvPrediction(measured, 1.0, [0.1, 0.1, 0.2], ["c"] * 3).within("direct-numba") is False


def test_a_ratio_falling_with_density_is_flagged():
    assert not _synthetic({"direct-numba": [0.5, 0.8, 2.0]}).disturbed("direct-numba")
    noisy = _synthetic({"direct-numba": [0.5, 3.0, 2.0]})
    assert noisy.disturbed("direct-numba")
    prediction = SparseConvPrediction(noisy, 1.0, [0.6, 0.9, 1.8], ["c"] * 3)
    assert "(*)" in render([prediction], "p") and to_json([prediction])["layers"][0]["measured"]["direct-numba"][
        "disturbed"] is True


def test_merge_runs_keeps_each_kernels_fastest_time():
    a = _synthetic({"direct-numba": [0.5, 0.8, 2.0]})
    slow = replace(a, dense_best_s=2e-3, points=[replace(p, best_s=p.best_s / 2) for p in a.points])
    (merged,) = merge_runs([a, slow])
    assert merged.dense_best_s == 1e-3 and merged.rounds == 6
    assert [p.best_s for p in merged.points] == [p.best_s / 2 for p in a.points]


def test_prediction_is_the_pipelines_layer_time():
    profile = load_profile(I7)
    measured = _synthetic({"direct-numba": [0.5, 0.8, 2.0]})
    (prediction,) = predict_all(profile, [(measured, 0)])
    workload = SMALL.workload(0.2)
    result = run(profile, workload, RunOptions(batch=1, repeat=2, repeat_mode=RepeatMode.LAYER, host_copies=False,
                                               threads=2))
    by_variant = {v.name: v.layers[0].time_s for v in result.variants}
    assert prediction.predicted_dense_s == pytest.approx(by_variant["dense"])
    assert prediction.predicted_sparse_s[1] == pytest.approx(by_variant["pruned"])
    assert prediction.predicted_sparse_s[0] < prediction.predicted_sparse_s[2]
    text = render([prediction], profile.name)
    assert "small" in text and "simulated csr" in text and "direct-numba: " in text
    doc = to_json([prediction])
    assert doc["layers"][0]["measured"]["direct-numba"]["break_even"]["crossing"] == "in range"
    assert doc["layers"][0]["predicted_break_even"] == prediction.predicted.to_json()


def test_predict_layer_uses_the_measured_threads():
    profile = load_profile(I7)
    measured = replace(_synthetic({"direct-numba": [0.5, 0.8, 2.0]}), threads=1)
    one = predict_layer(profile, measured, 0)
    two = predict_layer(profile, replace(measured, threads=2), 0)
    assert one.predicted_dense_s > two.predicted_dense_s


# --- the commands -------------------------------------------------------------------------------

def test_cli_bench_sparse_conv_then_crosscheck(tiny_workload_path, tmp_path, capsys):
    out = tmp_path / "sc.json"
    assert cli.main(["bench", "--sparse-conv", "--workload", str(tiny_workload_path), "--densities", "0.6,0.3",
                     "--repeat", "1", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "conv1" in text and "direct-numba" in text and "break-even" in text
    assert load_bench(out).sparse_conv[0].densities == [0.3, 0.6]
    assert cli.main(["crosscheck", I7, str(out), "--json", str(tmp_path / "c.json"),
                     "--plot", str(tmp_path / "c.png")]) == 0
    doc = json.loads((tmp_path / "c.json").read_text())
    assert [l["layer"] for l in doc["sparse_conv"]["layers"]] == ["conv1"]
    assert (tmp_path / "c.png").stat().st_size > 0
    # with a workload's layer timings too: both checks, one JSON document
    layers = tmp_path / "layers.json"
    assert cli.main(["bench", "--workload", str(tiny_workload_path), "--repeat", "1", "--threads", "1",
                     "--out", str(layers)]) == 0
    assert cli.main(["crosscheck", I7, str(layers), str(out), "--json", str(tmp_path / "both.json")]) == 0
    both = json.loads((tmp_path / "both.json").read_text())
    assert both["cells"] and both["sparse_conv"]["layers"]


@pytest.mark.parametrize("argv,flag", [
    (["bench", "--densities", "0.1,0.2"], "--densities"),
    (["bench", "--sparse-conv", "--format", "csr"], "--format"),
    (["bench", "--sparse-conv", "--layers", "conv1"], "--layers"),
    (["bench", "--sparse-conv", "--densities", "0.1,1.5"], "--densities"),
    (["bench", "--sparse-conv", "--densities", "0.1"], "--densities"),
])
def test_cli_bad_flags_are_one_line(argv, flag, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as exit_:      # argparse's own errors (flag types) exit from the parser
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert flag in err[-1]


def test_cli_bad_layer_names(tiny_workload_path, capsys):
    for names, message in (("conv9", "not a layer"), ("fc1", "not a convolution")):
        assert cli.main(["bench", "--sparse-conv", "--workload", str(tiny_workload_path), "--layers", names]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--layers" in err[0] and message in err[0]


def test_cli_crosscheck_fit_needs_layer_timings(measured_small, tmp_path, capsys):
    path = tmp_path / "sc.json"
    path.write_text(json.dumps(measured_small.to_json()))
    assert cli.main(["crosscheck", I7, str(path), "--fit"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fit" in err[0]
