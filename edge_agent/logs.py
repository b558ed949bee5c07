"""Logging set-up (text or JSON lines for journald) and a rate limiter for repeated errors."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter (pymodbus logs every failed connect at ERROR) is ours to report, once.
    # (asyncua's trust store logs as "asyncuagds" a traceback for every untrusted certificate.)
    for noisy in ("pymodbus", "asyncua", "asyncuagds"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


class RateLimitedLog:
    """Logs the first occurrence of each key, then at most once per `interval` seconds with the
    number of occurrences suppressed in between."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        n = self._suppressed.pop(key, 0)
        suffix = f" ({n} similar suppressed)" if n else ""
        self._logger.log(level, msg + suffix, *args)
        self._last[key] = now
        return True

    def reset(self, key: str) -> None:
        """Forget a key once its condition is over, so a recurrence is reported at once."""
        self._last.pop(key, None)
        self._suppressed.pop(key, None)
