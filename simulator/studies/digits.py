"""The seed's loop on real data: train, prune with a schedule while fine-tuning, check, simulate.

    scikit-learn's bundled digits (1,797 8x8 images, no download), a stratified train / test split
      -> DigitsNet trained dense (three 3x3 convolutions, two FC layers, 57 k weights)
      -> sensitivity analysis of the dense model (each weight pruned alone; Distiller's CSV)
      -> the pruning run: at the start of each epoch the schedule's policies due then set masks
         (Distiller's rule and AGP formula, simulator.compress.schedule); one epoch of fine-tuning follows,
         the masks re-applied after every optimizer step (Distiller's ``on_minibatch_end``);
         top-1 / top-5 / loss on the test set after each epoch
      -> every recorded model's graph captured into the layer graph (simulator.model.torchgraph) and simulated on
         each hardware profile: its non-zeros stored as CSR, against the dense model
      -> the final model's weights stored in each format (simulator.compress.formats), decoded, and the
         model run again from the decoded weights: max |difference| of the outputs, top-1

Everything here is deterministic for a seed (the global torch RNG is forked and restored).
"""

from __future__ import annotations

import copy
import json
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..base.errors import ConfigError
from ..base.paths import EXAMPLES_DIR, HWPROFILES_DIR
from ..base.version import with_header
from ..compress.sensitivity import Evaluation, SensitivityRow

if TYPE_CHECKING:  # pragma: no cover
    from ..compress.compression import StorageFormat
    from ..compress.schedule import PruneStep, Schedule
    from ..hardware.profile import HardwareProfile

DEFAULT_SCHEDULE = EXAMPLES_DIR / "digits.schedule_agp.yaml"
PROFILES_DIR = HWPROFILES_DIR
ARCH = "digits_cnn"      # the checkpoint's arch
MODEL_SPEC = "simulator.studies.digits:digits_cnn"   # run --model MODEL_SPEC --checkpoint <the pruned checkpoint>
IMAGE_SHAPE = (1, 8, 8)
CLASSES = 10


# --- data and model -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DigitsData:
    """The digits split into train and test tensors: images (n, 1, 8, 8) scaled to [0, 1], labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_data(seed: int = 0, test_fraction: float = 0.25) -> DigitsData:
    """scikit-learn's bundled digits (read from the package, never downloaded), split by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]   # pixel values are 0..16
    train_x, test_x, train_y, test_y = train_test_split(images, digits.target, test_size=test_fraction,
                                                        random_state=seed, stratify=digits.target)
    as_x, as_y = (lambda a: torch.from_numpy(np.ascontiguousarray(a))), (lambda a: torch.from_numpy(a).long())
    return DigitsData(as_x(train_x), as_y(train_y), as_x(test_x), as_y(test_y))


class DigitsNet(nn.Module):
    """A small CNN for 8x8 digits: conv 16, conv 32, pool, conv 64, pool, FC 128, FC 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 2 * 2, 128)
        self.fc2 = nn.Linear(128, CLASSES)
        self.dropout = nn.Dropout(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def digits_cnn() -> tuple[DigitsNet, torch.Tensor]:
    """``run --model simulator.studies.digits:digits_cnn``: a DigitsNet (seed-0 initial weights) and an
    example input; pass ``--checkpoint`` with the trained, pruned model ``digits`` writes."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DigitsNet()
    return model, torch.zeros((1, *IMAGE_SHAPE))


def prunable(model: nn.Module) -> list[str]:
    """The conv / fc weights: what schedules prune and the simulator stores sparse."""
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() in (2, 4)]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Evaluation:
    """Top-1, top-5 (percent) and mean cross-entropy of ``model`` on ``(x, y)``, in eval mode."""
    return _evaluation(_logits(model, x), y)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train(was)
    return out


def _evaluation(logits: torch.Tensor, y: torch.Tensor) -> Evaluation:
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    count = y.numel()
    return Evaluation(100.0 * int((top5[:, 0] == y).sum()) / count,
                      100.0 * int((top5 == y[:, None]).any(dim=1).sum()) / count,
                      F.cross_entropy(logits, y).item())


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero every masked-off weight (after each optimizer step, so pruned weights stay zero)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                masks: Mapping[str, torch.Tensor], batch_size: int, generator: torch.Generator) -> float:
    """One epoch of minibatch training, masks held; returns the mean training loss."""
    model.train()
    order = torch.randperm(x.shape[0], generator=generator)
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        batch = order[start:start + batch_size]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        apply_masks(model, masks)
        total += loss.item() * batch.numel()
    return total / x.shape[0]


def prune_epoch(schedule: Schedule, model: nn.Module, masks: Mapping[str, torch.Tensor], epoch: int,
                model_name: str) -> tuple[dict[str, torch.Tensor], list[PruneStep]]:
    """The masks after the schedule's pruning policies due at ``epoch`` act on ``model``'s weights.

    This is :func:`simulator.compress.schedule.apply_schedule` on a one-epoch view of the schedule (its
    policies due at ``epoch``, each keeping its own window, so AGP targets are Distiller's),
    applied to the model's current weights with the current masks installed. Exact for every
    pruner class but one: a ``SensitivityPruner`` takes its weights' std afresh at each epoch
    here, where Distiller takes it once at the parameter's first pruning (``apply_schedule``
    binds the pruners anew at every call).
    """
    from ..compress.schedule import apply_schedule
    from ..model.parameters import ParameterTree

    due = schedule.due(epoch)
    if not due:
        return dict(masks), []
    view = replace(schedule, policies=[replace(p, epochs=(epoch,)) for p in due])
    tree = ParameterTree(OrderedDict((n, p.detach()) for n, p in model.named_parameters()))
    for name, mask in masks.items():
        module, attribute = tree.module_of(name)
        torch_prune.custom_from_mask(module, attribute, mask)
    result = apply_schedule(view, tree, model_name, epochs=epoch + 1)
    return {n: m.to(torch.float32) for n, m in result.masks.items()}, result.steps


# --- the loop -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DigitsOptions:
    """What ``python -m simulator digits`` runs."""

    schedule: Path = DEFAULT_SCHEDULE
    pretrain_epochs: int = 15           # dense training before pruning
    epochs: Optional[int] = None        # epochs of the pruning run (default: last pruning epoch + 5)
    profiles: Sequence[Path] = ()       # default: every hwprofiles/*.yaml
    sim_batch: int = 1                  # samples per simulated inference
    batch_size: int = 32                # training minibatch
    learning_rate: float = 2e-3         # Adam, dense training
    finetune_learning_rate: float = 5e-4
    sensitivity_step: float = 0.05      # Distiller's default levels 0, 0.05, ... 0.9
    seed: int = 0


@dataclass(frozen=True)
class PruningPoint:
    """The model after one epoch: its sparsity and accuracy (``epoch`` None: the dense model)."""

    epoch: Optional[int]
    pruned: bool                        # the schedule set masks at this epoch
    sparsity_pct: float                 # zeros over all conv / fc weights
    top1_pct: float
    top5_pct: float
    loss: float
    state: Mapping[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        """``before`` (the dense-trained model, before pruning) or the epoch number."""
        return "before" if self.epoch is None else str(self.epoch)


@dataclass(frozen=True)
class ProfileLatency:
    """One profile's simulated latency of every recorded point (its non-zeros stored CSR) and of
    the final model stored dense; what the profile cannot run is missing, and ``note`` says why."""

    profile: str
    path: str
    dense_s: Optional[float]            # None: the profile cannot run the model dense
    pruned_s: tuple[float, ...]         # per point, in order; empty: it cannot store the weights sparse
    note: str = ""

    @property
    def ran(self) -> bool:
        """Whether the profile simulated the model at all."""
        return self.dense_s is not None or bool(self.pruned_s)


@dataclass(frozen=True)
class FormatCheck:
    """The final model's conv / fc weights stored in one format, decoded, and the model run again."""

    format: str
    weight_bytes: int                   # every conv / fc weight matrix in this format
    max_abs_diff: float                 # largest |output - output of the stored fp32 model| on the test set
    top1_pct: float
    lossless: bool                      # whether the format is exact at its precision (difference 0 expected)


@dataclass(frozen=True)
class DigitsReport:
    """Everything the loop measured."""

    schedule: str
    train_samples: int
    test_samples: int
    points: list[PruningPoint]
    latencies: list[ProfileLatency]
    formats: list[FormatCheck]
    sensitivity: list[SensitivityRow]
    sim_batch: int
    model: Optional[nn.Module] = field(default=None, compare=False, repr=False)   # the final model
    masks: Mapping[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)  # its masks

    def to_json(self) -> dict:
        """JSON-ready dict (tensors left out)."""
        return {"schedule": self.schedule, "train_samples": self.train_samples, "test_samples": self.test_samples,
                "sim_batch": self.sim_batch,
                "points": [{**{k: v for k, v in asdict(replace(p, state={})).items() if k != "state"},
                            "label": p.label} for p in self.points],
                "latencies": [asdict(l) for l in self.latencies], "formats": [asdict(f) for f in self.formats],
                "sensitivity": [asdict(r) for r in self.sensitivity]}


def sparsity_pct(model: nn.Module) -> float:
    """Zeros over all conv / fc weights of ``model``, in percent (Distiller's total sparsity)."""
    from ..compress.sparsity import weights_sparsity_summary

    params = dict(model.named_parameters())
    return weights_sparsity_summary({n: params[n].detach() for n in prunable(model)}).total_sparsity_pct


def run_digits(options: DigitsOptions = DigitsOptions(), progress: Callable[[str], None] = lambda _: None
               ) -> DigitsReport:
    """Train, analyse, prune and fine-tune, simulate, and check the stored formats."""
    from ..compress.schedule import load_schedule

    schedule = load_schedule(options.schedule)
    profiles = _load_profiles(options.profiles)
    epochs = options.epochs if options.epochs is not None else schedule.last_epoch + 5
    data = load_data(options.seed)
    threads = torch.get_num_threads()
    # the tensors are tiny: a second thread costs more in hand-offs than it computes (an epoch
    # takes 0.6 s on one core of a busy 2-core machine, 8 s on two)
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            model, points, sensitivity, masks = _train_and_prune(schedule, epochs, data, options, progress)
    finally:
        torch.set_num_threads(threads)
    latencies = [_latencies(profile, points, options.sim_batch, progress) for profile in profiles]
    formats = check_formats(model, data, progress)
    return DigitsReport(str(options.schedule), int(data.train_y.numel()), int(data.test_y.numel()), points,
                        latencies, formats, sensitivity, options.sim_batch, model, masks)


def _train_and_prune(schedule: Schedule, epochs: int, data: DigitsData, options: DigitsOptions,
                     progress: Callable[[str], None]
                     ) -> tuple[DigitsNet, list[PruningPoint], list[SensitivityRow], dict[str, torch.Tensor]]:
    """Dense training, the sensitivity analysis, then the pruning run (the caller forks the RNG)."""
    from ..compress.sensitivity import sensitivity_analysis, sparsity_levels

    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    model = DigitsNet()
    check_schedule_names(schedule, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.learning_rate)
    for epoch in range(options.pretrain_epochs):
        loss = train_epoch(model, optimizer, data.train_x, data.train_y, {}, options.batch_size, generator)
        progress(f"dense training: epoch {epoch + 1}/{options.pretrain_epochs}, loss {loss:.3f}")
    points = [_point(model, data, None, False)]
    sensitivity = sensitivity_analysis(
        model, prunable(model), sparsity_levels(options.sensitivity_step),
        lambda m: evaluate(m, data.test_x, data.test_y), progress)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.finetune_learning_rate)
    masks: dict[str, torch.Tensor] = {}
    for epoch in range(epochs):
        masks, steps = prune_epoch(schedule, model, masks, epoch, "the digits CNN")
        apply_masks(model, masks)
        loss = train_epoch(model, optimizer, data.train_x, data.train_y, masks, options.batch_size, generator)
        points.append(_point(model, data, epoch, bool(steps)))
        progress(f"pruning run: epoch {epoch + 1}/{epochs}, sparsity {points[-1].sparsity_pct:.1f}%, "
                 f"top-1 {points[-1].top1_pct:.1f}%")
    return model, points, sensitivity, masks


def check_schedule_names(schedule: Schedule, model: nn.Module) -> None:
    """Resolve the schedule's parameter names against the model before any training (a typo in
    the schedule is an error now, not after minutes of training)."""
    from ..model.parameters import NameIndex

    index = NameIndex(n for n, _ in model.named_parameters())
    for pruner in schedule.pruners.values():
        pruner.bind(index, "the digits CNN")


def _point(model: nn.Module, data: DigitsData, epoch: Optional[int], pruned: bool) -> PruningPoint:
    result = evaluate(model, data.test_x, data.test_y)
    state = {n: t.detach().clone() for n, t in model.state_dict().items()}
    return PruningPoint(epoch, pruned, sparsity_pct(model), result.top1_pct, result.top5_pct, result.loss, state)


def _load_profiles(paths: Sequence[Path]) -> list[HardwareProfile]:
    from ..hardware.profile import load_profile

    paths = list(paths) or sorted(PROFILES_DIR.glob("*.yaml"))
    return [load_profile(p) for p in paths]


def _latencies(profile: HardwareProfile, points: Sequence[PruningPoint], batch: int,
               progress: Callable[[str], None]) -> ProfileLatency:
    """Simulate every point's non-zeros (CSR) and the final model stored dense on one profile.

    A profile that refuses a variant (the EIE engine runs FC layers only; a dense FPGA array
    does not store sparse weights) raises a ConfigError saying so: that variant is left out and
    the message kept as the note."""
    from ..compress.compression import StorageFormat
    from ..model.torchgraph import workload_from_module
    from ..model.workload import DType
    from ..pipeline import RunOptions, run

    model, example = digits_cnn()
    notes = []
    # a device that does not compute fp32 (Qiu et al.'s FPGA: 16-bit fixed point only) runs the
    # model at the first precision it has, as its own tool flow would quantise it
    computes = [d for d in DType if getattr(profile.compute.peak_flops, d.value, None) is not None]
    dtype = DType.FP32 if DType.FP32 in computes or not computes else computes[0]
    pruned: list[float] = []
    try:
        for i, point in enumerate(points):
            progress(f"simulating on {profile.name}: model {i + 1}/{len(points)}")
            model.load_state_dict(point.state)
            workload = workload_from_module(model, example, name="digits CNN", source=MODEL_SPEC, dtype=dtype)
            pruned.append(run(profile, workload, RunOptions(batch=batch, formats=(StorageFormat.CSR,)))
                          .variants[0].total_s)
    except ConfigError as err:
        pruned = []
        notes.append(f"sparse: {err.message}")
    try:
        progress(f"simulating on {profile.name}: dense")
        workload = workload_from_module(model, example, name="digits CNN", source=MODEL_SPEC, dtype=dtype)
        dense: Optional[float] = run(profile, workload, RunOptions(batch=batch, formats=(StorageFormat.DENSE,))
                                     ).variants[0].total_s
    except ConfigError as err:
        dense = None
        notes.append(f"dense: {err.message}")
    if dtype is not DType.FP32 and (dense is not None or pruned):
        notes.insert(0, f"simulated at {dtype.value}, the precision it computes")
    return ProfileLatency(profile.name, profile.path, None if dense is None else float(dense),
                          tuple(float(t) for t in pruned), "; ".join(notes))


# --- stored formats -----------------------------------------------------------------------------

def _indexed_roundtrip(matrix: np.ndarray, fmt: StorageFormat) -> tuple[np.ndarray, int]:
    """CSR / CSC as the simulator stores them (compression.encode_mask): values gathered in the
    encoding's order, then scattered back through its index and pointer arrays."""
    from ..compress.compression import StorageFormat, encode_mask

    enc = encode_mask("w", matrix != 0, fmt, 4)
    if enc.pointers is None or enc.indices is None:
        raise ValueError(f"a {fmt.value} encoding stores pointers and indices")
    major = np.repeat(np.arange(enc.pointers.size - 1), np.diff(enc.pointers))
    rows, cols = (major, enc.indices) if fmt is StorageFormat.CSR else (enc.indices, major)
    values = matrix[rows, cols]
    out = np.zeros_like(matrix)
    out[rows, cols] = values
    return out, enc.total_bytes


def _codecs() -> list[tuple[str, bool, Callable[[np.ndarray], tuple[np.ndarray, int]]]]:
    """(label, lossless, matrix -> (decoded matrix, bytes)) for every format checked."""
    from ..compress.compression import StorageFormat
    from ..compress.formats import ValueBits, encode_bitmask, encode_bsr, encode_eie, encode_nm, nm_mask

    def coded(encoder):
        def run(m: np.ndarray) -> tuple[np.ndarray, int]:
            encoded = encoder(m)
            return encoded.decode(), encoded.byte_counts().total_bytes
        return run

    return [
        ("dense fp32", True, lambda m: (m.copy(), m.size * 4)),
        ("CSR fp32 (run's pruned format)", True, lambda m: _indexed_roundtrip(m, StorageFormat.CSR)),
        ("CSC fp32", True, lambda m: _indexed_roundtrip(m, StorageFormat.CSC)),
        ("bitmask fp32", True, coded(lambda m: encode_bitmask(m, ValueBits.B32))),
        ("bitmask fp16", False, coded(lambda m: encode_bitmask(m, ValueBits.B16))),
        ("bitmask int8", False, coded(lambda m: encode_bitmask(m, ValueBits.B8))),
        ("BSR 4x4 fp32", True, coded(lambda m: encode_bsr(m, (4, 4), ValueBits.B32))),
        ("EIE 64 PEs, 4-bit codebook", False, coded(lambda m: encode_eie(m, pes=64, code_bits=4))),
        ("2:4 fp32 (AGP masks re-pruned to 2:4)", False, coded(lambda m: encode_nm(m * nm_mask(m, 2, 4), 2, 4))),
    ]


def check_formats(model: nn.Module, data: DigitsData, progress: Callable[[str], None] = lambda _: None
                  ) -> list[FormatCheck]:
    """Store every conv / fc weight of ``model`` in each format, decode it, run the model from the
    decoded weights (biases as they are) and compare its outputs with the model's own."""
    reference = _logits(model, data.test_x)
    names = prunable(model)
    params = dict(model.named_parameters())
    checks = []
    for label, lossless, codec in _codecs():
        progress(f"formats: {label}")
        trial = copy.deepcopy(model)
        trial_params = dict(trial.named_parameters())
        total = 0
        for name in names:
            weight = params[name].detach().numpy()
            decoded, size = codec(weight.reshape(weight.shape[0], -1))
            total += size
            with torch.no_grad():
                trial_params[name].copy_(torch.from_numpy(decoded.reshape(weight.shape)))
        logits = _logits(trial, data.test_x)
        diff = float((logits - reference).abs().max())
        checks.append(FormatCheck(label, total, diff, _evaluation(logits, data.test_y).top1_pct, lossless))
    return checks


# --- output -------------------------------------------------------------------------------------

def shown(path: str | Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def render_report(report: DigitsReport) -> str:
    """The text the ``digits`` command prints: accuracy vs sparsity vs latency, and the formats."""
    from ..base.units import format_bytes, format_seconds
    from ..output.report import _table

    def seconds(value: Optional[float]) -> str:
        return "-" if value is None else format_seconds(value)

    ran = [l for l in report.latencies if l.ran]
    header = ["epoch", "pruned", "sparsity", "top-1", "top-5", "loss"] + [Path(l.path).stem for l in ran]
    rows = [[p.label, "yes" if p.pruned else "", f"{p.sparsity_pct:.1f}%", f"{p.top1_pct:.1f}%",
             f"{p.top5_pct:.1f}%", f"{p.loss:.3f}"] + [seconds(l.pruned_s[i] if l.pruned_s else None) for l in ran]
            for i, p in enumerate(report.points)]
    rows.append(["stored dense", "", "", "", "", ""] + [seconds(l.dense_s) for l in ran])
    final = report.points[-1]
    lines = [f"digits CNN: {report.train_samples} training / {report.test_samples} test images; pruned by "
             f"{shown(report.schedule)}, fine-tuned between pruning steps",
             f"accuracy on the test images vs weight sparsity vs simulated latency (batch {report.sim_batch}, one "
             "cold inference; each model's non-zeros stored CSR; last row: the model stored dense):", "",
             _table(header, rows, set(range(2, len(header))))]
    speedups = [f"{Path(l.path).stem} {l.dense_s / l.pruned_s[-1]:.2f}x" for l in ran
                if l.pruned_s and l.dense_s is not None]
    if speedups:
        lines += ["", f"final model ({final.sparsity_pct:.1f}% sparse) stored CSR vs dense, speed-up: "
                  + ", ".join(speedups) + " (below 1x: slower)"]
    for l in report.latencies:
        if l.note:
            lines.append(f"{shown(l.path)}: {l.note}" if l.ran else f"{shown(l.path)}: left out: {l.note}")
    fmt_rows = [[f.format, format_bytes(f.weight_bytes), f"{f.max_abs_diff:.3g}", f"{f.top1_pct:.1f}%",
                 "yes" if f.lossless else "no"] for f in report.formats]
    lines += ["", f"the final model run from each stored format of its conv / fc weights ({report.test_samples} "
              "test images; max |difference| of its outputs from the model's own):", "",
              _table(["format", "weights", "max |diff|", "top-1", "lossless"], fmt_rows, {1, 2, 3})]
    return "\n".join(lines)


def write_outputs(report: DigitsReport, out: Path) -> list[Path]:
    """Checkpoint, JSON, sensitivity CSV and the plots, in ``out``; returns the files written."""
    from ..compress.sensitivity import write_sensitivity_csv
    from ..compress.sparsity import weights_sparsity_summary
    from ..model.checkpoint import save_checkpoint
    from ..output.plots import accuracy_sparsity_latency, density_bars, sensitivity_curves, weight_matrices

    model = report.model
    if model is None:
        raise ValueError("the report holds no model to save (write_outputs takes run_digits' report)")
    final = report.points[-1]
    written = []
    path = out / "digits_pruned.pth.tar"
    masks = {n: m.bool() for n, m in report.masks.items()}
    save_checkpoint(path, final.state, masks, [n for n, _ in model.named_parameters()], ARCH,
                    final.epoch if final.epoch is not None else 0)
    written.append(path)
    written.append(_write_json(report.to_json(), out / "digits.json"))
    written.append(write_sensitivity_csv(report.sensitivity, out / "sensitivity.csv"))
    written.append(sensitivity_curves(report.sensitivity, out / "sensitivity.png",
                                      "digits CNN: top-1 with one weight pruned alone"))
    weights = {n.removesuffix(".weight"): final.state[n].numpy() for n in prunable(model)}
    written.append(weight_matrices(weights, out / "matrices.png",
                                   f"digits CNN weights after pruning ({final.sparsity_pct:.1f}% zero)"))
    written.append(density_bars(weights_sparsity_summary({n: final.state[n] for n in prunable(model)}),
                                out / "density.png", "digits CNN after pruning"))
    ran = [l for l in report.latencies if l.ran]
    if ran:
        written.append(accuracy_sparsity_latency(
            [p.sparsity_pct for p in report.points], [p.top1_pct for p in report.points],
            {l.profile: l.pruned_s for l in ran}, {l.profile: l.dense_s for l in ran}, out / "accuracy_latency.png",
            f"digits CNN pruned by AGP, batch {report.sim_batch}"))
    return written


def _write_json(document: dict, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")    # then renamed: never a half-written file
    with open(tmp, "w") as handle:
        json.dump(with_header(document), handle, indent=1)
    os.replace(tmp, path)
    return path

