"""Lay out simulated values in registers (and bits) exactly as a device profile describes them."""

from __future__ import annotations

import math

from edge_agent.sources.modbus.codec import (
    decode_bit,
    decode_raw,
    encode_raw,
    encode_string,
    from_engineering,
    to_engineering,
)
from edge_agent.sources.modbus.profile import BIT_TABLES, ModbusProfile


class RegisterImage:
    """Arrays for the four Modbus tables covering every point of a profile. The bit tables hold one
    0/1 entry per bit address."""

    def __init__(self, profile: ModbusProfile) -> None:
        self.profile = profile
        size = {"coil": 0, "discrete": 0, "holding": 0, "input": 0}
        for p in profile.points:
            size[p.table] = max(size[p.table], p.address + p.count)
        self.tables: dict[str, list[int]] = {t: [0] * max(n, 1) for t, n in size.items()}

    def write(self, values: dict[str, float]) -> None:
        for p in self.profile.points:
            if p.name not in values:
                continue
            if p.table in BIT_TABLES:
                self.tables[p.table][p.address] = int(bool(values[p.name]))
                continue
            raw = from_engineering(values[p.name], p.scale, p.offset)
            if p.bit is not None:
                reg = self.tables[p.table][p.address] & ~(1 << p.bit)
                self.tables[p.table][p.address] = reg | (int(bool(raw)) << p.bit)
                continue
            assert p.type != "bool" and p.type != "string"
            regs = encode_raw(raw, p.type, self.profile.order_of(p))
            self.tables[p.table][p.address : p.address + p.count] = regs

    def write_text(self, values: dict[str, str]) -> None:
        for p in self.profile.points:
            if p.type == "string" and p.name in values:
                regs = encode_string(values[p.name], p.count, self.profile.order_of(p))
                self.tables[p.table][p.address : p.address + p.count] = regs

    def read_back(self) -> dict[str, float]:
        """What a client decoding with the profile will see (quantization included)."""
        out = {}
        for p in self.profile.points:
            words = self.tables[p.table][p.address : p.address + p.count]
            if p.type == "string":
                continue
            if p.table in BIT_TABLES:
                raw = float(words[0])
            elif p.bit is not None:
                raw = decode_bit(words[0], p.bit)
            else:
                assert p.type != "bool"
                raw = decode_raw(words, p.type, self.profile.order_of(p))
            out[p.name] = to_engineering(raw, p.scale, p.offset)
        return out


def quantize(profile: ModbusProfile, values: dict[str, float]) -> dict[str, float]:
    image = RegisterImage(profile)
    image.write(values)
    out = image.read_back()
    return {k: (v if math.isfinite(v) else math.nan) for k, v in out.items()}
