"""Any torch model as a workload: an ``nn.Module`` and an example input become the layer graph.

:func:`workload_from_module` captures the module's graph with ``torch.fx.symbolic_trace`` (graph
capture: it records the calls ``forward`` makes, down to torch's own layers and functions), runs
the example input through the captured graph with ``torch.fx.passes.shape_prop.ShapeProp`` to learn every
tensor's shape, and turns each node into a layer of :mod:`simulator.model.workload`, or folds it:

* ``nn.Conv2d`` -> conv; ``nn.Linear`` -> fc; ``nn.MaxPool2d`` / ``F.max_pool2d`` -> maxpool;
  ``nn.AvgPool2d`` / ``F.avg_pool2d`` -> avgpool; an adaptive pool -> the equal-window pool
  it is (nothing at all when its output size is its input size, as in torchvision's AlexNet);
  ``a + b`` / ``torch.add`` / ``+=`` of two layer outputs of one shape -> add; ``torch.cat``
  of layer outputs along the channels -> concat (an inception module's join);
* **folded** into the layer whose output they read, as an inference engine fuses them:
  batch norm into the conv / fc before it; a ReLU into the conv, fc or add before it (its
  ``relu`` flag; a ReLU after a max pool moves before it, where it gives the same result);
* **ignored**, because they move no data of their own: flatten / view / reshape / squeeze /
  contiguous (a new view of the same buffer; the batch dimension must stay), dropout and
  identity (no-ops at inference), softmax / log-softmax (a row of class scores), a ReLU
  anywhere else, and nodes that compute no tensor (``x.size(0)``);
* anything else is a :class:`~simulator.base.errors.ConfigError` naming the node and its op.

A fold is only taken when it is exact: batch norm or a ReLU folds into a layer only when
nothing else reads the layer's output before it (else the other reader would see the folded
value). Every layer's shape is checked against what torch computed.

The module's **real weights** are the sparsity, as a checkpoint's are
(:mod:`simulator.model.checkpoint`): each conv / fc layer's non-zero pattern goes into
``Workload.weight_masks`` (a ``torch.nn.utils.prune``-pruned module counts with its mask
applied), so the pruned variant of a run stores exactly the module's non-zeros.
``density=`` instead magnitude-prunes the module's own weights to that density.

:func:`load_model` finds a model for the command line (``run --model package.module:factory``):
it imports an importable Python module by its dotted name and calls the factory named after
the colon. That is the user's own code, chosen by them; no file is ever executed by path.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import io
import math
import operator
import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..base.errors import ConfigError, OptionError
from .checkpoint import Checkpoint
from .parameters import NameIndex
from .weights import MagnitudePruning
from .workload import DType, LayerKind, LayerSpec, Workload, WorkloadSpec, resolve

#: ``package.module:attribute`` (attribute may be dotted): what ``--model`` takes.
MODEL_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

_DTYPES = {torch.float32: DType.FP32, torch.float16: DType.FP16}


class NodeRole(str, enum.Enum):
    """What a node of the captured graph becomes in the layer graph."""

    CONV = "conv"
    FC = "fc"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    ADAPTIVE_MAXPOOL = "adaptive max pool"
    ADAPTIVE_AVGPOOL = "adaptive avg pool"
    ADD = "add"
    CONCAT = "concat"          # torch.cat along the channels
    BATCHNORM = "batch norm"   # folded into the conv / fc before it
    RELU = "relu"              # folded into the layer before it (its relu flag)
    VIEW = "view"              # same data, another shape (flatten, view, reshape, ...)
    NOOP = "no-op"             # dropout, identity, softmax: no layer, same value


_MODULE_ROLES: list[tuple[type, NodeRole]] = [
    (nn.Conv2d, NodeRole.CONV),
    (nn.Linear, NodeRole.FC),
    (nn.MaxPool2d, NodeRole.MAXPOOL),
    (nn.AvgPool2d, NodeRole.AVGPOOL),
    (nn.AdaptiveMaxPool2d, NodeRole.ADAPTIVE_MAXPOOL),
    (nn.AdaptiveAvgPool2d, NodeRole.ADAPTIVE_AVGPOOL),
    (nn.BatchNorm1d, NodeRole.BATCHNORM),
    (nn.BatchNorm2d, NodeRole.BATCHNORM),
    (nn.ReLU, NodeRole.RELU),
    (nn.Flatten, NodeRole.VIEW),
    (nn.Dropout, NodeRole.NOOP),
    (nn.Dropout1d, NodeRole.NOOP),
    (nn.Dropout2d, NodeRole.NOOP),
    (nn.Identity, NodeRole.NOOP),
    (nn.Softmax, NodeRole.NOOP),
    (nn.LogSoftmax, NodeRole.NOOP),
]
_FUNCTION_ROLES: dict[Any, NodeRole] = {
    F.max_pool2d: NodeRole.MAXPOOL,
    F.avg_pool2d: NodeRole.AVGPOOL,
    F.adaptive_max_pool2d: NodeRole.ADAPTIVE_MAXPOOL,
    F.adaptive_avg_pool2d: NodeRole.ADAPTIVE_AVGPOOL,
    operator.add: NodeRole.ADD,
    operator.iadd: NodeRole.ADD,
    torch.add: NodeRole.ADD,
    torch.cat: NodeRole.CONCAT,
    torch.concat: NodeRole.CONCAT,
    F.relu: NodeRole.RELU,
    torch.relu: NodeRole.RELU,
    torch.relu_: NodeRole.RELU,
    torch.flatten: NodeRole.VIEW,
    torch.reshape: NodeRole.VIEW,
    torch.squeeze: NodeRole.VIEW,
    F.dropout: NodeRole.NOOP,
    F.dropout2d: NodeRole.NOOP,
    F.softmax: NodeRole.NOOP,
    F.log_softmax: NodeRole.NOOP,
    torch.softmax: NodeRole.NOOP,
    torch.log_softmax: NodeRole.NOOP,
}
_METHOD_ROLES: dict[str, NodeRole] = {
    "add": NodeRole.ADD, "add_": NodeRole.ADD, "__add__": NodeRole.ADD,
    "relu": NodeRole.RELU, "relu_": NodeRole.RELU,
    "view": NodeRole.VIEW, "reshape": NodeRole.VIEW, "flatten": NodeRole.VIEW, "squeeze": NodeRole.VIEW,
    "contiguous": NodeRole.VIEW,
    "softmax": NodeRole.NOOP, "log_softmax": NodeRole.NOOP,
}
_SUPPORTED = ("Conv2d, Linear, max / avg / adaptive pooling, add of two layer outputs, torch.cat along the "
              "channels; folded or ignored: BatchNorm, ReLU, flatten / view / reshape, dropout, identity, softmax")


@dataclass
class _Value:
    """What a tensor of the captured graph is in the layer graph: some layer's output (None: the network input),
    with the per-sample shape the tensor really has (a view may have reshaped it)."""

    layer: Optional[str]
    shape: tuple[int, ...]


@dataclass
class _Layer:
    """A layer being built: its workload fields, the node that made it, and its weight."""

    node: fx.Node
    fields: dict[str, Any]
    out_shape: tuple[int, ...]
    weight: Optional[torch.Tensor] = None
    chain: list[fx.Node] = field(default_factory=list)   # every node whose value is this output


def _target_name(node: fx.Node) -> str:
    """The target of a ``call_module`` or ``call_method`` node: a module path or a method name (fx
    types every target as ``str | Callable``; only a ``call_function`` node's is a callable)."""
    if not isinstance(node.target, str):
        raise TypeError(f"{node.op} node {node.name} has the callable target {node.target!r}")
    return node.target


_M = TypeVar("_M", bound=nn.Module)


def _submodule(gm: fx.GraphModule, node: fx.Node, cls: type[_M]) -> _M:
    """The module a ``call_module`` node calls, of the class its role was chosen by."""
    module = gm.get_submodule(_target_name(node))
    if not isinstance(module, cls):
        raise TypeError(f"module {node.target} is a {type(module).__name__}, not a {cls.__name__}")
    return module


def _op_name(node: fx.Node, gm: fx.GraphModule) -> str:
    """How an error names a node's op: ``nn.Conv1d``, ``torch.cat``, ``Tensor.permute``."""
    if node.op == "call_module":
        cls = type(_submodule(gm, node, nn.Module))
        return f"{'nn' if cls.__module__.startswith('torch.nn') else cls.__module__}.{cls.__name__}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        module = getattr(node.target, "__module__", None) or ""
        name = getattr(node.target, "__name__", str(node.target))
        if module in ("_operator", "operator"):
            return f"operator.{name}"
        if module.startswith("torch.nn.functional"):
            return f"F.{name}"
        if module.startswith("torch") or not module:
            return f"torch.{name}"
        return f"{module}.{name}"
    return node.op


def _node_label(node: fx.Node, gm: fx.GraphModule) -> str:
    """``module features.0 (nn.Conv2d)`` or ``node cat (torch.cat)``: how errors name a node."""
    if node.op == "call_module":
        return f"module {node.target} ({_op_name(node, gm)})"
    return f"node {node.name} ({_op_name(node, gm)})"


def _readers(node: fx.Node) -> list[fx.Node]:
    """The nodes that read a node's data (``x.size(0)`` reads only its shape)."""
    return [u for u in node.users if u.op == "output" or "tensor_meta" in u.meta]


def _role(node: fx.Node, gm: fx.GraphModule) -> Optional[NodeRole]:
    if node.op == "call_module":
        module = _submodule(gm, node, nn.Module)
        return next((role for cls, role in _MODULE_ROLES if isinstance(module, cls)), None)
    if node.op == "call_function":
        return _FUNCTION_ROLES.get(node.target)
    if node.op == "call_method":
        return _METHOD_ROLES.get(_target_name(node))
    return None


def _pair(value: Any, what: str, where: str, source: str) -> int:
    """A square window parameter: an int, or a pair of equal ints."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ConfigError(source, where, f"{what} {tuple(value)} is not square; the layer graph has square "
                              "windows only")
        value = value[0]
    return int(value)


class _Builder:
    """Walks the captured graph in execution order and builds the workload's layers."""

    def __init__(self, gm: fx.GraphModule, source: str) -> None:
        self.gm = gm
        self.source = source
        self.values: dict[fx.Node, _Value] = {}
        self.layers: dict[str, _Layer] = {}
        self.calls: dict[str, int] = {}
        self.input_shape: Optional[tuple[int, ...]] = None
        self.batch = 0

    # --- helpers ------------------------------------------------------------------------------

    def where(self, node: fx.Node) -> str:
        return _node_label(node, self.gm)

    def fail(self, node: fx.Node, message: str) -> ConfigError:
        return ConfigError(self.source, self.where(node), message)

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """The per-sample shape torch computed for a node's tensor."""
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise self.fail(node, "does not compute one tensor; the layer graph cannot follow it")
        shape = tuple(int(s) for s in meta.shape)
        if not shape or shape[0] != self.batch:
            raise self.fail(node, f"gives shape {list(shape)}, which does not keep the batch dimension "
                            f"({self.batch}) first")
        return shape[1:]

    def value(self, node: fx.Node, arg: Any) -> _Value:
        """The layer-graph value of a tensor argument of ``node``."""
        if not isinstance(arg, fx.Node) or arg not in self.values:
            what = f"parameter or buffer {arg.target!r}" if isinstance(arg, fx.Node) and arg.op == "get_attr" \
                else repr(arg)
            raise self.fail(node, f"reads {what}, which is not the output of a layer or the network input "
                            f"(supported: {_SUPPORTED})")
        return self.values[arg]

    def name(self, node: fx.Node) -> str:
        """A layer's name: the module path for a module's first call, else the node's name."""
        base = _target_name(node) if node.op == "call_module" else node.name
        count = self.calls.get(base, 0)
        self.calls[base] = count + 1
        name = base if count == 0 else f"{base}@{count + 1}"
        while name in self.layers:
            name += "'"
        return name

    def add_layer(self, node: fx.Node, kind: LayerKind, inputs: list[_Value], weight: Optional[torch.Tensor] = None,
                  **fields: Any) -> None:
        name = self.name(node)
        spec: dict[str, Any] = {"name": name, "kind": kind, "module": name, "relu": False, **fields}
        first = inputs[0]
        if first.layer is None:
            spec["inputs"] = []
            if first.shape != self.input_shape:
                spec["input_shape"] = list(first.shape)   # the network input, reshaped first
        else:
            spec["inputs"] = [v.layer for v in inputs]
            if kind is not LayerKind.FC:
                for v in inputs:
                    if v.layer is None:   # visit_add and visit_concat refuse the network input beside layers
                        raise AssertionError(f"{name} reads the network input beside layer outputs")
                    produced = self.layers[v.layer].out_shape
                    if v.shape != produced:
                        raise self.fail(node, f"reads the output of {v.layer} reshaped from {list(produced)} to "
                                        f"{list(v.shape)}; the layer graph reshapes only by flattening before "
                                        "a fully-connected layer")
        layer = _Layer(node, spec, self.shape(node), weight, [node])
        self.layers[name] = layer
        self.values[node] = _Value(name, layer.out_shape)

    def alias(self, node: fx.Node, source_value: _Value) -> None:
        """``node`` is the same data as ``source_value`` (perhaps another shape)."""
        shape = self.shape(node)
        if math.prod(shape) != math.prod(source_value.shape):
            raise self.fail(node, f"changes the number of values per sample ({math.prod(source_value.shape)} -> "
                            f"{math.prod(shape)}); the layer graph cannot follow it")
        self.values[node] = _Value(source_value.layer, shape)
        if source_value.layer is not None:
            self.layers[source_value.layer].chain.append(node)

    def exclusive(self, layer: str) -> bool:
        """Whether each node holding the layer's output so far has one reader (so an element-wise
        op folded into the layer changes what that reader alone sees)."""
        return all(len(_readers(n)) == 1 for n in self.layers[layer].chain)

    # --- the walk -----------------------------------------------------------------------------

    def build(self, example: torch.Tensor) -> tuple[int, ...]:
        """Walk the graph; the network input's per-sample shape."""
        self.batch = int(example.shape[0])
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.input_shape is not None:
                    raise self.fail(node, "is a second input; the layer graph has one network input")
                self.input_shape = self.shape(node)
                self.values[node] = _Value(None, self.input_shape)
            elif node.op in ("get_attr", "output"):
                continue
            else:
                self.visit(node)
        if not self.layers:
            raise ConfigError(self.source, "", f"has no layer the simulator models (supported: {_SUPPORTED})")
        if self.input_shape is None:   # every layer reads a value that the placeholder started
            raise AssertionError("layers without a network input")
        return self.input_shape

    def visit(self, node: fx.Node) -> None:
        role = _role(node, self.gm)
        if role is None:
            meta = node.meta.get("tensor_meta")
            if meta is None and node.op != "call_module":
                return                                   # x.size(0), x.shape[1]: no tensor, no data moved
            raise self.fail(node, f"is not supported (supported: {_SUPPORTED})")
        tensors = [a for a in node.args if isinstance(a, fx.Node) and "tensor_meta" in a.meta]
        if role is NodeRole.ADD:
            self.visit_add(node)
            return
        if role is NodeRole.CONCAT:
            self.visit_concat(node)
            return
        if not tensors:
            raise self.fail(node, "reads no tensor")
        source = self.value(node, tensors[0])
        if role in (NodeRole.VIEW, NodeRole.NOOP):
            self.alias(node, source)
        elif role is NodeRole.BATCHNORM:
            producer = self.layers[source.layer].fields["kind"] if source.layer else None
            if source.layer is None or producer not in (LayerKind.CONV, LayerKind.FC):
                raise self.fail(node, "folds only into a conv or fc layer right before it; here it reads "
                                + (f"{producer.value} layer {source.layer}" if producer else "the network input"))
            if not self.exclusive(source.layer):
                raise self.fail(node, f"cannot fold into layer {source.layer}: another node reads its output before "
                                "the batch norm")
            self.alias(node, source)
        elif role is NodeRole.RELU:
            self.visit_relu(node, source)
        elif role is NodeRole.CONV:
            self.visit_conv(node, source)
        elif role is NodeRole.FC:
            module = _submodule(self.gm, node, nn.Linear)
            if len(source.shape) != 1:
                raise self.fail(node, f"multiplies a {list(source.shape)} input per sample; the layer graph's fc "
                                "layers take a flat vector (flatten first)")
            self.check_single_call(node)
            self.add_layer(node, LayerKind.FC, [source], _weight(module),
                           in_features=module.in_features, out_features=module.out_features)
        else:
            self.visit_pool(node, role, source)

    def check_single_call(self, node: fx.Node) -> None:
        if self.calls.get(_target_name(node)):
            raise self.fail(node, f"calls module {node.target!r} a second time: shared weights cannot be expressed "
                            "in the layer graph (each layer owns its weights)")

    def visit_relu(self, node: fx.Node, source: _Value) -> None:
        """Fold the ReLU into the conv / fc / add whose output it reads, when that is exact;
        otherwise leave it out (an element-wise pass the simulation does not charge)."""
        layer = source.layer
        # relu(max(x)) == max(relu(x)): a ReLU after a max pool belongs to the layer before the pool
        while (layer is not None and self.layers[layer].fields["kind"] is LayerKind.MAXPOOL
               and self.exclusive(layer)):
            inputs = self.layers[layer].fields["inputs"]
            layer = inputs[0] if inputs else None
        if (layer is not None and self.layers[layer].fields["kind"] in (LayerKind.CONV, LayerKind.FC, LayerKind.ADD)
                and self.exclusive(layer)):
            self.layers[layer].fields["relu"] = True
        self.alias(node, source)

    def visit_conv(self, node: fx.Node, source: _Value) -> None:
        module = _submodule(self.gm, node, nn.Conv2d)
        where = self.where(node)
        if len(source.shape) != 3:
            raise self.fail(node, f"reads a {list(source.shape)} input per sample; a conv layer reads "
                            "(channels, height, width)")
        if _pair(module.dilation, "dilation", where, self.source) != 1:
            raise self.fail(node, f"dilation {module.dilation} is not modelled (the layer graph's convolutions "
                            "are dense windows)")
        if module.padding_mode != "zeros":
            raise self.fail(node, f"padding_mode {module.padding_mode!r} is not modelled (zeros only)")
        kernel_hw = _pair(module.kernel_size, "kernel_size", where, self.source)
        stride = _pair(module.stride, "stride", where, self.source)
        if isinstance(module.padding, str):
            padding = 0 if module.padding == "valid" else (kernel_hw - 1) // 2
        else:
            padding = _pair(module.padding, "padding", where, self.source)
        self.check_single_call(node)
        self.add_layer(node, LayerKind.CONV, [source], _weight(module), in_channels=module.in_channels,
                       out_channels=module.out_channels, kernel=kernel_hw, stride=stride, padding=padding,
                       groups=module.groups)

    def visit_pool(self, node: fx.Node, role: NodeRole, source: _Value) -> None:
        where = self.where(node)
        if len(source.shape) != 3:
            raise self.fail(node, f"reads a {list(source.shape)} input per sample; pooling reads "
                            "(channels, height, width)")
        params = self.pool_params(node)
        kind = LayerKind.MAXPOOL if role in (NodeRole.MAXPOOL, NodeRole.ADAPTIVE_MAXPOOL) else LayerKind.AVGPOOL
        if role in (NodeRole.ADAPTIVE_MAXPOOL, NodeRole.ADAPTIVE_AVGPOOL):
            _, height, width = source.shape
            out = params["output_size"]
            out_h, out_w = (out, out) if not isinstance(out, (tuple, list)) else out
            out_h, out_w = out_h or height, out_w or width
            if (out_h, out_w) == (height, width):
                self.alias(node, source)                 # the identity: nothing to pool
                return
            if height % out_h or width % out_w or height // out_h != width // out_w:
                raise self.fail(node, f"pools {height}x{width} to {out_h}x{out_w}, which is not one square window "
                                "repeated; the layer graph cannot express it")
            kernel_hw = stride = height // out_h
            padding = 0
        else:
            if params.get("ceil_mode"):
                raise self.fail(node, "ceil_mode=True is not modelled (the layer graph's pooling rounds down)")
            if params.get("return_indices"):
                raise self.fail(node, "return_indices=True is not modelled")
            if _pair(params.get("dilation", 1), "dilation", where, self.source) != 1:
                raise self.fail(node, "dilation is not modelled")
            kernel_hw = _pair(params["kernel_size"], "kernel_size", where, self.source)
            given = params.get("stride")
            stride = kernel_hw if given is None or given == [] or given == () else \
                _pair(given, "stride", where, self.source)
            padding = _pair(params.get("padding", 0), "padding", where, self.source)
        self.add_layer(node, kind, [source], kernel=kernel_hw, stride=stride, padding=padding)

    def pool_params(self, node: fx.Node) -> dict[str, Any]:
        if node.op == "call_module":
            module = _submodule(self.gm, node, nn.Module)
            names = ("output_size",) if hasattr(module, "output_size") else \
                ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            return {n: getattr(module, n) for n in names if hasattr(module, n)}
        normal = node.normalized_arguments(self.gm, normalize_to_only_use_kwargs=True)
        if normal is None:
            raise self.fail(node, "its arguments could not be read")
        return dict(normal.kwargs)

    def visit_add(self, node: fx.Node) -> None:
        args = list(node.args) + [v for k, v in node.kwargs.items() if k in ("other",)]
        alpha = node.kwargs.get("alpha", 1)
        if alpha != 1:
            raise self.fail(node, f"alpha={alpha} is not modelled (a plain sum only)")
        if len(args) != 2:
            raise self.fail(node, "does not sum two tensors")
        a, b = (self.value(node, arg) for arg in args)
        if a.layer is None or b.layer is None:
            raise self.fail(node, "adds the network input; an add layer sums the outputs of two layers")
        if a.layer == b.layer:
            raise self.fail(node, f"adds the output of {a.layer} to itself; an add layer sums two different layers")
        out = self.shape(node)
        if a.shape != out or b.shape != out:
            raise self.fail(node, f"broadcasts {list(a.shape)} + {list(b.shape)}; an add layer sums two outputs of "
                            "one shape")
        self.add_layer(node, LayerKind.ADD, [a, b])


    def visit_concat(self, node: fx.Node) -> None:
        normal = node.normalized_arguments(self.gm, normalize_to_only_use_kwargs=True)
        if normal is None:
            raise self.fail(node, "its arguments could not be read")
        parts, dim = normal.kwargs.get("tensors"), normal.kwargs.get("dim", 0)
        if not isinstance(parts, (list, tuple)):
            raise self.fail(node, "does not join a list of tensors")
        values = [self.value(node, part) for part in parts]
        if any(len(v.shape) != 3 for v in values) or dim not in (1, -3):
            raise self.fail(node, f"joins along dimension {dim}; a concat layer joins (channels, height, width) "
                            "outputs along the channels (dim=1)")
        if any(v.layer is None for v in values):
            raise self.fail(node, "joins the network input; a concat layer joins the outputs of layers")
        self.add_layer(node, LayerKind.CONCAT, values)


def _weight(module: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """The weight a module computes with: ``weight_orig x weight_mask`` when torch-pruned."""
    orig, mask = getattr(module, "weight_orig", None), getattr(module, "weight_mask", None)
    if orig is not None and mask is not None:
        return (orig * mask).detach()
    return module.weight.detach()


def _example(example_input: Any, source: str) -> torch.Tensor:
    if isinstance(example_input, (tuple, list)) and len(example_input) == 1:
        example_input = example_input[0]
    if not isinstance(example_input, torch.Tensor):
        raise ConfigError(source, "example input", f"expected one tensor with a batch dimension first, got "
                          f"{type(example_input).__name__}")
    if example_input.dim() < 2:
        raise ConfigError(source, "example input", f"shape {list(example_input.shape)}: expected a batch "
                          "dimension first, then the sample's shape")
    if example_input.dtype not in _DTYPES:
        raise ConfigError(source, "example input", f"dtype {example_input.dtype} is not modelled "
                          f"(float32 or float16)")
    return example_input


def capture_graph(module: nn.Module, example_input: torch.Tensor, source: str) -> fx.GraphModule:
    """The ``torch.fx`` graph of ``module`` (graph capture) with every node's shape for ``example_input`` (run in eval
    mode under ``no_grad``; the module's own training flags are left as they were)."""
    if not isinstance(module, nn.Module):
        raise ConfigError(source, "", f"expected a torch.nn.Module, got {type(module).__name__}")
    try:
        gm = fx.symbolic_trace(module)
    except Exception as err:   # any failure of the user's forward under capture is their model's
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(source, "", "torch.fx cannot capture the graph of its forward "
                          f"({type(err).__name__}: {first}); "
                          "data-dependent control flow must be removed or wrapped as a leaf module") from None
    modes = {m: m.training for m in module.modules()}
    gm.eval()                  # batch norm uses its running statistics, dropout does nothing
    try:
        # ShapeProp prints the traceback of a failing node itself; the error below says it in one line
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(example_input)
    except Exception as err:
        cause = err.__cause__ or err
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        found = re.search(r"node=%(\w+)", str(err))
        node = next((n for n in gm.graph.nodes if found and n.name == found.group(1)), None)
        at = f" at {_node_label(node, gm)}" if node is not None else ""
        raise ConfigError(source, "example input", f"running it through the model failed{at} "
                          f"({type(cause).__name__}: {first})") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    return gm


def workload_from_module(module: nn.Module, example_input: torch.Tensor, name: Optional[str] = None,
                         source: Optional[str] = None, density: Optional[float] = None,
                         dtype: Optional[DType] = None) -> Workload:
    """The layer graph of ``module`` for ``example_input`` (batch first; the batch size plays no
    part: shapes are per sample), with the module's real non-zero weights as the sparsity.

    ``name`` names the workload in reports (default: the module's class name); ``source``
    names the model in errors and results (default ``<ClassName>``). ``density`` in (0, 1]
    magnitude-prunes every conv / fc weight of the module to that share of its weights
    (zeros already there stay zeros) instead of taking its non-zeros as they are. ``dtype`` is
    the element type to simulate (default: the example input's, float32 or float16), e.g.
    ``DType.INT16`` for an accelerator that computes in 16-bit fixed point.
    """
    source = source or f"<{type(module).__name__}>"
    if density is not None and not 0.0 < density <= 1.0:
        raise ConfigError(source, "density", f"must be in (0, 1], got {density}")
    example = _example(example_input, source)
    gm = capture_graph(module, example, source)
    builder = _Builder(gm, source)
    input_shape = builder.build(example)
    specs = [LayerSpec.model_validate(layer.fields) for layer in builder.layers.values()]
    spec = WorkloadSpec(schema_version=1, name=name or type(module).__name__,
                        source=f"captured from {source} with torch.fx", dtype=dtype or _DTYPES[example.dtype],
                        input_shape=list(input_shape), layers=specs)
    try:
        base = resolve(spec, source)
    except ConfigError as err:   # a rule above let through something the workload cannot hold
        found = re.match(r"layers\[(\d+)\]", err.field)
        layer = list(builder.layers.values())[int(found.group(1))] if found else None
        raise (builder.fail(layer.node, err.message) if layer else err) from None
    masks: dict[str, np.ndarray] = {}
    layers = []
    for resolved in base.layers:
        built = builder.layers[resolved.name]
        if resolved.out_shape != built.out_shape:
            raise builder.fail(built.node, f"the layer graph gives shape {list(resolved.out_shape)}, torch gives "
                               f"{list(built.out_shape)}")
        if built.weight is not None:
            weight = built.weight.float()
            kept = weight != 0
            if density is not None:
                kept = MagnitudePruning(density).compute_mask(weight, kept)
            pattern = kept.numpy()
            masks[resolved.name] = pattern
            resolved = replace(resolved, density=float(np.count_nonzero(pattern)) / pattern.size)
        layers.append(resolved)
    return base.with_layers(layers, path=source, weight_masks=masks)


# --- the command line's model -------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedModel:
    """A model named on the command line: the module and the example input to capture its graph with."""

    spec: str
    module: nn.Module
    example_input: torch.Tensor


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``--input-shape 3,32,32`` -> ``(3, 32, 32)`` (per sample, no batch)."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise OptionError("input_shape", f"{text!r}: expected the sample's shape as integers, "
                          "e.g. 3,224,224") from None
    if not shape or any(s < 1 for s in shape):
        raise OptionError("input_shape", f"{text!r}: every size must be at least 1")
    return shape


def load_model(spec: str, input_shape: Optional[Sequence[int]] = None, option: str = "model") -> LoadedModel:
    """Import ``package.module:factory`` and call the factory (no arguments).

    The factory returns an ``nn.Module`` or ``(module, example_input)``; an attribute that is
    already an ``nn.Module`` is used as it is. ``input_shape`` (per sample) gives the example
    input as zeros of shape ``(1, *input_shape)`` and takes precedence over one the factory
    returns. Only importable modules are accepted, never a file path: the code that runs is
    the user's installed code, chosen by naming it.
    """
    if not MODEL_SPEC.match(spec):
        hint = " (a file path is never run; make the model importable and name it as package.module:factory)" \
            if "/" in spec or spec.endswith(".py") else ""
        raise OptionError(option, f"{spec!r} is not package.module:factory{hint}")
    module_name, attribute = spec.split(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise OptionError(option, f"{spec}: no module named {err.name!r} (it must be importable: "
                              "installed, or on PYTHONPATH)") from None
        raise OptionError(option, f"{spec}: importing {module_name} failed: {err}") from None
    except Exception as err:   # the user's module raised while importing: report it in one line
        raise OptionError(option, f"{spec}: importing {module_name} raised "
                          f"{type(err).__name__}: {err}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise OptionError(option, f"{spec}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        result: Any = target
    elif callable(target):
        try:
            result = target()
        except Exception as err:
            raise OptionError(option, f"{spec}: calling {attribute}() raised "
                              f"{type(err).__name__}: {err}") from None
    else:
        raise OptionError(option, f"{spec}: {attribute} is a {type(target).__name__}, not a "
                          "callable or an nn.Module")
    example = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        result, example = result
    if not isinstance(result, nn.Module):
        raise OptionError(option, f"{spec}: {attribute}() returned a {type(result).__name__}; "
                          "expected an nn.Module or (nn.Module, example input)")
    if input_shape is not None:
        example = torch.zeros((1, *input_shape))
    if example is None:
        raise OptionError("input_shape", f"needed: {spec} returns a module without an example "
                          "input, so give the shape of one sample (e.g. {input_shape} 3,224,224)")
    return LoadedModel(spec, result, _example(example, spec))


def load_checkpoint_weights(module: nn.Module, ckpt: Checkpoint) -> None:
    """Copy a checkpoint's tensors into ``module`` (names with or without DataParallel's
    ``module.``), with the checkpoint's masks applied; shapes must match the module's."""
    own = module.state_dict()
    index = NameIndex(ckpt.state_dict)
    loaded = {}
    for name, tensor in own.items():
        actual = index.resolve(name)
        if actual is None:
            raise ConfigError(ckpt.path, "state_dict", f"{name} of the model {index.why_not(name)} of the checkpoint "
                              f"(it has: {index.sample()})")
        value = ckpt.state_dict[actual]
        if tuple(value.shape) != tuple(tensor.shape):
            raise ConfigError(ckpt.path, f"state_dict[{actual!r}]", f"shape {tuple(value.shape)} differs from the "
                              f"model's {tuple(tensor.shape)}")
        loaded[name] = value * ckpt.masks[actual] if actual in ckpt.masks else value
    extra = sorted(set(ckpt.state_dict) - {index.resolve(n) for n in own})
    if extra:
        raise ConfigError(ckpt.path, f"state_dict[{extra[0]!r}]", "matches nothing in the model")
    module.load_state_dict(loaded)
