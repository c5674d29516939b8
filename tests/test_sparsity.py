"""Distiller's weights_sparsity_summary: each column by hand, the total row, the table, the plot."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from simulator.compress.sparsity import render_summary, sparsity_row, weights_sparsity_summary
from simulator.output.plots import density_bars


def test_matrix_columns_by_hand():
    w = torch.tensor([[0.0, 1.0, 0.0, 2.0],
                      [0.0, 0.0, 0.0, 0.0],
                      [0.0, 3.0, 0.0, 0.0]])
    row = sparsity_row("fc.weight", w)
    assert (row.nnz_dense, row.nnz_sparse) == (12, 3)
    assert row.cols_pct == pytest.approx(100 / 3)       # one all-zero torch row of three
    assert row.rows_pct == pytest.approx(50.0)          # two all-zero torch columns of four
    assert row.kernels_2d_pct == pytest.approx(100 / 3)
    assert row.channels_pct == row.filters_3d_pct == 0
    assert row.fine_pct == pytest.approx(75.0)
    assert row.mean == pytest.approx(0.5) and row.abs_mean == pytest.approx(0.5)
    assert row.std == pytest.approx(float(w.std()))


def test_convolution_columns_by_hand():
    w = torch.zeros(4, 3, 2, 2)
    w[0, 0, 0, 0] = 1.0      # filter 0, channel 0
    w[2, 1, 1, 1] = -1.0     # filter 2, channel 1
    row = sparsity_row("conv.weight", w)
    assert row.filters_3d_pct == pytest.approx(50.0)          # filters 1 and 3
    assert row.channels_pct == pytest.approx(100 / 3)         # channel 2
    assert row.kernels_2d_pct == pytest.approx(100 * 10 / 12)  # 2 of 12 kernels hold a weight
    assert row.cols_pct == row.rows_pct == 0


def test_summary_takes_2d_and_4d_weights_and_totals():
    tensors = OrderedDict([("a.weight", torch.ones(2, 3)), ("a.bias", torch.ones(2)),
                           ("b.weight", torch.zeros(2, 2, 1, 1)), ("bn.running_mean", torch.zeros(2, 2))])
    summary = weights_sparsity_summary(tensors)
    assert [r.name for r in summary.rows] == ["a.weight", "b.weight"]
    assert (summary.total_elements, summary.total_nonzeros) == (10, 6)
    assert summary.total_sparsity_pct == pytest.approx(40.0)
    table = render_summary(summary)
    lines = table.splitlines()
    assert [c.strip() for c in lines[1].strip("|").split("|")] == [
        "", "Name", "Shape", "NNZ (dense)", "NNZ (sparse)", "Cols (%)", "Rows (%)", "Ch (%)", "2D (%)", "3D (%)",
        "Fine (%)", "Std", "Mean", "Abs-Mean"]
    total = [c.strip() for c in lines[-3].strip("|").split("|")]
    assert total[:5] == ["2", "Total sparsity:", "-", "10", "6"] and total[10] == "40.00000"
    assert lines[-1] == "Total sparsity: 40.00"


def test_density_bars_are_written(tmp_path):
    summary = weights_sparsity_summary({"a.weight": torch.tensor([[1.0, 0.0], [0.0, 0.0]])})
    path = density_bars(summary, tmp_path / "density.png", "tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
