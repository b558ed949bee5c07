"""Data-quality episodes: raised once, cleared once, windows skipped in between."""

from edge_agent.stream.assembler import Assembler
from edge_agent.stream.quality import DataQualityMonitor
from edge_agent.stream.windows import WindowBuffer
from edge_agent.types import Batch, DataQualityEventKind, Quality, Reading

COLS = {("plc", "a"): 0, ("plc", "b"): 1}


def run(batches, grace=10):  # type: ignore[no-untyped-def]
    asm = Assembler(COLS, period=1.0, max_age=1.5)
    mon = DataQualityMonitor("pump-1", ["a", "b"], grace=grace)
    win = WindowBuffer(3, 1, 2)
    events, windows = [], []
    for b in batches:
        for s in asm.push(b):
            if (e := mon.update(s)) is not None:
                events.append(e)
            if win.push(s) is not None:
                windows.append(s.ts)
    return events, windows


def good(t: float) -> Batch:
    return Batch("plc", t, (Reading("a", t), Reading("b", t)))


def test_stale_then_bad_is_one_episode_raised_and_cleared_once():
    batches = [good(t) for t in range(5)]
    # a stops updating for 4 s (stale), then comes back bad for 2 s, then good again.
    batches += [Batch("plc", t, (Reading("b", t),)) for t in range(5, 9)]
    batches += [Batch("plc", t, (Reading("a", t, Quality.BAD), Reading("b", t))) for t in (9, 10)]
    batches += [good(t) for t in range(11, 16)]
    events, windows = run(batches)
    assert [e.event for e in events] == [DataQualityEventKind.RAISED, DataQualityEventKind.CLEARED]
    raised, cleared = events
    # a was last updated at 4; at 6 it is 2 s old (> max_age 1.5).
    assert raised.ts == 6.0 and raised.issues == (("a", "stale"),)
    assert cleared.ts == 11.0 and cleared.invalid_samples == 5
    # No window contains an instant of the episode (6..10): the first after it ends at 13.
    assert [t for t in windows if 6 <= t < 13] == []
    assert 13.0 in windows and 5.0 in windows


def test_start_up_gap_is_not_an_episode_unless_it_lasts():
    late_b = [Batch("plc", t, (Reading("a", t),)) for t in range(3)] + [good(t) for t in (3, 4)]
    events, _ = run(late_b)
    assert events == []
    never_b = [Batch("plc", t, (Reading("a", t),)) for t in range(12)]
    events, _ = run(never_b, grace=5)
    assert [(e.event, e.issues) for e in events] == [
        (DataQualityEventKind.RAISED, (("b", "missing"),))
    ]


def test_source_monitor_reports_bad_readings_once_per_change_per_source():
    from edge_agent.stream.quality import SourceQualityMonitor

    mon = SourceQualityMonitor()
    bad = Batch("plc", 1.0, (Reading("a", 1.0, Quality.BAD), Reading("b", 1.0)))
    assert mon.update(good(0.0)) is None  # all good from the start: nothing to say
    raised = mon.update(bad, "clock")
    assert raised is not None and raised.event is DataQualityEventKind.RAISED
    assert raised.describe() == "source plc: 1 of 2 readings not good: clock"
    assert raised.details() == {"points": ["a"], "reason": "clock"}
    assert mon.update(bad) is None
    assert mon.update(Batch("hub", 1.0, (Reading("x", 1.0, Quality.BAD),))) is not None
    cleared = mon.update(good(2.0))
    assert cleared is not None and cleared.event is DataQualityEventKind.CLEARED
    assert cleared.describe() == "source plc: all readings good again"
    assert cleared.details() is None and cleared.subject == "plc"
