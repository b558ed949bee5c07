"""The small protocol every source implements, whatever it speaks."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

T = TypeVar("T")


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel a source's background task and wait until it has ended. Cancels again if the task
    lives on: on Python 3.11 `asyncio.wait_for` inside a library can swallow one cancellation.
    `asyncio.wait` never raises the task's CancelledError, so a cancellation of the caller itself
    still propagates (nothing here swallows it)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)


def next_poll(prev: float, now: float, interval: float) -> float:
    """When a polled source reads next after reading at `prev`, it being `now`: the wall clock's
    next multiple of `interval`. Sources with the same interval so read at the same instants,
    their batches reach the pipeline together and assets sharing a model are scored in one call
    (a call after a second of idling costs ~0.4 ms of CPU, mostly caches refilled, against
    ~0.05 ms back to back). Instants already past (a slow device) are skipped, not burst through
    to catch up. The 1e-6 absorbs float rounding of instants computed as k * interval."""
    k = max(math.floor(prev / interval + 1e-6) + 1, math.ceil(now / interval - 1e-6))
    return k * interval


async def poll_instants(interval: float) -> AsyncIterator[float]:
    """The instants a polled source reads at, from the first multiple of `interval` on: the grid
    of `next_poll`. The first reading waits for the grid too, so an asset's sample grid (anchored
    at its first batch) and its source's polls coincide. Yields when the instant has come."""
    now = time.time()
    ts = math.ceil(now / interval - 1e-6) * interval
    while True:
        delay = ts - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield ts
        ts = next_poll(ts, time.time(), interval)


def read_password_file(path: Path | None) -> str | None:
    """The password kept in `path` (a 0600 file or a systemd credential), surrounding whitespace
    removed; None without a file. Read at every (re)connect, so a rotated password is picked up."""
    if path is None:
        return None
    return path.read_text(encoding="utf-8").strip()


@dataclass
class BuildContext:
    """What a factory may need beyond its own config: the config file's folder (relative paths
    start there) and objects its sources share within one agent (a serial line), by key."""

    base_dir: Path
    shared: dict[str, object] = field(default_factory=dict)


class SourceLoopEnded(Exception):
    """A source's background task ended although nothing stopped it."""


class TaskOwner:
    """Base for sources whose work runs in one background task started by `__aenter__`:
    leaving the context stops it (cancelled and awaited, see `stop_task`). `next_item` hands a
    failure of that task to the consumer of `batches()`, so the agent's supervisor sees it (logs,
    reports, restarts the source) instead of waiting forever on a source that is gone."""

    _task: asyncio.Task[None] | None = None

    def raise_if_ended(self) -> None:
        """Raise the background task's exception if it has ended (SourceLoopEnded without one)."""
        task = self._task
        if task is None or not task.done():
            return
        if task.cancelled():
            raise SourceLoopEnded("background task was cancelled")
        exc = task.exception()
        if exc is not None:
            raise exc
        raise SourceLoopEnded("background task ended")

    async def next_item(self, queue: asyncio.Queue[T]) -> T:
        """The next item of `queue`; raises as `raise_if_ended` does when the background task
        ends first."""
        if not queue.empty():
            return queue.get_nowait()
        self.raise_if_ended()
        task = self._task
        if task is None:
            return await queue.get()
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        self.raise_if_ended()
        return await queue.get()  # pragma: no cover - the task ended without ending (cannot be)

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None


class SourceStartupError(Exception):
    """A strict source found points the device does not have (illegal addresses, unknown node
    ids); the message names every one. The agent exits with code 2."""


class SourceStats(Protocol):
    """What the agent reads from every source's counters: whether the device is reachable."""

    connected: bool


class Source(Protocol):
    """An async context manager owning its connection; `batches()` yields reading batches forever
    and never raises for a device fault (faults become bad readings and `stats`)."""

    name: str

    @property
    def stats(self) -> SourceStats: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def batches(self) -> AsyncIterator[Batch]: ...


from edge_agent.types import Batch  # noqa: E402  (after the protocol: only used in annotations)
