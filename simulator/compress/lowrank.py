"""Low-rank factorisation: a layer replaced by two thinner layers, as VGG16-SVD does for FC6.

A weight matrix ``W`` (rows = outputs, columns = inputs; a convolution's ``out x (in k k)``) is
factored by its singular value decomposition ``W = U S V^T`` and truncated at rank ``r``:

* an FC layer ``in -> out`` becomes ``<name>_a`` (``in -> r``, weights ``V_r^T``, no bias, no
  ReLU: a linear projection) followed by ``<name>_b`` (``r -> out``, weights ``U_r S_r``, the
  layer's bias and ReLU), Qiu et al.'s FC6 in ``workloads/vgg16-svd.yaml``;
* a convolution becomes a ``k x k`` convolution to ``r`` channels (same stride and padding)
  followed by a ``1 x 1`` convolution to the ``out`` channels.

Work falls from ``out x in`` to ``r x (in + out)`` multiply-adds per output position, so the
factoring pays when ``r < out x in / (in + out)``.

The rank is a fraction of the full rank ``min(out, in k k)``, an absolute rank, or the smallest
rank keeping a share of the *energy* (the sum of squared singular values) of the layer's weights:
the seeded weights the simulator draws (:func:`simulator.model.seeded.synthetic_weight_array`,
zeroed where the layer has a mask). Seeded weights are uniform noise, whose energy is spread over
all singular values, so an energy threshold keeps a high rank where trained weights (which
concentrate their energy) would keep a low one: give a fraction or a rank to model a published
factoring.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from ..base.errors import OptionError
from ..model import seeded
from ..model.graphedit import replace_layer
from ..model.workload import Layer, LayerKind, Workload

SELECTORS = ("all-fc", "all-conv", "all")


@dataclass(frozen=True)
class RankRule:
    """How to choose a layer's rank: exactly one of a fraction of the full rank, a rank, an energy."""

    fraction: Optional[float] = None
    rank: Optional[int] = None
    energy: Optional[float] = None

    def __post_init__(self) -> None:
        given = [v for v in (self.fraction, self.rank, self.energy) if v is not None]
        if len(given) != 1:
            raise OptionError("low_rank", "give one of a fraction of the full rank, a rank or an energy")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise OptionError("low_rank", f"a fraction of the full rank in (0, 1], got {self.fraction}")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise OptionError("low_rank", f"an energy share in (0, 1], got {self.energy}")
        if self.rank is not None and self.rank < 1:
            raise OptionError("low_rank", f"a rank of at least 1, got {self.rank}")

    @property
    def needs_singular_values(self) -> bool:
        """Only the energy rule looks at the weights."""
        return self.energy is not None


@dataclass(frozen=True)
class LowRankSpec:
    """One ``--low-rank`` value: which layers, and the rank rule."""

    selector: str
    rule: RankRule


def parse_low_rank(text: str) -> LowRankSpec:
    """``LAYERS:VALUE``: LAYERS a layer name, ``all-fc``, ``all-conv`` or ``all``; VALUE a fraction
    of the full rank (``0.25``), a rank (``500``) or ``energy=F``. Errors name the option."""
    selector, sep, value = text.strip().rpartition(":")
    if not sep or not selector or not value:
        raise OptionError("low_rank", f"{text!r}: expected LAYERS:VALUE (fc6:0.25, fc6:500, fc6:energy=0.9, "
                          f"all-fc:0.25)")
    found = re.fullmatch(r"energy=(.+)", value)
    try:
        if found:
            rule = RankRule(energy=float(found.group(1)))
        elif re.fullmatch(r"\d+", value) and int(value) > 1:
            rule = RankRule(rank=int(value))
        else:
            rule = RankRule(fraction=float(value))
    except ValueError:
        raise OptionError("low_rank", f"{text!r}: {value!r} is not a fraction, a rank or energy=F") from None
    except OptionError as err:
        raise OptionError("low_rank", f"{text!r}: {err.template}") from None
    return LowRankSpec(selector, rule)


def select_layers(workload: Workload, selector: str) -> list[str]:
    """The layer names a selector picks (``all-fc``, ``all-conv``, ``all`` or one layer's name)."""
    kinds = {"all-fc": (LayerKind.FC,), "all-conv": (LayerKind.CONV,), "all": (LayerKind.FC, LayerKind.CONV)}
    if selector in kinds:
        return [l.name for l in workload.layers if l.kind in kinds[selector]]
    names = [l.name for l in workload.layers]
    if selector not in names:
        weighted = [l.name for l in workload.layers if l.kind.has_weights]
        shown = ", ".join(weighted[:8]) + (", ..." if len(weighted) > 8 else "")
        raise OptionError("low_rank", f"{selector!r} is not a layer of {workload.name} (conv / fc layers: "
                          f"{shown}; or {', '.join(SELECTORS)})")
    if not workload.layer(selector).kind.has_weights:
        raise OptionError("low_rank", f"{selector!r} is a {workload.layer(selector).kind.value} layer: only conv "
                          "and fc layers have weights to factor")
    return [selector]


# --- the factoring --------------------------------------------------------------------------------

def weight_matrix(layer: Layer, workload: Workload, seed: int) -> np.ndarray:
    """The layer's seeded weights as the matrix it multiplies (zero where its mask prunes)."""
    weights = seeded.synthetic_weight_array(layer, seed)
    if layer.name in workload.weight_masks:
        weights = weights * np.asarray(workload.weight_masks[layer.name], dtype=bool).reshape(weights.shape)
    return weights.reshape(layer.weight_matrix_shape)


def singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values, largest first, from the eigenvalues of the Gram matrix of the shorter side
    (one ``m x m`` product instead of a full SVD: FC6's 4096 x 25088 takes seconds, not minutes)."""
    short = matrix if matrix.shape[0] <= matrix.shape[1] else matrix.T
    gram = (short @ short.T).astype(np.float64)
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))


def choose_rank(rule: RankRule, full_rank: int, values: Optional[np.ndarray] = None) -> int:
    """The rank a rule gives for a layer of ``full_rank`` (``values``: its singular values, for energy)."""
    if rule.rank is not None:
        return min(rule.rank, full_rank)
    if rule.fraction is not None:
        return max(1, min(full_rank, int(round(rule.fraction * full_rank))))
    if rule.energy is None or values is None:   # RankRule holds exactly one rule
        raise ValueError("an energy rule needs the layer's singular values")
    energy = np.cumsum(values.astype(np.float64) ** 2)
    if energy[-1] == 0:
        return 1
    return int(min(full_rank, np.searchsorted(energy / energy[-1], rule.energy - 1e-12) + 1))


def truncated_factors(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``(first, second)`` with ``second @ first`` the best rank-``rank`` approximation of ``matrix``:
    ``first = V_r^T`` (rank x cols), ``second = U_r S_r`` (rows x rank)."""
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    return vt[:rank], u[:, :rank] * s[:rank]


def relative_error(values: np.ndarray, rank: int) -> float:
    """``|W - W_r|_F / |W|_F`` of the truncated SVD, from the singular values (Eckart-Young)."""
    energy = float(np.sum(values.astype(np.float64) ** 2))
    return math.sqrt(float(np.sum(values[rank:].astype(np.float64) ** 2)) / energy) if energy else 0.0


def factored_layers(layer: Layer, rank: int) -> tuple[Layer, Layer]:
    """The two layers replacing ``layer`` at ``rank`` (names ``<name>_a``, ``<name>_b``)."""
    first = functools.partial(replace, layer, name=f"{layer.name}_a", module=f"{layer.module}.a", density=1.0,
                              relu=False)
    second = functools.partial(replace, layer, name=f"{layer.name}_b", module=f"{layer.module}.b", density=1.0)
    if layer.kind is LayerKind.FC:
        return first(out_shape=(rank,)), second(in_shape=(rank,))
    if layer.groups != 1:
        raise OptionError("low_rank", f"{layer.name} is a grouped convolution; factoring keeps groups of 1 only")
    middle = (rank,) + layer.out_shape[1:]
    return (first(out_shape=middle),
            second(in_shape=middle, out_shape=layer.out_shape, kernel_hw=1, stride=1, padding=0))


@dataclass(frozen=True)
class Factoring:
    """What factoring did to one layer."""

    layer: str
    rank: int
    full_rank: int
    relative_error: Optional[float]     # known when the singular values were computed
    macs_before: int
    macs_after: int


def low_rank_workload(workload: Workload, layers: Sequence[str], rank: Optional[float] = None,
                      energy: Optional[float] = None, seed: int = 0) -> Workload:
    """The workload with each of ``layers`` replaced by its two factors.

    ``rank`` below or at 1 is a fraction of each layer's full rank, above 1 an absolute rank;
    ``energy`` keeps the smallest rank holding that share of the squared singular values of the
    layer's seeded weights. The workload's name lists the ranks chosen.
    """
    rule = (RankRule(energy=energy) if energy is not None and rank is None
            else RankRule(rank=int(rank)) if rank is not None and energy is None and rank > 1
            else RankRule(fraction=rank))
    factored, _ = factor_workload(workload, layers, rule, seed)
    return factored


def factor_workload(workload: Workload, layers: Sequence[str], rule: RankRule,
                    seed: int = 0) -> tuple[Workload, list[Factoring]]:
    """:func:`low_rank_workload` with the rule given whole, and what it did per layer."""
    done: list[Factoring] = []
    out = workload
    for name in layers:
        layer = out.layer(name)
        full = min(layer.weight_matrix_shape)
        values = singular_values(weight_matrix(layer, out, seed)) if rule.needs_singular_values else None
        chosen = choose_rank(rule, full, values)
        first, second = factored_layers(layer, chosen)
        error = relative_error(values, chosen) if values is not None else None
        done.append(Factoring(name, chosen, full, error, layer.macs_per_sample,
                              first.macs_per_sample + second.macs_per_sample))
        out = replace_layer(out, name, (first, second), out.name)
    ranks = ", ".join(f"{f.layer} rank {f.rank}/{f.full_rank}" for f in done)
    return replace(out, name=f"{workload.name}, low rank ({ranks})"), done


def apply_low_rank(workload: Workload, specs: Sequence[str], seed: int = 0) -> Workload:
    """``run --low-rank SPEC ...``: every spec parsed, its layers picked from the workload as given
    (a factor is never factored again), then applied in turn; a layer picked twice is an error."""
    picked: list[tuple[list[str], RankRule]] = []
    seen: set[str] = set()
    for text in specs:
        spec = parse_low_rank(text)
        names = select_layers(workload, spec.selector)
        again = [n for n in names if n in seen]
        if again:
            raise OptionError("low_rank", f"{text!r}: {again[0]} is already factored by an earlier spec")
        seen.update(names)
        picked.append((names, spec.rule))
    for names, rule in picked:
        workload, _ = factor_workload(workload, names, rule, seed)
    return workload
