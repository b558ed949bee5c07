"""Capped exponential backoff with jitter, shared by every reconnect loop."""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, initial: float, maximum: float, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        # Jitter spreads reconnects of many gateways after a shared broker outage.
        return float(base * (1 + self.jitter * (2 * self._rng.random() - 1)))

    def reset(self) -> None:
        self._attempt = 0
