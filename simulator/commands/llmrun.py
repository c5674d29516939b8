"""``run PROFILE --workload config.json``: a decoder LLM's prefill or decode steps (see docs/llm.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.console import Bar
from ..base.errors import ConfigError

if TYPE_CHECKING:
    from ..hardware.profile import HardwareProfile

#: the flags that apply to a model config only, and their defaults there
LLM_FLAGS = {"phase": "decode", "prompt": 128, "context": 512, "tokens": 1, "kv_dtype": None, "context_points": 3}
#: the run flags a model config does not take
_NOT_WITH_LLM = (("checkpoint", "--checkpoint"), ("model", "--model"), ("dump_trace", "--dump-trace"),
                 ("timeline", "--timeline"), ("low_rank", "--low-rank"), ("plot", "--plot"),
                 ("input_shape", "--input-shape"))


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The decoder flags of ``run`` (None by default, so a flag given without a model config is refused)."""
    from .options import positive_int

    run.add_argument("--phase", choices=["prefill", "decode"],
                     help="with a model config.json: prefill (the prompt at once: time to first token) or decode "
                          "(tokens after a cached context: tokens per second) (default decode)")
    run.add_argument("--prompt", type=positive_int("--prompt"),
                     help="with --phase prefill: prompt tokens (default 128)")
    run.add_argument("--context", type=positive_int("--context", least=0),
                     help="with --phase decode: tokens already in the KV cache (default 512)")
    run.add_argument("--tokens", type=positive_int("--tokens"),
                     help="with --phase decode: tokens generated; the KV cache grows by one each (default 1)")
    run.add_argument("--kv-dtype", choices=["fp32", "fp16", "bf16", "int8"],
                     help="with a model config: the KV cache's type (default the model's)")
    run.add_argument("--context-points", type=positive_int("--context-points"),
                     help="with --phase decode: KV lengths the attention is simulated at over the tokens "
                          "generated (default 3)")



def check_llm_flags(args: argparse.Namespace) -> None:
    """Refuse the decoder flags when the workload is no model config."""
    for name in LLM_FLAGS:
        if getattr(args, name, None) is not None:
            raise ConfigError("command line", "--" + name.replace("_", "-"),
                              "applies with a model's config.json as --workload only")


def find_llm_config(path: Path) -> Path:
    """A model config argument: a file that exists, or a shipped config by file name
    (``llama-3.2-1b.json`` or ``workloads/llm/llama-3.2-1b.json`` from any directory)."""
    from ..base.paths import WORKLOADS_DIR

    shipped = WORKLOADS_DIR / "llm" / path.name
    return path if path.exists() or not shipped.is_file() else shipped


def run_llm(profile: HardwareProfile, path: Path, args: argparse.Namespace) -> int:
    """Simulate the model config at ``path`` on ``profile`` as the flags say; print, write JSON."""
    from ..model.llm import Phase, load_llm_config
    from ..model.workload import DType
    from ..output.report import write_json_document
    from ..studies.llm import LlmOptions, render_llm, simulate_llm

    for name, flag in _NOT_WITH_LLM:
        if getattr(args, name, None):
            raise ConfigError("command line", flag, "does not apply to a model config")
    values: dict[str, Any] = {name: getattr(args, name) if getattr(args, name) is not None else default
              for name, default in LLM_FLAGS.items()}
    phase = Phase(values["phase"])
    for name, flag in (("prompt", "--prompt"), ("context", "--context"), ("tokens", "--tokens"),
                       ("context_points", "--context-points")):
        wrong = (name == "prompt") != (phase is Phase.PREFILL)
        if getattr(args, name) is not None and wrong:
            raise ConfigError("command line", flag, f"does not apply with --phase {phase.value}")
    for flag, value, default in (("--repeat", args.repeat, 1), ("--repeat-mode", args.repeat_mode, "network"),
                                 ("--mode", args.mode, "infer")):
        if value != default:
            raise ConfigError("command line", flag, "does not apply to a model config")
    config = load_llm_config(find_llm_config(path))
    from ..compress.variants import parse_variants

    formats = parse_variants(args.format, args.group_size) if args.format else ("dense",)
    options = LlmOptions(phase=phase, prompt=values["prompt"], context=values["context"], tokens=values["tokens"],
                         batch=args.batch, formats=formats,
                         kv_dtype=DType(values["kv_dtype"]) if values["kv_dtype"] else None, density=args.density,
                         seed=args.seed, threads=args.threads, context_points=values["context_points"])
    with Bar() as bar:
        result = simulate_llm(profile, config, options, progress=bar)
    print(render_llm(result))
    if args.json:
        write_json_document(result.to_json(), args.json, "--json")
    return 0
