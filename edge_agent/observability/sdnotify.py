"""The systemd notification protocol (sd_notify(3)) over `$NOTIFY_SOCKET`, written out because it
is one datagram per message: no dependency on libsystemd. A name starting with `@` is an abstract
socket (Linux). Without `$NOTIFY_SOCKET` (not started by systemd, or Type= is not notify) every
call is a no-op, so the agent runs the same everywhere."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _address(name: str) -> str:
    return "\0" + name[1:] if name.startswith("@") else name


class Notifier:
    def __init__(self, socket_path: str | None = None, watchdog_usec: str | None = None) -> None:
        self._address = _address(socket_path) if socket_path else None
        self._sock: socket.socket | None = None
        self._failed = False
        usec = int(watchdog_usec) if watchdog_usec and watchdog_usec.isdigit() else 0
        # Ping at half the deadline, the interval sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s: float | None = usec / 2e6 if usec > 0 else None

    @classmethod
    def from_environment(cls) -> Notifier:
        env = os.environ
        # WATCHDOG_PID, when set, names the process the watchdog is meant for (not a child).
        pid = env.get("WATCHDOG_PID")
        usec = env.get("WATCHDOG_USEC") if pid in (None, str(os.getpid())) else None
        return cls(env.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one datagram; True when sent. Never raises: a service
        manager that went away must not take the agent down with it."""
        if self._address is None:
            return False
        if "\n" in "".join(fields):
            raise ValueError("sd_notify fields are single lines")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            if not self._failed:  # once: the next ones would repeat the same reason
                log.warning("sd_notify to %s failed: %s", self._address.lstrip("\0"), exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
