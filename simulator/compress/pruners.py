"""Distiller's pruning rules as ``torch.nn.utils.prune`` methods.

Each rule is one ``BasePruningMethod`` with one ``compute_mask``, in the shape of torch's own
methods, and follows Distiller's arithmetic exactly (``distiller/pruning/*.py``):

* :class:`SparsityLevelPruning` (SparsityLevelParameterPruner, AutomatedGradualPruner): rank
  the magnitudes, take the ``int(sparsity x n)``-th smallest as the threshold (Distiller
  truncates, it does not round) and keep the weights strictly above it, so weights tied with
  the threshold go together;
* :class:`ThresholdPruning` (MagnitudeParameterPruner, SensitivityPruner): keep ``|w| > t``;
* :class:`RankedStructurePruning` (L1/L2RankedStructureParameterPruner and their ``_AGP``
  forms): rank whole filters, channels or rows by their L1 or L2 norm, prune the
  ``int(sparsity x groups)`` weakest the same way (norm strictly above the threshold stays).

All are ``PRUNING_TYPE = "global"``: the mask is computed over the whole tensor it is given,
and Distiller's targets are absolute (a sparsity of the whole tensor, not of what is left).
Distiller ranks the weights as they stand, already masked; pass those as the tensor (or as
``importance_scores`` to ``apply``), as :mod:`simulator.compress.schedule` does.
"""

from __future__ import annotations

import enum
from typing import Optional

import numpy as np
import torch
from torch.nn.utils import prune


class GroupType(str, enum.Enum):
    """The structures a ranked pruner removes whole (Distiller's ``group_type``)."""

    FILTERS = "Filters"    # weight[f, :, :, :]: one output channel of a convolution
    CHANNELS = "Channels"  # weight[:, c, :, :] of a convolution, weight[:, c] of an FC layer
    ROWS = "Rows"          # weight[:, r] of an FC layer: one input feature (see below)

    # Distiller's "rows" are rows of the matrix a GEMM multiplies, which is torch's FC weight
    # transposed ("we treat columns as rows", ranked_structures_pruner.py), so a Rows pruner
    # zeroes torch columns. The fixture schedule resnet20_filters.schedule_agp.yaml records it:
    # its 50% Rows pruner leaves fc.weight (10, 64) with 320 non-zeros, Rows 50%, 2D 0%, i.e.
    # 32 zero columns and no zero row.

    @classmethod
    def parse(cls, text: str) -> GroupType:
        """Distiller's spelling; ``3D`` is its other name for filters."""
        return cls.FILTERS if text == "3D" else cls(text)


class Norm(enum.IntEnum):
    """The norm that ranks structures: L1 or L2."""

    L1 = 1
    L2 = 2


def _validate_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest (1-based) of ``values``, found with a linear-time partition.

    Distiller takes ``torch.topk(..., largest=False, sorted=True)[0][-1]``: the same number.
    ``values`` are magnitudes (>= 0). Speed trick: the zeros (weights pruned earlier) are the
    smallest, so only the non-zeros are partitioned, a tenth of a 90%-sparse tensor.
    """
    flat = values.detach().reshape(-1).cpu().numpy()
    nonzero = flat[flat != 0]
    zeros = flat.size - nonzero.size
    if k <= zeros:
        return torch.zeros((), dtype=values.dtype)
    return torch.tensor(np.partition(nonzero, k - zeros - 1)[k - zeros - 1], dtype=values.dtype)


def group_dim(group: GroupType, shape: torch.Size) -> int:
    """The tensor dimension whose slices are the structures of ``group``.

    Raises ValueError when the tensor has no such structures (filters of an FC weight, rows
    of a convolution), naming the shape.
    """
    if group is GroupType.FILTERS:
        if len(shape) < 3:
            raise ValueError(f"filters need a 3-D or 4-D (convolution) weight, got shape {tuple(shape)}")
        return 0
    if group is GroupType.CHANNELS:
        if len(shape) not in (2, 4):
            raise ValueError(f"channels need a 2-D or 4-D weight, got shape {tuple(shape)}")
        return 1
    if len(shape) != 2:
        raise ValueError(f"rows need a 2-D (fully-connected) weight, got shape {tuple(shape)}")
    return 1


def group_norms(t: torch.Tensor, group: GroupType, norm: Norm) -> torch.Tensor:
    """The L1 / L2 norm of every structure of ``group`` in ``t`` (one value per slice)."""
    dim = group_dim(group, t.shape)
    view = t.transpose(0, dim).reshape(t.shape[dim], -1)
    return torch.linalg.vector_norm(view.float(), ord=int(norm), dim=1)


def expand_groups(keep: torch.Tensor, group: GroupType, shape: torch.Size) -> torch.Tensor:
    """A per-structure keep vector broadcast to the whole weight's shape."""
    view = [1] * len(shape)
    view[group_dim(group, shape)] = -1
    return keep.reshape(view).expand(shape).clone()


class SparsityLevelPruning(prune.BasePruningMethod):
    """Prune ``int(sparsity x n)`` weights of smallest magnitude (Distiller's ``prune_level``).

    The threshold is the ``int(sparsity x n)``-th smallest magnitude and only weights strictly
    above it stay, so ties at the threshold are pruned together (Distiller's
    ``threshold_mask``). A sparsity too small to prune one weight leaves the mask as it is.
    """

    PRUNING_TYPE = "global"

    def __init__(self, sparsity: float) -> None:
        _validate_fraction("sparsity", sparsity)
        self.sparsity = sparsity

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        count = int(self.sparsity * t.numel())
        if count == 0:
            return default_mask.clone()
        magnitude = t.abs()
        return default_mask * (magnitude > kth_smallest(magnitude, count)).to(default_mask.dtype)


class ThresholdPruning(prune.BasePruningMethod):
    """Keep weights whose magnitude is strictly above ``threshold`` (Distiller's ``threshold_mask``)."""

    PRUNING_TYPE = "global"

    def __init__(self, threshold: float) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold!r}")
        self.threshold = threshold

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        return default_mask * (t.abs() > self.threshold).to(default_mask.dtype)


class RankedStructurePruning(prune.BasePruningMethod):
    """Prune the ``int(sparsity x groups)`` structures with the smallest L1 / L2 norm.

    ``keep_groups`` (a boolean vector, one per structure) imposes another tensor's choice
    instead of ranking this one: Distiller's ``group_dependency: Leader``.
    """

    PRUNING_TYPE = "global"

    def __init__(self, sparsity: float, group: GroupType, norm: Norm,
                 keep_groups: Optional[torch.Tensor] = None) -> None:
        _validate_fraction("sparsity", sparsity)
        self.sparsity = sparsity
        self.group = GroupType(group)
        self.norm = Norm(norm)
        self.keep_groups = keep_groups

    def ranked_keep(self, t: torch.Tensor) -> Optional[torch.Tensor]:
        """The structures of ``t`` that survive, or None when the sparsity prunes none."""
        norms = group_norms(t, self.group, self.norm)
        count = int(self.sparsity * norms.numel())
        if count == 0:
            return None
        return norms > kth_smallest(norms, count)

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        keep = self.keep_groups if self.keep_groups is not None else self.ranked_keep(t)
        if keep is None:
            return default_mask.clone()
        groups = group_norms(t, self.group, self.norm).numel()
        if keep.numel() != groups:
            raise ValueError(f"the leader keeps {keep.numel()} {self.group.value.lower()}, "
                             f"this weight has {groups}")
        return default_mask * expand_groups(keep, self.group, t.shape).to(default_mask.dtype)
