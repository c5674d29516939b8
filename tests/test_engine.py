"""Engine invariants: physical lower bounds, conservation of bytes, determinism, warm caches."""


import pytest

from simulator.compress.compression import StorageFormat
from simulator.hardware.profile import load_profile
from simulator.pipeline import RunOptions, run

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def tegra():
    return load_profile("hwprofiles/tegra.yaml")


@pytest.fixture(scope="module")
def i7():
    return load_profile("hwprofiles/i7-5930k.yaml")


@pytest.fixture
def small(workload_from_text):
    return workload_from_text("""\
  - {name: conv, kind: conv, in_channels: 3, out_channels: 16, kernel: 3, padding: 1, density: 0.5}
  - {name: pool, kind: maxpool, kernel: 2}
  - {name: fc1, kind: fc, in_features: 1024, out_features: 512, density: 0.1}
  - {name: fc2, kind: fc, in_features: 512, out_features: 10, density: 0.25, relu: false}
""", [3, 16, 16])


def test_time_is_never_below_bytes_over_peak_bandwidth_nor_flops_over_peak(tegra, i7, small):
    for profile in (tegra, i7):
        result = run(profile, small, RunOptions(batch=4))
        for variant in result.variants:
            for layer in variant.layers:
                assert layer.time_s >= layer.dram_bytes / profile.dram.peak_bandwidth_bytes_per_s
                assert layer.time_s >= layer.flops / profile.peak_flops_per_s


def test_dram_bytes_are_whole_lines_of_what_missed(i7, small):
    result = run(i7, small, RunOptions())
    line = i7.caches[-1].line_bytes
    for layer in result.variant("pruned").layers:
        assert layer.dram_read_bytes % line == 0
        reached = layer.accesses - sum(layer.hits.values())
        assert layer.dram_read_bytes == reached * line


def test_hits_never_exceed_accesses(tegra, small):
    for layer in run(tegra, small, RunOptions()).variant("dense").layers:
        assert sum(layer.hits.values()) <= layer.accesses
        assert all(0.0 <= r <= 1.0 for r in layer.hit_rate.values())


def test_variants_side_by_side_equal_each_alone(tegra, small, monkeypatch):
    # run() simulates the variants in threads when the machine has more than one CPU; each must
    # come out exactly as when it runs alone, and as with one CPU.
    import simulator.pipeline as pipeline

    both = run(tegra, small, RunOptions(repeat=2)).variants
    alone = [run(tegra, small, RunOptions(repeat=2, formats=(fmt,))).variants[0]
             for fmt in (StorageFormat.DENSE, StorageFormat.CSR)]
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 1)
    serial = run(tegra, small, RunOptions(repeat=2)).variants
    assert both == alone == serial


def test_same_seed_same_result(tegra, small):
    a = run(tegra, small, RunOptions(seed=3)).to_json()
    b = run(tegra, small, RunOptions(seed=3)).to_json()
    assert a == b


def test_a_layer_that_fits_runs_from_cache_when_repeated(i7, small):
    cold = run(i7, small, RunOptions(formats=(StorageFormat.DENSE,), repeat=1)).variant("dense")
    warm = run(i7, small, RunOptions(formats=(StorageFormat.DENSE,), repeat=3)).variant("dense")
    assert warm.layer("fc1").dram_read_bytes < 0.1 * cold.layer("fc1").dram_read_bytes
    assert warm.layer("fc1").time_s < cold.layer("fc1").time_s


def test_layers_run_back_to_back(tegra, small):
    layers = run(tegra, small, RunOptions()).variant("pruned").layers
    for before, after in zip(layers, layers[1:]):
        assert after.start_s == pytest.approx(before.start_s + before.time_s)


def test_fewer_requests_in_flight_make_streams_latency_bound(i7, small):
    starved = i7.model_copy(update={"memory": i7.memory.model_copy(update={
        "dram": i7.dram.model_copy(update={"outstanding_requests_per_core": 1})})})
    fast = run(i7, small, RunOptions(formats=(StorageFormat.DENSE,))).variant("dense").layer("fc1")
    slow = run(starved, small, RunOptions(formats=(StorageFormat.DENSE,))).variant("dense").layer("fc1")
    assert slow.time_s > fast.time_s
    assert slow.bound == "stream-latency"


def test_launch_overhead_is_paid_per_kernel(tegra, small):
    layers = run(tegra, small, RunOptions()).variant("dense").layers
    for layer in layers:
        assert layer.busy_s.get("launch") == pytest.approx(tegra.compute.launch_overhead_s)


def test_discrete_gpu_copies_input_and_output_over_the_link(small):
    titan = load_profile("hwprofiles/titan-x.yaml")
    layers = run(titan, small, RunOptions()).variant("dense").layers
    assert layers[0].name == "input (h2d)" and layers[-1].name == "output (d2h)"
    assert layers[0].link_bytes == 3 * 16 * 16 * 4
    without = run(titan, small, RunOptions(host_copies=False)).variant("dense").layers
    assert [l.kind for l in without].count("copy") == 0


def test_pruning_cuts_weight_dram_traffic_of_a_memory_bound_fc_layer(tegra, small):
    result = run(tegra, small, RunOptions())
    assert result.variant("pruned").layer("fc1").dram_bytes < 0.5 * result.variant("dense").layer("fc1").dram_bytes


def test_layer_repeat_mode_runs_each_layer_alone_and_warm(i7, small):
    from simulator.pipeline import RepeatMode

    opts = dict(formats=(StorageFormat.DENSE,), repeat_mode=RepeatMode.LAYER)
    cold = run(i7, small, RunOptions(repeat=1, **opts)).variant("dense")
    warm = run(i7, small, RunOptions(repeat=4, **opts)).variant("dense")
    assert [l.kind for l in warm.layers].count("copy") == 0
    # fc1's 2 MiB of weights fit the 15 MiB L3: repeated alone, it runs from cache
    assert warm.layer("fc1").dram_read_bytes == 0 < cold.layer("fc1").dram_read_bytes
    assert warm.total_s == pytest.approx(sum(l.time_s for l in warm.layers))


def test_dataframe_has_a_row_per_variant_and_layer(tegra, small):
    result = run(tegra, small, RunOptions())
    frame = result.to_dataframe()
    assert len(frame) == sum(len(v.layers) for v in result.variants)
    assert {"profile", "variant", "format", "layer", "time_s", "dram_bytes", "L1_hit_rate", "L2_hits",
            "compute_busy_s", "bound"} <= set(frame.columns)
    totals = frame.groupby("variant")["time_s"].sum()
    for variant in result.variants:
        assert totals[variant.name] == pytest.approx(sum(l.time_s for l in variant.layers))
    fc1 = frame[(frame.variant == "pruned") & (frame.layer == "fc1")].iloc[0]
    assert fc1.L1_hit_rate == result.variant("pruned").layer("fc1").hit_rate["L1"]
