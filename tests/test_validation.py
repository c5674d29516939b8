"""Validation against EIE Table IV: the published cells, the statistics, and the calibration."""

import math

import pytest

from simulator.hardware.profile import load_profile
from simulator.studies.validation import (
    EIE_PLATFORM,
    Cell,
    CellResult,
    Rates,
    cell_works,
    fit,
    load_cells,
    network_of,
    predict,
    summarize,
)


def test_the_published_table_is_shipped_whole():
    cells = load_cells()
    assert len(cells) == 72                                      # 9 layers x 2 formats x 2 batches x 2 platforms
    assert sum(c.held_out for c in cells) == 24                  # the NeuralTalk layers
    assert {c.platform for c in cells} == {"CPU_Core_i7-5930K", "GPU_Titan_X"}
    eie = load_cells(platforms=[EIE_PLATFORM])
    assert len(eie) == 18 and all(c.held_out for c in eie)
    fc6 = next(c for c in cells if c.key == ("GPU_Titan_X", 1, "dense", "AlexNet_FC6"))
    assert fc6.published_s == pytest.approx(541.5e-6)


def cell(layer, fmt, published, platform="P", batch=1):
    return Cell(platform, batch, fmt, layer, published, "k")


def test_summary_statistics_and_winners():
    results = [CellResult(cell("a", "dense", 10.0), 10.5, "x"),     # +5%
               CellResult(cell("a", "sparse", 5.0), 4.0, "x"),      # -20%, sparse wins in both
               CellResult(cell("b", "dense", 10.0), 20.0, "x"),     # +100%
               CellResult(cell("b", "sparse", 12.0), 12.0, "x")]    # dense wins published, sparse predicted
    s = summarize("t", results)
    assert s.cells == 4
    assert s.median_abs_error == pytest.approx(0.125)
    assert s.within_10 == pytest.approx(0.5) and s.within_25 == pytest.approx(0.75)
    assert s.worst.cell.layer == "b" and s.worst.cell.format == "dense"
    assert (s.winners_right, s.winners_total) == (1, 2)
    assert math.isnan(summarize("empty", []).median_abs_error)


@pytest.fixture
def tiny(workload_from_text):
    return workload_from_text(
        "  - {name: big, kind: fc, inputs: [], input_shape: [2048], in_features: 2048, out_features: 2048,"
        " density: 0.1}\n"
        "  - {name: small, kind: fc, inputs: [], input_shape: [1024], in_features: 1024, out_features: 256,"
        " density: 0.1}\n", [1024])


def test_calibration_recovers_rates_that_made_the_data(tiny):
    titan = load_profile("hwprofiles/titan-x.yaml")
    truth = Rates.of(titan)
    truth.values.update({"compute.kernels.gemm.library_efficiency": 0.4,
                         "compute.kernels.spmm.cycles_per_nonzero": 2.5})
    made = truth.apply(titan)
    skeleton = [cell(l, f, 1.0, "GPU_Titan_X", b) for l in ("big", "small") for f in ("dense", "sparse")
                for b in (1, 64)]
    works = cell_works(titan, tiny, skeleton, workers=1)
    data = [cell(c.layer, c.format, r.predicted_s, c.platform, c.batch)
            for c, r in zip(skeleton, predict(made, skeleton, works))]
    fitted = fit(titan, data, works)
    after = predict(fitted.apply(titan), data, works)
    assert max(abs(r.error) for r in after) < 0.10
    assert fitted.values["compute.kernels.gemm.library_efficiency"] == pytest.approx(0.4, rel=0.1)


def test_validate_refuses_a_missing_output_directory(capsys):
    from simulator.cli import main

    assert main(["validate", "eie", "--plot", "/no/such/dir/x.png"]) == 2
    assert "--plot" in capsys.readouterr().err


def test_fit_on_all_needs_fit(capsys):
    from simulator.cli import main

    assert main(["validate", "eie", "--fit-on", "all"]) == 2
    assert capsys.readouterr().err == "error: command line: --fit-on: all needs --fit\n"


def test_comparison_as_a_dataframe():
    from simulator.studies.validation import Comparison

    cells = [cell("big", "dense", 1e-3, "GPU_Titan_X", 1), cell("small", "sparse", 2e-3, "GPU_Titan_X", 64)]
    results = [CellResult(cells[0], 1.1e-3, "compute"), CellResult(cells[1], 1.8e-3, "dram-bandwidth")]
    frame = Comparison(results, [], {}).to_dataframe()
    assert frame["layer"].tolist() == ["big", "small"]
    assert frame["error"].round(3).tolist() == [0.1, -0.1]
    assert {"platform", "batch", "format", "published_s", "predicted_s", "set", "bound"} <= set(frame.columns)


def test_a_layer_meets_what_its_networks_other_layers_left(workload_from_text):
    """The benchmark's protocol (each network's layers in order, sample after sample): a matrix
    the i7's 15 MiB L3 holds comes from DRAM when its network's next layer is 32 MiB, and from the
    L3 when it is a network of its own."""
    fc = "kind: fc, inputs: [], density: 0.1"
    nets = workload_from_text(
        f"  - {{name: A_small, {fc}, input_shape: [2048], in_features: 2048, out_features: 1024}}\n"
        f"  - {{name: A_big, {fc}, input_shape: [2048], in_features: 2048, out_features: 4096}}\n"
        f"  - {{name: B_small, {fc}, input_shape: [2048], in_features: 2048, out_features: 1024}}\n", [2048])
    assert [network_of(l.name) for l in nets.layers] == ["A", "A", "B"]
    i7 = load_profile("hwprofiles/i7-5930k.yaml")
    cells = [cell(name, "dense", 1.0, "CPU_Core_i7-5930K") for name in ("A_small", "A_big", "B_small")]
    works = cell_works(i7, nets, cells, workers=1)
    weights = 2048 * 1024 * 4
    shared, alone = works[cells[0].key], works[cells[2].key]
    assert shared.dram_read_bytes.sum() >= 0.95 * weights           # evicted by A_big between its calls
    assert alone.dram_read_bytes.sum() <= 0.05 * weights            # its own last call left it in the L3
    shared_s, _, alone_s = (r.predicted_s for r in predict(i7, cells, works))
    assert shared_s > 1.5 * alone_s
