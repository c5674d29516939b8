"""A decoder LLM measured on this machine (``bench --llm``) against the simulator
(``python -m simulator crosscheck PROFILE MEASURED``).

Each measured weight type of a model (``fp32``, ``bf16``, ``int8``: the variants ``dense@fp32``,
``dense@bf16``, ``dense@int8``) is simulated in the same case with
:func:`simulator.studies.llm.simulate_llm`: the same config, batch and threads, the KV cache in the
type torch kept it in (the activations' type), a prefill of the measured prompt (time to first
token) and ``tokens`` decode steps after the measured context (decode tokens per second). The
errors are predicted / measured - 1; issue #15's targets are decode tokens per second within 15%
and time to first token within 25%. Several files measuring the same case (repeated runs on a
shared machine) keep each figure's fastest run: other processes only ever slow a run down.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..base.errors import ConfigError, OptionError
from ..hardware.profile import HardwareProfile
from ..model.llm import LlmConfig, Phase, load_llm_config
from ..model.workload import DType
from ..studies.llm import LlmOptions, LlmVariant, simulate_llm
from .llmbench import LlmTiming

DECODE_TARGET = 0.15      # |error| of decode tokens per second (issue #15)
TTFT_TARGET = 0.25        # |error| of time to first token


@dataclass(frozen=True)
class LlmCase:
    """What a measurement ran (the fields of its :class:`LlmTiming`): one simulation case per distinct key."""

    config_path: str
    weights: str
    variant: str
    kv_dtype: str
    batch: int
    threads: int
    prompt_tokens: int
    context_tokens: int
    decode_tokens: int


@dataclass(frozen=True)
class LlmCell(LlmCase):
    """One model and weight type: a measured case, and its simulation."""

    model: str
    measured_ttft_s: float
    predicted_ttft_s: float
    measured_tokens_per_s: float
    predicted_tokens_per_s: float
    bandwidth_bound_tokens_per_s: float     # decode: batch / (weights + KV cache over sustained DRAM bandwidth)
    decode_bound: str                       # what bounds the decode step's longest operator

    @property
    def ttft_error(self) -> float:
        """Predicted / measured time to first token - 1."""
        return self.predicted_ttft_s / self.measured_ttft_s - 1.0

    @property
    def decode_error(self) -> float:
        """Predicted / measured decode tokens per second - 1."""
        return self.predicted_tokens_per_s / self.measured_tokens_per_s - 1.0

    @property
    def ttft_within(self) -> bool:
        """Time to first token within the target."""
        return abs(self.ttft_error) <= TTFT_TARGET

    @property
    def decode_within(self) -> bool:
        """Decode tokens per second within the target."""
        return abs(self.decode_error) <= DECODE_TARGET

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, the errors included."""
        out = asdict(self)
        out.update(ttft_error=self.ttft_error, decode_error=self.decode_error, ttft_within=self.ttft_within,
                   decode_within=self.decode_within)
        return out


def fastest(timings: Sequence[LlmTiming]) -> dict[LlmCase, tuple[LlmTiming, float, float]]:
    """Per case, (a timing, the fastest time to first token, the fastest decode of all ``tokens``)."""
    out: dict[LlmCase, tuple[LlmTiming, float, float]] = {}
    for t in timings:
        case = LlmCase(**{f.name: getattr(t, f.name) for f in fields(LlmCase)})
        if case in out:
            _, ttft, decode = out[case]
            out[case] = (t, min(ttft, t.ttft_best_s), min(decode, t.decode_best_s))
        else:
            out[case] = (t, t.ttft_best_s, t.decode_best_s)
    return out


def _config(path: str, override: Optional[str], source: str, where: str) -> LlmConfig:
    target = override or path
    if not Path(target).is_file():
        raise ConfigError(source, f"{where}.config_path", f"{target} does not exist; give the model's config "
                          "as the workload")
    return load_llm_config(target)


def _simulate(profile: HardwareProfile, config: LlmConfig, case: LlmCase, phase: Phase,
              progress: Callable[[str], None]) -> LlmVariant:
    options = LlmOptions(phase=phase, prompt=case.prompt_tokens, context=case.context_tokens, tokens=case.decode_tokens,
                         batch=case.batch, formats=(case.variant,), kv_dtype=DType(case.kv_dtype),
                         threads=case.threads)
    return simulate_llm(profile, config, options, progress).variants[0]


@dataclass(frozen=True)
class LlmCheck:
    """The cells, and the measured cases the profile cannot simulate (with why)."""

    profile: str
    cells: list[LlmCell]
    skipped: list[str]


def crosscheck_llm(profile: HardwareProfile, timings: Sequence[tuple[str, int, LlmTiming]],
                   config_override: Optional[str] = None,
                   progress: Callable[[str], None] = lambda _: None) -> LlmCheck:
    """Simulate every measured case (``timings``: source file, index in its ``llm`` list, timing) on
    ``profile`` and pair the figures. A weight type the profile has no arithmetic for (``@int8`` on a
    profile without ``compute.peak_flops.int8``) is skipped with the reason, the others still compared."""
    where = {id(t): (source, f"llm[{i}]") for source, i, t in timings}
    cells, skipped = [], []
    for case, (t, ttft, decode) in fastest([t for _, _, t in timings]).items():
        config = _config(case.config_path, config_override, *where[id(t)])
        progress(f"crosscheck {config.name} {case.variant}: prefill of {case.prompt_tokens} tokens")
        try:
            prefill = _simulate(profile, config, case, Phase.PREFILL, progress)
        except OptionError as err:
            skipped.append(f"{config.name} {case.variant}: not simulated: {err.message}")
            continue
        progress(f"crosscheck {config.name} {case.variant}: decode after {case.context_tokens} tokens")
        step = _simulate(profile, config, case, Phase.DECODE, progress)
        longest = max(step.operators, key=lambda o: o.time_s)
        ttft_s, tokens_per_s = prefill.time_to_first_token_s, step.decode_tokens_per_s
        if ttft_s is None or tokens_per_s is None:   # a prefill step has its TTFT, a timed decode step its rate
            raise ValueError(f"{config.name} {case.variant}: the simulated steps lack a TTFT or a decode rate")
        cells.append(LlmCell(
            **asdict(case), model=config.name, measured_ttft_s=ttft,
            predicted_ttft_s=float(ttft_s),
            measured_tokens_per_s=case.batch * case.decode_tokens / decode,
            predicted_tokens_per_s=float(tokens_per_s),
            bandwidth_bound_tokens_per_s=case.batch / step.bandwidth_bound_s, decode_bound=f"{longest.operator}: "
                                                                                          f"{longest.bound}"))
    return LlmCheck(profile.name, cells, skipped)


def render(check: LlmCheck) -> str:
    """Predicted against measured per model and weight type, and the share within the targets."""
    from ..base.texttable import format_table
    from ..base.units import format_seconds

    cells, profile = check.cells, check.profile
    rows = [[c.model, c.variant, str(c.threads), format_seconds(c.measured_ttft_s), format_seconds(c.predicted_ttft_s),
             f"{c.ttft_error:+.1%}", "yes" if c.ttft_within else "no", f"{c.measured_tokens_per_s:.2f}",
             f"{c.predicted_tokens_per_s:.2f}", f"{c.decode_error:+.1%}", "yes" if c.decode_within else "no",
             f"{c.bandwidth_bound_tokens_per_s:.2f}", c.decode_bound] for c in cells]
    header = ["model", "variant", "thr", "TTFT meas.", "TTFT sim.", "error", "within", "tok/s meas.", "tok/s sim.",
              "error", "within", "tok/s bound", "decode bound (longest operator)"]
    lines = [f"{profile} vs measured on this machine: decoder LLM, time to first token (prefill) and decode "
             f"tokens per second; within: TTFT |error| <= {TTFT_TARGET:.0%}, decode |error| <= {DECODE_TARGET:.0%}",
             ""]
    if cells:
        c = cells[0]
        lines.append(f"prefill of {c.prompt_tokens} tokens; decode of {c.decode_tokens} tokens "
                     f"after {c.context_tokens}; batch {c.batch}")
        lines.append("")
    lines.append(format_table(header, rows))
    lines += ["", f"time to first token: {sum(c.ttft_within for c in cells)} of {len(cells)} within "
              f"{TTFT_TARGET:.0%}; decode tokens per second: {sum(c.decode_within for c in cells)} of {len(cells)} "
              f"within {DECODE_TARGET:.0%}"]
    return "\n".join(lines + check.skipped)


def to_json(check: LlmCheck) -> dict[str, Any]:
    """The ``--json`` part of the LLM check."""
    cells = check.cells
    return {"targets": {"ttft_abs_error": TTFT_TARGET, "decode_abs_error": DECODE_TARGET},
            "cells": [c.to_json() for c in cells], "skipped": check.skipped,
            "ttft_within": sum(c.ttft_within for c in cells), "decode_within": sum(c.decode_within for c in cells)}
