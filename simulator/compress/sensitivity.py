"""Pruning sensitivity analysis, as Distiller's ``perform_sensitivity_analysis`` does it.

Each weight is pruned alone, by magnitude, to each sparsity level in turn (Distiller's
``SparsityLevelParameterPruner`` rule: :class:`~simulator.compress.pruners.SparsityLevelPruning`),
every other weight left as it is, and the model is evaluated: how much accuracy does this
layer lose at this sparsity? The result is Distiller's CSV, ``parameter,sparsity,top1,top5,loss``
(top-1 / top-5 in percent, as Distiller writes them), one row per weight and level, which is
what Distiller users read to choose per-layer pruning levels (its ``sensitivities_to_png``
plot is :func:`simulator.output.plots.sensitivity_curves`).

The analysis works on any ``nn.Module``; the caller supplies the evaluation.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..base.errors import OptionError
from .pruners import SparsityLevelPruning

#: Distiller's CSV header.
CSV_HEADER = ("parameter", "sparsity", "top1", "top5", "loss")


@dataclass(frozen=True)
class Evaluation:
    """A model's accuracy on a labelled set."""

    top1_pct: float     # correct first guesses, percent
    top5_pct: float     # label among the five highest scores, percent
    loss: float         # mean cross-entropy


@dataclass(frozen=True)
class SensitivityRow:
    """One weight pruned alone to one sparsity, and how the model did."""

    parameter: str
    sparsity: float
    top1_pct: float
    top5_pct: float
    loss: float


def sparsity_levels(step: float, stop: float = 0.95) -> list[float]:
    """Distiller's default levels ``np.arange(0.0, 0.95, 0.05)``, rounded (``0.15``, not
    ``0.15000000000000002``) so the CSV reads cleanly."""
    if not 0.0 < step < 1.0:
        raise ValueError(f"step must be in (0, 1), got {step}")
    levels, i = [], 0
    while i * step < stop - 1e-9:
        levels.append(round(i * step, 10))
        i += 1
    return levels


def sensitivity_analysis(model: nn.Module, parameters: Sequence[str], sparsities: Sequence[float],
                         evaluate: Callable[[nn.Module], Evaluation],
                         progress: Callable[[str], None] = lambda _: None) -> list[SensitivityRow]:
    """Prune each named parameter alone to each sparsity and evaluate; ``model`` is left unchanged.

    Masks are computed from the parameter's values as given (a pruned model's zeros count
    among the smallest magnitudes, so levels below its sparsity change nothing).
    """
    own = dict(model.named_parameters())
    rows = []
    for name in parameters:
        if name not in own:
            raise KeyError(f"{name} is not a parameter of the model")
        parameter = own[name]
        original = parameter.detach().clone()
        try:
            for sparsity in sparsities:
                progress(f"sensitivity: {name} at {sparsity:.0%}")
                mask = SparsityLevelPruning(sparsity).compute_mask(original, torch.ones_like(original))
                with torch.no_grad():
                    parameter.copy_(original * mask)
                result = evaluate(model)
                rows.append(SensitivityRow(name, float(sparsity), result.top1_pct, result.top5_pct, result.loss))
        finally:
            with torch.no_grad():
                parameter.copy_(original)
    return rows


def write_sensitivity_csv(rows: Sequence[SensitivityRow], path: str | Path, option: str = "out") -> Path:
    """Write Distiller's sensitivity CSV atomically; returns the path."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OptionError(option, f"{path}: directory {directory} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")    # then renamed: never a half-written file
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for r in rows:
            writer.writerow([r.parameter, r.sparsity, r.top1_pct, r.top5_pct, r.loss])
    os.replace(tmp, path)
    return path
