"""Low-rank factorisation: ranks from a fraction, a rank or an energy; the two layers; the CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator.base.errors import OptionError
from simulator.compress.lowrank import (
    RankRule,
    apply_low_rank,
    choose_rank,
    factor_workload,
    low_rank_workload,
    parse_low_rank,
    relative_error,
    singular_values,
    truncated_factors,
    weight_matrix,
)
from simulator.model.workload import LayerKind, load_workload

ROOT = Path(__file__).resolve().parent.parent

NET = """\
  - {name: conv, kind: conv, in_channels: 3, out_channels: 16, kernel: 3, padding: 1}
  - {name: pool, kind: maxpool, kernel: 2}
  - {name: fc1, kind: fc, in_features: 256, out_features: 64}
  - {name: fc2, kind: fc, in_features: 64, out_features: 10, relu: false}
"""


@pytest.fixture
def net(workload_from_text):
    return workload_from_text(NET, [3, 8, 8])


def test_rank_from_a_fraction_and_an_absolute_rank():
    assert choose_rank(RankRule(fraction=0.25), 64) == 16
    assert choose_rank(RankRule(fraction=0.001), 64) == 1
    assert choose_rank(RankRule(rank=500), 4096) == 500
    assert choose_rank(RankRule(rank=500), 64) == 64


def test_rank_from_an_energy_share():
    values = np.array([3.0, 2.0, 1.0, 1.0])          # squared: 9, 4, 1, 1 of 15
    assert choose_rank(RankRule(energy=0.6), 4, values) == 1
    assert choose_rank(RankRule(energy=0.61), 4, values) == 2
    assert choose_rank(RankRule(energy=14 / 15), 4, values) == 3
    assert choose_rank(RankRule(energy=1.0), 4, values) == 4


def test_fc_layer_becomes_two_thinner_layers(net):
    factored = low_rank_workload(net, ["fc1"], rank=0.25)
    names = [l.name for l in factored.layers]
    assert names == ["conv", "pool", "fc1_a", "fc1_b", "fc2"]
    a, b = factored.layer("fc1_a"), factored.layer("fc1_b")
    assert a.weight_shape == (16, 256) and b.weight_shape == (64, 16)
    assert not a.relu and b.relu
    assert a.macs_per_sample + b.macs_per_sample == 16 * (256 + 64)
    assert factored.predecessors("fc2") == ["fc1_b"] and factored.predecessors("fc1_a") == ["pool"]
    assert "fc1 rank 16/64" in factored.name


def test_conv_layer_becomes_a_kxk_conv_to_r_channels_and_a_1x1_conv(net):
    factored, (done,) = factor_workload(net, ["conv"], RankRule(rank=4))
    a, b = factored.layer("conv_a"), factored.layer("conv_b")
    assert a.weight_shape == (4, 3, 3, 3) and b.weight_shape == (16, 4, 1, 1)
    assert b.out_shape == net.layer("conv").out_shape
    assert done.macs_after == (4 * 27 + 16 * 4) * 64 and done.full_rank == 16


def test_reconstruction_error_of_the_seeded_weights_falls_with_rank(net):
    layer = net.layer("fc1")
    matrix = weight_matrix(layer, net, seed=0).astype(np.float64)
    values = singular_values(matrix)
    assert np.allclose(values, np.linalg.svd(matrix, compute_uv=False), rtol=1e-4)
    errors = []
    for rank in (4, 16, 32, 63):
        first, second = truncated_factors(matrix, rank)
        measured = np.linalg.norm(matrix - second @ first) / np.linalg.norm(matrix)
        assert measured == pytest.approx(relative_error(values, rank), rel=1e-6)
        errors.append(measured)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.1 < 0.5 < errors[0]
    assert relative_error(values, 64) == pytest.approx(0.0, abs=1e-6)


def test_an_energy_share_picks_the_rank_that_keeps_it(net):
    factored, (done,) = factor_workload(net, ["fc1"], RankRule(energy=0.9))
    values = singular_values(weight_matrix(net.layer("fc1"), net, 0))
    kept = np.cumsum(values ** 2) / np.sum(values ** 2)
    assert kept[done.rank - 1] >= 0.9 > kept[done.rank - 2]
    assert done.relative_error == pytest.approx(np.sqrt(1 - kept[done.rank - 1]), abs=1e-6)


def test_vgg16_fc6_at_rank_500_is_qiu_et_als_vgg16_svd():
    vgg16 = load_workload(ROOT / "workloads" / "vgg16.yaml")
    svd = load_workload(ROOT / "workloads" / "vgg16-svd.yaml")
    factored = apply_low_rank(vgg16, ["fc6:500"])
    for name in ("fc6_a", "fc6_b"):
        assert factored.layer(name).weight_shape == svd.layer(name).weight_shape
        assert factored.layer(name).module == svd.layer(name).module
        assert factored.layer(name).relu == svd.layer(name).relu


def test_all_fc_selects_every_fc_layer(net):
    factored = apply_low_rank(net, ["all-fc:0.5"])
    assert [l.name for l in factored.layers if l.kind is LayerKind.FC] == ["fc1_a", "fc1_b", "fc2_a", "fc2_b"]


@pytest.mark.parametrize("spec, words", [
    ("fc1", "expected LAYERS:VALUE"),
    ("fc1:energy=1.5", "energy share"),
    ("fc1:0", "fraction of the full rank"),
    ("fc1:x", "not a fraction"),
    ("nope:0.5", "not a layer"),
    ("pool:0.5", "maxpool layer"),
])
def test_bad_specs_are_one_line_option_errors(net, spec, words):
    with pytest.raises(OptionError, match=words) as err:
        apply_low_rank(net, [spec])
    assert err.value.option == "low_rank" and "\n" not in str(err.value)


def test_a_layer_factored_twice_is_refused(net):
    with pytest.raises(OptionError, match="already factored"):
        apply_low_rank(net, ["fc1:0.5", "all-fc:0.25"])


def test_parse_keeps_the_rule():
    assert parse_low_rank("fc6:energy=0.9").rule == RankRule(energy=0.9)
    assert parse_low_rank("all-fc:0.25").selector == "all-fc"
    assert parse_low_rank("fc6:500").rule == RankRule(rank=500)


def test_cli_low_rank_flag(tmp_path):
    env_cache = {"SIMULATOR_CACHE_DIR": str(tmp_path)}
    import os

    def run(*args):
        return subprocess.run([sys.executable, "-m", "simulator", "run", "tegra", "--workload", "vgg16",
                               "--format", "dense", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, **env_cache}, timeout=300)

    good = run("--low-rank", "fc6:500")
    assert good.returncode == 0, good.stderr
    assert "fc6_a" in good.stdout and "fc6 rank 500/4096" in good.stdout
    bad = run("--low-rank", "fc6:energy=2")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--low-rank" in bad.stderr
