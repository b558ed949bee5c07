"""Lay out simulated values in registers exactly as a device profile describes them."""

from __future__ import annotations

import math

from edge_agent.profiles import DeviceProfile
from edge_agent.sources.modbus_codec import (
    decode_raw,
    encode_raw,
    from_engineering,
    to_engineering,
)


class RegisterImage:
    """Holding and input register arrays covering every point of a profile."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        size = {"holding": 0, "input": 0}
        for p in profile.points:
            size[p.table] = max(size[p.table], p.address + p.count)
        self.tables: dict[str, list[int]] = {t: [0] * max(n, 1) for t, n in size.items()}

    def write(self, values: dict[str, float]) -> None:
        for p in self.profile.points:
            if p.name not in values:
                continue
            raw = from_engineering(values[p.name], p.scale, p.offset)
            regs = encode_raw(raw, p.type, self.profile.order_of(p))
            self.tables[p.table][p.address : p.address + p.count] = regs

    def read_back(self) -> dict[str, float]:
        """What a client decoding with the profile will see (quantization included)."""
        out = {}
        for p in self.profile.points:
            regs = self.tables[p.table][p.address : p.address + p.count]
            raw = decode_raw(regs, p.type, self.profile.order_of(p))
            out[p.name] = to_engineering(raw, p.scale, p.offset)
        return out


def quantize(profile: DeviceProfile, values: dict[str, float]) -> dict[str, float]:
    image = RegisterImage(profile)
    image.write(values)
    out = image.read_back()
    return {k: (v if math.isfinite(v) else math.nan) for k, v in out.items()}
