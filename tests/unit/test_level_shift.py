"""The level-shift stage: window means against each signal's own recent past."""

from __future__ import annotations

import math

import numpy as np

from edge_agent.stream.level_shift import LevelShift, ShiftParams, shifts
from edge_agent.training.shift import fit_shift


def _noise(n: int, s: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, s))


def test_no_ratio_until_a_window_is_in_and_after_a_gap() -> None:
    t = LevelShift(ShiftParams(4, 4.0, [0.0], [1.0]))
    assert all(math.isnan(t.push([1.0])[0]) for _ in range(3))
    assert t.push([1.0])[0] == 0.0  # the first full window is its own reference
    t.gap()
    assert math.isnan(t.push([1.0])[0])


def test_a_gap_restarts_the_reference() -> None:
    """The level after a dropout is judged against its own stretch, not against the level before
    the gap: the tolerance was calibrated on a reference that follows sample by sample."""
    w = 4
    t = LevelShift(ShiftParams(w, float(w), [0.0], [0.5]))
    for _ in range(20):
        t.push([0.0])
    t.gap()
    after = [float(t.push([3.0])[0]) for _ in range(w)]
    assert after[-1] == 0.0  # without the restart: |3 - 0| / 0.5 = 6
    # A shift within the new stretch still stands out.
    assert max(float(t.push([5.0])[0]) for _ in range(w)) > 1.0


def test_a_step_stands_out_then_the_reference_follows_it() -> None:
    w = 8
    t = LevelShift(ShiftParams(w, float(w), [0.0], [0.5]))
    for _ in range(50):
        t.push([0.0])
    ratios = [float(t.push([2.0])[0]) for _ in range(200)]
    # The window fills with the new level: the shift peaks within about a window...
    peak = int(np.argmax(ratios))
    assert peak <= 2 * w and ratios[peak] > 2.0
    # ...and a sustained level becomes the reference again after a few time constants.
    assert ratios[-1] < 0.05


def test_slow_drift_is_followed_without_alarm() -> None:
    w = 16
    t = LevelShift(ShiftParams(w, float(w), [0.0], [0.3]))
    # Warm-up: 2 standard deviations over 2000 samples, far above what the tolerance allows in
    # one window but spread over a hundred windows.
    drift = np.linspace(0.0, 2.0, 2000)
    worst = max(float(np.nan_to_num(t.push([v])[0])) for v in drift)
    assert worst < 1.0


def test_ratio_names_the_signal_that_moved() -> None:
    w = 8
    t = LevelShift(ShiftParams(w, float(w), [0.0, 0.0, 0.0], [0.5, 0.5, math.inf]))
    for _ in range(40):
        t.push([0.0, 0.0, 0.0])
    r = np.zeros(3)
    for _ in range(w):
        r = t.push([0.0, 3.0, 50.0])
    assert int(np.argmax(r)) == 1  # the unjudged signal (infinite tolerance) never counts
    assert r[2] == 0.0


def _moved(t: LevelShift, w: int, level: float, n: int) -> list[float]:
    """Ratios of `n` samples at `level` after ten windows at 0."""
    for _ in range(10 * w):
        t.push([0.0])
    return [float(t.push([level])[0]) for _ in range(n)]


def _excursion(t: LevelShift, w: int, away: float, back: float) -> tuple[list[float], list[float]]:
    """Ratios on the way out (0 → `away`, held until the reference followed) and on the way
    back (→ `back`)."""
    out = _moved(t, w, away, 6 * w)
    ret = [float(t.push([back])[0]) for _ in range(6 * w)]
    return out, ret


def _over(ratios: list[float]) -> int:
    return sum(r > 1.0 for r in ratios)


def test_a_level_going_back_where_it_was_is_a_return_not_a_shift() -> None:
    """A fault ends and its level goes back (a temperature cools after a cooling loss): against a
    reference that followed the fault that is a shift as large as the departure. With an anchor
    (a far slower mean) it is a return: it scores 0 until the reference is back within the
    tolerance of the anchor (which drifted a little toward the held level), then what is left
    decays as any shift does. The way out scores as before."""
    w = 8
    plain = _excursion(LevelShift(ShiftParams(w, float(w), [0.0], [0.5])), w, 3.0, 0.0)
    anchored = _excursion(
        LevelShift(ShiftParams(w, float(w), [0.0], [0.5], anchor_time_constant=40.0 * w)),
        w,
        3.0,
        0.0,
    )
    # The way out: as before while it stands out, held at 1 once the reference followed it.
    assert all(a == p or (a == 1.0 and p < 1.0) for a, p in zip(anchored[0], plain[0], strict=True))
    assert max(plain[1]) > 3.0 and _over(plain[1]) > 2 * w
    assert max(anchored[1]) < max(plain[1]) / 2
    assert _over(anchored[1]) <= _over(plain[1]) / 4


def test_a_move_past_the_anchor_is_still_a_shift() -> None:
    """Going back and well beyond where the level stood before is a new departure, not a return;
    so is a second move further away."""
    w = 8
    params = ShiftParams(w, float(w), [0.0], [0.5], anchor_time_constant=40.0 * w)
    assert max(_excursion(LevelShift(params), w, 3.0, -3.0)[1]) > 2.0
    assert max(_excursion(LevelShift(params), w, 3.0, 6.0)[1]) > 2.0


def test_a_shift_from_near_the_anchor_is_never_a_return() -> None:
    """A reference within the normal wander of its anchor (a slow drift's lag, a small move) has
    nothing to return from: a shift toward the anchor and a little past it, the start of a
    fault that happens to head that way, scores as it would without the anchor."""
    w = 8
    peaks = []
    for anchor in (None, 400.0 * w):
        t = LevelShift(ShiftParams(w, 4.0 * w, [0.0], [0.5], anchor_time_constant=anchor))
        for v in [0.0] * (40 * w) + [-0.45] * (16 * w):  # the reference 0.44 below the anchor
            t.push([v])
        peaks.append(max(float(t.push([0.2])[0]) for _ in range(2 * w)))
    assert peaks[0] > 1.0
    assert peaks[1] == peaks[0]


def test_the_anchor_follows_a_level_that_stays() -> None:
    """A level that stays (a new set point) becomes the anchor in a few of its time constants;
    leaving it again is then a shift, in either direction."""
    w = 8
    t = LevelShift(ShiftParams(w, float(w), [0.0], [0.5], anchor_time_constant=4.0 * w))
    _moved(t, w, 3.0, 40 * w)
    assert max(float(t.push([0.0])[0]) for _ in range(6 * w)) > 2.0


def test_a_level_that_stays_away_is_held_until_it_returns() -> None:
    """A lasting subtle fault: without the anchor the shift fades once the reference followed
    it, and the condition would return to normal with the fault still there. With it, the ratio
    is held at 1 (the raise threshold: enough to keep an open alert, never to raise one) for as
    long as the level stays away, and drops to 0 once it comes back."""
    w = 8
    plain, anchored = (
        LevelShift(ShiftParams(w, float(w), [0.0], [0.5], anchor_time_constant=tca))
        for tca in (None, 100.0 * w)
    )
    away_plain = _moved(plain, w, 2.0, 20 * w)
    away = _moved(anchored, w, 2.0, 20 * w)
    assert away_plain[-1] < 0.05  # faded: the reference followed the fault
    first_over = next(i for i, r in enumerate(away) if r > 1.0)
    assert min(away[first_over:]) == 1.0  # never below the hold while the level stays away
    back = [float(anchored.push([0.0])[0]) for _ in range(6 * w)]
    # A return (0 while the reference is away from the anchor, what is left of it under the
    # tolerance after), and the hold ended with it.
    assert back[0] == 0.0 and _over(back) == 0 and back[-1] < 0.5


def test_a_partial_return_ends_the_hold() -> None:
    """A fault ends but the level comes back only part of the way (the machine kept warming
    meanwhile): the move back is itself a shift, so the excursion ends there instead of holding
    the condition until the anchor's time constant runs out."""
    w = 8
    t = LevelShift(ShiftParams(w, float(w), [0.0], [0.5], anchor_time_constant=200.0 * w))
    _moved(t, w, 3.0, 10 * w)
    noise = 0.05 * np.random.default_rng(0).standard_normal(10 * w)
    back = [float(t.push([1.2 + e])[0]) for e in noise]
    assert max(back[-2 * w :]) < 1.0  # calm, not held


def test_a_level_held_away_for_the_anchor_time_constant_becomes_normal() -> None:
    """The hold is bounded: a level that stays away for the anchor's time constant (a new set
    point, not a fault) becomes the anchor, the ratio fades as without one, and going back to
    the old level is then a shift of its own."""
    w = 8
    tca = 20.0 * w
    t = LevelShift(ShiftParams(w, float(w), [0.0], [0.5], anchor_time_constant=tca))
    held = _moved(t, w, 2.0, int(tca))
    assert held[-1] == 1.0
    later = [float(t.push([2.0])[0]) for _ in range(2 * w)]
    assert later[-1] < 0.05
    assert max(float(t.push([0.0])[0]) for _ in range(2 * w)) > 2.0


def test_a_shift_within_the_wander_of_the_anchor_is_not_held() -> None:
    """Only a level that left the anchor by more than the tolerance is held: normal data that
    crosses the shift tolerance for a window now and then (`test_fit_covers_normal_data...`)
    does not get held on."""
    w = 16
    fit = fit_shift([_noise(20_000, 2, seed=1)], w, 0.999, 0.95, [False, False])
    params = ShiftParams(
        w, fit.params.time_constant, fit.params.offset, fit.params.tolerance, 50.0 * w
    )
    t = LevelShift(params)
    ratios = np.array([t.push(row) for row in _noise(20_000, 2, seed=2)])
    ratios = ratios[~np.isnan(ratios).any(axis=1)]
    assert float(np.mean(ratios.max(axis=1) >= 1.0)) < 0.01


def test_batch_shifts_equal_the_live_stage() -> None:
    x = _noise(300, 2, seed=3)
    w, tc = 10, 10.0
    (batch,) = shifts([x], w, tc)
    live = LevelShift(ShiftParams(w, tc, [0.0, 0.0], [1.0, 1.0]))
    got = []
    for row in x:
        live.push(row)
        if live.ready:
            got.append(live.last_shift.copy())
    np.testing.assert_allclose(batch, np.asarray(got))


def test_fit_covers_normal_data_and_widens_with_less_of_it() -> None:
    w = 16
    long = fit_shift([_noise(20_000, 2, seed=1)], w, 0.999, 0.95, [False, False])
    short = fit_shift([_noise(600, 2, seed=1)], w, 0.999, 0.95, [False, False])
    assert all(s > lg for s, lg in zip(short.params.tolerance, long.params.tolerance, strict=True))
    # Fresh normal data from the same process stays inside the long fit's interval.
    t = LevelShift(long.params)
    ratios = np.array([t.push(row) for row in _noise(20_000, 2, seed=2)])
    ratios = ratios[~np.isnan(ratios).any(axis=1)]
    assert float(np.mean(ratios.max(axis=1) > 1.0)) < 0.01


def test_constant_signals_are_not_judged() -> None:
    x = _noise(500, 2)
    x[:, 1] = 0.0
    fit = fit_shift([x], 8, 0.999, 0.95, [False, True])
    assert fit.judged == [True, False]
    assert math.isinf(fit.params.tolerance[1])


def test_more_signals_widen_each_interval() -> None:
    """The stage raises when any signal leaves its interval: eight intervals cover as a family
    what one covers alone, so each is wider than a lone signal's."""
    w = 16
    x = _noise(8_000, 8, seed=3)
    one = fit_shift([x[:, :1]], w, 0.999, 0.95, [False])
    eight = fit_shift([x], w, 0.999, 0.95, [False] * 8)
    # The same signal, the same data: only the family's coverage differs.
    assert eight.params.tolerance[0] > 1.1 * one.params.tolerance[0]


def _set_point_moves(n: int, seed: int) -> np.ndarray:
    """Noise plus a step to a new random level every ~600 samples, as an operator's set-point
    moves make a pump's flow and current do: shifts with a heavy tail."""
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.random(n) < 1 / 600)
    levels = rng.normal(0.0, 3.0, steps.max() + 1)[steps]
    return (rng.standard_normal(n) + levels)[:, np.newaxis]


def test_a_false_alert_budget_covers_the_heavy_tail_of_normal_shifts() -> None:
    """Set-point moves are normal, their shifts far outside a Normal interval fitted to them. With
    a budget of false episodes per hour the tolerance follows the shifts' own tail: fresh data of
    the same process leaves it in far fewer windows."""
    w, period = 16, 1.0
    train = _set_point_moves(12_000, seed=4)
    plain = fit_shift([train], w, 0.999, 0.95, [False])
    budget = fit_shift([train], w, 0.999, 0.95, [False], period_s=period, false_per_hour=0.01)
    assert budget.params.tolerance[0] > plain.params.tolerance[0]

    def exceeding(params: ShiftParams) -> float:
        t = LevelShift(params)
        r = np.array([t.push(row)[0] for row in _set_point_moves(20_000, seed=5)])
        return float(np.mean(r[~np.isnan(r)] > 1.0))

    assert exceeding(plain.params) > 0.005  # the Normal interval pages on set-point moves
    assert exceeding(budget.params) < exceeding(plain.params) / 5
