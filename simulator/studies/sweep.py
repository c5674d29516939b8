"""Sweeps: what-if studies over a grid of profile, run and compression fields.

    plan_sweep(profile, ["memory.caches.L2.size=64KiB..8MiB:x2"], ...)  -> SweepPlan
        every point's profile is the profile file's YAML mapping with the point's values
        written in, validated by the same rules as a profile file, before anything runs
    run_sweep(plan, store, backend)
        evaluates points (a local process pool, in-process, or a Dask cluster), appending
        each finished point's rows to the store (simulator.studies.sweepstore: the results file);
        points already in the store are skipped

One row per point, variant and layer (plus a ``total`` row per variant), with the varied
values as columns in base units. A point that fails is one row with its error.

A sweep that varies only the size of the last cache level is evaluated by
:class:`simulator.studies.cachesweep.CacheSizeSweep` (one pass of the levels above, one LRU stack
pass per point); every other sweep runs :func:`simulator.pipeline.run` per point.
"""

from __future__ import annotations

import copy
import difflib
import enum
import functools
import hashlib
import itertools
import math
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from ..base import units
from ..base.errors import ConfigError, OptionError, SimulatorError, quote
from ..base.workers import completed, init_worker, stop_pool, worker_initargs
from ..base.yamlio import load_yaml_text, read_yaml_mapping
from ..compress.compression import StorageFormat
from ..compress.variants import as_variant
from ..engine.results import RunResult
from ..hardware.fieldpaths import assign, leaf_paths, navigate
from ..hardware.profile import HardwareProfile, profile_from_mapping
from ..model.workload import Workload, load_workload
from ..pipeline import RunOptions, VariantLike, check_formats, run

if TYPE_CHECKING:  # pragma: no cover
    from .sweepstore import ResultStore

CLI = "command line"
MAX_POINTS = 100_000   # a typo in a range step should not plan a billion points


class AxisKind(str, enum.Enum):
    """Where a swept field lives."""

    PROFILE = "profile"   # a hardware-profile field, written into the profile's YAML mapping
    RUN = "run"           # a run / compression option


#: Run and compression fields a sweep can vary, with the checks of their values.
RUN_FIELDS = ("density", "batch")


@dataclass(frozen=True)
class SweepAxis:
    """One ``set`` option, ``FIELD=VALUES``: the field, its values as written into the mapping, its column."""

    field: str
    kind: AxisKind
    values: tuple[Any, ...]     # YAML-ready: numbers, or strings with units ("131072 B")
    column: str                 # result column, base unit in the name: memory.caches.L2.size_bytes
    text: str                   # the setting as given (FIELD=VALUES), for error messages

    def describe(self, value: Any) -> str:
        """``memory.caches.L2.size=128.0 KiB``: a value as written into the mapping, readable."""
        return f"{self.field}={_readable(value)}"

    def readable(self, value: Any) -> str:
        """A value of this axis's column (base units) for people: ``128.0 KiB``, ``10 GB/s``."""
        if self.column.endswith("_bytes"):
            return units.format_bytes(value)
        if self.column.endswith("_bytes_per_s"):
            return f"{value / 1e9:.4g} GB/s"
        if self.column.endswith("_flops_per_s"):
            return f"{value / 1e9:.4g} GFLOP/s"
        if self.column.endswith("_hz"):
            return f"{value / 1e6:.4g} MHz"
        if self.column.endswith("_s"):
            return units.format_seconds(value)
        return f"{value:g}" if isinstance(value, float) else str(value)


def settings_key(settings: dict[str, Any], axes: Sequence[SweepAxis]) -> str:
    """Identity of a point in a results file: its settings as written there."""
    return _key(settings[a.column] for a in axes)


def _key(values: Iterable[Any]) -> str:
    return "|".join(format_cell(value) for value in values)


@dataclass(frozen=True)
class SweepPoint:
    """One validated point of the grid."""

    index: int
    settings: tuple[tuple[str, Any], ...]   # (column, value in base units) per axis
    profile: HardwareProfile
    options: RunOptions
    label: str                              # "memory.caches.L2.size=128 KiB, density=0.1"

    @property
    def key(self) -> str:
        """Identity of the point in a results file: its settings, as written there."""
        return _key(value for _, value in self.settings)


@dataclass(frozen=True)
class SweepPlan:
    """A validated grid: everything needed to run it and to recognise its results file."""

    profile_path: str
    workload_path: str
    axes: tuple[SweepAxis, ...]
    points: tuple[SweepPoint, ...]
    formats: tuple[VariantLike, ...]
    levels: tuple[str, ...]          # cache level names (hit-rate columns)
    cache_level: Optional[int]       # the swept level, when the single-pass cache path applies
    fingerprint: dict[str, Any]      # what a resumed results file must have been made from

    @property
    def columns(self) -> list[str]:
        """Result columns in file order."""
        return (["point"] + [a.column for a in self.axes] + list(_RESULT_COLUMNS)
                + [f"{level}_hit_rate" for level in self.levels] + ["bound", "error"])

    def key_of(self, row: SweepRow) -> str:
        """The key of the point a result row belongs to (compare with ``SweepPoint.key``)."""
        return settings_key(row.settings, self.axes)


_RESULT_COLUMNS = ("variant", "format", "layer", "kind", "kernel", "time_s", "flops", "dram_bytes", "weight_bytes")
#: Result columns that hold integers / text (every other column holds numbers).
INT_COLUMNS = frozenset({"point", "dram_bytes", "weight_bytes"})
TEXT_COLUMNS = frozenset({"variant", "format", "layer", "kind", "kernel", "bound", "error"})


@dataclass(frozen=True)
class SweepRow:
    """One result row: a layer (or ``total``) of one variant at one point, or a failed point."""

    point: int
    settings: dict[str, float]
    variant: str = ""
    format: str = ""
    layer: str = ""
    kind: str = ""
    kernel: str = ""
    time_s: Optional[float] = None
    flops: Optional[float] = None
    dram_bytes: Optional[int] = None
    weight_bytes: Optional[int] = None
    hit_rate: dict[str, float] = field(default_factory=dict)
    bound: str = ""
    error: str = ""

    def record(self, levels: Sequence[str]) -> dict[str, Any]:
        """Flat mapping of column -> value (None for an empty cell)."""
        out: dict[str, Any] = {"point": self.point, **self.settings}
        for name in _RESULT_COLUMNS:
            out[name] = getattr(self, name)
        for level in levels:
            out[f"{level}_hit_rate"] = self.hit_rate.get(level)
        out["bound"], out["error"] = self.bound, self.error
        return out

    @staticmethod
    def from_record(record: dict[str, Any], axes: Sequence[str], levels: Sequence[str]) -> SweepRow:
        """Inverse of :meth:`record` (values already typed)."""
        rates = {level: record[f"{level}_hit_rate"] for level in levels
                 if record.get(f"{level}_hit_rate") is not None}
        results: dict[str, Any] = {name: record.get(name) if name not in TEXT_COLUMNS else (record.get(name) or "")
                                   for name in _RESULT_COLUMNS}
        return SweepRow(point=record["point"], settings={a: record[a] for a in axes}, **results,
                        hit_rate=rates, bound=record.get("bound") or "", error=record.get("error") or "")


@dataclass(frozen=True)
class PointResult:
    """What evaluating one point gives back: its rows (or its error) and how long it took."""

    index: int
    key: str
    rows: tuple[SweepRow, ...]
    error: str
    seconds: float


# --- values -----------------------------------------------------------------------------------

_RANGE = re.compile(r"^(?P<start>[^.:][^:]*?)\.\.(?P<stop>[^:]+):(?P<op>[x*+])(?P<step>.+)$")


def _number_or_quantity(text: str) -> tuple[float, Optional[units.Quantity]]:
    """``'0.04'`` -> (0.04, None); ``'64KiB'`` -> (65536.0, Quantity.BYTES)."""
    try:
        return float(text), None
    except ValueError:
        pass
    for quantity in units.Quantity:
        try:
            return units.parse(text, quantity), quantity
        except units.UnitError:
            continue
    raise units.UnitError(f"{text.strip()!r} is neither a number nor a quantity such as '64 KiB' or '10 GB/s'")


def _is_integer_text(text: str) -> bool:
    return re.fullmatch(r"\s*[+-]?\d+\s*", text) is not None


def parse_values(text: str) -> list[Any]:
    """The values of ``--set FIELD=VALUES``.

    ``a,b,c`` (each a number or a quantity with its unit, kept as written), ``start..stop:xF``
    (geometric: start, start*F, ... up to stop) or ``start..stop:+S`` (arithmetic). Range
    values come back in base units, written with the base unit (``'131072 B'``) so the
    profile's own parser reads them. Raises :class:`units.UnitError` with a readable message.
    """
    text = text.strip()
    match = _RANGE.match(text)
    if match is None:
        if ".." in text:
            raise units.UnitError(f"{text!r}: a range is start..stop:xFACTOR or start..stop:+STEP")
        items = [item.strip() for item in text.split(",")]
        if not text or any(not item for item in items):
            raise units.UnitError(f"{text!r}: empty value in the list")
        return [_scalar(item) for item in items]
    start, q_start = _number_or_quantity(match["start"])
    stop, q_stop = _number_or_quantity(match["stop"])
    step, q_step = _number_or_quantity(match["step"])
    geometric = match["op"] in "x*"
    for name, value in (("start", start), ("stop", stop), ("step", step)):
        if not math.isfinite(value):
            raise units.UnitError(f"{quote(text)}: the {name} must be a finite number, "
                                  f"got {quote(match[name].strip())}")
    if q_start is not q_stop:
        raise units.UnitError(f"{text!r}: start and stop are different kinds of quantity")
    if q_step is not None and (geometric or q_step is not q_start):
        wanted = "a plain factor" if geometric else "the same kind of quantity"
        raise units.UnitError(f"{text!r}: the step must be {wanted}")
    if geometric:
        if start <= 0 or stop <= 0 or step <= 0 or step == 1:
            raise units.UnitError(f"{text!r}: a geometric range needs positive ends and a factor other than 1")
        if (stop - start) * (step - 1) < 0:
            raise units.UnitError(f"{text!r}: factor {match['step']} never gets "
                                  f"from {match['start']} to {match['stop']}")
        count = _count(text, math.log(stop / start) / math.log(step))
        raw = [start * step ** i for i in range(count)]
    else:
        if step == 0 or (stop - start) * step < 0:
            raise units.UnitError(f"{text!r}: step {match['step']} never gets from {match['start']} to {match['stop']}")
        count = _count(text, (stop - start) / step)
        raw = [start + i * step for i in range(count)]
    integral = q_start is None and all(_is_integer_text(match[k]) for k in ("start", "stop", "step"))
    values = []
    for value in raw:
        value = float(f"{value:.12g}")   # 0.1 + 2 * 0.02 reads 0.14, not 0.14000000000000001
        if integral or (q_start is not None and value.is_integer()):
            value = int(value)
        values.append(value if q_start is None else f"{value} {q_start.value}")
    return values


def _count(text: str, steps: float) -> int:
    """How many values a range of ``steps`` steps has, refused past :data:`MAX_POINTS` before any is built."""
    if not math.isfinite(steps) or steps + 1 > MAX_POINTS:
        raise units.UnitError(f"{quote(text)}: more than {MAX_POINTS:,} values")
    return int(math.floor(steps + 1e-9)) + 1


def _scalar(item: str) -> Any:
    """A list item as YAML would read it (``4`` -> 4, ``0.5`` -> 0.5, ``16 KiB`` stays a string)."""
    try:
        value = load_yaml_text(item, CLI)
    except ConfigError:
        return item
    return value if isinstance(value, (int, float, str, bool)) else item


def _readable(value: Any) -> str:
    """A value for people: base-unit strings with a binary prefix where it reads better."""
    if isinstance(value, str):
        try:
            number, quantity = _number_or_quantity(value)
        except units.UnitError:
            return value
        if quantity is units.Quantity.BYTES:
            return units.format_bytes(number)
        return value
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_cell(value: Any) -> str:
    """A value as written to a results file (and compared when resuming)."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))       # shortest text that reads back as the same float
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


# --- planning ---------------------------------------------------------------------------------

def _axis(text: str, profile: HardwareProfile) -> SweepAxis:
    if "=" not in text:
        raise OptionError("set", "expected FIELD=VALUES, e.g. memory.caches.L2.size=64KiB..8MiB:x2", text)
    name, _, values_text = text.partition("=")
    name = name.strip()
    try:
        values = parse_values(values_text)
    except units.UnitError as err:
        raise OptionError("set", str(err), text) from None
    if name in RUN_FIELDS:
        return SweepAxis(name, AxisKind.RUN, tuple(values), name, text)
    leaves = leaf_paths(profile)
    if name not in leaves:
        close = difflib.get_close_matches(name, leaves + list(RUN_FIELDS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; run fields: {', '.join(RUN_FIELDS)}"
        raise OptionError("set", f"{name!r} is not a field of {profile.path or 'the profile'}{hint}", text)
    if name.startswith("link.") and profile.link is None:
        raise OptionError("set", f"{profile.path} has no link", text)
    return SweepAxis(name, AxisKind.PROFILE, tuple(values), _column(profile, name), text)


def _column(profile: HardwareProfile, path: str) -> str:
    head, _, _ = path.rpartition(".")
    name, _ = navigate(profile, path)
    return f"{head}.{name}" if head else name


def _run_value(axis: SweepAxis, value: Any) -> Any:
    if axis.field == "density":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise OptionError("set", f"density {value!r} is not a number in (0, 1]", axis.text)
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError("set", f"batch {value!r} is not a positive integer", axis.text)
    return value


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def plan_sweep(profile_path: str | Path, sets: Sequence[str], workload_path: str | Path,
               formats: Sequence[VariantLike] = (StorageFormat.DENSE, StorageFormat.CSR), batch: int = 1,
               repeat: int = 1, seed: int = 0, use_cache_path: bool = True) -> SweepPlan:
    """Parse every ``set`` option, build and validate every point; raise one :class:`ConfigError` if any is bad.

    ``use_cache_path=False`` runs the full pipeline at every point even where the single-pass
    cache-size path applies (to cross-check it; the results are identical).
    """
    source = str(profile_path)
    if not sets:
        raise OptionError("set", "give at least one {set} FIELD=VALUES")
    mapping = read_yaml_mapping(profile_path)
    base = profile_from_mapping(copy.deepcopy(mapping), source)
    workload = _workload(str(workload_path))   # read now: a bad workload fails before any point runs
    axes = tuple(_axis(text, base) for text in sets)
    seen: set[str] = set()
    for axis in axes:
        if axis.field in seen:
            raise OptionError("set", f"{axis.field} is set twice", axis.text)
        seen.add(axis.field)
    if "batch" in seen and batch != 1:
        raise OptionError("batch", "conflicts with {set} batch=...")
    count = math.prod(len(axis.values) for axis in axes)    # counted before the grid is built
    if count > MAX_POINTS:
        raise OptionError("set", f"the grid has {count:,} points, more than {MAX_POINTS:,}")
    combos = list(itertools.product(*(axis.values for axis in axes)))
    points: list[SweepPoint] = []
    for index, combo in enumerate(combos):
        data = copy.deepcopy(mapping)
        run_fields: dict[str, Any] = {}
        for axis, value in zip(axes, combo):
            if axis.kind is AxisKind.RUN:
                run_fields[axis.field] = _run_value(axis, value)
            else:
                assign(data, axis.field, value)
        label = ", ".join(axis.describe(value) for axis, value in zip(axes, combo))
        try:
            profile = profile_from_mapping(data, source)
        except ConfigError as err:
            assigned = " {set} ".join(axis.describe(value) for axis, value in zip(axes, combo)
                                      if axis.kind is AxisKind.PROFILE)
            raise OptionError("set", f"{err.field}: {err.message}", assigned) from None
        settings = tuple((axis.column, run_fields[axis.field] if axis.kind is AxisKind.RUN
                          else navigate(profile, axis.field)[1]) for axis, value in zip(axes, combo))
        options = RunOptions(batch=run_fields.get("batch", batch), repeat=repeat, formats=tuple(formats),
                             density=run_fields.get("density"), seed=seed)
        check_formats(profile, workload, options)    # --format csc on a pruned convolution: refused now
        points.append(SweepPoint(index, settings, profile, options, label))
    cache_level = None
    # the single-pass cache path traces plain storage formats (dense, csr, csc in the workload's type)
    plain = all(isinstance(f, StorageFormat) for f in formats)
    if use_cache_path and plain and len(axes) == 1 and axes[0].kind is AxisKind.PROFILE:
        from .cachesweep import applies

        parts = axes[0].field.split(".")
        if len(parts) == 4 and parts[:2] == ["memory", "caches"] and parts[3] == "size" and applies(base, parts[2]):
            cache_level = len(base.caches) - 1
    fingerprint = {"profile": str(Path(source).resolve()), "profile_sha256": _file_digest(source),
                   "workload": str(Path(workload_path).resolve()),
                   "workload_sha256": _file_digest(str(workload_path)),
                   "formats": [as_variant(f).spec for f in formats],
                   "batch": batch, "repeat": repeat, "seed": seed, "fields": [a.field for a in axes]}
    return SweepPlan(source, str(workload_path), axes, tuple(points), tuple(formats),
                     tuple(c.name for c in base.caches), cache_level, fingerprint)


# --- evaluating a point -----------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _workload(path: str) -> Workload:
    """Workloads are read once per worker process."""
    return load_workload(path)


@dataclass(frozen=True)
class PointTask:
    """What a worker needs for one point (small: the shared cache-path state travels separately)."""

    index: int
    key: str
    settings: tuple[tuple[str, Any], ...]
    profile: HardwareProfile
    options: RunOptions
    workload_path: str


def result_rows(index: int, settings: dict[str, Any], result: RunResult) -> list[SweepRow]:
    """Rows of one point: every layer of every variant, then the variant's total."""
    rows = []
    for variant in result.variants:
        for layer in variant.layers:
            rows.append(SweepRow(index, settings, variant.name, variant.format, layer=layer.name, kind=layer.kind,
                                 kernel=layer.kernel or "", time_s=float(layer.time_s), flops=float(layer.flops),
                                 dram_bytes=int(layer.dram_bytes), weight_bytes=int(layer.weight_bytes),
                                 hit_rate={k: float(v) for k, v in layer.hit_rate.items()}, bound=layer.bound))
        rows.append(SweepRow(index, settings, variant.name, variant.format, layer="total", kind="network",
                             time_s=float(variant.total_s), flops=float(sum(l.flops for l in variant.layers)),
                             dram_bytes=int(variant.dram_bytes), weight_bytes=int(variant.weight_bytes)))
    return rows


def evaluate_point(task: PointTask, shared: Any = None) -> PointResult:
    """Run one point; a failure becomes the point's error, never an exception.

    ``shared`` is the :class:`simulator.studies.cachesweep.CacheSizeSweep` of a cache-size sweep, or
    None to run the full pipeline. This is the function every backend runs.
    """
    start = time.perf_counter()
    settings = dict(task.settings)
    try:
        if shared is not None:
            result = shared.run_point(task.profile)
        else:
            result = run(task.profile, _workload(task.workload_path), task.options)
        rows = tuple(result_rows(task.index, settings, result))
        error = ""
    except Exception as err:  # noqa: BLE001 - a failing point is recorded, and the sweep goes on
        error = f"{type(err).__name__}: {err}" if not isinstance(err, SimulatorError) else str(err)
        rows = (SweepRow(point=task.index, settings=settings, error=error),)
    return PointResult(task.index, task.key, rows, error, time.perf_counter() - start)


# Set in each worker of the local process pool by its initializer (the cache-path state is
# handed over once per worker, not once per point).
_WORKER_SHARED: Any = None


def _install_shared(shared: Any) -> None:
    global _WORKER_SHARED
    _WORKER_SHARED = shared


def _evaluate_in_worker(task: PointTask) -> PointResult:
    return evaluate_point(task, _WORKER_SHARED)


# --- backends ---------------------------------------------------------------------------------

class Backend(str, enum.Enum):
    """Where points run."""

    INLINE = "inline"        # in this process, one after the other
    PROCESSES = "processes"  # a local process pool
    DASK = "dask"            # an existing Dask cluster (dask.distributed.Client)


@dataclass(frozen=True)
class BackendChoice:
    """A backend and its setting: workers for a process pool, the scheduler address for Dask."""

    kind: Backend = Backend.PROCESSES
    workers: int = 0                 # 0: one per CPU core
    address: Optional[str] = None

    def label(self) -> str:
        """Human-readable: '2 local processes', 'dask tcp://...'."""
        if self.kind is Backend.DASK:
            return f"Dask cluster at {self.address}"
        if self.kind is Backend.INLINE:
            return "this process"
        return f"{self.workers or os.cpu_count() or 1} local processes"


def _unordered(backend: BackendChoice, tasks: list[PointTask], shared: Any) -> Iterator[PointResult]:
    """Evaluate ``tasks`` on the backend; yield results as they finish."""
    if not tasks:
        return
    if backend.kind is Backend.INLINE:
        for task in tasks:
            yield evaluate_point(task, shared)
        return
    if backend.kind is Backend.DASK:
        yield from _dask_unordered(backend.address or "", tasks, shared)
        return
    workers = min(backend.workers or os.cpu_count() or 1, len(tasks))
    # fork hands the shared cache-path state to the workers without copying it through a
    # pipe. It is safe only while this process has no other thread (a child forked from a
    # threaded process can deadlock); otherwise spawn, which pickles the state once per worker.
    single_threaded = threading.active_count() == 1
    method = "fork" if single_threaded and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=init_worker, initargs=worker_initargs(_install_shared, shared))
    interrupted = True
    try:
        futures = {pool.submit(_evaluate_in_worker, task): task for task in tasks}
        for future in completed(futures):
            yield _result_of(future, futures[future])
        interrupted = False
    finally:
        stop_pool(pool, interrupted)


def _result_of(future: Any, task: PointTask) -> PointResult:
    """A future's result; a worker that died is recorded as the point's error."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - e.g. a killed worker process
        error = f"{type(err).__name__}: {err}"
        return PointResult(task.index, task.key, (SweepRow(point=task.index, settings=dict(task.settings),
                                                           error=error),), error, 0.0)


def _dask_unordered(address: str, tasks: list[PointTask], shared: Any) -> Iterator[PointResult]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise OptionError("dask", "needs dask.distributed (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise OptionError("dask", f"{address}: cannot connect to a Dask scheduler ({err})") from None
    try:
        # the cache-path state goes to every worker once, not once per point
        shared_future = client.scatter(shared, broadcast=True) if shared is not None else None
        futures = {client.submit(evaluate_point, task, shared_future, pure=False): task for task in tasks}
        for future in as_completed(futures, loop=client.loop):
            yield _result_of(future, futures[future])
    finally:
        client.close()


# --- running ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepSummary:
    """How a sweep went."""

    points: int          # in the grid
    resumed: int         # already in the results file
    ran: int             # evaluated now
    failed: int          # of those, failed
    seconds: float       # wall time of this invocation, preparation included


def run_sweep(plan: SweepPlan, store: ResultStore, backend: BackendChoice = BackendChoice(),
              progress: Callable[[PointResult, int, int], None] = lambda *_: None) -> SweepSummary:
    """Evaluate every point not yet in ``store``, appending each one's rows as it finishes.

    ``progress(result, done, total)`` is called after each point.
    """
    start = time.perf_counter()
    done = store.finished()
    todo = [p for p in plan.points if p.key not in done]
    tasks = [PointTask(p.index, p.key, p.settings, p.profile, p.options, plan.workload_path) for p in todo]
    # The cache path pays about one full run up front; for a single point, just run it.
    level = plan.cache_level
    shared = _shared_state(plan, todo[0], level) if len(todo) > 1 and level is not None else None
    failed = 0
    try:
        for finished, result in enumerate(_unordered(backend, tasks, shared), start=1):
            store.append(result)
            failed += bool(result.error)
            progress(result, finished, len(tasks))
    finally:
        store.close()
    return SweepSummary(len(plan.points), len(plan.points) - len(todo), len(tasks), failed,
                        time.perf_counter() - start)


def _shared_state(plan: SweepPlan, first: SweepPoint, level: int) -> Any:
    """The cache-size sweep state, built here once from the first point still to run."""
    from .cachesweep import CacheSizeSweep

    try:
        return CacheSizeSweep(first.profile, _workload(plan.workload_path), first.options, level)
    except Exception:  # noqa: BLE001 - e.g. a format a layer cannot use: every point then runs
        return None    # the full pipeline, which records that error per point
