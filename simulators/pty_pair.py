"""A serial line without hardware: two pseudo-terminals whose master ends are relayed to each
other inside the event loop, like a null-modem cable. The server opens one slave end, the client
the other, both as ordinary serial ports (so nothing beyond Python is needed, e.g. no socat)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty


class PtyPair:
    def __init__(self) -> None:
        self._m1, self._s1 = os.openpty()
        self._m2, self._s2 = os.openpty()
        for fd in (self._s1, self._s2):
            tty.setraw(fd)  # no echo, no line editing: bytes pass unchanged
        for fd in (self._m1, self._m2):
            os.set_blocking(fd, False)
        self.server_path = os.ttyname(self._s1)
        self.client_path = os.ttyname(self._s2)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Relay both directions (we keep the slave ends open, so a client that closes and
        reopens its port does not hang up the line)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._m1, self._copy, self._m1, self._m2)
        self._loop.add_reader(self._m2, self._copy, self._m2, self._m1)

    @staticmethod
    def _copy(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, OSError):
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(dst, data)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._m1)
            self._loop.remove_reader(self._m2)
            self._loop = None
        for fd in (self._m1, self._m2, self._s1, self._s2):
            with contextlib.suppress(OSError):
                os.close(fd)
