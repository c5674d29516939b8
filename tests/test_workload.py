"""Workloads: shipped networks resolve to the published shapes, sizes and FLOPs; shapes chain;
the torch module mirrors the file; every bad layer is one ConfigError line."""

from __future__ import annotations

import math

import pytest

from simulator.base.errors import ConfigError
from simulator.model.workload import DType, LayerKind, load_workload, to_torch_module


@pytest.fixture
def workloads(repo_root):
    return repo_root / "workloads"


@pytest.fixture
def alexnet(workloads):
    return load_workload(workloads / "alexnet.yaml")


@pytest.fixture
def vgg16(workloads):
    return load_workload(workloads / "vgg16.yaml")


@pytest.fixture
def eie(workloads):
    return load_workload(workloads / "eie.yaml")


@pytest.fixture(scope="module")
def alexnet_module(repo_root):
    """AlexNet built once in torch (default initialisation) for the tests below."""
    return to_torch_module(load_workload(repo_root / "workloads" / "alexnet.yaml"))


@pytest.fixture
def load_error(load_error_of):
    """``load_error(data)`` writes a workload and returns the ConfigError loading it raises."""
    return load_error_of("workload.yaml", load_workload)


# --- AlexNet ---------------------------------------------------------------------------------

def test_alexnet_weight_count(alexnet):
    assert sum(layer.weight_count for layer in alexnet.layers) == 61_090_496


def test_alexnet_layer_names(alexnet):
    assert [layer.name for layer in alexnet.layers] == [
        "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]


def test_alexnet_torch_module_names(alexnet):
    assert [layer.module for layer in alexnet.layers] == [
        "features.0", "features.2", "features.3", "features.5", "features.6", "features.8",
        "features.10", "features.12", "classifier.1", "classifier.4", "classifier.6"]


def test_alexnet_shapes_chain(alexnet):
    assert alexnet.layer("conv1").out_shape == (64, 55, 55)
    assert alexnet.layer("pool5").out_shape == (256, 6, 6)
    assert math.prod(alexnet.layer("pool5").out_shape) == 9216
    assert alexnet.layer("fc6").in_shape == (9216,)
    assert alexnet.layer("fc8").out_shape == (1000,)
    for before, after in zip(alexnet.layers, alexnet.layers[1:]):
        assert math.prod(before.out_shape) == math.prod(after.in_shape)


def test_alexnet_is_a_chain(alexnet):
    names = [layer.name for layer in alexnet.layers]
    assert list(alexnet.graph.edges) == list(zip(names, names[1:]))
    assert alexnet.predecessors("conv1") == []
    assert alexnet.predecessors("fc6") == ["pool5"]


def test_alexnet_densities_from_the_file(alexnet):
    assert alexnet.layer("fc6").density == 0.09
    assert alexnet.layer("fc6").activation_density == 0.351
    assert alexnet.layer("pool1").density == 1.0
    assert alexnet.layer("fc8").relu is False


def test_fc_weight_matrix_is_outputs_by_inputs(alexnet):
    fc6 = alexnet.layer("fc6")
    assert fc6.weight_shape == (4096, 9216)
    assert fc6.weight_matrix_shape == (4096, 9216)
    assert fc6.weight_bytes() == 4096 * 9216 * 4


def test_conv_weight_matrix_flattens_the_kernel(alexnet):
    conv2 = alexnet.layer("conv2")
    assert conv2.weight_shape == (192, 64, 5, 5)
    assert conv2.weight_matrix_shape == (192, 64 * 25)


def test_pool_has_no_weights(alexnet):
    pool = alexnet.layer("pool1")
    assert pool.weight_count == 0
    assert pool.weight_shape == ()
    assert not pool.kind.has_weights


# --- VGG-16 -------------------------------------------------------------------------------------

def test_vgg16_weight_count(vgg16):
    assert sum(layer.weight_count for layer in vgg16.layers) == 138_344_128


def test_vgg16_conv1_2_flops_are_two_per_mac(vgg16):
    # 64 x 64 x 3 x 3 weights applied at 224 x 224 positions, 2 FLOPs each
    assert vgg16.layer("conv1_2").flops(1) == 3_699_376_128 == 2 * 64 * 64 * 9 * 224 * 224


def test_vgg16_total_flops_at_batch_1(vgg16):
    total = sum(layer.flops(1) for layer in vgg16.layers if layer.kind.has_weights)
    assert total == pytest.approx(30.9e9, abs=0.05e9)


def test_flops_scale_with_batch_and_density(vgg16):
    fc6 = vgg16.layer("fc6")
    assert fc6.flops(4) == 4 * fc6.flops(1)
    assert fc6.flops(1, density=0.25) == pytest.approx(fc6.flops(1) / 4)


def test_activation_bytes(vgg16):
    conv1_1 = vgg16.layer("conv1_1")
    assert conv1_1.in_bytes(2) == 2 * 3 * 224 * 224 * 4
    assert conv1_1.out_bytes(1) == 64 * 224 * 224 * 4


# --- EIE benchmark layers -----------------------------------------------------------------------

def test_eie_has_nine_independent_layers(eie):
    assert len(eie.layers) == 9
    assert eie.graph.number_of_nodes() == 9
    assert eie.graph.number_of_edges() == 0
    assert all(eie.predecessors(layer.name) == [] for layer in eie.layers)


@pytest.mark.parametrize("name, rows, cols", [
    ("AlexNet_FC6", 4096, 9216),
    ("AlexNet_FC7", 4096, 4096),
    ("AlexNet_FC8", 1000, 4096),
    ("VGG16_FC6", 4096, 25088),
    ("VGG16_FC7", 4096, 4096),
    ("VGG16_FC8", 1000, 4096),
    ("NT_We", 600, 4096),
    ("NT_Wd", 8791, 600),
    ("NT_LSTM", 2400, 1201),
])
def test_eie_published_shapes(eie, name, rows, cols):
    assert eie.layer(name).weight_matrix_shape == (rows, cols)
    assert eie.layer(name).kind is LayerKind.FC


# --- torch module -------------------------------------------------------------------------------

def test_torch_parameter_names_follow_the_module_paths(alexnet_module):
    names = [name for name, _ in alexnet_module.named_parameters()]
    assert names[0] == "features.0.weight"
    assert names[-1] == "classifier.6.bias"
    assert [n for n in names if n.endswith(".weight")] == [
        "features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight",
        "features.10.weight", "classifier.1.weight", "classifier.4.weight", "classifier.6.weight"]


def test_torch_parameter_shapes_match_the_workload(alexnet_module, alexnet):
    params = dict(alexnet_module.named_parameters())
    for layer in alexnet.layers:
        if layer.kind.has_weights:
            assert tuple(params[f"{layer.module}.weight"].shape) == layer.weight_shape


def test_torch_forward_pass_shape(alexnet_module):
    import torch

    with torch.no_grad():
        out = alexnet_module(torch.zeros(1, 3, 224, 224))
    assert tuple(out.shape) == (1, 1000)


def test_torch_module_of_independent_layers(write_yaml):
    import torch

    data = {"schema_version": 1, "name": "two", "source": "tests", "input_shape": [32], "layers": [
        {"name": "a", "kind": "fc", "inputs": [], "input_shape": [32], "in_features": 32, "out_features": 8},
        {"name": "b", "kind": "fc", "inputs": [], "input_shape": [32], "in_features": 32, "out_features": 5},
    ]}
    workload = load_workload(write_yaml("two.yaml", data))
    assert workload.graph.number_of_edges() == 0
    with torch.no_grad():
        out = to_torch_module(workload)(torch.zeros(3, 32))
    assert tuple(out.shape) == (3, 5)   # the last layer's output


def test_tiny_workload_forward_pass(tiny_workload_path):
    import torch

    module = to_torch_module(load_workload(tiny_workload_path))
    with torch.no_grad():
        out = module(torch.zeros(2, 3, 16, 16))
    assert tuple(out.shape) == (2, 10)


# --- with_density --------------------------------------------------------------------------------

def test_with_density_changes_only_weighted_layers(alexnet):
    changed = alexnet.with_density(0.5)
    for before, after in zip(alexnet.layers, changed.layers):
        if before.kind.has_weights:
            assert after.density == 0.5
        else:
            assert after == before
        assert after.activation_density == before.activation_density
        assert after.out_shape == before.out_shape
        assert changed.layer(after.name) == after


def test_with_density_leaves_the_original_alone(alexnet):
    alexnet.with_density(0.5)
    assert alexnet.layer("fc6").density == 0.09


# --- the tiny workload and its errors -------------------------------------------------------------

def test_tiny_workload_resolves(tiny_workload_path):
    tiny = load_workload(tiny_workload_path)
    assert [layer.out_shape for layer in tiny.layers] == [(8, 16, 16), (8, 8, 8), (64,), (10,)]
    assert tiny.dtype is DType.FP32
    assert tiny.layer("conv1").module == "conv1"   # module defaults to the layer name


def test_fp16_halves_the_bytes(tiny_workload_data, write_yaml):
    tiny_workload_data["dtype"] = "fp16"
    tiny = load_workload(write_yaml("fp16.yaml", tiny_workload_data))
    assert tiny.layer("fc1").weight_bytes() == 512 * 64 * 2


def test_in_features_must_match_the_arriving_shape(tiny_workload_data, load_error):
    tiny_workload_data["layers"][2]["in_features"] = 500
    err = load_error(tiny_workload_data)
    assert err.field == "layers[2].in_features"
    assert "512" in err.message and "[8, 8, 8]" in err.message


@pytest.mark.parametrize("index, key, value, field, words", [
    pytest.param(0, "in_channels", 4, "layers[0].in_channels", "", id="in-channels-must-match"),
    pytest.param(2, "kernel", 3, "layers[2].kernel", "does not apply to a fc layer", id="conv-field-on-an-fc-layer"),
    pytest.param(1, "kind", "lstm", "layers[1].kind", "'lstm'", id="unknown-layer-kind"),
    pytest.param(3, "dropout", 0.5, "layers[3].dropout", "unknown key (allowed: name, kind, module",
                 id="unknown-key-in-a-layer"),
    pytest.param(3, "name", "fc1", "layers[3].name", "'fc1' is used by an earlier layer", id="duplicate-layer-name"),
    pytest.param(2, "module", "fc2", "layers[3].module", "", id="duplicate-module-name"),
    pytest.param(2, "inputs", ["fc2"], "layers[2].inputs", "'fc2' is not an earlier layer",
                 id="inputs-naming-a-later-layer"),
    pytest.param(1, "density", 0.5, "layers[1].density", "no weights to prune", id="density-on-a-pool-layer"),
    pytest.param(0, "kernel", 40, "layers[0].kernel", "", id="kernel-larger-than-the-input"),
    pytest.param(0, "padding", -1, "layers[0].padding", "", id="negative-padding"),
])
def test_a_bad_layer_field(tiny_workload_data, load_error, index, key, value, field, words):
    tiny_workload_data["layers"][index][key] = value
    err = load_error(tiny_workload_data)
    assert err.field == field
    assert words in err.message


def test_missing_required_field_for_the_kind(tiny_workload_data, load_error):
    del tiny_workload_data["layers"][2]["out_features"]
    err = load_error(tiny_workload_data)
    assert err.field == "layers[2].out_features"
    assert "missing required field" in err.message


def test_missing_layer_name(tiny_workload_data, load_error):
    del tiny_workload_data["layers"][1]["name"]
    err = load_error(tiny_workload_data)
    assert (err.field, err.message) == ("layers[1].name", "missing required field")


@pytest.mark.parametrize("density", [0, 1.5, -0.5])
def test_density_outside_zero_one(tiny_workload_data, load_error, density):
    tiny_workload_data["layers"][0]["density"] = density
    err = load_error(tiny_workload_data)
    assert err.field == "layers[0].density"
    assert repr(density) in err.message


def test_no_layers(tiny_workload_data, load_error):
    tiny_workload_data["layers"] = []
    assert load_error(tiny_workload_data).field == "layers"


def test_unsupported_schema_version(tiny_workload_data, load_error):
    tiny_workload_data["schema_version"] = 3
    assert load_error(tiny_workload_data).field == "schema_version"


def test_missing_workload_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_workload(tmp_path / "absent.yaml")
