"""``python -m simulator profiles``: every shipped hardware profile at a glance."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..base.paths import HWPROFILES_DIR as HWPROFILES
from .options import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profiles`` subcommand."""
    cmd = add_command(subparsers, "profiles", _profiles, "list the shipped hardware profiles")
    cmd.add_argument("--dir", default=str(HWPROFILES), help="folder of profiles (default: the shipped ones)")
    cmd.add_argument("--schema", action="store_true",
                     help="print the JSON Schema of a profile file instead (units as the files write them, "
                          "e.g. '128 KiB'), for editors that validate YAML against a schema")


def _peak(value: float) -> str:
    return f"{value / 1e12:.2f} T" if value >= 1e12 else f"{value / 1e9:.0f} G"


def _profiles(args: argparse.Namespace) -> int:
    """List every profile in hwprofiles/ with its kind, peak compute, DRAM bandwidth, last-level cache and roofline
    ridge point."""
    from ..base.errors import ConfigError
    from ..base.texttable import format_table
    from ..base.units import format_bytes
    from ..hardware.profile import load_profile

    if args.schema:
        import json

        from ..base.schema import json_schema
        from ..hardware.profile import HardwareProfile

        print(json.dumps(json_schema(HardwareProfile, "Hardware profile (simulator)"), indent=1))
        return 0
    folder = Path(args.dir)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError("command line", "--dir", f"{folder}: no *.yaml profiles there")
    rows = [["file", "kind", "name", "peak", "DRAM peak", "last-level cache", "ridge (FLOP/B)", "fitted"]]
    for path in files:
        p = load_profile(path)
        dtype = next(n for n in ("fp32", "fp16", "int16", "int8") if getattr(p.compute.peak_flops, n) is not None)
        unit = "FLOP/s" if dtype.startswith("fp") else "OP/s"
        if p.caches:
            last = p.caches[-1]
            llc = f"{last.name} {format_bytes(last.size_bytes)}" + ("" if last.shared else " per core")
        elif p.memory.scratchpads:
            llc = "SRAM " + ", ".join(f"{s.name} {format_bytes(s.size_bytes)}" for s in p.memory.scratchpads)
        else:
            llc = "-"
        dram = f"{p.dram.peak_bandwidth_bytes_per_s / 1e9:.1f} GB/s" if p.dram else "none (on chip)"
        ridge = f"{p.ridge_flop_per_byte:.1f}" if p.dram else "-"
        rows.append([path.name, p.kind.value, p.name, f"{_peak(p.peak_flops_per_s)}{unit} {dtype}", dram, llc, ridge,
                     "yes" if p.fitted else "no"])
    print(format_table(rows[0], rows[1:]))
    return 0
