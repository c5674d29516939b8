"""Precision of a variant on a profile: the bytes of its weights and activations, the type its
multiply-adds run in, and the conversions it pays for; and its encodings at those bytes.

=================  ==========================================================================
``@fp32``          activations and weights in that type, arithmetic at that type's peak
``@fp16``,         (``compute.peak_flops``). A profile without a peak for fp16 / bf16
``@bf16``          *emulates* it: storage stays 2 bytes, the FMAs run at the fp32 peak, and
                   every weight is converted (``dequant_cycles_per_vector``) and every input
                   and output element converted by an element-wise pass, as a CPU without
                   half-precision arithmetic converts on the fly (F16C, ``vcvtph2ps``).
``@int8``          torch's dynamic quantization: int8 weights, activations stored in the
                   workload's type and quantized on the fly (an element-wise pass over the
                   input before the kernel; the int32 output dequantised by another), int8
                   arithmetic. A profile without an int8 peak *refuses* it: int8 arithmetic
                   emulated in fp32 is ``@w8``.
``@w8``, ``@w4``   weight-only: int8 / int4 weights plus one fp16 scale per ``group_size``
                   weights (the scales counted in the weight bytes and the traffic),
                   dequantised into the activation type (``dequant_cycles_per_vector`` per
                   vector of weights) and multiplied at that type's peak.
(none)             the workload's type, as before variants: no conversion is charged.
=================  ==========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..base.errors import OptionError
from ..hardware.profile import HardwareProfile
from ..model.workload import DType, Workload
from .compression import EncodedWeights
from .variants import SCALE_BYTES, Precision, Structure, Variant, storage_format


@dataclass(frozen=True)
class PrecisionPlan:
    """How one variant's type runs on one profile."""

    activations: DType          # element type of activations in memory (the layers' dtype)
    weight_bits: int            # bits per stored weight value
    arithmetic: DType           # the type whose peak the multiply-adds run at
    group_size: int = 0         # weights per fp16 scale (0: no scales)
    convert_weights: bool = False       # weights converted into the arithmetic type before the FMAs
    convert_activations: bool = False   # input converted before the kernel, output after (element passes)
    emulated: Optional[str] = None      # the type emulated in ``arithmetic`` (fp16 on a CPU without it)

    def scale_bytes(self, weights: int) -> int:
        """Bytes of the fp16 scales of ``weights`` stored weights (one per group)."""
        return SCALE_BYTES * math.ceil(weights / self.group_size) if self.group_size else 0


def _has_peak(profile: HardwareProfile, dtype: DType) -> bool:
    return profile.compute.peak_flops.of(dtype.value) is not None


def plan_precision(profile: HardwareProfile, variant: Variant, workload_dtype: DType) -> PrecisionPlan:
    """The plan of ``variant`` on ``profile``; a type the profile can neither run nor emulate is one
    :class:`OptionError` naming ``format`` and the spec."""
    precision = variant.precision
    if precision is None:
        return PrecisionPlan(workload_dtype, 8 * workload_dtype.size_bytes, workload_dtype)
    if profile.sparse_engine is not None or profile.tiled_engine is not None:
        raise OptionError("format", f"{variant.spec}: {profile.name}'s engine computes in its own fixed type; "
                          "leave the @type out")
    if precision is Precision.INT8:
        if not _has_peak(profile, DType.INT8):
            raise OptionError("format", f"{variant.spec}: {profile.name} gives no int8 peak "
                              f"(compute.peak_flops.int8 in {profile.path}), and int8 arithmetic is not emulated; "
                              f"use @w8 for int8 weights computed in {workload_dtype.value}")
        return PrecisionPlan(workload_dtype, 8, DType.INT8, convert_activations=True)
    if precision.weight_only:
        arithmetic, emulated = _runnable(profile, variant, workload_dtype)
        return PrecisionPlan(workload_dtype, precision.weight_bits, arithmetic, group_size=variant.group_size,
                             convert_weights=True, convert_activations=emulated is not None, emulated=emulated)
    dtype = DType(precision.value)
    arithmetic, emulated = _runnable(profile, variant, dtype)
    return PrecisionPlan(dtype, precision.weight_bits, arithmetic, convert_weights=emulated is not None,
                         convert_activations=emulated is not None, emulated=emulated)


def _runnable(profile: HardwareProfile, variant: Variant, dtype: DType) -> tuple[DType, Optional[str]]:
    """(arithmetic type, emulated type or None) for floating-point arithmetic in ``dtype``."""
    if _has_peak(profile, dtype):
        return dtype, None
    if dtype in (DType.FP16, DType.BF16) and _has_peak(profile, DType.FP32):
        return DType.FP32, dtype.value
    raise OptionError("format", f"{variant.spec}: {profile.name} gives no {dtype.value} peak "
                      f"(compute.peak_flops.{dtype.value} in {profile.path}) and nothing to emulate it with")


def variant_workload(workload: Workload, plan: PrecisionPlan) -> Workload:
    """The workload with its layers' activations in the plan's type (a copy when it differs)."""
    return workload if plan.activations is workload.dtype else workload.with_dtype(plan.activations)


def structure_available(variant: Variant) -> bool:
    """True where the variant's structure can be encoded: dense, CSR and CSC always, ``thinned``
    once :mod:`simulator.compress.thinning` exists, the others once
    :func:`simulator.compress.compression.encode_variant` does (restricted to its
    ``ENCODED_STRUCTURES`` where it lists them)."""
    import importlib.util

    from . import compression

    if storage_format(variant) is not None or variant.structure is Structure.AUTO:
        return True
    if variant.structure is Structure.THINNED:
        return importlib.util.find_spec("simulator.compress.thinning") is not None
    if not hasattr(compression, "encode_variant"):
        return False
    listed = getattr(compression, "ENCODED_STRUCTURES", None)
    return listed is None or variant.structure.value in listed


def encode(workload: Workload, variant: Variant, plan: PrecisionPlan, seed: int) -> dict[str, EncodedWeights]:
    """Every weighted layer of ``workload`` (already in the plan's activation type) in the variant's
    structure, its values at the variant's bits and its groups' scales counted
    (:func:`simulator.compress.compression.encode_variant`)."""
    from .compression import encode_variant

    return encode_variant(workload, variant, seed)
