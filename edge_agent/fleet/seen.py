"""The ids of the commands a gateway has taken, kept in its state folder so a replay is refused
after a restart too. Each id is kept until its command has expired (plus the skew): after that
the expiry check refuses a replay by itself. Commands live at most MAX_LIFETIME_S, so the file
holds at most what arrives in that time, and never more than `limit` ids: a full memory refuses
new commands rather than forget an id that could still be replayed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_agent.private_files import make_private_dir, write_private_bytes

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000


class SeenFull(Exception):
    """No room for another id without forgetting one that has not expired."""


class SeenIds:
    def __init__(self, path: Path, skew_s: float, limit: int = DEFAULT_LIMIT) -> None:
        self.path = path
        self.skew_s = skew_s
        self.limit = limit
        self._ids: dict[str, float] = {}  # id → expires_at
        self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            ids = doc["ids"]
            self._ids = {str(k): float(v) for k, v in ids.items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Unreadable memory: start empty but keep the file for a look (a replay within the
            # remaining lifetime of an old command would pass; logged loudly).
            log.error("fleet: %s unreadable (%s); replay memory starts empty", self.path, exc)
            self._ids = {}

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, command_id: str, expires_at: float, now: float) -> None:
        """Remember an id (written to disk before returning, so a crash right after taking the
        command cannot make it acceptable again). Raises SeenFull or OSError."""
        self._ids = {k: v for k, v in self._ids.items() if v + self.skew_s >= now}
        if len(self._ids) >= self.limit:
            raise SeenFull(
                f"{len(self._ids)} unexpired command ids remembered (limit {self.limit})"
            )
        self._ids[command_id] = expires_at
        make_private_dir(self.path.parent)
        write_private_bytes(self.path, json.dumps({"ids": self._ids}).encode())  # tmp + rename
