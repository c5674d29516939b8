"""A decoder LLM on a profile: time to first token (prefill) and decode tokens per second.

:func:`simulate_llm` times one step of :func:`simulator.model.llm.llm_workload` per variant with the
ordinary pipeline (compression, traffic, caches, engine), so every compression variant applies to
the linear layers unchanged. Two facts keep it fast:

* **One decoder block stands for all of them.** The blocks of a model have identical shapes, and a
  block's weights (tens to hundreds of MB) are many times any cache of an edge device (a few MB), so
  what a block leaves in the caches is the tail of its own down projection: the next block finds
  the same state the simulated one found after the embedding. The step is then timed as
  ``embedding + layers x block + final norm + LM head``, the block simulated once (its first
  layers see what the embedding left; the error is at most the cache's worth of weights, about
  one part in ``block bytes / cache bytes``). The head (final norm and LM head) is simulated once,
  in its own run: its shape does not depend on the context.
* **A decode step is the same every token except the KV length.** Over ``tokens`` generated tokens
  the cache grows from ``context`` to ``context + tokens - 1``. The whole block is simulated at
  ``context``; the layers whose work depends on the KV length (the attention scores, softmax and
  output, after the V projection that leaves the caches as a block would) are simulated again at
  ``context_points`` lengths spread over the span (every length when there are fewer); the
  per-token time moves with their difference, interpolated linearly between the lengths (the
  attention's work is linear in the keys read), and is summed over the tokens.

Memory: the weights (their encoded bytes in the variant) and the KV cache of ``context + tokens``
tokens are compared with the device's DRAM; a model that does not fit is reported as such, and on a
discrete device (a profile with a host link) its weights stream over the link as
:func:`simulator.engine.offload.inference_memory` models for any network.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..base.errors import OptionError
from ..base.texttable import format_table
from ..base.units import format_bytes, format_seconds
from ..base.workers import results
from ..compress.compression import StorageFormat
from ..compress.variants import Structure, Variant, parse_variants
from ..engine.offload import inference_memory
from ..engine.results import LayerResult, VariantResult
from ..hardware.profile import HardwareProfile
from ..model.llm import LlmConfig, Phase, llm_workload, operator_of, step_of
from ..model.workload import DType, Layer, Workload
from ..pipeline import RunOptions, simulate_variant

#: decode: the KV lengths at which the block is simulated, spread over the tokens generated
DEFAULT_CONTEXT_POINTS = 3
#: the operators of the breakdown, in the order a step runs them
OPERATOR_ORDER = ("embedding", "norms", "qkv", "attention scores", "softmax", "attention output",
                  "attention output projection", "residual adds", "mlp", "lm head")


@dataclass(frozen=True)
class LlmOptions:
    """One step's shape and the variants to time (see :func:`simulate_llm`)."""

    phase: Phase = Phase.DECODE
    prompt: int = 128                # prefill: tokens of the prompt
    context: int = 512               # decode: tokens already in the KV cache
    tokens: int = 1                  # decode: tokens generated (the cache grows by one each)
    batch: int = 1                   # sequences running together
    formats: Sequence[Variant | StorageFormat | str] = ("dense",)
    kv_dtype: Optional[DType] = None   # the KV cache's type (None: the model's)
    density: Optional[float] = None    # prune every linear layer to this density (csr, ...)
    seed: int = 0
    threads: Optional[int] = None
    context_points: int = DEFAULT_CONTEXT_POINTS


@dataclass(frozen=True)
class OperatorTime:
    """One operator of the breakdown over the whole step (every block)."""

    operator: str
    time_s: float
    flops: float
    dram_read_bytes: int
    dram_write_bytes: int
    bound: str                       # the bound of the operator's longest layer


@dataclass(frozen=True)
class LlmVariant:
    """One variant of an LLM step."""

    name: str
    format: str
    step_s: float                    # prefill: the prompt's step; decode: the mean step over the tokens
    time_to_first_token_s: Optional[float]
    decode_tokens_per_s: Optional[float]
    per_token_s: Optional[float]
    operators: list[OperatorTime]
    layers: list[LayerResult]        # the embedding, one block (at the first KV length) and the head
    weight_dram_bytes: int           # per step, read by the layers holding weights (and the embedding)
    kv_dram_bytes: int               # per step, read by the attention layers (the KV cache, Q, scores)
    weight_bytes: int                # the model's weights in this variant (encoded: values, indices, scales)
    kv_cache_bytes: int              # the KV cache at the end of the step(s)
    bandwidth_bound_s: float         # (weights + KV cache) / sustained DRAM bandwidth: no step is faster
    fits: Optional[bool]             # weights + KV cache within the device's DRAM (None: no DRAM modelled)
    streamed: bool = False           # weights streamed over the host link (a discrete device)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["layers"] = [l.to_json() for l in self.layers]
        return out


@dataclass(frozen=True)
class LlmResult:
    """Every variant of one step of a model on a profile."""

    profile: str
    model: str
    model_path: str
    phase: str
    prompt: int
    context: int
    tokens: int
    batch: int
    kv_dtype: str
    parameters: int
    context_lengths: list[int]       # the KV lengths the block was simulated at
    variants: list[LlmVariant]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["variants"] = [v.to_json() for v in self.variants]
        return out


def context_lengths(options: LlmOptions) -> list[int]:
    """The KV lengths (tokens cached before the step) the block is simulated at."""
    if options.phase is Phase.PREFILL:
        return [0]
    last = options.context + options.tokens - 1
    points = max(1, min(options.context_points, options.tokens))
    if points == 1:
        return [options.context]
    return sorted({int(round(c)) for c in np.linspace(options.context, last, points)})


def _variants(options: LlmOptions) -> tuple[Variant | StorageFormat, ...]:
    """The variants to run, as the pipeline takes them."""
    out: list[Variant | StorageFormat] = []
    for fmt in options.formats:
        if isinstance(fmt, str):
            out.extend(parse_variants(fmt))
        else:
            out.append(fmt)
    return tuple(_runnable(v) for v in out)


def _runnable(variant: Variant | StorageFormat) -> Variant | StorageFormat:
    """A variant in the form this pipeline runs."""
    if isinstance(variant, StorageFormat):
        return variant
    if variant.structure is Structure.AUTO:
        raise OptionError("format", f"{variant.spec}: auto is not offered for a model config (give the variants "
                          "to compare)")
    return variant


def _spec(variant: Variant | StorageFormat) -> str:
    return variant.value if isinstance(variant, StorageFormat) else variant.spec


def _run_options(options: LlmOptions, variant: Variant | StorageFormat, tokens: int) -> RunOptions:
    return RunOptions(batch=tokens, formats=(variant,), density=options.density, seed=options.seed,
                      threads=options.threads, host_copies=False)


def _part(workload: Workload, keep: Callable[[Layer], bool]) -> Workload:
    """The layers of ``workload`` that ``keep`` selects, a layer whose input is left out reading a
    fresh input of its shape."""
    layers = tuple(l for l in workload.layers if keep(l))
    names = {l.name for l in layers}
    inputs = {l.name: tuple(p for p in workload.inputs[l.name] if p in names) for l in layers}
    return replace(workload, layers=layers, inputs=inputs)


def _is_head(layer: Layer) -> bool:
    return layer.name in ("final_norm", "lm_head")


def _in_block(layer: Layer) -> bool:
    return not _is_head(layer)


#: the layers whose time depends on the KV length, and the one before them (the cache state they find)
_ATTENTION_PART = ("b0.v_proj", "b0.qkv_proj", "b0.attn_scores", "b0.softmax", "b0.attn_values")


def _in_attention(layer: Layer) -> bool:
    return layer.name in _ATTENTION_PART


def _attention_s(run: VariantResult) -> float:
    """Time of the layers that depend on the KV length in a run of :func:`_in_attention`."""
    return sum(l.time_s for l in run.layers if l.name not in ("b0.v_proj", "b0.qkv_proj"))


def simulate_llm(profile: HardwareProfile, config: LlmConfig, options: LlmOptions = LlmOptions(),
                 progress: Callable[[str], None] = lambda _: None) -> LlmResult:
    """Time one prefill (time to first token) or ``options.tokens`` decode steps of ``config`` on
    ``profile``, for every variant of ``options.formats`` (see the module docstring)."""
    tokens = options.prompt if options.phase is Phase.PREFILL else options.tokens
    step = step_of(config, options.phase, tokens, options.context + options.tokens - 1, options.batch)
    lengths = context_lengths(options)
    variants = [_simulate_variant(profile, config, options, v, lengths, progress) for v in _variants(options)]
    kv = options.kv_dtype or config.torch_dtype
    return LlmResult(profile=profile.name, model=config.name, model_path=config.path, phase=options.phase.value,
                     prompt=options.prompt if options.phase is Phase.PREFILL else 0,
                     context=options.context if options.phase is Phase.DECODE else 0,
                     tokens=options.tokens if options.phase is Phase.DECODE else 0, batch=step.sequences,
                     kv_dtype=kv.value, parameters=config.parameters(), context_lengths=lengths,
                     variants=variants, notes=[n for v in variants for n in v.notes])


def _step_workload(config: LlmConfig, options: LlmOptions, cached: int) -> Workload:
    if options.phase is Phase.PREFILL:
        return llm_workload(config, Phase.PREFILL, options.prompt, 0, options.batch, options.kv_dtype, blocks=1)
    return llm_workload(config, Phase.DECODE, 1, cached, options.batch, options.kv_dtype, blocks=1)


def _simulate_variant(profile: HardwareProfile, config: LlmConfig, options: LlmOptions,
                      variant: Variant | StorageFormat, lengths: list[int],
                      progress: Callable[[str], None]) -> LlmVariant:
    spec = _spec(variant)
    tokens = options.batch * (options.prompt if options.phase is Phase.PREFILL else 1)
    run_options = _run_options(options, variant, tokens)
    first = _step_workload(config, options, lengths[0])
    # the next token comes from each sequence's last position: prefill's head runs on those alone
    head_options = _run_options(options, variant, options.batch)
    runs = [(f"{spec}: head (final norm, LM head)", _part(first, _is_head), head_options),
            (f"{spec}: one decoder block at {lengths[0]} cached tokens", _part(first, _in_block), run_options)]
    if len(lengths) > 1:   # the attention alone at every KV length, after the V projection as in a block
        runs += [(f"{spec}: attention at {cached} cached tokens",
                  _part(_step_workload(config, options, cached), _in_attention), run_options) for cached in lengths]

    def one(run: tuple[str, Workload, RunOptions]) -> VariantResult:
        progress(run[0])
        return simulate_variant(profile, run[1], variant, run[2])

    # independent runs, each in its own thread: their heavy stages (traces, caches) release the GIL
    with ThreadPoolExecutor(max_workers=min(len(runs), os.cpu_count() or 1)) as pool:
        head, block, *attention = results([pool.submit(one, run) for run in runs])
    dispatch_s = config.num_hidden_layers * _dispatch_s(profile, config, variant)
    step_s = _step_s(block, head, config.num_hidden_layers) + dispatch_s
    attention_s = [_attention_s(a) for a in attention] or [0.0]
    step_times = [step_s + config.num_hidden_layers * (a - attention_s[0]) for a in attention_s]
    if options.phase is Phase.PREFILL:
        mean_step = step_times[0]
    else:
        generated = np.arange(options.context, options.context + options.tokens, dtype=float)
        mean_step = float(np.interp(generated, lengths, step_times).mean())
    return _variant_result(profile, config, options, spec, block, head, mean_step, first, dispatch_s)


def _dispatch_s(profile: HardwareProfile, config: LlmConfig, variant: Variant | StorageFormat) -> float:
    """Host time to dispatch one decoder block's operators (``compute.block_dispatch``), by the
    type the variant stores its weights in (the model's own for a variant without one)."""
    precision = variant.precision if isinstance(variant, Variant) else None
    dtype = precision.value if precision is not None else config.torch_dtype.value
    return profile.compute.block_dispatch.seconds(dtype, fallback="fp32")


def _step_s(block: VariantResult, head: VariantResult, layers_per_block: int) -> float:
    """A whole step: the embedding once, the block ``layers_per_block`` times, the head once."""
    embed = sum(l.time_s for l in block.layers if l.kind == "embedding")
    body = sum(l.time_s for l in block.layers if l.kind != "embedding")
    return embed + layers_per_block * body + sum(l.time_s for l in head.layers)


def _repeats(layer: LayerResult, config: LlmConfig) -> int:
    """How often a simulated layer runs in a step: a block's layers once per decoder block."""
    return config.num_hidden_layers if layer.name.startswith("b0.") else 1


def _operators(layers: list[LayerResult], config: LlmConfig, dispatch_s: float = 0.0) -> list[OperatorTime]:
    """The per-operator breakdown of a whole step, the host's dispatch of the blocks last (where the
    profile has one)."""
    groups: dict[str, list[LayerResult]] = {}
    for layer in layers:
        groups.setdefault(operator_of(layer.name), []).append(layer)
    out = []
    for name in sorted(groups, key=lambda n: OPERATOR_ORDER.index(n) if n in OPERATOR_ORDER else len(OPERATOR_ORDER)):
        members = groups[name]
        longest = max(members, key=lambda l: l.time_s * _repeats(l, config))
        out.append(OperatorTime(name, sum(l.time_s * _repeats(l, config) for l in members),
                                sum(l.flops * _repeats(l, config) for l in members),
                                sum(l.dram_read_bytes * _repeats(l, config) for l in members),
                                sum(l.dram_write_bytes * _repeats(l, config) for l in members), longest.bound))
    if dispatch_s > 0:
        out.append(OperatorTime("dispatch", dispatch_s, 0.0, 0, 0, "host"))
    return out


def _variant_result(profile: HardwareProfile, config: LlmConfig, options: LlmOptions, spec: str,
                    block: VariantResult, head: VariantResult, mean_step: float, first: Workload,
                    dispatch_s: float = 0.0) -> LlmVariant:
    layers = list(block.layers) + list(head.layers)
    kinds = {l.name: l.kind for l in first.layers}
    weight_dram = sum(l.dram_read_bytes * _repeats(l, config) for l in layers
                      if l.weight_bytes > 0 or l.kind == "embedding")
    kv_dram = sum(l.dram_read_bytes * _repeats(l, config) for l in layers if kinds[l.name].reads_kv_cache)
    weight_bytes = _model_weight_bytes(config, layers)
    cached_after = options.context + options.tokens if options.phase is Phase.DECODE else options.prompt
    kv_bytes = config.kv_cache_bytes(cached_after, options.batch, options.kv_dtype)
    kv_read = config.kv_cache_bytes(cached_after - 1 if options.phase is Phase.DECODE else 0, options.batch,
                                    options.kv_dtype)
    bandwidth = profile.dram.sustained_bandwidth_bytes_per_s if profile.dram is not None else math.inf
    bound_s = (weight_bytes + kv_read) / bandwidth
    fits, streamed, notes = _capacity(profile, config, options, spec, weight_bytes, kv_bytes)
    step_s = mean_step
    if streamed:
        step_s = _streamed_step_s(profile, config, options, layers, kv_bytes)
    decode = options.phase is Phase.DECODE
    return LlmVariant(
        name=spec, format=spec, step_s=step_s,
        time_to_first_token_s=None if decode else step_s,
        decode_tokens_per_s=options.batch / step_s if decode and step_s > 0 else None,
        per_token_s=step_s if decode else None, operators=_operators(layers, config, dispatch_s), layers=layers,
        weight_dram_bytes=int(weight_dram), kv_dram_bytes=int(kv_dram), weight_bytes=weight_bytes,
        kv_cache_bytes=kv_bytes, bandwidth_bound_s=bound_s, fits=fits, streamed=streamed, notes=notes)


def _model_weight_bytes(config: LlmConfig, layers: list[LayerResult]) -> int:
    """The model's weights in the variant: every block's encoded projections, the LM head's, the
    embedding table (unless tied: then it is the LM head's weights) and the norms' vectors."""
    by_name = {l.name: l for l in layers}
    blocks = config.num_hidden_layers * sum(l.weight_bytes for l in layers if l.name.startswith("b0."))
    head = by_name["lm_head"].weight_bytes if "lm_head" in by_name else 0
    table = 0 if config.tie_word_embeddings else config.vocab_size * config.hidden_size * config.torch_dtype.size_bytes
    norms = (config.num_hidden_layers * config.norms_per_block + 1) * config.hidden_size * config.torch_dtype.size_bytes
    return blocks + head + table + norms


def _capacity(profile: HardwareProfile, config: LlmConfig, options: LlmOptions, spec: str, weight_bytes: int,
              kv_bytes: int) -> tuple[Optional[bool], bool, list[str]]:
    """(fits, streamed, notes): the weights and the KV cache against the device's DRAM."""
    if profile.dram is None:
        return None, False, []
    capacity = profile.dram.capacity_bytes
    need = weight_bytes + kv_bytes
    if need <= capacity:
        return True, False, []
    what = (f"{spec}: {config.name}'s weights ({format_bytes(weight_bytes)}) and KV cache "
            f"({format_bytes(kv_bytes)}) do not fit {profile.name}'s {format_bytes(capacity)} of DRAM")
    if profile.link is None or kv_bytes >= capacity:
        return False, False, [f"{what}: does not fit (the times are for a device with enough memory)"]
    return False, True, [f"{what}: the weights stream over the host link ({profile.link.name})"]


def _streamed_step_s(profile: HardwareProfile, config: LlmConfig, options: LlmOptions, layers: list[LayerResult],
                     kv_bytes: int) -> float:
    """A step whose weights stream over the host link: the whole model's layers (the simulated block's
    times for every block) re-timed by the weight-streaming model, in the memory the KV cache leaves."""
    tokens = options.prompt if options.phase is Phase.PREFILL else 1
    full = llm_workload(config, options.phase, tokens, options.context, options.batch, options.kv_dtype)
    by_name = {l.name: l for l in layers}
    rows, start = [], 0.0
    for layer in full.layers:
        simulated = by_name[layer.name if not layer.name.startswith("b") or "." not in layer.name
                            else "b0." + layer.name.split(".", 1)[1]]
        rows.append(replace(simulated, name=layer.name, start_s=start))
        start += simulated.time_s
    variant = VariantResult("llm", "llm", start, rows)
    if profile.dram is None:      # _capacity streams the weights only past a DRAM's capacity
        raise ValueError(f"{profile.name} has no DRAM to stream the weights into")
    dram = profile.dram.model_copy(update={"capacity_bytes": profile.dram.capacity_bytes - kv_bytes})
    less = profile.model_copy(update={"memory": profile.memory.model_copy(update={"dram": dram})})
    return inference_memory(less, full, variant, options.batch * tokens, host_copies=False).total_s


# --- the report -------------------------------------------------------------------------------------

def _rate(variant: LlmVariant) -> str:
    if variant.decode_tokens_per_s is not None:
        return f"{variant.decode_tokens_per_s:.2f} tokens/s ({format_seconds(variant.step_s)} per token)"
    return f"time to first token {format_seconds(variant.step_s)}"


def variant_table(variant: LlmVariant) -> str:
    """Per operator over the whole step: time, share, FLOPs, DRAM bytes and what bounds it."""
    total = sum(o.time_s for o in variant.operators)
    rows = [[o.operator, format_seconds(o.time_s), f"{100 * o.time_s / total:.1f}%" if total else "-",
             f"{o.flops:.3g}", format_bytes(o.dram_read_bytes + o.dram_write_bytes), o.bound]
            for o in variant.operators]
    footer = [["step", format_seconds(total), "100%", f"{sum(o.flops for o in variant.operators):.3g}",
               format_bytes(sum(o.dram_read_bytes + o.dram_write_bytes for o in variant.operators)), ""]]
    return format_table(["operator", "time", "share", "FLOPs", "DRAM", "bound"], rows, {1, 2, 3, 4}, footer=footer)


def _title(result: LlmResult) -> str:
    if result.phase == Phase.PREFILL.value:
        shape = f"prefill of a {result.prompt}-token prompt"
    else:
        shape = f"decode of {result.tokens} token{'s' if result.tokens != 1 else ''} after {result.context} cached"
    return (f"{result.model} ({result.parameters / 1e9:.2f} B parameters) on {result.profile}: {shape}, "
            f"batch {result.batch}, KV cache {result.kv_dtype}")


def render_llm(result: LlmResult) -> str:
    """The printed report: per variant its operator table and its rate, then the comparison."""
    parts = [_title(result), ""]
    for variant in result.variants:
        parts += [f"{variant.name}: {_rate(variant)}", variant_table(variant), ""]
    rows = [[v.name, format_seconds(v.step_s),
             f"{v.decode_tokens_per_s:.2f}" if v.decode_tokens_per_s is not None else "-",
             format_bytes(v.weight_bytes), format_bytes(v.kv_cache_bytes), format_bytes(v.weight_dram_bytes),
             format_bytes(v.kv_dram_bytes), format_seconds(v.bandwidth_bound_s),
             "-" if v.fits is None else ("yes" if v.fits else ("streamed" if v.streamed else "no"))]
            for v in result.variants]
    parts.append(format_table(["variant", "step" if result.phase == "decode" else "TTFT", "tokens/s", "weights",
                               "KV cache", "DRAM weights", "DRAM KV", "bytes/bandwidth", "fits"], rows,
                              {1, 2, 3, 4, 5, 6, 7}))
    lines = "\n".join(parts)
    if result.phase == Phase.DECODE.value and len(result.context_lengths) > 1:
        lines += (f"\nattention simulated at {', '.join(map(str, result.context_lengths))} cached tokens; "
                  "the per-token time interpolated between them")
    return "\n".join([lines] + result.notes)
