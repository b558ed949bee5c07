"""State files are the agent's alone (issue 12, failure 8): the outbox database with its WAL and
shared-memory files and the recordings are created 0600 and their directories 0700, whatever the
umask; files left 0644 by an earlier version are brought down to 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.config import SignalConfig
from edge_agent.recorder import CsvRecorder
from edge_agent.types import Batch, Quality, Reading
from edge_agent.upstream.outbox import DB_NAME, Kind, Message, Outbox


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: whatever the agent creates is as open as it asks for."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_outbox_files_and_directory_are_private(tmp_path: Path, open_umask: None) -> None:
    state = tmp_path / "var" / "state"
    box = Outbox(state)
    box.open()
    box.put(Message("t/1", b"x" * 100, 1, Kind.ALERT))
    files = [state / DB_NAME, state / f"{DB_NAME}-wal", state / f"{DB_NAME}-shm"]
    for f in files:
        assert f.exists(), f
        assert mode(f) == 0o600, (f, oct(mode(f)))
    assert mode(state) == 0o700 and mode(state.parent) == 0o700
    box.close()


def test_outbox_files_of_an_earlier_version_are_restricted(tmp_path: Path) -> None:
    first = Outbox(tmp_path)
    first.open()
    first.put(Message("t/1", b"x", 1, Kind.ALERT))
    first.close()
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{tmp_path / DB_NAME}{suffix}")
        if p.exists():
            os.chmod(p, 0o644)
    again = Outbox(tmp_path)
    again.open()
    assert mode(tmp_path / DB_NAME) == 0o600
    assert [s.message.topic for s in again.peek(10)] == ["t/1"]
    again.close()


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path, open_umask: None) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    Outbox(shared).open()
    assert mode(shared) == 0o755
    assert mode(shared / DB_NAME) == 0o600


def test_recordings_are_private(tmp_path: Path, open_umask: None) -> None:
    rec_dir = tmp_path / "rec"
    rec = CsvRecorder(rec_dir / "pump-1.csv", [SignalConfig(name="a", source="plc")])
    rec.add(Batch(ts=1.0, source="plc", readings=(Reading("a", 1.0, Quality.GOOD),)))
    rec.close()
    assert (rec_dir / "pump-1.csv").read_text().count("\n") >= 2
    assert mode(rec_dir / "pump-1.csv") == 0o600
    assert mode(rec_dir) == 0o700
