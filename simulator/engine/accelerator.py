"""EIE-style sparse engines: a cycle model of the PE array over the real pruned matrix.

The matrix is stored as EIE stores it (Han et al., ISCA 2016, section III): rows interleaved
over the PEs (row i on PE ``i mod pes``), each PE's slice of every column in CSC order, one
stored entry per non-zero holding a codebook index and the number of zeros before it in the
slice (``index_bits`` wide). A run of zeros that does not fit the index takes a padding entry:
a gap of ``g`` zeros costs ``floor(g / 2**index_bits)`` extra entries. So at 4% density on
64-row slices about half of all entries are padding, and that comes out of the real masks.

Non-zero input activations are broadcast one per cycle, into every PE's FIFO of
``fifo_depth``; a broadcast waits until every PE has room. A PE takes an activation from its
FIFO, reads its column pointers, and spends one cycle per stored entry of its slice (at least
one cycle per activation, for the pointer read). The layer ends when the slowest PE drains.
*Theoretical* time is the paper's: all entries spread perfectly over the PEs.

Which activations are non-zero is not published; they are drawn (without replacement,
seeded by the layer name) at the layer's ``activation_density``.

Capacities are checked per PE: a layer whose stored entries or column pointers do not fit the
PE's SRAM (VGG16_FC6: 25,089 16-bit pointers per PE, 49 KiB, against a 32 KiB pointer SRAM) is
processed in column batches, as EIE processes long input vectors (section V): what does not fit
streams through half of the SRAM while the other half is in use (double buffering), so all of it
is read from DRAM on every inference, overlapping the PE array's work. A profile with no DRAM to
reload from refuses such a layer in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..base.errors import ConfigError
from ..compress.compression import EncodedWeights, StorageFormat, pruned_encoding
from ..hardware.profile import HardwareProfile, KernelKind, SparseEngine
from ..memory.traffic import LayerTraffic
from ..model.workload import Layer, LayerKind, Workload, layer_seed
from .core import LayerWork

TILES = 16   # engine tiles per layer: the cycle model has already done the fine work
DRAM_BURST_BYTES = 64   # a reload moves whole arrays: count its DRAM requests in 64-byte bursts


@dataclass(frozen=True)
class EieTiming:
    """What the PE-array model says about one layer."""

    layer: str
    entries_per_pe_column: np.ndarray   # [cols, pes] stored entries, padding included
    active_columns: np.ndarray          # indices of the broadcast (non-zero) activations
    cycles: float                       # with load imbalance and the FIFO
    theoretical_cycles: float           # every entry spread evenly over the PEs
    padding_entries: int
    nnz: int

    @property
    def entries(self) -> int:
        """Stored entries, padding included."""
        return int(self.entries_per_pe_column.sum())

    def encoded_bytes(self, engine: SparseEngine) -> int:
        """Entries plus column pointers (two banks per PE, one pointer per column and PE)."""
        entry_bytes = self.entries * (engine.index_bits + engine.codebook_bits) / 8
        cols = self.entries_per_pe_column.shape[0]
        pointer_bytes = engine.pes * (cols + 1) * engine.pointer_bits / 8
        return int(np.ceil(entry_bytes + pointer_bytes))


def entries_per_pe_column(enc: EncodedWeights, engine: SparseEngine) -> tuple[np.ndarray, int]:
    """Stored entries of every (column, PE) slice and the number of padding entries, from a CSC
    encoding of the real matrix."""
    if enc.format is not StorageFormat.CSC:
        raise ValueError("the EIE layout is built from a CSC encoding")
    pes, cols = engine.pes, enc.cols
    if enc.pointers is None or enc.indices is None:
        raise ValueError("a CSC encoding stores column pointers and row indices")
    col = np.repeat(np.arange(cols, dtype=np.int64), np.diff(enc.pointers))
    row = enc.indices.astype(np.int64)
    pe, local = row % pes, row // pes
    order = np.lexsort((local, pe, col))      # CSC rows are sorted; regroup them by PE
    col, pe, local = col[order], pe[order], local[order]
    group = col * pes + pe
    first = np.ones(group.size, bool)
    first[1:] = group[1:] != group[:-1]
    previous = np.empty_like(local)
    previous[1:] = local[:-1]
    gap = np.where(first, local, local - previous - 1)
    padding = gap >> engine.index_bits
    entries = np.bincount(group, weights=1 + padding, minlength=cols * pes).reshape(cols, pes)
    return entries.astype(np.int64), int(padding.sum())


def active_columns(layer: Layer, seed: int) -> np.ndarray:
    """The non-zero input activations: ``activation_density`` of the columns, drawn reproducibly."""
    cols = layer.weight_matrix_shape[1]
    count = int(round(layer.activation_density * cols))
    rng = np.random.default_rng(layer_seed(seed, layer.name + ":activations"))
    return np.sort(rng.choice(cols, size=count, replace=False))


def pe_array_cycles(work: np.ndarray, fifo_depth: int) -> float:
    """Cycles for a PE array to process ``work[activation, pe]`` stored entries.

    Broadcast ``j`` happens one cycle after broadcast ``j - 1`` at the earliest, and not before
    every PE has started activation ``j - fifo_depth`` (a FIFO slot is free). PE ``p`` starts
    activation ``j`` when it has finished ``j - 1`` and ``j`` has arrived, and takes
    ``max(work, 1)`` cycles (one for the pointer read when its slice is empty).
    """
    cycles = np.maximum(work, 1).astype(float)
    activations, pes = cycles.shape
    finish = np.zeros(pes)
    starts = np.zeros((activations, pes))
    broadcast = -1.0
    for j in range(activations):
        broadcast += 1.0
        if j >= fifo_depth:
            broadcast = max(broadcast, float(starts[j - fifo_depth].max()))
        start = np.maximum(finish, broadcast)
        starts[j] = start
        finish = start + cycles[j]
    return float(finish.max()) if activations else 0.0


def eie_timing(layer: Layer, engine: SparseEngine, seed: int) -> EieTiming:
    """Encode the layer's pruned weights the EIE way and run the PE-array model."""
    enc = pruned_encoding(layer, StorageFormat.CSC, seed)
    entries, padding = entries_per_pe_column(enc, engine)
    active = active_columns(layer, seed)
    work = entries[active]
    return EieTiming(layer.name, entries, active, pe_array_cycles(work, engine.fifo_depth),
                     float(work.sum()) / engine.pes, padding, enc.nnz)


@dataclass(frozen=True)
class ColumnBatches:
    """How a layer that does not fit its PEs' SRAM streams: column batches and the DRAM bytes
    they reload per inference (0 batches streamed when everything fits)."""

    batches: int                    # column batches the layer is processed in (1: it fits)
    streamed_entry_bytes: float     # stored entries read from DRAM per inference (all PEs)
    streamed_pointer_bytes: float   # column pointers read from DRAM per inference (all PEs)

    @property
    def dram_bytes(self) -> float:
        """Everything reloaded from DRAM per inference."""
        return self.streamed_entry_bytes + self.streamed_pointer_bytes


def _per_pe_bytes(profile: HardwareProfile, name: str, pes: int) -> float:
    pad = next(s for s in profile.memory.scratchpads if s.name == name)
    return float(pad.size_bytes if pad.per_core else pad.size_bytes / pes)


def column_batches(profile: HardwareProfile, engine: SparseEngine, timing: EieTiming,
                   source: str) -> ColumnBatches:
    """Check the layer against each PE's weight and pointer SRAM; split it into column batches
    (each fitting half of the SRAM, the other half loading the next) where it does not fit."""
    cols, pes = timing.entries_per_pe_column.shape
    entry_bytes = (engine.index_bits + engine.codebook_bits) / 8
    entries_per_pe = float(timing.entries_per_pe_column.sum(axis=0).max()) * entry_bytes
    pointers_per_pe = (cols + 1) * engine.pointer_bits / 8
    spmat = _per_pe_bytes(profile, engine.weights_scratchpad, pes)
    ptr = _per_pe_bytes(profile, engine.pointers_scratchpad, pes)
    entries_fit, pointers_fit = entries_per_pe <= spmat, pointers_per_pe <= ptr
    if entries_fit and pointers_fit:
        return ColumnBatches(1, 0.0, 0.0)
    what = ("column pointers" if entries_fit else "stored entries" if pointers_fit
            else "stored entries and column pointers")
    if profile.dram is None:
        need, have = (pointers_per_pe, ptr) if not pointers_fit else (entries_per_pe, spmat)
        raise ConfigError(source, f"layers.{timing.layer}", f"its {what} need {need / 1024:.1f} KiB per PE, more "
                          f"than {profile.name}'s {have / 1024:.1f} KiB of SRAM, and the profile has no "
                          "memory.dram to reload column batches from")
    batches = max(1 if entries_fit else math.ceil(entries_per_pe / (spmat / 2)),
                  1 if pointers_fit else math.ceil(pointers_per_pe / (ptr / 2)))
    total_entries = timing.entries * entry_bytes
    total_pointers = pes * (cols + batches) * engine.pointer_bits / 8    # each batch has its own end pointer
    return ColumnBatches(batches, 0.0 if entries_fit else total_entries, 0.0 if pointers_fit else total_pointers)


def eie_works(profile: HardwareProfile, workload: Workload, seed: int) -> list[tuple[LayerWork, EieTiming]]:
    """Tile work of every layer on a sparse-engine profile (FC layers only, batch 1)."""
    engine = profile.sparse_engine
    assert engine is not None
    clock = profile.compute.clock_hz
    out = []
    for layer in workload.layers:
        if layer.kind is not LayerKind.FC:
            raise ConfigError(workload.path, f"layers.{layer.name}",
                              f"{profile.name} runs fully-connected layers only; this is a {layer.kind.value} layer")
        timing = eie_timing(layer, engine, seed)
        streams = column_batches(profile, engine, timing, workload.path)
        share = np.full(TILES, 1.0 / TILES)
        weight_bytes = timing.entries * (engine.index_bits + engine.codebook_bits) / 8
        pointer_bytes = timing.active_columns.size * engine.pes * 2 * engine.pointer_bits / 8
        flops = 2.0 * float(timing.entries_per_pe_column[timing.active_columns].sum())
        traffic = LayerTraffic(layer, KernelKind.SPMV, flops,
                               np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int16), np.zeros(0, np.int8),
                               engine.pes, 1.0, timing.encoded_bytes(engine), 8, 1)
        out.append((LayerWork(
            traffic=traffic, flops=traffic.flops * share, level_bytes=np.zeros((TILES, 0)),
            # reloaded batches spread over the tiles, so the engine overlaps them with the PE array
            dram_read_bytes=share * streams.dram_bytes, dram_write_bytes=np.zeros(TILES),
            dram_lines=share * streams.dram_bytes / DRAM_BURST_BYTES,
            hits=np.zeros(1, np.int64), compute_s=share * timing.cycles / clock,
            scratchpad_bytes={engine.weights_scratchpad: share * weight_bytes,
                              engine.pointers_scratchpad: share * pointer_bytes}), timing))
    return out
