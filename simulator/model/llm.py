"""Decoder-only language models from their Hugging Face ``config.json``: the layer graph of one step.

:func:`load_llm_config` reads a config of the Llama, Mistral, Qwen2, Gemma-2 or Phi-3 family
(size-capped read, ``json.loads``; a missing or inconsistent field is one
:class:`~simulator.base.errors.ConfigError` line naming the file and the field).
:func:`llm_workload` builds the layers one step of the model runs, as a :class:`Workload` the
pipeline times like any other:

* ``embed`` (embedding lookup: one table row per token);
* per decoder block ``b{i}``: ``input_norm``; ``q_proj``, ``k_proj``, ``v_proj`` (Phi-3: one fused
  ``qkv_proj``; grouped-query attention: K and V have ``num_key_value_heads x head_dim`` outputs,
  written into the KV cache); ``attn_scores`` (Q K^T over the cached keys), ``softmax``,
  ``attn_values`` (the probabilities times the cached values); ``o_proj``; ``attn_residual``;
  ``post_norm``; ``gate_proj`` and ``up_proj`` (Phi-3: a fused ``gate_up_proj``), ``act`` (the gated
  activation), ``down_proj``; ``mlp_residual`` (Gemma-2 adds its extra norms around attention and
  the MLP);
* ``final_norm`` and ``lm_head`` (the embedding table itself when the embeddings are tied).

Linear layers are plain ``fc`` layers, so every compression variant (``dense@w4``, ``2:4``, ``csr``,
thinning ...) applies to them unchanged; a step's ``fc`` batch is its tokens (``batch x prompt`` in
prefill, ``batch`` in decode). The attention layers carry an :class:`AttentionShape`: in prefill the
prompt's queries attend causally (query ``i`` to ``i + 1`` keys), in decode one query per sequence
attends to the ``context`` cached tokens and itself.

Not modelled (each small next to the weights, or a different kernel): rotary position embeddings,
Qwen2's q/k/v biases, Gemma-2's logit soft-capping and its sliding-window layers (every layer
attends to the whole context), a fused FlashAttention kernel (the scores are written and read back,
as torch's eager attention does).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..base.errors import ConfigError, quote
from ..base.yamlio import read_limited
from .workload import AttentionShape, DType, Layer, LayerKind, Workload

#: the largest config.json read (Hugging Face configs are a few kB; a rope table makes some 20 kB)
MAX_CONFIG_BYTES = 1024 * 1024


class Family(str, enum.Enum):
    """The decoder families whose block structure is modelled."""

    LLAMA = "llama"
    MISTRAL = "mistral"
    QWEN2 = "qwen2"
    GEMMA2 = "gemma2"
    PHI3 = "phi3"


class Phase(str, enum.Enum):
    """Which step of generation: the prompt at once, or one new token."""

    PREFILL = "prefill"
    DECODE = "decode"


_ARCHITECTURES = {
    "LlamaForCausalLM": Family.LLAMA, "MistralForCausalLM": Family.MISTRAL, "Qwen2ForCausalLM": Family.QWEN2,
    "Gemma2ForCausalLM": Family.GEMMA2, "Phi3ForCausalLM": Family.PHI3,
}
#: what transformers' config classes assume when a field is left out
_TIED_BY_DEFAULT = {Family.GEMMA2: True}
_ACT_BY_DEFAULT = {Family.GEMMA2: "gelu_pytorch_tanh"}
ACTIVATIONS = ("silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
_DTYPES = {"float32": DType.FP32, "float16": DType.FP16, "bfloat16": DType.BF16}
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
             "max_position_embeddings")


@dataclass(frozen=True)
class LlmConfig:
    """The architecture numbers of a decoder-only model (the fields of its ``config.json``)."""

    family: Family
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    hidden_act: str
    max_position_embeddings: int
    rms_norm_eps: float
    torch_dtype: DType
    name: str
    path: str = ""

    @property
    def kv_size(self) -> int:
        """Outputs of the K (and of the V) projection: key-value heads x head dim."""
        return self.num_key_value_heads * self.head_dim

    @property
    def q_size(self) -> int:
        """Outputs of the Q projection: query heads x head dim."""
        return self.num_attention_heads * self.head_dim

    @property
    def norms_per_block(self) -> int:
        """RMSNorms per decoder block: 2, Gemma-2's 4 (before and after attention and the MLP)."""
        return 4 if self.family is Family.GEMMA2 else 2

    def block_parameters(self) -> int:
        """Parameters of one decoder block: the projections and the norms' weights."""
        h = self.hidden_size
        attention = h * self.q_size + 2 * h * self.kv_size + self.q_size * h
        return attention + 3 * h * self.intermediate_size + self.norms_per_block * h

    def parameters(self) -> int:
        """Parameters of the whole model (a tied LM head counted once, as the table it is)."""
        table = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else table
        return table + self.num_hidden_layers * self.block_parameters() + self.hidden_size + head

    def kv_cache_bytes(self, tokens: int, sequences: int = 1, kv_dtype: Optional[DType] = None) -> int:
        """Bytes of the KV cache holding ``tokens`` tokens of ``sequences`` sequences: K and V, of every
        layer, ``num_key_value_heads x head_dim`` values per token each."""
        dtype = kv_dtype or self.torch_dtype
        return 2 * self.num_hidden_layers * self.kv_size * tokens * sequences * dtype.size_bytes


def load_llm_config(path: str | Path) -> LlmConfig:
    """Read a Hugging Face ``config.json`` of a decoder-only model; errors are one :class:`ConfigError`
    line naming the file and the field."""
    source = str(path)
    raw = read_limited(path, MAX_CONFIG_BYTES, "model config")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(source, "", f"cannot be read (not UTF-8 text at byte {err.start})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        where = f" at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        raise ConfigError(source, "", f"is not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(source, "", f"expected a JSON object at the top, got {type(data).__name__}")
    return config_from_mapping(data, source)


def looks_like_llm_config(path: str | Path) -> bool:
    """True for a ``.json`` file (a model config is given to ``--workload`` as its ``config.json``)."""
    return Path(path).suffix.lower() == ".json"


def config_from_mapping(data: dict[str, Any], source: str) -> LlmConfig:
    """An :class:`LlmConfig` from a config's mapping (see :func:`load_llm_config`)."""
    family = _family(data, source)
    for name in _REQUIRED:
        if name not in data:
            raise ConfigError(source, name, "missing (a decoder's config.json gives it)")
    numbers = {name: _positive_int(data, name, source) for name in _REQUIRED}
    heads, hidden = numbers["num_attention_heads"], numbers["hidden_size"]
    kv_heads = _positive_int(data, "num_key_value_heads", source) if "num_key_value_heads" in data else heads
    if data.get("head_dim") is not None:
        head_dim = _positive_int(data, "head_dim", source)
    elif hidden % heads:
        raise ConfigError(source, "num_attention_heads", f"{heads} heads do not divide hidden_size {hidden} "
                          "(and no head_dim is given)")
    else:
        head_dim = hidden // heads
    if heads % kv_heads:
        raise ConfigError(source, "num_key_value_heads", f"{kv_heads} key-value heads do not divide the "
                          f"{heads} attention heads")
    return LlmConfig(
        family=family, hidden_size=hidden, num_hidden_layers=numbers["num_hidden_layers"],
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
        intermediate_size=numbers["intermediate_size"], vocab_size=numbers["vocab_size"],
        tie_word_embeddings=_bool(data, "tie_word_embeddings", _TIED_BY_DEFAULT.get(family, False), source),
        hidden_act=_activation(data, family, source), max_position_embeddings=numbers["max_position_embeddings"],
        rms_norm_eps=_eps(data, source), torch_dtype=_dtype(data, source),
        name=_name(data, source), path=source)


def _family(data: dict[str, Any], source: str) -> Family:
    architectures = data.get("architectures")
    if architectures is not None:
        if not (isinstance(architectures, list) and architectures and isinstance(architectures[0], str)):
            raise ConfigError(source, "architectures", f"{quote(architectures)} is not a list of class names")
        name = architectures[0]
        if name not in _ARCHITECTURES:
            raise ConfigError(source, "architectures", f"{quote(name)} is not a modelled decoder (use one of "
                              f"{', '.join(_ARCHITECTURES)})")
        return _ARCHITECTURES[name]
    model_type = data.get("model_type")
    if model_type is None:
        raise ConfigError(source, "architectures", "missing (and no model_type): which decoder family is it?")
    try:
        return Family(model_type)
    except ValueError:
        raise ConfigError(source, "model_type", f"{quote(model_type)} is not a modelled decoder (use one of "
                          f"{', '.join(f.value for f in Family)})") from None


def _positive_int(data: dict[str, Any], name: str, source: str) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(source, name, f"{quote(value)} is not a positive whole number")
    if value > 1 << 40:
        raise ConfigError(source, name, f"{value} is beyond any model (at most {1 << 40})")
    return value


def _bool(data: dict[str, Any], name: str, default: bool, source: str) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(source, name, f"{quote(value)} is not true or false")
    return value


def _activation(data: dict[str, Any], family: Family, source: str) -> str:
    name = "hidden_act" if "hidden_act" in data or "hidden_activation" not in data else "hidden_activation"
    value = data.get(name, _ACT_BY_DEFAULT.get(family, "silu"))
    if value not in ACTIVATIONS:
        raise ConfigError(source, name, f"{quote(value)} is not a modelled activation (use one of "
                          f"{', '.join(ACTIVATIONS)})")
    return value


def _eps(data: dict[str, Any], source: str) -> float:
    value = data.get("rms_norm_eps", 1e-6)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(source, "rms_norm_eps", f"{quote(value)} is not a small positive number")
    return float(value)


def _dtype(data: dict[str, Any], source: str) -> DType:
    value = data.get("torch_dtype", data.get("dtype", "float32"))   # transformers loads float32 by default
    if value not in _DTYPES:
        raise ConfigError(source, "torch_dtype", f"{quote(value)} is not one of {', '.join(_DTYPES)}")
    return _DTYPES[value]


def _name(data: dict[str, Any], source: str) -> str:
    name = data.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip()[:120]
    stem = Path(source).stem
    return stem.replace("__", "/") if stem != "config" else Path(source).parent.name or stem


# --- the layer graph ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One step of generation: ``sequences`` sequences, each adding ``queries`` tokens to a KV cache
    that holds ``cached`` tokens before the step."""

    phase: Phase
    sequences: int
    queries: int
    cached: int

    @property
    def tokens(self) -> int:
        """Tokens the step's linear layers multiply (their batch)."""
        return self.sequences * self.queries


def step_of(config: LlmConfig, phase: Phase | str, tokens: int, context: int, batch: int) -> Step:
    """The step :func:`llm_workload` builds, checked against the model: prefill of ``tokens`` prompt
    tokens (``context`` is ignored), or one decode token after ``context`` cached ones."""
    phase = Phase(phase)
    for option, value in (("batch", batch), ("prompt" if phase is Phase.PREFILL else "tokens", tokens)):
        if value < 1:
            raise ConfigError(config.path or config.name, option, f"{value} is not a positive number")
    if phase is Phase.PREFILL:
        step = Step(phase, batch, tokens, 0)
    else:
        if context < 0:
            raise ConfigError(config.path or config.name, "context", f"{context} is negative")
        step = Step(phase, batch, 1, context)
    if step.cached + step.queries > config.max_position_embeddings:
        raise ConfigError(config.path or config.name, "max_position_embeddings",
                          f"a context of {step.cached + step.queries} tokens is beyond the model's maximum of "
                          f"{config.max_position_embeddings}")
    return step


def llm_workload(config: LlmConfig, phase: Phase | str, tokens: int, context: int, batch: int = 1,
                 kv_dtype: Optional[DType] = None, blocks: Optional[int] = None) -> Workload:
    """The layers of one step (see the module docstring): ``phase`` prefill runs the ``tokens`` of
    the prompt, decode one token after ``context`` cached ones; ``batch`` sequences together, the KV
    cache in ``kv_dtype`` (the model's type by default). ``blocks`` builds only that many decoder
    blocks (the simulation times one block and multiplies, see :mod:`simulator.studies.llm`)."""
    step = step_of(config, phase, tokens, context, batch)
    dtype = config.torch_dtype
    kv_dtype = kv_dtype or dtype
    first = step.cached + 1
    last = step.cached + step.queries
    attention = AttentionShape(step.sequences, step.queries, first if step.queries > 1 else last, last,
                               config.num_attention_heads, config.num_key_value_heads, config.head_dim, kv_dtype)
    builder = _Builder(dtype)
    h = config.hidden_size
    builder.add("embed", LayerKind.EMBEDDING, (1,), (h,), [], table_rows=config.vocab_size)
    for b in range(config.num_hidden_layers if blocks is None else blocks):
        _block(builder, config, f"b{b}", attention)
    builder.add("final_norm", LayerKind.NORM, (h,), (h,), [builder.last])
    builder.add("lm_head", LayerKind.FC, (h,), (config.vocab_size,), ["final_norm"])
    name = f"{config.name} {step.phase.value}"
    return Workload(name, config.path, dtype, (1,), builder.inputs, tuple(builder.layers))


class _Builder:
    """Collects layers and the layers each reads, in execution order."""

    def __init__(self, dtype: DType) -> None:
        self.dtype = dtype
        self.layers: list[Layer] = []
        self.inputs: dict[str, tuple[str, ...]] = {}

    @property
    def last(self) -> str:
        return self.layers[-1].name

    def add(self, name: str, kind: LayerKind, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
            inputs: list[str], **fields: Any) -> str:
        layer = Layer(name=name, kind=kind, module=name, in_shape=in_shape, out_shape=out_shape, dtype=self.dtype,
                      relu=False, **fields)
        self.layers.append(layer)
        self.inputs[name] = tuple(inputs)
        return name


def _block(b: _Builder, config: LlmConfig, p: str, attention: AttentionShape) -> None:
    """One decoder block, its layers named ``{p}.…``."""
    h, q, kv, inter = config.hidden_size, config.q_size, config.kv_size, config.intermediate_size
    residual = b.last
    norm = b.add(f"{p}.input_norm", LayerKind.NORM, (h,), (h,), [residual])
    if config.family is Family.PHI3:
        q_out = b.add(f"{p}.qkv_proj", LayerKind.FC, (h,), (q + 2 * kv,), [norm])
    else:
        q_out = b.add(f"{p}.q_proj", LayerKind.FC, (h,), (q,), [norm])
        b.add(f"{p}.k_proj", LayerKind.FC, (h,), (kv,), [norm])     # written into the KV cache
        b.add(f"{p}.v_proj", LayerKind.FC, (h,), (kv,), [norm])
    scores = attention.heads * attention.keys_last
    b.add(f"{p}.attn_scores", LayerKind.ATTN_SCORES, (q,), (scores,), [q_out], attention=attention)
    b.add(f"{p}.softmax", LayerKind.SOFTMAX, (scores,), (scores,), [b.last], attention=attention)
    b.add(f"{p}.attn_values", LayerKind.ATTN_VALUES, (scores,), (q,), [b.last], attention=attention)
    out = b.add(f"{p}.o_proj", LayerKind.FC, (q,), (h,), [b.last])
    if config.family is Family.GEMMA2:
        out = b.add(f"{p}.post_attn_norm", LayerKind.NORM, (h,), (h,), [out])
    attn_sum = b.add(f"{p}.attn_residual", LayerKind.ADD, (h,), (h,), [residual, out])
    norm = b.add(f"{p}.post_norm", LayerKind.NORM, (h,), (h,), [attn_sum])
    if config.family is Family.PHI3:
        fused = b.add(f"{p}.gate_up_proj", LayerKind.FC, (h,), (2 * inter,), [norm])
        gate, up = fused, fused
        act_inputs = [fused]
    else:
        gate = b.add(f"{p}.gate_proj", LayerKind.FC, (h,), (inter,), [norm])
        up = b.add(f"{p}.up_proj", LayerKind.FC, (h,), (inter,), [norm])
        act_inputs = [gate, up]
    act = b.add(f"{p}.act", LayerKind.GLU, (inter,), (inter,), act_inputs)
    down = b.add(f"{p}.down_proj", LayerKind.FC, (inter,), (h,), [act])
    if config.family is Family.GEMMA2:
        down = b.add(f"{p}.post_mlp_norm", LayerKind.NORM, (h,), (h,), [down])
    b.add(f"{p}.mlp_residual", LayerKind.ADD, (h,), (h,), [attn_sum, down])


#: operator of each layer, for the per-operator breakdown (by the layer name's last part)
OPERATORS = {
    "embed": "embedding", "input_norm": "norms", "post_norm": "norms", "post_attn_norm": "norms",
    "post_mlp_norm": "norms", "final_norm": "norms", "q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv",
    "qkv_proj": "qkv", "attn_scores": "attention scores", "softmax": "softmax", "attn_values": "attention output",
    "o_proj": "attention output projection", "attn_residual": "residual adds", "mlp_residual": "residual adds",
    "gate_proj": "mlp", "up_proj": "mlp", "gate_up_proj": "mlp", "act": "mlp", "down_proj": "mlp",
    "lm_head": "lm head",
}


def operator_of(layer_name: str) -> str:
    """The operator a layer of :func:`llm_workload` belongs to (``b3.q_proj`` -> ``qkv``)."""
    return OPERATORS.get(layer_name.rsplit(".", 1)[-1], "other")
