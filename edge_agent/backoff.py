"""Capped exponential backoff with jitter, shared by every reconnect loop."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.config_base import BackoffConfig


class Backoff:
    def __init__(
        self, initial: float, maximum: float, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    @classmethod
    def from_config(cls, cfg: BackoffConfig) -> Backoff:
        return cls(cfg.initial_s, cfg.max_s, cfg.jitter)

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        # Jitter spreads reconnects of many gateways after a shared broker outage.
        return float(base * (1 + self.jitter * (2 * self._rng.random() - 1)))

    def reset(self) -> None:
        self._attempt = 0
