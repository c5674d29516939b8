"""Distiller checkpoints (``.pth.tar``): loading them safely, simulating their own weights,
and writing pruned models in their layout.

**Safe loading.** A checkpoint is a pickle, and unpickling can run any code the file names.
:func:`load_checkpoint` never does: it uses ``torch.load(weights_only=True)``, whose restricted
unpickler builds only tensors, plain containers and numbers, plus the classes allow-listed
here. Distiller checkpoints also pickle a few objects of their own (thinning recipes, the
optimizer's class, a quantizer's class and enums); each is mapped to an inert stand-in
registered under Distiller's (or torch's) dotted path, so the file loads without importing
distiller and without calling anything it names. A file naming anything else is refused
with one line naming what it wanted, and nothing in it runs.

**Simulating a checkpoint.** :func:`checkpoint_workload` takes the layer graph from a
workload (by default the shipped ``workloads/<arch>.yaml`` for the checkpoint's ``arch``),
replaces every conv / FC layer's channel and feature counts by the shapes of the
checkpoint's weights (a thinned layer is simulated at its real, smaller shape), and records
each layer's real non-zero pattern: a weight is stored when it is non-zero and its mask in
``compression_sched.masks_dict`` (if any) keeps it.

**Writing.** :func:`save_checkpoint` writes Distiller's layout (``epoch``, ``arch``,
``state_dict``, ``compression_sched: {masks_dict}``) with nothing but tensors, strings,
numbers and dicts, so it loads with ``torch.load(weights_only=True)`` anywhere.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import numpy as np
import torch

from ..base.atomicfile import write_atomically
from ..base.budget import check_memory
from ..base.errors import ConfigError, quote
from ..base.paths import WORKLOADS_DIR
from .parameters import NameIndex, is_parameter_name
from .workload import DType, LayerKind, Workload, load_workload_spec, resolve

_ARCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")   # a file name, never a path


# --- inert stand-ins for the objects Distiller checkpoints pickle --------------------------------

class StandIn:
    """An inert stand-in for a class a checkpoint names: it records the arguments and the
    pickled state it is given and has no other behaviour."""

    stands_for: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.stands_for}{self.args!r}>"


def _stand_in(path: str) -> type[StandIn]:
    name = path.rsplit(".", 1)[1]
    return type(name, (StandIn,), {"stands_for": path, "__module__": __name__,
                                   "__doc__": f"Inert stand-in for ``{path}``."})


# distiller/thinning.py: ThinningRecipe = namedtuple('ThinningRecipe', ['modules', 'parameters'])
ThinningRecipe = namedtuple("ThinningRecipe", ["modules", "parameters"])
# distiller/quantization/quantizer.py: QBits = namedtuple('QBits', ['acts', 'wts', 'bias'])
QBits = namedtuple("QBits", ["acts", "wts", "bias"])

_OPTIMIZERS = ["sgd.SGD", "adam.Adam", "adamw.AdamW", "rmsprop.RMSprop", "adagrad.Adagrad", "adadelta.Adadelta",
               "adamax.Adamax", "asgd.ASGD", "rprop.Rprop", "nadam.NAdam", "radam.RAdam", "lbfgs.LBFGS",
               "sparse_adam.SparseAdam"]
_DISTILLER_CLASSES = [
    # quantizer_metadata['type'] and the enums in its params
    "distiller.quantization.range_linear.PostTrainLinearQuantizer",
    "distiller.quantization.range_linear.QuantAwareTrainRangeLinearQuantizer",
    "distiller.quantization.range_linear.LinearQuantMode",
    "distiller.quantization.range_linear.ClipMode",
    "distiller.quantization.clipped_linear.WRPNQuantizer",
    "distiller.quantization.clipped_linear.DorefaQuantizer",
    "distiller.quantization.clipped_linear.PACTQuantizer",
]

#: dotted path -> inert stand-in: everything beyond tensors and containers a checkpoint may name
ALLOWED: dict[str, type] = {
    "distiller.thinning.ThinningRecipe": ThinningRecipe,
    "distiller.quantization.quantizer.QBits": QBits,
    # checkpoint['optimizer_type'] = type(optimizer): a class object, never called
    **{f"torch.optim.{path}": _stand_in(f"torch.optim.{path}") for path in _OPTIMIZERS},
    **{path: _stand_in(path) for path in _DISTILLER_CLASSES},
}


# --- loading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: its tensors, masks and the little else a simulation needs."""

    path: str
    arch: Optional[str]
    epoch: Optional[int]
    state_dict: OrderedDict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]            # parameter -> bool mask (masks_dict entries that are set)
    thinning_recipes: tuple[Any, ...] = ()
    other: Mapping[str, Any] = field(default_factory=dict)   # the remaining top-level entries, as loaded

    def parameters(self) -> OrderedDict[str, torch.Tensor]:
        """The floating-point parameters (batch-norm running statistics left out)."""
        return OrderedDict((n, t) for n, t in self.state_dict.items()
                           if is_parameter_name(n) and t.is_floating_point())

    def nonzero(self, name: str) -> torch.Tensor:
        """Boolean pattern of the weights actually stored: non-zero and kept by the mask."""
        kept = self.state_dict[name] != 0
        if name in self.masks:
            kept &= self.masks[name]
        return kept


def _load_error(err: Exception) -> str:
    """One line for a failed restricted load: a refusal when the file names something outside
    the allow-list, otherwise the file is not a checkpoint at all."""
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"refused: it pickles {found.group(1)}, which is not a tensor, a plain container or a known "
                "Distiller object (loading never runs code from a checkpoint; nothing was run)")
    if re.search(r"Can only (build|create|append|extend|set)|unrecognized function", text):
        detail = next(line.strip() for line in text.splitlines() if re.search(r"Can only|unrecognized", line))
        return f"refused: {detail} (nothing was run)"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(
        ("Weights only load failed", "Check the documentation", "In PyTorch", "(1)", "(2)"))]
    return f"not a PyTorch checkpoint ({lines[-1] if lines else type(err).__name__})"


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a Distiller (or plain torch) checkpoint without running code from it."""
    source = str(path)
    if Path(path).is_file():    # the loaded tensors take at least the file's bytes
        check_memory(Path(path).stat().st_size, "loading it", source, "")
    try:
        with torch.serialization.safe_globals([(cls, name) for name, cls in ALLOWED.items()]):
            data = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(source, "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a directory, expected a checkpoint file") from None
    except pickle.UnpicklingError as err:
        raise ConfigError(source, "", _load_error(err)) from None
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile, OSError, AttributeError,
            TypeError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(source, "", f"not a PyTorch checkpoint ({type(err).__name__}: {first})") from None
    return _checked(data, source)


def _checked(data: Any, source: str) -> Checkpoint:
    if isinstance(data, Mapping) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        data = {"state_dict": data}   # a bare state_dict, as torch.save(model.state_dict()) writes
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", f"expected a checkpoint dict with a state_dict, got {type(data).__name__}")
    if "state_dict" not in data:
        raise ConfigError(source, "state_dict", f"missing (keys: {', '.join(map(str, data)) or 'none'})")
    state = data["state_dict"]
    if not isinstance(state, Mapping) or not state:
        raise ConfigError(source, "state_dict", "expected a non-empty mapping of names to tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ConfigError(source, f"state_dict[{quote(name)}]", f"expected a tensor, got {type(value).__name__}")
        _check_tensor(value, source, f"state_dict[{quote(name)}]")
    check_memory(sum(t.numel() * t.element_size() for t in state.values()) * 3, "its tensors (loaded, masked, "
                 "encoded)", source, "state_dict")
    arch = data.get("arch")
    if arch is not None and not isinstance(arch, str):
        raise ConfigError(source, "arch", f"expected a string, got {type(arch).__name__}")
    epoch = data.get("epoch")
    if epoch is not None and not isinstance(epoch, int):
        raise ConfigError(source, "epoch", f"expected an integer, got {type(epoch).__name__}")
    masks = _masks(data.get("compression_sched"), state, source)
    recipes = data.get("thinning_recipes") or ()
    if not isinstance(recipes, (list, tuple)) or not all(isinstance(r, ThinningRecipe) for r in recipes):
        raise ConfigError(source, "thinning_recipes", "expected a list of Distiller ThinningRecipe objects")
    known = {"state_dict", "arch", "epoch", "compression_sched", "thinning_recipes"}
    other = {k: v for k, v in data.items() if k not in known}
    return Checkpoint(source, arch, epoch, OrderedDict(state), masks, tuple(recipes), other)


def _check_tensor(tensor: torch.Tensor, source: str, where: str) -> None:
    """Refuse a tensor with no elements along a dimension (a (0, 64) weight leaves nothing to
    simulate) or one that claims more elements than its storage holds (a stride-0 view of a few
    bytes can declare 64 GB, and would be materialised by the first operation on it)."""
    if tensor.dim() and 0 in tensor.shape:
        raise ConfigError(source, where, f"shape {tuple(tensor.shape)} has no elements")
    if tensor.numel() == 0:
        return
    reach = tensor.storage_offset() + 1 + sum((size - 1) * abs(stride) for size, stride in
                                              zip(tensor.shape, tensor.stride()))
    storage = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
    overlapping = any(stride == 0 and size > 1 for size, stride in zip(tensor.shape, tensor.stride()))
    if reach > storage or overlapping or tensor.numel() > storage:
        raise ConfigError(source, where, f"shape {tuple(tensor.shape)} claims {tensor.numel():,} elements but its "
                          f"storage holds {storage:,} (a view with repeated or out-of-range strides)")


def _masks(sched: Any, state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    if sched is None:
        return {}
    if not isinstance(sched, Mapping):
        raise ConfigError(source, "compression_sched", f"expected a dict, got {type(sched).__name__}")
    table = sched.get("masks_dict") or {}
    if not isinstance(table, Mapping):
        raise ConfigError(source, "compression_sched.masks_dict", f"expected a dict, got {type(table).__name__}")
    index = NameIndex(state)
    out = {}
    for name, mask in table.items():
        if mask is None:
            continue
        where = f"compression_sched.masks_dict[{name!r}]"
        if not isinstance(mask, torch.Tensor):
            raise ConfigError(source, where, f"expected a tensor or None, got {type(mask).__name__}")
        _check_tensor(mask, source, where)
        actual = index.resolve(str(name))
        if actual is None:
            raise ConfigError(source, where, f"{index.why_not(str(name))} in state_dict")
        if tuple(mask.shape) != tuple(state[actual].shape):
            raise ConfigError(source, where, f"shape {tuple(mask.shape)} differs from the weight's "
                              f"{tuple(state[actual].shape)}")
        out[actual] = mask != 0
    return out


# --- a checkpoint as a workload -----------------------------------------------------------------

def shipped_workload(ckpt: Checkpoint) -> Path:
    """The shipped workload named by the checkpoint's ``arch`` (``workloads/<arch>.yaml``)."""
    shipped = sorted(p.stem for p in WORKLOADS_DIR.glob("*.yaml"))
    if ckpt.arch is None:
        raise ConfigError(ckpt.path, "arch", f"missing, so the architecture is unknown; give the workload "
                          f"(shipped: {', '.join(shipped)})")
    path = WORKLOADS_DIR / f"{ckpt.arch}.yaml"
    if not _ARCH.match(ckpt.arch) or not path.is_file():
        raise ConfigError(ckpt.path, "arch", f"{ckpt.arch!r} has no shipped workload "
                          f"(shipped: {', '.join(shipped)}); give the workload")
    return path


_DTYPES = {torch.float32: DType.FP32, torch.float16: DType.FP16, torch.int8: DType.INT8}


def checkpoint_workload(ckpt: Checkpoint, workload_path: Optional[str | Path] = None) -> Workload:
    """The workload's layer graph at the checkpoint's shapes, with its real non-zero patterns."""
    workload_path = Path(workload_path) if workload_path is not None else shipped_workload(ckpt)
    spec = load_workload_spec(workload_path)
    weights = NameIndex(n for n, t in ckpt.state_dict.items() if n.endswith(".weight") and t.dim() >= 2)
    specs, claimed = [], {}
    for ls in spec.layers:
        if ls.kind not in (LayerKind.CONV, LayerKind.FC):
            specs.append(ls)
            continue
        module = ls.module or ls.name
        actual = weights.resolve(f"{module}.weight")
        if actual is None:
            raise ConfigError(ckpt.path, "state_dict", f"no weight for layer {ls.name} ({module}.weight) of "
                              f"{workload_path}: it {weights.why_not(module + '.weight')} "
                              f"(weights: {weights.sample()})")
        claimed[ls.name] = actual
        shape = tuple(ckpt.state_dict[actual].shape)
        where = f"state_dict[{actual!r}]"
        if ls.kind is LayerKind.CONV:
            if len(shape) != 4 or shape[2:] != (ls.kernel, ls.kernel):
                raise ConfigError(ckpt.path, where, f"shape {shape} is not a {ls.kernel}x{ls.kernel} convolution "
                                  f"weight, as layer {ls.name} of {workload_path} is")
            update = {"in_channels": shape[1] * (ls.groups or 1), "out_channels": shape[0]}
        else:
            if len(shape) != 2:
                raise ConfigError(ckpt.path, where, f"shape {shape} is not a fully-connected weight, as layer "
                                  f"{ls.name} of {workload_path} is")
            update = {"in_features": shape[1], "out_features": shape[0]}
        specs.append(ls.model_copy(update=update))
    unclaimed = [n for n in weights.names if n not in claimed.values()]
    if unclaimed:
        raise ConfigError(ckpt.path, f"state_dict[{unclaimed[0]!r}]",
                          f"matches no conv or fc layer of {workload_path}")
    first = ckpt.state_dict[next(iter(claimed.values()))] if claimed else None
    dtype = _DTYPES.get(first.dtype, spec.dtype) if first is not None else spec.dtype
    try:
        base = resolve(spec.model_copy(update={"layers": specs, "dtype": dtype}), str(workload_path))
    except ConfigError as err:
        # name the checkpoint weight whose shape broke the chain
        found = re.match(r"layers\[(\d+)\]", err.field)
        broken = spec.layers[int(found.group(1))] if found else None
        weight = claimed.get(broken.name) if broken is not None else None
        where = f"state_dict[{weight!r}]" if weight else err.field
        raise ConfigError(ckpt.path, where, f"{err.message} (layer {broken.name if broken else '?'} of "
                          f"{workload_path}, at the checkpoint's shapes)") from None
    layers, masks = [], {}
    for layer in base.layers:
        if layer.name in claimed:
            pattern = ckpt.nonzero(claimed[layer.name]).numpy()
            masks[layer.name] = pattern
            layer = replace(layer, density=float(np.count_nonzero(pattern)) / pattern.size)
        layers.append(layer)
    return base.with_layers(layers, name=f"{base.name}, {Path(ckpt.path).name}", path=ckpt.path, weight_masks=masks)


# --- writing --------------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                    parameters: list[str], arch: Optional[str], epoch: int, option: str = "out") -> None:
    """Write Distiller's checkpoint layout atomically (a failed write leaves no half file).

    ``masks_dict`` has an entry per parameter: the mask as a float tensor of 0 / 1 (Distiller's
    type) where the parameter was pruned, None elsewhere.
    """
    document = {
        "epoch": epoch,
        "arch": arch,
        "state_dict": OrderedDict((n, t.detach().clone().contiguous()) for n, t in state_dict.items()),
        "compression_sched": {"masks_dict": {n: (masks[n].to(torch.float32) if n in masks else None)
                                             for n in parameters}},
    }
    write_atomically(path, option, lambda handle: torch.save(document, handle), binary=True)
