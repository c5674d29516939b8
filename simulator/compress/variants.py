"""Compression variants: what ``run --format`` compares, one ``STRUCTURE[@PRECISION]`` each.

The *structure* decides which weights exist and how they are stored; the *precision* decides their
bytes and the arithmetic:

========================  =====================================================================
structure                 meaning
========================  =====================================================================
``dense``                 every weight, dense
``thinned``               all-zero filters / rows (and what they feed) removed: smaller dense layers
``csr``, ``csc``          compressed sparse rows / columns
``bsr<R>x<C>``            block-sparse rows of R x C blocks (``bsr4x4``)
``<N>:<M>``               N of every M consecutive weights kept (``2:4``)
``bitmask``               one bit per weight, then the non-zero values
``eie``                   Deep Compression's codebook with relative indices (``eie``, ``eie3``: bits)
``auto``                  per layer, the fastest of the other variants
========================  =====================================================================

========================  =====================================================================
precision                 meaning
========================  =====================================================================
``fp32``, ``fp16``,       weights, activations and arithmetic in that type
``bf16``
``int8``                  int8 weights, activations quantized to int8 on the fly, int8 arithmetic
                          (torch's dynamic quantization of a linear layer)
``w8``, ``w4``            weight-only: int8 / int4 weights with one scale per group of
                          ``group_size`` weights, dequantised into the activation type
========================  =====================================================================

A spec without ``@`` keeps the workload's type. :func:`parse_variants` turns the flag's text
into :class:`Variant` objects; a bad spec is one :class:`~simulator.base.errors.OptionError`
naming the ``format`` option and the spec.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..base.errors import OptionError
from ..model.workload import DType

if TYPE_CHECKING:    # compression imports this module: the storage formats are looked up lazily
    from .compression import StorageFormat

DEFAULT_GROUP_SIZE = 128      # weights per scale of w8 / w4 (the usual GPTQ / AWQ group)
DEFAULT_CODEBOOK_BITS = 4     # Deep Compression's FC layers: 4-bit shared weights
SCALE_BYTES = 2               # an fp16 scale per group


class Structure(str, enum.Enum):
    """Which weights a variant keeps and how it stores them."""

    DENSE = "dense"
    THINNED = "thinned"
    CSR = "csr"
    CSC = "csc"
    BSR = "bsr"
    NM = "n:m"
    BITMASK = "bitmask"
    EIE = "eie"
    AUTO = "auto"

    @property
    def is_sparse(self) -> bool:
        """True for the structures that store indices or masks (not dense, thinned or auto)."""
        return self not in (Structure.DENSE, Structure.THINNED, Structure.AUTO)


class Precision(str, enum.Enum):
    """The bytes of a variant's weights and the type of its arithmetic."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    W8 = "w8"
    W4 = "w4"

    @property
    def weight_bits(self) -> int:
        """Bits per stored weight value (scales of weight-only types not included)."""
        return {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "w8": 8, "w4": 4}[self.value]

    @property
    def weight_only(self) -> bool:
        """True when only the weights are quantized (the arithmetic stays in the activation type)."""
        return self in (Precision.W8, Precision.W4)

    def arithmetic(self, activations: DType) -> str:
        """The type the multiply-adds run in: int8 for ``int8``, the activation type for weight-only
        types, the precision itself otherwise (a ``peak_flops`` key of a profile)."""
        if self.weight_only:
            return activations.value
        return self.value


@dataclass(frozen=True)
class Variant:
    """One ``STRUCTURE[@PRECISION]`` of ``run --format``."""

    structure: Structure
    precision: Optional[Precision] = None     # None: the workload's type
    block: tuple[int, int] = (0, 0)           # bsr: rows x columns of a block
    n: int = 0                                # n:m: kept of every m
    m: int = 0
    codebook_bits: int = DEFAULT_CODEBOOK_BITS   # eie
    group_size: int = DEFAULT_GROUP_SIZE         # w8 / w4: weights per scale

    @property
    def spec(self) -> str:
        """The canonical spec string (``bsr4x4@w4``), as the JSON and the table name the variant."""
        if self.structure is Structure.BSR:
            base = f"bsr{self.block[0]}x{self.block[1]}"
        elif self.structure is Structure.NM:
            base = f"{self.n}:{self.m}"
        elif self.structure is Structure.EIE and self.codebook_bits != DEFAULT_CODEBOOK_BITS:
            base = f"eie{self.codebook_bits}"
        else:
            base = self.structure.value
        return base if self.precision is None else f"{base}@{self.precision.value}"

    @property
    def is_sparse(self) -> bool:
        """True when the variant stores indices or masks."""
        return self.structure.is_sparse

    @property
    def density(self) -> Optional[float]:
        """The density the structure itself fixes (N/M for ``n:m``), else None (the workload's)."""
        return self.n / self.m if self.structure is Structure.NM else None

    def dtype(self, workload_dtype: DType) -> DType:
        """The activation (and, except for weight-only types, weight) element type of the variant."""
        if self.precision is None:
            return workload_dtype
        if self.precision.weight_only:
            return workload_dtype
        return DType(self.precision.value)


_BSR = re.compile(r"bsr(\d+)x(\d+)$")
_NM = re.compile(r"(\d+):(\d+)$")
_EIE = re.compile(r"eie(\d+)?$")
PLAIN = {s.value: s for s in (Structure.DENSE, Structure.THINNED, Structure.CSR, Structure.CSC, Structure.BITMASK,
                              Structure.AUTO)}


def parse_variant(text: str, group_size: int = DEFAULT_GROUP_SIZE) -> Variant:
    """One spec, ``STRUCTURE[@PRECISION]``; a bad one is an :class:`OptionError` naming it."""
    spec = text.strip().lower()
    structure_text, _, precision_text = spec.partition("@")
    precision = None
    if precision_text:
        try:
            precision = Precision(precision_text)
        except ValueError:
            raise OptionError("format", f"{text!r}: unknown type {precision_text!r} (use one of "
                              f"{', '.join(p.value for p in Precision)})") from None
    if group_size < 1:
        raise OptionError("group_size", f"{group_size} is not a positive number of weights")
    if structure_text in PLAIN:
        return Variant(PLAIN[structure_text], precision, group_size=group_size)
    if m := _BSR.match(structure_text):
        rows, cols = int(m.group(1)), int(m.group(2))
        if rows < 1 or cols < 1:
            raise OptionError("format", f"{text!r}: a block needs at least one row and one column")
        return Variant(Structure.BSR, precision, block=(rows, cols), group_size=group_size)
    if m := _NM.match(structure_text):
        n, m_ = int(m.group(1)), int(m.group(2))
        if not 0 < n <= m_:
            raise OptionError("format", f"{text!r}: N:M needs 0 < N <= M")
        return Variant(Structure.NM, precision, n=n, m=m_, group_size=group_size)
    if m := _EIE.match(structure_text):
        bits = int(m.group(1)) if m.group(1) else DEFAULT_CODEBOOK_BITS
        if not 1 <= bits <= 8:
            raise OptionError("format", f"{text!r}: a codebook of 1 to 8 bits")
        return Variant(Structure.EIE, precision, codebook_bits=bits, group_size=group_size)
    raise OptionError("format", f"{text!r}: unknown structure {structure_text!r} (use dense, thinned, csr, csc, "
                      "bsr<R>x<C>, <N>:<M>, bitmask, eie or auto, each optionally @fp32, @fp16, @bf16, @int8, "
                      "@w8 or @w4)")


def parse_variants(text: str, group_size: int = DEFAULT_GROUP_SIZE) -> tuple[Variant, ...]:
    """A comma-separated list of specs, in order, without repeats (the second of two equal specs
    is an error: the table would show the same variant twice)."""
    variants = []
    for part in text.split(","):
        if not part.strip():
            raise OptionError("format", f"{text!r}: an empty spec between commas")
        variant = parse_variant(part, group_size)
        if variant in variants:
            raise OptionError("format", f"{text!r}: {variant.spec} is given twice")
        variants.append(variant)
    return tuple(variants)


# --- variants as the pipeline runs them --------------------------------------------------------

#: The structures the plain storage formats (``dense``, ``csr``, ``csc``) encode.
_STORAGE = (Structure.DENSE, Structure.CSR, Structure.CSC)


def as_variant(item: Variant | StorageFormat | str) -> Variant:
    """A :class:`Variant` from a variant, a :class:`StorageFormat` (``dense``, ``csr``, ``csc``:
    the workload's type) or a spec string."""
    from .compression import StorageFormat

    if isinstance(item, Variant):
        return item
    if isinstance(item, StorageFormat):
        return Variant(Structure(item.value))
    return parse_variant(item)


def storage_format(variant: Variant) -> Optional[StorageFormat]:
    """The storage format of a ``dense``, ``csr`` or ``csc`` variant, else None."""
    from .compression import StorageFormat

    return StorageFormat(variant.structure.value) if variant.structure in _STORAGE else None


def is_legacy(variants: tuple[Variant, ...]) -> bool:
    """True for the variant lists ``run`` named before variants existed: at most one plain
    ``dense`` and at most one plain ``csr`` / ``csc`` (no type given). Their results keep the names
    ``dense`` and ``pruned`` (the tables, tests and docs written for them hold)."""
    plain = all(v.precision is None and v.structure in _STORAGE for v in variants)
    return plain and sum(v.is_sparse for v in variants) <= 1 and sum(not v.is_sparse for v in variants) <= 1


def result_name(variant: Variant, variants: tuple[Variant, ...]) -> str:
    """The name a variant's result carries: ``dense`` / ``pruned`` in a legacy list
    (:func:`is_legacy`), else its spec."""
    if is_legacy(variants):
        return "pruned" if variant.is_sparse else "dense"
    return variant.spec


#: What ``auto`` standing alone chooses from, in this order: every structure and type a profile
#: might run. Each is kept where the profile runs it and its encoding exists
#: (:func:`simulator.compress.precision.structure_available`, the pipeline's checks); a new
#: structure or type joins ``auto`` by being listed here.
AUTO_CANDIDATES = ("dense", "csr", "thinned", "2:4", "bsr4x4", "bitmask", "eie", "dense@fp16", "dense@int8",
                   "dense@w8", "dense@w4")
