"""Variants (``run --format STRUCTURE[@TYPE],...``): parsing, one-line refusals, precision in the
traffic and the kernel cost model, result names, the table for several variants, and ``auto``."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from simulator import cli
from simulator.base.errors import OptionError
from simulator.compress.compression import StorageFormat
from simulator.compress.precision import plan_precision, structure_available
from simulator.compress.variants import Structure, Variant, parse_variant, parse_variants
from simulator.engine.kernelcost import issue_time
from simulator.hardware.profile import load_profile
from simulator.memory.traffic import StreamKind
from simulator.model.workload import DType, load_workload
from simulator.output.report import render
from simulator.pipeline import RunOptions, run, variant_traffic

TEGRA = "hwprofiles/tegra.yaml"
ORIN = "hwprofiles/jetson-orin-nano.yaml"
PI = "hwprofiles/raspberry-pi-5.yaml"


@pytest.fixture
def tiny(tiny_workload_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    return load_workload(tiny_workload_path)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --- refusals: one line, naming the flag and the value, exit 2 ---------------------------------------------------

@pytest.mark.parametrize("spec", ["foo", "3:2", "0:4", "dense@int3", "bsr0x4", "dense,,csr", "dense,csr,dense",
                                  "eie9", "auto@int8"])
def test_a_bad_spec_is_one_line_naming_format(capsys, repo_root, tiny_workload_path, monkeypatch, tmp_path, spec):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    status, out, err = _cli(capsys, "run", str(repo_root / TEGRA), "--workload", str(tiny_workload_path),
                            "--format", spec)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--format" in lines[0] and "Traceback" not in err
    assert spec.split(",")[-1].split("@")[0] in lines[0] or spec in lines[0]


def test_int8_without_an_int8_peak_is_refused_naming_the_type(capsys, repo_root, tiny_workload_path, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    status, _, err = _cli(capsys, "run", str(repo_root / TEGRA), "--workload", str(tiny_workload_path),
                          "--format", "dense,dense@int8")
    assert status == 2
    assert "--format" in err and "dense@int8" in err and "compute.peak_flops.int8" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("spec", ["bsr4x4", "2:4", "bitmask", "eie", "thinned"])
def test_a_structure_without_its_encoding_is_refused_before_any_work(repo_root, tiny, spec, monkeypatch):
    variant = parse_variant(spec)
    if structure_available(variant):
        pytest.skip(f"{spec} is encoded now")
    import simulator.pipeline as pipeline

    monkeypatch.setattr(pipeline, "simulate_variant", lambda *a, **k: pytest.fail("simulated a refused variant"))
    with pytest.raises(OptionError, match="not modelled yet") as caught:
        run(load_profile(repo_root / TEGRA), tiny, RunOptions(formats=(Variant(Structure.DENSE), variant)))
    assert caught.value.option == "format"


def test_group_size_must_be_positive(capsys, repo_root, tiny_workload_path):
    with pytest.raises(SystemExit) as caught:
        cli.main(["run", str(repo_root / TEGRA), "--workload", str(tiny_workload_path), "--format", "dense@w4",
                  "--group-size", "0"])
    assert caught.value.code == 2
    assert "--group-size" in capsys.readouterr().err


def test_emulated_and_refused_types_per_profile(repo_root):
    tegra, orin, pi = (load_profile(repo_root / p) for p in (TEGRA, ORIN, PI))
    fp16 = plan_precision(tegra, parse_variant("dense@fp16"), DType.FP32)
    assert fp16.emulated == "fp16" and fp16.arithmetic is DType.FP32 and fp16.activations is DType.FP16
    assert fp16.convert_weights and fp16.convert_activations
    assert plan_precision(orin, parse_variant("dense@fp16"), DType.FP32).emulated is None
    assert plan_precision(pi, parse_variant("dense@bf16"), DType.FP32).emulated == "bf16"
    int8 = plan_precision(pi, parse_variant("dense@int8"), DType.FP32)
    assert int8.arithmetic is DType.INT8 and int8.activations is DType.FP32 and int8.weight_bits == 8
    w4 = plan_precision(tegra, parse_variant("dense@w4", group_size=64), DType.FP32)
    assert w4.arithmetic is DType.FP32 and w4.weight_bits == 4 and w4.scale_bytes(130) == 2 * 3
    with pytest.raises(OptionError, match="int8"):
        plan_precision(tegra, parse_variant("dense@int8"), DType.FP32)


# --- precision in the bytes and the kernel cost ------------------------------------------------------------------

def _options(*specs, **kw) -> RunOptions:
    return RunOptions(formats=parse_variants(",".join(specs), kw.pop("group_size", 128)), host_copies=False, **kw)


def test_weight_bytes_follow_the_type_and_count_the_scales(repo_root, tiny):
    result = run(load_profile(repo_root / TEGRA), tiny, _options("dense", "dense@fp16", "dense@w8", "dense@w4",
                                                                  group_size=32))
    dense, fp16, w8, w4 = result.variants
    for layer in tiny.layers:
        if not layer.kind.has_weights:
            continue
        n = layer.weight_count
        rows = layer.out_shape[0]
        scales = 2 * rows * math.ceil(n // rows / 32)      # an fp16 scale per group of 32 along each row
        assert dense.layer(layer.name).weight_bytes == 4 * n
        assert fp16.layer(layer.name).weight_bytes == 2 * n
        assert w8.layer(layer.name).weight_bytes == n + scales
        assert w4.layer(layer.name).weight_bytes == math.ceil(n / 2) + scales


def test_weight_only_types_shrink_the_weight_stream_of_the_trace(repo_root, tiny):
    profile = load_profile(repo_root / TEGRA)
    options = _options("dense", "dense@w4")
    lines = {}
    for variant in options.variants:
        fc1 = next(t for t in variant_traffic(profile, tiny, variant, options) if t.layer.name == "fc1")
        weights = fc1.addresses[fc1.stream == StreamKind.WEIGHT_VALUES]
        lines[variant.spec] = np.unique(weights // fc1.line_bytes).size
        if variant.precision is not None:
            assert fc1.shape.dequantized_weights == tiny.layer("fc1").weight_count
    # 4 bytes -> half a byte plus an fp16 scale per 128 weights: about 7.8x fewer weight lines
    assert 6.5 < lines["dense"] / lines["dense@w4"] < 8.5


def test_int8_runs_at_the_int8_peak_and_pays_its_quantize_passes(repo_root, tiny):
    orin = load_profile(repo_root / ORIN)
    options = _options("dense", "dense@int8")
    dense, int8 = (next(t for t in variant_traffic(orin, tiny, v, options) if t.layer.name == "conv1")
                   for v in options.variants)
    assert int8.shape.dtype is DType.INT8 and dense.shape.dtype is DType.FP32
    conv1 = tiny.layer("conv1")
    assert int8.shape.converted_elements == conv1.in_elements + conv1.out_elements
    bare = replace(int8.shape, converted_elements=0)
    fp32_s = issue_time(orin, dense.shape, 8).seconds
    int8_s = issue_time(orin, bare, 8).seconds
    peaks = orin.compute.peak_flops
    assert int8_s == pytest.approx(fp32_s * peaks.fp32 / peaks.int8)
    assert issue_time(orin, int8.shape, 8).seconds > int8_s        # the quantize / dequantize passes cost time


def test_dequantisation_cost_is_a_kernel_parameter(repo_root, tiny):
    from simulator.studies.validation import with_values

    tegra = load_profile(repo_root / TEGRA)
    options = _options("dense@w8")
    (variant,) = options.variants
    fc1 = next(t for t in variant_traffic(tegra, tiny, variant, options) if t.layer.name == "fc1")
    free = with_values(tegra, {"compute.kernels.gemv.dequant_cycles_per_vector": 0})
    slow = with_values(tegra, {"compute.kernels.gemv.dequant_cycles_per_vector": 8})
    assert issue_time(free, fc1.shape, 1).seconds < issue_time(tegra, fc1.shape, 1).seconds
    assert issue_time(slow, fc1.shape, 1).mechanism == "conversion"


# --- names, table, JSON ------------------------------------------------------------------------------------------

def test_the_default_pair_keeps_its_names_and_others_are_named_by_spec(repo_root, tiny):
    tegra = load_profile(repo_root / TEGRA)
    legacy = run(tegra, tiny, RunOptions(formats=(StorageFormat.DENSE, StorageFormat.CSR), host_copies=False))
    assert [(v.name, v.format) for v in legacy.variants] == [("dense", "dense"), ("pruned", "csr")]
    typed = run(tegra, tiny, _options("dense", "csr", "dense@fp16"))
    assert [(v.name, v.format) for v in typed.variants] == [("dense", "dense"), ("csr", "csr"),
                                                            ("dense@fp16", "dense@fp16")]
    text = render(typed)
    assert "speed-up over dense" in text and "dense@fp16 DRAM" in text
    assert f"{typed.variants[0].total_s / typed.variants[2].total_s:.2f}x" in text


def test_auto_takes_each_layer_from_the_fastest_variant(repo_root, tiny, tmp_path, capsys):
    tegra = load_profile(repo_root / TEGRA)
    result = run(tegra, tiny, _options("dense", "csr", "dense@w4", "auto"))
    *candidates, auto = result.variants
    assert auto.format == "auto" and set(auto.choices) == {"conv1", "fc1", "fc2"}
    for name, spec in auto.choices.items():
        fastest = min(candidates, key=lambda v: v.layer(name).time_s)
        assert spec == fastest.format
    assert auto.total_s <= max(v.total_s for v in candidates)
    assert "auto picks" in render(result)
    out = tmp_path / "run.json"
    assert cli.main(["run", str(repo_root / TEGRA), "--workload", tiny.path, "--format", "dense,dense@w8,auto",
                     "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert [v["format"] for v in document["variants"]] == ["dense", "dense@w8", "auto"]
    assert set(document["variants"][2]["choices"].values()) <= {"dense", "dense@w8"}


# --- sweeps and plots --------------------------------------------------------------------------------------------

def test_a_density_sweep_runs_every_variant_and_plots_their_break_even(repo_root, tiny_workload_path, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    plot = tmp_path / "break-even.png"
    status = cli.main(["sweep", str(repo_root / TEGRA), "--workload", str(tiny_workload_path), "--set",
                       "density=0.1,0.5,1.0", "--format", "dense,csr,dense@w8", "--workers", "1", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert status == 0
    assert "csr speed-up" in out and "dense@w8 speed-up" in out
    assert "break-even" in out and plot.stat().st_size > 0


def test_the_per_layer_plot_has_a_bar_per_variant_and_layer(repo_root, tiny, tmp_path, monkeypatch):
    from simulator.output import plots

    result = run(load_profile(repo_root / TEGRA), tiny, _options("dense", "dense@w8", "auto"))
    bars = []
    real_bar = None

    def spy(self, *args, **kwargs):
        container = real_bar(self, *args, **kwargs)
        bars.append(kwargs["label"])
        return container

    from matplotlib.axes import Axes

    real_bar = Axes.bar
    monkeypatch.setattr(Axes, "bar", spy)
    path = plots.layer_times_by_variant(result, tmp_path / "layers.svg")
    assert path.stat().st_size > 0
    assert [label.split(" (")[0] for label in bars] == ["dense", "dense@w8", "auto"]
