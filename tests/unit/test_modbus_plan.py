from edge_agent.sources.modbus.plan import plan_reads
from edge_agent.sources.modbus.profile import ModbusPoint


def pt(name, address, dtype="uint16", table="holding"):
    return ModbusPoint(name=name, address=address, type=dtype, table=table)


def test_contiguous_points_are_one_request():
    blocks = plan_reads([pt("a", 0, "float32"), pt("b", 2, "float32"), pt("c", 4)], max_gap=0)
    assert [(b.start, b.count) for b in blocks] == [(0, 5)]


def test_gap_within_limit_is_bridged_beyond_it_split():
    points = [pt("a", 0), pt("b", 10), pt("c", 30)]
    assert [(b.start, b.count) for b in plan_reads(points, max_gap=9)] == [(0, 11), (30, 1)]
    assert [(b.start, b.count) for b in plan_reads(points, max_gap=8)] == [(0, 1), (10, 1), (30, 1)]


def test_protocol_limit_of_125_registers():
    points = [pt(f"p{i}", i * 2, "float32") for i in range(100)]  # 200 registers, contiguous
    blocks = plan_reads(points, max_gap=0)
    assert [b.count for b in blocks] == [124, 76]
    assert all(b.count <= 125 for b in blocks)
    assert sum(len(b.points) for b in blocks) == 100


def test_tables_are_planned_separately_and_unsorted_input_is_fine():
    points = [pt("x", 5, table="input"), pt("b", 1), pt("a", 0), pt("y", 4, table="input")]
    blocks = plan_reads(points, max_gap=4)
    assert [(b.table, b.start, b.count) for b in blocks] == [("holding", 0, 2), ("input", 4, 2)]
    assert [p.name for p in blocks[0].points] == ["a", "b"]


def test_bit_tables_merge_up_to_2000_bits_separately_from_registers():
    coils = [
        ModbusPoint(name=f"c{i}", address=i * 100, type="bool", table="coil") for i in range(25)
    ]
    blocks = plan_reads([*coils, pt("h", 0)], max_gap=100)
    assert [(b.table, b.start, b.count) for b in blocks] == [
        ("coil", 0, 1901), ("coil", 2000, 401), ("holding", 0, 1)
    ]  # fmt: skip


def test_one_request_per_point_but_bits_of_one_register_share_it():
    points = [
        pt("a", 0), pt("b", 1),
        ModbusPoint(name="s0", address=5, bit=0), ModbusPoint(name="s3", address=5, bit=3),
    ]  # fmt: skip
    blocks = plan_reads(points, max_gap=16, merge=False)
    assert [(b.start, b.count, len(b.points)) for b in blocks] == [(0, 1, 1), (1, 1, 1), (5, 1, 2)]
