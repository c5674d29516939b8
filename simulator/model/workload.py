"""Workloads: a network's layers with shapes, data type and per-layer densities.

A workload file (``workloads/*.yaml``) lists layers; each reads the previous layer's output
unless it names its ``inputs`` (``[]`` makes it read a fresh network input of its own
``input_shape``, as in a benchmark of independent layers; an ``add`` layer names the two
outputs it sums, the residual join of a ResNet; a ``concat`` names two or more outputs of the
same plane and joins their channels, the join of an inception module). Loading resolves every shape,
checks that they chain, and records what each layer reads: a DAG of :class:`Layer` objects
with FLOPs and byte sizes (``Workload.graph`` gives it as a networkx graph, built on first use).
:func:`to_torch_module` builds the same network in torch with the module names the file gives
(``features.0`` ...), so published pruning schedules and checkpoints line up with it.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional, Sequence

from pydantic import Field

from ..base.errors import ConfigError, quote
from ..base.schema import Fraction, PositiveInt, Strict, validate
from ..base.yamlio import read_yaml_mapping

if TYPE_CHECKING:
    import networkx as nx

SCHEMA_VERSION = 1


class LayerKind(str, enum.Enum):
    """What a layer computes."""

    CONV = "conv"
    FC = "fc"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    ADD = "add"          # element-wise sum of two earlier outputs (a residual join)
    CONCAT = "concat"    # channel-wise concatenation of two or more earlier outputs (an inception join)
    # decoder (LLM) layers, built from a model config by :mod:`simulator.model.llm`, never from a workload file
    EMBEDDING = "embedding"      # token ids -> rows of the embedding table
    NORM = "norm"                # RMSNorm: a pass for the sum of squares, a pass scaling by the norm weights
    ATTN_SCORES = "attn_scores"  # Q K^T over the KV cache's keys
    SOFTMAX = "softmax"          # row-wise softmax of the scores
    ATTN_VALUES = "attn_values"  # the probabilities times V over the KV cache's values
    GLU = "glu"                  # gated activation act(gate) * up: reads two earlier outputs

    @property
    def is_decoder(self) -> bool:
        """True for the kinds only a model config builds (embedding, norms, attention, gated activation)."""
        return self in _DECODER_KINDS

    @property
    def reads_kv_cache(self) -> bool:
        """True for the attention kinds that stream the KV cache (keys for the scores, values for the output)."""
        return self in (LayerKind.ATTN_SCORES, LayerKind.ATTN_VALUES)

    @property
    def has_weights(self) -> bool:
        """Convolutions and fully-connected layers carry weights; pooling and adds do not."""
        return self in (LayerKind.CONV, LayerKind.FC)

    @property
    def inputs_read(self) -> int:
        """How many earlier outputs the layer reads at least (2 for an add or a concat, else 1)."""
        return 2 if self in (LayerKind.ADD, LayerKind.CONCAT, LayerKind.GLU) else 1


_DECODER_KINDS = frozenset((LayerKind.EMBEDDING, LayerKind.NORM, LayerKind.ATTN_SCORES, LayerKind.SOFTMAX,
                            LayerKind.ATTN_VALUES, LayerKind.GLU))


class DType(str, enum.Enum):
    """Element type of weights and activations."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT16 = "int16"      # fixed point, as FPGA designs compute (Qiu et al., FPGA 2016)
    INT8 = "int8"

    @property
    def size_bytes(self) -> int:
        """Bytes per element."""
        return {"fp32": 4, "fp16": 2, "bf16": 2, "int16": 2, "int8": 1}[self.value]


_KIND_FIELDS = {
    LayerKind.CONV: {"in_channels", "out_channels", "kernel", "stride", "padding", "groups"},
    LayerKind.FC: {"in_features", "out_features"},
    LayerKind.MAXPOOL: {"kernel", "stride", "padding"},
    LayerKind.AVGPOOL: {"kernel", "stride", "padding"},
    LayerKind.ADD: set(),
    LayerKind.CONCAT: set(),
    **{kind: set() for kind in _DECODER_KINDS},
}
_REQUIRED = {
    LayerKind.CONV: ("in_channels", "out_channels", "kernel"),
    LayerKind.FC: ("in_features", "out_features"),
    LayerKind.MAXPOOL: ("kernel",),
    LayerKind.AVGPOOL: ("kernel",),
    LayerKind.ADD: (),
    LayerKind.CONCAT: (),
    **{kind: () for kind in _DECODER_KINDS},
}


class LayerSpec(Strict):
    """One layer as written in a workload file."""

    name: str
    kind: LayerKind
    module: Optional[str] = None
    inputs: Optional[list[str]] = None
    input_shape: Optional[list[PositiveInt]] = None
    in_channels: Optional[PositiveInt] = None
    out_channels: Optional[PositiveInt] = None
    kernel: Optional[PositiveInt] = None
    stride: Optional[PositiveInt] = None
    padding: Optional[int] = None
    groups: Optional[PositiveInt] = None
    in_features: Optional[PositiveInt] = None
    out_features: Optional[PositiveInt] = None
    density: Fraction = 1.0
    activation_density: Fraction = 1.0
    relu: bool = True
    note: str = ""


class WorkloadSpec(Strict):
    """A whole workload file."""

    schema_version: Literal[1]
    name: str
    description: str = ""
    source: str
    dtype: DType = DType.FP32
    input_shape: list[PositiveInt]
    layers: list[LayerSpec] = Field(min_length=1)


@dataclass(frozen=True)
class AttentionShape:
    """The attention of one decoder block at one step: who attends to how many cached keys.

    Query ``i`` (0-based) of a sequence attends to ``keys_first + i * (keys_last - keys_first) /
    (queries - 1)`` keys: a causal prefill of N tokens has ``keys_first = 1``, ``keys_last = N``;
    a decode step has one query over ``keys_first = keys_last = context + 1`` keys (the cache and
    the token being generated). Grouped-query attention: ``heads // kv_heads`` query heads share
    each key / value head.
    """

    sequences: int       # sequences running together (the batch)
    queries: int         # new tokens per sequence at this step
    keys_first: int      # keys the first query attends to
    keys_last: int       # keys the last query attends to (the cache length read)
    heads: int
    kv_heads: int
    head_dim: int
    kv_dtype: DType

    @property
    def group(self) -> int:
        """Query heads per key / value head."""
        return self.heads // self.kv_heads

    @property
    def keys_summed(self) -> int:
        """Keys attended to, summed over one sequence's queries (an arithmetic series)."""
        return (self.keys_first + self.keys_last) * self.queries // 2

    @property
    def cache_bytes(self) -> int:
        """Bytes of the keys (or of the values) this block's attention reads, over every sequence."""
        return self.sequences * self.kv_heads * self.head_dim * self.keys_last * self.kv_dtype.size_bytes


@dataclass(frozen=True)
class Layer:
    """A resolved layer: shapes per sample (batch excluded), sizes and work."""

    name: str
    kind: LayerKind
    module: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    dtype: DType
    density: float = 1.0
    activation_density: float = 1.0
    kernel_hw: int = 1            # the k x k window a conv or pool slides (the workload file's ``kernel``)
    stride: int = 1
    padding: int = 0
    groups: int = 1
    relu: bool = True
    parts: tuple[int, ...] = ()   # a concat: channels of each input, in the order of its inputs
    attention: Optional[AttentionShape] = None   # attention kinds: heads, keys and the KV cache
    table_rows: int = 0           # an embedding: rows of its table (the vocabulary)

    @property
    def attention_shape(self) -> AttentionShape:
        """``attention``, of a kind that has one (the attention products and their softmax)."""
        if self.attention is None:
            raise ValueError(f"layer {self.name} ({self.kind.value}) has no attention shape")
        return self.attention

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Torch weight shape: (out, in) for FC, (out, in/groups, k, k) for conv; () without weights."""
        if self.kind is LayerKind.FC:
            return (self.out_shape[0], self.in_shape[0])
        if self.kind is LayerKind.CONV:
            return (self.out_shape[0], self.in_shape[0] // self.groups, self.kernel_hw, self.kernel_hw)
        return ()

    @property
    def weight_matrix_shape(self) -> tuple[int, int]:
        """The weights as the matrix a kernel multiplies: rows = outputs, cols = reduction."""
        shape = self.weight_shape
        if not shape:
            return (0, 0)
        return (shape[0], math.prod(shape[1:]))

    @property
    def weight_count(self) -> int:
        """Number of weights (biases excluded)."""
        return math.prod(self.weight_shape) if self.weight_shape else 0

    @property
    def in_elements(self) -> int:
        """Input activations per sample."""
        return math.prod(self.in_shape)

    @property
    def out_elements(self) -> int:
        """Output activations per sample."""
        return math.prod(self.out_shape)

    @property
    def out_pixels(self) -> int:
        """Output positions per sample and channel (1 for FC)."""
        return math.prod(self.out_shape[1:]) if len(self.out_shape) > 1 else 1

    @property
    def macs_per_sample(self) -> int:
        """Dense multiply-accumulates per sample (pooling: one per window element; add: one per element;
        concat: none, it only copies)."""
        if self.kind.has_weights:
            return self.weight_count * self.out_pixels
        if self.kind in (LayerKind.CONCAT, LayerKind.EMBEDDING):
            return 0
        if self.kind.is_decoder:
            return self.decoder_ops(1)
        return self.out_elements * self.kernel_hw * self.kernel_hw

    def decoder_ops(self, batch: int) -> int:
        """Operations of a decoder kind for ``batch`` tokens: multiply-adds of the attention products
        (query heads x head dim x keys attended), one per score for a softmax, one per element for a
        norm (the squares summed, then the scaling) or a gated activation. An attention layer's step
        has ``sequences x queries`` tokens: ``batch`` other than that scales its count."""
        a = self.attention
        if a is not None:
            tokens = a.sequences * a.queries
            per_score = a.head_dim if self.kind is not LayerKind.SOFTMAX else 1
            return a.sequences * a.heads * a.keys_summed * per_score * batch // tokens
        return self.out_elements * batch if self.kind is not LayerKind.EMBEDDING else 0

    def flops(self, batch: int, density: float = 1.0) -> float:
        """FLOPs for ``batch`` samples; 2 per MAC, scaled by the weight density kept."""
        if self.kind.reads_kv_cache:
            return 2.0 * self.decoder_ops(batch)
        if self.kind.is_decoder:
            return float(self.decoder_ops(batch))
        per_mac = 2.0 if self.kind.has_weights else 1.0
        return per_mac * self.macs_per_sample * batch * (density if self.kind.has_weights else 1.0)

    def weight_bytes(self) -> int:
        """Dense weight bytes."""
        return self.weight_count * self.dtype.size_bytes

    def in_bytes(self, batch: int) -> int:
        """Input activation bytes for ``batch`` samples."""
        return self.in_elements * batch * self.dtype.size_bytes

    def out_bytes(self, batch: int) -> int:
        """Output activation bytes for ``batch`` samples."""
        return self.out_elements * batch * self.dtype.size_bytes


@dataclass(frozen=True)
class Workload:
    """A validated workload: its layers in execution order, and the layers each one reads.

    ``inputs`` maps every layer's name to the names of the layers whose outputs it reads, in the
    order the workload declares them (a workload file's ``inputs:`` list, or the previous layer;
    empty: a network input): the first input of a join is the one its trace reads first.
    ``graph`` is the same DAG as a networkx ``DiGraph`` (nodes carry their :class:`Layer` as
    ``layer``), built on first use for the code that wants graph algorithms: a plain run never
    imports networkx.

    ``weight_masks`` holds, per layer name, the boolean non-zero pattern of real weights (a
    checkpoint's, see :mod:`simulator.model.checkpoint`), shaped like ``layer.weight_shape``; a
    layer listed there is encoded from it instead of from seeded weights pruned to its
    density.
    """

    name: str
    path: str
    dtype: DType
    input_shape: tuple[int, ...]
    inputs: Mapping[str, tuple[str, ...]] = field(hash=False)
    layers: tuple[Layer, ...]
    weight_masks: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def _by_name(self) -> dict[str, Layer]:
        return {layer.name: layer for layer in self.layers}

    @functools.cached_property
    def graph(self) -> nx.DiGraph:
        """The layer DAG as a networkx ``DiGraph`` in execution order; each node's predecessors come
        in their declared order, and its ``layer`` attribute is its :class:`Layer`."""
        import networkx as nx

        graph = nx.DiGraph()
        for layer in self.layers:
            graph.add_node(layer.name, layer=layer)
            graph.add_edges_from((p, layer.name) for p in self.inputs[layer.name])
        return graph

    def layer(self, name: str) -> Layer:
        """Look a layer up by name."""
        return self._by_name[name]

    def predecessors(self, name: str) -> list[str]:
        """Names of the layers whose outputs ``name`` reads, in their declared order (empty: reads a
        network input)."""
        return list(self.inputs[name])

    def sinks(self) -> list[str]:
        """Layers whose output no layer reads (the network's outputs), in execution order."""
        read = {p for layer in self.layers for p in self.inputs[layer.name]}
        return [layer.name for layer in self.layers if layer.name not in read]

    def with_dtype(self, dtype: DType) -> Workload:
        """The same workload with every layer's activations (and weights) in ``dtype``."""
        return self.with_layers([replace(l, dtype=dtype) for l in self.layers], dtype=dtype)

    def with_density(self, density: float) -> Workload:
        """The same workload with every weighted layer at one density (``--density``)."""
        if self.weight_masks:
            # the masks are the sparsity; a density would silently be ignored for them
            raise ConfigError(self.path, "density", "cannot override the density of a checkpoint's own weights")
        return self.with_layers([replace(l, density=density) if l.kind.has_weights else l for l in self.layers])

    def with_layers(self, layers: Sequence[Layer], **changes: Any) -> Workload:
        """The same graph with new :class:`Layer` objects for its layers (the same names, in the same
        order) and ``changes`` to the other fields; every layer keeps its inputs."""
        if [l.name for l in layers] != [l.name for l in self.layers]:
            raise ValueError(f"{self.name}: new layers must keep the names and order of the old ones")
        return replace(self, **{**changes, "layers": tuple(layers)})


def load_workload(path: str | Path) -> Workload:
    """Read and resolve a workload file; errors are :class:`ConfigError` lines."""
    return resolve(load_workload_spec(path), str(path))


def load_workload_spec(path: str | Path) -> WorkloadSpec:
    """Read and validate a workload file without resolving its shapes (a checkpoint may
    change them first, see :mod:`simulator.model.checkpoint`)."""
    source = str(path)
    data = read_yaml_mapping(path)
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise ConfigError(source, "schema_version",
                          f"{version!r} is not supported (this simulator reads version {SCHEMA_VERSION})")
    return validate(WorkloadSpec, data, source)


def resolve(spec: WorkloadSpec, source: str) -> Workload:
    """Propagate shapes through the layers, check them, and record what each layer reads."""
    inputs: dict[str, tuple[str, ...]] = {}
    layers: list[Layer] = []
    outputs: dict[str, tuple[int, ...]] = {}
    previous: Optional[str] = None
    for i, ls in enumerate(spec.layers):
        where = f"layers[{i}]"
        _check_kind_fields(ls, where, source)
        if ls.name in outputs:
            raise ConfigError(source, f"{where}.name", f"{ls.name!r} is used by an earlier layer")
        if ls.inputs is None:
            if ls.kind is LayerKind.ADD:
                raise ConfigError(source, f"{where}.inputs", "an add layer names the two layers it sums")
            if ls.kind is LayerKind.CONCAT:
                raise ConfigError(source, f"{where}.inputs", "a concat layer names the layers it joins")
            sources = [previous] if previous is not None else []
        else:
            sources = ls.inputs
            for name in sources:
                if name not in outputs:
                    raise ConfigError(source, f"{where}.inputs",
                                      f"{name!r} is not an earlier layer (layers run in file order)")
        if ls.kind is LayerKind.ADD:
            if len(sources) != 2 or sources[0] == sources[1]:
                raise ConfigError(source, f"{where}.inputs", f"an add layer sums two different layers, got {sources}")
            if outputs[sources[0]] != outputs[sources[1]]:
                raise ConfigError(source, f"{where}.inputs",
                                  f"shapes differ: {sources[0]} gives {list(outputs[sources[0]])}, "
                                  f"{sources[1]} gives {list(outputs[sources[1]])}")
        elif len(sources) > 1 and ls.kind is not LayerKind.CONCAT:
            raise ConfigError(source, f"{where}.inputs", f"a {ls.kind.value} layer reads one input; "
                              "only an add layer joins two (a concat joins two or more)")
        if sources or ls.kind is LayerKind.CONCAT:
            if ls.input_shape is not None:
                raise ConfigError(source, f"{where}.input_shape", "only a layer that reads a network input has one")
            # a concat's input is its inputs joined along the channels
            in_shape = (_concat_shape(sources, outputs, where, source) if ls.kind is LayerKind.CONCAT
                        else outputs[sources[0]])
        else:
            in_shape = tuple(ls.input_shape) if ls.input_shape is not None else tuple(spec.input_shape)
        layer = _resolve_layer(ls, in_shape, spec.dtype, where, source)
        if ls.kind is LayerKind.CONCAT:
            layer = replace(layer, parts=tuple(outputs[name][0] for name in sources))
        outputs[ls.name] = layer.out_shape
        layers.append(layer)
        inputs[layer.name] = tuple(sources)
        previous = ls.name
    seen: set[str] = set()     # a set, not list.index: linear in the layers (100,000 of them)
    for i, layer in enumerate(layers):
        if layer.module in seen:
            raise ConfigError(source, f"layers[{i}].module", f"{quote(layer.module)} is used by an earlier layer")
        seen.add(layer.module)
    return Workload(spec.name, source, spec.dtype, tuple(spec.input_shape), inputs, tuple(layers))


def _concat_shape(sources: list[str], outputs: dict[str, tuple[int, ...]], where: str,
                  source: str) -> tuple[int, ...]:
    """The joined (channels, height, width) of a concat: the inputs' channels summed, the same plane."""
    if len(sources) < 2 or len(set(sources)) != len(sources):
        raise ConfigError(source, f"{where}.inputs", f"a concat layer joins two or more different layers, "
                          f"got {sources}")
    shapes = [outputs[name] for name in sources]
    for name, shape in zip(sources, shapes):
        if len(shape) != 3:
            raise ConfigError(source, f"{where}.inputs", f"{name} gives {list(shape)}; a concat joins "
                              "(channels, height, width) outputs")
        if shape[1:] != shapes[0][1:]:
            raise ConfigError(source, f"{where}.inputs",
                              f"planes differ: {sources[0]} gives {list(shapes[0])}, {name} gives {list(shape)}")
    return (sum(shape[0] for shape in shapes),) + tuple(shapes[0][1:])


def _a(kind: LayerKind) -> str:
    """``a conv``, ``a fc``, ``an add``: the kind with its article, for messages."""
    return f"{'an' if kind.value[0] in 'aeiou' else 'a'} {kind.value}"


def _check_kind_fields(ls: LayerSpec, where: str, source: str) -> None:
    if ls.kind.is_decoder:
        raise ConfigError(source, f"{where}.kind", f"{ls.kind.value} layers come from a model's config.json "
                          "(give it as the workload), not from a workload file")
    allowed = _KIND_FIELDS[ls.kind]
    for name in set().union(*_KIND_FIELDS.values()) - allowed:
        if getattr(ls, name) is not None:
            raise ConfigError(source, f"{where}.{name}", f"does not apply to {_a(ls.kind)} layer "
                              f"(it takes: {', '.join(sorted(allowed)) or 'no shape fields'})")
    for name in _REQUIRED[ls.kind]:
        if getattr(ls, name) is None:
            raise ConfigError(source, f"{where}.{name}", f"missing required field for {_a(ls.kind)} layer")
    if not ls.kind.has_weights and ls.density != 1.0:
        raise ConfigError(source, f"{where}.density", f"{_a(ls.kind)} layer has no weights to prune")


def _given(value: int | None, name: str) -> int:
    """A shape field that :func:`_check_kind_fields` has already required for the layer's kind."""
    if value is None:
        raise AssertionError(f"{name} is required for this kind and was checked before")
    return value


def _resolve_layer(ls: LayerSpec, in_shape: tuple[int, ...], dtype: DType, where: str, source: str) -> Layer:
    # the fields every kind shares
    make = functools.partial(Layer, name=ls.name, kind=ls.kind, module=ls.module or ls.name, dtype=dtype,
                             density=ls.density, activation_density=ls.activation_density, relu=ls.relu)
    if ls.kind is LayerKind.FC:
        features = math.prod(in_shape)
        if features != ls.in_features:
            raise ConfigError(source, f"{where}.in_features",
                              f"{ls.in_features} does not match the {features} values arriving "
                              f"(shape {list(in_shape)})")
        return make(in_shape=(features,), out_shape=(_given(ls.out_features, "out_features"),))
    if ls.kind in (LayerKind.ADD, LayerKind.CONCAT):
        return make(in_shape=in_shape, out_shape=in_shape)
    if len(in_shape) != 3:
        raise ConfigError(source, f"{where}.kind",
                          f"a {ls.kind.value} layer needs a (channels, height, width) input, got {list(in_shape)}")
    channels, height, width = in_shape
    kernel_hw = _given(ls.kernel, "kernel")
    stride = ls.stride or (1 if ls.kind is LayerKind.CONV else kernel_hw)
    padding = ls.padding or 0
    if padding < 0:
        raise ConfigError(source, f"{where}.padding", f"{padding} is negative")
    out_h = (height + 2 * padding - kernel_hw) // stride + 1
    out_w = (width + 2 * padding - kernel_hw) // stride + 1
    if out_h < 1 or out_w < 1:
        raise ConfigError(source, f"{where}.kernel",
                          f"{kernel_hw} with stride {stride} does not fit a {height}x{width} input")
    if ls.kind is LayerKind.CONV:
        if ls.in_channels != channels:
            raise ConfigError(source, f"{where}.in_channels",
                              f"{ls.in_channels} does not match the {channels} channels arriving")
        groups = ls.groups or 1
        out_channels = _given(ls.out_channels, "out_channels")
        if channels % groups or out_channels % groups:
            raise ConfigError(source, f"{where}.groups", f"{groups} does not divide the channel counts")
        return make(in_shape=in_shape, out_shape=(out_channels, out_h, out_w), kernel_hw=kernel_hw,
                    stride=stride, padding=padding, groups=groups)
    return make(in_shape=in_shape, out_shape=(channels, out_h, out_w), kernel_hw=kernel_hw, stride=stride,
                padding=padding)


def to_torch_module(workload: Workload, init_weights: bool = True) -> Any:
    """Build the workload as a torch ``nn.Module`` whose parameter names follow ``layer.module``.

    ``forward`` runs the layers in order (ReLU after a conv, FC or add layer whose ``relu`` is
    set, flattening before an FC layer) and returns the last layer's output; an add layer sums
    its two inputs (as Distiller's ``EltwiseAdd`` module), a concat joins its inputs along the
    channels (``torch.cat``, dimension 1); a layer that reads a network input
    of its own takes it from the input tensor reshaped to its ``in_shape``. Weight values come
    from torch's default initialisation; pass ``init_weights=False`` to skip it for large models
    whose weights will be overwritten.
    """
    import torch
    from torch import nn

    class WorkloadModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._order: list[tuple[Layer, str, list[str]]] = []
            for layer in workload.layers:
                module = _torch_layer(layer, nn, init_weights)
                parent: nn.Module = self
                *path, leaf = layer.module.split(".")
                for part in path:
                    if not hasattr(parent, part):
                        parent.add_module(part, nn.Module())
                    parent = getattr(parent, part)
                parent.add_module(leaf, module)
                self._order.append((layer, layer.module, workload.predecessors(layer.name)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            outputs: dict[str, torch.Tensor] = {}
            y = x
            for layer, path, preds in self._order:
                inp = outputs[preds[0]] if preds else x.reshape(x.shape[0], *layer.in_shape)
                if layer.kind is LayerKind.FC:
                    inp = inp.flatten(1)
                if layer.kind is LayerKind.ADD:
                    y = self.get_submodule(path)(inp, outputs[preds[1]])
                elif layer.kind is LayerKind.CONCAT:
                    y = self.get_submodule(path)(*[outputs[p] for p in preds])
                else:
                    y = self.get_submodule(path)(inp)
                if layer.relu and (layer.kind.has_weights or layer.kind is LayerKind.ADD):
                    y = torch.relu(y)
                outputs[layer.name] = y
            return y

    return WorkloadModule()


def _torch_layer(layer: Layer, nn: Any, init_weights: bool) -> Any:
    device = None if init_weights else "meta"
    if layer.kind is LayerKind.FC:
        module = nn.Linear(layer.in_shape[0], layer.out_shape[0], device=device)
    elif layer.kind is LayerKind.CONV:
        module = nn.Conv2d(layer.in_shape[0], layer.out_shape[0], layer.kernel_hw, stride=layer.stride,
                           padding=layer.padding, groups=layer.groups, device=device)
    elif layer.kind is LayerKind.MAXPOOL:
        return nn.MaxPool2d(layer.kernel_hw, stride=layer.stride, padding=layer.padding)
    elif layer.kind is LayerKind.ADD:
        return _eltwise_add(nn)()
    elif layer.kind is LayerKind.CONCAT:
        return _concat(nn)()
    else:
        return nn.AvgPool2d(layer.kernel_hw, stride=layer.stride, padding=layer.padding)
    if not init_weights:
        module = module.to_empty(device="cpu")
    return module


def _eltwise_add(nn: Any) -> Any:
    """A module summing two tensors (Distiller's ``EltwiseAdd``), built when torch is imported."""

    class EltwiseAdd(nn.Module):
        def forward(self, a: Any, b: Any) -> Any:
            return a + b

    return EltwiseAdd


def _concat(nn: Any) -> Any:
    """A module joining tensors along the channels (an inception module's output), built when torch
    is imported."""
    import torch

    class Concat(nn.Module):
        def forward(self, *parts: Any) -> Any:
            return torch.cat(parts, dim=1)

    return Concat


def layer_seed(seed: int, layer_name: str) -> int:
    """A per-layer seed that does not depend on the other layers of the workload."""
    digest = hashlib.sha256(f"{seed}:{layer_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
