"""A real decoder LLM on this CPU with torch: time to first token and decode tokens per second
(``python -m simulator bench --llm CONFIG``).

The decoder is built from a model config (:class:`DecoderDims`: the fields of a Llama / Qwen2 /
Mistral / Phi-3 style ``config.json``) with seeded random weights: token embedding, per block an
RMSNorm, the Q / K / V projections (with biases where the family has them, Qwen2), rotary
position embedding, grouped-query attention over a KV cache, the output projection, a second
RMSNorm and the gated MLP (gate, up, down), then the final norm and the LM head (tied to the
embedding or not). Nothing is downloaded: the weights are random, which does not change how long
any kernel takes.

Three weight types, each a variant the simulator knows:

* ``fp32``: every weight, activation and the KV cache in float32 (``dense@fp32``);
* ``bf16``: the whole model and the KV cache in bfloat16 (``dense@bf16``);
* ``int8``: every ``nn.Linear`` replaced by ``torch.ao.quantization.quantize_dynamic``'s int8
  dynamic-quantized linear (int8 weights with per-tensor scales, activations quantized on the fly),
  the embedding, norms and the KV cache in float32 (``dense@int8``).

The KV cache is preallocated for the longest sequence a run needs and written in place (no copy
as it grows); grouped-query attention reads each key / value head once for its group of query
heads (the queries of a group are stacked, so no key is repeated in memory).

Timing (:func:`measure_llm`): after one untimed round, ``rounds`` rounds of (prefill of the
prompt; then ``tokens`` decode steps after a cache of ``context`` tokens), each figure the fastest
round (other processes only ever slow a call down; the median is kept too). Time to first token
is the prefill of ``prompt`` tokens into an empty cache up to the first token's logits (the LM
head runs on the last position only). A decode step feeds one token per sequence, attends over
the cache (``context`` keys, growing by one per step) and picks the next token (argmax of the
logits). The cache of the decode phase is filled with random keys and values rather than by a
prefill of ``context`` tokens: the values do not change the time.
"""

from __future__ import annotations

import enum
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..base.errors import ConfigError
from ..model.llm import Family, LlmConfig

DEFAULT_PROMPT = 128
DEFAULT_CONTEXT = 256
DEFAULT_TOKENS = 32
DEFAULT_LLM_ROUNDS = 3


class WeightType(str, enum.Enum):
    """How the benched decoder stores its weights (and computes)."""

    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"        # torch.ao dynamic quantization of every nn.Linear

    @property
    def variant(self) -> str:
        """The simulator's variant of this weight type."""
        return f"dense@{self.value}"

    @property
    def kv_dtype(self) -> str:
        """The data type of the KV cache torch keeps: the activations' type."""
        return "bf16" if self is WeightType.BF16 else "fp32"


class Activation(str, enum.Enum):
    """The gated MLP's activation (``hidden_act``)."""

    SILU = "silu"
    GELU_TANH = "gelu_pytorch_tanh"
    GELU_NEW = "gelu_new"            # the tanh approximation too
    GELU = "gelu"
    RELU = "relu"


@dataclass(frozen=True)
class DecoderDims:
    """The shape of a decoder-only transformer, as its ``config.json`` gives it."""

    name: str
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    activation: Activation = Activation.SILU
    qkv_bias: bool = False           # Qwen2 has biases on the Q, K and V projections
    fused: bool = False              # Phi-3: one qkv_proj and one gate_up_proj
    post_norms: bool = False         # Gemma-2: RMSNorms after attention and after the MLP too
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0      # not in the model config the simulator reads; it does not change the time

    def check(self, source: str = "config") -> None:
        """Refuse a shape the decoder cannot be built with, naming the field."""
        for name in ("hidden_size", "layers", "heads", "kv_heads", "head_dim", "intermediate_size", "vocab_size"):
            if getattr(self, name) < 1:
                raise ConfigError(source, name, f"{getattr(self, name)} is not a positive count")
        if self.heads % self.kv_heads:
            raise ConfigError(source, "num_key_value_heads", f"{self.kv_heads} does not divide the {self.heads} heads")
        if self.head_dim % 2:
            raise ConfigError(source, "head_dim", f"{self.head_dim} is odd; rotary embedding needs pairs")


def dims_of(config: LlmConfig) -> DecoderDims:
    """The :class:`DecoderDims` of a loaded model config, with its family's block structure."""
    source = config.path or config.name
    try:
        activation = Activation(config.hidden_act)
    except ValueError:
        raise ConfigError(source, "hidden_act", f"{config.hidden_act!r}: bench runs "
                          f"{', '.join(a.value for a in Activation)}") from None
    dims = DecoderDims(config.name, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                       config.num_key_value_heads, config.head_dim, config.intermediate_size, config.vocab_size,
                       config.tie_word_embeddings, activation, qkv_bias=config.family is Family.QWEN2,
                       fused=config.family is Family.PHI3, post_norms=config.family is Family.GEMMA2,
                       rms_norm_eps=config.rms_norm_eps)
    dims.check(source)
    return dims


# --- the decoder --------------------------------------------------------------------------------

class KvCache:
    """Keys and values of every block for ``batch`` sequences, preallocated for ``max_length``
    tokens and filled in place; ``length`` tokens are valid."""

    def __init__(self, dims: DecoderDims, batch: int, max_length: int, dtype: Any, generator: Any = None):
        import torch

        shape = (dims.layers, batch, dims.kv_heads, max_length, dims.head_dim)
        self.dtype = dtype
        self.keys = torch.empty(shape, dtype=dtype)
        self.values = torch.empty(shape, dtype=dtype)
        self.max_length = max_length
        self.length = 0
        if generator is not None:       # random contents: a cache that looks filled by a prefill
            self.keys.normal_(0, 1, generator=generator)
            self.values.normal_(0, 1, generator=generator)

    def append(self, layer: int, k: Any, v: Any) -> tuple[Any, Any]:
        """Write ``seq`` new keys and values of ``layer`` after the valid ones; the valid views after."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache of {self.max_length} tokens overflows at {end}")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


def _torch_dtype(weights: WeightType):
    import torch

    return torch.bfloat16 if weights is WeightType.BF16 else torch.float32


def build_decoder(dims: DecoderDims, weights: WeightType, max_positions: int, seed: int = 0) -> Any:
    """The decoder with seeded random weights (normal, std 0.02; norms 1), stored as ``weights``."""
    import torch
    from torch import nn

    dims.check()
    dtype = _torch_dtype(weights)
    from .llmtorch import Decoder

    model = Decoder(dims, dtype, max_positions)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():       # the tied LM head is listed once
            if name.endswith("norm.weight"):           # the RMSNorms keep their ones
                continue
            param.normal_(0.0, 0.02, generator=gen)
    model.eval()
    if weights is WeightType.INT8:
        import warnings

        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # torch.ao's deprecation notices (torchao is its successor)
            model = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    return model


def weight_bytes(model: Any) -> int:
    """Bytes of the weights as stored (int8 packed linears count their int8 values and scales;
    a tied embedding once per copy torch keeps)."""

    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(module, "weight"):
            w = module.weight()
            total += w.numel() * w.element_size() + (module.bias().numel() * 4 if module.bias() is not None else 0)
    return int(total)


def generate(model: Any, prompt: Any, cache: KvCache, tokens: int) -> Any:
    """Greedy decoding: ``tokens`` steps from the cache's state, one token per sequence each; the ids."""
    import torch

    ids = prompt[:, -1:]
    out = []
    for _ in range(tokens):
        ids = torch.argmax(model(ids, cache), dim=-1, keepdim=True)
        out.append(ids)
    return torch.cat(out, dim=1)


# --- measurement --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LlmTiming:
    """One weight type of one model: time to first token and decode rate, best and median of rounds."""

    model: str
    config_path: str
    weights: str             # WeightType value
    variant: str             # the simulator's variant: dense@fp32, dense@bf16, dense@int8
    kv_dtype: str
    batch: int               # sequences generated together
    prompt_tokens: int
    context_tokens: int
    decode_tokens: int
    threads: int
    rounds: int
    ttft_best_s: float       # prefill of the prompt, the first token's logits included
    ttft_median_s: float
    decode_best_s: float     # all ``decode_tokens`` steps together
    decode_median_s: float
    weight_bytes: int        # as torch stores them

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens generated per second over all sequences (a step makes ``batch``), from the fastest round."""
        return self.batch * self.decode_tokens / self.decode_best_s

    @property
    def time_to_first_token_s(self) -> float:
        """The fastest round's prefill."""
        return self.ttft_best_s


def measure_llm(dims: DecoderDims, config_path: str, weights: Sequence[WeightType], prompt: int, context: int,
                tokens: int, batch: int = 1, threads: int = 1, rounds: int = DEFAULT_LLM_ROUNDS, seed: int = 0,
                progress: Callable[[str], None] = lambda _: None) -> list[LlmTiming]:
    """Every weight type in turn (one model in memory at a time), on ``threads`` torch threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = []
        for n, w in enumerate(weights):
            progress(f"bench {dims.name} {w.value}: building ({n + 1}/{len(weights)})")
            model = build_decoder(dims, w, max(prompt, context + tokens), seed)
            label = f"bench {dims.name} {w.value}"

            def round_done(r: int, label: str = label) -> None:
                progress(f"{label}: round {r} of {rounds}")

            out.append(_time_one(model, dims, config_path, w, prompt, context, tokens, batch, threads, rounds, seed,
                                 round_done))
            del model
        return out
    finally:
        torch.set_num_threads(before)


def _time_one(model: Any, dims: DecoderDims, config_path: str, weights: WeightType, prompt: int, context: int,
              tokens: int, batch: int, threads: int, rounds: int, seed: int,
              progress: Callable[[int], None]) -> LlmTiming:
    """One untimed round, then ``rounds`` timed (prefill, decode) rounds."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    dtype = _torch_dtype(weights)
    ids = torch.randint(0, dims.vocab_size, (batch, prompt), generator=gen)
    prefill_cache = KvCache(dims, batch, prompt, dtype)
    decode_cache = KvCache(dims, batch, context + tokens, dtype, generator=gen)
    prefill_s: list[float] = []
    decode_s: list[float] = []
    with torch.inference_mode():
        for r in range(rounds + 1):
            progress(r)
            prefill_cache.length = 0
            t0 = time.perf_counter()
            model(ids, prefill_cache)
            t1 = time.perf_counter()
            decode_cache.length = context
            generate(model, ids, decode_cache, tokens)
            t2 = time.perf_counter()
            if r:                               # round 0 warms up (allocator, library kernels)
                prefill_s.append(t1 - t0)
                decode_s.append(t2 - t1)
    return LlmTiming(dims.name, config_path, weights.value, weights.variant, weights.kv_dtype, batch, prompt, context,
                     tokens, threads, rounds, min(prefill_s), statistics.median(prefill_s), min(decode_s),
                     statistics.median(decode_s), weight_bytes(model))


def llm_timing_from_json(doc: Any, source: str, where: str) -> LlmTiming:
    """One ``llm`` entry of a bench file; a bad entry is a :class:`ConfigError` naming the field."""
    if not isinstance(doc, dict):
        raise ConfigError(source, where, "expected an object")
    try:
        out = LlmTiming(**doc)
    except TypeError as err:
        missing = [k for k in LlmTiming.__dataclass_fields__ if k not in doc]
        field = f"{where}.{missing[0]}" if missing else where
        raise ConfigError(source, field, "missing" if missing else f"malformed entry ({err})") from None
    for name in ("ttft_best_s", "ttft_median_s", "decode_best_s", "decode_median_s"):
        value = getattr(out, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value)):
            raise ConfigError(source, f"{where}.{name}", f"{value!r} is not a positive time")
    for name in ("batch", "prompt_tokens", "context_tokens", "decode_tokens", "threads", "rounds"):
        value = getattr(out, name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ConfigError(source, f"{where}.{name}", f"{value!r} is not a positive integer")
    if out.weights not in {w.value for w in WeightType}:
        raise ConfigError(source, f"{where}.weights", f"{out.weights!r} is not one of "
                          f"{', '.join(w.value for w in WeightType)}")
    return out


def render_llm(timings: Sequence[LlmTiming], load: str = "") -> str:
    """The ``bench --llm`` table: per weight type, time to first token and decode tokens per second."""
    from ..base.units import format_seconds

    if not timings:
        return "no LLM timings"
    t0 = timings[0]
    lines = [f"{t0.model}: measured on this CPU, {t0.threads} thread(s), batch {t0.batch}; "
             f"prefill of {t0.prompt_tokens} tokens, decode of {t0.decode_tokens} tokens "
             f"after a context of {t0.context_tokens}; best of "
             f"{t0.rounds} rounds" + (f" (load average at start {load})" if load else ""), "",
             f"{'weights':8s} {'variant':11s} {'KV':5s} {'weights':>10s} {'TTFT':>9s} {'(median)':>9s} "
             f"{'decode tok/s':>12s} {'(median)':>9s}"]
    for t in timings:
        lines.append(f"{t.weights:8s} {t.variant:11s} {t.kv_dtype:5s} {t.weight_bytes / 2**20:6.1f} MiB "
                     f"{format_seconds(t.ttft_best_s):>9s} {format_seconds(t.ttft_median_s):>9s} "
                     f"{t.decode_tokens_per_s:12.2f} {t.batch * t.decode_tokens / t.decode_median_s:9.2f}")
    return "\n".join(lines)


def parse_weight_types(text: str) -> tuple[WeightType, ...]:
    """``fp32,bf16,int8`` -> the weight types; an unknown one is a ValueError naming it."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        try:
            out.append(WeightType(part))
        except ValueError:
            raise ValueError(f"{part!r} is not one of {', '.join(w.value for w in WeightType)}") from None
    if not out:
        raise ValueError("name at least one weight type")
    return tuple(dict.fromkeys(out))

