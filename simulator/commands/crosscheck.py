"""``python -m simulator crosscheck PROFILE MEASURED.json [...]``: the simulator vs real timings."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..base.console import progress
from ..base.errors import ConfigError
from .options import check_output_dirs


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``crosscheck`` subcommand."""
    cmd = subparsers.add_parser(
        "crosscheck", help="simulate what `bench` measured and compare, layer by layer",
        description="Simulate the cases of one or more `bench --out` files (same batch, format, threads, "
                    "each layer alone and repeated) on PROFILE, and print predicted vs measured per layer, "
                    "the median |error|, the share within 25%% and whether dense vs CSR picks the right winner.")
    cmd.add_argument("profile", help="hardware profile YAML (e.g. the one `calibrate` wrote)")
    cmd.add_argument("measured", nargs="+", help="`bench --out` JSON file(s)")
    cmd.add_argument("--workload", help="workload YAML (default: the one each measured file names)")
    cmd.add_argument("--fit", action="store_true",
                     help="first fit the profile's kernel efficiencies and DRAM rates on part of the cells and "
                          "report fitted and held-out cells separately (the profile file is not changed)")
    cmd.add_argument("--plot", metavar="FILE", help="bar chart of measured vs simulated per layer (PNG/SVG/PDF)")
    cmd.add_argument("--json", metavar="FILE", help="also write every cell and the summaries as JSON")
    cmd.set_defaults(handler=_crosscheck)


def _crosscheck(args: argparse.Namespace) -> int:
    check_output_dirs(args, "json", "plot")
    from ..hardware.profile import load_profile
    from ..measure.bench import load_bench
    from ..model.workload import load_workload

    profile = load_profile(args.profile)
    benches = [load_bench(path) for path in args.measured]
    paths = {args.workload} if args.workload else {b.workload_path for b in benches}
    if len(paths) != 1:
        raise ConfigError(args.measured[0], "workload_path", f"the measured files name different workloads "
                          f"({', '.join(sorted(paths))}); cross-check one workload at a time")
    workload_path = paths.pop()
    if not Path(workload_path).is_file():
        raise ConfigError(args.measured[0], "workload_path", f"{workload_path} does not exist; pass --workload")
    workload = load_workload(workload_path)
    from ..measure.crosscheck import crosscheck, plot, render
    from ..output.report import write_json_document

    check = crosscheck(profile, workload, benches, do_fit=args.fit, progress=progress, source=args.measured[0])
    progress("")
    print(render(check))
    if args.json:
        write_json_document(check.to_json(), args.json, "json")
    if args.plot:
        plot(check, args.plot)
    return 0
