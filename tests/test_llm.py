"""Decoder LLMs from a config.json: parsing and its errors, the layer graph against hand counts, the
phases' bounds, the KV cache, and the simulation of one block per shape against the whole model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from simulator import cli
from simulator.hardware.profile import load_profile
from simulator.model.llm import Family, Phase, llm_workload, load_llm_config, operator_of
from simulator.model.workload import DType, LayerKind
from simulator.pipeline import RunOptions, simulate_variant
from simulator.studies.llm import LlmOptions, context_lengths, simulate_llm

TINY = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": True, "hidden_act": "silu", "torch_dtype": "float16"}
# weights of a block (7.9 MB in fp16) well beyond the Orin Nano's L2: decode streams them from DRAM
MEDIUM = {**TINY, "hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_key_value_heads": 4,
          "vocab_size": 4096}


def write(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def orin(repo_root):
    return load_profile(repo_root / "hwprofiles/jetson-orin-nano.yaml")


# --- parsing ---------------------------------------------------------------------------------------

def test_llama_3_2_1b_has_its_published_parameter_count(repo_root):
    config = load_llm_config(repo_root / "workloads/llm/llama-3.2-1b.json")
    assert (config.family, config.head_dim, config.kv_size, config.tie_word_embeddings) == (Family.LLAMA, 64, 512, True)
    # embedding 128256 x 2048, per block q/o 2048^2 each, k/v 2048 x 512 each, MLP 3 x 2048 x 8192, two norms
    per_block = 2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 8192 + 2 * 2048
    assert config.block_parameters() == per_block
    assert config.parameters() == 128256 * 2048 + 16 * per_block + 2048 == 1_235_814_400


def test_every_shipped_config_loads(repo_root):
    paths = sorted((repo_root / "workloads/llm").glob("*.json"))
    assert len(paths) >= 5
    for path in paths:
        config = load_llm_config(path)
        assert config.parameters() > 1e8 and "_source" in json.loads(path.read_text())


def test_defaults_follow_transformers(tmp_path):
    data = {k: v for k, v in TINY.items() if k not in ("num_key_value_heads", "tie_word_embeddings", "hidden_act",
                                                          "torch_dtype")}
    config = load_llm_config(write(tmp_path, data))
    assert (config.num_key_value_heads, config.head_dim, config.tie_word_embeddings) == (4, 16, False)
    assert (config.hidden_act, config.torch_dtype) == ("silu", DType.FP32)
    gemma = load_llm_config(write(tmp_path, {**data, "architectures": ["Gemma2ForCausalLM"], "head_dim": 32}))
    assert (gemma.tie_word_embeddings, gemma.hidden_act, gemma.head_dim, gemma.norms_per_block) == (
        True, "gelu_pytorch_tanh", 32, 4)


@pytest.mark.parametrize("change, field", [
    ({"hidden_size": None}, "hidden_size"),
    ({"num_attention_heads": 5}, "num_attention_heads"),          # 5 heads do not divide 64
    ({"num_key_value_heads": 3}, "num_key_value_heads"),          # 3 do not divide 4 heads
    ({"architectures": ["BertModel"]}, "architectures"),
    ({"architectures": None, "model_type": "gpt2"}, "model_type"),
    ({"vocab_size": True}, "vocab_size"),
    ({"intermediate_size": -4}, "intermediate_size"),
    ({"hidden_act": "swish3"}, "hidden_act"),
    ({"torch_dtype": "float8"}, "torch_dtype"),
])
def test_bad_configs_are_one_line_naming_the_file_and_field(tmp_path, repo_root, capsys, change, field):
    data = {k: v for k, v in {**TINY, **change}.items() if v is not None}
    path = write(tmp_path, data)
    assert cli.main(["run", str(repo_root / "hwprofiles/jetson-orin-nano.yaml"), "--workload", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and f": {field}:" in err and "Traceback" not in err


@pytest.mark.parametrize("text, message", [("{", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_not_a_config(tmp_path, repo_root, capsys, text, message):
    path = write(tmp_path, text)
    assert cli.main(["run", str(repo_root / "hwprofiles/jetson-orin-nano.yaml"), "--workload", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_context_beyond_the_maximum_is_refused(tmp_path, repo_root, capsys):
    path = write(tmp_path, TINY)
    assert cli.main(["run", str(repo_root / "hwprofiles/jetson-orin-nano.yaml"), "--workload", str(path),
                     "--context", "510", "--tokens", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "max_position_embeddings" in err and "512" in err and "\n" not in err


def test_decoder_flags_need_a_model_config(repo_root, capsys):
    assert cli.main(["run", str(repo_root / "hwprofiles/tegra.yaml"), "--phase", "prefill"]) == 2
    assert "--phase" in capsys.readouterr().err


def test_prompt_does_not_apply_to_decode(tmp_path, repo_root, capsys):
    path = write(tmp_path, TINY)
    assert cli.main(["run", str(repo_root / "hwprofiles/jetson-orin-nano.yaml"), "--workload", str(path),
                     "--prompt", "8"]) == 2
    assert "--prompt" in capsys.readouterr().err


def test_a_workload_file_cannot_write_decoder_layers(tmp_path, write_yaml=None):
    from simulator.base.errors import ConfigError
    from simulator.model.workload import load_workload

    path = tmp_path / "w.yaml"
    path.write_text("schema_version: 1\nname: x\nsource: t\ninput_shape: [8]\nlayers:\n"
                    "  - {name: n, kind: norm}\n")
    with pytest.raises(ConfigError, match="layers\\[0\\].kind: norm layers come from a model's config.json"):
        load_workload(path)


# --- the layer graph ----------------------------------------------------------------------------------

def test_decode_graph_against_hand_counts(tmp_path):
    config = load_llm_config(write(tmp_path, TINY))
    workload = llm_workload(config, "decode", 1, 100, batch=3)
    layers = {l.name: l for l in workload.layers}
    assert [l.name for l in workload.layers][:6] == ["embed", "b0.input_norm", "b0.q_proj", "b0.k_proj", "b0.v_proj",
                                                     "b0.attn_scores"]
    assert len(workload.layers) == 1 + 2 * 15 + 2
    assert layers["b0.k_proj"].weight_shape == (32, 64)       # GQA: 2 kv heads x 16
    assert layers["b1.down_proj"].weight_shape == (64, 128)
    assert layers["lm_head"].weight_shape == (256, 64)
    assert layers["b0.q_proj"].flops(3) == 2 * 64 * 64 * 3
    scores = layers["b0.attn_scores"]
    assert scores.attention.keys_last == 101                  # the 100 cached tokens and the new one
    assert scores.flops(3) == 2 * 3 * 4 * 16 * 101            # sequences x heads x head dim x keys
    assert layers["b0.softmax"].flops(3) == 3 * 4 * 101
    assert scores.attention.cache_bytes == 3 * 2 * 16 * 101 * 2   # K: sequences x kv heads x dim x keys x fp16
    assert workload.predecessors("b0.attn_residual") == ["embed", "b0.o_proj"]
    assert workload.predecessors("b0.act") == ["b0.gate_proj", "b0.up_proj"]
    assert sum(l.weight_count for l in workload.layers) == config.parameters() - 5 * 64 - 0   # norms apart
    assert operator_of("b1.v_proj") == "qkv" and operator_of("lm_head") == "lm head"


def test_prefill_attends_causally(tmp_path):
    config = load_llm_config(write(tmp_path, TINY))
    scores = llm_workload(config, "prefill", 10, 0).layer("b0.attn_scores")
    assert (scores.attention.keys_first, scores.attention.keys_last, scores.attention.queries) == (1, 10, 10)
    assert scores.flops(10) == 2 * 4 * 16 * (10 * 11 // 2)
    assert llm_workload(config, "prefill", 10, 0).layer("b0.q_proj").flops(10) == 2 * 64 * 64 * 10


def test_eager_attention_materialises_its_scores_and_probabilities(tmp_path):
    """A prefill's scores are every query against the last query's keys, per head: the product, its
    scaled and its masked copies (a decode step has no mask: two), then the softmax's probabilities.
    With ``memory.fresh_pages`` each of those above the threshold is mapped afresh at every call."""
    from simulator.engine.kernelcost import fresh_bytes
    from simulator.hardware.profile import FreshPages, KernelKind
    from simulator.memory.kernelshape import kernel_shape
    from simulator.studies.validation import with_values

    config = load_llm_config(write(tmp_path, TINY))
    prefill = llm_workload(config, "prefill", 512, 0)
    scores = kernel_shape(prefill.layer("b0.attn_scores"), None, 1, KernelKind.GEMM)
    probs = kernel_shape(prefill.layer("b0.softmax"), None, 1, KernelKind.POOL)
    one = 4 * 512 * 512 * 2                        # 4 heads x 512 queries x 512 keys, fp16
    assert (scores.output_bytes, scores.output_copies) == (one, 3) and probs.output_bytes == one
    decode = kernel_shape(llm_workload(config, "decode", 1, 100).layer("b0.attn_scores"), None, 1, KernelKind.GEMV)
    assert (decode.output_bytes, decode.output_copies) == (4 * 1 * 101 * 2, 2)
    pi = load_profile("hwprofiles/raspberry-pi-5.yaml")
    fresh = with_values(pi, {"memory.fresh_pages": FreshPages(above="1 MiB", bandwidth="2 GB/s")})
    assert fresh_bytes(fresh, scores) == 3 * one and fresh_bytes(fresh, probs) == one
    assert fresh_bytes(fresh, decode) == 0 and fresh_bytes(pi, scores) == 0


def test_phi3_fuses_qkv_and_gate_up(tmp_path):
    config = load_llm_config(write(tmp_path, {**TINY, "architectures": ["Phi3ForCausalLM"]}))
    names = [l.name for l in llm_workload(config, "decode", 1, 4).layers]
    assert "b0.qkv_proj" in names and "b0.gate_up_proj" in names and "b0.q_proj" not in names
    assert llm_workload(config, "decode", 1, 4).layer("b0.gate_up_proj").weight_shape == (256, 64)


def test_kv_cache_bytes_grow_linearly_with_the_context(tmp_path, orin):
    config = load_llm_config(write(tmp_path, MEDIUM))
    sizes = [config.kv_cache_bytes(n) for n in (128, 256, 384)]
    assert sizes[1] - sizes[0] == sizes[2] - sizes[1] == 2 * 2 * 4 * 64 * 128 * 2
    assert config.kv_cache_bytes(128, kv_dtype=DType.INT8) * 2 == sizes[0]
    reads = [simulate_llm(orin, config, LlmOptions(context=n)).variants[0].kv_dram_bytes for n in (128, 256, 384)]
    assert reads[0] < reads[1] < reads[2]
    assert (reads[2] - reads[1]) == pytest.approx(reads[1] - reads[0], rel=0.1)


# --- simulation ---------------------------------------------------------------------------------------

def test_decode_is_memory_bound_and_prefill_compute_bound_on_a_gpu(tmp_path, orin):
    config = load_llm_config(write(tmp_path, MEDIUM))
    decode = simulate_llm(orin, config, LlmOptions(context=64)).variants[0]
    prefill = simulate_llm(orin, config, LlmOptions(phase=Phase.PREFILL, prompt=256)).variants[0]
    mlp = {o.operator: o for o in decode.operators}["mlp"]
    assert mlp.bound.startswith("dram")
    assert {o.operator: o for o in prefill.operators}["mlp"].bound == "compute"
    assert decode.decode_tokens_per_s > 0 and decode.time_to_first_token_s is None
    assert prefill.time_to_first_token_s > 0 and prefill.decode_tokens_per_s is None
    # decode reads every weight once: at least the bytes over the bandwidth, and not far above it
    assert decode.bandwidth_bound_s <= decode.step_s < 2 * decode.bandwidth_bound_s


def test_w4_decodes_faster_than_fp16_on_a_memory_bound_device(tmp_path, orin):
    config = load_llm_config(write(tmp_path, MEDIUM))
    fp16, w4 = simulate_llm(orin, config, LlmOptions(context=64, formats=("dense@fp16,dense@w4",))).variants
    assert w4.weight_bytes < fp16.weight_bytes / 3
    assert w4.decode_tokens_per_s > 1.5 * fp16.decode_tokens_per_s


def test_int8_kv_cache_halves_its_bytes(tmp_path, orin):
    config = load_llm_config(write(tmp_path, MEDIUM))
    fp16 = simulate_llm(orin, config, LlmOptions(context=256)).variants[0]
    int8 = simulate_llm(orin, config, LlmOptions(context=256, kv_dtype=DType.INT8)).variants[0]
    assert int8.kv_cache_bytes * 2 == fp16.kv_cache_bytes
    assert int8.kv_dram_bytes < fp16.kv_dram_bytes


def test_one_block_stands_for_the_whole_model(tmp_path, orin):
    """The step built from one simulated block equals the whole model simulated layer by layer."""
    config = load_llm_config(write(tmp_path, {**MEDIUM, "num_hidden_layers": 4}))
    step = simulate_llm(orin, config, LlmOptions(context=100)).variants[0].step_s
    whole = simulate_variant(orin, llm_workload(config, "decode", 1, 100), "dense",
                             RunOptions(batch=1, formats=("dense",), host_copies=False))
    assert step == pytest.approx(whole.total_s, rel=0.03)


def test_once_per_shape_equals_every_token_simulated(tmp_path, orin):
    """Decode of 6 tokens: attention at 2 KV lengths interpolated, at all 6, and each token's whole
    step simulated on its own, agree."""
    config = load_llm_config(write(tmp_path, TINY))
    options = LlmOptions(context=200, tokens=6)
    assert context_lengths(replace(options, context_points=2)) == [200, 205]
    two = simulate_llm(orin, config, replace(options, context_points=2)).variants[0].step_s
    every = simulate_llm(orin, config, replace(options, context_points=6)).variants[0].step_s
    per_token = [simulate_llm(orin, config, LlmOptions(context=n)).variants[0].step_s for n in range(200, 206)]
    assert every == pytest.approx(sum(per_token) / 6, rel=0.02)
    assert two == pytest.approx(every, rel=0.01)


def test_a_model_too_big_for_the_device_is_reported(tmp_path, repo_root):
    profile = load_profile(repo_root / "hwprofiles/raspberry-pi-5.yaml")
    big = load_llm_config(write(tmp_path, {**TINY, "hidden_size": 4096, "intermediate_size": 14336,
                                           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128,
                                           "num_hidden_layers": 64}))
    variant = simulate_llm(profile, big, LlmOptions(context=16)).variants[0]
    assert variant.weight_bytes > profile.dram.capacity_bytes
    assert variant.fits is False and any("does not fit" in n for n in variant.notes)


def test_run_prints_the_breakdown_and_writes_the_rates(tmp_path, repo_root, capsys):
    path = write(tmp_path, TINY)
    out = tmp_path / "r.json"
    profile = str(repo_root / "hwprofiles/jetson-orin-nano.yaml")
    assert cli.main(["run", profile, "--workload", str(path), "--context", "32", "--tokens", "4",
                     "--format", "dense,dense@w4", "--kv-dtype", "int8", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for operator in ("qkv", "attention scores", "softmax", "attention output", "mlp", "norms", "embedding",
                     "lm head"):
        assert operator in text
    data = json.loads(out.read_text())
    assert [v["format"] for v in data["variants"]] == ["dense", "dense@w4"]
    assert all(v["decode_tokens_per_s"] > 0 for v in data["variants"]) and data["kv_dtype"] == "int8"
    assert cli.main(["run", profile, "--workload", str(path), "--phase", "prefill", "--prompt", "16",
                     "--json", str(out)]) == 0
    assert json.loads(out.read_text())["variants"][0]["time_to_first_token_s"] > 0


def test_layer_kinds_of_a_block(tmp_path):
    config = load_llm_config(write(tmp_path, TINY))
    kinds = {l.kind for l in llm_workload(config, "decode", 1, 8).layers}
    assert {LayerKind.EMBEDDING, LayerKind.NORM, LayerKind.ATTN_SCORES, LayerKind.SOFTMAX, LayerKind.ATTN_VALUES,
            LayerKind.GLU, LayerKind.FC, LayerKind.ADD} == kinds
