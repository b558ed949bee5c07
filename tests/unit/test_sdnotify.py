"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edge_agent.observability.sdnotify import Notifier


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_filesystem_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as rx:
        n = Notifier(path, "4000000")
        assert n.enabled and n.watchdog_interval_s == 2.0
        assert n.notify("READY=1", "STATUS=up")
        assert rx.recv(4096) == b"READY=1\nSTATUS=up"
        n.close()


def test_abstract_socket() -> None:
    name = f"@edge-agent-test-{os.getpid()}"
    with _receiver("\0" + name[1:]) as rx:
        n = Notifier(name, None)
        assert n.watchdog_interval_s is None
        assert n.notify("WATCHDOG=1")
        assert rx.recv(4096) == b"WATCHDOG=1"
        n.close()


def test_without_systemd_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier.from_environment()
    assert not n.enabled and not n.notify("READY=1")


def test_watchdog_meant_for_another_process_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "@x")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier.from_environment().watchdog_interval_s is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_environment().watchdog_interval_s == 0.5


def test_a_vanished_manager_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(str(tmp_path / "gone"), None)
    assert not n.notify("READY=1")
    assert not n.notify("STATUS=x")
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1
    with pytest.raises(ValueError):
        n.notify("STATUS=two\nlines")
