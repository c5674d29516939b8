"""Distiller's ``weights_sparsity_summary``: per-weight sparsity by structure, and its table.

One row per 2-D or 4-D weight / bias tensor (Distiller's ``param_dims=[2, 4]``), with
Distiller's columns and definitions (``distiller/utils.py``):

* NNZ (dense) = elements; NNZ (sparse) = non-zeros (Distiller writes ``int(density x
  elements)``, the same count up to float rounding); Fine (%) = zeros;
* Cols (%) / Rows (%), 2-D weights only, read the FC weight as the GEMM matrix it is
  transposed into: Cols (%) = all-zero torch *rows* (output neurons), Rows (%) = all-zero
  torch *columns* (input features). This is the Distiller that wrote the fixture schedule
  ``resnet20_filters.schedule_agp.yaml``: its Rows pruner leaves ``fc.weight`` (10, 64) at
  Cols 0%, Rows 50%, 2D 0% with 320 non-zeros (older Distiller logs, such as the AlexNet
  schedules' 2018 tables, had the two the other way round);
* Ch (%) = all-zero input channels, 2D (%) = all-zero k x k kernels (2-D weights: all-zero
  torch rows), 3D (%) = all-zero filters;
* Std (unbiased), Mean, Abs-Mean of the values;

and a last row ``Total sparsity:`` with the element totals and the overall Fine (%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch

from ..base.texttable import format_table

SUMMARY_DIMS = (2, 4)


@dataclass(frozen=True)
class SparsityRow:
    """One tensor in the summary (percentages are 0-100, as Distiller prints them)."""

    name: str
    shape: tuple[int, ...]
    nnz_dense: int
    nnz_sparse: int
    cols_pct: float
    rows_pct: float
    channels_pct: float
    kernels_2d_pct: float
    filters_3d_pct: float
    fine_pct: float
    std: float
    mean: float
    abs_mean: float

    @property
    def density(self) -> float:
        """Non-zeros over elements."""
        return self.nnz_sparse / self.nnz_dense if self.nnz_dense else 0.0


@dataclass(frozen=True)
class SparsitySummary:
    """Rows for every summarised tensor, and the totals."""

    rows: list[SparsityRow]
    total_elements: int
    total_nonzeros: int

    @property
    def total_sparsity_pct(self) -> float:
        """Zeros over elements of all summarised tensors, in percent."""
        return 100.0 * (1.0 - self.total_nonzeros / self.total_elements) if self.total_elements else 0.0


def _zero_fraction(sums: torch.Tensor) -> float:
    """Share of structures whose absolute sum is zero."""
    return 1.0 - int(torch.count_nonzero(sums)) / sums.numel() if sums.numel() else 0.0


def sparsity_row(name: str, t: torch.Tensor) -> SparsityRow:
    """Distiller's summary row of one tensor."""
    a = t.detach().abs().float()
    nnz = int(torch.count_nonzero(a))
    numel = a.numel()
    # Distiller's column names: a "kernel" is one (output, input) channel pair's k x k slice of a
    # convolution weight, a "filter" one output channel's weights (the project's glossary keeps them)
    cols = rows = channels = kernels = filters = 0.0
    if a.dim() == 2:
        cols = _zero_fraction(a.sum(dim=1))      # torch rows: Distiller's (transposed) columns
        rows = _zero_fraction(a.sum(dim=0))      # torch columns: Distiller's rows
        kernels = cols                           # sparsity_2D of a matrix counts its torch rows
    elif a.dim() == 4:
        channels = _zero_fraction(a.sum(dim=(0, 2, 3)))
        kernels = _zero_fraction(a.sum(dim=(2, 3)).reshape(-1))
        filters = _zero_fraction(a.sum(dim=(1, 2, 3)))
    values = t.detach().float()
    density = nnz / numel
    return SparsityRow(name, tuple(t.shape), numel, nnz, 100 * cols, 100 * rows, 100 * channels,
                       100 * kernels, 100 * filters, 100 * (1 - density), values.std().item() if numel > 1 else 0.0,
                       values.mean().item(), a.mean().item())


def weights_sparsity_summary(tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]
                             ) -> SparsitySummary:
    """Summarise every 2-D / 4-D tensor whose name contains ``weight`` or ``bias``."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    rows = [sparsity_row(name, t) for name, t in items
            if t.dim() in SUMMARY_DIMS and ("weight" in name or "bias" in name)]
    return SparsitySummary(rows, sum(r.nnz_dense for r in rows), sum(r.nnz_sparse for r in rows))


HEADER = ["", "Name", "Shape", "NNZ (dense)", "NNZ (sparse)", "Cols (%)", "Rows (%)", "Ch (%)", "2D (%)", "3D (%)",
          "Fine (%)", "Std", "Mean", "Abs-Mean"]


def render_summary(summary: SparsitySummary) -> str:
    """The table as Distiller logs it (tabulate's ``psql`` style, five decimals)."""
    body = []
    for i, r in enumerate(summary.rows):
        body.append([str(i), r.name, "(" + ", ".join(map(str, r.shape)) + ")", str(r.nnz_dense), str(r.nnz_sparse)]
                    + [f"{v:.5f}" for v in (r.cols_pct, r.rows_pct, r.channels_pct, r.kernels_2d_pct,
                                            r.filters_3d_pct, r.fine_pct, r.std, r.mean, r.abs_mean)])
    body.append([str(len(summary.rows)), "Total sparsity:", "-", str(summary.total_elements),
                 str(summary.total_nonzeros)] + [f"{0:.5f}"] * 5 + [f"{summary.total_sparsity_pct:.5f}"]
                + [f"{0:.5f}"] * 3)
    right = [i for i in range(len(HEADER)) if i not in (1, 2)]
    return format_table(HEADER, body, right, style="psql") + f"\nTotal sparsity: {summary.total_sparsity_pct:.2f}"
