"""Residual joins: the ``add`` layer kind, the shipped ResNet-20 workload, the torch module it
builds, and the add kernel's access stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulator.base.errors import ConfigError
from simulator.hardware.profile import KernelKind
from simulator.memory.traffic import AddressSpace, CoreView, StreamKind, layer_traffic
from simulator.model.workload import DType, Layer, LayerKind, load_workload, to_torch_module

LINE = 64


@pytest.fixture(scope="module")
def resnet20(repo_root):
    return load_workload(repo_root / "workloads" / "resnet20_cifar.yaml")


def test_resnet20_has_distillers_weight_count_and_names(resnet20):
    weighted = [layer for layer in resnet20.layers if layer.kind.has_weights]
    assert len(weighted) == 22
    assert sum(layer.weight_count for layer in weighted) == 270_896   # Distiller's summary total
    assert resnet20.layer("layer2.0.downsample.0").weight_shape == (32, 16, 1, 1)
    assert resnet20.layer("layer3.2.add").module == "layer3.2.residual_eltwiseadd"
    assert resnet20.layer("fc").in_shape == (64,)


def test_add_joins_shortcut_and_block(resnet20):
    assert resnet20.predecessors("layer2.0.add") == ["layer2.0.downsample.0", "layer2.0.conv2"]
    assert resnet20.predecessors("layer1.1.add") == ["layer1.0.add", "layer1.1.conv2"]
    add = resnet20.layer("layer2.0.add")
    assert add.in_shape == add.out_shape == (32, 16, 16)
    assert add.flops(batch=2) == 2 * 32 * 16 * 16   # one add per element


def test_resnet20_module_runs_and_adds(resnet20):
    module = to_torch_module(resnet20)
    assert module(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    add = module.get_submodule("layer1.0.residual_eltwiseadd")
    assert torch.equal(add(torch.ones(2), torch.full((2,), 2.0)), torch.full((2,), 3.0))


@pytest.mark.parametrize("change, field, words", [
    (lambda layers: layers[2].pop("inputs"), "layers[2].inputs", "names the two layers it sums"),
    (lambda layers: layers[2].update(inputs=["a"]), "layers[2].inputs", "sums two different layers"),
    (lambda layers: layers[2].update(inputs=["a", "a"]), "layers[2].inputs", "sums two different layers"),
    (lambda layers: layers[1].update(out_channels=8), "layers[2].inputs", "shapes differ"),
    (lambda layers: layers[1].update(inputs=["a", "a"]), "layers[1].inputs", "only an add layer joins two"),
    (lambda layers: layers[2].update(kernel=3), "layers[2].kernel", "does not apply to an add layer"),
])
def test_add_errors(write_yaml, change, field, words):
    layers = [{"name": "a", "kind": "conv", "in_channels": 3, "out_channels": 4, "kernel": 3, "padding": 1},
              {"name": "b", "kind": "conv", "in_channels": 4, "out_channels": 4, "kernel": 3, "padding": 1},
              {"name": "sum", "kind": "add", "inputs": ["a", "b"]}]
    change(layers)
    path = write_yaml("w.yaml", {"schema_version": 1, "name": "w", "source": "t", "input_shape": [3, 8, 8],
                                 "layers": layers})
    with pytest.raises(ConfigError) as err:
        load_workload(path)
    assert err.value.field == field and words in err.value.message, str(err.value)


def test_add_streams_both_inputs_and_the_output_line_by_line():
    layer = Layer("sum", LayerKind.ADD, "sum", (4, 8, 8), (4, 8, 8), DType.FP32)
    view = CoreView(cores=1, line_bytes=LINE, first_level_bytes=32 * 1024, last_private_bytes=256 * 1024)
    space = AddressSpace()
    t = layer_traffic(layer, "act:a", None, 1, space, view, second_input="act:b")
    lines = 4 * 8 * 8 * 4 // LINE
    assert t.kernel is KernelKind.POOL and t.accesses == 3 * lines
    a, b = space.buffers["act:a"][0], space.buffers["act:b"][0]
    out = space.buffers["act:sum"][0]
    assert t.addresses[:3].tolist() == [a, b, out]
    assert t.is_write.tolist() == [False, False, True] * lines
    assert np.array_equal(t.addresses[2::3], out + LINE * np.arange(lines))
    assert set(t.stream[:2].tolist()) == {StreamKind.INPUT} and t.stream[2] == StreamKind.OUTPUT


def test_add_needs_its_second_input():
    layer = Layer("sum", LayerKind.ADD, "sum", (4, 8, 8), (4, 8, 8), DType.FP32)
    view = CoreView(cores=1, line_bytes=LINE, first_level_bytes=32 * 1024, last_private_bytes=256 * 1024)
    with pytest.raises(ValueError, match="second input"):
        layer_traffic(layer, "act:a", None, 1, AddressSpace(), view)
