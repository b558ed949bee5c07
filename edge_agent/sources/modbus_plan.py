"""Read planner: merge the registers of wanted points into as few requests as the protocol allows.

Points of one table are sorted by address and merged into one block while the block stays within
`max_registers` (125 for function codes 3/4) and the hole between two points is at most `max_gap`
registers (reading a few unused registers is cheaper than another round trip; devices that reject
reads of unmapped registers get `max_gap: 0`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.profiles import MAX_REGISTERS_PER_READ, ModbusPoint, Table


@dataclass(frozen=True, slots=True)
class ReadBlock:
    table: Table
    start: int
    count: int
    points: tuple[ModbusPoint, ...]

    def describe(self) -> str:
        names = ", ".join(p.name for p in self.points)
        return f"{self.table} registers {self.start}-{self.start + self.count - 1} ({names})"


def plan_reads(
    points: Iterable[ModbusPoint], max_gap: int, max_registers: int = MAX_REGISTERS_PER_READ
) -> list[ReadBlock]:
    blocks: list[ReadBlock] = []
    by_table: dict[Table, list[ModbusPoint]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    for table in sorted(by_table):
        current: list[ModbusPoint] = []
        start = end = 0  # end is exclusive
        for p in sorted(by_table[table], key=lambda p: p.address):
            p_end = p.address + p.count
            if current and p.address - end <= max_gap and max(end, p_end) - start <= max_registers:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
            current, start, end = [p], p.address, p_end
        if current:
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
    return blocks
