"""One measurement session on this machine: calibrate, every bench the crosschecks need, and the summary.

    .venv/bin/python benchmarks/crosscheck_session.py --out DIR [--threads 2] [--bench-runs N] [--summary-only]

Runs, each a fresh process, writing into ``DIR`` (the chain docs/validation.md's session tables come
from, about ten minutes on a 2-core VM; run it on a quiet machine):

1. ``simulator calibrate --threads T --out DIR/host.yaml`` (tried up to :data:`CALIBRATE_ATTEMPTS`
   times: the host's noise trips a plausibility check now and then);
2. ``simulator bench --llm M --prompt 128 --context 256 --tokens 32`` for Qwen2.5-0.5B and Llama-3.2-1B;
3. ``simulator bench --format dense,dense@bf16,dense@int8,csr,bsr4x4`` (the EIE layers) and
   ``simulator bench --workload workloads/alexnet.yaml --format dense,thinned``, at batch 1 and 64,
   ``--bench-runs`` times over (default 1; a later run's files end in ``-run2`` ...);
4. ``simulator calibrate`` again, into ``DIR/host-end.yaml`` (:data:`END_PROFILE`, tried as often; where
   every try fails, it is only left out of the summary);

then ``simulator crosscheck`` of each set against ``DIR/host.yaml`` (``--json`` into ``DIR``) and prints
the figures the issues' targets name: the profile's headline, the LLM cells within their bounds
(issue #15), each variant's median error and the pairs right (#14), AlexNet's pages faulted a call
against those the profile maps afresh, and issue #13's 36 cells (dense and CSR on the EIE layers at
batch 1 and 64): their median error and the worst cell as a ratio, and the same with the profile's
last level switched to random replacement at the size ``calibrate`` fitted for that policy
(:func:`random_llc_profile`, written beside the profile); then the same against
``DIR/host-end.yaml``. The two profiles bracket the benches in time: where a figure differs as much
between them as it misses its target by, the session cannot tell the model from the host's phase.

Around steps 1-3 a short probe (:func:`probe`: a fp32, a bf16 and an int8 GEMM, a streaming read,
best of a few calls, and a pointer chase over :data:`CHASE_PROBE_BYTES`, whether the last level
still holds that much: about five seconds) runs before ``calibrate`` and after the last bench; the
summary prints how far each moved (:data:`DRIFT_FLAG`). A session whose host moved between its
``calibrate`` and its benches compares two phases of the host, not the model with the machine.
``--summary-only`` re-prints the summary of a directory measured before. The timings are the
machine's: nothing here is asserted, and a VM's phase moves every figure (see docs/validation.md).

With several bench runs, ``crosscheck`` takes each cell's fastest run (other processes only ever
slow a run down: :func:`simulator.measure.variantcheck.merge_runs`, as ``calibrate`` keeps each
measurement's best round of its best look), and the summary prints issue #13's and #14's figures
of the first run alone beside them:
the two differ by what the host's phase did to single runs, not by anything in the model. Last, it
prints how far the same cells moved between the first and the second run (:func:`repeatability_lines`):
the floor under any error this session can show.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
LLMS = ("qwen2.5-0.5b", "llama-3.2-1b")
EIE_VARIANTS = "dense,dense@bf16,dense@int8,csr,bsr4x4"
ALEXNET_VARIANTS = "dense,thinned"
BATCHES = (1, 64)
#: issue #13's cells: the dense and CSR variants of the EIE layers
ISSUE13_VARIANTS = ("dense", "csr")
#: a probe figure that moved more than this between the start and the end of a session is flagged
DRIFT_FLAG = 0.10
#: The probe's pointer chase: inside the 6-25 MiB of L3 the development guest got within a day,
#: so its latency says which side of the guest's share it was on (a hit near 20-30 ns, DRAM's
#: 120 ns and more beyond: docs/validation.md, "2026-12-06, noon").
CHASE_PROBE_BYTES = 12 << 20


def probe(threads: int) -> dict[str, float]:
    """Seconds of the best of a few calls: 2048 x 2048 GEMMs at batch 256 in fp32 and bf16, torch's
    int8 dynamic-quantized linear on the same shape, and a sum over 256 MiB of fp32 (a streaming read)."""
    import time
    import warnings

    import torch

    torch.set_num_threads(threads)
    w, x = torch.randn(2048, 2048), torch.randn(256, 2048)
    wb, xb = w.bfloat16(), x.bfloat16()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # torch.ao's deprecation notices
        from torch.ao.quantization import quantize_dynamic
        int8 = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(2048, 2048)), {torch.nn.Linear},
                                dtype=torch.qint8)
    big = torch.ones(64 << 20)
    calls = {"fp32 GEMM": lambda: torch.nn.functional.linear(x, w),
             "bf16 GEMM": lambda: torch.nn.functional.linear(xb, wb),
             "int8 GEMM": lambda: int8(x), "stream read": lambda: big.sum()}
    out = {}
    with torch.inference_mode():
        for name, call in calls.items():
            call()
            times = []
            for _ in range(7):
                t = time.perf_counter()
                call()
                times.append(time.perf_counter() - t)
            out[name] = min(times)
    out[f"chase over {CHASE_PROBE_BYTES >> 20} MiB"] = chase_probe()
    return out


def chase_probe() -> float:
    """Seconds a hop of ``calibrate``'s dependent pointer chase over :data:`CHASE_PROBE_BYTES`
    (a random cyclic permutation of its lines), the best of three walks."""
    from simulator.measure.calibrate import _chase_kernels, _chase_round, cyclic_chain

    chase, _ = _chase_kernels()
    walk = _chase_round(chase, cyclic_chain(CHASE_PROBE_BYTES, 64, seed=12), 64)
    return min(walk() for _ in range(3))


def drift_lines(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """How far each probe figure moved over the session (positive: slower at the end), flagged past
    :data:`DRIFT_FLAG`."""
    moved = {name: after[name] / before[name] - 1 for name in before if name in after}
    flagged = [name for name, m in moved.items() if abs(m) > DRIFT_FLAG]
    line = "host drift over the session (end against start): " + ", ".join(
        f"{name} {100 * m:+.0f}%" for name, m in moved.items())
    if flagged:
        line += (f"; moved more than {100 * DRIFT_FLAG:.0f}%: " + ", ".join(flagged)
                 + " (its calibrate and its benches met different phases of the host)")
    chase = f"chase over {CHASE_PROBE_BYTES >> 20} MiB"
    if chase in before and chase in after:     # its meaning is in its level: a hit, or beyond the share
        line += f"; {chase}: {before[chase] * 1e9:.0f} ns at the start, {after[chase] * 1e9:.0f} ns at the end"
    return [line]


def simulator(*args: str, log: Path, required: bool = True) -> None:
    """``python -m simulator ARGS`` in the repository, its output into ``log``; a failure stops the
    session where the step is ``required``."""
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "simulator", *args], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT)
    if done.returncode != 0 and required:
        sys.exit(f"crosscheck_session: `simulator {' '.join(args)}` failed (exit {done.returncode}); see {log}")


def bench_stem(name: str, batch: int, run: int = 1) -> str:
    """``v-eie-b64`` for the first run of a bench, ``v-eie-b64-run2`` for the second ..."""
    return f"v-{name}-b{batch}" + (f"-run{run}" if run > 1 else "")


def bench_files(out: Path, name: str, first_only: bool = False) -> list[str]:
    """The bench files of ``name`` (``eie``, ``alexnet``) in ``out``: every run's, or the first's."""
    files = []
    for batch in BATCHES:
        run = 1
        while (out / f"{bench_stem(name, batch, run)}.json").exists() and (run == 1 or not first_only):
            files.append(f"{bench_stem(name, batch, run)}.json")
            run += 1
    return files


def measure(out: Path, threads: int, runs: int = 1) -> None:
    """Steps 1-3 of the module's docstring, into ``out``."""
    t = str(threads)
    (out / "probe-start.json").write_text(json.dumps(probe(threads)))
    calibrate(out, t, "host.yaml", "calibrate.txt", required=True)
    for model in LLMS:
        simulator("bench", "--llm", model, "--prompt", "128", "--context", "256", "--tokens", "32", "--threads", t,
                  "--out", str(out / f"llm-{model}.json"), log=out / f"llm-{model}.txt")
    for run in range(1, runs + 1):
        for batch in BATCHES:
            for name, workload, variants in (("eie", "workloads/eie.yaml", EIE_VARIANTS),
                                             ("alexnet", "workloads/alexnet.yaml", ALEXNET_VARIANTS)):
                stem = bench_stem(name, batch, run)
                simulator("bench", "--workload", workload, "--format", variants, "--batch", str(batch),
                          "--threads", t, "--out", str(out / f"{stem}.json"), log=out / f"{stem}.txt")
    (out / "probe-end.json").write_text(json.dumps(probe(threads)))
    calibrate(out, t, END_PROFILE, "calibrate-end.txt", required=False)


def calibrate(out: Path, threads: str, profile: str, log: str, required: bool) -> None:
    """``simulator calibrate`` into ``out/profile``, tried up to :data:`CALIBRATE_ATTEMPTS` times: a
    plausibility check that the host's noise trips (its threads got 83% of two cores' time) is worth
    another try. Where every try failed, the session stops if the profile is ``required``."""
    (out / profile).unlink(missing_ok=True)     # a profile left by an earlier session is not this one's
    for attempt in range(1, CALIBRATE_ATTEMPTS + 1):
        simulator("calibrate", "--threads", threads, "--out", str(out / profile), log=out / log,
                  required=required and attempt == CALIBRATE_ATTEMPTS)
        if (out / profile).exists():
            return


#: The profile step 4 calibrates after the benches: the summary checks every bench against it too,
#: so a session shows how far the host's phase alone moves each figure.
END_PROFILE = "host-end.yaml"
#: Tries of each ``calibrate`` (start and end): on a noisy VM a plausibility check fails now and then.
CALIBRATE_ATTEMPTS = 3


def crosscheck(out: Path, name: str, measured: list[str], profile: str = "host.yaml") -> dict[str, Any]:
    """``simulator crosscheck DIR/PROFILE MEASURED --json DIR/cc-NAME.json``, read back."""
    result = out / f"cc-{name}.json"
    simulator("crosscheck", str(out / profile), *(str(out / m) for m in measured), "--json", str(result),
              log=out / f"cc-{name}.txt")
    return json.loads(result.read_text())


def ratio(cell: dict[str, Any]) -> float:
    """How far a cell is off, as a ratio of at least 1 (2.0: twice or half the measured time)."""
    p, m = cell["predicted_s"], cell["measured_s"]
    return max(p / m, m / p)


def issue13(cells: list[dict[str, Any]]) -> str:
    """Median |error| and the worst cell of the dense and CSR cells."""
    mine = [c for c in cells if c["variant"] in ISSUE13_VARIANTS]
    worst = max(mine, key=ratio)
    return (f"{len(mine)} cells, median |error| {100 * statistics.median(abs(c['error']) for c in mine):.1f}%, worst "
            f"{ratio(worst):.2f}x ({worst['layer']} b{worst['batch']} {worst['variant']} {100 * worst['error']:+.0f}%)"
            " (target 10%, 1.6x)")


def random_llc_profile(out: Path, profile: str) -> Optional[tuple[str, str]]:
    """``DIR/PROFILE`` with its last level switched to random replacement at the size ``calibrate``
    fitted for that policy (its ``fitted`` note of the level's size names every policy's best size),
    written beside it as ``STEM-random.yaml``; its name and that size, or None where the note names
    no such size.
    The LRU step stays ``calibrate``'s default; this lets every session re-score its benches with the
    other policy (docs/validation.md, "The LLC policy again")."""
    doc = yaml.safe_load((out / profile).read_text())
    level = doc["memory"]["caches"][-1]
    found = re.search(r"random (\d+) KiB", " ".join(str(doc.get("fitted", {}).get(
        f"memory.caches.{level['name']}.size", "")).split()))
    if found is None:
        return None
    level["size"], level["replacement"] = f"{found.group(1)} KiB", "random"
    name = f"{Path(profile).stem}-random.yaml"
    (out / name).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return name, level["size"]


def random_llc_line(out: Path, profile: str, tag: str) -> list[str]:
    """Issue #13's figures against :func:`random_llc_profile` of ``DIR/PROFILE``, where it has one."""
    made = random_llc_profile(out, profile)
    if made is None:
        return []
    random_profile, size = made
    eie = crosscheck(out, f"eie-random{tag}", bench_files(out, "eie"), random_profile)
    return [f"  with the last level random at {size} ({random_profile}): " + issue13(eie["variants"]["cells"])]


def variants_lines(check: dict[str, Any]) -> list[str]:
    """Each variant's median |error| and worst cell, and the pairs right."""
    v = check["variants"]
    lines = [f"  {row['variant']:<12} {row['cells']:>3} cells  median {100 * row['median_abs_error']:5.1f}%  worst "
             f"{row['worst']['layer']} b{row['worst']['batch']} {100 * row['worst']['error']:+.0f}%"
             for row in v["variants"]]
    lines.append(f"  pairs right  {v['winners_right']} of {v['winners_total']} "
                 f"({100 * v['winners_right'] / max(1, v['winners_total']):.0f}%)")
    return lines


def fault_lines(cells: list[dict[str, Any]]) -> list[str]:
    """Pages faulted a call against those the profile maps afresh (``memory.fresh_pages``), for the
    cells with either (a bench file from before the count measured none)."""
    mib = float(1 << 20)
    listed = [c for c in cells if c.get("measured_faulted_bytes", 0) >= mib or c.get("predicted_fresh_bytes", 0)]
    return ["  pages faulted a call, MiB, measured / mapped afresh: " + ", ".join(
        f"{c['layer']} b{c['batch']} {c['variant']} {c.get('measured_faulted_bytes', 0) / mib:.1f} / "
        f"{c['predicted_fresh_bytes'] / mib:.1f}" for c in listed)] if listed else []


def figures(out: Path, profile: str, tag: str = "") -> list[str]:
    """Every check's figures against ``DIR/PROFILE`` (crosschecks run now, their files tagged ``tag``);
    with several bench runs, also issue #13's and #14's of the first run alone."""
    llm = crosscheck(out, f"llm{tag}", [f"llm-{m}.json" for m in LLMS], profile)["llm"]
    eie = crosscheck(out, f"eie{tag}", bench_files(out, "eie"), profile)
    alexnet = crosscheck(out, f"alexnet{tag}", bench_files(out, "alexnet"), profile)
    lines = [f"LLM (#15): time to first token within 25% {llm['ttft_within']} of {len(llm['cells'])}, decode "
             f"within 15% {llm['decode_within']} of {len(llm['cells'])}"]
    lines += [f"  {c['model']:<24} {c['variant']:<11} TTFT {100 * c['ttft_error']:+6.1f}%  decode "
              f"{100 * c['decode_error']:+6.1f}%" for c in llm["cells"]]
    lines += ["EIE layers, variants (#14):", *variants_lines(eie)]
    lines += ["AlexNet, dense and thinned (#14):", *variants_lines(alexnet),
              *fault_lines(alexnet["variants"]["cells"])]
    lines.append("EIE layers dense + CSR (#13): " + issue13(eie["variants"]["cells"]))
    lines += random_llc_line(out, profile, tag)
    runs = len(bench_files(out, "eie")) // len(BATCHES)
    if runs > 1:
        first = crosscheck(out, f"eie-run1{tag}", bench_files(out, "eie", first_only=True), profile)
        lines += [f"  (each cell its fastest of {runs} bench runs; the first run alone:)",
                  *(f"  {line}" for line in variants_lines(first)),
                  "  EIE layers dense + CSR (#13), the first run alone: " + issue13(first["variants"]["cells"])]
    return lines


def run_times(out: Path, name: str, run: int) -> dict[tuple[str, int, str], float]:
    """Each cell's median call in bench run ``run`` of ``name``: (layer, batch, variant) -> seconds."""
    times = {}
    for batch in BATCHES:
        path = out / f"{bench_stem(name, batch, run)}.json"
        if path.exists():
            for cell in json.loads(path.read_text()).get("variants", []):
                times[(cell["layer"], cell["batch"], cell["format"])] = cell["median_s"]
    return times


def spread(differences: list[float]) -> str:
    """``median X%, p90 Y%, worst Z%`` of ``|run / run - 1|`` figures."""
    ranked = sorted(differences)
    return (f"median {100 * statistics.median(ranked):.1f}%, p90 {100 * ranked[int(0.9 * len(ranked))]:.0f}%, "
            f"worst {100 * ranked[-1]:.0f}%")


def repeatability_lines(out: Path) -> list[str]:
    """How far the host moved the same cells between the first and the second run of the EIE bench,
    minutes apart (nothing in the model changes between them): the floor under any error a
    cross-check of this session can show. Empty with one run."""
    first, second = run_times(out, "eie", 1), run_times(out, "eie", 2)
    common = [key for key in first if key in second and first[key] > 0 and second[key] > 0]
    if not common:
        return []
    differences = {key: abs(first[key] / second[key] - 1) for key in common}
    mine = [d for key, d in differences.items() if key[2] in ISSUE13_VARIANTS]
    lines = ["the host's repeatability: each cell's first EIE bench run against its second, |run 1 / run 2 - 1|:"]
    if mine:
        lines.append(f"  #13's {len(mine)} cells: {spread(mine)} (the target: a median error of 10%, 1.6x at worst)")
    for variant in dict.fromkeys(key[2] for key in common):
        lines.append(f"  {variant:<12} {spread([d for key, d in differences.items() if key[2] == variant])}")
    return lines


#: What :func:`headline` keeps of a ``calibrate`` log: its summary lines (the CSR libraries' says
#: whether torch's index copy was found, and what share of its loop its loads ran under), its
#: warning of measurements that did not settle, and the measurements its two looks disagreed on.
HEADLINE_MARKS = ("peak", "DRAM sustained", "CSR libraries", "did not settle", "apart between the")


def headline(log: Path) -> list[str]:
    """A ``calibrate`` log's lines that :data:`HEADLINE_MARKS` names."""
    return [f"  {line.strip()}" for line in log.read_text().splitlines()
            if any(mark in line for mark in HEADLINE_MARKS)]


def summary(out: Path) -> list[str]:
    """The session's figures against ``DIR/host.yaml`` and, where step 4 wrote it, against
    :data:`END_PROFILE`; then the drift probe's."""
    lines = [f"session {out}", *headline(out / "calibrate.txt"), *figures(out, "host.yaml")]
    if (out / END_PROFILE).exists():
        lines += ["", f"the same benches against the profile calibrated after them ({END_PROFILE}):",
                  *headline(out / "calibrate-end.txt"), *figures(out, END_PROFILE, "-end")]
    if (out / "probe-start.json").exists() and (out / "probe-end.json").exists():
        lines += drift_lines(*(json.loads((out / f"probe-{end}.json").read_text()) for end in ("start", "end")))
    return lines + repeatability_lines(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the profile, timings and checks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bench-runs", type=int, default=1, choices=range(1, 5), metavar="N",
                        help="run the EIE and AlexNet benches N times (1-4); each cell is checked at its fastest run")
    parser.add_argument("--summary-only", action="store_true", help="summarise a directory measured before")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        measure(args.out, args.threads, args.bench_runs)
    print("\n".join(summary(args.out)))


if __name__ == "__main__":
    main()
