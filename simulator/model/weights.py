"""The weights a layer is simulated with, and the magnitude rule that prunes them (``torch.nn.utils.prune``).

:class:`MagnitudePruning` is a pruning method in the same shape as torch's ``L1Unstructured``
(one ``compute_mask``), but selects the weights to keep with a linear-time partition instead
of a full ``topk``: pruning VGG-16's 100-million-weight FC6 takes about a second instead of
half a minute. Without a checkpoint, weights are drawn deterministically from a seed and the
layer's name, like torch's default initialisation.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.nn.utils import prune

from .workload import Layer, layer_seed


class MagnitudePruning(prune.BasePruningMethod):
    """Keep the ``density`` share of weights with the largest magnitude (exact count).

    Same result as ``prune.L1Unstructured(amount=1 - density)`` up to the order of ties,
    found with ``numpy.partition`` (linear time) rather than ``torch.topk``.
    """

    PRUNING_TYPE = "unstructured"

    def __init__(self, density: float) -> None:
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        self.density = density

    def compute_mask(self, t: torch.Tensor, default_mask: Optional[torch.Tensor]) -> torch.Tensor:
        magnitude = t.detach().abs().reshape(-1).numpy()
        keep = int(round(self.density * magnitude.size))
        if keep >= magnitude.size:
            mask = np.ones(magnitude.size, dtype=bool)
        elif keep == 0:
            mask = np.zeros(magnitude.size, dtype=bool)
        else:
            cut = magnitude.size - keep
            threshold = np.partition(magnitude, cut)[cut]
            mask = magnitude > threshold
            ties = np.flatnonzero(magnitude == threshold)[: keep - int(mask.sum())]
            mask[ties] = True
        out = torch.from_numpy(mask.reshape(t.shape))
        if default_mask is not None:
            out &= default_mask.to(torch.bool)
        return out

    @classmethod
    def apply(cls, module: torch.nn.Module, name: str, density: float):  # type: ignore[override]
        """Prune ``module.<name>`` in place with torch's re-parametrisation (adds ``<name>_mask``)."""
        return super().apply(module, name, density=density)


def synthetic_weights(layer: Layer, seed: int) -> torch.Tensor:
    """Weights drawn like torch's default init (uniform, bound 1/sqrt(fan_in)), reproducibly."""
    generator = torch.Generator().manual_seed(layer_seed(seed, layer.name))
    fan_in = layer.weight_matrix_shape[1]
    bound = 1.0 / max(fan_in, 1) ** 0.5
    return torch.empty(layer.weight_shape).uniform_(-bound, bound, generator=generator)


def magnitude_mask(weights: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask of the weights magnitude pruning keeps."""
    return MagnitudePruning(density).compute_mask(weights, None)


