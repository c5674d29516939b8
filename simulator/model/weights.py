"""The weights a layer is simulated with, and the magnitude rule that prunes them (``torch.nn.utils.prune``).

:class:`MagnitudePruning` is a pruning method in the same shape as torch's ``L1Unstructured``
(one ``compute_mask``), but selects the weights to keep with a sampled, linear-time selection
(:func:`simulator.model.seeded.keep_mask`) instead of a full ``topk``. Without a checkpoint,
weights are drawn deterministically from a seed and the layer's name, like torch's default
initialisation (:func:`simulator.model.seeded.synthetic_weight_array`; the numpy-only module is
what the encoding cache's first run uses, so it never imports torch).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn.utils import prune

from .seeded import keep_mask, synthetic_weight_array
from .workload import Layer


class MagnitudePruning(prune.BasePruningMethod):
    """Keep the ``density`` share of weights with the largest magnitude (exact count).

    Same result as ``prune.L1Unstructured(amount=1 - density)`` up to the order of ties,
    found with a sampled ``numpy.partition`` (linear time) rather than ``torch.topk``.
    """

    PRUNING_TYPE = "unstructured"

    def __init__(self, density: float) -> None:
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        self.density = density

    def compute_mask(self, t: torch.Tensor, default_mask: Optional[torch.Tensor]) -> torch.Tensor:
        out = torch.from_numpy(keep_mask(t.detach().reshape(-1).numpy(), self.density).reshape(t.shape))
        if default_mask is not None:
            out &= default_mask.to(torch.bool)
        return out

    @classmethod
    def apply(cls, module: torch.nn.Module, name: str, density: float):  # type: ignore[override]
        """Prune ``module.<name>`` in place with torch's re-parametrisation (adds ``<name>_mask``)."""
        return super().apply(module, name, density=density)


def synthetic_weights(layer: Layer, seed: int) -> torch.Tensor:
    """Weights drawn like torch's default init (uniform, bound 1/sqrt(fan_in)), reproducibly."""
    return torch.from_numpy(synthetic_weight_array(layer, seed))


def magnitude_mask(weights: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask of the weights magnitude pruning keeps."""
    return MagnitudePruning(density).compute_mask(weights, None)


