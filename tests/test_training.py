"""Training steps (``run --mode train``): the concat join, vDNN's workloads, the forward timing
extended to the step's batch, the backward and update rules, tensor liveness on the DAG, the
offload policies, dyn's search, the profile's convolution algorithms, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.engine.device_memory import Phase, TensorKind
from simulator.engine.offload import OffloadPolicy, simulate_step
from simulator.engine.results import DeviceMemory, LayerResult, OutOfMemory, VariantResult
from simulator.engine.training import (
    LayerTiming,
    Mode,
    Optimizer,
    TrainConfig,
    forward_timing,
    render_training,
    search_dyn,
    training_plan,
    uniform,
)
from simulator.hardware.profile import ConvAlgorithm, load_profile, profile_from_mapping
from simulator.memory.traffic import AddressSpace, CoreView, StreamKind, concat_buffers, layer_traffic
from simulator.model.workload import LayerKind, load_workload, to_torch_module
from simulator.output.timeline import check_timeline
from simulator.pipeline import RunOptions, run

INCEPTION = """\
  - {name: a, kind: conv, in_channels: 3, out_channels: 4, kernel: 3, padding: 1}
  - {name: b, kind: conv, inputs: [a], in_channels: 4, out_channels: 6, kernel: 1}
  - {name: p, kind: maxpool, inputs: [a], kernel: 3, stride: 1, padding: 1}
  - {name: j, kind: concat, inputs: [a, b, p]}
  - {name: fc, kind: fc, in_features: 896, out_features: 10, relu: false}
"""


@pytest.fixture(scope="module")
def titan(repo_root):
    return load_profile(repo_root / "hwprofiles" / "titan-x.yaml")


@pytest.fixture
def inception(workload_from_text):
    return workload_from_text(INCEPTION, [3, 8, 8])


# --- the concat join ------------------------------------------------------------------------------

def test_concat_joins_channels_of_its_inputs(inception):
    join = inception.layer("j")
    assert join.kind is LayerKind.CONCAT
    assert join.in_shape == join.out_shape == (14, 8, 8) and join.parts == (4, 6, 4)
    assert join.flops(batch=4) == 0 and join.weight_count == 0
    assert inception.predecessors("j") == ["a", "b", "p"]
    assert inception.layer("fc").in_shape == (896,)


def test_concat_module_is_torch_cat(inception):
    module = to_torch_module(inception)
    x = torch.randn(2, 3, 8, 8)
    assert module(x).shape == (2, 10)
    join = module.get_submodule("j")
    parts = [torch.ones(2, 4, 8, 8), torch.zeros(2, 6, 8, 8), torch.full((2, 4, 8, 8), 2.0)]
    assert torch.equal(join(*parts), torch.cat(parts, dim=1))


@pytest.mark.parametrize("change, field, words", [
    (lambda layers: layers[3].pop("inputs"), "layers[3].inputs", "names the layers it joins"),
    (lambda layers: layers[3].update(inputs=["a"]), "layers[3].inputs", "joins two or more different"),
    (lambda layers: layers[3].update(inputs=["a", "a"]), "layers[3].inputs", "joins two or more different"),
    (lambda layers: layers[2].update(stride=2), "layers[3].inputs", "planes differ"),
    (lambda layers: layers[3].update(input_shape=[3, 8, 8]), "layers[3].input_shape", "only a layer that reads"),
    (lambda layers: layers[1].update(inputs=["a", "a"]), "layers[1].inputs", "only an add layer joins two"),
])
def test_concat_errors(write_yaml, change, field, words):
    layers = yaml.safe_load(INCEPTION)
    change(layers)
    path = write_yaml("w.yaml", {"schema_version": 1, "name": "w", "source": "t", "input_shape": [3, 8, 8],
                                 "layers": layers})
    with pytest.raises(ConfigError) as info:
        load_workload(path)
    assert info.value.field == field and words in info.value.message


def test_concat_trace_copies_each_input_once_to_its_channel_offset(inception):
    line, batch = 64, 2
    view = CoreView(cores=2, line_bytes=line, first_level_bytes=32 * 1024, last_private_bytes=256 * 1024)
    space = AddressSpace()
    join = inception.layer("j")
    sizes = {name: inception.layer(name).out_bytes(batch) for name in ("a", "b", "p")}
    bases = {name: space.base(f"act:{name}", size) for name, size in sizes.items()}
    traffic = layer_traffic(join, "act:a", None, batch, space, view, "act:b", concat_buffers(inception, join))
    reads = traffic.addresses[traffic.stream == StreamKind.INPUT]
    writes = traffic.addresses[traffic.stream == StreamKind.OUTPUT]
    assert np.array_equal(traffic.is_write, traffic.stream == StreamKind.OUTPUT)
    assert reads.size == sum(sizes.values()) // line and writes.size == join.out_bytes(batch) // line
    for name, base in bases.items():      # every line of every input, once
        assert np.isin(np.arange(base, base + sizes[name], line), reads).all()
    out = space.buffers["act:j"][0]
    plane = 64 * 4
    sample1_b = out + (14 + 4) * plane    # sample 1, channel 4: where b's sample 1 lands
    assert sample1_b in writes
    assert traffic.flops == 0 and traffic.kernel.value == "pool"


def test_concat_runs_through_the_pipeline(titan, inception):
    result = run(titan, inception, RunOptions(batch=2, host_copies=False))
    for variant in result.variants:          # dense and pruned: the join copies the same bytes
        join = variant.layer("j")
        assert join.kernel == "pool" and join.flops == 0 and join.time_s > 0 and join.accesses > 0


# --- vDNN's networks ------------------------------------------------------------------------------

def test_googlenet_is_a_dag_of_inception_modules(repo_root):
    net = load_workload(repo_root / "workloads" / "googlenet.yaml")
    joins = [l for l in net.layers if l.kind is LayerKind.CONCAT]
    assert [l.out_shape[0] for l in joins] == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert all(len(net.predecessors(l.name)) == 4 for l in joins)
    assert net.layer("3a").out_shape == (256, 28, 28) and net.layer("5b").out_shape == (1024, 7, 7)
    assert sorted(net.graph.successors("pool2")) == ["3a.b1", "3a.b2r", "3a.b3r", "3a.pool"]
    assert sum(l.weight_count for l in net.layers) == 6_990_272
    assert net.layer("fc").in_shape == (1024,)


def test_overfeat_fast_model(repo_root):
    net = load_workload(repo_root / "workloads" / "overfeat.yaml")
    assert net.layer("conv1").out_shape == (96, 56, 56) and net.layer("pool5").out_shape == (1024, 6, 6)
    assert sum(l.weight_count for l in net.layers) == 145_909_792


# --- forward timing -------------------------------------------------------------------------------

def _layer(name: str, batch: int, fixed_dram_s: float = 1e-3) -> LayerResult:
    """A synthetic engine result: compute grows with the batch, DRAM is weights plus a per-sample part."""
    busy = {"launch": 5e-6, "compute": 2e-4 * batch, "dram-bandwidth": fixed_dram_s + 1e-5 * batch, "L2": 1e-5}
    return LayerResult(name, "fc", "gemm", 5e-6 + max(busy["compute"], busy["dram-bandwidth"]) + 1e-6, 0.0, 0.0,
                       0, 0, 0, 0, 0, {}, {}, busy, "compute")


def test_forward_timing_extends_each_resource_along_the_batch(tiny_workload_path):
    net = load_workload(tiny_workload_path)
    asked = []

    def simulate_at(batch: int) -> VariantResult:
        asked.append(batch)
        return VariantResult("dense", "dense", 0.0, [_layer(l.name, batch) for l in net.layers])

    timing, batches = forward_timing(net, 64, simulate_at)
    assert asked == batches == [2, 3]
    t = timing["fc1"]
    assert t.busy_s["compute"] == pytest.approx(2e-4 * 64)
    assert t.busy_s["dram"] == pytest.approx(1e-3 + 1e-5 * 64)      # weights once, plus 64 samples
    assert t.busy_s["L2"] == pytest.approx(1e-5)
    assert t.launch_s == 5e-6 and t.fill_s == pytest.approx(1e-6)
    assert t.time_s() == pytest.approx(5e-6 + 1e-6 + 2e-4 * 64)
    assert t.time_s(speed=100.0) == pytest.approx(5e-6 + 1e-6 + 1e-3 + 1e-5 * 64)   # then DRAM bound
    assert t.bound() == "compute" and t.bound(speed=100.0) == "dram"
    asked.clear()
    timing, batches = forward_timing(net, 3, simulate_at)
    assert asked == batches == [3]          # small enough to simulate directly


# --- the step's tasks and tensors ----------------------------------------------------------------

@pytest.fixture
def tiny(tiny_workload_path):
    return load_workload(tiny_workload_path)


def _timing(net, seconds=1e-3):
    return {l.name: LayerTiming(0.0, 0.0, {"compute": seconds, "dram": seconds / 10}, "k") for l in net.layers}


def test_step_runs_forward_loss_backward_then_update(titan, tiny):
    plan = training_plan(titan, tiny, 4, _timing(tiny), uniform(tiny, OffloadPolicy.BASE,
                                                                ConvAlgorithm.PERFORMANCE_OPTIMAL), True)
    names = [t.name for t in plan.tasks]
    assert names == ["conv1 fwd", "pool1 fwd", "fc1 fwd", "fc2 fwd", "loss", "fc2 bwd", "fc1 relu-bwd", "fc1 bwd",
                     "pool1 bwd", "conv1 relu-bwd", "conv1 bwd", "conv1 update", "fc1 update", "fc2 update"]
    task = {t.name: t for t in plan.tasks}
    speed = titan.conv_algorithms.performance_optimal.speed
    # conv1 reads the network input: weight gradient only; fc1: data and weight gradients
    assert task["conv1 bwd"].duration_s == pytest.approx(task["conv1 fwd"].duration_s) == pytest.approx(1e-3 / speed)
    assert task["fc1 bwd"].duration_s == pytest.approx(2e-3)
    assert task["pool1 bwd"].duration_s == pytest.approx(2e-3)       # max pooling: twice the bytes
    assert task["conv1 bwd"].writes == ("dw:conv1",)
    assert set(task["fc1 bwd"].writes) == {"g:y:pool1", "dw:fc1"}
    assert set(task["pool1 bwd"].reads) == {"g:y:pool1", "y:conv1", "y:pool1"}
    assert task["fc1 relu-bwd"].reads == ("y:fc1", "g:y:fc1") and "fc2 relu-bwd" not in task
    dram = titan.dram.sustained_bandwidth_bytes_per_s
    launch = titan.compute.launch_overhead_s
    assert task["fc1 update"].duration_s == pytest.approx(launch + 5 * 512 * 64 * 4 / dram)
    assert {plan.tensors[n].kind for n in plan.persistent} == {TensorKind.WEIGHTS, TensorKind.WEIGHT_GRADIENTS,
                                                               TensorKind.OPTIMIZER_STATE}
    assert plan.copy_in == ("x:conv1",)
    workspace = plan.tensors["ws:conv1:fwd"]
    per_input = titan.conv_algorithms.performance_optimal.workspace_per_input
    assert workspace.size_bytes == int(per_input * 3 * 16 * 16 * 4 * 4)      # x the input of 4 samples


def test_memory_optimal_needs_no_workspace_and_runs_slower(titan, tiny):
    lean = training_plan(titan, tiny, 4, _timing(tiny), uniform(tiny, OffloadPolicy.BASE,
                                                                ConvAlgorithm.MEMORY_OPTIMAL), True)
    assert not [t for t in lean.tensors.values() if t.kind is TensorKind.WORKSPACE]
    assert lean.tasks[0].duration_s == pytest.approx(1e-3)


def test_plain_sgd_keeps_no_state(titan, tiny):
    plan = training_plan(titan, tiny, 4, _timing(tiny), uniform(tiny, OffloadPolicy.BASE,
                                                                ConvAlgorithm.PERFORMANCE_OPTIMAL), True, Optimizer.SGD)
    assert not [n for n in plan.persistent if n.startswith("v:")]
    update = next(t for t in plan.tasks if t.name == "fc1 update")
    assert update.duration_s == pytest.approx(titan.compute.launch_overhead_s
                                              + 3 * 512 * 64 * 4 / titan.dram.sustained_bandwidth_bytes_per_s)


def test_offload_sets_follow_the_policy(titan, tiny):
    def offloaded(policy):
        config = uniform(tiny, policy, ConvAlgorithm.PERFORMANCE_OPTIMAL)
        return set(training_plan(titan, tiny, 4, _timing(tiny), config, True).offload)

    assert offloaded(OffloadPolicy.BASE) == set()
    assert offloaded(OffloadPolicy.ALL) == {"x:conv1", "y:conv1", "y:pool1", "y:fc1"}   # every input backward reads
    assert offloaded(OffloadPolicy.CONV) == {"x:conv1"}


def test_gradients_of_a_shared_map_accumulate_until_its_layer(titan, inception):
    plan = training_plan(titan, inception, 2, _timing(inception), uniform(inception, OffloadPolicy.ALL,
                                                                          ConvAlgorithm.PERFORMANCE_OPTIMAL), True)
    writers = [t.name for t in plan.tasks if "g:y:a" in t.writes]
    assert writers == ["j bwd", "p bwd", "b bwd"]           # reverse file order: concat, pool, conv
    readers = [t.name for t in plan.tasks if "g:y:a" in t.reads]
    assert readers == ["a relu-bwd", "a bwd"]
    assert next(t for t in plan.tasks if t.name == "j bwd").reads == ("g:y:j",)   # a concat only splits
    assert "y:a" in plan.offload and "y:j" in plan.offload
    for policy in OffloadPolicy.BASE, OffloadPolicy.CONV, OffloadPolicy.ALL:
        config = uniform(inception, policy, ConvAlgorithm.PERFORMANCE_OPTIMAL)
        outcome = simulate_step(training_plan(titan, inception, 2, _timing(inception), config, True), titan.link,
                                titan.dram.capacity_bytes)
        assert outcome.fits and outcome.memory_timeline[-1][1] > 0      # persistent weights stay to the end


# --- dyn's search ---------------------------------------------------------------------------------

class _Outcome:
    def __init__(self, fits: bool):
        oom = None if fits else OutOfMemory("y:x", "feature-map", "t", 0.0, 1, 1, 1, 1)
        self.memory = DeviceMemory(10, 1, 1.0, 1, out_of_memory=oom)
        self.total_s = 1.0

    @property
    def fits(self) -> bool:
        return self.memory.fits


@pytest.mark.parametrize("fitting, taken, trainable", [
    (set(), "all(m)", False),
    ({"all(m)", "base(p)"}, "base(p)", True),
    ({"all(m)", "all(p)", "conv(p)"}, "conv(p)", True),
    ({"all(m)", "all(p)"}, "all(p)", True),
    ({"all(m)", "all(p, 1 layers m)"}, "all(p, 1 layers m)", True),
])
def test_dyn_searches_in_vdnn_order(workload_from_text, fitting, taken, trainable):
    net = workload_from_text(INCEPTION, [3, 8, 8])
    tried = []

    def run_config(config: TrainConfig):
        tried.append(config.label)
        return _Outcome(config.label in fitting)

    config, _, log, ok = search_dyn(net, run_config)
    assert (config.label, ok) == (taken, trainable)
    assert tried[0] == "all(m)" and len(log) == len(tried)
    if taken.startswith("all(p, "):
        assert tried == ["all(m)", "base(p)", "all(p)", "all(p, 1 layers m)"]
        assert config.memory_optimal_layers == ["b"]         # the largest input first (a's input is 3 channels)


# --- whole runs -----------------------------------------------------------------------------------

def test_training_run_reports_memory_link_and_slowdown(titan, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    result = run(titan, tiny, RunOptions(batch=8, mode=Mode.TRAIN, offload=OffloadPolicy.ALL))
    assert result.mode == "train" and [v.name for v in result.variants] == ["base(p)", "all(p)"]
    base, offload = result.variants
    assert base.pcie_d2h_bytes == 0 and base.stall_s == 0 and base.training.slowdown is None
    moved = sum(tiny.layer(n).out_bytes(8) for n in ("conv1", "pool1", "fc1"))     # the input needs no d2h
    assert offload.pcie_d2h_bytes == moved
    assert offload.pcie_h2d_bytes == moved + 2 * tiny.layers[0].in_bytes(8)        # input copy, then its prefetch
    assert offload.avg_device_memory_bytes < base.avg_device_memory_bytes
    assert offload.training.slowdown == pytest.approx(offload.total_s / base.total_s - 1)
    assert offload.training.offloaded_tensors == ["x:conv1", "y:conv1", "y:fc1", "y:pool1"]
    assert base.training.network_wide_bytes >= base.peak_device_memory_bytes
    doc = offload.to_json()
    assert list(doc)[:8] == ["name", "format", "total_s", "peak_device_memory_bytes", "avg_device_memory_bytes",
                             "pcie_h2d_bytes", "pcie_d2h_bytes", "stall_s"]
    assert doc["training"]["policy"] == "all" and doc["device_memory"]["fits"]
    phases = {Phase.FORWARD.value, Phase.BACKWARD.value, Phase.UPDATE.value}
    assert {e.args.get("phase") for e in offload.timeline if e.track == "compute"} == phases


def test_running_out_of_memory_is_a_result(repo_root, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    data = yaml.safe_load((repo_root / "hwprofiles" / "titan-x.yaml").read_text(encoding="utf-8"))
    data["memory"]["dram"]["capacity"] = "4 MiB"           # the L2's size: far less than the weights
    small = profile_from_mapping(data, "small.yaml")
    result = run(small, tiny, RunOptions(batch=1024, mode=Mode.TRAIN, offload=OffloadPolicy.DYN))
    base, dyn = result.variants
    assert not base.memory.fits and base.memory.out_of_memory.over_bytes == base.memory.footprint_bytes - 4 * 2**20
    assert not dyn.training.trainable and dyn.training.search[-1].startswith("not trainable")
    oom = dyn.memory.out_of_memory        # all(m), the leanest configuration, names what did not fit
    assert oom.requested_bytes > 0 and oom.tensor.split(":")[0] in {"x", "y", "g", "w", "dw", "v"}
    assert "out of memory first at" in render_training(result)


# --- profile ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, field", [
    ("performance_optimal", {"workspace_per_input": 2.0, "speed": 0.5}, "conv_algorithms.performance_optimal.speed"),
    ("memory_optimal", {"workspace_per_input": 3.0, "speed": 1.0},
     "conv_algorithms.memory_optimal.workspace_per_input"),
    ("memory_optimal", {"workspace_per_input": -1, "speed": 1.0},
     "conv_algorithms.memory_optimal.workspace_per_input"),
])
def test_conv_algorithm_checks(repo_root, write_yaml, key, value, field):
    data = yaml.safe_load((repo_root / "hwprofiles" / "titan-x.yaml").read_text(encoding="utf-8"))
    data["conv_algorithms"][key] = value
    with pytest.raises(ConfigError) as info:
        load_profile(write_yaml("p.yaml", data))
    assert info.value.field == field


def test_titan_x_cites_its_conv_algorithms(titan):
    assert titan.conv_algorithms.of(ConvAlgorithm.MEMORY_OPTIMAL).workspace_per_input == 0
    assert "conv_algorithms.performance_optimal.speed" in titan.sources


# --- command line ---------------------------------------------------------------------------------

def test_cli_train_writes_json_and_a_timeline(repo_root, tiny_workload_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    out, trace = tmp_path / "train.json", tmp_path / "train.trace.json"
    status = cli.main(["run", str(repo_root / "hwprofiles" / "titan-x.yaml"), "--workload", str(tiny_workload_path),
                       "--mode", "train", "--offload", "all", "--conv-algorithm", "memory", "--batch", "8",
                       "--json", str(out), "--timeline", str(trace)])
    printed = capsys.readouterr().out
    assert status == 0 and "one training step, batch 8" in printed and "all(m)" in printed
    document = json.loads(out.read_text())
    assert document["mode"] == "train" and document["variants"][1]["training"]["conv_algorithm"] == "memory"
    events = json.loads(trace.read_text())
    check_timeline(events)
    threads = {e["args"]["name"] for e in events["traceEvents"] if e.get("name") == "thread_name"}
    assert {"compute", "offload (d2h)", "prefetch (h2d)"} <= threads
    assert any(e["ph"] == "C" for e in events["traceEvents"])


@pytest.mark.parametrize("args, words", [
    (["--offload", "all"], "--offload: applies with --mode train only"),
    (["--mode", "train", "--format", "csr"], "--format: training updates dense weights"),
    (["--mode", "train", "--repeat", "2"], "--repeat: applies to inference"),
])
def test_cli_train_errors(repo_root, tiny_workload_path, capsys, args, words):
    status = cli.main(["run", str(repo_root / "hwprofiles" / "titan-x.yaml"), "--workload", str(tiny_workload_path),
                       *args])
    err = capsys.readouterr().err
    assert status == 2 and words in err and len(err.strip().splitlines()) == 1


def test_cli_train_needs_conv_algorithms_in_the_profile(repo_root, tiny_workload_path, capsys):
    status = cli.main(["run", str(repo_root / "hwprofiles" / "tegra.yaml"), "--workload", str(tiny_workload_path),
                       "--mode", "train"])
    assert status == 2 and "tegra.yaml: conv_algorithms: missing" in capsys.readouterr().err


def test_vdnn_comparison_covers_every_configuration(titan, tiny_workload_file, tmp_path, monkeypatch):
    from simulator.studies.vdnn import compare, render

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "workloads").mkdir()
    (tmp_path / "workloads" / "tiny.yaml").write_text(tiny_workload_file.read_text())
    runs, sensitivity = compare(titan, tmp_path, [("Tiny", "tiny.yaml", 8)])
    (net,) = runs
    assert sensitivity == []                       # only VGG-16 (256) gets the sensitivity runs
    assert [c.label for c in net.configs] == ["base(p)", "base(m)", "conv(p)", "conv(m)", "all(p)", "all(m)"]
    assert net.dyn.label == "dyn: base(p)" and net.trainable
    label, share = net.best_reduction("layer-wise")
    assert label == "all(m)" and 0 < share < net.best_reduction("network-wide")[1] < 1
    assert net.network_wide_bytes > net.base.peak_bytes
    assert "| Tiny (8) |" in render(runs, titan.dram.capacity_bytes)
