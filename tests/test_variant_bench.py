"""bench --format LIST and its crosscheck: refusals, the operators compute the simulator's layers in
each variant, the measured file, per-variant errors and pair winners (tiny layers, synthetic timings;
no assertion on how fast anything runs)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from simulator import cli
from simulator.base.errors import OptionError
from simulator.compress.compression import encode_variant
from simulator.compress.thinning import thin_workload
from simulator.compress.variants import parse_variant
from simulator.hardware.profile import load_profile
from simulator.measure.bench import WARMUP_MAX_CALLS, load_bench
from simulator.measure.variantbench import (
    bench_variants,
    parse_bench_variants,
    thinned_operator,
    time_rounds,
    variant_operator,
)
from simulator.measure.variantcheck import merge_runs, predict, render
from simulator.model.weights import synthetic_weights
from simulator.model.workload import load_workload

I7 = "hwprofiles/i7-5930k.yaml"
FC = """\
  - {name: fa, kind: fc, inputs: [], input_shape: [64], in_features: 64, out_features: 32, density: 0.25}
  - {name: fb, kind: fc, inputs: [], input_shape: [128], in_features: 128, out_features: 64, density: 0.5}
"""


@pytest.fixture
def fc(workload_from_text):
    return workload_from_text(FC, [64])


@pytest.fixture
def fc_path(fc):
    return fc.path


# --- which variants bench runs ------------------------------------------------------------------

def test_the_benchable_variants_parse(fc):
    specs = [v.spec for v in parse_bench_variants("dense,dense@bf16,dense@int8,csr,bsr4x4,thinned,thinned@int8", fc)]
    assert specs == ["dense", "dense@bf16", "dense@int8", "csr", "bsr4x4", "thinned", "thinned@int8"]


@pytest.mark.parametrize("text,words", [
    ("dense,2:4", "no torch CPU kernel for n:m"),
    ("csc", "no torch CPU kernel for csc"),
    ("auto", "no torch CPU kernel for auto"),
    ("csr@bf16", "csr in fp32 only, not bf16"),
    ("bsr4x4@int8", "bsr in fp32 only, not int8"),
    ("dense@w4", "not w4"),
    ("dense@fp16", "not fp16"),
    ("bsr3x3", "not a whole number of 3 x 3 blocks"),
    ("dense@int7", "unknown type"),
])
def test_unsupported_specs_are_refused(fc, text, words):
    with pytest.raises(OptionError, match=words) as err:
        parse_bench_variants(text, fc)
    assert err.value.option == "format"


def test_cli_refusal_is_one_line_exit_2(fc_path, capsys):
    assert cli.main(["bench", "--workload", str(fc_path), "--format", "dense,2:4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format" in err[0] and "'2:4'" in err[0]
    assert cli.main(["bench", "--workload", str(fc_path), "--format", "dense,csr", "--timeline", "t.json"]) == 2
    assert "--timeline" in capsys.readouterr().err


# --- the operators compute the simulator's layers -------------------------------------------------

def _run(op):
    out = op.call()
    return (out.float() if hasattr(out, "float") else torch.from_numpy(np.asarray(out))).reshape(-1)


@pytest.mark.parametrize("batch", [1, 3])
def test_dense_types_compute_the_dense_layer(fc, batch):
    layer = fc.layer("fb")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 128), generator=gen)
    expected = (x @ synthetic_weights(layer, 0).reshape(64, 128).T).reshape(-1)
    for spec, tolerance in (("dense", 1e-5), ("dense@bf16", 3e-2), ("dense@int8", 5e-2)):
        op = variant_operator(fc, layer, parse_variant(spec), batch, 0, 1)
        got = _run(op)
        assert torch.allclose(got, expected, atol=tolerance * expected.abs().max().item()), spec
    assert variant_operator(fc, layer, parse_variant("dense@int8"), batch, 0, 1).backend == "torch-int8-dynamic"


@pytest.mark.parametrize("batch", [1, 4])
def test_bsr_keeps_exactly_the_blocks_the_simulator_encodes(fc, batch):
    layer, variant = fc.layer("fb"), parse_variant("bsr4x4")
    enc = encode_variant(fc, variant, 0)["fb"]
    kept = np.zeros((16, 32), dtype=bool)
    kept[np.repeat(np.arange(16), np.diff(enc.pointers)), enc.indices] = True
    assert kept.sum() == round(0.5 * kept.size)              # the layer's density, in blocks
    w = synthetic_weights(layer, 0).reshape(64, 128) * torch.from_numpy(np.kron(kept, np.ones((4, 4)))).float()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 128), generator=gen)
    op = variant_operator(fc, layer, variant, batch, 0, 1)
    assert op.backend == "torch-bsr" and op.kernel == "bsr" and op.weight_bytes == enc.total_bytes
    got = _run(op).reshape(64, batch).T if batch > 1 else _run(op).reshape(1, 64)
    assert torch.allclose(got, x @ w.T, atol=1e-5)


CHAIN = """\
  - {name: f1, kind: fc, in_features: 64, out_features: 32, density: 0.5}
  - {name: f2, kind: fc, in_features: 32, out_features: 32, density: 0.5}
  - {name: f3, kind: fc, in_features: 32, out_features: 8, relu: false}
"""


def test_thinned_layers_are_the_original_weights_cut_down(workload_from_text):
    chain = workload_from_text(CHAIN, [64])
    thinned, record = thin_workload(chain, 0)
    small = thinned.layer("f2")
    assert small.weight_matrix_shape == (16, 16)              # half its rows, and the half of f1's it reads
    op = thinned_operator(chain, thinned, record, chain.layer("f2"), parse_variant("thinned"), 1, 0, 1)
    full = synthetic_weights(chain.layer("f2"), 0).reshape(32, 32)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, 16), generator=gen)
    assert torch.allclose(_run(op), record.layers["f2"].slice(full) @ x[0], atol=1e-5)
    assert op.weight_bytes == 16 * 16 * 4
    int8 = thinned_operator(chain, thinned, record, chain.layer("f2"), parse_variant("thinned@int8"), 1, 0, 1)
    assert int8.backend == "torch-int8-dynamic" and _run(int8).shape == (16,)


def test_thinning_that_removes_nothing_is_said(fc):
    result = bench_variants(fc, parse_bench_variants("dense,thinned", fc), threads=1, repeat=1, rounds=1)
    assert any("thinned" in n and "removes nothing" in n for n in result.notes)


def test_rounds_interleave_the_variants_and_go_over_every_layer():
    order, visits = [], []
    calls = [[lambda: order.append("a"), lambda: order.append("b")], [lambda: order.append("c")]]
    times, faulted = time_rounds(calls, rounds=2, per_round=3, progress=lambda r, n: visits.append((r, n)))
    assert [[len(t) for t in layer] for layer in times] == [[6, 6], [6]]
    # per round each layer's calls in turn, each its warm-up (three calls at least: it ends on two
    # that are no faster than the fastest before them) and its 3 timed calls, back to back; the
    # second round only after every layer's first, so a layer's rounds lie as far apart as the run
    blocks = [(name, len(list(run))) for name, run in itertools.groupby(order)]
    assert [name for name, _ in blocks] == ["a", "b", "c", "a", "b", "c"]
    assert all(3 + 3 <= n <= WARMUP_MAX_CALLS + 3 for _, n in blocks)
    assert visits == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [len(f) for f in faulted] == [2, 1] and all(x >= 0 for f in faulted for x in f)


def test_a_call_that_maps_a_fresh_buffer_counts_its_pages():
    """A call that allocates and fills 64 MiB (above glibc's 32 MiB ceiling: mapped afresh every
    call) faults in about its pages each call; one that refills a kept buffer faults none."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mmap ceiling")
    n = (64 << 20) // 4
    kept = torch.empty(n)
    _, [faulted] = time_rounds([[lambda: torch.empty(n).fill_(1.0), lambda: kept.fill_(1.0)]], rounds=1,
                               per_round=2)
    assert faulted[0] >= 0.9 * (64 << 20)
    assert faulted[1] < 1 << 20


# --- the measured file --------------------------------------------------------------------------

def test_bench_times_every_weighted_layer_in_every_variant(fc, tmp_path):
    variants = parse_bench_variants("dense,dense@int8,csr,bsr4x4,thinned", fc)
    result = bench_variants(fc, variants, batch=2, threads=1, repeat=4, rounds=2)
    assert [(t.layer, t.format) for t in result.variants] == [(l, v.spec) for l in ("fa", "fb") for v in variants]
    assert all(t.calls == 4 and t.batch == 2 and t.median_s > 0 for t in result.variants)
    assert not result.layers and result.format == "variants"
    path = tmp_path / "v.json"
    path.write_text(json.dumps(result.to_json()))
    assert load_bench(path) == result


def test_a_convolution_in_int8_is_skipped_with_a_note(tiny_workload_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    tiny = load_workload(tiny_workload_path)
    result = bench_variants(tiny, parse_bench_variants("dense,dense@int8", tiny), threads=1, repeat=1, rounds=1)
    assert ("conv1", "dense@int8") not in {(t.layer, t.format) for t in result.variants}
    assert ("fc1", "dense@int8") in {(t.layer, t.format) for t in result.variants}
    assert any("conv1 skipped" in n for n in result.notes)


def test_a_bad_variant_entry_is_one_error(fc, tmp_path):
    result = bench_variants(fc, parse_bench_variants("dense", fc), threads=1, repeat=1, rounds=1)
    doc = result.to_json()
    doc["variants"][0]["median_s"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match=r"variants\[0\].median_s"):
        load_bench(path)


# --- crosscheck ---------------------------------------------------------------------------------

def _synthetic(fc, specs, batch=1, factor=None):
    """Timings whose medians are the simulator's own times x ``factor[spec]`` (1.25 by default)."""
    real = bench_variants(fc, parse_bench_variants(",".join(specs), fc), batch=batch, threads=1, repeat=1, rounds=1)
    exact = predict(load_profile(I7), fc, [(t, 0) for t in real.variants])
    factor = factor or {}
    return [replace(c.measured, median_s=c.predicted_s * factor.get(c.measured.format, 1.25)) for c in exact.cells]


def test_errors_and_winners_follow_the_measurements(fc):
    profile = load_profile(I7)
    timings = _synthetic(fc, ["dense", "csr", "thinned", "bsr4x4"],
                         factor={"dense": 1.25, "csr": 0.8, "thinned": 1.1, "bsr4x4": 1.0})
    check = predict(profile, fc, [(t, 0) for t in timings])
    summary = {s.variant: s.median_abs_error for s in check.summaries()}
    assert summary == pytest.approx({"dense": 0.2, "csr": 0.25, "thinned": 1 - 1 / 1.1, "bsr4x4": 0.0})
    # every variant off by the same factor: the simulator names every faster variant right
    same = predict(profile, fc, [(replace(t, median_s=c.predicted_s * 1.3), 0)
                                 for t, c in zip(timings, check.cells)])
    assert same.winners() == (12, 12) and all(p.total == 2 for p in same.pairs())
    # swap fa's measured dense and csr times: that pair goes wrong at fa, and only there
    times = {(c.measured.layer, c.measured.format): c.predicted_s * 1.3 for c in check.cells}
    assert times[("fa", "dense")] != times[("fa", "csr")]
    times[("fa", "dense")], times[("fa", "csr")] = times[("fa", "csr")], times[("fa", "dense")]
    swapped = predict(profile, fc, [(replace(t, median_s=times[(t.layer, t.format)]), 0) for t in timings])
    pair = next(p for p in swapped.pairs() if (p.first, p.second) == ("dense", "csr"))
    assert pair.wrong == ("fa b1",) and pair.right == 1
    assert "dense vs csr" in render(swapped) and "wrong: fa b1" in render(swapped)


def test_repeated_runs_keep_the_fastest(fc):
    timings = _synthetic(fc, ["dense"])
    slower = [replace(t, median_s=2 * t.median_s) for t in timings]
    assert merge_runs(slower + timings) == timings


def test_a_variant_the_profile_cannot_run_is_skipped_with_its_reason(fc):
    real = bench_variants(fc, parse_bench_variants("dense,dense@int8", fc), threads=1, repeat=1, rounds=1)
    check = predict(load_profile(I7), fc, [(t, 0) for t in real.variants])
    assert "dense@int8" in check.skipped and "no int8 peak" in check.skipped["dense@int8"]
    assert check.variants == ["dense"]
    assert "skipped dense@int8" in render(check)
    # a profile with an int8 peak runs it
    orin = predict(load_profile("hwprofiles/jetson-orin-nano.yaml"), fc, [(t, 0) for t in real.variants])
    assert orin.variants == ["dense", "dense@int8"] and not orin.skipped


def test_cli_bench_then_crosscheck(fc_path, tmp_path, capsys):
    out = tmp_path / "v.json"
    assert cli.main(["bench", "--workload", str(fc_path), "--format", "dense,csr,thinned", "--batch", "2",
                     "--repeat", "2", "--threads", "1", "--out", str(out)]) == 0
    assert "thinned" in capsys.readouterr().out
    report, plot = tmp_path / "c.json", tmp_path / "c.png"
    assert cli.main(["crosscheck", I7, str(out), "--json", str(report), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "per variant" in printed and "dense vs csr" in printed
    doc = json.loads(report.read_text())["variants"]
    assert {v["variant"] for v in doc["variants"]} == {"dense", "csr", "thinned"}
    assert len(doc["cells"]) == 6 and doc["winners_total"] == 6 and plot.stat().st_size > 0
    assert cli.main(["crosscheck", I7, str(out), "--fit"]) == 2


def test_layers_the_block_does_not_divide_are_skipped_and_the_others_checked(workload_from_text):
    odd = workload_from_text(FC + "  - {name: fc_odd, kind: fc, inputs: [], input_shape: [64], in_features: 64, "
                             "out_features: 10, density: 0.5}\n", [64])
    variants = parse_bench_variants("dense,bsr4x4", odd)
    result = bench_variants(odd, variants, threads=1, repeat=1, rounds=1)
    assert ("fc_odd", "bsr4x4") not in {(t.layer, t.format) for t in result.variants}
    assert any("fc_odd skipped" in n and "4 x 4 blocks" in n for n in result.notes)
    check = predict(load_profile(I7), odd, [(t, 0) for t in result.variants])
    bsr_layers = {c.measured.layer for c in check.cells if c.measured.format == "bsr4x4"}
    assert not check.skipped and bsr_layers == {"fa", "fb"}
    # no layer fits: refused as run refuses it
    with pytest.raises(OptionError, match="fa's 32 x 64 weight matrix is not a whole number of 3 x 3 blocks"):
        parse_bench_variants("bsr3x3", odd)


def test_the_check_lists_pages_faulted_against_those_the_model_maps_afresh(fc):
    """With ``memory.fresh_pages`` the model maps afresh the outputs above its threshold (here a
    threshold of 16 B, so fc's outputs count): each such cell is listed with the bytes bench saw
    faulted a call, in the text and the JSON; without the block and without faults, nothing."""
    from simulator.hardware.profile import FreshPages
    from simulator.studies.validation import with_values

    timings = _synthetic(fc, ["dense"])
    plain = predict(load_profile(I7), fc, [(t, 0) for t in timings])
    assert "pages faulted" not in render(plain)
    fresh = with_values(load_profile(I7), {"memory.fresh_pages": FreshPages(above="16 B", bandwidth="2 GB/s")})
    faulted = [replace(t, faulted_bytes=float(3 << 20)) for t in timings]
    check = predict(fresh, fc, [(t, 0) for t in faulted])
    out_bytes = {c.measured.layer: c.fresh_bytes for c in check.cells}
    assert out_bytes["fb"] == 64 * 4 and all(b > 0 for b in out_bytes.values())
    text = render(check)
    assert "pages faulted a call" in text and "3.0 / 0.0" in text
    cell = check.to_json()["cells"][0]
    assert cell["measured_faulted_bytes"] == 3 << 20 and cell["predicted_fresh_bytes"] > 0


def test_a_bsr_cell_takes_the_index_widths_of_torchs_library(fc):
    """torch's BSR tensors hold int64 indices and copy them to int32 at every call, as its CSR ones
    do, whichever CSR library the profile's own kernels are: a BSR cell is timed with the ``torch``
    library's index widths (wider indices: more bytes, never less time)."""
    from simulator.base.yamlio import read_yaml_mapping
    from simulator.hardware.profile import profile_from_mapping

    timings = _synthetic(fc, ["bsr4x4"])
    data = read_yaml_mapping(I7)
    kernels = data["compute"]["kernels"]
    kernels["index_bits"] = 16
    narrow = profile_from_mapping(data, I7)
    kernels["libraries"] = {"torch": {"spmv": kernels["spmv"], "spmm": kernels["spmm"], "index_bits": 64,
                                      "kernel_index_bits": 32}}
    wide = profile_from_mapping(data, I7)
    before = {c.measured.layer: c.predicted_s for c in predict(narrow, fc, [(t, 0) for t in timings]).cells}
    after = {c.measured.layer: c.predicted_s for c in predict(wide, fc, [(t, 0) for t in timings]).cells}
    assert all(after[layer] >= before[layer] for layer in before) and after != before
