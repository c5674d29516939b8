"""Hostile and huge inputs: each is refused with exactly one stderr line naming the file and the
field, exit status 2, quickly and without building what it asks for; progress is quiet off a
terminal; Ctrl-C exits 130 with one line. Inputs are built small (an alias bomb is 1 KB)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from simulator import cli

TEGRA = "hwprofiles/tegra.yaml"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def refused(capsys, args: list[str], *names: str) -> str:
    """Run the CLI in-process: exit 2, one stderr line that names every one of ``names``."""
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err[:2000]
    assert len(lines[0]) <= 700
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def _bomb(levels: int = 9) -> str:
    """A billion-laughs YAML of about 1 KB: 9^levels strings once its aliases are expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _tiny_workload(tmp_path, name="tiny.yaml", layer="{name: fc1, kind: fc, in_features: 64, out_features: 32}",
                   input_shape="[64]") -> Path:
    path = tmp_path / name
    path.write_text(f"schema_version: 1\nname: tiny\nsource: test\ninput_shape: {input_shape}\n"
                    f"layers:\n  - {layer}\n", encoding="utf-8")
    return path


# --- YAML --------------------------------------------------------------------------------------

def test_alias_bomb_workload_under_1gb(tmp_path):
    """The bomb is refused from its node graph, before anything expands it: in a process whose
    address space is capped at 1 GiB (it used to grow past 5 GB)."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb() + "schema_version: 1\nname: x\nsource: y\ninput_shape: [3]\nlayers: *a8\n")
    assert bomb.stat().st_size < 1100
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
    code = limit + ("from simulator.cli import main; "
                    f"raise SystemExit(main(['run', {TEGRA!r}, '--workload', {str(bomb)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [f"error: {bomb}: holds more than 500,000 values once its aliases are "
                                        "expanded (an alias bomb?)"]


def test_alias_bomb_profile_and_schedule(tmp_path, capsys):
    profile = tmp_path / "bomb_profile.yaml"
    profile.write_text(_bomb() + (ROOT / TEGRA).read_text())
    refused(capsys, ["run", str(profile)], str(profile), "alias")
    schedule = tmp_path / "bomb_schedule.yaml"
    schedule.write_text(_bomb() + "version: 1\npolicies: *a8\n")
    refused(capsys, ["prune", "--schedule", str(schedule), "--workload", str(_tiny_workload(tmp_path)),
                     "--out", str(tmp_path / "o.pth.tar")], str(schedule), "alias")


def test_small_bomb_error_quotes_a_prefix(tmp_path, capsys):
    """Within the cap, a bad aliased value is quoted as a short prefix, not in full."""
    path = tmp_path / "small.yaml"
    path.write_text(_bomb(5) + "schema_version: 1\nname: x\nsource: y\ninput_shape: [3]\nlayers: *a4\n")
    line = refused(capsys, ["run", TEGRA, "--workload", str(path)], str(path), "layers[0]")
    assert "..." in line and len(line) < 300


def test_self_referencing_alias(tmp_path, capsys):
    path = tmp_path / "rec.yaml"
    path.write_text("schema_version: 1\nname: &a [x, *a]\nlayers: []\n")
    refused(capsys, ["run", TEGRA, "--workload", str(path)], str(path), "its own anchor")


def test_deep_nesting(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\nlayers: " + "[" * 100_000 + "]" * 100_000 + "\n")
    refused(capsys, ["run", TEGRA, "--workload", str(path)], str(path), "line 2", "nested more than")


def test_oversized_and_endless_files(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    refused(capsys, ["run", TEGRA, "--workload", str(big)], str(big), "bytes")
    if Path("/dev/zero").exists():
        refused(capsys, ["run", TEGRA, "--workload", "/dev/zero"], "/dev/zero", "bytes")


def test_long_workload_resolves():
    """20,000 layers resolve (the duplicate-module check used to be quadratic: a 100,000-layer
    workload printed nothing for minutes), and a repeated name in the last one is still found."""
    from simulator.base.errors import ConfigError
    from simulator.base.schema import validate
    from simulator.model.workload import WorkloadSpec, resolve

    layers = [{"name": f"f{i}", "kind": "fc", "in_features": 4, "out_features": 4} for i in range(20_000)]
    data = {"schema_version": 1, "name": "long", "source": "t", "input_shape": [4], "layers": layers}
    assert len(resolve(validate(WorkloadSpec, data, "long.yaml"), "long.yaml").layers) == 20_000
    data["layers"] = layers + [dict(layers[0])]
    with pytest.raises(ConfigError, match=r"layers\[20000\]\.name"):
        resolve(validate(WorkloadSpec, data, "long.yaml"), "long.yaml")


# --- sweep ranges ------------------------------------------------------------------------------

@pytest.mark.parametrize("values, word", [("nan..1:x2", "start"), ("0.1..inf:x2", "stop"),
                                          ("0.1..1:xinf", "step"), ("1..1e308:+1e-308", "more than")])
def test_sweep_ranges_not_finite(capsys, tmp_path, values, word):
    refused(capsys, ["sweep", TEGRA, "--set", f"density={values}", "--out", str(tmp_path / "s.csv")],
            "--set", word)


def test_sweep_grid_counted_before_built(capsys, tmp_path):
    sets = ["--set", "density=0.00001..1:+0.00001", "--set", "batch=1..100000:+1",
            "--set", "memory.caches.L2.size=1KiB..100000KiB:+1KiB"]
    refused(capsys, ["sweep", TEGRA, *sets, "--out", str(tmp_path / "s.csv")], "--set",
            "the grid has 1,000,000,000,000,000 points")


# --- the results store --------------------------------------------------------------------------

SWEEP = ["sweep", TEGRA, "--set", "density=0.2,0.4", "--format", "dense", "--workers", "1"]


def _swept(tmp_path, capsys, name: str):
    """A finished sweep of the tiny workload into ``tmp_path / name``: (the results file, the arguments)."""
    workload = _tiny_workload(tmp_path)
    out = tmp_path / name
    args = SWEEP + ["--workload", str(workload), "--out", str(out)]
    assert cli.main(args) == 0
    capsys.readouterr()
    return out, args


@pytest.fixture
def results(tmp_path, capsys):
    return _swept(tmp_path, capsys, "r.csv")


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_damaged_cell_refused_with_line(results, capsys):
    out, args = results
    lines = _rows(out)
    cells = lines[2].split(",")
    cells[lines[0].split(",").index("time_s")] = "abc"
    lines[2] = ",".join(cells)
    out.write_text("\n".join(lines) + "\n")
    refused(capsys, args, str(out), "line 3", "time_s")


def test_damaged_bytes_and_short_line(results, capsys):
    out, args = results
    good = out.read_bytes()
    out.write_bytes(good + b"\xff\xfe\n")
    refused(capsys, args, str(out), "line", "UTF-8")
    out.write_bytes(good + b"a,b\n")
    refused(capsys, args, str(out), "line", "cells")


def test_torn_last_line_rerun_not_glued(results, capsys):
    out, args = results
    before = _rows(out)
    out.write_bytes(out.read_bytes()[:-15])        # a crash cut the last row short
    assert cli.main(args) == 0
    after = _rows(out)
    widths = {len(line.split(",")) for line in after}
    assert widths == {len(before[0].split(","))}    # no row glued onto the cut one
    assert sorted(after) == sorted(before)           # the cut point ran again, once


def test_concurrent_sweep_refused(results, capsys):
    out, args = results
    from simulator.studies.sweepstore import _lock

    held = _lock(out)       # another sweep holds the file
    try:
        refused(capsys, args, "--out", str(out), f"process {os.getpid()}")
    finally:
        held.close()
    assert cli.main(args) == 0


def test_damaged_parquet_refused(tmp_path, capsys):
    out, args = _swept(tmp_path, capsys, "r.parquet")
    out.write_bytes(b"PAR1" + os.urandom(200))
    refused(capsys, args, str(out), "parquet")


_POOL = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from simulator.base.workers import init_worker, worker_initargs
pool = ProcessPoolExecutor(2, initializer=init_worker, initargs=worker_initargs())
pids = {f.result() for f in [pool.submit(os.getpid) for _ in range(8)]}
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent():
    parent = subprocess.Popen([sys.executable, "-c", _POOL], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert pids
        parent.kill()          # SIGKILL: no cleanup in the parent at all
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in pids)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# --- traces, checkpoints, output paths ------------------------------------------------------------

def test_trace_addresses_beyond_space(tmp_path, capsys):
    path = tmp_path / "hi.npy"
    np.save(path, np.array([0, 2**62, 5], dtype=np.int64))
    refused(capsys, ["cachesim", TEGRA, str(path)], str(path), "address", "2^62")


def test_trace_sub_array_field(tmp_path, capsys):
    path = tmp_path / "sub.npy"
    np.save(path, np.zeros(3, dtype=[("address", np.int64, (2,))]))
    refused(capsys, ["cachesim", TEGRA, str(path)], str(path), "address", "sub-array")


def test_trace_header_claims_more_than_the_file(tmp_path, capsys):
    path = tmp_path / "claim.npy"
    np.save(path, np.arange(10, dtype=np.int64))
    path.write_bytes(path.read_bytes().replace(b"(10,)", b"(1000000000000,)"))
    refused(capsys, ["cachesim", TEGRA, str(path)], str(path), "header declares")


def test_checkpoint_empty_weight(tmp_path, capsys):
    path = tmp_path / "zero.pth.tar"
    torch.save({"state_dict": {"fc.weight": torch.zeros(0, 64)}}, path)
    refused(capsys, ["run", TEGRA, "--checkpoint", str(path), "--workload", str(_tiny_workload(tmp_path))],
            str(path), "fc.weight", "no elements")


def test_checkpoint_stride0_view(tmp_path, capsys):
    path = tmp_path / "view.pth.tar"
    huge = torch.zeros(1).expand(1 << 34).view(1 << 22, 1 << 12)     # 64 GiB declared, 4 B stored
    torch.save({"state_dict": {"fc.weight": huge}}, path)
    assert path.stat().st_size < 10_000
    refused(capsys, ["run", TEGRA, "--checkpoint", str(path), "--workload", str(_tiny_workload(tmp_path))],
            str(path), "fc.weight", "storage holds")


@pytest.mark.parametrize("flag", ["--timeline", "--json"])
def test_output_is_a_directory(tmp_path, capsys, flag):
    refused(capsys, ["run", TEGRA, "--workload", str(_tiny_workload(tmp_path)), flag, str(tmp_path)],
            flag, "is a directory")


# --- sizes: refused from the estimate, before allocating -------------------------------------------

def test_huge_batch(tmp_path, capsys):
    refused(capsys, ["run", TEGRA, "--batch", str(10**30)], "--batch", "needs about")
    line = refused(capsys, ["run", TEGRA, "--batch", "1000", "--max-memory", "2 GiB"], "--batch", "--max-memory")
    assert "GiB" in line


def test_max_memory_after_or_before_the_command(tmp_path, capsys):
    refused(capsys, ["--max-memory", "1 MiB", "run", TEGRA], "workloads/alexnet.yaml", "layers[")


@pytest.mark.parametrize("layer, shape", [
    ("{name: conv1, kind: conv, in_channels: 3, out_channels: 9223372036854775808, kernel: 3}", "[3, 8, 8]"),
    ("{name: fc1, kind: fc, in_features: 100000, out_features: 100000}", "[100000]"),
])
def test_huge_layers(tmp_path, capsys, layer, shape):
    path = _tiny_workload(tmp_path, "huge.yaml", layer, shape)
    refused(capsys, ["run", TEGRA, "--workload", str(path), "--max-memory", "4 GiB"], str(path), "layers[0]",
            "needs about")
    refused(capsys, ["prune", "--schedule", "tests/data/distiller/alexnet.schedule_agp.yaml", "--workload",
                     str(path), "--out", str(tmp_path / "o.pth.tar"), "--max-memory", "4 GiB"], str(path), "layers[0]")


_SCHEDULE = textwrap.dedent("""\
    version: 1
    pruners:
      p1: {class: AutomatedGradualPruner, initial_sparsity: 0.05, final_sparsity: 0.5, weights: [fc1.weight]}
    policies:
      - pruner: {instance_name: p1}
        starting_epoch: 10
        ending_epoch: END
        frequency: 1
    """)


@pytest.mark.parametrize("end, words", [("2", "must come after"), ("1000000000", "more than")])
def test_schedule_epoch_window(tmp_path, capsys, end, words):
    path = tmp_path / "s.yaml"
    path.write_text(_SCHEDULE.replace("END", end))
    refused(capsys, ["prune", "--schedule", str(path), "--workload", str(_tiny_workload(tmp_path)),
                     "--out", str(tmp_path / "o.pth.tar")], str(path), "policies[0]", words)


# --- progress and interruption --------------------------------------------------------------------

@pytest.mark.usefixtures("ctrl_c_raises")
def test_sigint_exits_130_with_one_line():
    """Ctrl-C during a long run: variant threads stop at their next step, one line, exit 130."""
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "run", TEGRA, "--repeat", "100000"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:       # never leave a run of 100,000 repetitions behind
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert err.splitlines() == ["interrupted"]


def _stderr_of(args: list[str], tty: bool) -> str:
    if not tty:
        done = subprocess.run([sys.executable, "-m", "simulator", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    if hasattr(termios, "TIOCSWINSZ"):      # a terminal of 100 columns, as a user's would report
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "simulator", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    chunks = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:      # read while it runs: a closed pty drops what is unread
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:      # EIO: the child closed its end
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0
    finally:
        os.close(master)
        proc.kill()
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="pty")
def test_progress_only_on_a_terminal_and_not_quiet(tmp_path):
    args = ["run", TEGRA, "--workload", str(_tiny_workload(tmp_path)), "--repeat", "3"]
    assert _stderr_of(args, tty=False) == ""
    assert "step" in _stderr_of(args, tty=True)          # the bar, with its unit
    assert _stderr_of(args + ["--quiet"], tty=True) == ""


def test_libyaml_reads_what_the_python_parser_reads_or_leaves_it_to_it():
    """The fast path (libyaml) gives the pure-Python parser's values, and hands back every document it
    should not build (too deep, an alias bomb, an alias in its own anchor, bad YAML, an unsafe tag)."""
    from simulator.base import yamlio

    shipped = sorted(ROOT.glob("hwprofiles/*.yaml")) + sorted(ROOT.glob("workloads/*.yaml"))
    texts = [path.read_text() for path in shipped]
    texts += ["a: &x {b: [1, 2.5, '3', null, true, 0x10, 1e3, ~]}\nc: *x\nd: 2026-12-05\n", "", "just text\n"]
    for text in texts:
        done, data = yamlio._libyaml_load(text)
        loader = yamlio._BoundedLoader(text)
        try:
            assert done and data == loader.get_single_data()
        finally:
            loader.dispose()
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6))
    unsafe = "a: !!python/object:os.system x\n"
    for hostile in ["x: " + "[" * 65 + "]" * 65, bomb, "name: &a [x, *a]\n", "a: [1\n", unsafe]:
        assert yamlio._libyaml_load(hostile) == (False, None)
