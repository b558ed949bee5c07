import math
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.sources.opcua.values import quality_of_status, to_reading
from edge_agent.types import Quality


def test_status_severity_bits_map_to_quality():
    assert quality_of_status(0x00000000) is Quality.GOOD
    assert quality_of_status(0x408F0000) is Quality.UNCERTAIN  # UncertainLastUsableValue
    assert quality_of_status(0x808B0000) is Quality.BAD  # BadSensorFailure
    assert quality_of_status(0xC0000000) is Quality.BAD  # reserved severity counts as bad


def test_values_and_timestamps():
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    r = to_reading("p", True, 0, ts.replace(tzinfo=None))  # asyncua: naive UTC
    assert (r.value, r.quality, r.source_ts) == (1.0, Quality.GOOD, ts.timestamp())
    assert to_reading("p", "text", 0, None).quality is Quality.BAD
    assert to_reading("p", float("inf"), 0, None).quality is Quality.BAD
    assert to_reading("p", 3, 0x80000000, None) == to_reading("p", 3, 0x80000000, None)


@given(value=st.one_of(st.none(), st.text(), st.floats(), st.integers(), st.lists(st.integers())),
       status=st.integers(0, 2**32 - 1))  # fmt: skip
def test_never_raises_and_nonfinite_is_bad(value: object, status: int) -> None:
    r = to_reading("p", value, status, None)
    assert r.quality is Quality.BAD or math.isfinite(r.value)
