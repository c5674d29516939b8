"""Timelines: the engine's opt-in interval recording and the trace-event JSON of run / bench."""

from __future__ import annotations

import json
import re

import pytest

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.compress.compression import StorageFormat
from simulator.engine.core import recording, simulate
from simulator.hardware.profile import load_profile
from simulator.model.workload import load_workload
from simulator.output.timeline import check_timeline, simulated_timeline
from simulator.pipeline import RepeatMode, RunOptions, benchmark_works, run

I7 = "hwprofiles/i7-5930k.yaml"


@pytest.fixture
def tiny(tiny_workload_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    return load_workload(tiny_workload_path)


def test_recording_matches_busy_time_and_changes_nothing(tiny):
    profile = load_profile(I7)
    options = RunOptions(repeat=2, repeat_mode=RepeatMode.LAYER)
    works = benchmark_works(profile, tiny, StorageFormat.CSR, options)
    plain = simulate(profile, works)
    with recording() as calls:
        recorded = simulate(profile, works)
    assert plain == recorded and len(calls) == 1
    for layer in recorded:
        mine = [i for i in calls[0] if i.layer == layer.name and i.resource != "layer"]
        for resource, seconds in layer.busy_s.items():
            assert sum(i.end_s - i.start_s for i in mine if i.resource == resource) == pytest.approx(seconds)
        (mark,) = [i for i in calls[0] if i.layer == layer.name and i.resource == "layer"]
        assert mark.start_s == pytest.approx(layer.start_s)
        assert mark.end_s == pytest.approx(layer.start_s + layer.time_s)
    assert simulate(profile, works) == plain          # nothing recorded outside the block


@pytest.mark.parametrize("mode", [RepeatMode.NETWORK, RepeatMode.LAYER])
def test_simulated_timeline_places_every_variant(tiny, mode):
    profile = load_profile(I7)
    with recording() as calls:
        result = run(profile, tiny, RunOptions(repeat=2, repeat_mode=mode))
    doc = simulated_timeline(result, calls)
    check_timeline(doc)
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in complete} == {1, 2}
    for pid, variant in enumerate(result.variants, start=1):
        layers = {e["name"]: e for e in complete if e["pid"] == pid and e["cat"] == "layer"}
        assert set(layers) == {l.name for l in variant.layers}
        for layer in variant.layers:
            assert layers[layer.name]["ts"] == pytest.approx(layer.start_s * 1e6, abs=1e-6)
            assert layers[layer.name]["dur"] == pytest.approx(layer.time_s * 1e6)
    assert {"compute", "L1"} <= {e["cat"] for e in complete}


def test_check_timeline_rejects_bad_documents():
    check_timeline({"traceEvents": []})
    for bad, field in [({}, "traceEvents"), ({"traceEvents": [{"ph": "X"}]}, r"traceEvents\[0\]"),
                       ({"traceEvents": [{"name": "a", "ph": "X", "ts": -1, "dur": 1}]}, "ts"),
                       ({"traceEvents": [{"name": "a", "ph": "X", "ts": 0}]}, "dur")]:
        with pytest.raises(ConfigError, match=field):
            check_timeline(bad)


def test_run_and_bench_write_timeline_files(tiny_workload_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    simulated, real = tmp_path / "sim.json", tmp_path / "real.json"
    assert cli.main(["run", I7, "--workload", str(tiny_workload_path), "--timeline", str(simulated)]) == 0
    assert cli.main(["bench", "--workload", str(tiny_workload_path), "--repeat", "2", "--threads", "1",
                     "--timeline", str(real)]) == 0
    for path in (simulated, real):
        doc = json.loads(path.read_text())
        check_timeline(doc, str(path))
        assert any(e.get("ph") == "X" for e in doc["traceEvents"])
    names = {e.get("name") for e in json.loads(real.read_text())["traceEvents"]}
    assert {"conv1", "fc1"} <= names                 # the per-layer ranges of the profiled pass
    capsys.readouterr()
    assert cli.main(["run", I7, "--workload", str(tiny_workload_path), "--timeline",
                     str(tmp_path / "no" / "t.json")]) == 2
    assert "--timeline" in capsys.readouterr().err


def test_old_trace_flag_still_writes_the_timeline(tiny_workload_path, tmp_path, monkeypatch, capsys):
    """``--trace FILE`` was the flag's name before ``--timeline``: scripts that use it keep working,
    told once on stderr; ``--help`` shows only the new name."""
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    run = ["run", I7, "--workload", str(tiny_workload_path), "--format", "dense"]
    assert cli.main(run + ["--timeline", str(new)]) == 0
    assert "is now called" not in capsys.readouterr().err
    assert cli.main(run + ["--trace", str(old)]) == 0
    assert "--trace is now called --timeline" in capsys.readouterr().err
    complete = [[e for e in json.loads(p.read_text())["traceEvents"] if e["ph"] == "X"] for p in (new, old)]
    assert complete[0] and complete[0] == complete[1]           # the same simulated timeline either way
    assert cli.main(["bench", "--workload", str(tiny_workload_path), "--format", "dense,csr",
                     "--trace", "t.json"]) == 2
    assert "--timeline" in capsys.readouterr().err                # the old name lands in the new flag's checks
    for command in ("run", "bench"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        shown = capsys.readouterr().out
        assert "--timeline" in shown and not re.search(r"(?<![\w-])--trace\b", shown)
