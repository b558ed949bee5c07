"""A stop that does not finish is named and ended.

On SIGTERM the agent flushes its outbox (bounded), publishes its offline status (bounded) and
cancels its tasks. A task that swallows its cancellation, or a blocking call on the event loop,
would keep the process alive until systemd's TimeoutStopSec runs out and it is SIGKILLed, with
nothing in the journal to say what held it. This watchdog runs on its own thread (so it fires
even when the loop is blocked): when a stop overruns its deadline it logs the asyncio tasks still
pending with where each waits, dumps every thread's stack, and exits with `EXIT_STOP_OVERRUN`.
Exiting hard loses nothing the outbox holds: it is written through SQLite's WAL, the state a
SIGKILL leaves, which the agent is built to survive.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# The flush (5 s) and the offline status (2 s) fit in it; deploy/edge-agent.service gives 20 s.
STOP_DEADLINE_S = 15.0
EXIT_STOP_OVERRUN = 70  # EX_SOFTWARE


def pending_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    """The loop's unfinished tasks, each as `name: where it waits` (read from another thread,
    for diagnostics only: the set may change meanwhile, so a few attempts)."""
    for _ in range(3):
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            break
        except RuntimeError:  # the task set changed while it was read
            continue
    else:
        return ["(the task set kept changing)"]
    out = []
    for t in tasks:
        frames = t.get_stack(limit=1)
        where = (
            f"{frames[-1].f_code.co_filename}:{frames[-1].f_lineno} {frames[-1].f_code.co_name}"
            if frames
            else "not started"
        )
        out.append(f"{t.get_name()}: {where}")
    return sorted(out)


class StopWatchdog:
    def __init__(
        self,
        deadline_s: float = STOP_DEADLINE_S,
        exit_process: Callable[[int], object] = os._exit,
    ) -> None:
        self.deadline_s = deadline_s
        self._exit = exit_process
        self._timer: threading.Timer | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """The stop of `loop`'s agent began: from now on it has `deadline_s` (arming again
        changes nothing). Disarm once the event loop is closed (`asyncio.run` returned)."""
        if self._timer is None:
            self._timer = threading.Timer(self.deadline_s, self._overrun, (loop,))
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _overrun(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            log.critical(
                "stop overran %g s; still pending: %s; exiting hard (the outbox keeps what it "
                "holds)",
                self.deadline_s,
                "; ".join(pending_tasks(loop)) or "no task (the loop or its shutdown is stuck)",
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        except Exception:  # the diagnosis is best effort; ending the stuck stop is not
            log.exception("stop overran %g s; could not list what is pending", self.deadline_s)
        self._exit(EXIT_STOP_OVERRUN)
