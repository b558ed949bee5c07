"""Read planner: merge the registers of wanted points into as few requests as the protocol allows.

Points of one table are sorted by address and merged into one block while the block stays within
the protocol limit (125 registers for function codes 3/4, 2000 bits for 1/2) and the hole between
two points is at most `max_gap` registers/bits (reading a few unused registers is cheaper than
another round trip; devices that reject reads of unmapped registers get `max_gap: 0`). Devices
that reject any multi-point read get `merge: False`: one request per point.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.sources.modbus.profile import (
    BIT_TABLES,
    MAX_BITS_PER_READ,
    MAX_REGISTERS_PER_READ,
    ModbusPoint,
    Table,
)


@dataclass(frozen=True, slots=True)
class ReadBlock:
    table: Table
    start: int
    count: int
    points: tuple[ModbusPoint, ...]

    def describe(self) -> str:
        names = ", ".join(p.name for p in self.points)
        unit = "bits" if self.table in BIT_TABLES else "registers"
        return f"{self.table} {unit} {self.start}-{self.start + self.count - 1} ({names})"


def plan_reads(
    points: Iterable[ModbusPoint],
    max_gap: int,
    max_registers: int = MAX_REGISTERS_PER_READ,
    max_bits: int = MAX_BITS_PER_READ,
    merge: bool = True,
) -> list[ReadBlock]:
    blocks: list[ReadBlock] = []
    by_table: dict[Table, list[ModbusPoint]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    for table in sorted(by_table):
        limit = max_bits if table in BIT_TABLES else max_registers
        current: list[ModbusPoint] = []
        start = end = 0  # end is exclusive
        for p in sorted(by_table[table], key=lambda p: (p.address, p.bit or 0)):
            p_end = p.address + p.count
            # Bits of the same register always share its read, even without merging.
            same_register = bool(current) and p.address < end and p.bit is not None
            mergeable = merge and p.address - end <= max_gap and max(end, p_end) - start <= limit
            if current and (same_register or mergeable):
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
            current, start, end = [p], p.address, p_end
        if current:
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
    return blocks
