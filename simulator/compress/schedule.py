"""Distiller compression schedules (version-1 YAML): pruners, policies, and applying them.

A schedule file names *pruners* (a Distiller class and its arguments) and *policies* (which
pruner acts at which epochs). Reading follows Distiller's ``distiller/config.py`` and applying
follows its ``CompressionScheduler`` and ``PruningPolicy``:

* a policy runs at ``epochs: [...]`` or at ``range(starting_epoch, ending_epoch, frequency)``
  (so ``ending_epoch`` itself is excluded), and remembers ``(starting_epoch, ending_epoch,
  frequency)``, ``(0, 1, 1)`` for an ``epochs`` list, for its pruner;
* at the start of each epoch every policy due then, in file order, offers each parameter of
  the model, in the model's order, to its pruner; the masks it sets are computed from the
  weights as they stood at the start of the epoch, a later policy's mask for the same
  parameter replaces an earlier one, and the weights are masked before the next epoch;
* an AGP pruner's target at epoch ``t`` is Distiller's ``compute_target_sparsity``::

      span = ((ending_epoch - starting_epoch - 1) // frequency) * frequency
      target = final + (initial - final) * (1.0 - ((t - starting_epoch) / span)) ** 3

  (``span`` is the last pruning epoch's distance from the first, so the final sparsity is
  reached exactly at the last epoch the policy runs).

Nothing here trains: weights change only by masking. The masks are those Distiller computes
from the same weights at each pruning step without the fine-tuning in between. Sections and
options that only act on training (regularizers, quantizers, learning-rate schedulers,
extensions other than thinning, and training-only policy arguments) are read, checked for
well-formedness and reported by :attr:`Schedule.not_applied`; they are never silently dropped.

A thinning extension (Distiller's ``FilterRemover`` / ``ChannelRemover`` with
``thinning_func_str: remove_filters`` or ``remove_channels``) becomes a :class:`ThinningPolicy`:
at the start of its epoch, after the pruning policies declared before it have masked that
epoch's weights and before those declared after it decide, :func:`apply_schedule` hands the
weights and masks to a ``thin`` callback (``prune`` thins them through the workload graph,
:mod:`simulator.compress.thinning`) and carries on with the smaller tensors.

The pruning arithmetic itself is in :mod:`simulator.compress.pruners`; masks are applied with
``torch.nn.utils.prune.custom_from_mask`` on a :class:`~simulator.model.parameters.ParameterTree`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional

import torch
from pydantic import Field, model_validator
from torch.nn.utils import prune

from ..base.console import expect
from ..base.errors import ConfigError, OptionError
from ..base.schema import PositiveInt, Strict, validate
from ..base.yamlio import read_yaml_mapping
from ..model.parameters import NameIndex, ParameterTree
from .pruners import GroupType, Norm, RankedStructurePruning, SparsityLevelPruning, ThresholdPruning

SCHEDULE_VERSION = 1
ALL_PARAMETERS = "*"   # Distiller's key for "every other parameter" in levels / thresholds / sensitivities


class PrunerClass(str, enum.Enum):
    """The Distiller pruner classes this simulator applies."""

    AGP = "AutomatedGradualPruner"
    LEVEL = "SparsityLevelParameterPruner"
    SENSITIVITY = "SensitivityPruner"
    MAGNITUDE = "MagnitudeParameterPruner"
    L1_RANKED = "L1RankedStructureParameterPruner"
    L2_RANKED = "L2RankedStructureParameterPruner"
    L1_RANKED_AGP = "L1RankedStructureParameterPruner_AGP"
    L2_RANKED_AGP = "L2RankedStructureParameterPruner_AGP"

    @property
    def norm(self) -> Norm:
        """The ranking norm of a ranked-structure class."""
        return Norm.L2 if self.value.startswith("L2") else Norm.L1

    @property
    def is_agp(self) -> bool:
        """Whether the class follows the AGP schedule (its target depends on the policy's window)."""
        return self in (PrunerClass.AGP, PrunerClass.L1_RANKED_AGP, PrunerClass.L2_RANKED_AGP)


# --- the file's schema ----------------------------------------------------------------------

Sparsity = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]
Epoch = Annotated[int, Field(strict=True, ge=0)]
#: the most epochs one policy may run at (Distiller schedules use a few hundred)
MAX_POLICY_EPOCHS = 100_000
GroupName = Literal["Filters", "3D", "Channels", "Rows"]


class _PrunerSpec(Strict):
    class_: str = Field(alias="class")


class _AgpFields(_PrunerSpec):
    initial_sparsity: Sparsity
    final_sparsity: Sparsity

    @model_validator(mode="after")
    def _grows(self) -> _AgpFields:
        if not self.final_sparsity > self.initial_sparsity:
            raise ValueError(f"final_sparsity ({self.final_sparsity}) must be above initial_sparsity "
                             f"({self.initial_sparsity}), as Distiller asserts")
        return self


class _RankedFields(Strict):
    group_type: GroupName
    weights: list[str] = Field(min_length=1)
    group_dependency: Optional[Literal["Leader"]] = None
    noise: Optional[float] = None

    @model_validator(mode="after")
    def _no_noise(self) -> _RankedFields:
        if self.noise:
            raise ValueError(f"noise {self.noise} is not supported: random ranking noise would make the masks "
                             "differ from run to run (remove it or set 0)")
        return self


class AgpSpec(_AgpFields):
    """``AutomatedGradualPruner``: element-wise, AGP schedule."""

    weights: list[str] = Field(min_length=1)


class LevelSpec(_PrunerSpec):
    """``SparsityLevelParameterPruner``: element-wise, one fixed sparsity per parameter."""

    levels: dict[str, Sparsity] = Field(min_length=1)


class SensitivitySpec(_PrunerSpec):
    """``SensitivityPruner``: element-wise, threshold = sensitivity x the weights' std."""

    sensitivities: dict[str, NonNegative] = Field(min_length=1)


class MagnitudeSpec(_PrunerSpec):
    """``MagnitudeParameterPruner``: element-wise, fixed thresholds (``*`` required)."""

    thresholds: dict[str, NonNegative] = Field(min_length=1)

    @model_validator(mode="after")
    def _default(self) -> MagnitudeSpec:
        if ALL_PARAMETERS not in self.thresholds:
            raise ValueError("thresholds needs a default '*' entry (Distiller requires one)")
        return self


class RankedSpec(_PrunerSpec, _RankedFields):
    """``L1/L2RankedStructureParameterPruner``: whole structures, one fixed sparsity."""

    desired_sparsity: Sparsity


class RankedAgpSpec(_AgpFields, _RankedFields):
    """``L1/L2RankedStructureParameterPruner_AGP``: whole structures, AGP schedule."""


_SPECS: dict[PrunerClass, type[_PrunerSpec]] = {
    PrunerClass.AGP: AgpSpec,
    PrunerClass.LEVEL: LevelSpec,
    PrunerClass.SENSITIVITY: SensitivitySpec,
    PrunerClass.MAGNITUDE: MagnitudeSpec,
    PrunerClass.L1_RANKED: RankedSpec,
    PrunerClass.L2_RANKED: RankedSpec,
    PrunerClass.L1_RANKED_AGP: RankedAgpSpec,
    PrunerClass.L2_RANKED_AGP: RankedAgpSpec,
}


class ThinningFunction(str, enum.Enum):
    """Distiller's thinning functions (``thinning_func_str``): what a thinning extension removes."""

    FILTERS = "remove_filters"     # all-zero filters, and the input channels that read them
    CHANNELS = "remove_channels"   # all-zero input channels, and the filters that produce them


THINNING_CLASSES = ("FilterRemover", "ChannelRemover")


class ThinningSpec(Strict):
    """A thinning extension (``extensions: {net_thinner: {class: FilterRemover, ...}}``)."""

    class_: Literal["FilterRemover", "ChannelRemover"] = Field(alias="class")
    thinning_func_str: ThinningFunction
    arch: Optional[str] = None
    dataset: Optional[str] = None


class PrunerArgs(Strict):
    """A pruning policy's ``args`` (Distiller's ``PruningPolicy``); all but ``levels`` act on training."""

    levels: Optional[dict[str, Sparsity]] = None
    keep_mask: Optional[bool] = None
    mini_batch_pruning_frequency: Optional[int] = None
    mask_on_forward_only: Optional[bool] = None
    mask_gradients: Optional[bool] = None
    use_double_copies: Optional[bool] = None
    discard_masks_at_minibatch_end: Optional[bool] = None
    skip_first_minibatch: Optional[bool] = None
    fold_batchnorm: Optional[bool] = None


class PrunerRef(Strict):
    """``pruner: {instance_name: ..., args: ...}`` in a policy."""

    instance_name: str
    args: Optional[PrunerArgs] = None


class InstanceRef(Strict):
    """A policy's reference to a regularizer, quantizer, LR scheduler or extension."""

    instance_name: str
    args: Optional[dict[str, Any]] = None


class PolicyKind(str, enum.Enum):
    """What a policy schedules (the key it is written under)."""

    PRUNER = "pruner"
    REGULARIZER = "regularizer"
    QUANTIZER = "quantizer"
    LR_SCHEDULER = "lr_scheduler"
    EXTENSION = "extension"

    @property
    def section(self) -> str:
        """The top-level section defining its instances."""
        return {"pruner": "pruners", "regularizer": "regularizers", "quantizer": "quantizers",
                "lr_scheduler": "lr_schedulers", "extension": "extensions"}[self.value]


class PolicySpec(Strict):
    """One entry of ``policies``."""

    pruner: Optional[PrunerRef] = None
    regularizer: Optional[InstanceRef] = None
    quantizer: Optional[InstanceRef] = None
    lr_scheduler: Optional[InstanceRef] = None
    extension: Optional[InstanceRef] = None
    epochs: Optional[list[Epoch]] = None
    starting_epoch: Optional[Epoch] = None
    ending_epoch: Optional[Epoch] = None
    frequency: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _one_kind_and_when(self) -> PolicySpec:
        kinds = [k.value for k in PolicyKind if getattr(self, k.value) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a policy names exactly one of {', '.join(k.value for k in PolicyKind)}; "
                             f"got {', '.join(kinds) or 'none'}")
        window = [self.starting_epoch, self.ending_epoch, self.frequency]
        if self.epochs is not None:
            if any(v is not None for v in window):
                raise ValueError("give either epochs or starting_epoch / ending_epoch / frequency, not both")
        elif self.starting_epoch is None or self.ending_epoch is None or self.frequency is None:
            missing = [n for n, v in zip(("starting_epoch", "ending_epoch", "frequency"), window) if v is None]
            raise ValueError(f"missing {', '.join(missing)} (or give an epochs list)")
        else:
            if self.ending_epoch <= self.starting_epoch:
                raise ValueError(f"ending_epoch {self.ending_epoch} must come after starting_epoch "
                                 f"{self.starting_epoch} (the window is range(starting_epoch, ending_epoch))")
            if (self.ending_epoch - self.starting_epoch) // self.frequency > MAX_POLICY_EPOCHS:
                raise ValueError(f"starting_epoch {self.starting_epoch} to ending_epoch {self.ending_epoch} every "
                                 f"{self.frequency} is more than {MAX_POLICY_EPOCHS:,} epochs")
        if self.epochs is not None and len(self.epochs) > MAX_POLICY_EPOCHS:
            raise ValueError(f"more than {MAX_POLICY_EPOCHS:,} epochs")
        return self

    @property
    def kind(self) -> PolicyKind:
        """What the policy schedules."""
        return next(k for k in PolicyKind if getattr(self, k.value) is not None)


class ScheduleSpec(Strict):
    """A whole schedule file."""

    version: Optional[Literal[1]] = None
    pruners: dict[str, dict[str, Any]] = Field(default_factory=dict)
    regularizers: dict[str, Any] = Field(default_factory=dict)
    quantizers: dict[str, Any] = Field(default_factory=dict)
    lr_schedulers: dict[str, Any] = Field(default_factory=dict)
    extensions: dict[str, Any] = Field(default_factory=dict)
    policies: list[PolicySpec] = Field(min_length=1)


# --- pruners as they act ----------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """What a policy remembers for its pruner (Distiller's ``sched_metadata``)."""

    starting_epoch: int
    ending_epoch: int
    frequency: int

    @property
    def span(self) -> int:
        """Distiller's AGP span: ``((ending - starting - 1) // frequency) * frequency``."""
        return ((self.ending_epoch - self.starting_epoch - 1) // self.frequency) * self.frequency


def agp_target_sparsity(initial: float, final: float, window: Window, epoch: int) -> float:
    """Distiller's ``AutomatedGradualPrunerBase.compute_target_sparsity``, operation for operation."""
    span = window.span
    if span <= 0:
        raise ValueError(f"AGP needs a span above 0, got {span}")
    return final + (initial - final) * (1.0 - ((epoch - window.starting_epoch) / span)) ** 3


@dataclass
class Decision:
    """What a pruner decided for one parameter at one epoch."""

    method: prune.BasePruningMethod
    target_sparsity: Optional[float]   # None for threshold pruners
    reference: Optional[str] = None    # the leader whose structures are imposed, if any


Table = tuple[dict[str, float], Optional[float]]   # resolved name -> value, and the '*' value


class Pruner:
    """One pruner instance of a schedule, with its parameter names resolved to a model's."""

    def __init__(self, name: str, kind: PrunerClass, spec: _PrunerSpec, source: str) -> None:
        self.name = name
        self.kind = kind
        self.spec = spec
        self.source = source
        self.weights: list[str] = []                 # resolved names (weights-list pruners)
        self.table: Table = ({}, None)               # levels / thresholds / sensitivities, resolved
        self._stddev: dict[str, float] = {}          # SensitivityPruner's per-parameter std, fixed once

    def resolve_name(self, index: NameIndex, name: str, where: str, model: str) -> str:
        """The model's name for ``name``, or a ConfigError at ``where``."""
        actual = index.resolve(name)
        if actual is None:
            raise ConfigError(self.source, where, f"{name!r} {index.why_not(name)} of {model} "
                              f"(it has: {index.sample()})")
        return actual

    def resolve_table(self, index: NameIndex, table: dict[str, float], where: str, model: str) -> Table:
        """A name -> value table with its names resolved; ``*`` is kept apart."""
        resolved = {self.resolve_name(index, key, f"{where}[{key!r}]", model): value
                    for key, value in table.items() if key != ALL_PARAMETERS}
        return resolved, table.get(ALL_PARAMETERS)

    def bind(self, index: NameIndex, model: str) -> None:
        """Resolve every parameter name the pruner mentions against ``index``."""
        spec, where = self.spec, f"pruners.{self.name}"
        if isinstance(spec, (AgpSpec, RankedSpec, RankedAgpSpec)):
            self.weights = [self.resolve_name(index, w, f"{where}.weights[{i}]", model)
                            for i, w in enumerate(spec.weights)]
        elif isinstance(spec, LevelSpec):
            self.table = self.resolve_table(index, spec.levels, f"{where}.levels", model)
        elif isinstance(spec, SensitivitySpec):
            self.table = self.resolve_table(index, spec.sensitivities, f"{where}.sensitivities", model)
        elif isinstance(spec, MagnitudeSpec):
            self.table = self.resolve_table(index, spec.thresholds, f"{where}.thresholds", model)
        self._stddev = {}

    def applies_to(self, name: str) -> bool:
        """Whether Distiller's pruner would act on parameter ``name``."""
        if self.weights:
            return name in self.weights
        by_name, default = self.table
        return name in by_name or default is not None

    def _value(self, name: str) -> Optional[float]:
        by_name, default = self.table
        return by_name.get(name, default)

    def decide(self, name: str, weights: Mapping[str, torch.Tensor], window: Window, epoch: int
               ) -> Optional[Decision]:
        """The pruning method for ``name`` at ``epoch``, or None when it prunes nothing;
        ``weights`` are the model's parameters as they stand (masked)."""
        kind, spec = self.kind, self.spec   # _SPECS gives each kind its spec class
        if isinstance(spec, AgpSpec):
            target = agp_target_sparsity(spec.initial_sparsity, spec.final_sparsity, window, epoch)
            return Decision(SparsityLevelPruning(target), target)
        if isinstance(spec, LevelSpec):
            level = self._value(name) or 0.0
            return None if level == 0 else Decision(SparsityLevelPruning(level), level)
        if isinstance(spec, SensitivitySpec):
            sensitivity = self._value(name)
            if sensitivity is None:
                return None
            if name not in self._stddev:   # Distiller stores param.stddev on first use and keeps it
                self._stddev[name] = torch.std(weights[name].float()).item()
            return Decision(ThresholdPruning(self._stddev[name] * sensitivity), None)
        if isinstance(spec, MagnitudeSpec):
            threshold = self._value(name)
            if threshold is None:   # MagnitudeSpec requires the '*' default
                raise AssertionError(f"pruners.{self.name}: no threshold for {name}")
            return Decision(ThresholdPruning(threshold), None)
        # ranked structures, fixed or AGP
        if isinstance(spec, RankedSpec):
            target = spec.desired_sparsity
        elif isinstance(spec, RankedAgpSpec):
            target = agp_target_sparsity(spec.initial_sparsity, spec.final_sparsity, window, epoch)
        else:
            raise TypeError(f"pruners.{self.name}: no pruning for a {type(spec).__name__}")
        if target == 0:
            return None
        method = RankedStructurePruning(target, GroupType.parse(spec.group_type), kind.norm)
        leader = None
        if spec.group_dependency == "Leader":
            # every weight takes the structures the first one (the leader) keeps
            leader = self.weights[0]
            try:
                method.keep_groups = method.ranked_keep(weights[leader])
            except ValueError as err:
                raise ConfigError(self.source, f"pruners.{self.name}.weights[0]", f"{leader}: {err}") from None
            if method.keep_groups is None:
                return None
        return Decision(method, target, leader)


# --- the schedule -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """A pruning policy: which pruner, at which epochs, with which window."""

    index: int                      # position in the file's policies list
    pruner: str
    epochs: tuple[int, ...]
    window: Window
    levels: Optional[dict[str, float]] = None


@dataclass(frozen=True)
class ThinningPolicy:
    """A thinning extension's policy: what it removes, at which epochs."""

    index: int                      # position in the file's policies list
    extension: str                  # the instance name (net_thinner)
    function: ThinningFunction
    epochs: tuple[int, ...]


@dataclass
class Schedule:
    """A loaded schedule: its pruners, its pruning and thinning policies and what it will not apply."""

    path: str
    pruners: dict[str, Pruner]
    policies: list[Policy]
    not_applied: list[str] = field(default_factory=list)
    thinnings: list[ThinningPolicy] = field(default_factory=list)

    @property
    def last_epoch(self) -> int:
        """The last epoch at which any pruning policy acts (-1 if none does)."""
        return max((e for p in self.policies for e in p.epochs), default=-1)

    def due(self, epoch: int) -> list[Policy]:
        """Pruning policies acting at ``epoch``, in file order."""
        return [p for p in self.policies if epoch in p.epochs]

    def warning(self, thinning_applied: bool = False) -> Optional[str]:
        """One line listing what is not applied, or None; thinning extensions are listed unless
        ``thinning_applied`` (``prune`` applies them, other users of a schedule do not)."""
        unused = list(self.not_applied)
        if self.thinnings and not thinning_applied:
            unused.append(f"extensions ({', '.join(dict.fromkeys(t.extension for t in self.thinnings))})")
        if not unused:
            return None
        return f"{self.path}: not applied (this simulator prunes; it does not train): " + "; ".join(unused)


def load_schedule(path: str | Path) -> Schedule:
    """Read and check a Distiller schedule; errors are :class:`ConfigError` lines."""
    source = str(path)
    data = read_yaml_mapping(path)
    version = data.get("version")
    if version is not None and version != SCHEDULE_VERSION:
        raise ConfigError(source, "version", f"{version!r} is not supported (Distiller schedules are version 1)")
    spec = validate(ScheduleSpec, data, source)
    pruners = {name: _pruner(name, body, source) for name, body in spec.pruners.items()}
    policies: list[Policy] = []
    thinnings: list[ThinningPolicy] = []
    unused: dict[str, list[str]] = {}
    for i, ps in enumerate(spec.policies):
        where = f"policies[{i}]"
        kind = ps.kind
        ref = getattr(ps, kind.value)
        defined = getattr(spec, kind.section)
        if ref.instance_name not in defined:
            raise ConfigError(source, f"{where}.{kind.value}.instance_name",
                              f"{ref.instance_name!r} is not defined under {kind.section} "
                              f"(defined: {', '.join(defined) or 'none'})")
        if ps.epochs is not None:
            epochs, window = tuple(ps.epochs), Window(0, 1, 1)   # Distiller's add_policy defaults
        elif ps.starting_epoch is None or ps.ending_epoch is None or ps.frequency is None:
            raise AssertionError(f"{where}: PolicySpec gives either epochs or the whole window")
        else:
            epochs = tuple(range(ps.starting_epoch, ps.ending_epoch, ps.frequency))
            window = Window(ps.starting_epoch, ps.ending_epoch, ps.frequency)
        if kind is PolicyKind.EXTENSION and _is_thinning(spec.extensions[ref.instance_name]):
            body = validate(ThinningSpec, spec.extensions[ref.instance_name], source,
                            prefix=("extensions", ref.instance_name))
            thinnings.append(ThinningPolicy(i, ref.instance_name, body.thinning_func_str, epochs))
            continue
        if kind is not PolicyKind.PRUNER:
            unused.setdefault(kind.section, []).append(ref.instance_name)
            continue
        pruner = pruners[ref.instance_name]
        if pruner.kind.is_agp and epochs and window.span <= 0:
            why = " (an epochs list gives Distiller's defaults 0, 1, 1)" if ps.epochs is not None else ""
            raise ConfigError(source, where, f"the AGP pruner {ref.instance_name!r} needs a span above 0: "
                              f"((ending_epoch - starting_epoch - 1) // frequency) * frequency = {window.span}{why}")
        args = ref.args
        if args is not None:
            training = [k for k, v in args.model_dump(exclude_none=True).items() if k != "levels"]
            if training:
                unused.setdefault("policy args", []).extend(f"{where}.pruner.args.{k}" for k in training)
            if args.levels is not None and pruner.kind is not PrunerClass.LEVEL:
                raise ConfigError(source, f"{where}.pruner.args.levels",
                                  f"only a {PrunerClass.LEVEL.value} takes levels, {ref.instance_name!r} is a "
                                  f"{pruner.kind.value}")
        policies.append(Policy(i, ref.instance_name, epochs, window, args.levels if args else None))
    used_pruners = {p.pruner for p in policies}
    unused_pruners = [f"{name} (no policy uses it)" for name in pruners if name not in used_pruners]
    if unused_pruners:
        unused["pruners"] = unused_pruners
    thinners = {t.extension for t in thinnings}
    for section in ("regularizers", "quantizers", "lr_schedulers", "extensions"):
        for name in getattr(spec, section):
            if name not in unused.get(section, []) and name not in thinners:
                unused.setdefault(section, []).append(f"{name} (no policy uses it)")
    not_applied = [f"{section} ({', '.join(names)})" for section, names in unused.items()]
    return Schedule(source, pruners, policies, not_applied, thinnings)


def _is_thinning(body: Any) -> bool:
    """Whether an extension's body names one of Distiller's thinning classes."""
    return isinstance(body, dict) and body.get("class") in THINNING_CLASSES


def _pruner(name: str, body: dict[str, Any], source: str) -> Pruner:
    where = ("pruners", name)
    if not isinstance(body, dict):
        raise ConfigError(source, f"pruners.{name}", f"expected a mapping with a class, got {type(body).__name__}")
    cls = body.get("class")
    if cls is None:
        raise ConfigError(source, f"pruners.{name}.class", "missing required field")
    try:
        kind = PrunerClass(cls)
    except ValueError:
        raise ConfigError(source, f"pruners.{name}.class",
                          f"{cls!r} is not a pruner this simulator applies "
                          f"(known: {', '.join(k.value for k in PrunerClass)})") from None
    return Pruner(name, kind, validate(_SPECS[kind], body, source, prefix=where), source)


# --- applying a schedule ----------------------------------------------------------------------

@dataclass(frozen=True)
class PruneStep:
    """One mask set on one parameter at one epoch."""

    epoch: int
    pruner: str
    parameter: str
    target_sparsity: Optional[float]   # None for threshold pruners
    sparsity: float                    # zeros / elements after the step
    zeros: int


@dataclass(frozen=True)
class PruneResult:
    """What applying a schedule did: the steps, the final masks and the pruned tensors."""

    schedule: str
    model: str
    epochs: int                         # epochs run (0 .. epochs - 1)
    steps: list[PruneStep]
    masks: dict[str, torch.Tensor]      # parameter -> bool mask, for every pruned parameter
    tensors: dict[str, torch.Tensor]    # every parameter, masked

    def final_sparsity(self, name: str) -> float:
        """Zeros over elements of a parameter after the last epoch."""
        t = self.tensors[name]
        return 1.0 - int(torch.count_nonzero(t)) / t.numel()


Thinner = Callable[[ThinningFunction, int, dict[str, torch.Tensor], dict[str, torch.Tensor]],
                   tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]


def apply_schedule(schedule: Schedule, tree: ParameterTree, model: str, epochs: Optional[int] = None,
                   progress: Callable[[str], None] = lambda _: None,
                   thin: Optional[Thinner] = None) -> PruneResult:
    """Run the schedule's pruning policies over epochs ``0 .. epochs - 1`` (default: through its
    last pruning epoch) on ``tree``; ``model`` names the model in errors.

    Each epoch's masks come from the pruners' ``compute_mask`` on the weights as they stood at
    the start of the epoch; the final masks are installed on ``tree`` with
    ``torch.nn.utils.prune.custom_from_mask`` (so ``tree`` ends pruned the torch way:
    ``weight_orig``, ``weight_mask``, ``weight``). Speed trick: between epochs the masks and
    masked weights are kept here rather than re-installed on the module at every step, which
    for AlexNet's 60 M weights would copy every pruned tensor three times per step.

    With ``thin``, a due thinning policy calls ``thin(function, epoch, weights, masks)`` (after the
    masks of the pruning policies declared before it) and goes on with the tensors it returns;
    the result's tensors are then the smaller ones (``tree`` keeps the old shapes). Without it,
    thinning policies are not applied (:meth:`Schedule.warning` says so).
    """
    index = NameIndex(tree.names)
    for pruner in schedule.pruners.values():
        pruner.bind(index, model)
    # a policy's args.levels replace its pruner's levels when it runs, and stay (as in Distiller)
    policy_tables = {policy.index: schedule.pruners[policy.pruner].resolve_table(
                         index, policy.levels, f"policies[{policy.index}].pruner.args.levels", model)
                     for policy in schedule.policies if policy.levels is not None}
    weights = {name: tree.current(name).clone() for name in tree.names}
    masks = {name: m for name in tree.names if (m := tree.mask(name)) is not None}
    last = schedule.last_epoch if epochs is None else epochs - 1
    if epochs is None and thin is not None:
        last = max([last] + [e for t in schedule.thinnings for e in t.epochs])
    if last + 1 > MAX_POLICY_EPOCHS:
        raise OptionError("epochs", f"{last + 1:,} epochs is more than {MAX_POLICY_EPOCHS:,}")
    expect(progress, sum(len(schedule.due(epoch)) for epoch in range(last + 1)))
    steps: list[PruneStep] = []
    thinned = False
    for epoch in range(last + 1):
        decided: dict[str, tuple[torch.Tensor, str, Optional[float]]] = {}
        thinnings = [t for t in schedule.thinnings if epoch in t.epochs] if thin is not None else []
        due: list[Policy | ThinningPolicy] = [*schedule.due(epoch), *thinnings]
        for policy in sorted(due, key=lambda p: p.index):
            if isinstance(policy, ThinningPolicy):
                if thin is None:   # thinnings is empty without it
                    raise AssertionError(f"epoch {epoch}: a thinning policy without a thin function")
                steps += _commit(decided, masks, weights, epoch)
                decided = {}
                progress(f"epoch {epoch}/{last}: {policy.extension}")
                weights, masks = thin(policy.function, epoch, weights, masks)
                thinned = True
                continue
            pruner = schedule.pruners[policy.pruner]
            if policy.index in policy_tables:
                pruner.table = policy_tables[policy.index]
            progress(f"epoch {epoch}/{last}: {pruner.name}")
            for name in tree.names:
                if not pruner.applies_to(name):
                    continue
                decision = pruner.decide(name, weights, policy.window, epoch)
                if decision is None:
                    continue
                current = weights[name]
                default = masks.get(name)
                if default is None:
                    default = torch.ones_like(current, dtype=torch.bool)
                try:
                    new = decision.method.compute_mask(current, default).to(torch.bool)
                except ValueError as err:
                    raise ConfigError(schedule.path, f"pruners.{pruner.name}", f"{name}: {err}") from None
                decided[name] = (new, pruner.name, decision.target_sparsity)
        steps += _commit(decided, masks, weights, epoch)
    if thinned:     # the tensors changed shape: a tree of the thinned (masked) weights
        tree = ParameterTree(weights)
    for name, mask in masks.items():
        if (installed := tree.mask(name)) is None or not torch.equal(installed, mask):
            module, attribute = tree.module_of(name)
            prune.custom_from_mask(module, attribute, mask)
    return PruneResult(schedule.path, model, last + 1, steps, masks, dict(tree.tensors()))


def _commit(decided: Mapping[str, tuple[torch.Tensor, str, Optional[float]]], masks: dict[str, torch.Tensor],
            weights: dict[str, torch.Tensor], epoch: int) -> list[PruneStep]:
    """Install an epoch's decided masks (in place) and return their steps."""
    steps = []
    for name, (mask, pruner_name, target) in decided.items():
        masks[name] = mask
        weights[name].masked_fill_(~mask, 0)
        zeros = mask.numel() - int(torch.count_nonzero(mask))
        steps.append(PruneStep(epoch, pruner_name, name, target, zeros / mask.numel(), zeros))
    return steps
