import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.sources.modbus.codec import (
    DecodeError,
    decode_raw,
    encode_raw,
    from_engineering,
    register_count,
    to_engineering,
)

ORDERS = ["ABCD", "DCBA", "BADC", "CDAB"]
INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


# Known wire layouts of float32 1.0 (bytes 3F 80 00 00) and int32 0x01020304 in each order.
@pytest.mark.parametrize(
    ("order", "float_regs", "int_regs"),
    [
        ("ABCD", [0x3F80, 0x0000], [0x0102, 0x0304]),
        ("CDAB", [0x0000, 0x3F80], [0x0304, 0x0102]),
        ("BADC", [0x803F, 0x0000], [0x0201, 0x0403]),
        ("DCBA", [0x0000, 0x803F], [0x0403, 0x0201]),
    ],
)
def test_known_layouts(order, float_regs, int_regs):
    assert decode_raw(float_regs, "float32", order) == 1.0
    assert encode_raw(1.0, "float32", order) == float_regs
    assert decode_raw(int_regs, "int32", order) == 0x01020304
    assert encode_raw(0x01020304, "int32", order) == int_regs


def test_16_bit_byte_order():
    assert decode_raw([0xFFFE], "int16", "ABCD") == -2
    assert decode_raw([0xFEFF], "int16", "DCBA") == -2
    assert decode_raw([0xFEFF], "int16", "BADC") == -2
    assert decode_raw([0xFFFE], "int16", "CDAB") == -2


def test_float64_cdab_is_word_reversal():
    wire = struct.pack(">d", math.pi)
    words = [int.from_bytes(wire[i : i + 2], "big") for i in range(0, 8, 2)]
    assert decode_raw(list(reversed(words)), "float64", "CDAB") == math.pi


@given(
    dtype=st.sampled_from(sorted(INT_RANGES)),
    order=st.sampled_from(ORDERS),
    data=st.data(),
)
def test_integer_roundtrip(dtype, order, data):
    lo, hi = INT_RANGES[dtype]
    value = data.draw(st.integers(lo, hi))
    regs = encode_raw(value, dtype, order)
    assert len(regs) == register_count(dtype)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_raw(regs, dtype, order) == float(value)


@given(
    value=st.floats(allow_nan=False, width=32),
    order=st.sampled_from(ORDERS),
)
def test_float32_roundtrip(value, order):
    assert decode_raw(encode_raw(value, "float32", order), "float32", order) == value


@given(value=st.floats(allow_nan=False), order=st.sampled_from(ORDERS))
def test_float64_roundtrip(value, order):
    assert decode_raw(encode_raw(value, "float64", order), "float64", order) == value


@given(dtype=st.sampled_from(sorted(INT_RANGES)), value=st.floats(-1e30, 1e30))
def test_integer_encoding_saturates(dtype, value):
    lo, hi = INT_RANGES[dtype]
    got = decode_raw(encode_raw(value, dtype), dtype)
    assert float(lo) <= got <= float(hi)  # decoded values are floats
    if lo <= value <= hi:
        assert abs(got - value) <= 0.5 or abs(value) > 2**52


@given(
    raw=st.floats(-1e6, 1e6),
    scale=st.floats(1e-3, 1e3),
    offset=st.floats(-1e3, 1e3),
)
def test_scale_offset_inverse(raw, scale, offset):
    assert math.isclose(
        from_engineering(to_engineering(raw, scale, offset), scale, offset),
        raw,
        rel_tol=1e-9,
        abs_tol=1e-6,
    )


def test_wrong_register_count_is_a_decode_error():
    with pytest.raises(DecodeError):
        decode_raw([1], "float32")
    with pytest.raises(DecodeError):
        decode_raw([0x1FFFF], "uint16")


def test_strings_and_bits():
    from edge_agent.sources.modbus.codec import decode_bit, decode_string, encode_string

    assert decode_string([0x4142, 0x4300]) == "ABC"
    assert decode_string([0x4241, 0x0043], "BADC") == "ABC"
    assert encode_string("ABC", 3, "BADC") == [0x4241, 0x0043, 0x0000]
    assert decode_bit(0x8001, 15) == 1.0 and decode_bit(0x8001, 1) == 0.0
    with pytest.raises(DecodeError):
        decode_string([0xFFFF])  # not ASCII
    with pytest.raises(DecodeError):
        decode_bit(70000, 0)
