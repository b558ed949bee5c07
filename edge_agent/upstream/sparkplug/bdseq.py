"""The birth/death sequence number (bdSeq), persisted so that it keeps increasing across agent
restarts: a host that saw NBIRTH bdSeq=7 must not take the next run's first NDEATH (bdSeq=0 again)
for the death of the session it is watching."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_agent.private_files import FILE_MODE

log = logging.getLogger(__name__)

MODULUS = 256  # bdSeq runs 0..255 and wraps, like seq


class BdSeqStore:
    """`next()` gives the bdSeq of the next MQTT connection: the last one used plus one (mod 256),
    0 the very first time. The file holds the last one used, written (fsync, rename) before the
    connection that uses it is attempted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("sparkplug: cannot read %s (%s): bdSeq starts at 0", self.path, exc)
            return None
        if not text.isdigit() or int(text) >= MODULUS:
            log.warning("sparkplug: %s holds %r, not a bdSeq: bdSeq starts at 0", self.path, text)
            return None
        return int(text)

    def next(self) -> int:
        last = self.last()
        value = 0 if last is None else (last + 1) % MODULUS
        self._write(value)
        return value

    def _write(self, value: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(fd, f"{value}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
