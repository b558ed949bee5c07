"""`run --record-dir`: the recorder's CSV gives replay the very input the agent's pipeline had."""

from __future__ import annotations

import logging
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import SignalConfig
from edge_agent.csvdata import format_time, parse_time, read_table
from edge_agent.recorder import CsvRecorder
from edge_agent.replay import batches as table_batches
from edge_agent.stream.assembler import Assembler
from edge_agent.types import Batch, Quality, Reading, Sample

SIGNALS = [SignalConfig(name=n, source="plc") for n in ("current", "pressure", "flow")]


def test_format_time_reads_back_as_the_same_float() -> None:
    rng = random.Random(4)
    for _ in range(20_000):
        ts = rng.uniform(1.0e9, 2.1e9)
        assert parse_time(format_time(ts)) == ts
    assert format_time(1_767_225_600.0) == "2026-01-01T00:00:00.000Z"
    assert format_time(1_767_225_600.05) == "2026-01-01T00:00:00.050Z"
    # Finer than microseconds, which datetime alone would cut off.
    assert parse_time("2026-01-01T00:00:00.1234567Z") == 1_767_225_600.1234567
    assert parse_time("2026-01-01T01:00:00.1234567+01:00") == 1_767_225_600.1234567


def test_millisecond_timestamps_parse_as_before() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        ts = round(rng.uniform(0, 2.1e9), 3)
        text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
        assert parse_time(text) == datetime.fromisoformat(text).timestamp()


def batches(n: int, period: float, seed: int = 0) -> list[Batch]:
    """A polled device as the agent sees it: an arbitrary start (not on a round millisecond),
    noisy values, a bad reading now and then, and a silence longer than the max age."""
    rng = np.random.default_rng(seed)
    t0 = 1_795_000_000.0 + float(rng.uniform(0, 1))
    out = []
    for k in range(n):
        if 200 <= k < 260:
            continue  # the device did not answer for a while
        readings = []
        for name in ("current", "pressure", "flow"):
            v = float(rng.normal(10, 1))
            q = Quality.BAD if rng.random() < 0.01 else Quality.GOOD
            readings.append(Reading(name, math.nan if q is Quality.BAD else v, q))
        out.append(Batch("plc", t0 + k * period, tuple(readings)))
    return out


def assemble(stream: list[Batch], period: float) -> list[Sample]:
    a = Assembler({("plc", s.name): i for i, s in enumerate(SIGNALS)}, period, 2.5 * period)
    return [s for b in stream for s in a.push(b)]


@pytest.mark.parametrize("period", [0.05, 1.0])
def test_replaying_the_recording_assembles_the_same_samples(tmp_path: Path, period: float) -> None:
    live = batches(1000, period)
    rec = CsvRecorder(tmp_path / "a.csv", SIGNALS, flush_rows=64)
    for b in live:
        rec.add(b)
    rec.close()
    table = read_table(tmp_path / "a.csv")
    assert table.columns == ["current", "pressure", "flow"]
    assert rec.stats.rows == len(live) == len(table.ts)
    replayed = [b for _ts, row in table_batches(SIGNALS, table) for b in row]
    a, b = assemble(live, period), assemble(replayed, period)
    assert len(a) == len(b) > 900
    for x, y in zip(a, b, strict=True):
        assert x.ts == y.ts and x.valid == y.valid
        if x.valid:
            np.testing.assert_array_equal(x.values, y.values)
    assert sum(not s.valid for s in a) > 5  # the bad readings and the silence were exercised


def test_two_sources_replay_the_same_samples(tmp_path: Path) -> None:
    # Two devices polled on their own schedules, half a period apart, one of them going quiet for
    # a while: each row holds only its own device's cells, so replay delivers what the agent got.
    sigs = [SignalConfig(name="a", source="s1"), SignalConfig(name="b", source="s2")]
    period, t0 = 0.05, 1_795_000_000.0 + 0.01234567
    live = []
    for k in range(400):
        live.append(Batch("s1", t0 + k * period, (Reading("a", float(k)),)))
        if not 200 <= k < 220:
            live.append(Batch("s2", t0 + (k + 0.5) * period, (Reading("b", -float(k)),)))
    rec = CsvRecorder(tmp_path / "a.csv", sigs)
    for b in live:
        rec.add(b)
    rec.close()
    table = read_table(tmp_path / "a.csv")
    replayed = [b for _ts, row in table_batches(sigs, table) for b in row]

    def assemble2(stream: list[Batch]) -> list[Sample]:
        a = Assembler({("s1", "a"): 0, ("s2", "b"): 1}, period, 2.5 * period)
        return [s for b in stream for s in a.push(b)]

    x, y = assemble2(live), assemble2(replayed)
    assert len(x) == len(y) > 380
    assert sum(not s.valid for s in x) > 5  # the quiet device made samples stale
    for p, q in zip(x, y, strict=True):
        assert p.ts == q.ts and p.valid == q.valid
        np.testing.assert_array_equal(p.values, q.values)


def test_rows_hold_exact_values_and_mark_bad_ones(tmp_path: Path) -> None:
    rec = CsvRecorder(tmp_path / "a.csv", SIGNALS)
    rec.add(Batch("plc", 1_795_000_000.123456789, (
        Reading("current", 0.1 + 0.2), Reading("pressure", 7.0, Quality.BAD),
        Reading("flow", math.inf), Reading("other", 1.0),
    )))  # fmt: skip
    rec.add(Batch("plc", 1_795_000_001.0, (
        Reading("current", np.float64(1 / 3)), Reading("pressure", 2.5, Quality.UNCERTAIN),
        Reading("flow", -0.0),
    )))  # fmt: skip
    rec.close()
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines == [
        "timestamp,current,pressure,flow",
        "2026-11-18T11:06:40.1234567Z,0.30000000000000004,bad,bad",
        "2026-11-18T11:06:41.000Z,0.3333333333333333,2.5,-0.0",
    ]
    t = read_table(tmp_path / "a.csv")
    assert t.ts.tolist() == [1_795_000_000.123456789, 1_795_000_001.0]
    assert t.values[0, 0] == 0.1 + 0.2 and t.values[1, 0] == 1 / 3
    assert math.isnan(t.values[0, 1]) and math.isnan(t.values[0, 2])
    assert t.bad.tolist() == [[False, True, True], [False, False, False]]


def test_signals_a_batch_did_not_carry_are_empty_and_bad_ones_marked(tmp_path: Path) -> None:
    rec = CsvRecorder(tmp_path / "a.csv", SIGNALS)
    full = (Reading("current", 1.0), Reading("pressure", 2.0), Reading("flow", 3.0))
    rec.add(Batch("plc", 10.0, full))
    rec.add(Batch("plc", 11.0, (Reading("flow", 4.0),)))
    rec.add(Batch("plc", 12.0, (Reading("flow", 5.0), Reading("current", 1.0, Quality.BAD))))
    rec.add(Batch("plc", 11.5, full))  # older than the previous row: left out
    rec.add(Batch("plc", math.inf, full))
    rec.close()
    assert (tmp_path / "a.csv").read_text().splitlines()[2:] == [
        "1970-01-01T00:00:11.000Z,,,4.0",
        "1970-01-01T00:00:12.000Z,bad,,5.0",
    ]
    assert rec.stats.out_of_order == 2
    t = read_table(tmp_path / "a.csv")
    assert t.bad[:, 0].tolist() == [False, False, True] and not t.bad[:, 1:].any()
    assert np.isnan(t.values[1:, :2]).all()


def test_an_earlier_run_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "pump-1.csv"
    for run in range(2):
        rec = CsvRecorder(path, SIGNALS)
        rec.add(Batch("plc", 100.0 + run, (Reading("current", float(run)),)))
        rec.close()
    assert len(read_table(path).ts) == 1
    earlier = [p for p in path.parent.iterdir() if p != path]
    assert len(earlier) == 1 and earlier[0].name.startswith("pump-1.")
    assert read_table(earlier[0]).ts.tolist() == [100.0]


class FullDisk:
    """Stands in for the open file: writes half of what it is given, then fails."""

    def __init__(self, fh) -> None:  # type: ignore[no-untyped-def]
        self.fh = fh

    def write(self, text: str) -> int:
        self.fh.write(text[: len(text) // 2])
        self.fh.flush()
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        self.fh.close()


def test_write_errors_are_counted_logged_once_and_the_file_stays_readable(
    tmp_path: Path, caplog
) -> None:
    path = tmp_path / "a.csv"
    rec = CsvRecorder(path, SIGNALS, flush_rows=2)
    row = (Reading("current", 1.0), Reading("pressure", 2.0), Reading("flow", 3.0))
    ts = iter(range(1000, 2000))
    for _ in range(4):
        rec.add(Batch("plc", float(next(ts)), row))
    assert rec.stats.rows == 4
    rec._fh = FullDisk(rec._fh)  # type: ignore[assignment]
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            rec.add(Batch("plc", float(next(ts)), row))
        assert rec.stats.write_errors == 1 and rec.stats.dropped_rows == 2
        for _ in range(4):
            rec.add(Batch("plc", float(next(ts)), row))
        rec.close()
    assert caplog.text.count("failed (No space left on device)") == 1
    assert "writing again; 2 row(s) lost" in caplog.text
    t = read_table(path)  # the half-written row was cut off
    assert t.ts.tolist() == [1000.0, 1001.0, 1002.0, 1003.0, 1006.0, 1007.0, 1008.0, 1009.0]
    assert rec.stats.rows == 8


def test_a_directory_that_cannot_be_created_does_not_raise(tmp_path: Path, caplog) -> None:
    (tmp_path / "file").write_text("not a directory")
    rec = CsvRecorder(tmp_path / "file" / "a.csv", SIGNALS, flush_rows=1)
    with caplog.at_level(logging.ERROR):
        for k in range(3):
            rec.add(Batch("plc", float(k), (Reading("current", 1.0),)))
        rec.close()
    assert rec.stats.write_errors == 3 and rec.stats.dropped_rows == 3 and rec.stats.rows == 0
    assert caplog.text.count("recording") == 1


def test_replay_of_an_asset_the_config_does_not_have_is_a_config_error(tmp_path: Path) -> None:
    from edge_agent.config import ConfigError, load_config
    from edge_agent.replay_cli import main, pipeline_for_asset
    from tests.conftest import agent_config

    path = agent_config(tmp_path / "a.yaml", sim_port=502, broker_port=1883, bundle=tmp_path)
    with pytest.raises(ConfigError, match=r"no asset 'pump-2'.*have pump-1"):
        pipeline_for_asset(load_config(path), "pump-2")
    data = tmp_path / "d.csv"
    data.write_text("timestamp,x\n1,2\n")
    assert main(None, data, tmp_path / "o.csv", None, None, path, "pump-2") == 2
