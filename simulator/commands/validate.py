"""``python -m simulator validate eie``: the model against EIE Table IV."""

from __future__ import annotations

import argparse

from ..base.console import Bar
from ..base.errors import ConfigError
from ..base.paths import HWPROFILES_DIR, WORKLOADS_DIR
from .options import add_command, check_output_dirs


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand."""
    cmd = add_command(subparsers, "validate", _validate, "compare the simulator with published measurements")
    cmd.add_argument("table", choices=["eie"], help="which published table")
    cmd.add_argument("--json", metavar="FILE", help="also write every cell and the summaries as JSON")
    cmd.add_argument("--plot", metavar="FILE", help="write predicted vs published (log-log, PNG/SVG/PDF)")
    cmd.add_argument("--fit", action="store_true",
                     help="first fit each profile's efficiencies and DRAM rates on the fitted cells, "
                          "and print the values (the profiles are not changed)")
    cmd.add_argument("--fit-on", choices=["fitted", "all"], default="fitted",
                     help="with --fit: the cells to fit on; 'all' is a diagnostic (is a held-out miss overfitting, "
                          "or beyond what the allowed rates can do?), not a validation (default: fitted)")


def _validate(args: argparse.Namespace) -> int:
    """Simulate every published cell of EIE Table IV (9 layers x dense/CSR x batch 1/64 on the i7-5930K and Titan X
    profiles) in the paper's benchmark protocol and report the error, separately for the cells the profiles were fitted
    on and the held-out cells."""
    from ..hardware.profile import load_profile
    from ..model.workload import load_workload

    if args.fit_on == "all" and not args.fit:
        raise ConfigError("command line", "--fit-on", "all needs --fit")
    check_output_dirs(args, "json", "plot")
    from ..output.report import write_json_document
    from ..studies.validation import EIE_PROFILE, PLATFORM_PROFILES, compare, plot, render

    profiles = {platform: load_profile(HWPROFILES_DIR / name) for platform, name in PLATFORM_PROFILES.items()}
    workload = load_workload(WORKLOADS_DIR / "eie.yaml")
    with Bar("step") as bar:
        comparison = compare(profiles, workload, do_fit=args.fit, progress=bar,
                             eie_profile=load_profile(HWPROFILES_DIR / EIE_PROFILE), fit_on_all=args.fit_on == "all")
    print(render(comparison))
    if args.json:
        write_json_document(comparison.to_json(), args.json, "json")
    if args.plot:
        plot(comparison, args.plot)
    return 0
