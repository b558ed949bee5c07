"""Pure conversions between Modbus registers and engineering values.

Byte/word order codes name where the bytes of the big-endian value A B C D land on the wire:
ABCD big-endian (Modbus default), DCBA little-endian, BADC bytes swapped inside each word,
CDAB words swapped (common on PLCs that store 32-bit values low word first). For 16-bit types
only the byte order inside the word matters (ABCD/CDAB keep it, DCBA/BADC swap it).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal

DataType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
Order = Literal["ABCD", "DCBA", "BADC", "CDAB"]

STRUCT_FORMATS: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "int64": (">q", 4),
    "uint64": (">Q", 4),
    "float32": (">f", 2),
    "float64": (">d", 4),
}


class DecodeError(ValueError):
    """Registers that cannot be turned into a value (wrong count, not 16-bit)."""


def register_count(dtype: DataType) -> int:
    return STRUCT_FORMATS[dtype][1]


def reorder(data: bytes, order: Order) -> bytes:
    """Map between wire bytes and canonical big-endian bytes; each mapping is its own inverse."""
    if order == "ABCD":
        return data
    if order == "DCBA":
        return data[::-1]
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order == "BADC":
        return b"".join(w[::-1] for w in words)
    return b"".join(reversed(words))  # CDAB


def decode_raw(registers: Sequence[int], dtype: DataType, order: Order = "ABCD") -> float:
    """Registers as read from the wire → raw numeric value (before scale and offset)."""
    fmt, count = STRUCT_FORMATS[dtype]
    if len(registers) != count:
        raise DecodeError(f"{dtype} needs {count} registers, got {len(registers)}")
    try:
        wire = b"".join(int(r).to_bytes(2, "big") for r in registers)
    except OverflowError as exc:
        raise DecodeError(f"register value out of 16-bit range in {list(registers)}") from exc
    return float(struct.unpack(fmt, reorder(wire, order))[0])


def encode_raw(raw: float, dtype: DataType, order: Order = "ABCD") -> list[int]:
    """Raw numeric value → registers on the wire. Integer types are rounded and saturated."""
    fmt, _ = STRUCT_FORMATS[dtype]
    value: float | int
    if dtype.startswith("float"):
        value = float(raw)
    else:
        bits = struct.calcsize(fmt) * 8
        lo, hi = (
            (0, 2**bits - 1) if dtype.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        value = 0 if math.isnan(raw) else int(min(max(round(raw), lo), hi))
    wire = reorder(struct.pack(fmt, value), order)
    return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]


def to_engineering(raw: float, scale: float, offset: float) -> float:
    return raw * scale + offset


def from_engineering(value: float, scale: float, offset: float) -> float:
    return (value - offset) / scale


def decode_bit(register: int, bit: int) -> float:
    """One bit (0 = least significant) of a 16-bit register as 0.0 or 1.0."""
    if not 0 <= register <= 0xFFFF:
        raise DecodeError(f"register value {register} out of 16-bit range")
    return float((register >> bit) & 1)


def decode_string(registers: Sequence[int], order: Order = "ABCD") -> str:
    """Registers holding ASCII text, two characters per register. Devices that store the second
    character first (BADC/DCBA) get the bytes of each word swapped. Trailing NULs and spaces are
    padding."""
    try:
        wire = b"".join(int(r).to_bytes(2, "big") for r in registers)
    except OverflowError as exc:
        raise DecodeError(f"register value out of 16-bit range in {list(registers)}") from exc
    if order in ("BADC", "DCBA"):
        wire = b"".join(wire[i : i + 2][::-1] for i in range(0, len(wire), 2))
    try:
        return wire.decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"registers {list(registers)} are not ASCII text") from exc


def encode_string(text: str, length: int, order: Order = "ABCD") -> list[int]:
    """Text → `length` registers, NUL-padded (truncated if longer)."""
    wire = text.encode("ascii", errors="replace")[: 2 * length].ljust(2 * length, b"\x00")
    if order in ("BADC", "DCBA"):
        wire = b"".join(wire[i : i + 2][::-1] for i in range(0, len(wire), 2))
    return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]
