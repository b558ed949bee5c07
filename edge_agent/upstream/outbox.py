"""Persistent upstream queue: SQLite in WAL mode, one row per message, removed only after the
broker acknowledged it.

Why SQLite: one file, atomic commits, survives a SIGKILL of the agent (WAL, `synchronous=NORMAL`)
or a power loss (`synchronous=FULL`), and a corrupt file can be detected and set aside.

Every call is one small statement or transaction (microseconds to a millisecond), so it runs on
the event loop thread instead of hopping to a worker thread per message.

Bounds (see docs/UPSTREAM.md): when the queue exceeds `max_messages` or `max_bytes`, the oldest
messages of the lowest priority go first (telemetry, then events, then alerts); messages older
than `max_age_s` are dropped. Every drop is counted by kind.

When the database cannot be written (disk full, I/O error) messages wait in a bounded in-memory
spill and are still delivered; the first write that succeeds again ends the episode
(`write_recovered`, whether or not messages were still held in memory). When the file is corrupt
it is renamed aside and a new one started. Either way `put` never raises: problems are counted
and handed to `on_problem` (a typed `Problem`) once per episode.

Open alerts are kept beside the queue (table `open_alert`, one row per asset), changed in the
same transaction as the alert message that opens, updates or closes them: after a crash the agent
knows exactly which alerts its consumers hold open, no more and no fewer, and can continue or
close each one (issue 12: no consumer is left with an alert that can never close). Alerts with
their own lifecycle beside the model's (`predicted` forecasts, `efficiency`), several per asset,
are kept by `alert_id` with their last payload (table `open_side_alert`): they cannot continue
across a restart (a forecast needs its history again), so the restarted agent clears them.

The directory is created 0700 and the database with its WAL and shared-memory files 0600,
whatever the umask (SQLite gives the WAL and SHM files the database file's mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.private_files import make_private_dir, make_private_file, restrict_file

log = logging.getLogger(__name__)

DB_NAME = "outbox.db"
SPILL_MAX = 10_000  # in-memory messages while the database is unwritable


class Kind(enum.IntEnum):
    """Message class; the value is the drop priority (lowest dropped first)."""

    TELEMETRY = 0
    EVENT = 1
    ALERT = 2


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    kind: Kind
    retain: bool = False
    alert_change: AlertChange | SideAlertChange | None = None


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert the consumers hold open: raised and not yet cleared."""

    asset: str
    alert_id: str
    raised_ts: float
    severity: str
    model_version: str
    threshold: float


@dataclass(frozen=True, slots=True)
class AlertChange:
    """What an alert message does to the open alerts: `opened` (raised or updated: upserted,
    keeping the first raise time) or, with `opened` None, the asset's alert closed."""

    asset: str
    opened: OpenAlert | None


@dataclass(frozen=True, slots=True)
class SideAlertChange:
    """What a message does to an alert beside the model's (predicted, efficiency): `body` (its
    payload, JSON) while open, None once cleared."""

    alert_id: str
    asset: str
    body: str | None


@dataclass(frozen=True, slots=True)
class Stored:
    """A queued message. Negative ids are messages spilled to memory."""

    id: int
    message: Message
    attempts: int


@dataclass(frozen=True, slots=True)
class Limits:
    max_messages: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_age_s: float = 7 * 86_400
    max_attempts: int = 5
    max_message_bytes: int = 256 * 1024
    synchronous: str = "normal"


@dataclass(slots=True)
class OutboxStats:
    queued: int = 0
    queued_bytes: int = 0
    spilled: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {k.name.lower(): 0 for k in Kind})
    dead_letters: int = 0
    write_errors: int = 0
    recovered_corrupt: int = 0

    @property
    def pending(self) -> int:
        """Messages waiting for delivery: in the database and held in memory."""
        return self.queued + self.spilled


class ProblemKind(enum.StrEnum):
    WRITE_FAILED = "write_failed"
    WRITE_RECOVERED = "write_recovered"
    CORRUPT_REPLACED = "corrupt_replaced"
    DEAD_LETTER = "dead_letter"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the outbox could not do as asked, reported once per episode."""

    kind: ProblemKind
    text: str
    # DEAD_LETTER: the kind of the message that was dead-lettered (a publisher must not answer
    # a refused event with another event: it could be refused in turn, forever).
    message_kind: Kind | None = None


ProblemHook = Callable[[Problem], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_drop_order ON outbox (kind, id);
CREATE TABLE IF NOT EXISTS open_alert (
    asset TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    raised REAL NOT NULL,
    severity TEXT NOT NULL,
    model_version TEXT NOT NULL,
    threshold REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS open_side_alert (
    alert_id TEXT PRIMARY KEY,
    asset TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    created REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""
# A dead letter keeps the head of its payload for diagnosis, not a second copy of a huge one.
_DEAD_LETTER_KEEP = 4096


def _is_corruption(exc: sqlite3.Error) -> bool:
    # SQLITE_CORRUPT and SQLITE_NOTADB surface as DatabaseError, not its OperationalError subclass.
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


class Outbox:
    def __init__(
        self,
        directory: Path,
        limits: Limits = Limits(),
        on_problem: ProblemHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = directory / DB_NAME
        self.limits = limits
        self.stats = OutboxStats()
        self._on_problem = on_problem
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._spill: deque[Stored] = deque()
        self._spill_seq = 0
        self._write_failing = False
        self._held_in_episode = 0  # messages spilled to memory since writes began failing

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the database. A corrupt file is renamed aside and replaced. Raises
        OSError only when the directory itself cannot be created (a deployment error)."""
        make_private_dir(self.path.parent)
        try:
            self._connect()
        except sqlite3.Error as exc:
            if not _is_corruption(exc):
                raise OSError(f"cannot open outbox {self.path}: {exc}") from exc
            self._replace_corrupt(exc)

    def _connect(self) -> None:
        try:
            make_private_file(self.path)
            for suffix in ("-wal", "-shm"):  # left by an earlier run, possibly 0644
                restrict_file(Path(f"{self.path}{suffix}"))
        except OSError as exc:
            raise sqlite3.OperationalError(f"{self.path}: {exc.strerror or exc}") from exc
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.limits.synchronous.upper()}")
            db.execute("PRAGMA busy_timeout=1000")
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
            db.executescript(_SCHEMA)
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
            ).fetchone()
            dead = db.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
        except sqlite3.Error:
            db.close()
            raise
        self._db = db
        self.stats.queued, self.stats.queued_bytes = int(count), int(size)
        self.stats.dead_letters = int(dead)

    def _replace_corrupt(self, exc: sqlite3.Error) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.replace(Path(f"{aside}{suffix}"))
        self.stats.recovered_corrupt += 1
        self._problem(
            ProblemKind.CORRUPT_REPLACED,
            f"outbox {self.path} was corrupt ({exc}); moved to {aside.name}, started a new one",
        )
        self._connect()

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    # -- writing -------------------------------------------------------------------------------

    def put(self, msg: Message) -> None:
        """Queue a message durably; never raises (see the module notes)."""
        if len(msg.payload) > self.limits.max_message_bytes:
            self._dead_letter_new(msg, f"oversized: {len(msg.payload)} bytes")
            return
        if self._spill and not self._flush_spill():
            self._spill_put(msg)
            return
        try:
            self._insert(msg)
        except sqlite3.Error as exc:
            self._write_failed(exc)
            self._spill_put(msg)
            return
        self._write_succeeded()
        self._enforce_size()

    def _insert(self, msg: Message) -> None:
        db = self._require_db()
        row = (msg.topic, msg.payload, msg.qos, int(msg.retain), int(msg.kind), self._clock())
        with db:  # one transaction: the message and the open-alert change it carries
            db.execute("BEGIN")
            db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, kind, created) "
                "VALUES (?,?,?,?,?,?)",
                row,
            )
            change = msg.alert_change
            if isinstance(change, SideAlertChange):
                if change.body is not None:
                    db.execute(
                        "INSERT INTO open_side_alert (alert_id, asset, body) VALUES (?,?,?) "
                        "ON CONFLICT(alert_id) DO UPDATE SET body = excluded.body",
                        (change.alert_id, change.asset, change.body),
                    )
                else:
                    db.execute("DELETE FROM open_side_alert WHERE alert_id = ?", (change.alert_id,))
            elif change is not None and change.opened is not None:
                a = change.opened
                db.execute(
                    "INSERT INTO open_alert "
                    "(asset, alert_id, raised, severity, model_version, threshold) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT(asset) DO UPDATE SET "
                    "raised = CASE WHEN alert_id = excluded.alert_id THEN raised "
                    "ELSE excluded.raised END, alert_id = excluded.alert_id, "
                    "severity = excluded.severity, model_version = excluded.model_version, "
                    "threshold = excluded.threshold",
                    (a.asset, a.alert_id, a.raised_ts, a.severity, a.model_version, a.threshold),
                )
            elif change is not None:
                db.execute("DELETE FROM open_alert WHERE asset = ?", (change.asset,))
        self.stats.queued += 1
        self.stats.queued_bytes += len(msg.payload)

    def open_alerts(self) -> dict[str, OpenAlert]:
        """The alerts consumers hold open, by asset, as of the last message written (those
        still spilled to memory included, newest last)."""
        found: dict[str, OpenAlert] = {}
        with contextlib.suppress(sqlite3.Error):
            db = self._require_db()
            for asset, alert_id, raised, severity, version, threshold in db.execute(
                "SELECT asset, alert_id, raised, severity, model_version, threshold FROM open_alert"
            ):
                found[asset] = OpenAlert(
                    asset, alert_id, float(raised), severity, version, float(threshold)
                )
        for stored in self._spill:
            change = stored.message.alert_change
            if not isinstance(change, AlertChange):
                continue
            known, opened = found.get(change.asset), change.opened
            if opened is None:
                found.pop(change.asset, None)
            elif known is not None and known.alert_id == opened.alert_id:
                found[change.asset] = dataclasses.replace(opened, raised_ts=known.raised_ts)
            else:
                found[change.asset] = opened
        return found

    def open_side_alerts(self) -> dict[str, SideAlertChange]:
        """Alerts beside the model's that consumers hold open, by alert_id, with their last
        payload (as of the last message written, those spilled to memory included)."""
        found: dict[str, SideAlertChange] = {}
        with contextlib.suppress(sqlite3.Error):
            db = self._require_db()
            for alert_id, asset, body in db.execute(
                "SELECT alert_id, asset, body FROM open_side_alert"
            ):
                found[alert_id] = SideAlertChange(alert_id, asset, body)
        for stored in self._spill:
            change = stored.message.alert_change
            if isinstance(change, SideAlertChange):
                if change.body is None:
                    found.pop(change.alert_id, None)
                else:
                    found[change.alert_id] = change
        return found

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._connect()
            except sqlite3.Error as exc:
                if _is_corruption(exc):
                    self._replace_corrupt(exc)
                else:
                    raise
        assert self._db is not None
        return self._db

    def _write_failed(self, exc: sqlite3.Error) -> None:
        self.stats.write_errors += 1
        if _is_corruption(exc):
            try:
                self._replace_corrupt(exc)
                return
            except sqlite3.Error as again:
                exc = again
        if not self._write_failing:
            self._write_failing = True
            self._problem(
                ProblemKind.WRITE_FAILED,
                f"cannot write outbox {self.path}: {exc}; holding up to {SPILL_MAX} messages "
                "in memory until it can",
            )

    def _spill_put(self, msg: Message) -> None:
        if len(self._spill) >= SPILL_MAX:
            victim = min(self._spill, key=lambda s: (s.message.kind, -s.id))
            if victim.message.kind > msg.kind:
                self._count_drop(msg.kind)
                return
            self._spill.remove(victim)
            self._count_drop(victim.message.kind)
        self._spill_seq += 1
        self._spill.append(Stored(-self._spill_seq, msg, 0))
        self.stats.spilled = len(self._spill)
        self._held_in_episode += 1

    def _flush_spill(self) -> bool:
        """Move spilled messages into the database, oldest first; True once the spill is empty."""
        while self._spill:
            head = self._spill[0]
            try:
                self._insert(head.message)
            except sqlite3.Error as exc:
                self._write_failed(exc)
                return False
            self._spill.popleft()
        self.stats.spilled = 0
        self._write_succeeded()
        self._enforce_size()
        return True

    def _write_succeeded(self) -> None:
        """A message was written: if writes were failing, the episode is over (reported once),
        also when the messages held meanwhile were delivered straight from memory. Only an
        insert counts: a delete can succeed on a full disk (it frees pages)."""
        if not self._write_failing or self._spill:
            return
        self._write_failing = False
        held, self._held_in_episode = self._held_in_episode, 0
        self._problem(
            ProblemKind.WRITE_RECOVERED,
            f"outbox {self.path} is writable again; {held} message(s) were held in memory "
            "meanwhile",
        )

    # -- reading and acknowledging -------------------------------------------------------------

    def oldest_created(self) -> float | None:
        """Creation time (epoch s) of the oldest message in the database, None when it is empty
        or unreadable (messages spilled to memory carry no creation time)."""
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else float(row[0])

    def peek(self, limit: int) -> list[Stored]:
        """The oldest `limit` messages in queue order (database first, then memory spill)."""
        rows: list[Stored] = []
        if self._db is not None:
            try:
                cur = self._db.execute(
                    "SELECT id, topic, payload, qos, retain, kind, attempts FROM outbox "
                    "ORDER BY id LIMIT ?",
                    (limit,),
                )
                rows = [
                    Stored(i, Message(t, bytes(p), q, Kind(k), bool(r)), a)
                    for i, t, p, q, r, k, a in cur
                ]
            except sqlite3.Error as exc:
                self._write_failed(exc)
        if len(rows) < limit:
            rows.extend(list(self._spill)[: limit - len(rows)])
        return rows

    def ack(self, ids: Iterable[int]) -> None:
        """Remove delivered messages (one transaction)."""
        ids = list(ids)
        db_ids = [i for i in ids if i > 0]
        spill_ids = {i for i in ids if i < 0}
        if spill_ids:
            self._spill = deque(s for s in self._spill if s.id not in spill_ids)
            self.stats.spilled = len(self._spill)
        if db_ids:
            self._delete(db_ids)

    def _delete(self, ids: list[int]) -> None:
        try:
            db = self._require_db()
            with db:  # explicit transaction: one commit for the batch
                db.execute("BEGIN")
                # Chunks stay well under SQLite's limit on bound parameters.
                for i in range(0, len(ids), 5000):
                    chunk = ids[i : i + 5000]
                    marks = ",".join("?" * len(chunk))
                    size, count = db.execute(
                        "SELECT coalesce(sum(length(payload)), 0), count(*) FROM outbox "
                        f"WHERE id IN ({marks})",
                        chunk,
                    ).fetchone()
                    db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    self.stats.queued -= int(count)
                    self.stats.queued_bytes -= int(size)
        except sqlite3.Error as exc:
            # Not deleted: the messages will be sent again (at least once), never lost.
            self._write_failed(exc)
            self._recount()

    def _recount(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._db is not None:
                count, size = self._db.execute(
                    "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
                ).fetchone()
                self.stats.queued, self.stats.queued_bytes = int(count), int(size)

    def fail(self, stored: Stored, reason: str) -> bool:
        """Count a failed attempt; returns True when the message went to the dead letters."""
        attempts = stored.attempts + 1
        if attempts >= self.limits.max_attempts:
            self.reject(stored, f"{reason} (after {attempts} attempts)")
            return True
        if stored.id < 0:
            self._spill = deque(
                Stored(s.id, s.message, attempts) if s.id == stored.id else s for s in self._spill
            )
            return False
        try:
            self._require_db().execute(
                "UPDATE outbox SET attempts = ? WHERE id = ?", (attempts, stored.id)
            )
        except sqlite3.Error as exc:
            self._write_failed(exc)
        return False

    def reject(self, stored: Stored, reason: str) -> None:
        """Move a message the broker will never accept out of the queue, so it cannot wedge it."""
        self._dead_letter_new(stored.message, reason, attempts=stored.attempts + 1)
        self.ack([stored.id])

    def _dead_letter_new(self, msg: Message, reason: str, attempts: int = 0) -> None:
        self.stats.dead_letters += 1
        try:
            self._require_db().execute(
                "INSERT INTO dead_letter (topic, payload, size, kind, created, failed_at, "
                "attempts, reason) VALUES (?,?,?,?,?,?,?,?)",
                (
                    msg.topic,
                    msg.payload[:_DEAD_LETTER_KEEP],
                    len(msg.payload),
                    int(msg.kind),
                    self._clock(),
                    self._clock(),
                    attempts,
                    reason,
                ),
            )
        except sqlite3.Error as exc:
            self._write_failed(exc)
        self._problem(
            ProblemKind.DEAD_LETTER, f"message to {msg.topic} dead-lettered: {reason}", msg.kind
        )

    def dead_letters(self, limit: int = 100) -> list[tuple[str, int, str]]:
        """(topic, size, reason) of the newest dead letters, for diagnosis and tests."""
        cur = self._require_db().execute(
            "SELECT topic, size, reason FROM dead_letter ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [(str(t), int(s), str(r)) for t, s, r in cur]

    # -- bounds --------------------------------------------------------------------------------

    def _count_drop(self, kind: Kind, n: int = 1) -> None:
        self.stats.dropped[kind.name.lower()] += n

    def _enforce_size(self) -> None:
        lim = self.limits
        if self.stats.queued <= lim.max_messages and self.stats.queued_bytes <= lim.max_bytes:
            return
        # Evict down to 95 % so a full queue does not pay an eviction on every put.
        excess_n = self.stats.queued - int(lim.max_messages * 0.95)
        excess_b = self.stats.queued_bytes - int(lim.max_bytes * 0.95)
        try:
            db = self._require_db()
            victims: list[int] = []
            freed_b = 0
            by_kind: dict[Kind, int] = {}
            cur = db.execute("SELECT id, kind, length(payload) FROM outbox ORDER BY kind, id")
            for i, k, size in cur:
                if len(victims) >= excess_n and freed_b >= excess_b:
                    break
                victims.append(int(i))
                freed_b += int(size)
                by_kind[Kind(k)] = by_kind.get(Kind(k), 0) + 1
            cur.close()
            self._delete(victims)
        except sqlite3.Error as exc:
            self._write_failed(exc)
            return
        self._report_drops(by_kind, "queue over its bound")

    def expire(self) -> None:
        """Drop messages older than `max_age_s` (called periodically)."""
        cutoff = self._clock() - self.limits.max_age_s
        try:
            db = self._require_db()
            # Ids grow with time: a look at the oldest row usually settles it.
            oldest = db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
            if oldest is None or oldest[0] >= cutoff:
                return
            rows = db.execute(
                "SELECT kind, count(*) FROM outbox WHERE created < ? GROUP BY kind", (cutoff,)
            ).fetchall()
            db.execute("DELETE FROM outbox WHERE created < ?", (cutoff,))
            self._recount()
        except sqlite3.Error as exc:
            self._write_failed(exc)
            return
        self._report_drops(
            {Kind(k): int(n) for k, n in rows}, f"older than {self.limits.max_age_s:.0f} s"
        )

    def _report_drops(self, by_kind: dict[Kind, int], why: str) -> None:
        if not by_kind:
            return
        for kind, n in by_kind.items():
            self._count_drop(kind, n)
        text = ", ".join(f"{n} {k.name.lower()}" for k, n in sorted(by_kind.items()))
        self._problem(ProblemKind.DROPPED, f"outbox dropped {text}: {why}")

    def retry_spill(self) -> None:
        """Try again to move spilled messages into the database (called periodically)."""
        if self._spill:
            self._flush_spill()

    def _problem(self, kind: ProblemKind, text: str, message_kind: Kind | None = None) -> None:
        quiet = kind in (ProblemKind.WRITE_RECOVERED, ProblemKind.DROPPED)
        log.log(logging.WARNING if quiet else logging.ERROR, "%s", text)
        if self._on_problem is not None:
            self._on_problem(Problem(kind, text, message_kind))
