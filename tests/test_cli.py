"""The command line: ``python -m simulator run``, its table, its JSON, and its one-line errors.

Every subprocess of this module is started at once by the ``runs`` fixture (they overlap
instead of queueing: each one spends a second or two importing the package); the tests
then look at the finished runs by name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from simulator import cli
from simulator.compress.compression import StorageFormat, compress_workload
from simulator.model.workload import load_workload

TINY_LAYERS = ["conv1", "pool1", "fc1", "fc2"]
TEGRA = "hwprofiles/tegra.yaml"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, tiny_workload_file):
    """The encoding cache of every CLI run, holding the tiny workload's CSR encodings already.

    They are pruned here, in-process, so that the subprocesses read them from disk instead
    of importing torch to prune (seconds per run); pruning itself is tested in
    test_compression.py.
    """
    cache = tmp_path_factory.mktemp("sim-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMULATOR_CACHE_DIR", str(cache))
        compress_workload(load_workload(tiny_workload_file), StorageFormat.CSR, seed=0)
    assert list(cache.glob("*.npz"))
    return cache


@pytest.fixture(scope="module")
def files(tmp_path_factory, repo_root, tiny_workload_file):
    """Paths the runs use: a JSON target, a profile with a bad field, a workload that does not chain."""
    folder = tmp_path_factory.mktemp("cli")
    profile = yaml.safe_load((repo_root / TEGRA).read_text(encoding="utf-8"))
    profile["compute"]["kernels"]["gemm"]["library_efficiency"] = 1.5
    workload = yaml.safe_load(tiny_workload_file.read_text(encoding="utf-8"))
    workload["layers"][2]["in_features"] = 500
    paths = {"json": folder / "result.json", "bad_profile": folder / "bad-profile.yaml",
             "bad_workload": folder / "bad-workload.yaml", "json_in_missing_dir": folder / "absent" / "out.json",
             "tiny": tiny_workload_file}
    paths["bad_profile"].write_text(yaml.safe_dump(profile, allow_unicode=True), encoding="utf-8")
    paths["bad_workload"].write_text(yaml.safe_dump(workload), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def runs(repo_root, cache_dir, files):
    """Every CLI invocation of this module, run concurrently: name -> CompletedProcess."""
    tiny = files["tiny"]
    invocations = {
        "default": ["run", TEGRA, "--workload", tiny, "--json", files["json"]],
        "missing profile": ["run", "hwprofiles/absent.yaml", "--workload", tiny],
        "bad profile": ["run", files["bad_profile"], "--workload", tiny],
        "bad workload": ["run", TEGRA, "--workload", files["bad_workload"]],
        "json in missing dir": ["run", TEGRA, "--workload", tiny, "--json", files["json_in_missing_dir"]],
        "--batch 0": ["run", TEGRA, "--workload", tiny, "--batch", "0"],
        "--batch x": ["run", TEGRA, "--workload", tiny, "--batch", "x"],
        "--density 2": ["run", TEGRA, "--workload", tiny, "--density", "2"],
        "--format foo": ["run", TEGRA, "--workload", tiny, "--format", "foo"],
        "--bogus": ["run", TEGRA, "--workload", tiny, "--bogus"],
    }
    env = {**os.environ, "SIMULATOR_CACHE_DIR": str(cache_dir)}
    started = {name: subprocess.Popen([sys.executable, "-m", "simulator", *map(str, args)], cwd=repo_root,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in invocations.items()}
    finished = {}
    for name, proc in started.items():
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        finished[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return finished


@pytest.fixture(scope="module")
def table(runs):
    proc = runs["default"]
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def document(runs, files):
    assert runs["default"].returncode == 0, runs["default"].stderr
    return json.loads(files["json"].read_text(encoding="utf-8"))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a run that failed on user input (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == ""
    return lines[0]


# --- the default run: dense and pruned side by side ----------------------------------------------------

def test_run_exits_zero_without_traceback(runs):
    assert runs["default"].returncode == 0, runs["default"].stderr
    assert "Traceback" not in runs["default"].stderr


def test_table_has_dense_and_pruned_columns(table):
    header = next(line for line in table.splitlines() if line.startswith("layer"))
    assert header.split()[:4] == ["layer", "kernel", "dense", "pruned"]


def test_table_has_a_row_per_layer_then_a_total(table):
    first_words = [line.split()[0] for line in table.splitlines() if line.strip()]
    for name in TINY_LAYERS + ["total"]:
        assert name in first_words
    assert first_words.index("total") > max(first_words.index(name) for name in TINY_LAYERS)


def test_table_title_names_workload_and_profile(table):
    assert table.splitlines()[0].startswith("Tiny on NVIDIA Tegra K1 (Jetson TK1): batch 1")


# --- the JSON document ------------------------------------------------------------------------------------

def test_json_top_level(document):
    assert document["profile"] == "NVIDIA Tegra K1 (Jetson TK1)"
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
            assert type(layer["time_s"]) is float and layer["time_s"] > 0
            assert type(layer["dram_bytes"]) is int and layer["dram_bytes"] >= 0
            assert type(layer["flops"]) is float and layer["flops"] > 0
            assert isinstance(layer["bound"], str) and layer["bound"]
            assert layer["dram_bytes"] == layer["dram_read_bytes"] + layer["dram_write_bytes"]


def test_json_total_covers_every_layer(document):
    for variant in document["variants"]:
        end = max(layer["start_s"] + layer["time_s"] for layer in variant["layers"])
        assert variant["total_s"] == pytest.approx(end)


def test_json_pruned_does_fewer_flops_in_weighted_layers(document):
    dense, pruned = document["variants"]
    for d, p in zip(dense["layers"], pruned["layers"]):
        if d["name"] == "pool1":
            assert p["flops"] == d["flops"]
        else:
            assert p["flops"] < d["flops"]


# --- errors: exit status 2, one line on stderr, no traceback ---------------------------------------------------

def test_missing_profile_file(runs):
    assert "hwprofiles/absent.yaml: no such file" in one_line_error(runs["missing profile"])


def test_profile_with_a_bad_field(runs, files):
    assert f"{files['bad_profile']}: compute.kernels.gemm.library_efficiency:" in one_line_error(runs["bad profile"])


def test_bad_workload(runs, files):
    assert f"{files['bad_workload']}: layers[2].in_features:" in one_line_error(runs["bad workload"])


@pytest.mark.parametrize("case", ["--batch 0", "--batch x", "--density 2", "--format foo", "--bogus"])
def test_bad_flag(runs, case):
    assert case.split()[0] in one_line_error(runs[case])


def test_json_into_a_missing_directory(runs, files):
    line = one_line_error(runs["json in missing dir"])
    assert "--json" in line and "does not exist" in line
    assert not files["json_in_missing_dir"].parent.exists()


# --- in-process ---------------------------------------------------------------------------------------------------

@pytest.fixture
def run_main(repo_root, cache_dir, monkeypatch):
    """``run_main(*args)`` calls ``simulator.cli.main(['run', tegra, *args])`` in this process."""
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(cache_dir))

    def run(*args) -> int:
        return cli.main(["run", str(repo_root / TEGRA), *map(str, args)])

    return run


def test_format_csr_gives_one_variant(run_main, tiny_workload_file, tmp_path, capsys):
    json_path = tmp_path / "csr.json"
    assert run_main("--workload", tiny_workload_file, "--format", "csr", "--json", json_path) == 0
    variants = json.loads(json_path.read_text(encoding="utf-8"))["variants"]
    assert [(v["name"], v["format"]) for v in variants] == [("pruned", "csr")]
    out = capsys.readouterr().out
    assert "pruned = CSR" in out and "dense" not in out


def test_batch_and_repeat_reach_the_json(run_main, tiny_workload_file, tmp_path, capsys):
    json_path = tmp_path / "out.json"
    assert run_main("--workload", tiny_workload_file, "--format", "dense", "--batch", "2", "--repeat", "2",
                    "--json", json_path) == 0
    assert "batch 2, steady state after 2 inferences" in capsys.readouterr().out
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert (document["batch"], document["repeat"]) == (2, 2)


def test_main_returns_2_on_a_config_error(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {tmp_path / 'absent.yaml'}: no such file"]


def test_main_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", TEGRA, "--batch", "0"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


# --- honest labels: formats a layer cannot use, nothing to prune, energy -------------------------------------

def test_format_csc_on_a_pruned_convolution_is_one_line_before_any_simulation(run_main, tiny_workload_file,
                                                                               monkeypatch, capsys):
    from simulator import pipeline

    def never(*_args, **_kwargs):
        raise AssertionError("simulated before the format was checked")

    monkeypatch.setattr(pipeline, "simulate_variant", never)
    assert run_main("--workload", tiny_workload_file, "--format", "csc") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert "--format" in line and "conv1" in line and "use --format csr" in line


@pytest.fixture
def unpruned_workload(write_yaml, tiny_workload_file):
    """The tiny workload with no densities at all (as googlenet.yaml or overfeat.yaml)."""
    data = yaml.safe_load(tiny_workload_file.read_text(encoding="utf-8"))
    for layer in data["layers"]:
        layer.pop("density", None)
    return write_yaml("unpruned.yaml", data)


def test_a_workload_without_densities_runs_dense_only_and_says_why(run_main, unpruned_workload, tmp_path, capsys):
    json_path = tmp_path / "out.json"
    assert run_main("--workload", unpruned_workload, "--json", json_path) == 0
    out = capsys.readouterr().out
    assert "pruned" not in out.split("\n\n")[1]      # no pruned column in the table
    (note,) = [line for line in out.splitlines() if "nothing is pruned" in line]
    assert note.startswith("Tiny gives no layer densities") and "--density" in note
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert [v["name"] for v in document["variants"]] == ["dense"] and document["notes"] == [note]
    # --density says what to prune: both variants again, no note
    assert run_main("--workload", unpruned_workload, "--density", "0.2") == 0
    out = capsys.readouterr().out
    assert "nothing is pruned" not in out and "speed-up" in out


def test_layers_at_density_one_run_dense_in_the_pruned_variant_and_are_marked(run_main, write_yaml,
                                                                            tiny_workload_file, tmp_path, capsys):
    data = yaml.safe_load(tiny_workload_file.read_text(encoding="utf-8"))
    data["layers"][3]["density"] = 1.0               # fc2: nothing pruned
    path = write_yaml("fc2-dense.yaml", data)
    json_path = tmp_path / "out.json"
    assert run_main("--workload", path, "--json", json_path) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    assert rows["fc2"].split()[1] == "*" and rows["fc1"].split()[1] != "*"
    assert "* density 1.0 (nothing pruned): run dense in the CSR variant too" in out
    pruned = next(v for v in json.loads(json_path.read_text(encoding="utf-8"))["variants"] if v["name"] == "pruned")
    assert pruned["dense_layers"] == ["fc2"]
    fc2 = next(l for l in pruned["layers"] if l["name"] == "fc2")
    assert fc2["kernel"] == "gemv" and fc2["weight_bytes"] == 64 * 10 * 4    # dense values, no indices


def test_energy_is_labelled_dynamic_when_static_power_is_unknown(run_main, tiny_workload_file, capsys):
    assert run_main("--workload", tiny_workload_file) == 0     # tegra.yaml: static_power 0 W (unknown)
    (line,) = [l for l in capsys.readouterr().out.splitlines() if "energy" in l]
    assert line.startswith("dynamic energy per inference") and "static power unknown" in line


def test_energy_with_a_static_power_gives_dynamic_static_and_total(repo_root, monkeypatch, capsys):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    assert cli.main(["run", str(repo_root / "hwprofiles/eie.yaml"), "--workload",
                     str(repo_root / "workloads/eie.yaml")]) == 0
    (line,) = [l for l in capsys.readouterr().out.splitlines() if "energy" in l]
    assert line.startswith("energy per inference, dynamic + static (0.12 W) = total:")
    numbers = re.findall(r"([\d.]+) (uJ|mJ|nJ)", line)
    scale = {"nJ": 1e-9, "uJ": 1e-6, "mJ": 1e-3}
    dynamic, static, total = (float(v) * scale[u] for v, u in numbers[:3])
    assert static > 0 and total == pytest.approx(dynamic + static, rel=0.02)


def test_exit_now_flushes_the_streams_and_keeps_the_status(repo_root):
    """The quick exit of ``python -m simulator`` (no interpreter teardown) loses no buffered output
    and ends with the command's status."""
    code = ("import sys; from simulator.cli import exit_now; "
            "print('out', end=''); print('err', end='', file=sys.stderr); exit_now(3)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out", "err")


def test_console_keeps_young_collections_and_defers_full_ones(monkeypatch):
    """``python -m simulator`` still collects the young generations at Python's default pace, but a
    full collection only after a thousand middle ones (cli.GC_THRESHOLDS)."""
    import gc

    statuses = []
    monkeypatch.setattr(cli, "main", lambda: 5)
    monkeypatch.setattr(cli, "exit_now", statuses.append)
    before = gc.get_threshold()
    try:
        cli.console()
        assert gc.get_threshold() == cli.GC_THRESHOLDS == (700, 10, 1000)
    finally:
        gc.set_threshold(*before)
    assert statuses == [5]
