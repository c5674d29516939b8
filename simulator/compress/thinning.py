"""Thinning: all-zero filters, channels, rows and columns removed, as smaller dense layers.

Distiller's thinning (``distiller/thinning.py``: ``remove_filters`` / ``remove_channels``, run by
the ``FilterRemover`` / ``ChannelRemover`` extensions) turns structured sparsity into a smaller
network: a convolution's all-zero filter goes, and with it the matching input channel of every
convolution or FC layer that reads it (an FC layer after a flatten loses the block of
``height x width`` features of that channel), and the batch-norm parameters of that channel; a
convolution's all-zero input channel goes, and with it the filter that produced it. This module
does the same on a :class:`~simulator.model.workload.Workload` graph:

* every output channel (or FC output feature) is an *atom*; pooling passes atoms through, an
  add merges the atoms of its inputs position by position (a residual join: channel ``c`` of
  both inputs is one channel), a concat lists its inputs' atoms one after the other (so channel
  offsets map to the branch that made them);
* a merged atom is removed when every layer producing it gives zeros there (an all-zero filter
  or row; the add rule: *a channel leaves a residual join only when it is zero in every input*)
  or when no layer reading it uses it (an all-zero input channel or column in every consumer);
* the network's inputs and outputs keep their shape, and a grouped convolution keeps its
  channels (its groups would no longer divide them).

:func:`thin_workload` finds the zeros in ``workload.weight_masks`` (a checkpoint's or a pruned
model's) or, for a layer without a mask, prunes whole filters (conv) or rows (FC) of its seeded
weights by L1 norm down to its density (the rule of Distiller's
``L1RankedStructureParameterPruner``; a layer whose outputs are the network's output prunes its
input channels / columns instead). It returns the smaller workload and a
:class:`ThinningRecord` of what went, per layer. The zeros thinning leaves (a filter kept by a
residual join, element-wise zeros) stay in the new workload's masks, so a sparse format can store
them afterwards: thinning first, then a sparse format of the zeros that remain
(:func:`thinned_remainder`).

Where Distiller differs: its thinning removes each convolution's own zero filters and cuts every
consumer to the indices of the first producer it meets, whatever the other input of a residual
add zeroed. When the inputs of an add zero the same *number* of different filters, its network
keeps the shapes but computes another function (Distiller fine-tunes after thinning). That is
:attr:`ResidualRule.DISTILLER`, what ``prune`` applies for a schedule's ``net_thinner`` (so a
Distiller schedule gives the network Distiller trained); the default,
:attr:`ResidualRule.AGREE`, never changes what the network computes.
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ..model import seeded
from ..model.graphedit import resized
from ..model.workload import Layer, LayerKind, Workload
from . import encodingcache


class Removal(str, enum.Enum):
    """Which zeros thinning acts on (Distiller's ``remove_filters`` / ``remove_channels``, or both)."""

    ALL = "all"              # zero filters / rows and unused input channels / columns
    FILTERS = "filters"      # zero filters (conv) and rows (FC), and the inputs that read them
    CHANNELS = "channels"    # input channels / columns no consumer uses, and the filters making them


class ResidualRule(str, enum.Enum):
    """What thinning does at a residual add whose inputs zero different channels."""

    AGREE = "agree"          # remove a channel only when every input of the add is zero there
    DISTILLER = "distiller"  # equal counts: each producer drops its own zeros, consumers the first's


@dataclass(frozen=True)
class LayerThinning:
    """What thinning kept of one conv / FC layer (indices into the original weights)."""

    layer: str
    kept_out: np.ndarray          # output channels (conv filters) or FC rows kept
    kept_in: np.ndarray           # input channels kept (an FC after a flatten: channel blocks)
    out_before: int
    in_before: int                # input channels (or FC input features when in_group is 1)
    in_group: int = 1             # FC after a flatten: features per input channel (height x width)
    zero_filters_left: int = 0    # all-zero filters / rows kept (a residual join needed them)

    @property
    def removed_out(self) -> int:
        """Filters (conv) or rows (FC) removed."""
        return self.out_before - self.kept_out.size

    @property
    def removed_in(self) -> int:
        """Input channels (conv, FC after a flatten) or columns (FC) removed."""
        return self.in_before - self.kept_in.size

    @property
    def changed(self) -> bool:
        """True when anything of this layer was removed."""
        return self.removed_out > 0 or self.removed_in > 0

    def slice(self, weights: Any) -> Any:
        """The kept part of a weight tensor or mask of the original shape (numpy or torch):
        ``weights[kept_out][:, kept_in]``, channel blocks for an FC after a flatten."""
        out = weights[self.kept_out]
        if len(weights.shape) == 2 and self.in_group > 1:
            blocks = out.reshape(out.shape[0], self.in_before, self.in_group)[:, self.kept_in]
            return blocks.reshape(out.shape[0], self.kept_in.size * self.in_group)
        return out[:, self.kept_in]


@dataclass(frozen=True)
class ThinningRecord:
    """What :func:`thin_workload` removed: per weighted layer, and notes on what it could not."""

    layers: Mapping[str, LayerThinning]
    notes: tuple[str, ...] = ()
    macs_before: int = 0
    macs_after: int = 0

    def changed(self) -> list[LayerThinning]:
        """The layers that lost filters, channels, rows or columns, in layer order."""
        return [t for t in self.layers.values() if t.changed]

    def lines(self) -> list[str]:
        """One line per changed layer (``conv2: filters 64 -> 32, channels 32 -> 16``) and the notes."""
        out = []
        for t in self.changed():
            out.append(f"{t.layer}: outputs {t.out_before} -> {t.kept_out.size}, inputs {t.in_before} -> "
                       f"{t.kept_in.size}" + (f" (channel blocks of {t.in_group})" if t.in_group > 1 else ""))
        return out + list(self.notes)


# --- atoms: one per output channel, merged by adds ------------------------------------------------

@dataclass
class _Atoms:
    """The channel atoms of a workload graph and who produces and uses them."""

    parent: list[int] = field(default_factory=list)
    nonzero: list[bool] = field(default_factory=list)   # some producer gives non-zeros here
    used: list[bool] = field(default_factory=list)      # some consumer (or the network output) reads it
    pinned: list[bool] = field(default_factory=list)    # a network input / output, a grouped conv
    out_atoms: dict[str, np.ndarray] = field(default_factory=dict)
    in_atoms: dict[str, np.ndarray] = field(default_factory=dict)
    in_group: dict[str, int] = field(default_factory=dict)

    def new(self, count: int, nonzero: bool = False, pinned: bool = False) -> np.ndarray:
        start = len(self.parent)
        self.parent += range(start, start + count)
        self.nonzero += [nonzero] * count
        self.used += [pinned] * count
        self.pinned += [pinned] * count
        return np.arange(start, start + count)

    def find(self, atom: int) -> int:
        while self.parent[atom] != atom:
            self.parent[atom] = self.parent[self.parent[atom]]   # path halving
            atom = self.parent[atom]
        return atom

    def union(self, first: np.ndarray, second: np.ndarray) -> None:
        for a, b in zip(first.tolist(), second.tolist()):
            ra, rb = self.find(a), self.find(b)
            if ra != rb:
                self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self, atoms: np.ndarray) -> np.ndarray:
        return np.array([self.find(a) for a in atoms.tolist()], dtype=np.int64)


def _build_atoms(workload: Workload) -> _Atoms:
    """Atoms for every layer's output; weighted layers also record the atoms they read."""
    atoms = _Atoms()
    sinks = set(workload.sinks())
    for layer in workload.layers:
        preds = workload.predecessors(layer.name)
        if not preds:
            source = atoms.new(layer.in_shape[0], nonzero=True, pinned=True)   # a network input
        elif layer.kind is LayerKind.CONCAT:
            source = np.concatenate([atoms.out_atoms[p] for p in preds])
        else:
            source = atoms.out_atoms[preds[0]]
        if layer.kind.has_weights:
            atoms.in_atoms[layer.name] = source
            atoms.in_group[layer.name] = layer.in_shape[0] // source.size if layer.kind is LayerKind.FC else 1
            out = atoms.new(layer.out_shape[0])
            if layer.kind is LayerKind.CONV and layer.groups > 1:
                for atom in np.concatenate([source, out]).tolist():
                    atoms.pinned[atom] = atoms.used[atom] = True
        elif layer.kind is LayerKind.ADD:
            atoms.union(source, atoms.out_atoms[preds[1]])
            out = source
        else:
            out = source      # pooling and concat keep (or list) their inputs' atoms
        atoms.out_atoms[layer.name] = out
        if layer.name in sinks:
            for atom in out.tolist():
                atoms.pinned[atom] = atoms.used[atom] = True
    return atoms


# --- where the zeros are --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Zeros:
    """One weighted layer's all-zero structures: filters / rows, and input channels / columns."""

    out: np.ndarray      # bool per output channel / row
    unused_in: np.ndarray   # bool per input atom
    mask: Optional[np.ndarray] = None   # the element-wise pattern, when the layer has one


def _grouped(values: np.ndarray, layer: Layer, in_atoms: int) -> np.ndarray:
    """The weights (or mask) as (outputs, input atoms, the rest)."""
    return values.reshape(layer.weight_shape[0], in_atoms, -1)


def _mask_zeros(layer: Layer, mask: np.ndarray, in_atoms: int) -> _Zeros:
    mask = np.asarray(mask, dtype=bool)
    if layer.groups > 1:
        return _Zeros(np.zeros(layer.weight_shape[0], bool), np.zeros(in_atoms, bool), mask)
    view = _grouped(mask, layer, in_atoms)
    return _Zeros(np.asarray(~view.any(axis=(1, 2))), np.asarray(~view.any(axis=(0, 2))), mask)


def _weakest(norms: np.ndarray, density: float) -> np.ndarray:
    """True for the structures L1 ranking prunes: all but the ``round(density x n)`` of largest norm
    (at least one kept; ties go in index order)."""
    keep = max(1, int(round(density * norms.size)))
    order = np.argsort(-norms, kind="stable")
    weak = np.ones(norms.size, dtype=bool)
    weak[order[:keep]] = False
    return weak


def _density_zeros(layer: Layer, seed: int, in_atoms: int, is_output: bool) -> _Zeros:
    """Filters (rows) of smallest L1 norm pruned to the layer's density; a layer whose outputs are the
    network's output prunes its input channels (columns) instead."""
    none_out, none_in = np.zeros(layer.weight_shape[0], bool), np.zeros(in_atoms, bool)
    if layer.density >= 1.0 or layer.groups > 1:
        return _Zeros(none_out, none_in)
    rows, columns = _l1_norms(layer, seed, in_atoms)
    if is_output:
        return _Zeros(none_out, _weakest(columns, layer.density))
    return _Zeros(_weakest(rows, layer.density), none_in)


def _l1_norms(layer: Layer, seed: int, in_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """L1 norms of the seeded weights per filter (row) and per input channel (column group), kept in
    the encoding cache: drawing a layer's weights costs far more than thinning it."""
    shape = "x".join(map(str, layer.weight_shape))
    key = f"thin-v1-{layer.name}-{shape}-s{seed}-a{in_atoms}"
    name = hashlib.sha256(key.encode()).hexdigest()[:24]
    cached = encodingcache.load(name, key)
    if cached is None or not {"rows", "columns"} <= set(cached):
        magnitude = np.abs(_grouped(seeded.synthetic_weight_array(layer, seed), layer, in_atoms))
        cached = {"rows": magnitude.sum(axis=(1, 2)), "columns": magnitude.sum(axis=(0, 2))}
        encodingcache.store(name, key, cached)
    return cached["rows"], cached["columns"]


# --- the decision ---------------------------------------------------------------------------------

def _distiller_followers(workload: Workload, atoms: _Atoms, zeros: Mapping[str, _Zeros]) -> dict[str, str]:
    """Under Distiller's rule: producers merged at residual adds with the same number of zero filters
    as the first of them (the leader) but other ones. Their zeros are taken as the leader's for the
    merged channels; each keeps its own filters. Returns follower -> leader."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for layer in workload.layers:
        if layer.kind is LayerKind.CONV and layer.groups == 1:
            groups.setdefault(tuple(atoms.roots(atoms.out_atoms[layer.name]).tolist()), []).append(layer.name)
    followers = {}
    for members in groups.values():
        counts = {int(zeros[m].out.sum()) for m in members}
        if len(members) < 2 or len(counts) != 1 or counts == {0}:
            continue
        leader = members[0]
        for member in members[1:]:
            if not np.array_equal(zeros[member].out, zeros[leader].out):
                followers[member] = leader
    return followers


def _removable(atoms: _Atoms, zeros: Mapping[str, _Zeros], followers: Mapping[str, str],
               removal: Removal) -> np.ndarray:
    """Per atom root: True when the merged channel can go."""
    for name, z in zeros.items():
        source = zeros[followers[name]].out if name in followers else z.out
        for atom, zero in zip(atoms.out_atoms[name].tolist(), source.tolist()):
            atoms.nonzero[atom] = atoms.nonzero[atom] or not zero
        for atom, unused in zip(atoms.in_atoms[name].tolist(), z.unused_in.tolist()):
            atoms.used[atom] = atoms.used[atom] or not unused
    size = len(atoms.parent)
    roots = atoms.roots(np.arange(size))
    nonzero, used, pinned = (np.zeros(size, bool) for _ in range(3))
    np.logical_or.at(nonzero, roots, np.array(atoms.nonzero, bool))
    np.logical_or.at(used, roots, np.array(atoms.used, bool))
    np.logical_or.at(pinned, roots, np.array(atoms.pinned, bool))
    if removal is Removal.FILTERS:
        return ~pinned & ~nonzero
    if removal is Removal.CHANNELS:
        return ~pinned & ~used
    return ~pinned & (~nonzero | ~used)


def _keep_one(atoms: _Atoms, zeros: Mapping[str, _Zeros], removable: np.ndarray) -> list[str]:
    """Keep the first channel of a layer that would lose every output (in place); the layers so kept."""
    emptied = []
    for name in zeros:
        roots = atoms.roots(atoms.out_atoms[name])
        if removable[roots].all():
            removable[roots[0]] = False
            emptied.append(name)
    return emptied


def thin_workload(workload: Workload, seed: int = 0, rule: ResidualRule = ResidualRule.AGREE,
                  removal: Removal = Removal.ALL) -> tuple[Workload, ThinningRecord]:
    """The workload with its all-zero filters, channels, rows and columns removed, and what went.

    A layer with a mask in ``workload.weight_masks`` is thinned by the zeros in it; any other
    layer below density 1 by L1 ranking of its seeded weights (``seed``, as the simulator draws
    them) at its density. The new workload keeps the layer names; a layer's mask and density are
    those of the weights that remain.
    """
    atoms = _build_atoms(workload)
    sinks = set(workload.sinks())
    zeros: dict[str, _Zeros] = {}
    for layer in workload.layers:
        if not layer.kind.has_weights:
            continue
        in_atoms = atoms.in_atoms[layer.name].size
        if layer.name in workload.weight_masks:
            zeros[layer.name] = _mask_zeros(layer, workload.weight_masks[layer.name], in_atoms)
        else:
            zeros[layer.name] = _density_zeros(layer, seed, in_atoms, layer.name in sinks)
    followers = _distiller_followers(workload, atoms, zeros) if rule is ResidualRule.DISTILLER else {}
    removable = _removable(atoms, zeros, followers, removal)
    emptied = _keep_one(atoms, zeros, removable)
    record, notes = _record(workload, atoms, zeros, followers, removable, set(emptied))
    notes += [f"{name}: every filter or row is zero; one is kept (a layer cannot lose all its outputs; "
              "Distiller refuses to thin it)" for name in emptied]
    thinned = _rebuild(workload, record, zeros)
    macs = [sum(l.macs_per_sample for l in w.layers if l.kind.has_weights) for w in (workload, thinned)]
    return thinned, ThinningRecord(record, tuple(notes), macs[0], macs[1])


def _record(workload: Workload, atoms: _Atoms, zeros: Mapping[str, _Zeros], followers: Mapping[str, str],
            removable: np.ndarray, emptied: set[str]) -> tuple[dict[str, LayerThinning], list[str]]:
    record: dict[str, LayerThinning] = {}
    notes = []
    for name, z in zeros.items():
        kept_out = np.flatnonzero(~removable[atoms.roots(atoms.out_atoms[name])])
        if name in followers and np.array_equal(kept_out, np.flatnonzero(~zeros[followers[name]].out)):
            kept_out = np.flatnonzero(~z.out)      # Distiller: a follower drops its own zero filters
        kept_in = np.flatnonzero(~removable[atoms.roots(atoms.in_atoms[name])])
        left = int(z.out[kept_out].sum())
        record[name] = LayerThinning(name, kept_out, kept_in, z.out.size, z.unused_in.size,
                                     atoms.in_group[name], left)
        if left and name not in emptied:
            why = ("its outputs are the network's output" if name in _sinks(workload)
                   else "a residual add joins them with non-zero channels")
            notes.append(f"{name}: {left} all-zero filters or rows kept ({why})")
    if followers:
        names = ", ".join(sorted(followers))
        notes.append(f"{names}: zero other filters than the layer they join at a residual add; removed as "
                     "Distiller's thinning does (each its own zero filters, consumers cut to the first "
                     "producer's), so the thinned network computes another function until fine-tuned")
    return record, notes


def _sinks(workload: Workload) -> set[str]:
    return set(workload.sinks())


def _rebuild(workload: Workload, record: Mapping[str, LayerThinning], zeros: Mapping[str, _Zeros]) -> Workload:
    """The smaller workload: new channel counts, and masks / densities of what remains."""
    masks: dict[str, Any] = {}
    densities: dict[str, float] = {}
    for name, t in record.items():
        z = zeros[name]
        layer = workload.layer(name)
        if z.mask is not None:
            mask = np.asarray(z.mask, dtype=bool).reshape(layer.weight_shape)
            mask = t.slice(mask) if t.changed else mask
        elif z.out[t.kept_out].any() or z.unused_in[t.kept_in].any():
            # zero structures thinning had to keep: their pattern, for a sparse format afterwards
            full = ~(z.out[:, None] | z.unused_in[None, :])
            full = np.repeat(full, math.prod(layer.weight_shape) // full.size, axis=1)
            mask = t.slice(full.reshape(layer.weight_shape))
        else:
            if z.out.any() or z.unused_in.any():
                densities[name] = 1.0          # the structures carried the density; the rest is dense
            continue
        masks[name] = mask
        densities[name] = float(np.count_nonzero(mask)) / max(mask.size, 1)
    sizes = {name: t.kept_out.size for name, t in record.items()}
    return resized(workload, sizes, masks, densities, f"{workload.name}, thinned")


def thinned_remainder(workload: Workload, seed: int = 0) -> tuple[Workload, ThinningRecord]:
    """Thinning first, then the zeros that remain: the thinned workload whose ``weight_masks``
    hold the element-wise zeros left in the smaller layers (a checkpoint's fine-grained zeros, a
    filter a residual join kept). Encode it with any sparse format to store those zeros; a layer
    without a mask there is dense after thinning."""
    return thin_workload(workload, seed)


# --- named tensors: a state_dict or a schedule's parameters ----------------------------------------

def _module(name: str) -> str:
    return name.rsplit(".", 1)[0]


def thinning_plan(tensors: Mapping[str, Any], workload: Workload,
                  record: ThinningRecord) -> dict[str, Callable[[Any], Any]]:
    """How to cut each named tensor (a state_dict, a schedule's parameters) as ``record`` thinned
    ``workload``: a layer's ``<module>.weight`` by :meth:`LayerThinning.slice`, its ``.bias`` by
    the kept outputs, and the per-channel tensors of the module registered right after a
    convolution (its batch norm: weight, bias, running mean and variance, as Distiller's models
    register each BN after its conv) by the kept filters. Names match in any DataParallel spelling."""
    from ..model.parameters import NameIndex  # torch: only where named tensors are thinned

    names = list(tensors)
    index = NameIndex(names)
    plan: dict[str, Callable[[Any], Any]] = {}
    for name, t in record.layers.items():
        if not t.changed:
            continue
        layer = workload.layer(name)
        weight = index.resolve(f"{layer.module}.weight")
        if weight is None:
            continue
        plan[weight] = t.slice
        last = weight
        bias = index.resolve(f"{layer.module}.bias")
        if bias is not None and t.removed_out:
            plan[bias] = _kept_out(t)
            last = max(weight, bias, key=names.index)
        if layer.kind is LayerKind.CONV and t.removed_out:
            plan.update(_channel_tensors(tensors, names, names.index(last) + 1, t))
    return plan


def _channel_tensors(tensors: Mapping[str, Any], names: list[str], start: int,
                     t: LayerThinning) -> dict[str, Callable[[Any], Any]]:
    """The 1-D tensors of the module following a convolution, when each has one value per filter."""
    members: list[str] = []
    for name in names[start:]:
        if members and _module(name) != _module(members[0]):
            break
        members.append(name)
    shapes = [tuple(tensors[n].shape) for n in members]
    if not members or not any(len(s) == 1 for s in shapes) or any(s not in ((), (t.out_before,)) for s in shapes):
        return {}
    return {n: _kept_out(t) for n, s in zip(members, shapes) if s}


def _kept_out(t: LayerThinning) -> Callable[[Any], Any]:
    """A tensor's entries of the filters ``t`` keeps (indexing its first dimension)."""
    return lambda x: x[t.kept_out]


def thin_tensors(tensors: Mapping[str, Any], plan: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """``tensors`` (in their order) with every planned one cut (see :func:`thinning_plan`)."""
    return {name: (plan[name](value) if name in plan else value) for name, value in tensors.items()}


class StateThinner:
    """Thinning of named tensors through a workload graph, as ``prune`` applies a schedule's
    ``net_thinner``: called with the current weights and masks, it finds their zeros, thins the
    workload (Distiller's residual rule) and returns the cut tensors; it remembers each step, so
    the state_dict's other tensors (batch-norm running statistics) can be cut the same way."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.steps: list[tuple[Workload, ThinningRecord]] = []

    def masks_of(self, weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Each conv / FC layer's non-zero pattern, from the named weights."""
        from ..model.parameters import NameIndex

        index = NameIndex(list(weights))
        out = {}
        for layer in self.workload.layers:
            name = index.resolve(f"{layer.module}.weight") if layer.kind.has_weights else None
            if name is not None:
                out[layer.name] = np.asarray(weights[name] != 0).reshape(layer.weight_shape)
        return out

    def __call__(self, removal: Removal, weights: dict[str, Any], masks: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        before = replace(self.workload, weight_masks=self.masks_of(weights))
        after, record = thin_workload(before, rule=ResidualRule.DISTILLER, removal=removal)
        plan = thinning_plan(weights, before, record)
        self.steps.append((before, record))
        self.workload = replace(after, weight_masks={})
        return thin_tensors(weights, plan), thin_tensors(masks, {n: plan[n] for n in masks if n in plan})

    def apply(self, tensors: Mapping[str, Any]) -> dict[str, Any]:
        """Cut other named tensors (a whole state_dict) as every step so far did."""
        out = dict(tensors)
        for workload, record in self.steps:
            out = thin_tensors(out, thinning_plan(out, workload, record))
        return out
