"""Editing a resolved workload: new channel counts, and layers replaced by others.

Two transforms build on these: thinning (:mod:`simulator.compress.thinning`: fewer filters,
channels, rows and columns) and low-rank factorisation (:mod:`simulator.compress.lowrank`: one
layer replaced by two thinner ones). Both give a new, smaller :class:`Workload` whose shapes are
propagated again through the graph (a pooling layer, an add and a concat follow the channels of
their inputs; an FC layer after a flatten reads ``channels x height x width`` features), with the
layer names kept, so a report compares it layer by layer with the original.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .workload import Layer, LayerKind, Workload


def _in_shape(layer: Layer, preds: list[str], outputs: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The input shape a layer reads once its predecessors have their new shapes."""
    if not preds:
        return layer.in_shape                    # a network input keeps its shape
    if layer.kind is LayerKind.CONCAT:
        first = outputs[preds[0]]
        return (sum(outputs[p][0] for p in preds),) + tuple(first[1:])
    shape = outputs[preds[0]]
    return (math.prod(shape),) if layer.kind is LayerKind.FC else shape


def _resized_layer(layer: Layer, in_shape: tuple[int, ...], out_size: Optional[int],
                   preds: list[str], outputs: Mapping[str, tuple[int, ...]]) -> Layer:
    """``layer`` reading ``in_shape`` and (for a weighted layer) giving ``out_size`` channels or features."""
    if layer.kind is LayerKind.FC:
        return replace(layer, in_shape=in_shape, out_shape=(out_size or layer.out_shape[0],))
    if layer.kind is LayerKind.CONV:
        out = out_size or layer.out_shape[0]
        if in_shape[0] % layer.groups or out % layer.groups:
            raise ValueError(f"{layer.name}: {layer.groups} groups do not divide {in_shape[0]} -> {out} channels")
        return replace(layer, in_shape=in_shape, out_shape=(out,) + layer.out_shape[1:])
    if layer.kind is LayerKind.ADD:
        first, second = (outputs[p] for p in preds)
        if first != second:
            raise ValueError(f"{layer.name}: the add's inputs differ after the edit ({first} and {second})")
        return replace(layer, in_shape=in_shape, out_shape=in_shape)
    if layer.kind is LayerKind.CONCAT:
        return replace(layer, in_shape=in_shape, out_shape=in_shape, parts=tuple(outputs[p][0] for p in preds))
    return replace(layer, in_shape=in_shape, out_shape=(in_shape[0],) + layer.out_shape[1:])   # pooling


def resized(workload: Workload, out_sizes: Mapping[str, int], masks: Mapping[str, Any],
            densities: Mapping[str, float], name: str) -> Workload:
    """The workload with new output channel / feature counts for some weighted layers.

    ``out_sizes`` maps a conv / FC layer to its new output channels / features; every layer's
    input follows its predecessors' new outputs. ``masks`` replaces ``weight_masks`` (shaped like
    the new weights; layers without one keep none) and ``densities`` sets the layers' densities.
    A shape that no longer chains (the two inputs of an add differ, groups that no longer divide)
    is a ValueError: the caller decides removals that keep the graph consistent.
    """
    layers: list[Layer] = []
    outputs: dict[str, tuple[int, ...]] = {}
    for layer in workload.layers:
        preds = workload.predecessors(layer.name)
        new = _resized_layer(layer, _in_shape(layer, preds, outputs), out_sizes.get(layer.name), preds, outputs)
        if layer.name in densities:
            new = replace(new, density=densities[layer.name])
        if layer.name in masks and tuple(np.shape(masks[layer.name])) != new.weight_shape:
            raise ValueError(f"{layer.name}: mask of shape {np.shape(masks[layer.name])} for weights "
                             f"{new.weight_shape}")
        outputs[layer.name] = new.out_shape
        layers.append(new)
    return workload.with_layers(layers, name=name, weight_masks=dict(masks))


def replace_layer(workload: Workload, target: str, new_layers: Sequence[Layer], name: str) -> Workload:
    """The workload with layer ``target`` replaced by a chain of ``new_layers``.

    The first new layer reads what ``target`` read, each next one the previous, and every layer
    that read ``target`` reads the last one instead. The new layers' shapes are taken as given
    (the chain must end with ``target``'s output shape); masks of ``target`` are dropped.
    """
    old = workload.layer(target)
    if new_layers[-1].out_shape != old.out_shape:
        raise ValueError(f"{target}: the replacement ends with {new_layers[-1].out_shape}, not {old.out_shape}")
    taken = {l.name for l in workload.layers if l.name != target}
    for layer in new_layers:
        if layer.name in taken:
            raise ValueError(f"{target}: a replacement layer is named {layer.name!r}, as an existing layer")
    last = new_layers[-1].name
    inputs: dict[str, tuple[str, ...]] = {}
    layers: list[Layer] = []
    for layer in workload.layers:
        if layer.name != target:
            layers.append(layer)
            inputs[layer.name] = tuple(last if p == target else p for p in workload.inputs[layer.name])
            continue
        reads = workload.inputs[target]
        for new in new_layers:
            layers.append(new)
            inputs[new.name] = reads
            reads = (new.name,)
    masks = {k: v for k, v in workload.weight_masks.items() if k != target}
    return Workload(name, workload.path, workload.dtype, workload.input_shape, inputs, tuple(layers), masks)
