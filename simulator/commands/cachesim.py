"""``python -m simulator cachesim PROFILE TRACE.npy``: an address trace through a profile's caches."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..base.errors import ConfigError
from ..base.paths import find_profile
from .options import add_command, check_output_dirs


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cachesim`` subcommand."""
    cachesim = add_command(subparsers, "cachesim", _cachesim,
                           "run an address trace (.npy) through a profile's cache hierarchy")
    cachesim.add_argument("profile", help="hardware profile: a YAML file, or a shipped profile's name (tegra)")
    cachesim.add_argument("trace", help="the trace, a NumPy .npy file")
    cachesim.add_argument("--json", metavar="FILE", help="also write the counts (and curves) as JSON")
    cachesim.add_argument("--mrc", metavar="FILE",
                          help="miss-ratio curve of every level: .csv for the numbers, .png / .pdf / .svg for a plot")


def _cachesim(args: argparse.Namespace) -> int:
    """Run a trace of byte addresses (a .npy array: addresses; or columns address, is_write[, core]; or a structured
    array with fields address[, is_write, core]) through the profile's cache hierarchy, cold, with the same exact
    LRU model as run. Prints exact hits and misses per level and DRAM line reads and write-backs; --mrc adds every
    level's miss-ratio curve."""
    from ..hardware.profile import load_profile
    from ..output.plots import miss_ratio_curves
    from ..output.report import write_json_document
    from ..studies.tracesim import check_curves_path, load_trace, simulate_trace, write_curves_csv

    if args.json and not (Path(args.json).parent if str(Path(args.json).parent) else Path(".")).is_dir():
        raise ConfigError("command line", "--json", f"{args.json}: directory {Path(args.json).parent} does not exist")
    check_output_dirs(args, "json")
    curves_path = check_curves_path(args.mrc)
    profile = load_profile(find_profile(args.profile))
    trace = load_trace(args.trace)
    result = simulate_trace(profile, trace, curves=curves_path is not None)
    print(render(result))
    if curves_path is not None:
        if curves_path.suffix.lower() == ".csv":
            write_curves_csv(result.curves, curves_path)
        else:
            miss_ratio_curves(result.curves, {l.name: l.size_bytes for l in result.levels}, curves_path,
                              f"{Path(trace.path).name} on {profile.name}: miss-ratio curves")
        print(f"miss-ratio curves: {curves_path} ({result.curve_seconds:.2f} s for "
              f"{sum(len(c.points) for c in result.curves)} sizes)")
        for level in result.levels:
            if level.replacement.value != "lru":
                print(f"no curve for {level.name} ({level.replacement.value}): stack distances model LRU levels only")
    if args.json:
        write_json_document(result.to_json(), args.json, "json")
    return 0


def render(result) -> str:
    """The text output: per-level counts, DRAM traffic, the model's speed."""
    from ..base.texttable import format_table
    from ..base.units import format_bytes

    cores = f"{result.cores} core{'s' * (result.cores != 1)}"
    lines = [f"{result.trace}: {result.accesses:,} accesses ({result.writes:,} writes) through {result.profile} "
             f"({cores}), cold caches", ""]
    header = ["level", "size", "line", "ways", "shared", "policy", "accesses", "hits", "misses", "hit rate"]
    body = [[l.name, format_bytes(l.size_bytes), f"{l.line_bytes} B", str(l.ways), "yes" if l.shared else "no",
             l.replacement.value, f"{l.accesses:,}", f"{l.hits:,}", f"{l.misses:,}", f"{100 * l.hit_rate:.1f}%"]
            for l in result.levels]
    lines.append(format_table(header, body, right=range(2, len(header))))
    line = result.dram_line_bytes
    lines += ["", f"DRAM: {result.dram_line_reads:,} line reads ({format_bytes(result.dram_line_reads * line)}), "
                  f"{result.dram_writebacks:,} write-backs ({format_bytes(result.dram_writebacks * line)})",
              f"cache model: {result.cache_seconds:.3f} s, {result.accesses_per_s / 1e6:.1f} M accesses/s"]
    return "\n".join(lines)
