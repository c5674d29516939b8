"""Energy accounting, the edge-device profiles and the ``profiles`` command."""

from pathlib import Path

import pytest
import yaml

from simulator.base.errors import ConfigError
from simulator.base.units import Quantity, parse
from simulator.cli import main
from simulator.compress.compression import StorageFormat
from simulator.hardware.profile import load_profile, profile_from_mapping
from simulator.pipeline import RunOptions, run

ROOT = Path(__file__).resolve().parent.parent


def test_energy_units():
    assert parse("640 pJ", Quantity.JOULES) == pytest.approx(640e-12)
    assert parse("1.874 mW", Quantity.WATTS) == pytest.approx(1.874e-3)


@pytest.fixture
def fc(workload_from_text):
    return workload_from_text("  - {name: fc, kind: fc, in_features: 4096, out_features: 1024, density: 0.1}\n",
                              [4096])


def test_energy_is_the_sum_of_its_parts(fc):
    i7 = load_profile(ROOT / "hwprofiles/i7-5930k.yaml")
    layer = run(i7, fc, RunOptions(formats=(StorageFormat.DENSE,))).variant("dense").layer("fc")
    e = i7.energy
    assert layer.dram_energy_j == pytest.approx(layer.dram_bytes * e.per_byte_j["dram"])
    assert layer.energy_j > layer.dram_energy_j + layer.flops * e.flop_j       # plus the cache levels
    assert layer.energy_j < layer.dram_energy_j * 1.5                          # a streaming GEMV is all DRAM


def test_pruning_saves_dram_energy(fc):
    i7 = load_profile(ROOT / "hwprofiles/i7-5930k.yaml")
    result = run(i7, fc, RunOptions())
    assert result.variant("pruned").dram_energy_j < 0.3 * result.variant("dense").dram_energy_j


def test_static_power_is_paid_for_the_time(fc):
    eie = load_profile(ROOT / "hwprofiles/eie.yaml")
    layer = run(eie, fc, RunOptions()).variants[0].layer("fc")
    assert layer.energy_j >= eie.energy.static_power_w * layer.time_s
    assert layer.dram_energy_j == 0


def test_a_profile_without_energies_reports_none(fc):
    data = yaml.safe_load(open(ROOT / "hwprofiles/i7-5930k.yaml"))
    del data["energy"]
    data["sources"] = {k: v for k, v in data["sources"].items() if not k.startswith("energy")}
    plain = profile_from_mapping(data, "x.yaml")
    assert run(plain, fc, RunOptions()).variant("dense").energy_j == 0


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["energy"]["per_byte"].pop("L2"), "energy.per_byte.L2"),
    (lambda d: d["energy"]["per_byte"].update(L9="1 pJ"), "energy.per_byte.L9"),
    (lambda d: d["energy"].update(flop="2 GHz"), "energy.flop"),
])
def test_energy_errors_name_the_field(edit, field):
    data = yaml.safe_load(open(ROOT / "hwprofiles/i7-5930k.yaml"))
    edit(data)
    with pytest.raises(ConfigError) as err:
        profile_from_mapping(data, "x.yaml")
    assert err.value.field == field


@pytest.mark.parametrize("name, cores, dram_gbps", [("jetson-orin-nano", 8, 68.0), ("raspberry-pi-5", 4, 17.1)])
def test_edge_profiles(name, cores, dram_gbps):
    p = load_profile(ROOT / "hwprofiles" / f"{name}.yaml")
    assert p.compute.cores == cores
    assert p.dram.peak_bandwidth_bytes_per_s == pytest.approx(dram_gbps * 1e9)
    assert any("[U]" in s for s in p.sources.values())     # unconfirmed figures are marked


def test_profiles_command_lists_every_shipped_profile(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for path in (ROOT / "hwprofiles").glob("*.yaml"):
        assert path.name in out
    assert "21.9" in out            # the Tegra K1's ridge point, 327 GFLOP/s over 14.9 GB/s


def test_profiles_command_refuses_an_empty_folder(tmp_path, capsys):
    assert main(["profiles", "--dir", str(tmp_path)]) == 2
    assert "--dir" in capsys.readouterr().err
