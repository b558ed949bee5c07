"""Helpers for the reliability tests: synthetic alert payloads, an in-process publisher, a
persistent-session subscriber that de-duplicates, and schema validation of what was received."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.alerts.messages import SCHEMA_NAMES, alert_payload, load_schema
from edge_agent.config import IdentityConfig, MqttConfig
from edge_agent.config import OutboxConfig as OutboxConfig
from edge_agent.config_base import BackoffConfig
from edge_agent.types import AlertEvent, AlertEventKind, Contribution
from edge_agent.upstream.mqtt import MqttPublisher

SITE, GATEWAY = "rel-site", "gw-rel"
VALIDATORS = {
    name: jsonschema.Draft202012Validator(
        load_schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for name in SCHEMA_NAMES
}


def validate(body: dict[str, Any]) -> None:
    VALIDATORS[str(body["schema"]).split("/")[1]].validate(body)


def keep_user() -> str:
    """Mosquitto started as root drops to its own user before it reads password files or writes
    its persistence file, and cannot enter pytest's private temp dirs; keep it as it started."""
    return "user root\n" if os.geteuid() == 0 else ""


def persistence(workdir: Path) -> str:
    """Mosquitto config lines keeping sessions (and their queued messages) across a restart."""
    d = workdir / "persist"
    d.mkdir(parents=True, exist_ok=True)
    return f"persistence true\npersistence_location {d}/\n{keep_user()}"


def synthetic_alerts(assets: int, per_asset: int, t0: float = 1.8e9) -> list[dict[str, Any]]:
    """Alert payloads as the policy would emit them, interleaved across assets, each asset going
    raised → updated → cleared again and again. Contributions make them ~1 KB like real ones."""
    out: list[dict[str, Any]] = []
    kinds = [AlertEventKind.RAISED, AlertEventKind.UPDATED, AlertEventKind.CLEARED]
    ids: dict[str, str] = {}
    for i in range(per_asset):
        for a in range(assets):
            asset = f"pump-{a + 1}"
            kind = kinds[i % 3]
            if kind is AlertEventKind.RAISED:
                ids[asset] = str(uuid.uuid4())
            event = AlertEvent(
                alert_id=ids[asset],
                event=kind,
                asset=asset,
                ts=t0 + i,
                score=2.5 + i % 7,
                threshold=0.5,
                severity="critical" if i % 2 else "warning",
                kind="anomaly",
                message=f"{asset}: anomaly {kind.value} #{i}; top signals: " + "x" * 300,
                contributions=tuple(
                    Contribution(f"signal_{k}", 0.125, 40.0 + k, 38.0, 41.0) for k in range(8)
                ),
                model_version="test-model",
            )
            out.append(alert_payload(event, SITE, GATEWAY))
    return out


def publisher(port: int, state: Path, **mqtt: Any) -> MqttPublisher:
    cfg = MqttConfig(
        host="127.0.0.1", port=port, backoff=BackoffConfig(initial_s=0.1, max_s=0.5), **mqtt
    )
    return MqttPublisher(
        cfg, IdentityConfig(site=SITE, gateway=GATEWAY), "test", {}, outbox=OutboxConfig(dir=state)
    )


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Poll an in-process condition with a deadline (the state has no event to await)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


class DedupSubscriber:
    """MQTT 5 subscriber with a persistent session (so the broker queues for it while it is away
    or restarting); records every message and de-duplicates on (alert_id, event)."""

    def __init__(self, port: int, client_id: str = "rel-sub", topic: str = "edge/#") -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscriber could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.received.append((msg.topic, json.loads(msg.payload)))
            self._cond.notify_all()

    def alerts(self) -> list[dict[str, Any]]:
        with self._cond:
            return [b for t, b in self.received if "/alerts/" in t]

    def unique_alerts(self) -> list[dict[str, Any]]:
        """First occurrence of each (alert_id, event), in arrival order."""
        seen: set[tuple[str, str]] = set()
        out = []
        for b in self.alerts():
            key = (b["alert_id"], b["event"])
            if key not in seen:
                seen.add(key)
                out.append(b)
        return out

    def wait_until(self, predicate: Callable[[DedupSubscriber], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                self._cond.wait(left)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
