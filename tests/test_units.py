"""Readable quantities: parsing sizes, rates, frequencies, times and FLOP/s, and formatting."""

from __future__ import annotations

import pytest

from simulator.base import units
from simulator.base.units import Quantity, UnitError, format_bytes, format_seconds, parse, parse_bytes

# --- sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("1 B", 1),
    ("1 KiB", 1024),
    ("1 kB", 1000),
    ("128 KiB", 131072),
    ("15 MiB", 15 * 2**20),
    ("2 GiB", 2 * 2**30),
    ("1 MB", 10**6),
    ("0.5 KiB", 512),
    ("64B", 64),
    ("  32 KiB  ", 32768),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_binary_and_si_prefixes_are_distinct():
    assert parse_bytes("1 KiB") == 1024
    assert parse_bytes("1 kB") == 1000
    assert parse_bytes("1 GiB") != parse_bytes("1 GB")


def test_parse_bytes_returns_int():
    assert type(parse_bytes("4 KiB")) is int


# --- rates, frequencies, times, FLOP/s -----------------------------------------------------

@pytest.mark.parametrize("text, quantity, expected", [
    ("14.9 GB/s", Quantity.BYTES_PER_S, 14.9e9),
    ("1 GiB/s", Quantity.BYTES_PER_S, 2.0**30),
    ("336.5 GB/s", Quantity.BYTES_PER_S, 336.5e9),
    ("1 TB/s", Quantity.BYTES_PER_S, 1e12),
    ("500 B/s", Quantity.BYTES_PER_S, 500.0),
    ("852 MHz", Quantity.HZ, 852e6),
    ("3.5 GHz", Quantity.HZ, 3.5e9),
    ("1 kHz", Quantity.HZ, 1e3),
    ("50 Hz", Quantity.HZ, 50.0),
    ("300 ns", Quantity.SECONDS, 300e-9),
    ("5 us", Quantity.SECONDS, 5e-6),
    ("5 \u00b5s", Quantity.SECONDS, 5e-6),   # MICRO SIGN
    ("2 ms", Quantity.SECONDS, 2e-3),
    ("1 s", Quantity.SECONDS, 1.0),
    ("10 ps", Quantity.SECONDS, 10e-12),
    ("0 ns", Quantity.SECONDS, 0.0),
    ("327 GFLOP/s", Quantity.FLOP_PER_S, 327e9),
    ("6.6 TFLOP/s", Quantity.FLOP_PER_S, 6.6e12),
    ("1 MFLOP/s", Quantity.FLOP_PER_S, 1e6),
    ("2 GOP/s", Quantity.FLOP_PER_S, 2e9),
])
def test_parse_rates_frequencies_times_and_flop_rates(text, quantity, expected):
    assert parse(text, quantity) == pytest.approx(expected, rel=1e-12)


def test_us_and_micro_sign_agree():
    assert parse("5 us", Quantity.SECONDS) == parse("5 \u00b5s", Quantity.SECONDS)


def test_exponent_notation():
    assert parse("1.5e3 MHz", Quantity.HZ) == pytest.approx(1.5e9)


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, quantity", [
    ("128", Quantity.BYTES),               # number without unit
    ("14.9", Quantity.BYTES_PER_S),
    ("128 furlongs", Quantity.BYTES),      # unknown unit
    ("5 GHz", Quantity.BYTES),             # wrong kind
    ("14.9 GB", Quantity.BYTES_PER_S),     # size where a rate is due
    ("300 ns", Quantity.HZ),
    ("852 MHz", Quantity.SECONDS),
    ("327 GB/s", Quantity.FLOP_PER_S),
    ("5 ks", Quantity.SECONDS),
    ("1 XiB", Quantity.BYTES),
    ("KiB", Quantity.BYTES),               # unit without number
    ("one KiB", Quantity.BYTES),
    ("", Quantity.BYTES),
    ("1 2 KiB", Quantity.BYTES),
    ("1e400 B", Quantity.BYTES),           # not finite
])
def test_bad_text_raises_unit_error_quoting_it(text, quantity):
    with pytest.raises(UnitError) as info:
        parse(text, quantity)
    assert repr(text) in str(info.value)


def test_wrong_kind_names_the_unit():
    with pytest.raises(UnitError, match="unknown unit 'GHz'"):
        parse_bytes("5 GHz")


@pytest.mark.parametrize("text", ["1.5 B", "0.3 KiB", "1.0001 kB"])
def test_fractional_bytes_are_refused(text):
    with pytest.raises(UnitError, match="whole number of bytes") as info:
        parse_bytes(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("value", [128, 14.9, 0])
def test_bare_number_has_no_unit(value):
    with pytest.raises(UnitError, match="has no unit") as info:
        parse(value, Quantity.BYTES)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [None, True, ["1 KiB"], {"size": "1 KiB"}, b"1 KiB"])
def test_non_string_is_refused(value):
    with pytest.raises(UnitError) as info:
        parse(value, Quantity.BYTES)
    assert repr(value) in str(info.value)


def test_unit_error_is_a_value_error():
    assert issubclass(UnitError, ValueError)


def test_error_suggests_an_example_of_the_right_kind():
    with pytest.raises(UnitError, match="GB/s"):
        parse("14.9 furlongs", Quantity.BYTES_PER_S)


# --- formatting ------------------------------------------------------------------------------

@pytest.mark.parametrize("n_bytes, text", [
    (0, "0 B"),
    (100, "100 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (3 * 2**20, "3.0 MiB"),
    (12 * 2**30, "12.0 GiB"),
])
def test_format_bytes(n_bytes, text):
    assert format_bytes(n_bytes) == text


@pytest.mark.parametrize("n_bytes, text", [(2**20 - 1, "1.0 MiB"), (2**30 - 1, "1.0 GiB")])
def test_format_bytes_rounds_before_picking_the_unit(n_bytes, text):
    # 2**20 - 1 B once printed as '1024.0 KiB'
    assert format_bytes(n_bytes) == text


@pytest.mark.parametrize("seconds, text", [
    (2.5, "2.5 s"),
    (1.0, "1 s"),
    (3.2e-3, "3.2 ms"),
    (412e-6, "412 us"),
    (35.1e-6, "35.1 us"),
    (300e-9, "300 ns"),
    (0.0, "0 ns"),
])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.parametrize("seconds", [1.5, 2e-3, 412e-6, 300e-9])
def test_format_seconds_round_trips_through_parse(seconds):
    assert parse(format_seconds(seconds), Quantity.SECONDS) == pytest.approx(seconds, rel=1e-3)


@pytest.mark.parametrize("seconds, text", [(0.9996, "1 s"), (999.6e-6, "1 ms"), (999.6e-9, "1 us")])
def test_format_seconds_rounds_before_picking_the_unit(seconds, text):
    # 0.9996 s once printed as '1e+03 ms'
    assert format_seconds(seconds) == text


def test_module_imports_nothing_from_the_project():
    source = open(units.__file__, encoding="utf-8").read()
    assert "from ." not in source and "import simulator" not in source
