"""Thinning: all-zero structures removed and the removal propagated through the graph."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from simulator.compress.schedule import apply_schedule, load_schedule
from simulator.compress.thinning import Removal, ResidualRule, StateThinner, thin_tensors, thin_workload, thinning_plan
from simulator.model import seeded
from simulator.model.checkpoint import checkpoint_workload, load_checkpoint, save_checkpoint
from simulator.model.parameters import ParameterTree, workload_parameters
from simulator.model.workload import load_workload

DATA = Path(__file__).parent / "data" / "distiller"
RESNET_SCHEDULE = DATA / "resnet20_filters.schedule_agp.yaml"
ROOT = Path(__file__).resolve().parent.parent


def masked(workload, **zeroed):
    """Full masks for every weighted layer, with ``zeroed[layer] = (filters, channels)`` zeroed."""
    masks = {}
    for layer in workload.layers:
        if layer.kind.has_weights:
            mask = np.ones(layer.weight_shape, dtype=bool)
            filters, channels = zeroed.get(layer.name.replace(".", "_"), ((), ()))
            mask[list(filters)] = False
            mask[:, list(channels)] = False
            masks[layer.name] = mask
    return replace(workload, weight_masks=masks)


CHAIN = """\
  - {name: a, kind: conv, in_channels: 3, out_channels: 8, kernel: 3, padding: 1}
  - {name: b, kind: conv, in_channels: 8, out_channels: 6, kernel: 3, padding: 1}
  - {name: pool, kind: maxpool, kernel: 2}
  - {name: fc, kind: fc, in_features: 96, out_features: 10}
"""


def test_zero_filters_remove_the_consumers_input_channels(workload_from_text):
    workload = masked(workload_from_text(CHAIN, [3, 8, 8]), a=((1, 3), ()))
    thinned, record = thin_workload(workload)
    assert thinned.layer("a").weight_shape == (6, 3, 3, 3)
    assert thinned.layer("b").weight_shape == (6, 6, 3, 3)
    assert record.layers["b"].kept_in.tolist() == [0, 2, 4, 5, 6, 7]
    assert record.macs_after == sum(l.macs_per_sample for l in thinned.layers if l.kind.has_weights)
    assert record.macs_after < record.macs_before
    assert [l.name for l in thinned.layers] == [l.name for l in workload.layers]


def test_fc_after_a_flatten_loses_the_block_of_each_removed_channel(workload_from_text):
    workload = masked(workload_from_text(CHAIN, [3, 8, 8]), b=((2,), ()))
    fc_mask = workload.weight_masks["fc"].copy()
    fc_mask[:, 2 * 16 + 5] = False            # a marker in the removed block ...
    fc_mask[:, 3 * 16 + 7] = False            # ... and one in a kept block, which moves to 2 * 16 + 7
    workload = replace(workload, weight_masks={**workload.weight_masks, "fc": fc_mask})
    thinned, record = thin_workload(workload)
    assert thinned.layer("fc").weight_shape == (10, 80)
    assert record.layers["fc"].in_group == 16
    assert np.flatnonzero(~thinned.weight_masks["fc"].all(axis=0)).tolist() == [2 * 16 + 7]


def test_unused_input_channels_remove_the_producers_filters(workload_from_text):
    workload = masked(workload_from_text(CHAIN, [3, 8, 8]), b=((), (0, 5)))
    thinned, _ = thin_workload(workload)
    assert thinned.layer("a").weight_shape[0] == 6 and thinned.layer("b").weight_shape[1] == 6
    # Distiller's remove_filters alone does not act on unused channels
    only_filters, _ = thin_workload(workload, removal=Removal.FILTERS)
    assert only_filters.layer("a").weight_shape[0] == 8


def test_the_network_output_keeps_its_rows(workload_from_text):
    workload = masked(workload_from_text(CHAIN, [3, 8, 8]), fc=((4,), ()))
    thinned, record = thin_workload(workload)
    assert thinned.layer("fc").out_shape == (10,)
    assert any("network's output" in note for note in record.notes)
    assert thinned.layer("fc").density == pytest.approx(0.9)   # the zero row stays, for a sparse format


RESIDUAL = """\
  - {name: stem, kind: conv, in_channels: 3, out_channels: 4, kernel: 3, padding: 1}
  - {name: left, kind: conv, in_channels: 4, out_channels: 4, kernel: 3, padding: 1}
  - {name: right, kind: conv, inputs: [stem], in_channels: 4, out_channels: 4, kernel: 1}
  - {name: add, kind: add, inputs: [left, right]}
  - {name: head, kind: conv, in_channels: 4, out_channels: 2, kernel: 1}
"""


def test_a_residual_add_removes_only_channels_zero_in_every_input(workload_from_text):
    workload = masked(workload_from_text(RESIDUAL, [3, 8, 8]), left=((0, 1), ()), right=((1, 2), ()))
    thinned, record = thin_workload(workload)
    assert record.layers["head"].kept_in.tolist() == [0, 2, 3]      # only channel 1 is zero in both
    assert thinned.layer("left").weight_shape[0] == thinned.layer("right").weight_shape[0] == 3
    assert record.layers["left"].zero_filters_left == 1 and record.layers["right"].zero_filters_left == 1
    assert thinned.layer("left").density == pytest.approx(2 / 3)


def test_distillers_rule_drops_each_producers_own_zeros_at_a_residual_add(workload_from_text):
    workload = masked(workload_from_text(RESIDUAL, [3, 8, 8]), left=((0, 1), ()), right=((1, 2), ()))
    thinned, record = thin_workload(workload, rule=ResidualRule.DISTILLER)
    assert record.layers["left"].kept_out.tolist() == [2, 3]
    assert record.layers["right"].kept_out.tolist() == [0, 3]
    assert record.layers["head"].kept_in.tolist() == [2, 3]         # the first producer's indices
    assert thinned.layer("add").out_shape[0] == 2
    assert any("another function" in note for note in record.notes)


CONCAT = """\
  - {name: x, kind: conv, in_channels: 3, out_channels: 2, kernel: 1}
  - {name: y, kind: conv, inputs: [], input_shape: [3, 4, 4], in_channels: 3, out_channels: 3, kernel: 1}
  - {name: cat, kind: concat, inputs: [x, y]}
  - {name: z, kind: conv, in_channels: 5, out_channels: 4, kernel: 1}
"""


def test_a_concat_maps_channel_offsets_to_its_inputs(workload_from_text):
    workload = masked(workload_from_text(CONCAT, [3, 4, 4]), y=((1,), ()), z=((), (0,)))
    thinned, record = thin_workload(workload)
    assert record.layers["z"].kept_in.tolist() == [1, 2, 4]         # x's channel 0 (unused), y's 1 (zero)
    assert thinned.layer("cat").parts == (1, 2)
    assert thinned.layer("x").weight_shape[0] == 1 and thinned.layer("y").weight_shape[0] == 2


def test_a_density_thins_the_filters_of_smallest_l1_norm(workload_from_text):
    workload = workload_from_text(CHAIN.replace("out_channels: 8, kernel", "out_channels: 8, density: 0.5, "
                                                "kernel"), [3, 8, 8])
    thinned, record = thin_workload(workload, seed=3)
    norms = np.abs(seeded.synthetic_weight_array(workload.layer("a"), 3)).sum(axis=(1, 2, 3))
    assert record.layers["a"].kept_out.tolist() == sorted(np.argsort(-norms)[:4].tolist())
    assert thinned.layer("a").weight_shape == (4, 3, 3, 3) and thinned.layer("b").weight_shape == (6, 4, 3, 3)
    assert thinned.layer("a").density == 1.0 and not thinned.weight_masks


def test_a_density_on_the_output_layer_thins_its_columns(workload_from_text):
    workload = workload_from_text(CHAIN.replace("out_features: 10", "out_features: 10, density: 0.5"), [3, 8, 8])
    thinned, record = thin_workload(workload)
    assert thinned.layer("fc").out_shape == (10,)
    assert record.layers["fc"].kept_in.size == 3 and thinned.layer("b").weight_shape[0] == 3


def test_alexnet_with_half_its_filters_thinned_needs_fewer_macs():
    workload = load_workload(ROOT / "workloads" / "alexnet.yaml")
    conv_half = workload.with_layers([replace(l, density=0.5 if l.kind.value == "conv" else 1.0)
                                      for l in workload.layers])
    thinned, record = thin_workload(conv_half)
    assert thinned.layer("conv2").weight_shape == (96, 32, 5, 5)
    assert thinned.layer("fc6").weight_shape == (4096, 128 * 36)
    assert record.macs_after < 0.4 * record.macs_before


# --- a schedule's net_thinner and the thinned checkpoint ------------------------------------------------

@pytest.fixture(scope="module")
def resnet20():
    return load_workload(ROOT / "workloads" / "resnet20_cifar.yaml")


def test_the_resnet20_schedule_thins_to_its_headers_compute(resnet20):
    """The schedule's header: "Total MACs: 30,655,104" and "# of parameters: 120,000" after thinning."""
    thinner = StateThinner(resnet20)
    schedule = load_schedule(RESNET_SCHEDULE)
    step = lambda function, epoch, weights, masks: thinner(Removal.FILTERS, weights, masks)  # noqa: E731
    result = apply_schedule(schedule, ParameterTree(workload_parameters(resnet20, 0)), "resnet20", thin=step)
    (before, record), = thinner.steps
    assert record.macs_before == 40_813_184 and record.macs_after == 30_655_104
    weights = [t for n, t in result.tensors.items() if n.endswith(".weight")]
    assert sum(int(torch.count_nonzero(t)) for t in weights) == 120_000
    assert result.tensors["layer3.0.conv1.weight"].shape == (64, 16, 3, 3)
    assert result.masks["fc.weight"].shape == (10, 64)


def test_a_thinned_checkpoint_round_trip(tmp_path):
    ckpt = load_checkpoint(DATA / "checkpoint_trained_dense.pth.tar")
    thinner = StateThinner(checkpoint_workload(ckpt))
    tree = ParameterTree(ckpt.parameters())
    step = lambda function, epoch, weights, masks: thinner(Removal.FILTERS, weights, masks)  # noqa: E731
    result = apply_schedule(load_schedule(RESNET_SCHEDULE), tree, "dense", thin=step)
    state = thinner.apply(dict(ckpt.state_dict))
    state.update(result.tensors)
    out = tmp_path / "thinned.pth.tar"
    save_checkpoint(out, state, result.masks, list(result.tensors), ckpt.arch, result.epochs - 1)
    again = load_checkpoint(out)
    assert again.state_dict["module.layer2.1.bn2.running_mean"].shape == (16,)
    assert again.state_dict["module.layer2.0.downsample.1.weight"].shape == (16,)
    workload = checkpoint_workload(again)
    assert sum(l.macs_per_sample for l in workload.layers if l.kind.has_weights) == 30_655_104
    # the kept filters are the non-zero ones, with their batch norm
    kept = thinner.steps[0][1].layers["layer2.0.conv1"].kept_out
    original = ckpt.state_dict["module.layer2.0.bn1.bias"]
    assert torch.equal(again.state_dict["module.layer2.0.bn1.bias"], original[kept])


def test_thinning_plan_leaves_a_following_conv_alone(resnet20):
    tensors = workload_parameters(resnet20, 0)
    workload = masked(resnet20, layer1_0_conv1=((3,), ()))
    _, record = thin_workload(workload)
    plan = thinning_plan(tensors, workload, record)
    assert set(plan) == {"layer1.0.conv1.weight", "layer1.0.conv1.bias", "layer1.0.conv2.weight"}
    cut = thin_tensors(tensors, plan)
    assert cut["layer1.0.conv1.bias"].shape == (15,) and cut["layer1.0.conv2.weight"].shape == (16, 15, 3, 3)
