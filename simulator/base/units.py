"""Readable quantities: ``128 KiB``, ``14.9 GB/s``, ``852 MHz``, ``300 ns``, ``6.1 TFLOP/s``.

SI prefixes (k, M, G, T) are powers of 1000 and binary prefixes (Ki, Mi, Gi, Ti) powers
of 1024; they are never mixed up. This module imports nothing from the project.
"""

from __future__ import annotations

import enum
import math
import re

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}
# "\u00b5s" and "\u03bcs": the micro sign or the Greek mu
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ns": 1e-9, "ps": 1e-12}

_NUMBER = r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>\S*)\s*$")


class Quantity(enum.Enum):
    """The kinds of quantity a profile or workload field can hold, with their base unit."""

    BYTES = "B"
    BYTES_PER_S = "B/s"
    HZ = "Hz"
    SECONDS = "s"
    FLOP_PER_S = "FLOP/s"
    JOULES = "J"
    WATTS = "W"


class UnitError(ValueError):
    """A quantity string that cannot be read; the message quotes it."""


def _split(text: object, quantity: Quantity) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UnitError(f"expected a {quantity.value} quantity such as {_EXAMPLES[quantity]!r}, got {text!r}")
    if isinstance(text, (int, float)):
        raise UnitError(f"{text!r} has no unit; write it as e.g. {_EXAMPLES[quantity]!r}")
    match = _PATTERN.match(text)
    if not match:
        raise UnitError(f"{text!r} is not a number followed by a unit such as {_EXAMPLES[quantity]!r}")
    return float(match["number"]), match["unit"]


def _prefixed(unit: str, base: str) -> float | None:
    """Scale of ``unit`` if it is ``base`` with an SI or binary prefix, else None."""
    if not unit.endswith(base):
        return None
    prefix = unit[: len(unit) - len(base)]
    if prefix in _BINARY:
        return _BINARY[prefix]
    if prefix in _SI:
        return _SI[prefix]
    return None


_EXAMPLES = {
    Quantity.BYTES: "128 KiB",
    Quantity.BYTES_PER_S: "14.9 GB/s",
    Quantity.HZ: "852 MHz",
    Quantity.SECONDS: "300 ns",
    Quantity.FLOP_PER_S: "327 GFLOP/s",
    Quantity.JOULES: "640 pJ",
    Quantity.WATTS: "5.1 W",
}

# small SI prefixes, for energies and powers (pJ, nJ, mW ...)
_SMALL = {"": 1.0, "m": 1e-3, "u": 1e-6, "\u00b5": 1e-6, "\u03bc": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15,
          "k": 1e3, "M": 1e6}


def _small_prefixed(unit: str, base: str) -> float | None:
    if not unit.endswith(base):
        return None
    return _SMALL.get(unit[: len(unit) - len(base)])


def parse(text: object, quantity: Quantity) -> float:
    """Parse ``text`` as ``quantity`` and return it in the base unit (B, B/s, Hz, s, FLOP/s).

    Raises :class:`UnitError` naming the text when the number or the unit is wrong.
    """
    number, unit = _split(text, quantity)
    if quantity is Quantity.SECONDS:
        scale = _TIME.get(unit)
    elif quantity is Quantity.BYTES:
        scale = _prefixed(unit, "B")
    elif quantity is Quantity.BYTES_PER_S:
        scale = _prefixed(unit, "B/s")
    elif quantity is Quantity.HZ:
        scale = _prefixed(unit, "Hz")
    elif quantity is Quantity.JOULES:
        scale = _small_prefixed(unit, "J")
    elif quantity is Quantity.WATTS:
        scale = _small_prefixed(unit, "W")
    else:
        scale = _prefixed(unit, "FLOP/s")
        if scale is None:
            scale = _prefixed(unit, "OP/s")
    if scale is None:
        raise UnitError(f"{text!r}: unknown unit {unit!r} for a {quantity.value} quantity "
                        f"(write e.g. {_EXAMPLES[quantity]!r})")
    value = number * scale
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite quantity")
    return value


def parse_bytes(text: object) -> int:
    """``'128 KiB'`` -> 131072. Fractional byte counts are refused."""
    value = parse(text, Quantity.BYTES)
    if value != int(value):
        raise UnitError(f"{text!r} is not a whole number of bytes")
    return int(value)


def format_bytes(n_bytes: float) -> str:
    """Binary-prefixed byte count for tables: ``1.5 MiB``."""
    for prefix, scale in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        lower = scale / 1024   # use this prefix once the next smaller one would print 1024 or more
        if round(abs(n_bytes) / lower, 1 if lower > 1 else 0) >= 1024:
            return f"{n_bytes / scale:.1f} {prefix}B"
    return f"{n_bytes:.0f} B"


def format_seconds(seconds: float) -> str:
    """Time with a unit that keeps three significant figures: ``412 us``, ``3.2 ms``."""
    rounded = float(f"{seconds:.3g}")   # round first, so 0.9996 s reads "1 s", not "1e+03 ms"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(rounded) >= scale:
            return f"{rounded / scale:.3g} {unit}"
    return f"{rounded / 1e-9:.3g} ns"


def _alternatives(scales: dict[str, float], bases: tuple[str, ...]) -> str:
    """A regex group matching any of ``scales``' prefixes followed by any of ``bases``."""
    prefixes = "|".join(re.escape(p) for p in sorted(scales, key=len, reverse=True) if p)
    units = "|".join(re.escape(b) for b in bases)
    return f"(?:{prefixes})?(?:{units})"


def unit_pattern(quantity: Quantity) -> str:
    """A regular expression (JSON Schema / ECMA-262 dialect too) of the strings :func:`parse`
    reads as ``quantity``, built from the same prefix tables, so an editor's check and the
    loader's agree on the units (the sign and range are left to the loader's message)."""
    if quantity is Quantity.SECONDS:
        unit = "(?:" + "|".join(re.escape(u) for u in sorted(_TIME, key=len, reverse=True)) + ")"
    elif quantity in (Quantity.JOULES, Quantity.WATTS):
        unit = _alternatives(_SMALL, (quantity.value,))
    else:
        bases = ("FLOP/s", "OP/s") if quantity is Quantity.FLOP_PER_S else (quantity.value,)
        unit = _alternatives({**_SI, **_BINARY}, bases)
    return rf"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*{unit}\s*$"


def unit_description(quantity: Quantity) -> str:
    """How a ``quantity`` is written, for a schema's description."""
    prefixes = {Quantity.SECONDS: "units s, ms, us, ns, ps",
                Quantity.JOULES: "prefixes f, p, n, u, m, k, M", Quantity.WATTS: "prefixes f, p, n, u, m, k, M"}
    how = prefixes.get(quantity, "SI prefixes k, M, G, T, P are powers of 1000; Ki, Mi, Gi, Ti powers of 1024")
    return f"a number and a unit, e.g. {_EXAMPLES[quantity]!r} ({how})"


def example(quantity: Quantity) -> str:
    """A readable value of ``quantity`` (``'128 KiB'``)."""
    return _EXAMPLES[quantity]
_FORMAT_UNITS = {
    Quantity.BYTES_PER_S: "B/s",
    Quantity.HZ: "Hz",
    Quantity.FLOP_PER_S: "FLOP/s",
}


def format_quantity(value: float, quantity: Quantity, digits: int = 4) -> str:
    """``value`` (base unit) as a profile field writes it, to ``digits`` significant figures, in a
    form :func:`parse` reads back: ``52.6 GB/s``, ``2.445 GHz``, ``1.733 us``, ``156.5 GFLOP/s``.
    Bytes stay exact (``18418 KiB``, ``48 B``): a cache size must be a whole number of sets."""
    if quantity is Quantity.BYTES:
        count = int(round(value))
        for prefix, scale_bytes in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if count and count % scale_bytes == 0:
                return f"{count // scale_bytes} {prefix}B"
        return f"{count} B"
    steps: tuple[tuple[str, float], ...]
    if quantity is Quantity.SECONDS:
        steps = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("ps", 1e-12))
    elif quantity in _FORMAT_UNITS:
        base = _FORMAT_UNITS[quantity]
        steps = tuple((f"{p}{base}", _SI[p]) for p in ("T", "G", "M", "k", ""))
    else:
        raise ValueError(f"no formatting for {quantity.value} quantities")
    rounded = float(f"{value:.{digits}g}")
    for unit, scale in steps:
        if abs(rounded) >= scale:
            return f"{rounded / scale:.{digits}g} {unit}"
    unit, scale = steps[-1]
    return f"{rounded / scale:.{digits}g} {unit}"
