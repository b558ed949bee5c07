"""The source's precompiled block decoder against the per-point rule (`decode_point`): the same
readings on random registers of every type, word order, scale and limit, and on the unusual
answers it hands to the general path (bits, strings, short answers, registers beyond 16 bits)."""

from __future__ import annotations

import math
import random

import pytest

from edge_agent.sources.modbus.decode import BlockDecoder, decode_block
from edge_agent.sources.modbus.plan import plan_reads
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.types import Quality, Reading

TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
ORDERS = ["ABCD", "DCBA", "BADC", "CDAB"]
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


def same(a: list[Reading], b: list[Reading]) -> bool:
    def key(r: Reading) -> tuple[object, ...]:
        return (r.point, r.quality, "nan" if math.isnan(r.value) else r.value)

    return [key(r) for r in a] == [key(r) for r in b]


def profile_of(points: list[dict[str, object]], order: str = "ABCD") -> ModbusProfile:
    return ModbusProfile.model_validate(
        {"profile_version": 1, "vendor": "test", "model": "random", "firmware": "1",
         "protocol": "modbus", "order": order, "points": points}
    )  # fmt: skip


def random_profile(rng: random.Random, n: int) -> ModbusProfile:
    points, address = [], 0
    for i in range(n):
        kind = rng.random()
        p: dict[str, object] = {"name": f"p{i}", "address": address}
        if kind < 0.1:
            p.update(type="uint16", bit=rng.randrange(16))
        elif kind < 0.15:
            p.update(type="string", length=2)
        else:
            p.update(type=rng.choice(TYPES), order=rng.choice([None, *ORDERS]))
            p["scale"] = rng.choice([1.0, 0.1, -2.5, 1e-3])
            p["offset"] = rng.choice([0.0, -40.0, 3.25])
            if rng.random() < 0.3:
                p["min"], p["max"] = -50.0, 50.0
        points.append(p)
        address += int(p.get("length") or WIDTH.get(str(p["type"]), 4)) + rng.choice([0, 0, 1, 3])
    return profile_of(points, rng.choice(ORDERS))


@pytest.mark.parametrize("seed", range(40))
def test_same_readings_as_the_per_point_rule(seed: int) -> None:
    rng = random.Random(seed)
    profile = random_profile(rng, rng.randrange(1, 20))
    numeric = [p for p in profile.points if p.type != "string"]
    for block in plan_reads(numeric, max_gap=4):
        decoder = BlockDecoder(block, profile)
        for _ in range(50):
            words = [rng.randrange(65536) for _ in range(block.count)]
            if rng.random() < 0.2:  # the patterns of NaN and inf in float registers
                words = [rng.choice([0x7FC0, 0x7F80, 0xFF80, 0, 0xFFFF]) for _ in words]
            assert same(decoder.decode(words), decode_block(block, words, profile))


def test_unusual_answers_take_the_general_path() -> None:
    profile = profile_of([
        {"name": "a", "address": 0, "type": "float32"},
        {"name": "b", "address": 2, "type": "int16", "min": 0},
    ])  # fmt: skip
    (block,) = plan_reads(profile.points, max_gap=0)
    decoder = BlockDecoder(block, profile)
    for words in ([0x4120, 0, 5], [0x4120, 0], [0x4120, 0, 70000], [0x4120, 0, -1], []):
        got = decoder.decode(words)
        assert same(got, decode_block(block, words, profile)), words
    # 10.0 and 5 are good; a short answer or a register beyond 16 bits makes what it touches bad.
    assert [r.quality for r in decoder.decode([0x4120, 0, 5])] == [Quality.GOOD] * 2
    assert decoder.decode([0x4120, 0, 5])[0].value == 10.0
    assert [r.quality for r in decoder.decode([0x4120, 0])] == [Quality.GOOD, Quality.BAD]
    assert [r.quality for r in decoder.decode([0x4120, 0, 70000])] == [Quality.GOOD, Quality.BAD]


def test_bit_tables_decode_as_before() -> None:
    profile = profile_of(
        [{"name": f"c{i}", "address": i, "table": "coil", "type": "bool"} for i in range(5)]
    )
    (block,) = plan_reads(profile.points, max_gap=0)
    bits = [1, 0, 1, 1, 0]
    got = BlockDecoder(block, profile).decode(bits)
    assert same(got, decode_block(block, bits, profile))
    assert [r.value for r in got] == [1.0, 0.0, 1.0, 1.0, 0.0]
