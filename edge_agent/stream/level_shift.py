"""Has a signal's level just moved? A window's mean against the signal's own recent past.

A model trained on a few minutes of data cannot know where levels go later: the machine keeps
warming up, the operator moves the set point, ambient follows the day. Judging levels against
the training minutes therefore alarms on all of that (and a band wide enough not to misses the
faults). What minutes of data *can* say is how much a level wanders from one window to the next
when nothing happens. So each signal keeps a reference: an exponentially weighted mean of its own
window means, with a time constant of one window. A subtle fault (a partly closed valve, a slight
imbalance, the onset of cavitation) moves some levels within a window or two, far faster than
warm-up or drift; the reference follows slow movement and the shift stands out against it:

    shift_j = window mean_j − reference_j (before this window)
    ratio_j = |shift_j − offset_j| / tolerance_j

The tolerance comes from the same statistic on the asset's normal data: a normal tolerance
interval (Howe's factor, `training/levels.py`) over the shift's effective number of independent
observations, so a few minutes of data give a wide interval and more data a narrower one.

The reference follows a fault too, in a few window lengths: this stage says when levels move, the
model's reconstruction error (shape and cross-signal structure) says whether the machine still
behaves as it did. Inputs are standardized samples (the bundle's scaler); no I/O.

Moving back is not moving away. When a fault ends, its levels go back where they were (a fluid
temperature cools for minutes after a cooling loss); against a reference that followed the fault,
that return is a shift as large as the departure was, and it held alerts open for a minute or two
after every fault (issue 11: most of the plant runs' false alarms). So each signal also keeps an
anchor, a far slower mean of its window means (`anchor_time_constant`, the span an alert episode
stays open) that stands still while the signal shifts. While the reference stands apart from the
anchor by more than the tolerance, a shift toward the anchor, not past it by more than the
tolerance, is a return and scores 0: a set point moved and, within about that span, moved back
pages at most once, on the way out. The anchor creeps toward a level held calmly for long (that is
how a lasting change becomes normal), so the end of a return from a long excursion, once the
reference is within the tolerance of the anchor, still scores: less, and for fewer windows, than
without the anchor. A reference within the tolerance of its anchor has nothing to return from: a
first shift from there scores as it would without one.

A level that stays away is still a fault. The reference follows a fault within a few windows, so
in the middle of a lasting subtle fault (a valve left partly closed, an imbalance that stays) the
shift fades while the model's score sits just under its threshold, and the condition returned to
normal with the fault still there (issue 11: a third of the pump runs' fault samples). So a shift
that leaves the anchor by more than the tolerance opens an excursion of that signal: while the
window mean stays on that side of the (now frozen) anchor by more than the tolerance, the ratio is
held at 1, the raise threshold itself. A held level keeps an open alert's condition active (it is
not calm) but never raises one on its own (raising needs a score above the threshold): it extends
what a shift or the model already judged, it judges nothing. The excursion ends when the level
comes back within the tolerance of the anchor or moves back toward it by more than the
tolerance (a fault's end that leaves the level short of where it was), or when it has stayed away
for the anchor's time constant: a level held that long is the new normal, and the anchor takes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ShiftParams:
    window: int  # samples averaged into one level
    time_constant: float  # of the reference, in samples
    offset: Sequence[float]  # per signal: mean shift on normal data
    tolerance: Sequence[float]  # per signal: half-width of the normal interval; inf: not judged
    # Of the anchor a return heads for, in samples (None: no anchor, returns are shifts too).
    anchor_time_constant: float | None = None


class LevelShift:
    """Per valid sample: each signal's shift ratio (NaN until a window of valid samples is in).
    An invalid sample (a gap) restarts the window and the reference: the tolerance describes
    a window against a reference that followed it sample by sample, not against one left behind
    before a dropout (the first window after a gap of any length compared with it would be judged
    by the wrong yardstick, and flapping data would raise alerts of its own; issue 19). Shifts
    are judged within each gap-free stretch; a gap is a data-quality event, not a level shift."""

    def __init__(self, params: ShiftParams) -> None:
        n = len(params.tolerance)
        self.params = params
        # Plain Python over the few signals of a sample: this runs for every sample of every
        # asset, and a dozen numpy calls on 8 values cost twice the arithmetic (issue 16).
        self._n = n
        self._alpha = 1.0 / max(1.0, params.time_constant)
        self._buf = [[0.0] * n for _ in range(params.window)]
        self._sum = [0.0] * n
        self._run = 0
        self._pos = 0
        self._ref: list[float] | None = None
        tca = params.anchor_time_constant
        self._beta = None if tca is None else 1.0 / max(1.0, tca)
        self._anchor: list[float] | None = None
        # Per signal: the side of the anchor an open excursion is on (0: none), and its age in
        # samples (an excursion lasting the anchor's time constant makes its level the anchor).
        self._side = [0] * n
        self._age = [0] * n
        self._max_age = None if tca is None else max(1.0, tca)
        self._offset = [float(v) for v in params.offset]
        self._tol = [float(v) for v in params.tolerance]
        self._none = np.full(n, math.nan)
        self.last_shift: list[float] = [math.nan] * n

    @property
    def ready(self) -> bool:
        return self._run >= self.params.window

    def gap(self) -> None:
        self._run = 0
        self._pos = 0
        self._sum = [0.0] * self._n
        self._ref = None
        self._anchor = None
        self._side = [0] * self._n
        self._age = [0] * self._n

    def push(self, z: npt.NDArray[np.floating] | Sequence[float]) -> F64:
        """`z`: one standardized sample (signals,) → ratio per signal (NaN: no window yet)."""
        x: list[float] = z.tolist() if isinstance(z, np.ndarray) else [float(v) for v in z]
        w = self.params.window
        total = self._sum
        if self._run >= w:
            total = [a - b for a, b in zip(total, self._buf[self._pos], strict=True)]
        total = [a + b for a, b in zip(total, x, strict=True)]
        self._sum = total
        self._buf[self._pos] = x
        self._pos = (self._pos + 1) % w
        self._run += 1
        if self._run < w:
            return self._none.copy()
        mean = [v / w for v in total]
        if self._ref is None:
            self._ref = list(mean)
            if self._beta is not None:
                self._anchor = list(mean)
        ref, anchor, beta, alpha = self._ref, self._anchor, self._beta, self._alpha
        shift = [m - r for m, r in zip(mean, ref, strict=True)]
        out = [abs(d - o) / t for d, o, t in zip(shift, self._offset, self._tol, strict=True)]
        if anchor is not None and beta is not None:
            self._judge_against_anchor(mean, shift, out, anchor, beta)
        for j, d in enumerate(shift):
            ref[j] += alpha * d
        self.last_shift = shift
        return np.array(out)

    def _judge_against_anchor(
        self,
        mean: list[float],
        shift: list[float],
        out: list[float],
        anchor: list[float],
        beta: float,
    ) -> None:
        """Returns score 0, levels that stay away from the anchor are held at 1 (in `out`), and
        the anchor moves on (see the module's docstring)."""
        ref, side, age, max_age = self._ref, self._side, self._age, self._max_age
        assert ref is not None and max_age is not None
        for j, tol in enumerate(self._tol):
            a, d = anchor[j], shift[j]
            back = a - ref[j]
            away = abs(back)
            # A return needs something to return from: the reference apart from the anchor by
            # more than the normal wander. Then a shift toward the anchor, not past it by more
            # than that wander, is a return (a first small shift from near the anchor is not).
            returning = away > tol and d * back > 0 and abs(d) <= away + tol
            shifted = out[j] >= 1.0
            if side[j]:
                # The anchor stands still through an excursion, so a lasting fault does not
                # drag it along and its end lands back on it; one that lasts its time constant
                # is where the level now belongs.
                age[j] += 1
                if age[j] > max_age:
                    side[j] = 0
                    anchor[j] = a = mean[j]
            elif not shifted:
                # Calm: the anchor creeps after the level (a slow change becomes normal).
                anchor[j] = a = a + beta * (mean[j] - a)
            off = mean[j] - a
            if side[j] and (off * side[j] <= tol or (returning and shifted)):
                # Back within the normal wander of the anchor, or a move back that is a shift of
                # its own (a fault's end that leaves the level short of where it was, as a
                # machine that kept warming meanwhile does): the excursion ended.
                side[j] = 0
            if shifted and not returning and not side[j] and abs(off) > tol:
                side[j] = 1 if off > 0 else -1
                age[j] = 0
            if returning:
                out[j] = 0.0
            elif side[j] and out[j] < 1.0:
                out[j] = 1.0


def shifts(segments: Sequence[F64], window: int, time_constant: float) -> list[F64]:
    """The shift of every window of each gap-free segment (standardized samples), as `LevelShift`
    computes them live (the reference restarts with each segment)."""
    n = segments[0].shape[1] if segments else 0
    tracker = LevelShift(ShiftParams(window, time_constant, [0.0] * n, [1.0] * n))
    out: list[F64] = []
    for seg in segments:
        tracker.gap()
        rows = []
        for row in seg:
            tracker.push(row)
            if tracker.ready:
                rows.append(tracker.last_shift.copy())
        out.append(np.asarray(rows).reshape(-1, n))
    return out
