"""bench --llm and its crosscheck on tiny decoder configs (no assertion on how fast anything runs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.hardware.profile import load_profile
from simulator.measure.bench import load_bench
from simulator.measure.llmbench import (
    DecoderDims,
    KvCache,
    LlmTiming,
    WeightType,
    build_decoder,
    dims_of,
    generate,
    measure_llm,
    weight_bytes,
)
from simulator.measure.llmcheck import crosscheck_llm, fastest, render, to_json
from simulator.model.llm import load_llm_config

ROOT = Path(__file__).resolve().parent.parent
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 96, "tie_word_embeddings": True,
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16"}


def _config(tmp_path: Path, architecture: str = "Qwen2ForCausalLM", **changes) -> Path:
    path = tmp_path / f"{architecture}.json"
    path.write_text(json.dumps({**TINY, "architectures": [architecture], **changes}))
    return path


@pytest.fixture
def qwen(tmp_path):
    return dims_of(load_llm_config(_config(tmp_path)))


@pytest.mark.parametrize("architecture, fused, post_norms, bias", [
    ("LlamaForCausalLM", False, False, False), ("Qwen2ForCausalLM", False, False, True),
    ("Phi3ForCausalLM", True, False, False), ("Gemma2ForCausalLM", False, True, False),
])
def test_each_family_builds_its_block_and_the_cache_gives_what_recomputing_gives(tmp_path, architecture, fused,
                                                                                 post_norms, bias):
    dims = dims_of(load_llm_config(_config(tmp_path, architecture)))
    assert (dims.fused, dims.post_norms, dims.qkv_bias) == (fused, post_norms, bias)
    model = build_decoder(dims, WeightType.FP32, 32, seed=3)
    names = {n for n, _ in model.named_parameters()}
    assert ("layers.0.self_attn.qkv_proj.weight" in names) == fused
    assert ("layers.0.post_mlp_norm.weight" in names) == post_norms
    assert ("layers.0.self_attn.q_proj.bias" in names) == bias
    ids = torch.randint(0, dims.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = KvCache(dims, 2, 32, torch.float32)
        logits = model(ids, whole)
        stepped = KvCache(dims, 2, 32, torch.float32)
        model(ids[:, :5], stepped)
        model(ids[:, 5:6], stepped)
        last = model(ids[:, 6:], stepped)
    assert logits.shape == (2, dims.vocab_size)                 # the last position's logits only
    assert whole.length == stepped.length == 7
    torch.testing.assert_close(last, logits, rtol=1e-4, atol=1e-5)


def test_the_kv_cache_grows_by_one_token_a_step_and_refuses_to_overflow(qwen):
    model = build_decoder(qwen, WeightType.FP32, 16)
    cache = KvCache(qwen, 3, 12, torch.float32, generator=torch.Generator().manual_seed(1))
    cache.length = 8                                            # a context of 8 tokens
    with torch.inference_mode():
        ids = generate(model, torch.zeros(3, 1, dtype=torch.long), cache, 4)
        assert ids.shape == (3, 4) and cache.length == 12
        assert cache.keys.shape == (qwen.layers, 3, qwen.kv_heads, 12, qwen.head_dim)
        with pytest.raises(ValueError, match="overflows"):
            model(ids[:, -1:], cache)


def test_weight_types_store_what_they_say(qwen):
    fp32, bf16, int8 = (build_decoder(qwen, w, 16) for w in WeightType)
    assert weight_bytes(bf16) * 2 == weight_bytes(fp32)
    linear = int8.layers[0].mlp.gate_proj
    assert linear.weight().dtype == torch.qint8                 # torch.ao dynamic quantization
    table = qwen.vocab_size * qwen.hidden_size * 4              # the embedding stays fp32
    assert table < weight_bytes(int8) < weight_bytes(bf16) + table
    with torch.inference_mode():
        out = int8(torch.zeros(1, 3, dtype=torch.long), KvCache(qwen, 1, 16, torch.float32))
    assert out.dtype == torch.float32 and out.shape == (1, qwen.vocab_size)
    assert WeightType.INT8.variant == "dense@int8" and WeightType.BF16.kv_dtype == "bf16"


def test_a_shape_the_decoder_cannot_build_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="hidden_act"):
        dims_of(replace(load_llm_config(_config(tmp_path)), hidden_act="swish"))
    with pytest.raises(ConfigError, match="head_dim"):
        DecoderDims("odd", 64, 1, 4, 2, 15, 64, 32, True).check()


def test_measure_llm_times_each_weight_type(qwen):
    timings = measure_llm(qwen, "tiny.json", (WeightType.FP32, WeightType.INT8), prompt=6, context=10, tokens=3,
                          batch=2, threads=1, rounds=2)
    assert [t.variant for t in timings] == ["dense@fp32", "dense@int8"]
    for t in timings:
        assert 0 < t.ttft_best_s <= t.ttft_median_s and 0 < t.decode_best_s <= t.decode_median_s
        assert t.decode_tokens_per_s == pytest.approx(2 * 3 / t.decode_best_s)
        assert (t.prompt_tokens, t.context_tokens, t.decode_tokens, t.rounds) == (6, 10, 3, 2)


def test_bench_llm_writes_and_reads_its_entries(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "m.json"
    assert cli.main(["bench", "--llm", str(config), "--prompt", "5", "--context", "8", "--tokens", "2",
                     "--weights", "fp32,bf16", "--threads", "1", "--repeat", "1", "--out", str(out)]) == 0
    assert "dense@bf16" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["schema"] == "simulator-bench/1" and doc["format"] == "llm" and doc["layers"] == []
    assert [e["weights"] for e in doc["llm"]] == ["fp32", "bf16"]
    loaded = load_bench(out)
    assert [t.variant for t in loaded.llm] == ["dense@fp32", "dense@bf16"]
    assert loaded.llm[1].kv_dtype == "bf16" and loaded.llm[0].config_path == str(config)
    # files written before --llm (no "llm" key) still load
    del doc["llm"]
    out.write_text(json.dumps(doc))
    assert load_bench(out).llm == []


@pytest.mark.parametrize("edit, field", [
    (lambda e: e.update(ttft_best_s=0), "llm[0].ttft_best_s"),
    (lambda e: e.pop("decode_best_s"), "llm[0].decode_best_s"),
    (lambda e: e.update(weights="fp8"), "llm[0].weights"),
    (lambda e: e.update(context_tokens=-1), "llm[0].context_tokens"),
])
def test_a_bad_llm_entry_names_its_field(tmp_path, edit, field):
    doc = _synthetic_file(tmp_path, "cfg.json")
    edit(doc["llm"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as err:
        load_bench(path)
    assert err.value.field == field


@pytest.mark.parametrize("argv, flag", [
    (["bench", "--tokens", "3"], "--tokens"),
    (["bench", "--llm", "CONFIG", "--sparse-conv"], "--llm"),
    (["bench", "--llm", "CONFIG", "--format", "csr"], "--format"),
    (["bench", "--llm", "CONFIG", "--context", "96"], "max_position_embeddings"),
    (["bench", "--llm", "CONFIG", "--prompt", "97"], "max_position_embeddings"),
])
def test_bench_llm_refuses_in_one_line(tmp_path, capsys, argv, flag):
    config = str(_config(tmp_path))
    assert cli.main([config if a == "CONFIG" else a for a in argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1


# --- crosscheck ---------------------------------------------------------------------------------

def _timing(config: str, weights: WeightType, ttft_s: float, decode_s: float) -> LlmTiming:
    return LlmTiming("tiny", config, weights.value, weights.variant, weights.kv_dtype, 1, 16, 32, 4, 1, 3,
                     ttft_s, ttft_s * 1.1, decode_s, decode_s * 1.1, 123)


def _synthetic_file(tmp_path: Path, config: str, scale: float = 1.0) -> dict:
    """A bench --llm document with made-up figures (not measured)."""
    timings = [_timing(config, w, 1e-3 * scale, 2e-3 * scale) for w in WeightType]
    return {"schema": "simulator-bench/1", "workload": "tiny", "workload_path": config, "format": "llm", "batch": 1,
            "threads": 1, "repeat": 3, "seed": 0, "when": "synthetic", "machine": "synthetic", "versions": {},
            "load_before": "0 0 0", "layers": [], "operators": [], "llm": [t.__dict__ for t in timings]}


@pytest.fixture
def host(tmp_path):
    """The i7 profile with bf16 and int8 peaks, standing in for a calibrated host."""
    data = yaml.safe_load((ROOT / "hwprofiles" / "i7-5930k.yaml").read_text())
    data["compute"]["peak_flops"].update(bf16="1344 GFLOP/s", int8="2688 GOP/s")
    path = tmp_path / "host.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(path)


def test_crosscheck_pairs_each_weight_type_with_its_simulation(tmp_path, host):
    config = str(_config(tmp_path))
    slow, fast = _synthetic_file(tmp_path, config, 2.0), _synthetic_file(tmp_path, config, 1.0)
    timings = [("a.json", i, LlmTiming(**e)) for i, e in enumerate(slow["llm"])]
    timings += [("b.json", i, LlmTiming(**e)) for i, e in enumerate(fast["llm"])]
    assert len(fastest([t for _, _, t in timings])) == 3        # the same three cases twice
    check = crosscheck_llm(host, timings)
    assert [c.variant for c in check.cells] == ["dense@fp32", "dense@bf16", "dense@int8"] and not check.skipped
    for cell in check.cells:
        assert cell.measured_ttft_s == pytest.approx(1e-3)       # the faster file's figures
        assert cell.measured_tokens_per_s == pytest.approx(4 / 2e-3)
        assert cell.predicted_ttft_s > 0 and cell.predicted_tokens_per_s > 0
        assert cell.decode_error == pytest.approx(cell.predicted_tokens_per_s / cell.measured_tokens_per_s - 1)
        assert cell.decode_within == (abs(cell.decode_error) <= 0.15)
        assert cell.predicted_tokens_per_s <= cell.bandwidth_bound_tokens_per_s * (1 + 1e-9)
    # bf16 weights move half the fp32 bytes: the simulated decode is faster
    fp32, bf16, _ = check.cells
    assert bf16.predicted_tokens_per_s > fp32.predicted_tokens_per_s
    doc = to_json(check)
    assert len(doc["cells"]) == 3 and doc["decode_within"] == sum(c.decode_within for c in check.cells)
    assert "dense@int8" in render(check)


def test_crosscheck_skips_a_type_the_profile_cannot_compute(tmp_path):
    config = str(_config(tmp_path))
    doc = _synthetic_file(tmp_path, config)
    check = crosscheck_llm(load_profile(ROOT / "hwprofiles" / "i7-5930k.yaml"),
                           [("m.json", i, LlmTiming(**e)) for i, e in enumerate(doc["llm"])])
    assert [c.variant for c in check.cells] == ["dense@fp32", "dense@bf16"]
    assert len(check.skipped) == 1 and "peak_flops.int8" in check.skipped[0]


def test_crosscheck_command_on_a_synthetic_file(tmp_path, host, capsys):
    config = str(_config(tmp_path))
    measured, out = tmp_path / "m.json", tmp_path / "cc.json"
    measured.write_text(json.dumps(_synthetic_file(tmp_path, config)))
    assert cli.main(["crosscheck", str(host.path), str(measured), "--json", str(out)]) == 0
    assert "decode tokens per second: " in capsys.readouterr().out
    assert len(json.loads(out.read_text())["llm"]["cells"]) == 3
    assert cli.main(["crosscheck", str(host.path), str(measured), "--plot", str(tmp_path / "p.png")]) == 2
    Path(config).unlink()
    assert cli.main(["crosscheck", str(host.path), str(measured)]) == 2
    assert "llm[0].config_path" in capsys.readouterr().err


@pytest.mark.parametrize("architecture", ["LlamaForCausalLM", "Qwen2ForCausalLM", "Phi3ForCausalLM",
                                          "Gemma2ForCausalLM"])
@pytest.mark.parametrize("tied", [True, False])
def test_the_torch_decoder_has_the_simulated_graphs_parameters(tmp_path, architecture, tied):
    """The real decoder and the simulator's layer graph count the same weights (Qwen2's q/k/v biases,
    which the simulator leaves out, aside)."""
    config = load_llm_config(_config(tmp_path, architecture, tie_word_embeddings=tied))
    model = build_decoder(dims_of(config), WeightType.FP32, 8)
    counted = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("bias"))
    assert counted == config.parameters()


def test_every_shipped_config_gives_a_decoder_shape():
    for path in sorted((ROOT / "workloads" / "llm").glob("*.json")):
        config = load_llm_config(path)
        dims = dims_of(config)
        assert dims.heads * dims.head_dim == config.q_size and dims.layers == config.num_hidden_layers


@pytest.mark.parametrize("architecture, gate_up, count", [("LlamaForCausalLM", (160, 64), 4),
                                                          ("Phi3ForCausalLM", (320, 64), 2)])
def test_gemm_rows_benchmark_times_the_linears_the_decoder_has(tmp_path, architecture, gate_up, count):
    """benchmarks/gemm_rows.py --llm: the shapes it times (the simulator's workload of the model) are the
    torch decoder's own."""
    import importlib.util
    from collections import Counter

    spec = importlib.util.spec_from_file_location("gemm_rows", ROOT / "benchmarks" / "gemm_rows.py")
    gemm_rows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gemm_rows)
    path = _config(tmp_path, architecture, intermediate_size=160)
    model = build_decoder(dims_of(load_llm_config(path)), WeightType.FP32, 8)
    built = Counter(tuple(m.weight.shape) for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and name != "lm_head")
    assert gemm_rows.decoder_linears(str(path)) == built
    assert built[gate_up] == count and built[(64, 160)] == 2      # gate and up (fused or not), down: two blocks
