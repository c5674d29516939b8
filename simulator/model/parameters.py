"""Named weight tensors, as Distiller schedules and checkpoints name them.

Distiller names a parameter by its module path, and a model wrapped in ``DataParallel`` gains
a ``module`` component: a whole-model wrapper gives ``module.layer1.0.conv1.weight``, a wrapper
around ``features`` only (Distiller's AlexNet) gives ``features.module.0.weight``. The same
parameter is ``layer1.0.conv1.weight`` in a workload. :func:`canonical_name` drops every
``module`` component, wherever it stands, and :class:`NameIndex` looks names up that way, so
a schedule written for one wrapping applies to another.

:class:`ParameterTree` is an ``nn.Module`` holding nothing but named parameters (no forward),
built from a name -> tensor mapping; ``torch.nn.utils.prune`` works on it as on any model, so
a schedule prunes a checkpoint's ``state_dict`` or a workload's synthetic weights alike.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Mapping, Optional

import torch
from torch import nn

from .weights import synthetic_weights
from .workload import Workload

DATA_PARALLEL = "module"  # the component DataParallel / DistributedDataParallel insert

# state_dict entries that are buffers, not parameters: batch norm's running statistics.
# A state_dict does not say which entries were parameters; these suffixes are how torch's
# BatchNorm names its buffers, and Distiller's pruners only ever see parameters.
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def canonical_name(name: str) -> str:
    """``features.module.0.weight`` and ``module.features.0.weight`` -> ``features.0.weight``."""
    return ".".join(part for part in name.split(".") if part != DATA_PARALLEL)


def is_parameter_name(name: str) -> bool:
    """False for batch-norm buffers (running statistics), True otherwise."""
    return not name.endswith(BUFFER_SUFFIXES)


class NameIndex:
    """Look up actual parameter names by any DataParallel spelling of them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self._by_canonical: dict[str, str] = {}
        self.ambiguous: dict[str, list[str]] = {}
        for name in self.names:
            key = canonical_name(name)
            if key in self._by_canonical:
                self.ambiguous.setdefault(key, [self._by_canonical[key]]).append(name)
            else:
                self._by_canonical[key] = name

    def resolve(self, name: str) -> Optional[str]:
        """The actual name ``name`` refers to, or None if it refers to none (or to several)."""
        key = canonical_name(name)
        if key in self.ambiguous:
            return None
        return self._by_canonical.get(key)

    def why_not(self, name: str) -> str:
        """Why ``name`` does not resolve, for an error message."""
        key = canonical_name(name)
        if key in self.ambiguous:
            return f"matches several parameters ({', '.join(self.ambiguous[key])})"
        return "matches no parameter"

    def sample(self, limit: int = 6) -> str:
        """A few of the names, for error messages."""
        shown = ", ".join(self.names[:limit])
        return shown + (f", ... ({len(self.names)} in all)" if len(self.names) > limit else "")


class _Holder(nn.Module):
    """A module that only holds parameters (and child holders)."""


class ParameterTree(nn.Module):
    """An ``nn.Module`` whose ``named_parameters()`` are exactly the given tensors.

    ``tree.module_of(name)`` returns ``(module, attribute)`` for ``torch.nn.utils.prune``;
    ``tree.current(name)`` the tensor as it stands (masked, once pruned).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self._order = list(tensors)
        for name, tensor in tensors.items():
            module, attribute = self._walk(name, create=True)
            module.register_parameter(attribute, nn.Parameter(tensor.detach().clone(), requires_grad=False))

    def _walk(self, name: str, create: bool = False) -> tuple[nn.Module, str]:
        *path, attribute = name.split(".")
        module: nn.Module = self
        for part in path:
            child = module._modules.get(part)
            if child is None:
                if not create:
                    raise KeyError(name)
                child = _Holder()
                module.add_module(part, child)
            module = child
        return module, attribute

    @property
    def names(self) -> list[str]:
        """Parameter names in the order they were given (a model's ``named_parameters`` order)."""
        return list(self._order)

    def module_of(self, name: str) -> tuple[nn.Module, str]:
        """The module holding parameter ``name`` and the attribute name within it."""
        return self._walk(name)

    def current(self, name: str) -> torch.Tensor:
        """The parameter as it stands now (``orig * mask`` once pruned)."""
        module, attribute = self._walk(name)
        return getattr(module, attribute).detach()

    def mask(self, name: str) -> Optional[torch.Tensor]:
        """The boolean pruning mask of ``name``, or None if it was never pruned."""
        module, attribute = self._walk(name)
        buffer = getattr(module, attribute + "_mask", None)
        return None if buffer is None else buffer.detach().to(torch.bool)

    def tensors(self) -> OrderedDict[str, torch.Tensor]:
        """Every parameter as it stands now, in order."""
        return OrderedDict((name, self.current(name)) for name in self._order)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)


def workload_parameters(workload: Workload, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A workload's weights (``<module>.weight``, seeded like torch's default initialisation) and
    zero biases (``<module>.bias``), in layer order: what a schedule prunes without a checkpoint."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for layer in workload.layers:
        if not layer.kind.has_weights:
            continue
        out[f"{layer.module}.weight"] = synthetic_weights(layer, seed)
        out[f"{layer.module}.bias"] = torch.zeros(layer.out_shape[0])
    return out
