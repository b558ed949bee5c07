"""Sliding windows over consecutive valid samples, kept in a numpy ring buffer.

The buffer holds every sample twice (at i and i + window) so the latest window is always one
contiguous slice, with no concatenation per hop.
"""

from __future__ import annotations

import numpy as np

from edge_agent.types import FloatArray, Sample


class WindowBuffer:
    def __init__(self, window: int, hop: int, n_signals: int) -> None:
        if window < 1 or hop < 1:
            raise ValueError("window and hop must be >= 1")
        self.window = window
        self.hop = hop
        self._buf = np.zeros((2 * window, n_signals), dtype=np.float32)
        self._pos = 0
        self._run = 0  # consecutive valid samples since the last gap
        self.gaps = 0

    def push(self, sample: Sample) -> FloatArray | None:
        """Add a sample; returns a (window, signals) copy when a window is due, else None."""
        if not sample.valid:
            if self._run:
                self.gaps += 1
            self._run = 0
            return None
        w = self.window
        # Rows pos and pos + w in one strided assignment (the buffer has exactly 2 * w rows).
        self._buf[self._pos :: w] = sample.values
        self._pos = (self._pos + 1) % w
        self._run += 1
        if self._run >= w and (self._run - w) % self.hop == 0:
            return self._buf[self._pos : self._pos + w].copy()
        return None
