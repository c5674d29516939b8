"""The seed's loop on real data (``simulator.studies.digits``, ``python -m simulator digits``), small:
AGP pruning between fine-tuning epochs, the latency table, the stored-format check, the
sensitivity CSV and the plots; and the sensitivity analysis on its own."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from simulator.cli import main
from simulator.compress.schedule import Window, agp_target_sparsity, load_schedule
from simulator.compress.sensitivity import CSV_HEADER, Evaluation, sensitivity_analysis, sparsity_levels
from simulator.studies.digits import DEFAULT_SCHEDULE, DigitsNet, digits_cnn, load_data, prune_epoch

SMALL_SCHEDULE = {
    "version": 1,
    "pruners": {"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.3, "final_sparsity": 0.8,
                      "weights": ["conv3.weight", "fc1.weight"]}},
    "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 3, "frequency": 1}],
}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))


def test_the_data_is_the_bundled_digits_split_by_class():
    data = load_data()
    assert data.train_x.shape == (1347, 1, 8, 8) and data.test_x.shape == (450, 1, 8, 8)
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) == 1.0
    assert np.bincount(data.test_y.numpy()).min() >= 43          # stratified: a quarter of every class (174 eights)


def test_each_pruning_epoch_reaches_distillers_agp_target():
    schedule = load_schedule(DEFAULT_SCHEDULE)
    torch.manual_seed(0)
    model = DigitsNet()
    masks: dict = {}
    for epoch in range(10):
        masks, steps = prune_epoch(schedule, model, masks, epoch, "digits")
        assert {s.parameter for s in steps} == {"conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight"}
        conv3 = next(s for s in steps if s.parameter == "conv3.weight")
        target = agp_target_sparsity(0.05, 0.80, Window(0, 10, 1), epoch)
        assert conv3.target_sparsity == target
        assert conv3.zeros == int(target * 18432)                # Distiller's truncating count, no ties here
    assert float((masks["fc1.weight"] == 0).float().mean()) == pytest.approx(0.92, abs=1e-4)
    assert "conv1.weight" not in masks
    assert prune_epoch(schedule, model, masks, 10, "digits")[1] == []      # past the last pruning epoch


def test_the_factorys_captured_graph_is_the_digits_layers():
    from simulator.model.torchgraph import workload_from_module

    w = workload_from_module(*digits_cnn())
    assert [l.name for l in w.layers] == ["conv1", "conv2", "pool", "conv3", "pool@2", "fc1", "fc2"]
    assert w.layer("fc1").in_shape == (256,)


# --- sensitivity ------------------------------------------------------------------------------------

def test_sparsity_levels_are_distillers():
    assert sparsity_levels(0.05) == [round(v, 10) for v in np.arange(0.0, 0.95, 0.05)]


def test_sensitivity_prunes_one_weight_at_a_time_and_restores_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    before = {n: p.clone() for n, p in model.named_parameters()}
    seen = []

    def evaluate(m):
        zeros = {n: int((p == 0).sum()) for n, p in m.named_parameters()}
        seen.append(zeros)
        return Evaluation(100.0 - zeros["0.weight"], 100.0, float(zeros["1.weight"]))

    rows = sensitivity_analysis(model, ["0.weight", "1.weight"], [0.0, 0.5], evaluate)
    assert [(r.parameter, r.sparsity) for r in rows] == [("0.weight", 0.0), ("0.weight", 0.5),
                                                         ("1.weight", 0.0), ("1.weight", 0.5)]
    assert [s["0.weight"] for s in seen] == [0, 50, 0, 0] and [s["1.weight"] for s in seen] == [0, 0, 0, 10]
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


# --- the command, small ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory, repo_root):
    """``digits`` with one dense epoch, a three-epoch AGP run, two profiles (one that cannot run it)."""
    import yaml

    base = tmp_path_factory.mktemp("digits")
    schedule = base / "small.schedule.yaml"
    schedule.write_text(yaml.safe_dump(SMALL_SCHEDULE))
    out = base / "out"
    cache = pytest.MonkeyPatch()
    cache.setenv("SIMULATOR_CACHE_DIR", str(base / "cache"))
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["digits", "--pretrain-epochs", "1", "--epochs", "4", "--schedule", str(schedule),
                       "--profile", str(repo_root / "hwprofiles/i7-5930k.yaml"),
                       "--profile", str(repo_root / "hwprofiles/eie.yaml"), "--sensitivity-step", "0.5",
                       "--out", str(out)])
    cache.undo()
    return status, stdout.getvalue(), out


def test_the_small_run_reports_accuracy_sparsity_and_latency(small_run):
    status, text, out = small_run
    assert status == 0
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["before"], ["0"], ["1"], ["2"],
                                                                             ["3"])]
    assert [r[0] for r in rows[:5]] == ["before", "0", "1", "2", "3"]
    assert "i7-5930k" in text and "stored dense" in text
    assert "eie.yaml: left out: " in text and "runs fully-connected layers only" in text
    report = json.loads((out / "digits.json").read_text())
    points = report["points"]
    assert [p["epoch"] for p in points] == [None, 0, 1, 2, 3]
    assert [p["pruned"] for p in points] == [False, True, True, True, False]
    # conv3 + fc1 are 51,200 of the 57,232 weights; their AGP targets 0.3, 0.644, 0.8 (held at epoch 3)
    expected = [0.0] + [100 * int(t * 18432) / 57232 + 100 * int(t * 32768) / 57232
                        for t in (0.3, agp_target_sparsity(0.3, 0.8, Window(0, 3, 1), 1), 0.8, 0.8)]
    assert [p["sparsity_pct"] for p in points] == pytest.approx(expected, abs=1e-9)
    i7 = next(l for l in report["latencies"] if l["path"].endswith("i7-5930k.yaml"))
    assert len(i7["pruned_s"]) == 5 and i7["dense_s"] > 0 and i7["note"] == ""
    assert i7["pruned_s"][3] < i7["pruned_s"][0]                 # 80% fewer weights in the big layers: faster
    eie = next(l for l in report["latencies"] if l["path"].endswith("eie.yaml"))
    assert eie["dense_s"] is None and eie["pruned_s"] == []


def test_the_small_run_checks_every_stored_format(small_run):
    _, text, out = small_run
    formats = json.loads((out / "digits.json").read_text())["formats"]
    assert len(formats) == 9
    for f in formats:
        assert (f["max_abs_diff"] == 0.0) == f["lossless"], f     # exact formats: bit-identical outputs
    by_name = {f["format"]: f for f in formats}
    assert by_name["CSR fp32 (run's pruned format)"]["weight_bytes"] < by_name["dense fp32"]["weight_bytes"]
    assert by_name["bitmask fp16"]["max_abs_diff"] < by_name["bitmask int8"]["max_abs_diff"]
    assert "max |diff|" in text and "EIE 64 PEs, 4-bit codebook" in text


def test_the_small_run_writes_the_checkpoint_csv_and_plots(small_run, repo_root, capsys):
    _, _, out = small_run
    with open(out / "sensitivity.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_HEADER == ("parameter", "sparsity", "top1", "top5", "loss")
    assert [r[:2] for r in rows[1:3]] == [["conv1.weight", "0.0"], ["conv1.weight", "0.5"]] and len(rows) == 11
    for name in ("sensitivity.png", "matrices.png", "density.png", "accuracy_latency.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = torch.load(out / "digits_pruned.pth.tar", weights_only=True)
    assert saved["arch"] == "digits_cnn" and saved["compression_sched"]["masks_dict"]["conv1.weight"] is None
    assert main(["run", str(repo_root / "hwprofiles/i7-5930k.yaml"), "--model", "simulator.studies.digits:digits_cnn",
                 "--checkpoint", str(out / "digits_pruned.pth.tar")]) == 0
    assert "digits" not in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--schedule", "absent.yaml"], "absent.yaml"),
    (["--profile", "absent.yaml"], "absent.yaml"),
])
def test_bad_input_is_one_line_before_any_training(tmp_path, capsys, args, message):
    assert main(["digits", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_bad_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["digits", "--sensitivity-step", "1.5"])
    assert caught.value.code == 2
    assert "--sensitivity-step must be in (0, 1), got '1.5'" in capsys.readouterr().err


def test_a_schedule_naming_no_parameter_of_the_model_is_an_error(tmp_path, capsys):
    import yaml

    bad = {**SMALL_SCHEDULE, "pruners": {"p": {**SMALL_SCHEDULE["pruners"]["p"], "weights": ["conv9.weight"]}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["digits", "--schedule", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "pruners.p.weights[0]: 'conv9.weight' matches no parameter of the digits CNN" in capsys.readouterr().err


def test_out_must_be_a_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["digits", "--out", str(tmp_path / "file")]) == 2
    assert "--out" in capsys.readouterr().err
