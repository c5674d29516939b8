"""``python -m simulator crosscheck PROFILE MEASURED.json [...]``: the simulator vs real timings."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..base.console import progress
from ..base.errors import ConfigError
from ..base.paths import find_profile
from .options import add_command, check_output_dirs


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``crosscheck`` subcommand."""
    cmd = add_command(subparsers, "crosscheck", _crosscheck,
                      "simulate what `bench` measured and compare, layer by layer")
    cmd.add_argument("profile", help="hardware profile YAML (e.g. the one `calibrate` wrote)")
    cmd.add_argument("measured", nargs="+", help="`bench --out` JSON file(s); those of `bench --sparse-conv` are "
                     "checked for the break-even density of sparse convolution, those of `bench --format LIST` "
                     "per variant (median |error|, the faster of each pair), those of `bench --llm` for time to "
                     "first token and decode tokens per second")
    cmd.add_argument("--workload", help="workload YAML (default: the one each measured file names); with only "
                     "`bench --llm` files, the model's config.json")
    cmd.add_argument("--fit", action="store_true",
                     help="first fit the profile's kernel efficiencies and DRAM rates on part of the cells and "
                          "report fitted and held-out cells separately (the profile file is not changed)")
    cmd.add_argument("--plot", metavar="FILE", help="bar chart of measured vs simulated per layer (PNG/SVG/PDF)")
    cmd.add_argument("--json", metavar="FILE", help="also write every cell and the summaries as JSON")


def _crosscheck(args: argparse.Namespace) -> int:
    """Simulate the cases of one or more `bench --out` files (same batch, format, threads, each layer alone and
    repeated) on PROFILE, and print predicted vs measured per layer, the median |error|, the share within 25% and
    whether dense vs CSR picks the right winner."""
    check_output_dirs(args, "json", "plot")
    from ..hardware.profile import load_profile
    from ..measure.bench import load_bench

    profile = load_profile(find_profile(args.profile))
    loaded = [(path, load_bench(path)) for path in args.measured]
    convs = [(layer, b.seed) for _, b in loaded for layer in b.sparse_conv]
    llm = [(path, i, t) for path, b in loaded for i, t in enumerate(b.llm)]
    variants = [(p, b) for p, b in loaded if b.variants]
    plain = [(p, b) for p, b in loaded if b.layers or not (b.sparse_conv or b.llm or b.variants)]
    benches = [b for _, b in plain]
    if not benches:
        if args.fit:
            raise ConfigError("command line", "--fit", "applies to measured dense / csr workload layers; these files "
                              "hold only `bench --sparse-conv`, `bench --llm` or variant-list timings")
        if args.workload and not (variants or llm):
            raise ConfigError("command line", "--workload", "applies to measured workload layers; these files "
                              "hold only `bench --sparse-conv` timings")
    if args.plot and llm and not (benches or convs or variants):
        raise ConfigError("command line", "--plot", "draws workload layers, variants and sparse convolutions; the "
                          "LLM check prints a table (and --json)")
    doc = _crosscheck_layers(args, profile, benches, [p for p, _ in plain]) if benches else {"profile": profile.name}
    if variants:
        doc["variants"] = _crosscheck_variants(args, profile, variants, plot_alone=not benches)
    if convs:
        doc["sparse_conv"] = _crosscheck_sparse_conv(args, profile, convs, plot_alone=not (benches or variants))
    if llm:
        doc["llm"] = _crosscheck_llm(args, profile, llm, override=None if benches else args.workload)
    if args.json:
        from ..output.report import write_json_document

        write_json_document(doc, args.json, "json")
    return 0


def _crosscheck_sparse_conv(args: argparse.Namespace, profile, convs: list, plot_alone: bool) -> dict:
    """Break-even density of sparse convolution, predicted vs measured; its plot in ``--plot``, or beside
    it (``NAME-sparse-conv.png``) when the workload check draws there. Returns the JSON part."""
    from ..measure.sparseconv_check import plot, predict_all, render, to_json

    predictions = predict_all(profile, convs, progress)
    progress("")
    print(render(predictions, profile.name))
    if args.plot:
        target = Path(args.plot)
        plot(predictions, target if plot_alone else target.with_name(f"{target.stem}-sparse-conv{target.suffix}"),
             profile.name)
    return to_json(predictions)


def _crosscheck_llm(args: argparse.Namespace, profile, llm: list, override) -> dict:
    """The decoder LLM's time to first token and decode rate, predicted vs measured; returns the JSON part."""
    from ..measure.llmcheck import crosscheck_llm, render, to_json

    check = crosscheck_llm(profile, llm, override, progress)
    progress("")
    print(render(check))
    return to_json(check)


def _measured_workload(args: argparse.Namespace, benches: list, sources: list[str]):
    """The one workload the measured files name (or --workload)."""
    from ..model.workload import load_workload

    paths = {args.workload} if args.workload else {b.workload_path for b in benches}
    if len(paths) != 1:
        raise ConfigError(sources[0], "workload_path", f"the measured files name different workloads "
                          f"({', '.join(sorted(paths))}); cross-check one workload at a time")
    workload_path = paths.pop()
    if not Path(workload_path).is_file():
        raise ConfigError(sources[0], "workload_path", f"{workload_path} does not exist; pass --workload")
    return load_workload(workload_path)


def _crosscheck_variants(args: argparse.Namespace, profile, loaded: list, plot_alone: bool) -> dict:
    """Every measured variant (``bench --format LIST``), predicted vs measured; its plot in ``--plot``, or
    beside it (``NAME-variants.png``) when the workload check draws there. Returns the JSON part."""
    from ..measure.variantcheck import plot, predict, render

    workload = _measured_workload(args, [b for _, b in loaded], [p for p, _ in loaded])
    check = predict(profile, workload, [(t, b.seed) for _, b in loaded for t in b.variants],
                    [n for _, b in loaded for n in b.notes], progress)
    progress("")
    print(render(check))
    if args.plot:
        target = Path(args.plot)
        plot(check, target if plot_alone else target.with_name(f"{target.stem}-variants{target.suffix}"))
    return check.to_json()


def _crosscheck_layers(args: argparse.Namespace, profile, benches: list, sources: list[str]) -> dict:
    """The workload's layers, predicted vs measured; returns the JSON document."""
    workload = _measured_workload(args, benches, sources)
    from ..measure.crosscheck import crosscheck, plot, render

    check = crosscheck(profile, workload, benches, do_fit=args.fit, progress=progress, source=sources[0])
    progress("")
    print(render(check))
    if args.plot:
        plot(check, args.plot)
    return check.to_json()
