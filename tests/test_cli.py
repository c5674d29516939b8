"""The command line: ``python -m simulator run``, its table, its JSON, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from simulator import cli
from simulator.compression import StorageFormat, compress_workload
from simulator.workload import load_workload

TINY_LAYERS = ["conv1", "pool1", "fc1", "fc2"]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, tiny_workload_file):
    """Environment of every CLI run: the encoding cache in a tmp dir shared by this module.

    The tiny workload's CSR encodings are put in that cache here, in-process, so that the
    subprocesses read them from disk instead of importing torch to prune (seconds per run);
    pruning itself is tested in test_compression.py.
    """
    cache = tmp_path_factory.mktemp("sim-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMULATOR_CACHE_DIR", str(cache))
        compress_workload(load_workload(tiny_workload_file), StorageFormat.CSR, seed=0)
    assert list(cache.glob("*.npz"))
    return {**os.environ, "SIMULATOR_CACHE_DIR": str(cache)}


@pytest.fixture(scope="module")
def run_cli(repo_root, cli_env):
    """``run_cli(*args)`` runs ``python -m simulator *args`` from the repository root."""

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "simulator", *map(str, args)], cwd=repo_root,
                              env=cli_env, capture_output=True, text=True, timeout=300)

    return run


@pytest.fixture(scope="module")
def default_run(run_cli, tiny_workload_file, tmp_path_factory):
    """One run with the default variants (dense and pruned CSR) and ``--json``."""
    json_path = tmp_path_factory.mktemp("json") / "result.json"
    proc = run_cli("run", "hwprofiles/tegra.yaml", "--workload", tiny_workload_file, "--json", json_path)
    return proc, json_path


@pytest.fixture(scope="module")
def document(default_run):
    proc, json_path = default_run
    assert proc.returncode == 0, proc.stderr
    return json.loads(json_path.read_text(encoding="utf-8"))


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == ""
    return lines[0]


# --- the default run -----------------------------------------------------------------------------

def test_run_exits_zero(default_run):
    proc, _ = default_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_table_has_dense_and_pruned_columns(default_run):
    proc, _ = default_run
    header = next(line for line in proc.stdout.splitlines() if line.startswith("layer"))
    assert header.split()[:4] == ["layer", "kernel", "dense", "pruned"]


def test_table_has_a_row_per_layer_and_a_total(default_run):
    proc, _ = default_run
    first_words = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    for name in TINY_LAYERS + ["total"]:
        assert name in first_words
    assert first_words.index("total") > max(first_words.index(name) for name in TINY_LAYERS)


def test_table_title_names_workload_and_profile(default_run):
    proc, _ = default_run
    title = proc.stdout.splitlines()[0]
    assert title.startswith("Tiny on NVIDIA Tegra K1 (Jetson TK1): batch 1")


# --- the JSON document -------------------------------------------------------------------------

def test_json_top_level(document):
    assert isinstance(document["profile"], str) and document["profile"] == "NVIDIA Tegra K1 (Jetson TK1)"
    assert document["workload"] == "Tiny"
    assert type(document["batch"]) is int and document["batch"] == 1
    assert type(document["repeat"]) is int and document["repeat"] == 1
    assert isinstance(document["variants"], list)


def test_json_variants(document):
    assert [(v["name"], v["format"]) for v in document["variants"]] == [("dense", "dense"), ("pruned", "csr")]
    for variant in document["variants"]:
        assert type(variant["total_s"]) is float and variant["total_s"] > 0
        assert isinstance(variant["layers"], list)


def test_json_layers(document):
    for variant in document["variants"]:
        assert [layer["name"] for layer in variant["layers"]] == TINY_LAYERS
        for layer in variant["layers"]:
            assert isinstance(layer["name"], str)
            assert type(layer["time_s"]) is float and layer["time_s"] > 0
            assert type(layer["dram_bytes"]) is int and layer["dram_bytes"] >= 0
            assert type(layer["flops"]) is float and layer["flops"] > 0
            assert isinstance(layer["bound"], str) and layer["bound"]
            assert layer["dram_bytes"] == layer["dram_read_bytes"] + layer["dram_write_bytes"]


def test_json_total_covers_every_layer(document):
    for variant in document["variants"]:
        end = max(layer["start_s"] + layer["time_s"] for layer in variant["layers"])
        assert variant["total_s"] == pytest.approx(end)


def test_json_pruned_does_fewer_flops(document):
    dense, pruned = document["variants"]
    for d, p in zip(dense["layers"], pruned["layers"]):
        if d["name"] in ("conv1", "fc1", "fc2"):
            assert p["flops"] < d["flops"]
        else:
            assert p["flops"] == d["flops"]


# --- one variant -------------------------------------------------------------------------------------

def test_format_csr_gives_one_variant(run_cli, tiny_workload_file, tmp_path):
    json_path = tmp_path / "csr.json"
    proc = run_cli("run", "hwprofiles/tegra.yaml", "--workload", tiny_workload_file, "--format", "csr",
                   "--json", json_path)
    assert proc.returncode == 0, proc.stderr
    variants = json.loads(json_path.read_text(encoding="utf-8"))["variants"]
    assert [(v["name"], v["format"]) for v in variants] == [("pruned", "csr")]
    assert "total" in proc.stdout


# --- errors: exit status 2, one line on stderr, no traceback ------------------------------------------------

def test_missing_profile_file(run_cli, tiny_workload_file):
    line = assert_one_line_error(run_cli("run", "hwprofiles/absent.yaml", "--workload", tiny_workload_file))
    assert "hwprofiles/absent.yaml: no such file" in line


def test_profile_with_a_bad_field(run_cli, repo_root, tiny_workload_file, tmp_path):
    data = yaml.safe_load((repo_root / "hwprofiles" / "tegra.yaml").read_text(encoding="utf-8"))
    data["compute"]["efficiency"]["gemv"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    line = assert_one_line_error(run_cli("run", bad, "--workload", tiny_workload_file))
    assert f"{bad}: compute.efficiency.gemv:" in line


def test_bad_workload(run_cli, tiny_workload_file, tmp_path):
    data = yaml.safe_load(tiny_workload_file.read_text(encoding="utf-8"))
    data["layers"][2]["in_features"] = 500
    bad = tmp_path / "bad-workload.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    line = assert_one_line_error(run_cli("run", "hwprofiles/tegra.yaml", "--workload", bad))
    assert f"{bad}: layers[2].in_features:" in line


@pytest.mark.parametrize("flags, mentions", [
    (["--batch", "0"], "--batch"),
    (["--batch", "x"], "--batch"),
    (["--density", "2"], "--density"),
    (["--format", "foo"], "--format"),
    (["--bogus"], "--bogus"),
])
def test_bad_flag(run_cli, tiny_workload_file, flags, mentions):
    line = assert_one_line_error(run_cli("run", "hwprofiles/tegra.yaml", "--workload", tiny_workload_file, *flags))
    assert mentions in line


def test_json_into_a_missing_directory(run_cli, tiny_workload_file, tmp_path):
    target = tmp_path / "absent" / "out.json"
    line = assert_one_line_error(run_cli("run", "hwprofiles/tegra.yaml", "--workload", tiny_workload_file,
                                         "--json", target))
    assert "--json" in line and "does not exist" in line
    assert not target.parent.exists()


# --- in-process -----------------------------------------------------------------------------------------

def test_main_in_process(repo_root, tiny_workload_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    json_path = tmp_path / "out.json"
    status = cli.main(["run", str(repo_root / "hwprofiles" / "tegra.yaml"), "--workload", str(tiny_workload_file),
                       "--format", "dense", "--batch", "2", "--repeat", "2", "--json", str(json_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "steady state after 2 inferences" in out
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert (document["batch"], document["repeat"]) == (2, 2)
    assert [v["name"] for v in document["variants"]] == ["dense"]


def test_main_in_process_error(tmp_path, capsys):
    status = cli.main(["run", str(tmp_path / "absent.yaml")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines() == [f"error: {tmp_path / 'absent.yaml'}: no such file"]


def test_main_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "hwprofiles/tegra.yaml", "--batch", "0"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
