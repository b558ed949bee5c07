"""The edge node's Sparkplug session as pure code: which messages go out, in which order, with
which seq and bdSeq, and what an incoming command does. No I/O; `client.py` does the MQTT.

Rules (Sparkplug B 3.0):
- every MQTT connection has its own bdSeq (0–255, +1 per connection, persisted): the NDEATH
  registered as the will and the NBIRTH that follows carry the same one;
- seq is one counter per edge node over NBIRTH, DBIRTH and DDATA: 0 on the NBIRTH, +1 per message,
  255 wraps to 0; NDEATH carries none;
- NBIRTH, then a DBIRTH per device with every metric's definition and current value, then DDATA
  with the metrics that changed (report by exception);
- an NCMD `Node Control/Rebirth` = true repeats the births (same bdSeq, seq from 0).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pysparkplug import DataType, DBirth, DData, Metric, NBirth, NCmd, NDeath

from edge_agent.logs import RateLimitedLog
from edge_agent.upstream.sparkplug.metrics import (
    AGENT_VERSION,
    BD_SEQ,
    NODE_DEFINITIONS,
    REBIRTH,
    SITE,
    MetricDef,
    MetricValue,
    idle_values,
)
from edge_agent.upstream.sparkplug.topics import SparkplugTopics

log = logging.getLogger(__name__)

SEQ_MODULUS = 256
# A command is a few metrics; anything much larger is not one of ours and is not decoded.
MAX_COMMAND_BYTES = 64 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Outgoing:
    kind: str  # NBIRTH, DBIRTH, DDATA, NDEATH
    topic: str
    payload: bytes
    qos: int
    seq: int | None = None


class Command(enum.Enum):
    REBIRTH = "rebirth"
    IGNORED = "ignored"  # decoded, nothing for us in it
    REJECTED = "rejected"  # not decodable or not addressed to us


@dataclass(slots=True)
class SessionStats:
    births: int = 0  # NBIRTH messages (first one per connection and rebirths)
    ddata: int = 0
    commands: int = 0
    rebirths: int = 0
    decode_errors: int = 0
    unknown_metrics: int = 0


@dataclass(slots=True)
class _Device:
    definitions: tuple[MetricDef, ...]
    values: dict[str, MetricValue] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)  # metric → data time (ms)
    sent: dict[str, MetricValue] = field(default_factory=dict)


class EdgeNodeSession:
    def __init__(
        self,
        topics: SparkplugTopics,
        agent_version: str,
        site: str,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.topics = topics
        self._clock_ms = clock_ms
        self._node_values: dict[str, MetricValue] = {
            REBIRTH: False,
            AGENT_VERSION: agent_version,
            SITE: site,
        }
        self.devices: dict[str, _Device] = {}
        self.seq = 0
        self.bd_seq: int | None = None
        self.online = False  # NBIRTH sent on the current connection
        self.stats = SessionStats()
        self._errors = RateLimitedLog(log)

    # -- devices ----------------------------------------------------------------------------

    def define_device(self, name: str, definitions: Sequence[MetricDef]) -> bool:
        """Declare (or redeclare) a device's metrics. True when they differ from what the host
        was told in the last births: a rebirth is then needed for it to learn them."""
        defs = tuple(definitions)
        old = self.devices.get(name)
        if old is not None and old.definitions == defs:
            return False
        device = _Device(defs, dict(idle_values()))
        if old is not None:  # keep the values that still have a definition
            names = {d.name for d in defs}
            device.values.update({k: v for k, v in old.values.items() if k in names})
            device.stamps.update({k: v for k, v in old.stamps.items() if k in names})
        self.devices[name] = device
        return self.online

    # -- connection lifecycle ---------------------------------------------------------------

    def connecting(self, bd_seq: int) -> Outgoing:
        """A new MQTT connection with this bdSeq: the NDEATH to register as its will."""
        self.bd_seq = bd_seq
        self.online = False
        return self.death()

    def death(self) -> Outgoing:
        """The NDEATH of the current connection (as will, or published before a clean stop)."""
        assert self.bd_seq is not None, "connecting() first"
        payload = NDeath(self._clock_ms(), self._bd_seq_metric()).encode()
        return Outgoing("NDEATH", self.topics.node("NDEATH"), payload, qos=1)

    def disconnected(self) -> None:
        self.online = False

    def births(self) -> list[Outgoing]:
        """NBIRTH (seq 0, the connection's bdSeq) and a DBIRTH per device, in that order."""
        assert self.bd_seq is not None, "connecting() first"
        self.seq = 0
        now = self._clock_ms()
        node_metrics = [self._bd_seq_metric(now)] + [
            d.metric(self._node_values[d.name], now) for d in NODE_DEFINITIONS if d.name != BD_SEQ
        ]
        out = [self._out("NBIRTH", self.topics.node("NBIRTH"), NBirth(now, 0, tuple(node_metrics)))]
        for name, device in self.devices.items():
            metrics = tuple(
                d.metric(device.values.get(d.name), device.stamps.get(d.name, now))
                for d in device.definitions
            )
            seq = self._next_seq()
            out.append(self._out("DBIRTH", self.topics.device("DBIRTH", name),
                                 DBirth(now, seq, metrics), seq))  # fmt: skip
            device.sent = dict(device.values)
        self.online = True
        self.stats.births += 1
        return out

    def _bd_seq_metric(self, ts_ms: int | None = None) -> Metric:
        return MetricDef(BD_SEQ, DataType.INT64).metric(self.bd_seq, ts_ms or self._clock_ms())

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % SEQ_MODULUS
        return self.seq

    def _out(
        self, kind: str, topic: str, payload: NBirth | DBirth | DData, seq: int = 0
    ) -> Outgoing:
        # Births and data at QoS 0, as Sparkplug requires; datatypes in every message so a host
        # that decodes without the birth at hand still reads the values.
        return Outgoing(kind, topic, payload.encode(include_dtypes=True), qos=0, seq=seq)

    # -- data -------------------------------------------------------------------------------

    def update(self, device: str, values: Mapping[str, MetricValue], ts_ms: int) -> Outgoing | None:
        """New values for a device's metrics (stamped with their data time). Returns the DDATA
        with those that changed enough since last sent, or None (offline, or nothing changed);
        offline, the values wait for the next DBIRTH."""
        dev = self.devices.get(device)
        if dev is None:
            return None
        for name, value in values.items():
            dev.values[name] = value
            dev.stamps[name] = ts_ms
        if not self.online:
            return None
        changed = [
            d for d in dev.definitions if d.changed(dev.sent.get(d.name), dev.values.get(d.name))
        ]
        if not changed:
            return None
        for d in changed:
            dev.sent[d.name] = dev.values[d.name]
        metrics = tuple(d.metric(dev.values[d.name], dev.stamps.get(d.name)) for d in changed)
        seq = self._next_seq()
        self.stats.ddata += 1
        return self._out(
            "DDATA", self.topics.device("DDATA", device), DData(self._clock_ms(), seq, metrics), seq
        )

    # -- commands (hostile input) -----------------------------------------------------------

    def command(self, topic: str, raw: bytes) -> Command:
        """An NCMD or DCMD from the broker. Only `Node Control/Rebirth` = true does anything;
        undecodable payloads are counted and logged (rate-limited), unknown metrics ignored."""
        self.stats.commands += 1
        target = self.topics.command(topic)
        if target is None:
            return self._reject("topic", f"command on a topic not ours: {topic[:200]!r}")
        if len(raw) > MAX_COMMAND_BYTES:
            return self._reject("size", f"{target[0]} of {len(raw)} bytes refused (too large)")
        try:
            # Anything a malformed protobuf or an unsupported datatype raises in the decoder.
            metrics = NCmd.decode(raw).metrics
        except Exception as exc:
            return self._reject("decode", f"undecodable {target[0]} on {topic[:200]}: {exc!r}")
        outcome = Command.IGNORED
        for m in metrics:
            if target[0] == "NCMD" and m.name == REBIRTH and m.datatype is DataType.BOOLEAN:
                if m.value is True:
                    outcome = Command.REBIRTH
                continue
            self.stats.unknown_metrics += 1
            self._errors.log(
                logging.INFO, f"unknown:{m.name}",
                "sparkplug: %s metric %r ignored (not a command this edge node takes)",
                target[0], (m.name or "")[:200],
            )  # fmt: skip
        if outcome is Command.REBIRTH:
            self.stats.rebirths += 1
        return outcome

    def _reject(self, key: str, text: str) -> Command:
        self.stats.decode_errors += 1
        self._errors.log(logging.WARNING, key, "sparkplug: %s", text)
        return Command.REJECTED
