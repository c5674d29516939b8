"""A layer's inputs keep the order its workload declares (the YAML's ``inputs:`` list, the order a
loader or the torch importer gives) through every transformation of the workload: the first
input of a join is the buffer a trace reads first, so a reordering would change results."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simulator.compress.lowrank import low_rank_workload
from simulator.compress.thinning import thin_workload
from simulator.model.checkpoint import checkpoint_workload, load_checkpoint
from simulator.model.graphedit import replace_layer, resized
from simulator.model.torchgraph import workload_from_module
from simulator.model.workload import DType, load_workload, load_workload_spec

# declared after the other input they sum, so file order and declared order differ
JOINS = {"layer2.0.add": ["layer2.0.downsample.0", "layer2.0.conv2"],
         "layer3.0.add": ["layer3.0.downsample.0", "layer3.0.conv2"]}


@pytest.fixture
def resnet20_path(repo_root):
    return repo_root / "workloads" / "resnet20_cifar.yaml"


def declared(path):
    """Each layer's inputs as the file lists them (the previous layer where it names none)."""
    spec = load_workload_spec(path)
    inputs, previous = {}, None
    for ls in spec.layers:
        inputs[ls.name] = ls.inputs if ls.inputs is not None else ([previous] if previous else [])
        previous = ls.name
    return inputs


def test_the_files_order_is_kept(resnet20_path):
    workload = load_workload(resnet20_path)
    for name, inputs in JOINS.items():
        assert workload.predecessors(name) == inputs
    assert {l.name: workload.predecessors(l.name) for l in workload.layers} == declared(resnet20_path)


@pytest.mark.parametrize("change", [lambda w: w.with_density(0.5), lambda w: w.with_dtype(DType.FP16)],
                         ids=["with_density", "with_dtype"])
def test_density_and_dtype_keep_the_order(resnet20_path, change):
    workload = change(load_workload(resnet20_path))
    assert {l.name: workload.predecessors(l.name) for l in workload.layers} == declared(resnet20_path)


def test_a_checkpoint_keeps_the_workload_files_order(repo_root):
    ckpt = load_checkpoint(repo_root / "tests/data/distiller/checkpoint_trained_dense.pth.tar")
    workload = checkpoint_workload(ckpt)
    for name, inputs in JOINS.items():
        assert workload.predecessors(name) == inputs


def test_graph_edits_keep_the_order(resnet20_path):
    workload = load_workload(resnet20_path)
    edited = resized(workload, {"layer2.0.conv2": 32}, {}, {}, "edited")
    assert edited.predecessors("layer2.0.add") == JOINS["layer2.0.add"]
    layer = workload.layer("layer2.0.conv2")
    replaced = replace_layer(workload, "layer2.0.conv2", [layer], "replaced")
    assert replaced.predecessors("layer2.0.add") == JOINS["layer2.0.add"]
    factored = low_rank_workload(workload, ["layer2.0.conv2"], rank=0.5)
    assert factored.predecessors("layer2.0.add") == ["layer2.0.downsample.0", "layer2.0.conv2_b"]
    thinned, _ = thin_workload(workload.with_density(0.5), seed=0)
    assert thinned.predecessors("layer2.0.add") == JOINS["layer2.0.add"]


class LateJoin(nn.Module):
    """``c2(a) + a``: the add reads c2 first, a layer after c1 in execution order."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x)
        return self.c2(a) + a


def test_the_torch_importer_keeps_the_operands_order():
    workload = workload_from_module(LateJoin(), torch.zeros(1, 1, 8, 8))
    add = next(l.name for l in workload.layers if l.kind.value == "add")
    assert workload.predecessors(add) == ["c2", "c1"]


def test_the_networkx_graph_is_built_on_demand_in_the_declared_order(resnet20_path):
    workload = load_workload(resnet20_path).with_density(0.5)
    assert "graph" not in vars(workload)            # nothing asked for it yet
    graph = workload.graph
    assert graph is workload.graph                   # built once
    assert list(graph.nodes) == [l.name for l in workload.layers]
    for name, inputs in JOINS.items():
        assert list(graph.predecessors(name)) == inputs
        assert graph.nodes[name]["layer"] is workload.layer(name)
    assert workload.sinks() == [n for n in graph.nodes if graph.out_degree(n) == 0] == ["fc"]
