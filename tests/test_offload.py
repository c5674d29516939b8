"""Device memory and the host link: the allocator, tensor lifetimes, the copy streams, vDNN's
offload / prefetch in one simulated step, and weight streaming for inference."""

from __future__ import annotations

import pytest
import yaml

from simulator.engine.device_memory import (
    ALIGNMENT_BYTES,
    DeviceAllocator,
    Phase,
    Placement,
    Task,
    Tensor,
    TensorKind,
    lifetimes,
    network_wide,
)
from simulator.engine.offload import PrefetchWindow, StepPlan, simulate_step
from simulator.hardware.profile import Link, load_profile, profile_from_mapping
from simulator.model.workload import load_workload
from simulator.pipeline import RunOptions, run

MiB = 2**20


def tensor(name: str, mib: float, kind: TensorKind = TensorKind.FEATURE_MAP, on_host: bool = False) -> Tensor:
    return Tensor(name, kind, int(mib * MiB), on_host=on_host)


def link(gb_per_s: float = 1.0, engines: int = 2) -> Link:
    return Link.model_validate({"name": "test", "bandwidth": f"{gb_per_s} GB/s", "latency": "0 s",
                                "copy_engines": engines})


# --- allocator -------------------------------------------------------------------------------------

def test_best_fit_takes_the_smallest_hole_and_coalesces():
    heap = DeviceAllocator(100 * MiB)
    for name, size in (("a", 10), ("b", 30), ("c", 20), ("d", 30)):
        heap.allocate(tensor(name, size), 0.0, "t")
    heap.release("b", 1.0)          # a 30 MiB hole at 10 MiB
    heap.allocate(tensor("e", 8), 1.0, "t")          # the 10 MiB tail is the smallest hole that fits
    assert heap._blocks["e"][0] == 90 * MiB
    heap.release("a", 2.0)
    heap.release("c", 2.0)          # merges with the 30 MiB hole: 10 + 30 + 20 = 60 MiB from 0
    heap.allocate(tensor("f", 55), 2.0, "t")
    assert heap._blocks["f"][0] == 0
    assert heap.out_of_memory is None and heap.result(2.0).fits


def test_out_of_memory_is_a_result_naming_the_tensor():
    heap = DeviceAllocator(64 * MiB)
    heap.allocate(tensor("weights", 40, TensorKind.WEIGHTS), 0.0, "set-up")
    heap.allocate(tensor("y:big", 50), 1.0, "big fwd")        # does not fit: placed past the end
    heap.release("y:big", 2.0)
    memory = heap.result(4.0)
    oom = memory.out_of_memory
    assert not memory.fits
    assert (oom.tensor, oom.tensor_kind, oom.task, oom.time_s) == ("y:big", "feature-map", "big fwd", 1.0)
    assert oom.requested_bytes == 50 * MiB and oom.live_bytes == 40 * MiB
    assert oom.over_bytes == memory.footprint_bytes - 64 * MiB == 26 * MiB
    assert memory.peak_bytes == 90 * MiB
    # time-weighted: 40 MiB for 4 s, 50 MiB more for 1 s
    assert memory.avg_bytes == pytest.approx((40 * 4 + 50 * 1) / 4 * MiB)
    assert memory.avg_by_kind["weights"] == pytest.approx(40 * MiB)


def test_fragmentation_strands_memory_that_a_paged_allocator_uses():
    def run(placement: Placement):
        heap = DeviceAllocator(100 * MiB, placement)
        for name in "abcd":
            heap.allocate(tensor(name, 25), 0.0, "t")
        heap.release("a", 1.0)
        heap.release("c", 1.0)       # 50 MiB free, in two 25 MiB holes
        heap.allocate(tensor("e", 40), 1.0, "t")
        return heap.result(2.0)

    assert not run(Placement.BEST_FIT).fits
    paged = run(Placement.PAGED)
    assert paged.fits and paged.footprint_bytes == paged.peak_bytes == 100 * MiB


def test_blocks_are_aligned():
    heap = DeviceAllocator(MiB)
    heap.allocate(Tensor("x", TensorKind.FEATURE_MAP, 1), 0.0, "t")
    assert heap.live_bytes == ALIGNMENT_BYTES


def test_lifetimes_span_first_to_last_use():
    tasks = [Task("a fwd", "a", "conv", Phase.FORWARD, 1.0, reads=("x",), writes=("y",)),
             Task("b fwd", "b", "conv", Phase.FORWARD, 1.0, reads=("y",), writes=("z",)),
             Task("b bwd", "b", "conv", Phase.BACKWARD, 1.0, reads=("y", "z"), scratch=("ws",))]
    life = lifetimes(tasks, persistent=["w"])
    assert (life["y"].first, life["y"].last, life["y"].forward_last, life["y"].backward_reads) == (0, 2, 1, (2,))
    assert (life["ws"].first, life["ws"].last) == (2, 2)
    assert (life["w"].first, life["w"].last) == (-1, 3)


def test_network_wide_holds_everything_but_one_workspace():
    tensors = [tensor("y", 10), tensor("g", 10, TensorKind.GRADIENT_MAP), tensor("ws1", 4, TensorKind.WORKSPACE),
               tensor("ws2", 6, TensorKind.WORKSPACE)]
    assert network_wide(tensors) == {"feature-map": 10 * MiB, "gradient-map": 10 * MiB, "workspace": 6 * MiB}


# --- one step on the link --------------------------------------------------------------------------

def _step(offload=(), window=PrefetchWindow.NEXT, engines=2, copy_in=("x",)):
    """x (on the host) -> a -> y -> b -> z; backward b reads y, a reads x: 100 MiB maps, 1 GB/s."""
    tensors = {t.name: t for t in (tensor("x", 100, on_host=True), tensor("y", 100), tensor("z", 1),
                                   tensor("gz", 1, TensorKind.GRADIENT_MAP),
                                   tensor("gy", 100, TensorKind.GRADIENT_MAP))}
    tasks = (Task("a fwd", "a", "conv", Phase.FORWARD, 0.05, reads=("x",), writes=("y",)),
             Task("b fwd", "b", "conv", Phase.FORWARD, 0.2, reads=("y",), writes=("z",)),
             Task("loss", "loss", "loss", Phase.BACKWARD, 0.01, reads=("z",), writes=("gz",)),
             Task("b bwd", "b", "conv", Phase.BACKWARD, 0.3, reads=("gz", "y"), writes=("gy",)),
             Task("a bwd", "a", "conv", Phase.BACKWARD, 0.1, reads=("gy", "x")))
    plan = StepPlan(tasks, tensors, copy_in=copy_in, offload=frozenset(offload))
    return simulate_step(plan, link(1.0, engines), 10**9, window=window)


def test_base_keeps_everything_and_never_stalls():
    outcome = _step()
    seconds = 100 * MiB / 1e9
    assert outcome.copies_s[0] == pytest.approx(seconds)           # the input copy before the first kernel
    assert outcome.total_s == pytest.approx(seconds + 0.66)
    assert outcome.stall_s == 0 and outcome.d2h_bytes == 0 and outcome.h2d_bytes == 100 * MiB


def test_offload_overlaps_its_reader_then_syncs_and_prefetch_stalls():
    outcome = _step(offload=("x", "y"))
    seconds = 100 * MiB / 1e9                 # 0.105 s per map over the link
    times = {t.task.name: t for t in outcome.tasks}
    # y's offload starts with b fwd (0.2 s): hidden; x is on the host already, so no copy
    assert times["b fwd"].stall_s == 0
    assert outcome.d2h_bytes == 100 * MiB
    # loss starts backward: b bwd's y is fetched from the start of loss (0.01 s), so b waits
    assert times["b bwd"].stall_s == pytest.approx(seconds - 0.01, rel=1e-6)
    # x is fetched while b bwd computes (0.3 s): a bwd does not wait
    assert times["a bwd"].stall_s == 0
    assert outcome.h2d_bytes == 300 * MiB     # input copy, y back, x back
    assert outcome.stall_s == pytest.approx(seconds - 0.01, rel=1e-6)
    assert outcome.memory.avg_bytes < _step().memory.avg_bytes


def test_offload_sync_stalls_when_the_copy_outlasts_the_reader():
    tensors = {t.name: t for t in (tensor("x", 1, on_host=True), tensor("y", 100), tensor("z", 1))}
    tasks = (Task("a fwd", "a", "conv", Phase.FORWARD, 0.01, reads=("x",), writes=("y",)),
             Task("b fwd", "b", "conv", Phase.FORWARD, 0.02, reads=("y",), writes=("z",)),
             Task("b bwd", "b", "conv", Phase.BACKWARD, 0.01, reads=("y", "z")))
    outcome = simulate_step(StepPlan(tasks, tensors, offload=frozenset({"y"}), preloaded=("x",)), link(), 10**9)
    b = next(t for t in outcome.tasks if t.task.name == "b fwd")
    assert b.stall_s == pytest.approx(100 * MiB / 1e9 - 0.02, rel=1e-6)
    assert any(e.track == "stall" and e.name.startswith("offload sync") for e in outcome.timeline)


def test_one_copy_engine_shares_the_link_between_directions():
    two, one = _step(offload=("x", "y")), _step(offload=("x", "y"), engines=1)
    assert one.total_s >= two.total_s


def test_offloading_what_backward_never_reads_is_refused():
    with pytest.raises(ValueError, match="only a feature map read in forward and again in backward"):
        _step(offload=("z",))


# --- inference: weights that do not fit -------------------------------------------------------------

@pytest.fixture(scope="module")
def small_titan(repo_root):
    """The Titan X with ``capacity`` of device memory and, so that a capacity below its caches is
    allowed, no caches (the tiny workload's weights are a few hundred KiB)."""
    data = yaml.safe_load((repo_root / "hwprofiles" / "titan-x.yaml").read_text(encoding="utf-8"))
    data["memory"]["caches"] = []
    del data["energy"]
    data["sources"] = {k: v for k, v in data["sources"].items() if not k.startswith(("memory.caches", "energy"))}

    def make(capacity: str):
        data["memory"]["dram"]["capacity"] = capacity
        return profile_from_mapping(data, "titan-small.yaml")

    return make


def test_inference_reports_device_memory_when_everything_fits(repo_root, tiny_workload_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    result = run(load_profile(repo_root / "hwprofiles" / "titan-x.yaml"), load_workload(tiny_workload_path),
                 RunOptions(batch=2))
    for variant in result.variants:
        assert variant.memory.fits and variant.streaming is None and variant.stall_s == 0
        assert variant.peak_device_memory_bytes >= variant.weight_bytes
        assert variant.pcie_h2d_bytes == 2 * 3 * 16 * 16 * 4 and variant.pcie_d2h_bytes == 2 * 10 * 4
        assert variant.to_json()["peak_device_memory_bytes"] == variant.memory.peak_bytes


def test_weights_that_do_not_fit_stream_compressed(small_titan, tiny_workload_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    workload = load_workload(tiny_workload_path)
    roomy = run(small_titan("1 GiB"), workload, RunOptions(batch=2))
    # fc1's weights: 128 KiB dense, 26 KiB in CSR; the activations peak at 24 KiB
    tight = run(small_titan("40 KiB"), workload, RunOptions(batch=2))
    for name in ("dense", "pruned"):
        fits, streams = roomy.variant(name), tight.variant(name)
        assert streams.streaming is not None
        assert streams.streaming.streamed_bytes == fits.weight_bytes       # encoded bytes cross the link
        assert streams.pcie_h2d_bytes == fits.pcie_h2d_bytes + fits.weight_bytes
        assert streams.total_s > fits.total_s and streams.stall_s > 0
        assert streams.streaming.effective_bandwidth_bytes_per_s == pytest.approx(
            streams.streaming.streamed_bytes / streams.total_s)
        assert streams.layer("fc1").link_bytes == fits.layer("fc1").weight_bytes
    dense, pruned = tight.variant("dense"), tight.variant("pruned")
    assert pruned.streaming.streamed_bytes < dense.streaming.streamed_bytes
    assert dense.memory.out_of_memory.tensor == "w:fc1"             # one layer alone is too big: a result
    assert any(e.track == "weights (h2d)" for e in dense.timeline)
