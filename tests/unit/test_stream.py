import numpy as np
import pytest

from edge_agent.stream.assembler import Assembler
from edge_agent.stream.normalize import Scaler
from edge_agent.stream.windows import WindowBuffer
from edge_agent.types import Batch, Quality, Reading, Sample

COLS = {("plc", "a"): 0, ("plc", "b"): 1}


def batch(ts, a, b, qa=Quality.GOOD, source="plc"):
    return Batch(source, ts, (Reading("a", a, qa), Reading("b", b)))


def test_batches_on_the_grid_give_one_sample_each():
    asm = Assembler(COLS, period=1.0, max_age=2.5)
    out = [s for t in range(5) for s in asm.push(batch(100.0 + t, t, 10 * t))]
    assert [s.ts for s in out] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert all(s.valid for s in out)
    assert out[3].values.tolist() == [3.0, 30.0]


def test_sample_and_hold_between_batches_within_half_a_period():
    asm = Assembler(COLS, period=1.0, max_age=2.5)
    asm.push(batch(0.0, 1, 1))
    # 2.5 is half-way: it belongs to instant 2; instant 1 had no reading and holds the value.
    out = asm.push(batch(2.5, 2, 2))
    assert [(s.ts, s.values[0]) for s in out] == [(1.0, 1.0), (2.0, 2.0)]
    assert asm.counts.held == [1, 1]
    # 3.6 is nearer to 4 than to 3: instant 3 holds 2, instant 4 takes the new value.
    out = asm.push(batch(3.6, 3, 3))
    assert [(s.ts, s.values[0]) for s in out] == [(3.0, 2.0), (4.0, 3.0)]


def test_jittered_stamps_land_on_their_nearest_instant():
    """A historian export at 1 Hz whose stamps wander by up to 0.4 s: every reading becomes the
    sample of its own instant, none is lost and none repeated."""
    rng = np.random.default_rng(3)
    asm = Assembler(COLS, period=1.0, max_age=2.5)
    out = []
    for k in range(200):
        jitter = 0.0 if k == 0 else float(rng.uniform(-0.4, 0.4))
        out += asm.push(batch(1000.0 + k + jitter, k, -k))
    assert [s.values[0] for s in out] == [float(k) for k in range(200)]
    assert [s.ts for s in out] == [1000.0 + k for k in range(200)]
    assert asm.counts.held == [0, 0] and asm.counts.late_readings == 0


def test_duplicated_and_out_of_order_batches_are_dropped_and_counted():
    asm = Assembler(COLS, period=1.0, max_age=2.5)
    out = asm.push(batch(0.0, 0, 0)) + asm.push(batch(1.0, 1, 1))
    out += asm.push(batch(1.0, 99, 99))  # duplicated row
    out += asm.push(batch(0.5, 98, 98))  # a row from the past
    out += asm.push(batch(2.0, 2, 2))
    assert [s.values[0] for s in out] == [0.0, 1.0, 2.0]
    assert (asm.counts.duplicate, asm.counts.out_of_order) == ([1, 1], [1, 1])


def test_messages_with_the_same_stamp_for_different_signals_are_not_duplicates():
    """MQTT gateways often publish each signal on its own topic with the same timestamp."""
    asm = Assembler(COLS, period=1.0, max_age=2.5)
    out = []
    for k in range(3):
        out += asm.push(Batch("plc", float(k), (Reading("a", k),)))
        out += asm.push(Batch("plc", float(k), (Reading("b", -k),)))
    assert [s.values.tolist() for s in out] == [[0.0, 0.0], [1.0, -1.0], [2.0, -2.0]]
    assert asm.counts.duplicate == [0, 0]


def test_two_readings_in_one_slot_the_second_is_held_for_the_next_instant():
    asm = Assembler(COLS, period=1.0, max_age=2.5)
    out = asm.push(batch(0.0, 0, 0)) + asm.push(batch(0.9, 1, 1))  # instant 1, complete
    out += asm.push(batch(1.3, 2, 2))  # also instant 1's slot, already emitted
    assert asm.counts.late_readings == 2
    out += asm.push(batch(3.0, 3, 3))  # instant 2 had no reading: holds the late one
    assert [(s.ts, s.values[0]) for s in out] == [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]


def test_an_instant_waits_for_every_source_or_for_its_slot_to_pass():
    cols = {("a", "x"): 0, ("b", "y"): 1}
    asm = Assembler(cols, period=1.0, max_age=2.5)
    asm.push(Batch("a", 0.0, (Reading("x", 0.0),)))
    assert asm.push(Batch("b", 0.0, (Reading("y", 0.0),)))[0].valid  # complete: at once
    assert asm.push(Batch("a", 1.0, (Reading("x", 1.0),))) == []  # b has not reported yet
    out = asm.push(Batch("a", 2.0, (Reading("x", 2.0),)))  # instant 1's slot has passed
    assert [(s.ts, s.values.tolist(), s.valid) for s in out] == [(1.0, [1.0, 0.0], True)]
    assert asm.counts.held == [0, 1]


def test_stale_signal_makes_samples_invalid():
    asm = Assembler(COLS, period=1.0, max_age=1.5)
    asm.push(batch(0.0, 1, 1))
    # Only signal b keeps updating; a goes stale after 1.5 s.
    out = []
    for t in (1.0, 2.0, 3.0, 4.0):
        out += asm.push(Batch("plc", t, (Reading("b", t),)))
    # An instant without a reading of a is emitted once its slot has passed (the next batch).
    assert [s.valid for s in out] == [True, False, False]


def test_bad_quality_and_nan_make_samples_invalid():
    asm = Assembler(COLS, period=1.0, max_age=2.0)
    assert not asm.push(batch(0.0, 1, 1, qa=Quality.BAD))[0].valid
    assert not asm.push(batch(1.0, float("nan"), 1))[0].valid
    assert asm.push(batch(2.0, 1, 1))[0].valid


def test_long_silence_collapses_into_one_invalid_sample():
    asm = Assembler(COLS, period=1.0, max_age=2.0)
    asm.push(batch(0.0, 1, 1))
    out = asm.push(batch(10_000.0, 2, 2))
    assert len(out) < 10
    assert not all(s.valid for s in out)
    assert out[-1].ts == 10_000.0 and out[-1].valid
    # The grid continues from there without drift.
    assert [s.ts for s in asm.push(batch(10_001.0, 3, 3))] == [10_001.0]


def test_other_sources_are_ignored():
    asm = Assembler(COLS, period=1.0, max_age=2.0)
    assert asm.push(batch(0.0, 1, 1, source="other")) == []


def sample(t, v, valid=True):
    return Sample(float(t), np.array([v, -v], np.float32), valid)


def test_windows_emit_every_hop_after_filling():
    wb = WindowBuffer(window=4, hop=2, n_signals=2)
    emitted = [(t, w) for t in range(10) if (w := wb.push(sample(t, t))) is not None]
    assert [t for t, _ in emitted] == [3, 5, 7, 9]
    assert emitted[0][1][:, 0].tolist() == [0, 1, 2, 3]
    assert emitted[-1][1][:, 0].tolist() == [6, 7, 8, 9]
    assert emitted[-1][1].flags["C_CONTIGUOUS"]


def test_windows_never_span_a_gap():
    wb = WindowBuffer(window=3, hop=1, n_signals=2)
    out = []
    for t in range(8):
        w = wb.push(sample(t, t, valid=(t != 3)))
        if w is not None:
            out.append(w[:, 0].tolist())
    assert out == [[0, 1, 2], [4, 5, 6], [5, 6, 7]]
    assert wb.gaps == 1


def test_returned_window_is_a_copy():
    wb = WindowBuffer(window=2, hop=1, n_signals=2)
    wb.push(sample(0, 0))
    w = wb.push(sample(1, 1))
    wb.push(sample(2, 2))
    assert w[:, 0].tolist() == [0, 1]


def test_scaler():
    s = Scaler([1.0, 2.0], [2.0, 4.0])
    assert s.apply(np.array([[3.0, 6.0]], np.float32)).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError):
        Scaler([0.0], [0.0])


def test_batch_exactly_on_a_fine_grid_at_epoch_times_is_not_late():
    """At 0.05 s and current epoch times, float64 spacing (0.24 µs) exceeds period × 1e-6: the
    batch that lands on a grid instant must still count as on time, not one period late."""
    from edge_agent.stream.assembler import Assembler
    from edge_agent.types import Batch, Quality, Reading

    period = 0.05
    asm = Assembler({("s", "a"): 0}, period=period, max_age=1.0)
    t0 = 1_767_225_600.0
    out = []
    for k in range(200):
        ts = t0 + k * period  # as a poller scheduling on the grid computes it
        out += asm.push(Batch("s", ts, (Reading("a", float(k), Quality.GOOD),)))
    # Every sample carries the value polled at its own instant, not the previous one.
    assert [s.values[0] for s in out] == [float(k) for k in range(len(out))]
    assert len(out) >= 199
