"""The SQLite outbox on real SQLite files: order, acknowledgement, bounds and drop order, dead
letters, a corrupt file, a full database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.upstream.outbox import (
    DB_NAME,
    AlertChange,
    Kind,
    Limits,
    Message,
    OpenAlert,
    Outbox,
)


def msg(i: int, kind: Kind = Kind.ALERT, size: int = 10) -> Message:
    return Message(f"t/{kind.name}/{i}", str(i).encode().ljust(size, b"."), 1, kind)


def opened(tmp: Path, **limits: object) -> tuple[Outbox, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    box = Outbox(tmp, Limits(**limits), on_problem=lambda p: problems.append((p.kind, p.text)))  # type: ignore[arg-type]
    box.open()
    return box, problems


def topics(box: Outbox, n: int = 1000) -> list[str]:
    return [s.message.topic for s in box.peek(n)]


def test_messages_leave_only_when_acked_and_survive_reopen(tmp_path: Path) -> None:
    box, _ = opened(tmp_path)
    for i in range(5):
        box.put(msg(i))
    first = box.peek(2)
    assert [s.message.topic for s in first] == ["t/ALERT/0", "t/ALERT/1"]
    box.ack([first[0].id])
    box.close()  # as after a crash: nothing but the file remains
    again, _ = opened(tmp_path)
    assert topics(again) == [f"t/ALERT/{i}" for i in range(1, 5)]
    assert again.stats.queued == 4


def test_size_bound_drops_telemetry_then_events_before_any_alert(tmp_path: Path) -> None:
    box, problems = opened(tmp_path, max_messages=100)
    for i in range(40):
        box.put(msg(i, Kind.ALERT))
        box.put(msg(i, Kind.TELEMETRY))
    for i in range(30):
        box.put(msg(i, Kind.EVENT))
    # 110 puts: each time the 101st arrives, 6 go (down to 95), all telemetry, oldest first.
    left = topics(box)
    assert len(left) == 98
    assert sum(t.startswith("t/ALERT") for t in left) == 40
    assert box.stats.dropped == {"telemetry": 12, "event": 0, "alert": 0}
    assert "t/TELEMETRY/0" not in left and "t/TELEMETRY/39" in left
    assert problems and problems[-1][0] == "dropped"
    for i in range(40, 120):
        box.put(msg(i, Kind.ALERT))
    left = topics(box)
    assert not any(t.startswith("t/TELEMETRY") for t in left)
    assert not any(t.startswith("t/EVENT") for t in left)
    # Only when nothing else is left do the oldest alerts go.
    assert box.stats.dropped["alert"] > 0
    assert left[-1] == "t/ALERT/119"


def test_byte_bound(tmp_path: Path) -> None:
    box, _ = opened(tmp_path, max_bytes=64 * 1024)
    for i in range(100):
        box.put(msg(i, size=1024))
    assert box.stats.queued_bytes <= 64 * 1024
    assert box.stats.dropped["alert"] == 100 - box.stats.queued


def test_age_bound(tmp_path: Path) -> None:
    now = [1000.0]
    box = Outbox(tmp_path, Limits(max_age_s=60), clock=lambda: now[0])
    box.open()
    box.put(msg(0))
    now[0] += 30
    box.put(msg(1))
    now[0] += 40
    box.expire()
    assert topics(box) == ["t/ALERT/1"]
    assert box.stats.dropped["alert"] == 1


def test_oversized_and_repeatedly_failing_messages_go_to_dead_letters(tmp_path: Path) -> None:
    box, problems = opened(tmp_path, max_message_bytes=1024, max_attempts=3)
    box.put(msg(0, size=5000))
    box.put(msg(1))
    box.put(msg(2))
    assert topics(box) == ["t/ALERT/1", "t/ALERT/2"]
    head = box.peek(1)[0]
    assert not box.fail(head, "timeout")
    assert not box.fail(box.peek(1)[0], "timeout")
    assert box.fail(box.peek(1)[0], "timeout")
    assert topics(box) == ["t/ALERT/2"]  # the queue moves on
    box.reject(box.peek(1)[0], "PUBACK 0x87 Not authorized")
    assert topics(box) == []
    assert [(t, r.split(":")[0]) for t, _, r in box.dead_letters()] == [
        ("t/ALERT/2", "PUBACK 0x87 Not authorized"),
        ("t/ALERT/1", "timeout (after 3 attempts)"),
        ("t/ALERT/0", "oversized"),
    ]
    assert box.stats.dead_letters == 3
    assert [k for k, _ in problems].count("dead_letter") == 3


def test_corrupt_file_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not an sqlite database" * 100)
    box, problems = opened(tmp_path)
    assert problems[0][0] == "corrupt_replaced"
    assert list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))
    box.put(msg(1))
    assert topics(box) == ["t/ALERT/1"]


def test_full_database_spills_to_memory_delivers_and_recovers(tmp_path: Path) -> None:
    box, problems = opened(tmp_path)
    box.put(msg(0))
    db = box._db
    assert db is not None
    # A real SQLITE_FULL: cap the file at its current size, as a full disk would.
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    for i in range(1, 200):
        box.put(msg(i, size=2000))
    assert box.stats.spilled > 0
    assert problems[0][0] == "write_failed"
    # Still delivered in order, from disk then memory.
    assert topics(box, 3) == ["t/ALERT/0", "t/ALERT/1", "t/ALERT/2"]
    db.execute("PRAGMA max_page_count=1073741823")
    box.retry_spill()
    assert box.stats.spilled == 0
    assert [k for k, _ in problems] == ["write_failed", "write_recovered"]
    assert topics(box) == [f"t/ALERT/{i}" for i in range(200)]


def test_ack_of_spilled_messages(tmp_path: Path) -> None:
    box, _ = opened(tmp_path)
    db = box._db
    assert db is not None
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    for i in range(50):
        box.put(msg(i, size=3000))
    head = box.peek(50)
    box.ack([s.id for s in head])
    assert box.peek(10) == []
    assert box.stats.spilled == 0


def test_wal_mode(tmp_path: Path) -> None:
    opened(tmp_path)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_expiry_of_a_large_backlog_in_one_go(tmp_path: Path) -> None:
    now = [1000.0]
    box = Outbox(tmp_path, Limits(max_age_s=60, max_messages=100_000), clock=lambda: now[0])
    box.open()
    for i in range(33_000):  # more rows than SQLite allows bound parameters in one statement
        box.put(msg(i, Kind.TELEMETRY if i % 2 else Kind.ALERT))
    now[0] += 61
    box.put(msg(99))
    box.expire()
    assert topics(box) == ["t/ALERT/99"]
    assert box.stats.queued == 1
    assert box.stats.dropped == {"telemetry": 16_500, "event": 0, "alert": 16_500}


def test_recovery_is_reported_when_the_held_messages_went_out_from_memory(tmp_path: Path) -> None:
    """Disk full with the broker up: the messages held in memory are delivered from there, so
    nothing is left to flush when the disk is freed; the recovery is still reported, once."""
    box, problems = opened(tmp_path)
    box.put(msg(0))
    db = box._db
    assert db is not None
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    for i in range(1, 30):
        box.put(msg(i, size=3000))
    assert box.stats.spilled > 0
    assert box.stats.pending == box.stats.queued + box.stats.spilled
    box.ack([s.id for s in box.peek(100)])  # all delivered, from disk and memory
    assert box.stats.spilled == 0 and box.stats.pending == 0
    box.retry_spill()
    assert [k for k, _ in problems] == ["write_failed"]
    db.execute("PRAGMA max_page_count=1073741823")  # disk freed
    box.put(msg(100))
    box.put(msg(101))
    assert [k for k, _ in problems] == ["write_failed", "write_recovered"]
    assert "held in memory" in problems[-1][1]
    assert topics(box) == ["t/ALERT/100", "t/ALERT/101"]


def test_pending_counts_messages_held_in_memory(tmp_path: Path) -> None:
    box, _ = opened(tmp_path)
    db = box._db
    assert db is not None
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    for i in range(20):
        box.put(msg(i, size=3000))
    assert box.stats.spilled > 0
    assert box.stats.pending == len(box.peek(1000)) == 20


def _alert(asset: str, alert_id: str, ts: float, severity: str) -> Message:
    held = OpenAlert(asset, alert_id, ts, severity, "m1", 2.5)
    return Message(f"a/{asset}", b"{}", 1, Kind.ALERT, alert_change=AlertChange(asset, held))


def test_open_alerts_follow_their_messages_and_survive_a_crash(tmp_path: Path) -> None:
    box, _ = opened(tmp_path)
    box.put(_alert("pump-1", "A", 10.0, "warning"))
    box.put(_alert("pump-2", "B", 11.0, "warning"))
    box.put(_alert("pump-1", "A", 15.0, "critical"))  # updated: raise time kept
    box.put(Message("a/pump-2", b"{}", 1, Kind.ALERT, alert_change=AlertChange("pump-2", None)))
    box.close()  # as after a SIGKILL
    again, _ = opened(tmp_path)
    assert again.open_alerts() == {"pump-1": OpenAlert("pump-1", "A", 10.0, "critical", "m1", 2.5)}
    # A new alert for the asset replaces the old one whole (its clear was lost somehow).
    again.put(_alert("pump-1", "C", 20.0, "warning"))
    assert again.open_alerts()["pump-1"] == OpenAlert("pump-1", "C", 20.0, "warning", "m1", 2.5)
    assert again.stats.queued == 5  # every change came with its message


def test_open_alert_changes_held_in_memory_while_the_disk_fails(tmp_path: Path) -> None:
    box, _ = opened(tmp_path)
    box.put(_alert("pump-1", "A", 10.0, "warning"))
    assert box._db is not None
    box._db.execute("PRAGMA query_only = ON")  # every write fails from now on, as on a full disk
    box.put(_alert("pump-1", "A", 12.0, "critical"))
    box.put(_alert("pump-2", "B", 13.0, "warning"))
    assert box.stats.spilled == 2
    assert box.open_alerts() == {
        "pump-1": OpenAlert("pump-1", "A", 10.0, "critical", "m1", 2.5),
        "pump-2": OpenAlert("pump-2", "B", 13.0, "warning", "m1", 2.5),
    }
