"""``python -m simulator calibrate [--out FILE] [--threads N]``: a profile of this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..base.console import progress
from ..base.errors import ConfigError
from .options import add_command, positive_int

#: The most passes ``--looks`` takes (each about two minutes on a small VM).
MAX_LOOKS = 5
#: How many of the measurements that moved between looks the summary names.
MOVED_NAMED = 6


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` subcommand."""
    cmd = add_command(subparsers, "calibrate", _calibrate, "measure this machine and write a hardware profile for it")
    cmd.add_argument("--out", default="hwprofiles/host.yaml", metavar="FILE",
                     help="profile to write (default hwprofiles/host.yaml; machine-specific, do not commit)")
    cmd.add_argument("--threads", type=positive_int("--threads"),
                     help="torch threads to measure with (default: every CPU)")
    cmd.add_argument("--name", help="profile name (default: the CPU model and thread count)")
    cmd.add_argument("--llc-policy", choices=["lru", "fit"], default="lru",
                     help="the last level: an LRU step at the measured size (default), or the replacement policy "
                          "(lru, random, dip) and size whose curve in the cache model best matches the working-set "
                          "sweep")
    cmd.add_argument("--looks", type=positive_int("--looks"), choices=range(1, MAX_LOOKS + 1), default=None,
                     metavar="N",
                     help="passes over every measurement, each kept at its best pass: a burst on the host that "
                          "outlasts one pass's rounds slows that pass only (1 to 5, default 2; about two minutes a "
                          "pass on a small VM)")


def _calibrate(args: argparse.Namespace) -> int:
    """Read the cache geometry (sysfs, lscpu), measure DRAM bandwidth (STREAM-like), latency (pointer chase), the
    lines in flight of a stream and of gathers, bandwidth vs working-set size (the LLC share a VM really gets), and
    the kernel cost model's parameters with torch (GEMM library efficiency, CSR SpMV / SpMM cycles per non-zero and
    per row); each measurement is repeated until it settles, and a machine too busy to give plausible figures gets
    no profile (one line saying which check failed, exit status 2). Every measurement is taken in --looks
    passes minutes apart and kept at its best. About two minutes a pass."""
    import os

    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        raise ConfigError("command line", "--out", f"{args.out}: its directory does not exist")
    from ..measure.calibrate import (
        LOOKS,
        LOOKS_APART,
        MAX_ROUNDS,
        SETTLE_TOLERANCE,
        build_profile,
        measure,
        read_cpu_info,
        read_sysfs_caches,
        write_profile,
    )

    caches = read_sysfs_caches()
    cpu = read_cpu_info()
    threads = args.threads or os.cpu_count() or 1
    if threads > cpu.cores:
        raise ConfigError("command line", "--threads", f"{threads} is more than this machine's {cpu.cores} CPUs")
    looks = args.looks or LOOKS
    measured = measure(threads, caches, cpu, progress, looks=looks)
    mapping = build_profile(caches, cpu, measured, name=args.name or "", fit_llc_policy=args.llc_policy == "fit")
    write_profile(mapping, out)
    progress("")
    if measured.unsettled:      # after the checks: a refusal stays the one line it prints
        print(f"calibrate: warning: {len(measured.unsettled)} measurement(s) did not settle within "
              f"{100 * SETTLE_TOLERANCE:g}% in {MAX_ROUNDS} rounds (the profile says which): "
              + ", ".join(measured.unsettled), file=sys.stderr)
    print(summary(mapping, out))
    moved = measured.moved_between_looks()
    if moved:
        print(f"  {len(moved)} of {len(measured.settled)} measurements came out more than {100 * LOOKS_APART:g}% "
              f"apart between the {looks} looks (the host was busier in one; each kept at its best): "
              + ", ".join(moved[:MOVED_NAMED]) + (", ..." if len(moved) > MOVED_NAMED else ""))
    return 0


def summary(mapping: dict[str, Any], out: Path) -> str:
    """What ``calibrate`` prints after writing a profile: its main figures."""
    compute, memory = mapping["compute"], mapping["memory"]
    kernels, dram, llc = compute["kernels"], memory["dram"], memory["caches"][-1]
    threads = compute.get("threads", {})

    def sparse(kind: str) -> str:
        k = kernels[kind]
        return (f"{kind} {k['cycles_per_nonzero']:.3g} cycles per non-zero, {k['cycles_per_row']:.3g} per row, "
                f"{k['columns_per_step']} column(s) a step" + set_up(k) + gathers(k)
                + f" ({threads.get(kind, compute['cores'])} thread(s))")

    def gathers(kernel: dict[str, Any]) -> str:
        return (f", waits on its gathers beyond the private caches, {kernel['gathers_in_flight_per_core']:.3g} in "
                "flight a core" if "gathers_in_flight_per_core" in kernel else "") + fills(kernel)

    def fills(kernel: dict[str, Any]) -> str:
        return (f", {kernel['cycles_per_gather_fill']:.3g} cycles a gathered line from below the first level"
                if "cycles_per_gather_fill" in kernel else "")

    def set_up(kernel: dict[str, Any]) -> str:
        return f", {kernel['call_overhead']} a call" if "call_overhead" in kernel else ""

    def library(name: str, lib: dict[str, Any]) -> str:
        return (f"{name}: spmv {lib['spmv']['cycles_per_nonzero']:.3g} / spmm {lib['spmm']['cycles_per_nonzero']:.3g}"
                f" cycles per non-zero" + set_up(lib['spmv']) + f", {lib.get('index_bits', '?')}-bit indices"
                + (f" copied to {lib['kernel_index_bits']} bits a call" if "kernel_index_bits" in lib else "")
                + (f", loads under {lib['spmv']['load_overlap']:.2g} of its loop" if "load_overlap" in lib['spmv']
                   else "") + fills(lib['spmv'])
                + (f", its spmm waits on {lib['spmm']['gathers_in_flight_per_core']:.3g} gathers a core"
                   if "gathers_in_flight_per_core" in lib['spmm'] else "")
                + f" ({lib.get('threads', compute['cores'])} thread(s))")
    libraries = kernels.get("libraries", {})

    def row_starts(gemv: dict[str, Any]) -> str:
        starts = [f"{start['fp32']} from DRAM" for start in (gemv.get("row_start", {}),) if "fp32" in start]
        starts += [f"{start['fp32']} from {level}" for level, start in gemv.get("cached_row_start", {}).items()
                   if "fp32" in start]
        text = f"a GEMV row starts in {', '.join(starts)} a core; " if starts else ""
        tile = gemv.get("packed_tiles", {}).get("int8")
        tiles = [f"{start['int8']} from DRAM" for start in (gemv.get("row_start", {}),) if "int8" in start]
        tiles += [f"{start['int8']} from {level}" for level, start in gemv.get("cached_row_start", {}).items()
                  if "int8" in start]
        if tile and tiles:
            text += f"an int8 tile of a partial {tile['depth']}-deep block in {', '.join(tiles)}; "
        return text

    def conv_efficiency(conv: dict[str, Any]) -> str:
        blocks = conv.get("channel_block", 1)
        native = (f", torch's own up to {conv['native_max_input_elements']} input elements at batch 1"
                  if "native_max_input_elements" in conv else "")
        set_up = f", {conv['call_overhead']['fp32']} a call" if "fp32" in conv.get("call_overhead", {}) else ""
        return (f"{conv['library_efficiency']:.3g}" + (f" in blocks of {blocks} channels" if blocks > 1 else "")
                + set_up + native)
    return "\n".join([
        f"wrote {out}: {mapping['name']}",
        f"  peak {compute['peak_flops']['fp32']} ({compute['vector_lanes']} lanes a vector)"
        + "".join(f", {t} {compute['peak_flops'][t]} (effective)"
                  for t in ("bf16", "int8") if t in compute['peak_flops'])
        + "; GEMM library "
        f"efficiency {kernels['gemm']['library_efficiency']:.3g}, convolution {conv_efficiency(kernels['conv'])}; "
        f"{sparse('spmv')}; {sparse('spmm')}",
        f"  {llc['name']} effective {llc['size']} ({llc['replacement']}) at {llc['bandwidth']}; DRAM sustained "
        f"{dram['sustained_bandwidth']}, peak {dram['peak_bandwidth']}, latency {dram['latency']}"
        + (f", a write-back {dram['writeback_cost']:.3g} of a read" if "writeback_cost" in dram else "") + "; "
        + row_starts(kernels['gemv']) + "in flight per "
        f"core: {dram['outstanding_requests_per_core']} stream lines, {compute['outstanding_gathers_per_core']} "
        f"gathers; per-call overhead {compute['launch_overhead']}"
        + (f"; fresh pages above {memory['fresh_pages']['above']} fault in at {memory['fresh_pages']['bandwidth']}"
           if "fresh_pages" in memory else ""),
    ] + (["  CSR libraries (bench picks per layer): " + "; ".join(library(n, lib) for n, lib in libraries.items())]
         if libraries else []))
