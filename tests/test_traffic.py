"""Traffic stage: traces follow the encoded weights and the layer shapes."""

import numpy as np
import pytest

from simulator.compress.compression import INDEX_BYTES, StorageFormat, encode_mask
from simulator.hardware.profile import KernelKind
from simulator.memory.traffic import AddressSpace, CoreView, StreamKind, layer_traffic
from simulator.model.workload import DType, Layer, LayerKind

LINE = 64
VIEW = CoreView(cores=1, line_bytes=LINE, first_level_bytes=32 * 1024, last_private_bytes=256 * 1024)


def fc(rows, cols, density=1.0):
    return Layer("fc", LayerKind.FC, "fc", (cols,), (rows,), DType.FP32, density=density)


def unique_lines(traffic, kind):
    return np.unique(traffic.addresses[traffic.stream == kind] // LINE)


def test_dense_gemv_reads_every_weight_line_once():
    layer = fc(64, 256)
    enc = encode_mask("fc", np.ones((64, 256), bool), StorageFormat.DENSE, 4)
    t = layer_traffic(layer, "input", enc, 1, AddressSpace(), VIEW)
    weights = t.addresses[t.stream == StreamKind.WEIGHT_VALUES]
    assert weights.size == 64 * 256 * 4 // LINE
    assert np.unique(weights).size == weights.size
    assert t.kernel is KernelKind.GEMV
    assert t.flops == 2 * 64 * 256


def test_dense_gemm_is_chosen_for_batches():
    layer = fc(8, 32)
    enc = encode_mask("fc", np.ones((8, 32), bool), StorageFormat.DENSE, 4)
    t = layer_traffic(layer, "input", enc, 4, AddressSpace(), VIEW)
    assert t.kernel is KernelKind.GEMM
    assert unique_lines(t, StreamKind.OUTPUT).size == 8 * 4 * 4 // LINE


def test_csr_gathers_follow_the_real_column_indices():
    rng = np.random.default_rng(1)
    mask = rng.random((32, 512)) < 0.1
    layer = fc(32, 512, density=float(mask.mean()))
    enc = encode_mask("fc", mask, StorageFormat.CSR, 4)
    space = AddressSpace()
    t = layer_traffic(layer, "input", enc, 1, space, VIEW)
    x_base = space.buffers["input"][0]
    gathers = t.addresses[t.stream == StreamKind.GATHER]
    assert gathers.size == enc.nnz
    np.testing.assert_array_equal(gathers, (x_base + enc.indices.astype(np.int64) * 4) // LINE * LINE)
    # values and indices are sequential streams: every line touched once
    assert unique_lines(t, StreamKind.WEIGHT_VALUES).size == -(-enc.values_bytes // LINE)
    assert unique_lines(t, StreamKind.WEIGHT_INDICES).size == -(-enc.nnz * INDEX_BYTES // LINE)
    assert t.kernel is KernelKind.SPMV


def test_csr_spmm_gathers_a_row_of_the_batch_operand_per_nonzero():
    mask = np.zeros((4, 64), bool)
    mask[0, 3] = mask[2, 40] = True
    layer = fc(4, 64, density=2 / 256)
    enc = encode_mask("fc", mask, StorageFormat.CSR, 4)
    t = layer_traffic(layer, "input", enc, 64, AddressSpace(), VIEW)
    assert (t.stream == StreamKind.GATHER).sum() == 2 * 64 * 4 // LINE
    assert t.kernel is KernelKind.SPMM


def test_csc_writes_output_rows_per_nonzero():
    mask = np.eye(16, dtype=bool)
    enc = encode_mask("fc", mask, StorageFormat.CSC, 4)
    t = layer_traffic(fc(16, 16, density=1 / 16), "input", enc, 1, AddressSpace(), VIEW)
    scatters = t.stream == StreamKind.GATHER
    assert scatters.sum() == 16 and t.is_write[scatters].all()


def test_cores_split_the_work_and_interleave():
    mask = np.ones((64, 64), bool)
    enc = encode_mask("fc", mask, StorageFormat.CSR, 4)
    view = CoreView(cores=4, line_bytes=LINE, first_level_bytes=32 * 1024, last_private_bytes=256 * 1024)
    t = layer_traffic(fc(64, 64), "input", enc, 1, AddressSpace(), view)
    assert t.cores_used == 4
    assert set(np.unique(t.core)) == {0, 1, 2, 3}
    first = t.core[:64]
    assert len(set(first.tolist())) > 1, "cores should take turns, not run one after another"


def test_buffers_keep_their_addresses():
    space = AddressSpace()
    a = space.base("w", 100)
    b = space.base("x", 5000)
    assert space.base("w", 100) == a and b % 4096 == 0 and b >= a + 4096


def test_pooling_reads_input_and_writes_output():
    layer = Layer("pool", LayerKind.MAXPOOL, "pool", (4, 8, 8), (4, 4, 4), DType.FP32, kernel=2, stride=2)
    t = layer_traffic(layer, "input", None, 1, AddressSpace(), VIEW)
    assert unique_lines(t, StreamKind.INPUT).size == 4 * 64 * 4 // LINE
    assert unique_lines(t, StreamKind.OUTPUT).size == 4 * 16 * 4 // LINE
    assert t.kernel is KernelKind.POOL


def test_csc_convolution_is_refused():
    layer = Layer("conv", LayerKind.CONV, "conv", (2, 4, 4), (2, 4, 4), DType.FP32, kernel=3, padding=1)
    enc = encode_mask("conv", np.ones((2, 18), bool), StorageFormat.CSC, 4)
    with pytest.raises(ValueError, match="csr"):
        layer_traffic(layer, "input", enc, 1, AddressSpace(), VIEW)


def test_short_csr_rows_idle_the_lanes_of_a_warp_per_row():
    # rows of 1, 32 and 33 non-zeros and an empty row on 32 lanes per row: 1 + 1 + 2 + 1 warp steps
    mask = np.zeros((4, 64), bool)
    mask[0, :1] = mask[1, :32] = mask[2, :33] = True
    layer = fc(4, 64, density=float(mask.mean()))
    enc = encode_mask("fc", mask, StorageFormat.CSR, 4)
    warp = CoreView(1, LINE, 32 * 1024, 256 * 1024, lanes_per_row=((KernelKind.SPMV, 32),))
    t = layer_traffic(layer, "input", enc, 1, AddressSpace(), warp)
    assert t.occupancy == pytest.approx(66 / (5 * 32))
    # the batch kernel (csrmm) and a view without lanes per row keep every lane busy
    assert layer_traffic(layer, "input", enc, 4, AddressSpace(), warp).occupancy == 1.0
    assert layer_traffic(layer, "input", enc, 1, AddressSpace(), VIEW).occupancy == 1.0
