"""A bounded inbox for the agent's MQTT clients: what arrives from a broker never grows memory
without bound.

aiomqtt holds every message it receives in an unbounded asyncio.Queue until the consumer takes
it. A consumer that falls behind (a loop kept busy by other work, a flood on a subscribed topic:
anything from outside is hostile) then grows the process for as long as it lasts; in a 16-pump
soak whose agent ran out of CPU (it ran under tracemalloc, a few times slower) the MQTT source's
inbox grew by ~13 messages a second. Each
client gets a queue of `limit` messages instead that, when full, drops the *oldest* message and
calls `on_drop`, so that its owner counts and logs it (rate-limited): the newest readings and
commands matter most, and a dropped message is counted, not silent. (aiomqtt's own bound would
drop the newest and log a warning for every message.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt

Inbox = type[asyncio.Queue[aiomqtt.Message]]


def inbox(on_drop: Callable[[], None]) -> Inbox:
    """A queue type for `aiomqtt.Client(queue_type=..., max_queued_incoming_messages=limit)`
    that drops the oldest message when full and calls `on_drop` for each one dropped."""

    class DropOldest(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: Any) -> None:
            if self.full():
                self.get_nowait()
                on_drop()
            super().put_nowait(item)

    return DropOldest
