"""Distiller checkpoints: safe loading (allow-listed stand-ins, refusal of anything else, no
code run), simulating a checkpoint's own shapes and sparsity on every shipped profile,
thinned layers, writing Distiller's layout, and the ``prune`` / ``run --checkpoint`` CLI."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import types
from collections import OrderedDict, namedtuple
from pathlib import Path

import pytest
import torch

from simulator.base.errors import ConfigError
from simulator.cli import main
from simulator.compress.compression import StorageFormat, compress_workload
from simulator.hardware.profile import load_profile
from simulator.model.checkpoint import (
    StandIn,
    ThinningRecipe,
    checkpoint_workload,
    load_checkpoint,
    save_checkpoint,
    shipped_workload,
)
from simulator.pipeline import RunOptions, run

DATA = Path(__file__).resolve().parent / "data" / "distiller"
FIXTURES = ["checkpoint_trained_dense.pth.tar", "checkpoint_trained_4D_regularized_5Lremoved.pth.tar",
            "resnet20_cifar10_checkpoint.pth.tar"]
PROFILES = ["hwprofiles/tegra.yaml", "hwprofiles/i7-5930k.yaml", "hwprofiles/titan-x.yaml"]
REMOVED = ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2", "layer2.2.conv2"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))


class RunsCode:
    """Unpickling this calls ``function(*args)``: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


# --- loading -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_checkpoints_load_without_distiller(name):
    ckpt = load_checkpoint(DATA / name)
    assert ckpt.arch == "resnet20_cifar"
    assert ckpt.state_dict["module.conv1.weight"].shape == (16, 3, 3, 3)
    assert "distiller" not in sys.modules


def test_pickled_optimizer_class_becomes_an_inert_stand_in():
    ckpt = load_checkpoint(DATA / "resnet20_cifar10_checkpoint.pth.tar")
    stand_in = ckpt.other["optimizer_type"]
    assert issubclass(stand_in, StandIn) and stand_in.stands_for == "torch.optim.sgd.SGD"
    assert not issubclass(stand_in, torch.optim.Optimizer)
    # the allow-list was scoped to the load
    assert not any(g is stand_in or (isinstance(g, tuple) and g[0] is stand_in)
                   for g in torch.serialization.get_safe_globals())


def test_masks_come_from_compression_sched():
    ckpt = load_checkpoint(DATA / "checkpoint_trained_4D_regularized_5Lremoved.pth.tar")
    assert sorted(ckpt.masks) == sorted(f"module.{n}.weight" for n in REMOVED)
    assert not ckpt.nonzero("module.layer1.0.conv1.weight").any()


@pytest.mark.parametrize("function, args_of", [
    (os.system, lambda marker: (f"touch {marker}",)),
    (builtins.open, lambda marker: (str(marker), "w")),
])
@pytest.mark.parametrize("zipped", [True, False])
def test_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path, function, args_of, zipped):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"w": torch.ones(2, 2)}, "arch": RunsCode(function, *args_of(marker))}, path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    assert "refused: it pickles" in err.value.message and function.__name__ in err.value.message
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path, repo_root):
    with pytest.raises(ConfigError) as err:
        load_checkpoint(repo_root / "README.md")
    assert "not a PyTorch checkpoint" in err.value.message
    with pytest.raises(ConfigError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pth.tar")


def test_bare_state_dict_is_accepted(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(OrderedDict(w=torch.ones(3, 3)), path)
    assert list(load_checkpoint(path).state_dict) == ["w"]


@pytest.mark.parametrize("document, field", [
    ({"arch": "x"}, "state_dict"),
    ({"state_dict": {"w": 3}}, "state_dict['w']"),
    ({"state_dict": {"w": torch.ones(2)}, "compression_sched": {"masks_dict": {"w": torch.ones(3)}}},
     "compression_sched.masks_dict['w']"),
    ({"state_dict": {"w": torch.ones(2)}, "compression_sched": {"masks_dict": {"v": torch.ones(2)}}},
     "compression_sched.masks_dict['v']"),
])
def test_malformed_checkpoints_name_the_field(tmp_path, document, field):
    path = tmp_path / "bad.pth.tar"
    torch.save(document, path)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    assert err.value.field == field


# --- simulating a checkpoint ------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_checkpoints_simulate_on_every_profile(name):
    ckpt = load_checkpoint(DATA / name)
    workload = checkpoint_workload(ckpt)
    weights = {k: v for k, v in ckpt.state_dict.items() if k.endswith(".weight") and v.dim() > 1}
    by_module = {f"module.{layer.module}.weight": layer for layer in workload.layers if layer.kind.has_weights}
    assert set(by_module) == set(weights)
    encodings = compress_workload(workload, StorageFormat.CSR)
    for key, layer in by_module.items():
        assert layer.weight_shape == tuple(weights[key].shape)
        assert encodings[layer.name].nnz == int(ckpt.nonzero(key).sum())
    for profile in PROFILES:
        prof = load_profile(profile)
        index_bits = prof.compute.kernels.index_bits if prof.compute.kernels is not None else None
        result = run(prof, workload, RunOptions())
        dense, pruned = result.variant("dense"), result.variant("pruned")
        for layer in workload.layers:
            d, p = dense.layer(layer.name), pruned.layer(layer.name)
            if layer.kind.has_weights:
                assert p.flops == pytest.approx(d.flops * layer.density)
                # as the profile's sparse library stores it (MKL / cuSPARSE: 32-bit indices)
                assert p.weight_bytes == encodings[layer.name].with_index_bits(index_bits).total_bytes
        assert pruned.total_s > 0 and dense.total_s > 0


def test_removed_layers_have_no_work():
    workload = checkpoint_workload(load_checkpoint(DATA / "checkpoint_trained_4D_regularized_5Lremoved.pth.tar"))
    densities = {layer.name: layer.density for layer in workload.layers if layer.kind.has_weights}
    assert [n for n, d in densities.items() if d == 0] == REMOVED
    assert all(d == 1.0 for n, d in densities.items() if n not in REMOVED)
    result = run(load_profile(PROFILES[1]), workload, RunOptions(formats=(StorageFormat.CSR,)))
    assert result.variant("pruned").layer("layer1.0.conv1").flops == 0


def _thinned(tmp_path, monkeypatch) -> Path:
    """The dense fixture with layer 2 thinned to 16 filters, as Distiller's FilterRemover does,
    with a ThinningRecipe pickled under distiller.thinning (a fake module, only while saving)."""
    ckpt = load_checkpoint(DATA / "checkpoint_trained_dense.pth.tar")
    state = OrderedDict((k, v.clone()) for k, v in ckpt.state_dict.items())
    keep = torch.arange(16)
    recipe_params = {}
    for key in list(state):
        module = key.split(".")
        if module[1] == "layer2" and state[key].dim() >= 1:
            state[key] = state[key].index_select(0, keep)                   # filters / BN channels
            recipe_params[key] = [(0, keep)]
        if (module[1] == "layer2" and module[3] in ("conv2",) or key.startswith("module.layer2.1.conv1")
                or key.startswith("module.layer2.2.conv1") or key.startswith("module.layer3.0.conv1")
                or key.startswith("module.layer3.0.downsample.0")) and state[key].dim() == 4:
            state[key] = state[key].index_select(1, keep)                   # input channels
    fake = types.ModuleType("distiller.thinning")
    recipe_cls = namedtuple("ThinningRecipe", ["modules", "parameters"])
    recipe_cls.__module__ = "distiller.thinning"
    fake.ThinningRecipe = recipe_cls
    path = tmp_path / "thinned.pth.tar"
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "distiller", types.ModuleType("distiller"))
        patch.setitem(sys.modules, "distiller.thinning", fake)
        torch.save({"arch": "resnet20_cifar", "epoch": 30, "state_dict": state,
                    "thinning_recipes": [recipe_cls({"module.layer2.0.conv1": {"out_channels": 16}}, recipe_params)]},
                   path)
    assert "distiller" not in sys.modules
    return path


def test_thinned_layers_are_simulated_at_their_real_shapes(tmp_path, monkeypatch):
    ckpt = load_checkpoint(_thinned(tmp_path, monkeypatch))
    assert isinstance(ckpt.thinning_recipes[0], ThinningRecipe)
    assert ckpt.thinning_recipes[0].modules == {"module.layer2.0.conv1": {"out_channels": 16}}
    workload = checkpoint_workload(ckpt)
    shapes = {layer.name: layer.weight_shape for layer in workload.layers if layer.kind.has_weights}
    assert shapes["layer2.0.conv1"] == (16, 16, 3, 3)
    assert shapes["layer2.0.conv2"] == (16, 16, 3, 3)
    assert shapes["layer2.0.downsample.0"] == (16, 16, 1, 1)
    assert shapes["layer3.0.conv1"] == (64, 16, 3, 3)
    assert workload.layer("layer2.0.add").out_shape == (16, 16, 16)
    thinned = run(load_profile(PROFILES[0]), workload, RunOptions(formats=(StorageFormat.DENSE,)))
    full = run(load_profile(PROFILES[0]), checkpoint_workload(load_checkpoint(DATA / FIXTURES[0])),
               RunOptions(formats=(StorageFormat.DENSE,)))
    assert thinned.variant("dense").weight_bytes < full.variant("dense").weight_bytes
    assert "distiller" not in sys.modules


def test_shapes_that_do_not_chain_name_the_weight(tmp_path):
    ckpt = load_checkpoint(DATA / FIXTURES[0])
    ckpt.state_dict["module.layer2.1.conv1.weight"] = ckpt.state_dict["module.layer2.1.conv1.weight"][:, :20]
    with pytest.raises(ConfigError) as err:
        checkpoint_workload(ckpt)
    assert err.value.field == "state_dict['module.layer2.1.conv1.weight']"
    assert "does not match the 32 channels arriving" in err.value.message


def test_workload_without_a_matching_weight(tmp_path, repo_root):
    with pytest.raises(ConfigError) as err:
        checkpoint_workload(load_checkpoint(DATA / FIXTURES[0]), repo_root / "workloads" / "alexnet.yaml")
    assert err.value.field == "state_dict" and "features.0.weight" in err.value.message


@pytest.mark.parametrize("arch", ["resnet56_cifar", "../workloads/alexnet", None])
def test_arch_without_a_shipped_workload(arch):
    ckpt = load_checkpoint(DATA / FIXTURES[0])
    with pytest.raises(ConfigError) as err:
        shipped_workload(type(ckpt)(ckpt.path, arch, None, ckpt.state_dict, {}))
    assert err.value.field == "arch" and "give the workload" in err.value.message


def test_checkpoint_density_cannot_be_overridden():
    workload = checkpoint_workload(load_checkpoint(DATA / FIXTURES[1]))
    with pytest.raises(ConfigError, match="density"):
        workload.with_density(0.5)


# --- writing ----------------------------------------------------------------------------------------

def test_saved_layout_loads_with_plain_weights_only(tmp_path):
    path = tmp_path / "out.pth.tar"
    state = OrderedDict(w=torch.tensor([[0.0, 2.0], [3.0, 0.0]]), b=torch.ones(2))
    save_checkpoint(path, state, {"w": state["w"] != 0}, ["w", "b"], "tiny", 7)
    data = torch.load(path, weights_only=True)   # no allow-list needed
    assert data["arch"] == "tiny" and data["epoch"] == 7
    assert data["compression_sched"]["masks_dict"]["b"] is None
    assert data["compression_sched"]["masks_dict"]["w"].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert load_checkpoint(path).masks["w"].tolist() == [[False, True], [True, False]]


def test_save_into_a_missing_directory(tmp_path):
    with pytest.raises(ConfigError) as err:
        save_checkpoint(tmp_path / "absent" / "x.pth.tar", {}, {}, [], None, 0)
    assert err.value.field == "out"


# --- the command line ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli(tmp_path_factory, repo_root):
    """Every CLI invocation of this module, started at once (each spends seconds importing)."""
    folder = tmp_path_factory.mktemp("ckpt-cli")
    evil = folder / "evil.pth.tar"
    torch.save({"state_dict": {}, "x": RunsCode(builtins.open, str(folder / "marker"), "w")}, evil)
    schedule = DATA / "resnet20_filters.schedule_agp.yaml"
    invocations = {
        "prune": ["prune", "--schedule", schedule, "--checkpoint", DATA / FIXTURES[0], "--out",
                  folder / "pruned.pth.tar", "--plot", folder],
        "evil": ["run", "hwprofiles/tegra.yaml", "--checkpoint", evil],
        "run": ["run", "hwprofiles/i7-5930k.yaml", "--checkpoint", DATA / FIXTURES[1], "--format", "csr"],
    }
    env = {**os.environ, "SIMULATOR_CACHE_DIR": str(folder / "cache")}
    started = {name: subprocess.Popen([sys.executable, "-m", "simulator", *map(str, args)], cwd=repo_root, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in invocations.items()}
    done = {}
    for name, proc in started.items():
        out, err = proc.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    done["folder"] = folder
    return done


def test_cli_prune_writes_a_checkpoint_summary_and_plot(cli):
    result = cli["prune"]
    assert result.returncode == 0, result.stderr
    assert "| 21 | module.fc.weight" in result.stdout and "Total sparsity:" in result.stdout
    # the thinning extension is applied; the LR scheduler is not
    assert result.stderr.count("\n") == 1 and "pruning_lr" in result.stderr and "net_thinner" not in result.stderr
    assert "thinning: 40,813,184 -> 30,655,104 MACs per sample" in result.stdout
    pruned = torch.load(cli["folder"] / "pruned.pth.tar", weights_only=True)
    assert int(torch.count_nonzero(pruned["state_dict"]["module.layer3.1.conv1.weight"])) == 11060
    assert pruned["state_dict"]["module.layer2.0.bn1.running_var"].shape == (16,)   # thinned with its conv
    assert pruned["state_dict"]["module.bn1.running_mean"].shape == (16,)    # buffers carried over
    assert (cli["folder"] / "density.png").stat().st_size > 0


def test_cli_refuses_a_malicious_checkpoint(cli):
    result = cli["evil"]
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "refused: it pickles io.open" in result.stderr
    assert not (cli["folder"] / "marker").exists()


def test_cli_runs_a_checkpoint(cli):
    result = cli["run"]
    assert result.returncode == 0, result.stderr
    assert "checkpoint_trained_4D_regularized_5Lremoved.pth.tar" in result.stdout
    assert "layer2.0.add" in result.stdout


def test_cli_errors_are_one_line(tmp_path, capsys, repo_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npruners:\n  p:\n    class: NoSuchPruner\npolicies:\n"
                   "  - pruner: {instance_name: p}\n    epochs: [0]\n", encoding="utf-8")
    resnet = repo_root / "workloads" / "resnet20_cifar.yaml"
    cases = [
        (["prune", "--schedule", str(bad), "--workload", str(resnet), "--out", str(tmp_path / "x.pth.tar")],
         "pruners.p.class: 'NoSuchPruner' is not a pruner"),
        (["run", str(repo_root / PROFILES[0]), "--checkpoint", str(DATA / FIXTURES[0]), "--density", "0.5"],
         "--density: does not apply with --checkpoint"),
        (["prune", "--schedule", str(bad), "--workload", str(resnet), "--out", str(tmp_path / "absent" / "x.pt")],
         "--out"),
    ]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
