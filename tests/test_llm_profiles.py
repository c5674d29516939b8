"""The edge-LLM profiles (issue #15): Jetson AGX Orin 64GB, Orin Nano 8GB Super, A100 SXM4 80GB."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.hardware.fieldpaths import navigate
from simulator.hardware.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent
NEW = ("jetson-agx-orin", "jetson-orin-nano-super", "a100-sxm4")
MARK = re.compile(r"\[(V|S|\?|D|U)\]")
# what a datasheet gives; each one present must cite a source that says how sure it is
DATASHEET = ("compute.clock", "compute.cores", "compute.lanes_per_core", "memory.dram.peak_bandwidth",
             "memory.dram.sustained_bandwidth", "memory.dram.capacity", "link.name", "link.bandwidth")


def _cited(profile, path: str) -> str | None:
    """The source of ``path`` or of the nearest section above it that has one."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        text = profile.sources.get(".".join(parts[:n]))
        if text is not None:
            return text
    return None


def _datasheet_paths(profile) -> list[str]:
    paths = [p for p in DATASHEET if not (p.startswith("link") and profile.link is None)]
    for block in ("peak_flops", "structured_sparse_peak_flops"):
        rates = getattr(profile.compute, block)
        paths += [f"compute.{block}.{t}" for t in ("fp32", "fp16", "bf16", "int8") if rates.of(t) is not None]
    paths += [f"memory.caches.{c.name}.size" for c in profile.caches]
    return paths


@pytest.mark.parametrize("name", NEW)
def test_every_datasheet_field_cites_a_marked_source(name):
    profile = load_profile(ROOT / "hwprofiles" / f"{name}.yaml")
    for path in _datasheet_paths(profile):
        navigate(profile, path)                  # the field exists
        text = _cited(profile, path)
        assert text is not None, f"{name}: {path} has no source"
        assert MARK.search(text), f"{name}: the source of {path} carries no [V]/[S]/[?]/[D]/[U] mark: {text}"
    assert "llm-devices.md" in profile.sources["name"]


@pytest.mark.parametrize("name, sms, clock_hz, dram_gbps, fp16_t, int8_sparse_t, l2_mib, link", [
    ("jetson-agx-orin", 16, 1.3e9, 204.8, 42.5, 171, 4, False),
    ("jetson-orin-nano-super", 8, 1.02e9, 102.0, 16.75, 67, 2, False),
    ("a100-sxm4", 108, 1.41e9, 2039.0, 312, 1248, 40, True),
])
def test_headline_figures(name, sms, clock_hz, dram_gbps, fp16_t, int8_sparse_t, l2_mib, link):
    p = load_profile(ROOT / "hwprofiles" / f"{name}.yaml")
    assert p.kind.value == "gpu"
    assert (p.compute.cores, p.compute.clock_hz) == (sms, pytest.approx(clock_hz))
    assert p.dram.peak_bandwidth_bytes_per_s == pytest.approx(dram_gbps * 1e9)
    assert p.compute.peak_flops.of("fp16") == pytest.approx(fp16_t * 1e12)
    assert p.compute.structured_sparse_peak_flops.of("int8") == pytest.approx(int8_sparse_t * 1e12)
    assert p.caches[-1].size_bytes == l2_mib * 2**20
    assert (p.link is not None) == link


@pytest.mark.parametrize("name", NEW)
def test_ampere_rates_hang_together(name):
    """Ampere tensor cores: bf16 = fp16, int8 = 2 x fp16, 2:4 sparse = 2 x dense (within rounding)."""
    p = load_profile(ROOT / "hwprofiles" / f"{name}.yaml")
    dense, sparse = p.compute.peak_flops, p.compute.structured_sparse_peak_flops
    assert dense.of("bf16") == dense.of("fp16")
    assert dense.of("int8") == pytest.approx(2 * dense.of("fp16"), rel=0.01)
    for t in ("fp16", "bf16", "int8"):
        assert sparse.of(t) == pytest.approx(2 * dense.of(t), rel=0.01)
    # the fp32 CUDA-core rate is cores x lanes x 2 x clock
    lanes = p.compute.cores * p.compute.lanes_per_core
    assert dense.of("fp32") == pytest.approx(lanes * 2 * p.compute.clock_hz, rel=0.01)


@pytest.mark.parametrize("name", NEW)
def test_rules_follow_the_titan_x_and_sustained_dram_its_ratio(name):
    """Issue costs are the Titan X's GPU rules, never fitted here; sustained / peak DRAM is the Titan X fit's."""
    p = load_profile(ROOT / "hwprofiles" / f"{name}.yaml")
    titan = load_profile(ROOT / "hwprofiles" / "titan-x.yaml")
    assert p.compute.kernels == titan.compute.kernels
    assert p.fitted == {}
    ratio = titan.dram.sustained_bandwidth_bytes_per_s / titan.dram.peak_bandwidth_bytes_per_s
    assert p.dram.sustained_bandwidth_bytes_per_s / p.dram.peak_bandwidth_bytes_per_s == pytest.approx(ratio, rel=0.002)


def test_super_mode_is_the_same_silicon_as_the_orin_nano():
    nano = load_profile(ROOT / "hwprofiles" / "jetson-orin-nano.yaml")
    sup = load_profile(ROOT / "hwprofiles" / "jetson-orin-nano-super.yaml")
    assert (sup.compute.cores, sup.compute.lanes_per_core) == (nano.compute.cores, nano.compute.lanes_per_core)
    assert sup.dram.capacity_bytes == nano.dram.capacity_bytes
    assert sup.compute.clock_hz / nano.compute.clock_hz == pytest.approx(1.632, rel=0.001)
    assert sup.dram.peak_bandwidth_bytes_per_s > nano.dram.peak_bandwidth_bytes_per_s


def test_listed_by_the_profiles_command_and_in_the_docs(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    doc = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")
    for name in NEW:
        assert f"{name}.yaml" in out
        assert f"`{name}.yaml`" in doc
