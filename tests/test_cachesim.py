"""Trace-driven mode: reading trace files, exact counts, the command line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

# The plain reference model of test_cache.py and the CSR-gather trace of test_mrc.py
# (pytest puts tests/ on the import path).
from test_cache import _ReferenceHierarchy
from test_mrc import _csr_gather

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.hardware.profile import load_profile
from simulator.studies.tracesim import load_trace, simulate_trace

TEGRA = "hwprofiles/tegra.yaml"
I7 = "hwprofiles/i7-5930k.yaml"


@pytest.fixture
def profile(repo_root):
    return load_profile(repo_root / TEGRA)


def _save(tmp_path, name, array, **kwargs):
    path = tmp_path / name
    np.save(path, array, **kwargs)
    return path


# --- trace files --------------------------------------------------------------------------------

def test_trace_layouts(tmp_path):
    one = load_trace(_save(tmp_path, "a.npy", np.array([0, 64, 128], dtype=np.int64)))
    assert one.addresses.tolist() == [0, 64, 128] and not one.is_write.any() and not one.core.any()
    two = load_trace(_save(tmp_path, "b.npy", np.array([[0, 1], [64, 0]], dtype=np.uint32)))
    assert two.addresses.dtype == np.int64 and two.is_write.tolist() == [True, False]
    three = load_trace(_save(tmp_path, "c.npy", np.array([[0, 0, 1], [64, 1, 0]])))
    assert three.core.tolist() == [1, 0] and three.is_write.tolist() == [False, True]
    records = np.zeros(2, dtype=[("address", "<u8"), ("is_write", "?"), ("core", "<i2")])
    records["address"], records["is_write"], records["core"] = [128, 256], [True, False], [0, 1]
    structured = load_trace(_save(tmp_path, "d.npy", records))
    assert structured.addresses.tolist() == [128, 256] and structured.core.tolist() == [0, 1]
    assert structured.is_write.tolist() == [True, False]


@pytest.mark.parametrize("name, make, message", [
    ("missing.npy", None, "no such file"),
    ("trace.txt", lambda p: p.write_text("1\n2\n"), "not a .npy file"),
    ("objects.npy", lambda p: np.save(p, np.array([1, "x"], dtype=object), allow_pickle=True),
     "holds Python objects"),
    ("floats.npy", lambda p: np.save(p, np.array([0.0, 64.0])), "addresses: dtype float64 is not an integer type"),
    ("bools.npy", lambda p: np.save(p, np.array([True, False])), "dtype bool is not an integer type"),
    ("negative.npy", lambda p: np.save(p, np.array([64, -128])), "addresses: negative value -128 at index 1"),
    ("huge.npy", lambda p: np.save(p, np.array([2**63], dtype=np.uint64)), "does not fit in int64"),
    ("flag.npy", lambda p: np.save(p, np.array([[0, 1], [64, 2]])), "column 1 (is_write): 2 at index 1 is not 0"),
    ("shape.npy", lambda p: np.save(p, np.zeros((3, 5), dtype=np.int64)), "shape (3, 5): expected"),
    ("empty.npy", lambda p: np.save(p, np.zeros(0, dtype=np.int64)), "the trace is empty"),
    ("fields.npy", lambda p: np.save(p, np.zeros(2, dtype=[("addr", "<i8")])), "needs a 1-D array with an 'address'"),
    ("garbage.npy", lambda p: p.write_bytes(b"not numpy at all"), "not a valid .npy file (no NumPy header)"),
    ("archive.npy", lambda p: np.savez(p.open("wb"), a=np.arange(3)), "is an .npz archive"),
])
def test_bad_trace_files(tmp_path, name, make, message):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(ConfigError) as err:
        load_trace(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_core_beyond_the_profile(tmp_path, profile):
    trace = load_trace(_save(tmp_path, "t.npy", np.array([[0, 0, 0], [64, 0, 3]])))
    with pytest.raises(ConfigError, match=r"core 3 at index 1, but .* has 1 core \(0..0\)"):
        simulate_trace(profile, trace)


# --- exact counts -------------------------------------------------------------------------------

def _traces(tiny_workload_path):
    rng = np.random.default_rng(11)
    n = 20_000
    return {
        "random": (rng.integers(0, 1 << 20, n), rng.random(n) < 0.25, rng.integers(0, 6, n)),
        "strided": ((np.arange(n) % 300) * 4096, np.arange(n) % 5 == 0, np.arange(n) % 6),
        "csr-gather": _csr_gather(tiny_workload_path),
    }


@pytest.mark.parametrize("profile_path", [TEGRA, I7])
def test_counts_equal_a_plain_reference(repo_root, tmp_path, tiny_workload_path, profile_path):
    profile = load_profile(repo_root / profile_path)
    cores = profile.compute.cores
    for name, (a, w, c) in _traces(tiny_workload_path).items():
        c = np.asarray(c) % cores
        trace = load_trace(_save(tmp_path, f"{name}.npy", np.stack([a, w.astype(np.int64), c], axis=1)))
        result = simulate_trace(profile, trace)
        levels = [_level(profile, i) for i in range(len(profile.caches))]
        served, writebacks = _ReferenceHierarchy(levels, cores).access(a, w, c)
        counts = np.bincount(served, minlength=len(levels) + 1)
        assert [l.hits for l in result.levels] == counts[:-1].tolist(), name
        assert result.levels[0].accesses == len(a)
        assert result.dram_line_reads == counts[-1]
        assert result.dram_writebacks == int(np.sum(writebacks))


def _level(profile, index):
    from simulator.memory.cache import CacheGeometry

    c = profile.caches[index]
    return CacheGeometry(c.name, c.size_bytes, c.line_bytes, c.ways, c.shared)


# --- the command line ---------------------------------------------------------------------------

@pytest.fixture
def fc_trace(tmp_path, tiny_workload_path):
    a, w, _ = _csr_gather(tiny_workload_path, line=128)
    return _save(tmp_path, "fc.npy", np.stack([a, w.astype(np.int64)], axis=1))


def test_cli_prints_counts_and_writes_json_and_curves(repo_root, monkeypatch, tmp_path, fc_trace, capsys):
    monkeypatch.chdir(repo_root)
    out_json, out_csv = tmp_path / "counts.json", tmp_path / "mrc.csv"
    assert cli.main(["cachesim", TEGRA, str(fc_trace), "--json", str(out_json), "--mrc", str(out_csv)]) == 0
    text = capsys.readouterr().out
    document = json.loads(out_json.read_text(encoding="utf-8"))
    assert f"{fc_trace}: {document['accesses']:,} accesses" in text
    assert [l["name"] for l in document["levels"]] == ["L1", "L2"]
    l1, l2 = document["levels"]
    assert l1["hits"] + l1["misses"] == document["accesses"] and l2["accesses"] == l1["misses"]
    assert document["dram"]["line_reads"] == l2["misses"]
    assert "M accesses/s" in text and "miss-ratio curves: " in text
    with out_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # the curve at the profile's own size is the count the hierarchy reports
    for level in document["levels"]:
        own = [r for r in rows if r["level"] == level["name"] and r["associativity"] == "set-associative"
               and int(r["size_bytes"]) == level["size_bytes"]]
        assert len(own) == 1 and int(own[0]["hits"]) == level["hits"]
    assert {r["associativity"] for r in rows} == {"set-associative", "fully-associative"}
    assert document["miss_ratio_curves"][0]["level"] == "L1"


def test_cli_curve_plot(repo_root, monkeypatch, tmp_path, fc_trace, capsys):
    monkeypatch.chdir(repo_root)
    plot = tmp_path / "mrc.png"
    assert cli.main(["cachesim", TEGRA, str(fc_trace), "--mrc", str(plot)]) == 0
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["{trace}", "--mrc", "curves.xlsx"], "error: command line: --mrc: curves.xlsx: write the curves as .csv"),
    (["{tmp}/nothing.npy"], "error: {tmp}/nothing.npy: no such file"),
    (["{trace}", "--json", "/nonexistent/x.json"], "error: command line: --json: /nonexistent/x.json: directory"),
])
def test_cli_errors(repo_root, monkeypatch, tmp_path, fc_trace, capsys, args, message):
    monkeypatch.chdir(repo_root)
    args = [a.format(trace=fc_trace, tmp=tmp_path) for a in args]
    assert cli.main(["cachesim", TEGRA] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1


def test_curves_of_the_lru_levels_only(repo_root, monkeypatch, tmp_path, fc_trace, capsys):
    # The same profile with a DIP L2: the L1 curve is drawn (levels above or below may use any
    # policy), the L2 one is not; with every level non-LRU there is nothing to draw.
    monkeypatch.chdir(repo_root)
    text = (repo_root / TEGRA).read_text(encoding="utf-8")
    profile = tmp_path / "tegra-dip.yaml"
    profile.write_text(text.replace("      ways: 16\n", "      ways: 16\n      replacement: dip\n", 1),
                       encoding="utf-8")
    out_csv = tmp_path / "c.csv"
    assert cli.main(["cachesim", str(profile), str(fc_trace), "--mrc", str(out_csv)]) == 0
    assert "no curve for L2 (dip): stack distances model LRU levels only" in capsys.readouterr().out
    with open(out_csv, newline="", encoding="utf-8") as handle:
        assert {row["level"] for row in csv.DictReader(handle)} == {"L1"}
    both = tmp_path / "tegra-all-dip.yaml"
    dip_l1 = profile.read_text(encoding="utf-8").replace("      ways: 4\n", "      ways: 4\n      replacement: dip\n",
                                                          1)
    both.write_text(dip_l1, encoding="utf-8")
    assert cli.main(["cachesim", str(both), str(fc_trace), "--mrc", str(out_csv)]) == 2
    assert capsys.readouterr().err == (f"error: {both}: memory.caches.L1.replacement: L1 uses dip and no level is "
                                       "LRU; miss-ratio curves come from LRU stack distances (use lru, or run "
                                       "without miss-ratio curves)\n")
def test_run_dump_trace_writes_what_cachesim_reads(repo_root, tiny_workload_file, tmp_path, monkeypatch, capsys):
    """``run --dump-trace DIR`` then ``cachesim PROFILE DIR/dense.npy``: the same accesses, and
    through the same cold hierarchy the same DRAM traffic as the run itself."""
    from simulator import cli
    from simulator.hardware.profile import load_profile
    from simulator.studies.tracesim import load_trace, simulate_trace

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    folder = tmp_path / "traces"
    out_json = tmp_path / "run.json"
    assert cli.main(["run", str(repo_root / "hwprofiles/tegra.yaml"), "--workload", str(tiny_workload_file),
                     "--dump-trace", str(folder), "--json", str(out_json)]) == 0
    assert "traces for cachesim:" in capsys.readouterr().out
    names = sorted(p.name for p in folder.iterdir())
    assert "dense.npy" in names and "pruned.npy" in names and "pruned-2-fc1.npy" in names
    document = json.loads(out_json.read_text())
    profile = load_profile(repo_root / "hwprofiles/tegra.yaml")
    for variant in document["variants"]:
        layers = [l for l in variant["layers"] if l["kind"] != "copy"]
        trace = load_trace(folder / f"{variant['name']}.npy")
        assert trace.addresses.size == sum(l["accesses"] for l in layers)
        result = simulate_trace(profile, trace)
        assert result.dram_line_reads * result.dram_line_bytes == sum(l["dram_read_bytes"] for l in layers)
    assert cli.main(["cachesim", str(repo_root / "hwprofiles/tegra.yaml"), str(folder / "dense.npy")]) == 0


def test_dump_trace_is_refused_where_there_are_no_caches(repo_root, tmp_path, capsys):
    from simulator import cli

    assert cli.main(["run", str(repo_root / "hwprofiles/eie.yaml"), "--workload", str(repo_root / "workloads/eie.yaml"),
                     "--dump-trace", str(tmp_path / "t")]) == 2
    assert "--dump-trace: EIE (64 PEs, 800 MHz) has no caches" in capsys.readouterr().err
    assert cli.main(["run", str(repo_root / "hwprofiles/tegra.yaml"), "--dump-trace",
                     str(tmp_path / "absent" / "t")]) == 2
    assert "its parent directory does not exist" in capsys.readouterr().err
