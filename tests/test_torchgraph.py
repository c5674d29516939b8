"""Any torch model as a workload (``simulator.model.torchgraph``): the captured layer graph, its folds,
its errors, the module's own weights as the sparsity, and ``run --model``."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from simulator.base.errors import ConfigError
from simulator.cli import main
from simulator.compress.compression import StorageFormat
from simulator.hardware.profile import load_profile
from simulator.model.torchgraph import load_model, workload_from_module
from simulator.model.workload import DType, LayerKind, to_torch_module
from simulator.pipeline import RunOptions, run

I7 = "hwprofiles/i7-5930k.yaml"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))


def kinds(workload):
    return [(l.name, l.kind) for l in workload.layers]


# --- the layer graph ------------------------------------------------------------------------------

def test_a_sequential_cnn_becomes_its_layers_with_batch_norm_and_relu_folded():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Dropout(), nn.Linear(16, 10))
    w = workload_from_module(model, torch.zeros(2, 3, 16, 16), name="seq")
    assert kinds(w) == [("0", LayerKind.CONV), ("3", LayerKind.MAXPOOL), ("4", LayerKind.CONV),
                        ("6", LayerKind.AVGPOOL), ("9", LayerKind.FC)]
    assert [l.out_shape for l in w.layers] == [(8, 16, 16), (8, 8, 8), (16, 4, 4), (16, 1, 1), (10,)]
    assert [l.relu for l in w.layers] == [True, False, True, False, False]
    pool = w.layer("6")
    assert (pool.kernel_hw, pool.stride) == (4, 4)          # adaptive 4x4 -> 1x1 is one 4x4 window
    assert w.name == "seq" and w.input_shape == (3, 16, 16) and w.dtype is DType.FP32
    assert w.predecessors("0") == [] and w.predecessors("9") == ["6"]
    assert w.layer("4").stride == 2 and w.layer("4").padding == 1


class Residual(nn.Module):
    """Functional ops, a residual add, a ReLU after a max pool, a view that keeps the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        y = F.relu(self.c1(x))
        y = F.relu(self.c2(y)) + y
        y = F.relu(F.max_pool2d(y, 2))
        return self.fc(y.view(y.size(0), -1))


class Lenet(nn.Module):
    """The shape of PyTorch's MNIST example: ReLU after each pool, one pool module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = torch.relu(self.pool(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class Inception(nn.Module):
    """Branches joined along the channels (an inception module), then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a, self.b = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 3, 3, padding=1)
        self.fc = nn.Linear(5 * 8 * 8, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        return self.fc(y.flatten(1))


@pytest.mark.parametrize("model_class, shape", [(Residual, (1, 8, 8)), (Lenet, (1, 28, 28)), (Inception, (1, 8, 8))])
def test_the_layer_graph_computes_what_the_module_computes(model_class, shape):
    torch.manual_seed(0)
    model = model_class().eval()
    w = workload_from_module(model, torch.zeros(2, *shape))
    rebuilt = to_torch_module(w)
    state = {}
    for layer in w.layers:
        if layer.kind.has_weights:
            own = model.get_submodule(layer.module)
            state[f"{layer.module}.weight"], state[f"{layer.module}.bias"] = own.weight, own.bias
    rebuilt.load_state_dict(state)
    x = torch.randn(3, *shape)
    assert torch.allclose(rebuilt(x), model(x), atol=1e-6)


def test_an_add_joins_two_layers_and_a_relu_after_a_pool_folds_before_it():
    w = workload_from_module(Residual(), torch.zeros(1, 1, 8, 8))
    assert kinds(w) == [("c1", LayerKind.CONV), ("c2", LayerKind.CONV), ("add", LayerKind.ADD),
                        ("max_pool2d", LayerKind.MAXPOOL), ("fc", LayerKind.FC)]
    assert sorted(w.predecessors("add")) == ["c1", "c2"]
    assert w.layer("add").relu                             # relu(max_pool(add)) == max_pool(relu(add))


def test_a_concat_joins_its_branches_along_the_channels():
    w = workload_from_module(Inception(), torch.zeros(1, 1, 8, 8))
    assert kinds(w)[3] == ("cat", LayerKind.CONCAT)
    assert w.layer("cat").out_shape == (5, 8, 8) and sorted(w.predecessors("cat")) == ["a", "b"]


def test_a_weightless_module_called_twice_is_two_layers():
    w = workload_from_module(Lenet(), torch.zeros(1, 1, 28, 28))
    assert [l.name for l in w.layers] == ["conv1", "pool", "conv2", "pool@2", "fc1", "fc2"]
    assert w.layer("conv2").relu and w.layer("fc1").relu and not w.layer("fc2").relu


def test_an_adaptive_pool_to_its_own_size_is_nothing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), nn.Linear(144, 2))
    assert [l.kind for l in workload_from_module(model, torch.zeros(1, 3, 8, 8)).layers] == [LayerKind.CONV,
                                                                                           LayerKind.FC]


def test_the_example_inputs_dtype_is_the_workloads_unless_given():
    model = nn.Sequential(nn.Linear(8, 4))
    assert workload_from_module(model.half(), torch.zeros(2, 8, dtype=torch.float16)).dtype is DType.FP16
    assert workload_from_module(model.float(), torch.zeros(2, 8), dtype=DType.INT16).dtype is DType.INT16


# --- errors: one line naming the node and its op -------------------------------------------------

class Branchy(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


class Lambda(nn.Module):
    def __init__(self, fn, *modules) -> None:
        super().__init__()
        self.fn = fn
        self.layers = nn.ModuleList(modules)

    def forward(self, x):
        return self.fn(self, x)


@pytest.mark.parametrize("model, message", [
    (Lambda(lambda s, x: s.layers[0](x) * 2, nn.Conv2d(1, 2, 1)),
     r"node mul \(operator\.mul\): is not supported \(supported: Conv2d, Linear"),
    (Lambda(lambda s, x: torch.cat([s.layers[0](x), s.layers[1](x)], 2), nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 1)),
     r"node cat \(torch\.cat\): joins along dimension 2"),
    (Lambda(lambda s, x: s.layers[0](x.flatten(2)), nn.Conv1d(1, 2, 3)),
     r"module layers\.0 \(nn\.Conv1d\): is not supp"),
    (Lambda(lambda s, x: torch.sigmoid(s.layers[0](x)), nn.Conv2d(1, 2, 1)), r"node sigmoid \(torch\.sigmoid\)"),
    (Lambda(lambda s, x: s.layers[0](x).permute(0, 2, 3, 1), nn.Conv2d(1, 2, 1)), r"\(Tensor\.permute\)"),
    (Branchy(), r"torch\.fx cannot capture the graph of its forward \(TraceError"),
    (nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2), nn.BatchNorm2d(2)),
     r"module 2 \(nn\.BatchNorm2d\): folds only into a conv or fc layer right before it; here it reads maxpool"),
    (Lambda(lambda s, x: s.layers[0](x) + x, nn.Conv2d(1, 1, 1)), r"adds the network input"),
    (Lambda(lambda s, x: s.layers[0](x) + s.layers[1](x), nn.Conv2d(1, 2, 1), nn.Conv2d(1, 1, 1)),
     r"broadcasts \[2, 8, 8\] \+ \[1, 8, 8\]"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), r"module 0 \(nn\.Conv2d\): dilation \(2, 2\) is not modelled"),
    (nn.Sequential(nn.MaxPool2d(3, ceil_mode=True)), r"ceil_mode=True is not modelled"),
    (nn.Sequential(nn.Conv2d(1, 2, (1, 3))), r"kernel_size \(1, 3\) is not square"),
    (nn.Sequential(nn.Linear(8, 4)), r"multiplies a \[1, 8, 8\] input per sample"),
    (Lambda(lambda s, x: s.layers[0](s.layers[0](x)), nn.Conv2d(1, 1, 1)),
     r"calls module 'layers\.0' a second time: shared weights"),
    (Lambda(lambda s, x: s.layers[1](s.layers[0](x).view(x.shape[0], 4, 8, 4)), nn.Conv2d(1, 2, 1),
            nn.Conv2d(4, 2, 1)), r"reads the output of layers\.0 reshaped from \[2, 8, 8\] to \[4, 8, 4\]"),
    (nn.Sequential(nn.Flatten(0)), r"gives shape \[128\], which does not keep the batch dimension"),
    (nn.Sequential(nn.ReLU()), r"has no layer the simulator models"),
])
def test_unsupported_models_are_one_error_naming_the_node_and_op(model, message):
    with pytest.raises(ConfigError, match=message) as caught:
        workload_from_module(model, torch.ones(2, 1, 8, 8), source="my.models:net")
    assert str(caught.value).startswith("my.models:net: ") and "\n" not in str(caught.value)


def test_a_batch_norm_is_not_folded_when_another_node_reads_the_conv_before_it():
    model = Lambda(lambda s, x: s.layers[1](s.layers[0](x)) + s.layers[0](x), nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with pytest.raises(ConfigError, match="calls module 'layers.0' a second time"):
        workload_from_module(model, torch.ones(2, 1, 8, 8))
    shared = Lambda(lambda s, x: (lambda c: s.layers[1](c) + c)(s.layers[0](x)), nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with pytest.raises(ConfigError, match="cannot fold into layer layers.0: another node reads its output"):
        workload_from_module(shared, torch.ones(2, 1, 8, 8))


def test_graph_capture_leaves_the_modules_training_mode_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout())
    model.train()
    before = model[1].running_mean.clone()
    workload_from_module(model, torch.randn(4, 1, 8, 8))
    assert model.training and model[1].training and torch.equal(model[1].running_mean, before)


# --- the module's own weights ----------------------------------------------------------------------

def test_the_modules_zeros_are_the_sparsity_and_a_torch_mask_counts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    with torch.no_grad():
        model[0].weight[:2] = 0                               # half the filters zero
    prune.l1_unstructured(model[2], "weight", amount=0.75)     # torch's re-parametrisation: weight_orig x mask
    w = workload_from_module(model, torch.zeros(1, 1, 8, 8))
    assert np.array_equal(w.weight_masks["0"], (model[0].weight != 0).numpy())
    assert np.array_equal(w.weight_masks["2"], model[2].weight_mask.bool().numpy())
    assert w.layer("0").density == 0.5 and w.layer("2").density == 0.25


def test_density_prunes_the_modules_own_weights_by_magnitude():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 10))
    w = workload_from_module(model, torch.zeros(1, 100), density=0.1)
    kept = w.weight_masks["0"]
    assert kept.sum() == 100
    magnitude = model[0].weight.detach().abs().numpy()
    assert magnitude[kept].min() >= magnitude[~kept].max()


def test_the_pruned_run_stores_exactly_the_modules_non_zeros(repo_root):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32))
    with torch.no_grad():
        model[0].weight[torch.rand(32, 64) < 0.8] = 0
    nnz = int((model[0].weight != 0).sum())
    w = workload_from_module(model, torch.zeros(1, 64))
    result = run(load_profile(repo_root / I7), w, RunOptions(formats=(StorageFormat.CSR,)))
    assert result.variants[0].weight_bytes == nnz * 4 + nnz * 4 + (32 + 1) * 4


# --- the command line -----------------------------------------------------------------------------

@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """An importable module of the user's own (on sys.path, as an installed package would be)."""
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def with_input():
            return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)), \\
                torch.zeros(1, 1, 8, 8)

        def bare():
            return nn.Sequential(nn.Linear(16, 4))

        def broken():
            raise RuntimeError("no weights here")

        NUMBER = 3
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models"


def test_run_model_simulates_a_users_module(repo_root, user_models, capsys):
    assert main(["run", str(repo_root / I7), "--model", f"{user_models}:with_input"]) == 0
    out = capsys.readouterr().out
    assert "Sequential on Intel Core i7-5930K" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith(("0 ", "3 "))] == ["0", "3"]


def test_run_model_density_prunes_its_weights(repo_root, user_models, capsys):
    assert main(["run", str(repo_root / I7), "--model", f"{user_models}:bare", "--input-shape", "16",
                 "--density", "0.25", "--format", "csr"]) == 0
    assert "weights" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--model", "models/net.py"], "--model: 'models/net.py' is not package.module:factory (a file path is never run"),
    (["--model", "no_such_pkg.models:net"], "--model: no_such_pkg.models:net: no module named 'no_such_pkg'"),
    (["--model", "my_models:absent"], "my_models has no attribute 'absent'"),
    (["--model", "my_models:broken"], "calling broken() raised RuntimeError: no weights here"),
    (["--model", "my_models:NUMBER"], "NUMBER is a int, not a callable or an nn.Module"),
    (["--model", "my_models:bare"], "--input-shape: needed: my_models:bare returns a module without an example"),
    (["--model", "my_models:bare", "--input-shape", "3,x"], "--input-shape: '3,x': expected the sample's shape"),
    (["--model", "my_models:bare", "--input-shape", "8"],
     "example input: running it through the model failed at module 0 (nn.Linear) (RuntimeError: mat1 and mat2"),
    (["--model", "my_models:bare", "--workload", "workloads/alexnet.yaml"], "--workload: does not apply with --model"),
    (["--input-shape", "3,8,8"], "--input-shape: applies with --model only"),
])
def test_run_model_errors_are_one_line(repo_root, user_models, capsys, args, message):
    assert main(["run", str(repo_root / I7), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_run_model_with_a_checkpoint_takes_the_checkpoints_weights(repo_root, user_models, tmp_path, capsys):
    from simulator.model.checkpoint import save_checkpoint

    model = load_model(f"{user_models}:with_input").module
    state = {n: t.clone() for n, t in model.state_dict().items()}
    state["3.weight"][:, 128:] = 0                               # half of the FC's weights
    masks = {"0.weight": torch.rand(4, 1, 3, 3) < 0.5}
    path = tmp_path / "net.pth.tar"
    save_checkpoint(path, {f"module.{n}": t for n, t in state.items()}, {f"module.{n}": m for n, m in masks.items()},
                    [f"module.{n}" for n in state], "net", 3)
    assert main(["run", str(repo_root / I7), "--model", f"{user_models}:with_input", "--checkpoint", str(path),
                 "--format", "csr", "--json", str(tmp_path / "r.json")]) == 0
    import json

    layers = {l["name"]: l for l in json.loads((tmp_path / "r.json").read_text())["variants"][0]["layers"]}
    fc_nnz = 10 * 128
    assert layers["3"]["weight_bytes"] == fc_nnz * 8 + 11 * 4
    bad = {**state, "3.weight": torch.zeros(10, 128)}
    save_checkpoint(path, bad, {}, list(bad), "net", 3)
    assert main(["run", str(repo_root / I7), "--model", f"{user_models}:with_input", "--checkpoint", str(path)]) == 2
    assert "state_dict['3.weight']: shape (10, 128) differs from the model's (10, 256)" in capsys.readouterr().err
